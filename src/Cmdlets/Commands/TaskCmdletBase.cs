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

    /// <summary>
    /// True when there are tasks to work on. An empty -Task list is refused with a clear error;
    /// -Id or -Name that matched nothing is not (each unknown value was already reported).
    /// </summary>
    internal bool RequireTasks()
    {
        if (_collected.Count > 0)
        {
            return true;
        }

        if (ParameterSetName is TaskSelectionCmdletBase.IdSet or TaskSelectionCmdletBase.NameSet)
        {
            return false;
        }

        ThrowArgumentError("No tasks were given.", null);
        return false; // not reached
    }
}

/// <summary>
/// Base of the cmdlets whose only input is a list of tasks (Wait-AsyncGroup): <c>-Task</c> at
/// position 0 and from the pipeline, collected in order.
/// </summary>
public abstract class TaskListCmdletBase : TaskCmdletBase
{
    /// <summary>The tasks, given at position 0 or through the pipeline.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    [AsyncTaskArgument]
    [ValidateNotNullOrEmpty]
    public AsyncTask[] Task { get; set; } = null!;

    /// <inheritdoc />
    protected override void ProcessRecord() => Collect(Task);
}

/// <summary>
/// Base of the cmdlets that select tasks as Receive-Job and Stop-Job do (Receive-AsyncTask,
/// Wait-AsyncTask, Stop-AsyncTask): <c>-Task</c> (position 0 and the pipeline), <c>-Id</c> or
/// <c>-Name</c> (wildcards) among the session's tasks. Each cmdlet names <see cref="TaskSet"/>
/// its default parameter set.
/// </summary>
public abstract class TaskSelectionCmdletBase : TaskCmdletBase
{
    internal const string TaskSet = "Task";
    internal const string IdSet = "Id";
    internal const string NameSet = "Name";

    /// <summary>The tasks, given at position 0 or through the pipeline.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = TaskSet)]
    [AsyncTaskArgument(HasNameAndId = true)]
    [ValidateNotNullOrEmpty]
    public AsyncTask[] Task { get; set; } = null!;

    /// <summary>Ids of the session's tasks.</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true, ParameterSetName = IdSet)]
    [ArgumentCompleter(typeof(TaskIdCompleter))]
    public long[] Id { get; set; } = null!;

    /// <summary>Names of the session's tasks (wildcards allowed).</summary>
    [Parameter(Mandatory = true, ParameterSetName = NameSet)]
    [ArgumentCompleter(typeof(TaskNameCompleter))]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = null!;

    /// <summary>The tasks this ProcessRecord selects; an unknown -Id or -Name writes AsyncGroup.TaskNotFound.</summary>
    internal IEnumerable<AsyncTask> SelectedTasks() => ParameterSetName switch
    {
        IdSet => TaskLookup.ById(this, Id),
        NameSet => TaskLookup.ByName(this, Name),
        _ => Task,
    };

    /// <inheritdoc />
    protected override void ProcessRecord() => Collect(SelectedTasks());
}
