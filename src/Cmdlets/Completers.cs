using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using AsyncGroup.Commands;

namespace AsyncGroup;

/// <summary>Completes -Name from the session's tasks.</summary>
public sealed class TaskNameCompleter : IArgumentCompleter
{
    /// <inheritdoc />
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var pattern = new WildcardPattern((wordToComplete ?? string.Empty).Trim('\'', '"') + "*", WildcardOptions.IgnoreCase);
        return TaskRegistry.Snapshot(AsyncGroupCmdlet.CurrentRunspaceId)
            .Select(t => t.Name)
            .Where(n => pattern.IsMatch(n))
            .Distinct()
            .Select(n => new CompletionResult(Quote(n), n, CompletionResultType.ParameterValue, n));
    }

    private static string Quote(string name) =>
        name.IndexOfAny(new[] { ' ', '\'', '"', '$', '`', ';', ',', '(', ')', '{', '}' }) >= 0 ? "'" + name.Replace("'", "''") + "'" : name;
}

/// <summary>Completes -Id from the session's tasks, showing each task's name and state.</summary>
public sealed class TaskIdCompleter : IArgumentCompleter
{
    /// <inheritdoc />
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string prefix = wordToComplete ?? string.Empty;
        return TaskRegistry.Snapshot(AsyncGroupCmdlet.CurrentRunspaceId)
            .Where(t => t.Id.ToString(CultureInfo.InvariantCulture).StartsWith(prefix, System.StringComparison.Ordinal))
            .Select(t => new CompletionResult(
                t.Id.ToString(CultureInfo.InvariantCulture),
                t.Id.ToString(CultureInfo.InvariantCulture),
                CompletionResultType.ParameterValue,
                $"{t.Name} ({t.State})"));
    }
}

/// <summary>Completes -Function from the caller's functions.</summary>
public sealed class FunctionNameCompleter : IArgumentCompleter
{
    /// <inheritdoc />
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        using var ps = PowerShell.Create(RunspaceMode.CurrentRunspace);
        ps.AddCommand("Get-Command").AddParameter("CommandType", "Function,Filter").AddParameter("Name", (wordToComplete ?? string.Empty) + "*");
        return ps.Invoke()
            .Select(o => o.Properties["Name"]?.Value as string)
            .Where(n => !string.IsNullOrEmpty(n))
            .Select(n => new CompletionResult(n!, n!, CompletionResultType.ParameterValue, n!))
            .ToList();
    }
}
