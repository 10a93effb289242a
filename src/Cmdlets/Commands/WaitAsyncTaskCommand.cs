using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Management.Automation;
using AsyncGroup.Core;

namespace AsyncGroup.Commands;

/// <summary>
/// <para type="synopsis">Waits for tasks with a deadline and emits their output; on expiry cancels what is unfinished and throws a timeout error (asyncio's wait_for).</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Wait, "AsyncTask", DefaultParameterSetName = TaskSelectionCmdletBase.TaskSet)]
[OutputType(typeof(object))]
public sealed class WaitAsyncTaskCommand : TaskSelectionCmdletBase
{
    /// <summary>Seconds to wait at most (for all the tasks together); unfinished tasks are then cancelled.</summary>
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
        var clock = Stopwatch.StartNew();
        var timedOut = new List<AsyncTask>();
        TimeoutException? firstTimeout = null;
        AttachTasks(Collected);

        try
        {
            foreach (AsyncTask task in Collected)
            {
                TimeSpan? left = Remaining(timeout, clock);
                IReadOnlyList<PSObject> output;
                try
                {
                    // Not the stop token: Ctrl+C ends the wait but, unlike the timeout, cancels nothing
                    // (tasks passed in are the caller's). The pump notices the stop.
                    output = Await(AsyncOps.WaitForAsync(task.Work, left));
                }
                catch (TimeoutException ex) when (task.State == WorkTaskState.Cancelled)
                {
                    firstTimeout ??= ex;
                    timedOut.Add(task);
                    continue;
                }
                catch (Exception ex) when (ex is not PipelineStoppedException && task.IsDone)
                {
                    DrainAvailable();
                    WriteError(ErrorHelper.ForTask(task));
                    continue;
                }

                DrainAvailable();
                foreach (PSObject item in output)
                {
                    WriteObject(item);
                }
            }

            ReleaseTasks(Collected, drain: true);
        }
        catch (PipelineStoppedException)
        {
            // asyncio's wait_for: cancelling the wait cancels what it awaits. Bounded, and the
            // stop is rethrown at once afterwards.
            var unfinished = Collected.Where(t => !t.IsDone).ToList();
            unfinished.ForEach(t => t.Cancel());
            System.Threading.Tasks.Task.WhenAll(unfinished.Select(t => t.Work.Completion)).Wait(ShutdownBound);
            throw;
        }
        finally
        {
            ReleaseTasks(Collected, drain: false);
        }

        if (firstTimeout is not null)
        {
            string which = timedOut.Count == 1 ? $"Task '{timedOut[0].Name}'" : $"{timedOut.Count} tasks";
            ThrowTerminatingError(ErrorHelper.Timeout(
                new TimeoutException($"{which} did not complete within {timeout!.Value.TotalSeconds:0.###} s and {(timedOut.Count == 1 ? "was" : "were")} cancelled.", firstTimeout),
                timedOut.Count == 1 ? timedOut[0] : timedOut.ToArray()));
        }
    }
}
