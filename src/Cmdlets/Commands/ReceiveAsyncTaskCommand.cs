using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Management.Automation;
using System.Threading.Tasks;
using AsyncGroup.Core;

namespace AsyncGroup.Commands;

/// <summary>
/// <para type="synopsis">Emits tasks' output and re-raises their errors (asyncio's Task.result and as_completed).</para>
/// </summary>
[Cmdlet(VerbsCommunications.Receive, "AsyncTask", DefaultParameterSetName = TaskSelectionCmdletBase.TaskSet)]
[OutputType(typeof(object))]
public sealed class ReceiveAsyncTaskCommand : TaskSelectionCmdletBase
{
    /// <summary>Wait for each task to finish (in input order) instead of refusing unfinished ones.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    /// <summary>Wait, and emit each task's output as it finishes (completion order).</summary>
    [Parameter]
    public SwitchParameter AsCompleted { get; set; }

    /// <summary>With -Wait or -AsCompleted: seconds to wait at most; then a timeout error (the tasks keep running).</summary>
    [Parameter]
    [ValidateRange(0.0, 2147483.0)]
    public double Timeout { get; set; }

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        if (!RequireTasks())
        {
            return;
        }

        TimeSpan? timeout = BoundSeconds(nameof(Timeout), Timeout);
        AttachTasks(Collected); // buffered and live stream records reach the caller

        try
        {
            if (AsCompleted)
            {
                ReceiveAsCompleted(timeout);
            }
            else if (Wait)
            {
                ReceiveInOrder(timeout);
            }
            else
            {
                DrainAvailable();
                foreach (AsyncTask task in Collected)
                {
                    if (task.IsDone)
                    {
                        Emit(task);
                    }
                    else
                    {
                        WriteError(new ErrorRecord(
                            new InvalidOperationException($"Task '{task.Name}' is still {task.State}; use -Wait to wait for its result."),
                            ErrorIds.TaskNotDone,
                            ErrorCategory.ResourceBusy,
                            task));
                    }
                }
            }

            ReleaseTasks(Collected, drain: true);
        }
        finally
        {
            ReleaseTasks(Collected, drain: false);
        }
    }

    private void ReceiveAsCompleted(TimeSpan? timeout)
    {
        IReadOnlyList<Task<WorkTask>> slots = AsyncOps.AsCompleted(Collected.Select(t => (WorkTask)t.Work).ToList(), timeout, PipelineStopToken);
        foreach (Task<WorkTask> slot in slots)
        {
            WorkTask done;
            try
            {
                done = Await(slot);
            }
            catch (TimeoutException ex)
            {
                ThrowTerminatingError(ErrorHelper.Timeout(ex, Collected.Where(t => !t.IsDone).ToArray()));
                return;
            }
            catch (OperationCanceledException)
            {
                throw new PipelineStoppedException();
            }

            Emit((AsyncTask)done.Tag!);
        }
    }

    private void ReceiveInOrder(TimeSpan? timeout)
    {
        var clock = Stopwatch.StartNew();
        foreach (AsyncTask task in Collected)
        {
            TimeSpan? left = Remaining(timeout, clock);
            WaitOutcome outcome;
            try
            {
                outcome = Await(AsyncOps.WaitAsync(new WorkTask[] { task.Work }, ReturnWhen.AllCompleted, left, PipelineStopToken));
            }
            catch (OperationCanceledException)
            {
                throw new PipelineStoppedException();
            }

            if (outcome.TimedOut)
            {
                ThrowTerminatingError(ErrorHelper.Timeout(
                    new TimeoutException($"Task '{task.Name}' did not finish within {timeout!.Value.TotalSeconds:0.###} s; it is still running."),
                    task));
            }

            Emit(task);
        }
    }

    private void Emit(AsyncTask task)
    {
        DrainAvailable();
        if (task.State == WorkTaskState.Completed)
        {
            foreach (PSObject item in task.Output)
            {
                WriteObject(item);
            }
        }
        else
        {
            WriteError(ErrorHelper.ForTask(task));
        }
    }
}
