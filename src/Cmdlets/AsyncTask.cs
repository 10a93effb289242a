using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Threading;
using System.Threading.Tasks;
using AsyncGroup.Core;
using AsyncGroup.Execution;

namespace AsyncGroup;

/// <summary>
/// A script block running (or run) in a worker runspace: what Start-AsyncTask returns and the
/// other cmdlets take. Its state machine is the Core engine's <see cref="WorkTask"/>.
/// </summary>
/// <remarks>
/// Guarantees: <see cref="Output"/> holds what the script block wrote to the output stream,
/// <see cref="Errors"/> every non-terminating error it wrote, <see cref="Error"/> the terminating
/// error that failed it (with its script stack trace). Stream records (warnings, verbose, …) are
/// buffered until a cmdlet delivers them (Receive-AsyncTask, or live while a cmdlet waits on the task).
/// </remarks>
public sealed class AsyncTask
{
    private readonly List<PSObject> _output = new();
    // The output list doubles as the task's lock (never handed out: Output returns a copy), one
    // object fewer for each task a long gather creates.
    private object _gate => _output;
    // Made on first use, under the gate: most tasks write no error, and a task whose records a
    // cmdlet delivers live never buffers one (a long gather creates one task per input).
    private List<ErrorRecord>? _errors;
    private Queue<StreamMessage>? _buffered;
    // The Core task, set when it hands its work off (HandOff) or when the cmdlet binds it,
    // whichever comes first. The executor ends its work (SetCompleted, SetFailed, SetCancelled)
    // on the worker's thread, never under a lock: Core's bookkeeping runs there at once.
    private WorkTask<IReadOnlyList<PSObject>>? _work;
    private IStreamSink? _sink;
    private Stack<IStreamSink>? _outerSinks;
    private ErrorRecord? _error;
    private EventHandler? _completed;
    private Worker? _runningOn;
    private RemoteWorker? _runningRemotely;
    private DateTimeOffset? _startedAt;
    private int _queued;
    private OutputNotice? _pendingNotice; // the open TaskOutput notice waiting in the sink, if any
    private bool _wantsOutputNotices;
    private int _runStarted;
    private List<AsyncTask>? _children;
    private int _liveChildren;
    private static int s_lastHash;
    // One delegate for every task: the Core task of an AsyncTask carries it as its Tag.
    private static readonly Action<WorkTask> s_onDone = static w => ((AsyncTask)w.Tag!).OnDone();
    // Cancelling a task that was queued takes it out of its batch's queue, or stops its worker.
    private static readonly Action<object?> s_onCancel = static s =>
    {
        var task = (AsyncTask)s!;
        if (Volatile.Read(ref task._queued) != 0)
        {
            task.Batch.Cancel(task);
        }
    };
    private readonly int _hash = Interlocked.Increment(ref s_lastHash);

    internal AsyncTask(ScriptBatch batch, object? input, bool hasInput, object?[] arguments, Guid ownerRunspaceId)
    {
        Batch = batch;
        InputObject = input;
        HasInput = hasInput;
        Arguments = arguments;
        OwnerRunspaceId = ownerRunspaceId;
        batch.Register();
    }

    /// <summary>Raised once when the task reaches its final state (usable with Register-ObjectEvent).</summary>
    public event EventHandler? Completed
    {
        add
        {
            lock (_gate)
            {
                _completed += value;
            }
        }

        remove
        {
            lock (_gate)
            {
                _completed -= value;
            }
        }
    }

    /// <summary>Process-unique identifier.</summary>
    public long Id => Work.Id;

    /// <summary>The task's name (<c>Task-&lt;Id&gt;</c> unless -Name was given).</summary>
    public string Name => Work.Name;

    /// <summary>The name once the Core task is bound, else null (a worker may start a task a moment before its cmdlet binds it).</summary>
    internal string? NameIfBound => Volatile.Read(ref _work)?.Name;

