using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;

namespace AsyncGroup.Commands;

/// <summary>
/// <para type="synopsis">Requests cancellation of tasks (asyncio's Task.cancel). Stopping a finished task is not an error.</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Stop, "AsyncTask", DefaultParameterSetName = TaskSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(AsyncTask))]
public sealed class StopAsyncTaskCommand : TaskCmdletBase
{
    private const string TaskSet = "Task";
    private const string IdSet = "Id";
    private const string NameSet = "Name";

    /// <summary>The tasks to cancel.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = TaskSet)]
    [ValidateNotNullOrEmpty]
    public AsyncTask[] Task { get; set; } = null!;

    /// <summary>Ids of the session's tasks to cancel.</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true, ParameterSetName = IdSet)]
    [ArgumentCompleter(typeof(TaskIdCompleter))]
    public long[] Id { get; set; } = null!;

    /// <summary>Names (wildcards allowed) of the session's tasks to cancel.</summary>
    [Parameter(Mandatory = true, ParameterSetName = NameSet)]
    [ArgumentCompleter(typeof(TaskNameCompleter))]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = null!;

    /// <summary>Output each task after requesting its cancellation.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        IEnumerable<AsyncTask> targets = ParameterSetName switch
        {
            IdSet => TaskLookup.ById(this, Id),
            NameSet => TaskLookup.ByName(this, Name),
            _ => Task,
        };

        foreach (AsyncTask task in targets)
        {
            EnsureLocal(task);
            if (ShouldProcess($"{task.Name} (Id {task.Id}, {task.State})", "Cancel"))
            {
                task.Cancel(); // false when already done: not an error
                if (PassThru)
                {
                    WriteObject(task);
                }
            }
        }
    }
}
