using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Management.Automation;

namespace AsyncGroup.Commands;

/// <summary>Finds the session's tasks by -Id or -Name, writing a not-found error per unmatched value.</summary>
internal static class TaskLookup
{
    public static IEnumerable<AsyncTask> ById(AsyncGroupCmdlet cmdlet, long[] ids)
    {
        IReadOnlyList<AsyncTask> all = TaskRegistry.Snapshot(AsyncGroupCmdlet.CurrentRunspaceId);
        foreach (long id in ids)
        {
            AsyncTask? task = all.FirstOrDefault(t => t.Id == id);
            if (task is null)
            {
                cmdlet.WriteError(NotFound($"No task with Id {id.ToString(CultureInfo.InvariantCulture)} was found in this session.", id));
                continue;
            }

            yield return task;
        }
    }

    public static IEnumerable<AsyncTask> ByName(AsyncGroupCmdlet cmdlet, string[] names)
    {
        IReadOnlyList<AsyncTask> all = TaskRegistry.Snapshot(AsyncGroupCmdlet.CurrentRunspaceId);
        var yielded = new HashSet<AsyncTask>();
        foreach (string name in names)
        {
            var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
            var matches = all.Where(t => pattern.IsMatch(t.Name)).ToList();
            if (matches.Count == 0 && !WildcardPattern.ContainsWildcardCharacters(name))
            {
                cmdlet.WriteError(NotFound($"No task named '{name}' was found in this session.", name));
            }

            foreach (AsyncTask task in matches.Where(yielded.Add))
            {
                yield return task;
            }
        }
    }

    private static ErrorRecord NotFound(string message, object target) =>
        new(new ArgumentException(message), ErrorIds.TaskNotFound, ErrorCategory.ObjectNotFound, target);
}
