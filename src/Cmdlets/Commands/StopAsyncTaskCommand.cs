using System.Management.Automation;

namespace AsyncGroup.Commands;

/// <summary>
/// <para type="synopsis">Requests cancellation of tasks (asyncio's Task.cancel). Stopping a finished task is not an error.</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Stop, "AsyncTask", DefaultParameterSetName = TaskSelectionCmdletBase.TaskSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(AsyncTask))]
public sealed class StopAsyncTaskCommand : TaskSelectionCmdletBase
{
    /// <summary>Output each task after requesting its cancellation.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        foreach (AsyncTask task in SelectedTasks())
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
