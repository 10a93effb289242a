using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using AsyncGroup.Core;
using AsyncGroup.Execution;

namespace AsyncGroup.Commands;

/// <summary>
/// Base of every AsyncGroup cmdlet: a stop token, one writer queue drained on the pipeline thread,
/// and ownership of the tasks the cmdlet created.
/// </summary>
/// <remarks>
/// Workers never call Write*: they post to the queue, and <see cref="Pump"/> writes on the
/// pipeline thread. <see cref="StopProcessing"/> only cancels. Before the cmdlet returns — normally,
/// by error, by Ctrl+C or because a downstream Select-Object stopped it — <see cref="ShutdownOwned"/>
/// cancels and awaits (bounded) every task the cmdlet owns.
/// </remarks>
public abstract class AsyncGroupCmdlet : PSCmdlet, IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly MessageQueue<StreamMessage> _queue = new();
    private readonly List<ScriptBatch> _batches = new();
    private readonly QueueSink _sink;
    private readonly Action<WorkTask> _postDone; // one delegate per cmdlet, not one per task
    private bool _disposed;
    private bool _ownedShutDown; // ShutdownOwned ran: the cmdlet adds no task after it

    /// <summary>
    /// The longest a cmdlet waits for its own tasks to end after cancelling them: the executor
    /// abandons a stuck worker after its grace period, so this is only a safety margin.
    /// </summary>
    internal static readonly TimeSpan ShutdownBound = Worker.StopGracePeriod + TimeSpan.FromSeconds(2);

    /// <summary>Creates the cmdlet.</summary>
    protected AsyncGroupCmdlet()
    {
        _sink = new QueueSink(_queue);
        _postDone = w => _sink.Post(new StreamMessage(StreamKind.TaskDone, null, (AsyncTask)w.Tag!));
    }

    /// <summary>Cancelled when the pipeline is stopped (Ctrl+C). Named as PowerShell 7.6's own.</summary>
    protected CancellationToken PipelineStopToken => _stop.Token;

    internal IStreamSink Sink => _sink;

    /// <summary>The id of the runspace the cmdlet runs in: tasks belong to it.</summary>
    internal static Guid CurrentRunspaceId => Runspace.DefaultRunspace?.InstanceId ?? Guid.Empty;

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        ShutdownOwned(writeWarnings: false);
        _stop.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Only cancels: never blocks, never writes.</summary>
    protected override void StopProcessing() => _stop.Cancel();

    /// <summary>
    /// The tasks this cmdlet created and must not leave running that are not known to be done yet,
    /// in creation order (<see cref="ShutdownOwned"/> cancels them in that order). A cmdlet that
    /// creates tasks keeps them itself until it lets go of them, done.
    /// </summary>
    private protected virtual IReadOnlyList<AsyncTask> OwnedTasks() => Array.Empty<AsyncTask>();

    /// <summary>Records a batch to complete when the cmdlet ends, so its idle workers go back to the pool.</summary>
    internal void TrackBatch(ScriptBatch batch) => _batches.Add(batch);

    /// <summary>Declares that no more tasks will be queued on this cmdlet's batches.</summary>
    internal void CompleteBatches()
    {
        foreach (ScriptBatch batch in _batches)
        {
            batch.Complete();
        }
    }

    /// <summary>Posts a task's completion to the writer queue (called from any thread).</summary>
    internal void NotifyWhenDone(AsyncTask task) => task.Work.AddPermanentDoneCallback(_postDone); // the Core task's Tag is the AsyncTask

    /// <summary>
    /// Writes everything workers post until <paramref name="until"/> completes, then what is left.
    /// <paramref name="onTaskDone"/> runs on this thread for each completion notice;
    /// <paramref name="onTick"/> runs about every <paramref name="tickMilliseconds"/>.
    /// </summary>
    /// <exception cref="PipelineStoppedException">The pipeline was stopped.</exception>
    internal void Pump(Task until, Action<AsyncTask>? onTaskDone = null, Action? onTick = null, int tickMilliseconds = 250)
    {
        until.ContinueWith(_ => _sink.Post(new StreamMessage(StreamKind.Wake, null)), TaskContinuationOptions.ExecuteSynchronously);
        PumpUntil(() => until.IsCompleted, onTaskDone, onTick, tickMilliseconds);
        DrainAvailable(onTaskDone);
    }

    /// <summary>
    /// Writes everything workers post until <paramref name="done"/> holds, checked on this thread
    /// after each message: a condition that only a message can make true (every task's completion
    /// notice handled, say), or one whose change posts a message (<see cref="Pump"/>).
    /// <paramref name="onTaskDone"/> and <paramref name="onTick"/> as for <see cref="Pump"/>;
    /// <paramref name="nextTickMilliseconds"/>, when given, says before each wait how long the
    /// next tick is from the last one (instead of <paramref name="tickMilliseconds"/>).
    /// </summary>
    /// <exception cref="PipelineStoppedException">The pipeline was stopped.</exception>
    internal void PumpUntil(Func<bool> done, Action<AsyncTask>? onTaskDone = null, Action? onTick = null, int tickMilliseconds = 250, Func<int>? nextTickMilliseconds = null)
    {
        var sinceTick = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            DrainAvailable(onTaskDone);
            if (done())
            {
                return;
            }

            BeforeWait();
            int tick = nextTickMilliseconds?.Invoke() ?? tickMilliseconds;
            if (!DispatchNext(onTick is null ? Timeout.Infinite : Math.Max(0, tick - (int)sinceTick.ElapsedMilliseconds), onTaskDone))
            {
                sinceTick.Restart();
                onTick!();
                continue;
            }

            // On the clock, not per message: a tick may look at every task (progress counts them).
            if (onTick is not null && sinceTick.ElapsedMilliseconds >= tick)
            {
                sinceTick.Restart();
                onTick();
            }
        }
    }

    /// <summary>
    /// Called on this thread before it blocks waiting for a message: whatever must be able to wake
    /// it (a message a running task is to post) is asked for here at the latest.
    /// </summary>
    private protected virtual void BeforeWait()
    {
    }

    /// <summary>
    /// Waits up to <paramref name="millisecondsTimeout"/> for one message and dispatches it; false
    /// when none came. A frame of its own on purpose: the message taken must not outlive its
    /// dispatch in a local of the pump's loop, where it kept its task (and that task's output)
    /// alive until the next blocking wait, however long the call ran.
    /// </summary>
    /// <exception cref="PipelineStoppedException">The pipeline was stopped.</exception>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool DispatchNext(int millisecondsTimeout, Action<AsyncTask>? onTaskDone)
    {
        StreamMessage message;
        try
        {
            if (!_queue.TryTake(out message, millisecondsTimeout, PipelineStopToken))
            {
                return false;
            }
        }
        catch (OperationCanceledException)
        {
            throw new PipelineStoppedException();
        }

        Dispatch(message, onTaskDone);
        return true;
    }

    /// <summary>Writes whatever is queued now, without blocking.</summary>
    internal void DrainAvailable(Action<AsyncTask>? onTaskDone = null)
    {
        while (_queue.TryTake(out StreamMessage message))
        {
            Dispatch(message, onTaskDone);
        }
    }

    /// <summary>Pumps until <paramref name="task"/> completes and returns its result (rethrowing its exception).</summary>
    internal T Await<T>(Task<T> task, Action<AsyncTask>? onTaskDone = null)
    {
        Pump(task, onTaskDone);
        return task.GetAwaiter().GetResult();
    }

    /// <summary>Pumps until <paramref name="task"/> completes (rethrowing its exception).</summary>
    internal void Await(Task task, Action<AsyncTask>? onTaskDone = null)
    {
        Pump(task, onTaskDone);
        task.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Cancels every owned task and waits for all of them to be final. Bounded: a task whose
    /// worker does not stop is abandoned by the executor after its grace period.
    /// </summary>
    internal void ShutdownOwned(bool writeWarnings = true)
    {
        AsyncTask[] owned = _ownedShutDown ? Array.Empty<AsyncTask>() : OwnedTasks().Where(t => !t.IsDone).ToArray();
        _ownedShutDown = true;

        CompleteBatches();
        _batches.Clear();
        if (owned.Length == 0)
        {
            return;
        }

        foreach (AsyncTask task in owned)
        {
            task.Cancel();
        }

        Task all = Task.WhenAll(owned.Select(t => t.Work.Completion));
        bool ended = all.Wait(ShutdownBound);
        while (!ended && owned.Any(t => !t.IsDone && t.HasLiveChildren))
        {
            // A task tree stops from the leaves up, each level within its own grace period, and a
            // shielded task is waited for, not cancelled: a task still waiting for its children
            // is not stuck (see Worker.Stop). A stuck leaf is abandoned by its own worker.
            ended = all.Wait(ShutdownBound);
        }

        if (!ended && writeWarnings)
        {
            TryWriteWarning($"{owned.Count(t => !t.IsDone)} task(s) did not stop within {ShutdownBound.TotalSeconds:0} s; they were abandoned.");
        }

        if (writeWarnings)
        {
            // Warnings about abandoned runspaces were posted by the executor.
            try
            {
                DrainAvailable();
            }
            catch (Exception)
            {
                // The pipeline may already be stopping: nothing more can be written.
            }
        }
    }

    /// <summary>A task whose records this cmdlet delivers wrote output (on the pipeline thread); most cmdlets emit output only when a task is done.</summary>
    internal virtual void OnTaskOutput(AsyncTask task, OutputNotice? notice)
    {
    }

    internal void TryWriteWarning(string message) => TryWriteWarning(() => message);

    /// <summary>
    /// Builds and writes a warning, best effort: a warning that cannot be built or written (a
    /// stop is under way, a value's formatting throws) is dropped, so it never replaces the error
    /// it accompanies.
    /// </summary>
    internal void TryWriteWarning(Func<string> buildMessage)
    {
        try
        {
            WriteWarning(buildMessage());
        }
        catch (Exception)
        {
            // Writing after a stop throws; the warning is best effort.
        }
    }

    /// <summary>Seconds given to <paramref name="parameterName"/> as a TimeSpan, or null when the parameter was not bound.</summary>
    internal TimeSpan? BoundSeconds(string parameterName, double seconds) =>
        MyInvocation.BoundParameters.ContainsKey(parameterName) ? TimeSpan.FromSeconds(seconds) : null;

    /// <summary>What is left of <paramref name="timeout"/> after <paramref name="elapsed"/> (never negative); null for no timeout.</summary>
    internal static TimeSpan? Remaining(TimeSpan? timeout, System.Diagnostics.Stopwatch elapsed) =>
        timeout is { } t ? (t > elapsed.Elapsed ? t - elapsed.Elapsed : TimeSpan.Zero) : null;

    /// <summary>Delivers <paramref name="tasks"/>' buffered and future stream records through this cmdlet until <see cref="ReleaseTasks"/>.</summary>
    internal void AttachTasks(IEnumerable<AsyncTask> tasks)
    {
        foreach (AsyncTask task in tasks)
        {
            task.AttachSink(Sink);
        }
    }

    /// <summary>
    /// Stops delivering <paramref name="tasks"/>' stream records here, then writes what was already
    /// queued: records posted before the detach are not lost, later ones stay buffered in the task.
    /// </summary>
    internal void ReleaseTasks(IEnumerable<AsyncTask> tasks, bool drain)
    {
        foreach (AsyncTask task in tasks)
        {
            task.DetachSink(Sink);
        }

        if (drain)
        {
            DrainAvailable();
        }
    }

    /// <summary>Throws a terminating error for a parameter problem (before any task starts).</summary>
    internal void ThrowArgumentError(string message, object? target, Exception? inner = null) =>
        ThrowTerminatingError(ErrorHelper.InvalidArgument(message, target, inner));

    /// <summary>Refuses a task created in another runspace (session), unless it is part of a task tree this session started.</summary>
    internal void EnsureLocal(AsyncTask task)
    {
        if (!task.BelongsTo(CurrentRunspaceId))
        {
            ThrowTerminatingError(new ErrorRecord(
                new ArgumentException($"Task '{task.Name}' (Id {task.Id}) belongs to another PowerShell session (runspace) and cannot be used here."),
                ErrorIds.ForeignTask,
                ErrorCategory.InvalidArgument,
                task));
        }
    }

    private void Dispatch(StreamMessage message, Action<AsyncTask>? onTaskDone)
    {
        switch (message.Kind)
        {
            case StreamKind.Output:
                WriteObject(message.Payload);
                break;
            case StreamKind.Error:
                WriteError(ErrorHelper.Preserve((ErrorRecord)message.Payload!));
                break;
            case StreamKind.Warning:
            case StreamKind.Verbose:
            case StreamKind.Debug:
            case StreamKind.Information:
                WriteMessageRecord(message);
                break;
            case StreamKind.Progress:
                WriteProgress((ProgressRecord)message.Payload!);
                break;
            case StreamKind.TaskDone:
                onTaskDone?.Invoke(message.Task!);
                break;
            case StreamKind.TaskOutput:
                OnTaskOutput(message.Task!, message.Payload as OutputNotice);
                break;
            case StreamKind.Wake:
                break;
        }
    }

    /// <summary>
    /// Writes a task's warning, verbose, debug or information record, a prompt the host cannot show
    /// failing only that record (<see cref="WriteMessageOrError"/>).
    /// </summary>
    private void WriteMessageRecord(StreamMessage message) => WriteMessageOrError(
        () =>
        {
            switch (message.Kind)
            {
                case StreamKind.Warning:
                    WriteWarning(message.Payload is WarningRecord w ? w.Message : message.Payload?.ToString());
                    break;
                case StreamKind.Verbose:
                    CallerPreferences.WriteAskedForRecord(this, debug: false, () => WriteVerbose(message.Payload is VerboseRecord v ? v.Message : message.Payload?.ToString()));
                    break;
                case StreamKind.Debug:
                    CallerPreferences.WriteAskedForRecord(this, debug: true, () => WriteDebug(message.Payload is DebugRecord d ? d.Message : message.Payload?.ToString()));
                    break;
                default:
                    WriteInformation((InformationRecord)message.Payload!);
                    break;
            }
        },
        message.Task);

    /// <summary>
    /// Runs <paramref name="write"/>, a write of a relayed warning, verbose, debug or information
    /// record. Under an Inquire preference the write asks the caller's host, which may be unable to
    /// ask (a -NonInteractive process, no console input): then, as a Write-Warning in a script would,
    /// that one record fails with an error (about <paramref name="target"/> when PowerShell gives no
    /// record of its own) and the call goes on. A stop (Ctrl+C, a Stop preference, Halt at the
    /// prompt) still ends the call.
    /// </summary>
    internal void WriteMessageOrError(Action write, object? target)
    {
        try
        {
            write();
        }
        catch (Exception ex) when (ex is not PipelineStoppedException && ex is not ActionPreferenceStopException)
        {
            WriteError(ex is IContainsErrorRecord { ErrorRecord: { } record }
                ? new ErrorRecord(record, ex)
                : new ErrorRecord(ex, ex.GetType().FullName, ErrorCategory.NotSpecified, target));
        }
    }

    private sealed class QueueSink : IStreamSink
    {
        private readonly MessageQueue<StreamMessage> _queue;

        public QueueSink(MessageQueue<StreamMessage> queue) => _queue = queue;

        public void Post(StreamMessage message) => _queue.Post(message);
    }
}