    /// <summary>Pending, Running, Completed, Failed or Cancelled.</summary>
    /// <remarks>Running only once a worker has started it: a task waiting in its batch's queue is Pending.</remarks>
    public WorkTaskState State => Work.State == WorkTaskState.Running && _startedAt is null ? WorkTaskState.Pending : Work.State;

    /// <summary>True once the state is final.</summary>
    public bool IsDone => Work.IsDone;

    /// <summary>The script block's text.</summary>
    public string Command => Batch.Plan.DisplayText;

    /// <summary>The pipeline object bound to <c>$_</c>, if any.</summary>
    public object? InputObject { get; }

    /// <summary>What the script block wrote to the output stream (so far, while it runs).</summary>
    public PSObject[] Output
    {
        get
        {
            lock (_gate)
            {
                return _output.ToArray();
            }
        }
    }

    /// <summary>The terminating error that failed the task (Failed only).</summary>
    public ErrorRecord? Error
    {
        get
        {
            lock (_gate)
            {
                return _error;
            }
        }
    }

    /// <summary>The non-terminating errors the script block wrote.</summary>
    public ErrorRecord[] Errors
    {
        get
        {
            lock (_gate)
            {
                return _errors?.ToArray() ?? Array.Empty<ErrorRecord>();
            }
        }
    }

    /// <summary>The code the script block gave to <c>exit</c>; null when it did not call <c>exit</c>.</summary>
    /// <remarks><c>exit</c> ends the task, not the worker: the task completes with what it wrote before.</remarks>
    public int? ExitCode { get; private set; }

    /// <summary>When a worker started running the script block; null if it never ran.</summary>
    public DateTime? StartTime => _startedAt?.LocalDateTime;

    /// <summary>When the task reached its final state.</summary>
    public DateTime? EndTime => Work.EndTime?.LocalDateTime;

    /// <summary>How long it ran.</summary>
    public TimeSpan? Duration => _startedAt is { } s && Work.EndTime is { } e ? e - s : null;

    internal WorkTask<IReadOnlyList<PSObject>> Work => _work ?? throw new InvalidOperationException("The task is not bound yet.");

    internal ScriptBatch Batch { get; }

    internal bool HasInput { get; }

    internal object?[] Arguments { get; }

    internal Guid OwnerRunspaceId { get; }

    /// <summary>The worker running it right now, if any (read by cancellation from other threads).</summary>
    /// <remarks>
    /// Set with a full fence: a worker sets it and then reads the task's token, while a cancellation
    /// cancels the token and then reads this. With a plain store the worker's read could pass its
    /// own write, and each side would miss the other: the task would run with nobody to stop it.
    /// </remarks>
    internal Worker? RunningOn
    {
        get => Volatile.Read(ref _runningOn);
        set => Interlocked.Exchange(ref _runningOn, value);
    }

    /// <summary>
    /// The task whose script block started this one (Start-AsyncTask, Invoke-Gather or
    /// Start-TaskGroup inside a task), or null for a task the session started itself.
    /// </summary>
    public AsyncTask? Parent { get; private set; }

    /// <summary>
    /// True for a task started with -Shield: cancellation from above (its group, the task that
    /// started it, an outer stop) does not reach it, and its owner waits for it instead.
    /// </summary>
    public bool IsShielded => Work.IsShielded;
    /// <summary>The remote worker running it right now, if any (-Session). Set with a full fence, as <see cref="RunningOn"/>.</summary>
    internal RemoteWorker? RunningRemotely
    {
        get => Volatile.Read(ref _runningRemotely);
        set => Interlocked.Exchange(ref _runningRemotely, value);
    }

    /// <summary>The computer of the remoting session that ran it (-Session); null for a local task.</summary>
    public string? ComputerName { get; internal set; }

    /// <summary>Position in the gather that created it (-1 outside a gather).</summary>
    internal int Index { get; set; } = -1;

