using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;

namespace AsyncGroup.Commands;

/// <summary>Base of the cmdlets that take existing tasks (<c>-Task</c> at position 0 and from the pipeline).</summary>
public abstract class TaskCmdletBase : AsyncGroupCmdlet
{
    private readonly List<AsyncTask> _collected = new();
    private readonly HashSet<AsyncTask> _seen = new();

    /// <summary>The tasks, in the order given (duplicates ignored).</summary>
    internal IReadOnlyList<AsyncTask> Collected => _collected;

    /// <summary>Adds tasks from one ProcessRecord, refusing tasks of another session.</summary>
    internal void Collect(IEnumerable<AsyncTask>? tasks)
    {
        foreach (AsyncTask task in tasks ?? Enumerable.Empty<AsyncTask>())
        {
            EnsureLocal(task);
            if (_seen.Add(task))
            {
                _collected.Add(task);
            }
        }
    }

    /// <summary>Refuses an empty task list with a clear error.</summary>
    internal void RequireTasks()
    {
        if (_collected.Count == 0)
        {
            ThrowArgumentError("No tasks were given.", null);
        }
    }
}

/// <summary>
/// Base of the cmdlets whose only input is a list of tasks (Receive-AsyncTask, Wait-AsyncTask,
/// Wait-AsyncGroup): <c>-Task</c> at position 0 and from the pipeline, collected in order.
/// </summary>
public abstract class TaskListCmdletBase : TaskCmdletBase
{
    /// <summary>The tasks, given at position 0 or through the pipeline.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [ValidateNotNullOrEmpty]
    public AsyncTask[] Task { get; set; } = null!;

    /// <inheritdoc />
    protected override void ProcessRecord() => Collect(Task);
}
