using System;
using System.Linq;
using System.Management.Automation;
using System.Threading.Tasks;
using AsyncGroup.Core;

namespace AsyncGroup.Commands;

/// <summary>
/// <para type="synopsis">Waits for tasks until all, the first, or the first failing one is done, or a timeout passes (asyncio's wait).</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Wait, "AsyncGroup")]
[OutputType(typeof(WaitResult))]
public sealed class WaitAsyncGroupCommand : TaskListCmdletBase
{
    /// <summary>When to return: AllCompleted (default), FirstCompleted or FirstException.</summary>
    [Parameter]
    public ReturnWhen ReturnWhen { get; set; } = ReturnWhen.AllCompleted;

    /// <summary>Seconds to wait at most; on expiry the result says TimedOut. Nothing is cancelled.</summary>
    [Parameter]
    [ValidateRange(0.0, 2147483.0)]
    public double Timeout { get; set; }

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        _ = RequireTasks();
        TimeSpan? timeout = BoundSeconds(nameof(Timeout), Timeout);
        Task<WaitOutcome> wait = AsyncOps.WaitAsync(Collected.Select(t => (WorkTask)t.Work).ToList(), ReturnWhen, timeout, PipelineStopToken);
        WaitOutcome outcome;
        try
        {
            outcome = Await(wait);
        }
        catch (OperationCanceledException)
        {
            throw new PipelineStoppedException();
        }

        WriteObject(WaitResult.From(outcome));
    }
}