    /// <summary>Requests cancellation; false when the task is already done.</summary>
    public bool Cancel() => Work.Cancel();

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({State})";

    /// <summary>Equality stays reference equality; the hash is assigned at creation.</summary>
    /// <remarks>The cmdlets key several tables by task, once per pipeline input: the runtime's
    /// object hash, made on first use, showed up as a hot spot on the pipeline thread.</remarks>
    public override int GetHashCode() => _hash;

    /// <inheritdoc />
    public override bool Equals(object? obj) => ReferenceEquals(this, obj);

    /// <summary>
    /// The Core work of every task (hand-off work, one delegate for all): queue the task on its
    /// batch; a worker ends the work once it has run it. The Core task's Tag is the AsyncTask.
    /// </summary>
    internal static readonly Action<WorkTask<IReadOnlyList<PSObject>>> HandOffWork = static w => ((AsyncTask)w.Tag!).HandOff(w);

    private void HandOff(WorkTask<IReadOnlyList<PSObject>> work)
    {
        Volatile.Write(ref _work, work); // a worker may end it before the cmdlet binds it
        CancellationToken = work.CancellationToken;
        EnqueueOnce(work.CancellationToken);
    }

    /// <summary>Binds the Core task that runs this one; called once, right after the Core task is created.</summary>
    internal void Bind(WorkTask<IReadOnlyList<PSObject>> work)
    {
        Volatile.Write(ref _work, work);
        work.AddPermanentDoneCallback(s_onDone);
        work.OnCancelRequested(s_onCancel, this); // at once if it was cancelled while being queued
        if (Volatile.Read(ref _runStarted) == 1)
        {
            work.StartTimeout();
        }
    }

    /// <summary>The token Core handed to the work: cancelled when the task is asked to stop.</summary>
    internal CancellationToken CancellationToken { get; private set; }

    private void EnqueueOnce(CancellationToken cancellationToken)
    {
        Interlocked.Exchange(ref _queued, 1);
        Batch.Enqueue(this, cancellationToken);
    }

    /// <summary>A worker starts running the task now.</summary>
    internal void MarkStarted()
    {
        _startedAt = DateTimeOffset.UtcNow; // read as local time; Now looked up the time zone per item
        Interlocked.Exchange(ref _runStarted, 1);

        // Its own timeout counts from here, not from when it was queued. A worker may start it
        // before Bind: then Bind starts the timeout.
        Volatile.Read(ref _work)?.StartTimeout();
    }

    internal void AddOutput(PSObject item)
    {
        lock (_gate)
        {
            _output.Add(item);
            if (_wantsOutputNotices && _sink is not null && _pendingNotice is null)
            {
                // One notice until the cmdlet reads (or a record closes it): a task writing
                // thousands of objects does not post thousands of messages.
                _pendingNotice = new OutputNotice();
                _sink.Post(new StreamMessage(StreamKind.TaskOutput, _pendingNotice, this));
            }
        }
    }

    /// <summary>
    /// From now on, writing output posts a TaskOutput notice to the attached sink (once until read
    /// with <see cref="OutputFrom"/>). Only tasks whose output a cmdlet streams ask for it, so the
    /// others cost no message per task.
    /// </summary>
    internal void RequestOutputNotices()
    {
        lock (_gate)
        {
            _wantsOutputNotices = true;
        }
    }

    /// <summary>
    /// Asks for output notices (see <see cref="RequestOutputNotices"/>) and posts one to
    /// <paramref name="sink"/> for the output written so far — only that: what the task writes
    /// later comes with notices of its own, behind the records it posts meanwhile. A task that has
    /// written nothing yet posts nothing (a gather asks this of each new head of its order).
    /// </summary>
    internal void PostOutputNotice(IStreamSink sink)
    {
        lock (_gate)
        {
            _wantsOutputNotices = true;
            if (_output.Count == 0)
            {
                return; // nothing to release yet: its first output posts the notice (AddOutput)
            }

            sink.Post(new StreamMessage(StreamKind.TaskOutput, new OutputNotice { Limit = _output.Count }, this));
        }
    }

