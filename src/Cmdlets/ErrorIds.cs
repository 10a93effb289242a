namespace AsyncGroup;

/// <summary>
/// The stable error identifiers this module writes. PowerShell appends the command's type
/// name, so a test asserts e.g. <c>AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand</c>.
/// </summary>
public static class ErrorIds
{
    /// <summary>A task's script block threw a terminating error.</summary>
    public const string TaskFailed = "AsyncGroup.TaskFailed";

    /// <summary>A task was cancelled (by Stop-AsyncTask, its owner or a sibling's failure).</summary>
    public const string TaskCancelled = "AsyncGroup.TaskCancelled";

    /// <summary>A deadline expired (-Timeout, -TaskTimeout).</summary>
    public const string Timeout = "AsyncGroup.Timeout";

    /// <summary>A task group failed: the exception is a TaskGroupException with every error.</summary>
    public const string TaskGroupFailed = "AsyncGroup.TaskGroupFailed";

    /// <summary>Receive-AsyncTask without -Wait on a task that has not finished.</summary>
    public const string TaskNotDone = "AsyncGroup.TaskNotDone";

    /// <summary>A task object that belongs to another runspace.</summary>
    public const string ForeignTask = "AsyncGroup.ForeignTask";

    /// <summary>A parameter value is not usable (empty script block, unknown function, …).</summary>
    public const string InvalidArgument = "AsyncGroup.InvalidArgument";

    /// <summary>A $using: value is a script block, which cannot cross runspaces safely.</summary>
    public const string UsingScriptBlock = "AsyncGroup.UsingScriptBlock";

    /// <summary>No task matched -Id or -Name.</summary>
    public const string TaskNotFound = "AsyncGroup.TaskNotFound";

    /// <summary>A worker runspace could not be created (for example a module in -ImportModule is missing).</summary>
    public const string WorkerFailed = "AsyncGroup.WorkerFailed";

    /// <summary>A remoting session (-Session) was unusable, broke or dropped while it ran the task (category ConnectionError).</summary>
    public const string SessionFailed = "AsyncGroup.SessionFailed";

    /// <summary>A task was added to a task group that is finishing or finished.</summary>
    public const string GroupClosed = "AsyncGroup.GroupClosed";
}