    /// <summary>
    /// The output written since <paramref name="start"/> objects were read, up to what
    /// <paramref name="notice"/> may release (all of it without a notice: the task has ended, or the
    /// caller reads outside the writer queue); re-arms the output notice.
    /// </summary>
    internal List<PSObject> OutputFrom(int start, OutputNotice? notice = null)
    {
        lock (_gate)
        {
            int end = _output.Count;
            if (notice is not null && notice.Limit != OutputNotice.Open)
            {
                end = Math.Min(end, notice.Limit);
            }

            if (notice is null || ReferenceEquals(notice, _pendingNotice))
            {
                _pendingNotice = null;
            }

            return start >= end ? new List<PSObject>(0) : _output.GetRange(start, end - start);
        }
    }

    internal void SetExitCode(int code) => ExitCode = code;

    internal void AddError(ErrorRecord record)
    {
        lock (_gate)
        {
            (_errors ??= new List<ErrorRecord>()).Add(record);
        }

        Post(new StreamMessage(StreamKind.Error, record, this));
    }

    /// <summary>Routes a stream record to the live sink, or buffers it until one attaches.</summary>
    internal void Post(StreamMessage message)
    {
        lock (_gate)
        {
            if (_sink is not null)
            {
                // The output notice waiting ahead of this record releases only what was written
                // before it; later output gets a notice behind the record.
                if (_pendingNotice is not null)
                {
                    _pendingNotice.Limit = _output.Count;
                    _pendingNotice = null;
                }

                _sink.Post(message);
            }
            else
            {
                (_buffered ??= new Queue<StreamMessage>()).Enqueue(message);
            }
        }
    }

    /// <summary>Delivers buffered records to <paramref name="sink"/> and routes later ones there until detached.</summary>
    /// <remarks>Sinks nest: a Receive-AsyncTask inside a group body takes over the task's records and
    /// gives them back to the group when it detaches.</remarks>
    internal void AttachSink(IStreamSink sink)
    {
        lock (_gate)
        {
            while (_buffered is { Count: > 0 })
            {
                sink.Post(_buffered.Dequeue());
            }

            if (_sink is not null)
            {
                (_outerSinks ??= new Stack<IStreamSink>()).Push(_sink);
            }

            _sink = sink;

            // A notice taken by an earlier sink says nothing to this one.
            _pendingNotice = null;
        }
    }

    internal void DetachSink(IStreamSink sink)
    {
        lock (_gate)
        {
            if (ReferenceEquals(_sink, sink))
            {
                _sink = _outerSinks is { Count: > 0 } ? _outerSinks.Pop() : null;
            }
        }
    }

    internal void SetCompleted()
    {
        EndChildren();

        // The Core result is never read (the cmdlets read the output from this task): the list
        // itself, not a copy of it per task. Nothing is added to it once the task has ended.
        HandedTo.EndWork(_output);
    }

    internal void SetFailed(ErrorRecord record)
    {
        EndChildren();
        lock (_gate)
        {
            _error = record;
        }

        HandedTo.EndWork(record.Exception);
    }

    internal bool SetCancelled(CancellationToken token)
    {
        EndChildren();
        return HandedTo.EndWork(new OperationCanceledException(token));
    }

    /// <summary>The Core task whose work this task's executor ends (it was handed off: the task was queued).</summary>
    private WorkTask<IReadOnlyList<PSObject>> HandedTo =>
        Volatile.Read(ref _work) ?? throw new InvalidOperationException("The task's work was never handed off.");

    /// <summary>Records that <paramref name="parent"/>'s script block started this task (called once, before <see cref="Bind"/>).</summary>
    internal void SetParent(AsyncTask? parent)
    {
        if (parent is null)
        {
            return;
        }

        Parent = parent;
        Interlocked.Increment(ref parent._liveChildren);
    }

    /// <summary>The runspaces of this task and of every task above it, without repeats (the session that started the tree last).</summary>
    internal IEnumerable<Guid> TreeRunspaceIds()
    {
        var seen = new HashSet<Guid>();
        for (AsyncTask? task = this; task is not null; task = task.Parent)
        {
            if (seen.Add(task.OwnerRunspaceId))
            {
                yield return task.OwnerRunspaceId;
            }
        }
    }

    /// <summary>True when this task was started in <paramref name="runspaceId"/>, or inside a task that was (a tree that session owns).</summary>
    internal bool BelongsTo(Guid runspaceId) => TreeRunspaceIds().Contains(runspaceId);

    /// <summary>True while a task this task's script block started (in any way) has not ended.</summary>
    internal bool HasLiveChildren => Volatile.Read(ref _liveChildren) > 0;

    /// <summary>
    /// A task its script block started with Start-AsyncTask (outside a task group): owned by this
    /// task, so cancelled when this task's script ends without having awaited it.
    /// </summary>
    internal void Adopt(AsyncTask child)
    {
        lock (_gate)
        {
            (_children ??= new List<AsyncTask>()).Add(child);
        }
    }

    /// <summary>
    /// Before this task's end is published: the tasks it started and never awaited are cancelled
    /// and awaited (bounded), with a warning that names them — asyncio warns about a task destroyed
    /// while pending. So a task tree is one ownership tree: whoever waits for this task waits for
    /// everything it started.
    /// </summary>
    private void EndChildren()
    {
        AsyncTask[] left;
        lock (_gate)
        {
            if (_children is null)
            {
                return;
            }

            left = _children.Where(c => !c.IsDone).ToArray();
            _children = null;
        }

        // A shielded child is not cancelled by its owner's end: the owner waits for it instead
        // (it still ends early on its own -Timeout or an explicit Stop-AsyncTask).
        AsyncTask[] shielded = left.Where(c => c.IsShielded).ToArray();
        left = left.Where(c => !c.IsShielded).ToArray();
        if (shielded.Length > 0)
        {
            Task.WhenAll(shielded.Select(c => c.Work.Completion)).Wait();
        }

        if (left.Length == 0)
        {
            return;
        }

        foreach (AsyncTask child in left)
        {
            child.Cancel();
        }

        bool stopped = Task.WhenAll(left.Select(c => c.Work.Completion)).Wait(Commands.AsyncGroupCmdlet.ShutdownBound);
        Post(new StreamMessage(
            StreamKind.Warning,
            $"Task '{Name}' ended while {left.Length} task(s) it started were still running; they were cancelled: {string.Join(", ", left.Select(c => "'" + c.Name + "'"))}."
            + (stopped ? string.Empty : " Some did not stop in time; their runspaces are disposed when they end."),
            this));
    }

    internal bool IsExecutionDone => Volatile.Read(ref _work)?.IsWorkEnded ?? false;

    private void OnDone()
    {
        if (Parent is { } parent)
        {
            Interlocked.Decrement(ref parent._liveChildren);
        }

        if (Interlocked.Exchange(ref _queued, 1) == 0)
        {
            Batch.Unregister(); // cancelled before its work ever ran
        }

        if (State == WorkTaskState.Failed)
        {
            lock (_gate)
            {
                // Failures that did not come from the script itself (its timeout, a worker that
                // could not start) still get a record, so Error is never null on a Failed task.
                _error ??= ErrorHelper.FromException(Work.Exception!, Work.Exception is TimeoutException ? ErrorIds.Timeout : ErrorIds.TaskFailed, this);
            }
        }

        EventHandler? handlers;
        lock (_gate)
        {
            handlers = _completed;
        }

        handlers?.Invoke(this, EventArgs.Empty);
    }
}
