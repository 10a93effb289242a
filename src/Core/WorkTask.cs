using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Threading;
using System.Threading.Tasks;

namespace AsyncGroup.Core;

/// <summary>
/// A named unit of concurrent work (asyncio's Task).
/// </summary>
/// <remarks>
/// Guarantees:
/// <list type="bullet">
/// <item>It reaches exactly one final state (Completed, Failed or Cancelled), once.</item>
/// <item><see cref="Completion"/> never faults: it completes after the final state is visible.</item>
/// <item>Done callbacks run once each, in registration order, after the state is final; one
/// registered after completion runs at once on the registering thread.</item>
/// <item>Cancellation is a request: work that catches it and returns a value completes with it.
/// A task that is cancelled before it starts never invokes its work.</item>
/// <item>An <see cref="OperationCanceledException"/> thrown by the work counts as cancellation only
/// when this task was asked to cancel; otherwise (say, an HTTP client's own timeout) it is a
/// failure, so that a group never mistakes a real error for a sibling's cancellation.</item>
/// </list>
/// </remarks>
public abstract class WorkTask
{
    private const int CauseNone = 0;
    private const int CauseRequested = 1;
    private const int CauseTimeout = 2;

    private static long s_lastId;

    // Queued with ThreadPool.QueueUserWorkItem rather than Task.Run(Run): same pool, same
    // ExecutionContext flow, but no delegate, Task<Task> and unwrap promise per task.
    private static readonly WaitCallback s_run = static s => ((WorkTask)s!).Run();

    private readonly object _gate = new();
    // Made when Completion is first read (under the gate): most tasks of a long gather are never
    // awaited one by one, and a completion source and its task cost two objects per input.
    private TaskCompletionSource<WorkTask>? _completion;
    private readonly CancellationTokenSource _cts = new();
    private Action<object?>? _cancelHandler; // see OnCancelRequested
    private object? _cancelHandlerState;
    private int _cancelHandled;
    private readonly ConcurrencyLimiter? _limiter;
    private readonly TimeSpan? _timeout;
    private CancellationTokenRegistration _parentRegistration;
    private CancellationTokenSource? _timeoutCts;
    private bool _timeoutDone;
    private Task? _slot;
    private Task? _work; // the work's task while it runs (see RunWork)
    private readonly bool _startInline;
    private readonly bool _deferTimeout;
    // Done callbacks in registration order, linked through their entries: a task of a gather has
    // three (the gather's, its cmdlet task's and its cmdlet's), and a list of them cost two more
    // allocations per pipeline input.
    private DoneCallback? _firstCallback;
    private DoneCallback? _lastCallback;
    // The first permanent callbacks (AddPermanentDoneCallback), held in fields rather than
    // entries: the gather's, its cmdlet task's and its cmdlet's, one object less each per input.
    private Action<WorkTask>? _permanent0;
    private Action<WorkTask>? _permanent1;
    private Action<WorkTask>? _permanent2;
    private bool _callbacksTaken;
    private int _state;
    private int _cancelCause;
    private int _started;
    private int _workEnded; // 1 once the work's end is claimed (EndWork): a hand-off may be ended only once
    private string? _name;

    // UTC: DateTime.UtcNow is several times cheaper than DateTimeOffset.Now (no time-zone lookup
    // per task); the properties convert to local time when read.
    private DateTime? _startUtc;
    private DateTime? _endUtc;

    private protected WorkTask(string? name, TaskStartOptions? options, object? tag = null)
    {
        Id = Interlocked.Increment(ref s_lastId);
        _name = string.IsNullOrEmpty(name) ? null : name; // the default is built on first read
        CancellationToken = _cts.Token;
        _limiter = options?.Limiter;
        _timeout = options?.Timeout;
        // Checked here, not left to the timer: a CancellationTokenSource refuses delays over
        // int.MaxValue ms, and that throw inside the worker would leave the task Running for ever.
        if (_timeout is { } t && (t < TimeSpan.Zero || t.TotalMilliseconds > int.MaxValue))
        {
            throw new ArgumentOutOfRangeException(nameof(options), t, "A task timeout must be zero or positive (and under 24 days).");
        }

        IsShielded = options?.Shielded ?? false;
        _startInline = options?.StartInline ?? false;
        _deferTimeout = options?.DeferTimeout ?? false;
        Tag = tag ?? options?.Tag;
        CancellationToken parent = options?.CancellationToken ?? default;
        if (parent.CanBeCanceled && !IsShielded)
        {
            // Registered last: it may run synchronously when the parent is already cancelled.
            _parentRegistration = parent.Register(static s => ((WorkTask)s!).RequestCancel(CauseRequested), this);
        }
    }

    /// <summary>Raised when a done callback or <see cref="Completed"/> handler throws; the task's state is unaffected.</summary>
    public static event EventHandler<CallbackFailedEventArgs>? CallbackFailed;

    /// <summary>Raised once, after the final state is visible.</summary>
    public event EventHandler? Completed;

    /// <summary>Process-unique, increasing identifier.</summary>
    public long Id { get; }

    /// <summary>The task's name; <c>Task-&lt;Id&gt;</c> unless one was given.</summary>
    public string Name => _name ??= "Task-" + Id.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Caller-defined data carried with the task (for example the input it was made from).</summary>
    public object? Tag { get; }

    /// <summary>True when the task ignores its parent's (group's) cancellation.</summary>
    public bool IsShielded { get; }

    /// <summary>The current state.</summary>
    public WorkTaskState State => (WorkTaskState)Volatile.Read(ref _state);

    /// <summary>True once the state is final.</summary>
    public bool IsDone => IsFinal(State);

    /// <summary>True once cancellation was requested (by <see cref="Cancel"/>, the parent or the timeout).</summary>
    public bool IsCancellationRequested => Volatile.Read(ref _cancelCause) != CauseNone;

    /// <summary>The token handed to the work; cancelled when cancellation is requested.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>The failure (Failed) or the cancellation (Cancelled); null otherwise.</summary>
    public Exception? Exception { get; private set; }

    /// <summary>When the work was invoked; null while Pending or if it never ran.</summary>
    public DateTimeOffset? StartTime => _startUtc is { } s ? new DateTimeOffset(s).ToLocalTime() : null;

    /// <summary>When the state became final.</summary>
    public DateTimeOffset? EndTime => _endUtc is { } e ? new DateTimeOffset(e).ToLocalTime() : null;

    /// <summary>How long the work ran; null until it has both started and finished.</summary>
    public TimeSpan? Duration => _startUtc is { } s && _endUtc is { } e ? e - s : null;

    /// <summary>Completes (never faults) when the state is final.</summary>
    public Task<WorkTask> Completion
    {
        get
        {
            lock (_gate)
            {
                if (_completion is null)
                {
                    _completion = new TaskCompletionSource<WorkTask>(TaskCreationOptions.RunContinuationsAsynchronously);
                    if (_callbacksTaken)
                    {
                        _completion.TrySetResult(this); // already final (TryFinish has run, or is running)
                    }
                }

                return _completion.Task;
            }
        }
    }

    /// <summary>The result as an object when Completed; null otherwise.</summary>
    public abstract object? ResultObject { get; }

    internal static bool IsFinal(WorkTaskState state) => state >= WorkTaskState.Completed;

    /// <summary>
    /// Requests cancellation (asyncio's Task.cancel). Returns false when the task is already done.
    /// A Pending task becomes Cancelled at once; a Running one is cancelled when its work observes it.
    /// </summary>
    public bool Cancel() => RequestCancel(CauseRequested);

    /// <summary>
    /// Registers <paramref name="callback"/> to run once after the task is done (asyncio's
    /// add_done_callback). Runs at once when the task is already done. Dispose the result to
    /// unregister a callback that has not run yet.
    /// </summary>
    public IDisposable AddDoneCallback(Action<WorkTask> callback)
    {
        if (callback is null)
        {
            throw new ArgumentNullException(nameof(callback));
        }

        var entry = new DoneCallback(this, callback);
        lock (_gate)
        {
            if (!_callbacksTaken)
            {
                if (_lastCallback is null)
                {
                    _firstCallback = entry;
                }
                else
                {
                    _lastCallback.Next = entry;
                }

                _lastCallback = entry;
                return entry;
            }
        }

        InvokeSafely(callback);
        return entry;
    }

    /// <summary>
    /// As <see cref="AddDoneCallback"/> for a callback that is never unregistered: the first three
    /// are kept without an entry object (each pipeline input of a gather registers three).
    /// Registration order is kept across both kinds: once an entry is registered, permanent
    /// callbacks go into entries too.
    /// </summary>
    internal void AddPermanentDoneCallback(Action<WorkTask> callback)
    {
        if (callback is null)
        {
            throw new ArgumentNullException(nameof(callback));
        }

        lock (_gate)
        {
            if (!_callbacksTaken && _firstCallback is null)
            {
                if (_permanent0 is null)
                {
                    _permanent0 = callback;
                    return;
                }

                if (_permanent1 is null)
                {
                    _permanent1 = callback;
                    return;
                }

                if (_permanent2 is null)
                {
                    _permanent2 = callback;
                    return;
                }
            }
        }

        _ = AddDoneCallback(callback); // after the fields (or already done: runs at once)
    }

    /// <summary>Rethrows the task's failure or cancellation; returns when it completed.</summary>
    public void ThrowIfNotCompleted()
    {
        switch (State)
        {
            case WorkTaskState.Completed:
                return;
            case WorkTaskState.Failed:
            case WorkTaskState.Cancelled:
                ExceptionDispatchInfo.Capture(Exception!).Throw();
                return;
            default:
                throw new InvalidOperationException($"Task '{Name}' is not done (state {State}).");
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({State})";

    /// <summary>Starts the work on the thread pool. Called once by the factory that created the task.</summary>
    internal void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0)
        {
            throw new InvalidOperationException("The task was already started.");
        }

        // Queue for a slot here, on the creator's thread: the limiter admits waiters first-in
        // first-out, so tasks are admitted in creation order. Queued from the pool instead, the
        // order would be whatever order the pool ran Run in (LIFO for a pool thread's own queue).
        _slot = _limiter?.WaitAsync(CancellationToken);

        // Never run user work on the creator's thread: creating a task must not block — unless
        // the creator declared that the work's synchronous part only hands off (StartInline).
        if (_startInline)
        {
            Run();
        }
        else
        {
            ThreadPool.QueueUserWorkItem(s_run, this);
        }
    }

    /// <summary>Invokes the work: its task, or null when the work was handed off (it ends through EndWork).</summary>
    private protected abstract Task? InvokeWorkAsync(CancellationToken cancellationToken);

    private protected abstract void SetResult();

    /// <summary>Runs the work once a slot is taken (at once without a limiter).</summary>
    private void Run()
    {
        if (_slot is null)
        {
            RunWork();
        }
        else
        {
            _ = RunAfterSlotAsync();
        }
    }

    private async Task RunAfterSlotAsync()
    {
        try
        {
            await _slot!.ConfigureAwait(false);
        }
        catch (OperationCanceledException oce)
        {
            TryFinish(WorkTaskState.Cancelled, oce, setResult: false);
            EndRun(slotTaken: false);
            return;
        }

        RunWork();
    }

    /// <summary>
    /// Moves the task to Running, invokes the work and settles the task when the work ends.
    /// Without an async state machine: a gather over a long pipeline runs this once per input,
    /// and the continuation is one delegate on the work's task, run where the work completes.
    /// A task with a limiter gets here only once its slot is taken.
    /// </summary>
    private void RunWork()
    {
        bool cancelledWhileQueued = false;
        lock (_gate)
        {
            if (State != WorkTaskState.Pending)
            {
                cancelledWhileQueued = true;
            }
            else
            {
                _startUtc = DateTime.UtcNow;
                Volatile.Write(ref _state, (int)WorkTaskState.Running);
            }
        }

        if (cancelledWhileQueued)
        {
            EndRun(SlotTaken); // outside the gate: disposing the parent registration waits for a running cancel callback, which takes it
            return;
        }

        if (!_deferTimeout)
        {
            StartTimeout();
        }

        Task? work;
        try
        {
            work = InvokeWorkAsync(CancellationToken);
        }
        catch (Exception ex)
        {
            // Thrown before the work returned its task (or while handing it off): settled as if its
            // task had faulted — unless hand-off work was ended already, before the throw.
            EndWorkOnce(ex);
            return;
        }

        if (work is null)
        {
            return; // handed off: whoever runs it calls EndWork
        }

        if (work.IsCompleted)
        {
            WorkEnded(work);
            return;
        }

        _work = work;
        work.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(OnWorkEnded);
    }

    /// <summary>
    /// Ends the work, once: completed (<paramref name="error"/> null, the result already stored) or
    /// settled by <paramref name="error"/> as a faulted or cancelled task would be. False when the
    /// work was ended already.
    /// </summary>
    private protected bool EndWorkOnce(Exception? error)
    {
        if (!TryClaimWorkEnd())
        {
            return false;
        }

        FinishWork(error);
        return true;
    }

    /// <summary>Claims the work's end: true for the one caller that may now call <see cref="FinishWork"/>.</summary>
    private protected bool TryClaimWorkEnd() => Interlocked.Exchange(ref _workEnded, 1) == 0;

    /// <summary>Settles the task once its work's end is claimed (see <see cref="EndWorkOnce"/>).</summary>
    private protected void FinishWork(Exception? error)
    {
        if (error is null)
        {
            TryFinish(WorkTaskState.Completed, null, setResult: true);
        }
        else
        {
            Settle(error);
        }

        EndRun(SlotTaken);
    }

    /// <summary>True once the work has ended (its end claimed by whoever ended it).</summary>
    internal bool IsWorkEnded => Volatile.Read(ref _workEnded) != 0;

    /// <summary>True once the work runs, for a task with a limiter: only then has it a slot to give back.</summary>
    private bool SlotTaken => _slot is not null;

    private void OnWorkEnded() => WorkEnded(_work!);

    private void WorkEnded(Task work)
    {
        _work = null;
        Exception? error = null;
        try
        {
            work.GetAwaiter().GetResult(); // rethrows the work's failure or cancellation, as await does
        }
        catch (Exception ex)
        {
            error = ex;
        }

        EndWorkOnce(error);
    }

    /// <summary>Settles the task after its work threw <paramref name="ex"/>.</summary>
    private void Settle(Exception ex)
    {
        if (ex is OperationCanceledException oce && IsCancellationRequested)
        {
            if (Volatile.Read(ref _cancelCause) == CauseTimeout)
            {
                TryFinish(WorkTaskState.Failed, new TimeoutException(
                    $"Task '{Name}' did not finish within its timeout of {_timeout!.Value.TotalSeconds:0.###} s.", oce), setResult: false);
            }
            else
            {
                TryFinish(WorkTaskState.Cancelled, oce, setResult: false);
            }
        }
        else
        {
            TryFinish(WorkTaskState.Failed, ex, setResult: false);
        }
    }

    /// <summary>What follows the work, however it ended: its slot, its timer and its parent registration are let go.</summary>
    private void EndRun(bool slotTaken)
    {
        if (slotTaken)
        {
            _limiter!.Release();
        }

        lock (_gate)
        {
            _timeoutCts?.Dispose();
            _timeoutDone = true;
        }

        _parentRegistration.Dispose();
    }

    /// <summary>
    /// Starts the task's own timeout now. For work whose start is deferred
    /// (<see cref="TaskStartOptions.DeferTimeout"/>) the work calls this when it really begins —
    /// after waiting in a queue of its own, say — so that waiting never counts against the task.
    /// Once per task; no effect without a timeout, or once the task is done.
    /// </summary>
    public void StartTimeout()
    {
        if (_timeout is not { } timeout)
        {
            return;
        }

        CancellationTokenSource cts;
        lock (_gate)
        {
            if (_timeoutCts is not null || _timeoutDone || IsDone)
            {
                return;
            }

            cts = new CancellationTokenSource();
            _timeoutCts = cts;
        }

        // Armed outside the gate: an expired timeout cancels (and may finish) the task inline.
        try
        {
            cts.Token.Register(static s => ((WorkTask)s!).RequestCancel(CauseTimeout), this);
            cts.CancelAfter(timeout);
        }
        catch (ObjectDisposedException)
        {
            // The task ended meanwhile.
        }
    }

    private bool RequestCancel(int cause)
    {
        if (IsDone)
        {
            return false;
        }

        Interlocked.CompareExchange(ref _cancelCause, cause, CauseNone);

        // The Pending check and the move to Cancelled must be one step under the gate: checked
        // apart, the worker could move the task to Running in between, and the task would be
        // reported Cancelled while its work still ran.
        if (State == WorkTaskState.Pending) // a hint only (it spares the exception for a running task); TryFinish decides
        {
            TryFinish(WorkTaskState.Cancelled, new OperationCanceledException($"Task '{Name}' was cancelled before it started.", CancellationToken), setResult: false, onlyIfPending: true);
        }

        try
        {
            _cts.Cancel();
        }
        catch (AggregateException ex)
        {
            // A callback registered on the task's token threw; the request itself stands.
            RaiseCallbackFailed(ex);
        }

        RunCancelHandler();
        return true;
    }

    /// <summary>
    /// Runs <paramref name="handler"/> once when cancellation is requested (at once when it already
    /// was), as a registration on <see cref="CancellationToken"/> would, without the registration:
    /// the executor sets one per task it queues, and a token registration cost two allocations and
    /// a registration per pipeline input. One handler per task; a second call is refused.
    /// </summary>
    /// <exception cref="InvalidOperationException">A handler was set already.</exception>
    internal void OnCancelRequested(Action<object?> handler, object? state)
    {
        if (handler is null)
        {
            throw new ArgumentNullException(nameof(handler));
        }

        _cancelHandlerState = state;

        // A full fence before the check: either RequestCancel (which cancels the token, then reads
        // the handler) sees this handler, or this check sees its cancellation; both may, and
        // _cancelHandled lets one of them run it.
        if (Interlocked.CompareExchange(ref _cancelHandler, handler, null) is not null)
        {
            throw new InvalidOperationException("The task already has a cancellation handler.");
        }

        if (_cts.IsCancellationRequested)
        {
            RunCancelHandler();
        }
    }

    private void RunCancelHandler()
    {
        Action<object?>? handler = Volatile.Read(ref _cancelHandler);
        if (handler is null || Interlocked.Exchange(ref _cancelHandled, 1) != 0)
        {
            return;
        }

        try
        {
            handler(_cancelHandlerState);
        }
        catch (Exception ex)
        {
            RaiseCallbackFailed(ex); // as a throwing token registration: the request itself stands
        }
    }

    private void TryFinish(WorkTaskState final, Exception? error, bool setResult, bool onlyIfPending = false)
    {
        DoneCallback? first;
        Action<WorkTask>? permanent0, permanent1, permanent2;
        TaskCompletionSource<WorkTask>? completion;
        lock (_gate)
        {
            if (IsFinal(State) || (onlyIfPending && State != WorkTaskState.Pending))
            {
                return;
            }

            if (setResult)
            {
                SetResult();
            }

            Exception = error;
            _endUtc = DateTime.UtcNow;
            Volatile.Write(ref _state, (int)final);
            first = _firstCallback;
            _firstCallback = null;
            _lastCallback = null;
            permanent0 = _permanent0;
            permanent1 = _permanent1;
            permanent2 = _permanent2;
            _permanent0 = _permanent1 = _permanent2 = null;
            _callbacksTaken = true;
            completion = _completion;
        }

        completion?.TrySetResult(this);

        // The permanent callbacks were all registered before any entry (see AddPermanentDoneCallback).
        if (permanent0 is not null)
        {
            InvokeSafely(permanent0);
        }

        if (permanent1 is not null)
        {
            InvokeSafely(permanent1);
        }

        if (permanent2 is not null)
        {
            InvokeSafely(permanent2);
        }

        // Taken off the task, the chain is only read from here on: a callback that unregisters
        // itself or another (Dispose) only claims its entry, so the walk skips it.
        for (DoneCallback? entry = first; entry is not null; entry = entry.Next)
        {
            if (entry.TryClaim())
            {
                InvokeSafely(entry.Callback);
            }
        }

        // One handler at a time: invoked as a multicast delegate, the first handler that threw
        // would silently skip every handler subscribed after it.
        if (Completed is { } completed)
        {
            foreach (Delegate handler in completed.GetInvocationList())
            {
                try
                {
                    ((EventHandler)handler)(this, EventArgs.Empty);
                }
                catch (Exception ex)
                {
                    RaiseCallbackFailed(ex);
                }
            }
        }
    }

    private void InvokeSafely(Action<WorkTask> callback)
    {
        try
        {
            callback(this);
        }
        catch (Exception ex)
        {
            RaiseCallbackFailed(ex);
        }
    }

    private void RaiseCallbackFailed(Exception ex) => CallbackFailed?.Invoke(this, new CallbackFailedEventArgs(this, ex));

    private void Unregister(DoneCallback entry)
    {
        lock (_gate)
        {
            // Unlinked while the task still holds its chain (once taken, the chain is walked
            // without the gate and a claimed entry is skipped). A chain is a handful of entries.
            DoneCallback? previous = null;
            for (DoneCallback? node = _firstCallback; node is not null; previous = node, node = node.Next)
            {
                if (!ReferenceEquals(node, entry))
                {
                    continue;
                }

                if (previous is null)
                {
                    _firstCallback = node.Next;
                }
                else
                {
                    previous.Next = node.Next;
                }

                if (ReferenceEquals(_lastCallback, node))
                {
                    _lastCallback = previous;
                }

                return;
            }
        }
    }

    private sealed class DoneCallback : IDisposable
    {
        private readonly WorkTask _owner;
        private int _claimed;

        public DoneCallback(WorkTask owner, Action<WorkTask> callback)
        {
            _owner = owner;
            Callback = callback;
        }

        public Action<WorkTask> Callback { get; }

        /// <summary>The entry registered after this one (written under the task's gate).</summary>
        public DoneCallback? Next { get; set; }

        public bool TryClaim() => Interlocked.Exchange(ref _claimed, 1) == 0;

        public void Dispose()
        {
            if (TryClaim())
            {
                _owner.Unregister(this);
            }
        }
    }
}

/// <summary>A <see cref="WorkTask"/> whose work produces a <typeparamref name="T"/>.</summary>
/// <remarks>
/// Its work is either a delegate that returns a <see cref="Task{T}"/>, or hand-off work: a
/// delegate that passes the task to whatever runs it (say, a worker's queue) and returns at once,
/// the runner then ending it with <see cref="EndWork(T)"/> or <see cref="EndWork(Exception)"/>.
/// Hand-off work costs no task, completion source or continuation per run: an executor that
/// runs thousands of small items on threads of its own uses it.
/// </remarks>
public sealed class WorkTask<T> : WorkTask
{
    private readonly Func<CancellationToken, Task<T>>? _work;
    private readonly Action<WorkTask<T>>? _handOff;
    private int _handedOff; // 1 once the hand-off ran (the task is Running): only then may its work end
    private Task<T>? _running;
    private T? _result;

    /// <remarks><paramref name="tag"/>, when given, stands for the options' Tag: options can then be shared by many tasks.</remarks>
    internal WorkTask(Func<CancellationToken, Task<T>> work, string? name, TaskStartOptions? options, object? tag = null)
        : base(name, options, tag)
    {
        _work = work ?? throw new ArgumentNullException(nameof(work));
    }

    /// <summary>A task whose work is handed off (see the remarks on the type).</summary>
    /// <param name="handOff">
    /// Runs once, when the task starts (Running, its limiter slot taken); the task's
    /// <see cref="WorkTask.CancellationToken"/> is the work's token. It must not block. If it throws,
    /// the task fails with that exception (unless the work was ended first).
    /// </param>
    internal WorkTask(Action<WorkTask<T>> handOff, string? name, TaskStartOptions? options, object? tag = null)
        : base(name, options, tag)
    {
        _handOff = handOff ?? throw new ArgumentNullException(nameof(handOff));
    }

    /// <summary>
    /// Ends handed-off work with a value: the task completes with it. False when the work was
    /// ended already (the first end wins, as TrySetResult).
    /// </summary>
    /// <exception cref="InvalidOperationException">The task has no hand-off work, or has not handed it off yet.</exception>
    public bool EndWork(T result)
    {
        ThrowIfNotHandedOff();
        if (!TryClaimWorkEnd())
        {
            return false;
        }

        _result = result; // read only once Completed (published by the state's volatile write)
        FinishWork(null);
        return true;
    }

    /// <summary>
    /// Ends handed-off work with a failure: settled as a faulted task would be (an
    /// <see cref="OperationCanceledException"/> after a cancellation request means Cancelled).
    /// False when the work was ended already.
    /// </summary>
    /// <exception cref="InvalidOperationException">The task has no hand-off work, or has not handed it off yet.</exception>
    public bool EndWork(Exception error)
    {
        if (error is null)
        {
            throw new ArgumentNullException(nameof(error));
        }

        ThrowIfNotHandedOff();
        return EndWorkOnce(error);
    }

    private void ThrowIfNotHandedOff()
    {
        if (_handOff is null)
        {
            throw new InvalidOperationException($"Task '{Name}' runs its work itself: only hand-off work is ended by its runner.");
        }

        if (Volatile.Read(ref _handedOff) == 0)
        {
            throw new InvalidOperationException($"Task '{Name}' has not handed its work off: it cannot end it.");
        }
    }

    /// <inheritdoc />
    public override object? ResultObject => State == WorkTaskState.Completed ? _result : null;

    /// <summary>Creates and starts a task (asyncio's create_task).</summary>
    public static WorkTask<T> Run(Func<CancellationToken, Task<T>> work, string? name = null, TaskStartOptions? options = null)
    {
        var task = new WorkTask<T>(work, name, options);
        task.Start();
        return task;
    }

    /// <summary>The value when Completed; otherwise rethrows the failure or cancellation.</summary>
    public T GetResult()
    {
        ThrowIfNotCompleted();
        return _result!;
    }

    /// <summary>Awaits the task: its value, or its failure or cancellation rethrown.</summary>
    public async Task<T> WaitAsync(CancellationToken cancellationToken = default)
    {
        await AsyncOps.WhenDoneAsync(this, cancellationToken).ConfigureAwait(false);
        return GetResult();
    }

    /// <summary>Lets tests and callers write <c>await task</c>.</summary>
    public TaskAwaiter<T> GetAwaiter() => WaitAsync().GetAwaiter();

    private protected override Task? InvokeWorkAsync(CancellationToken cancellationToken)
    {
        if (_handOff is not null)
        {
            Volatile.Write(ref _handedOff, 1);
            _handOff(this);
            return null;
        }

        Task<T> running = _work!(cancellationToken) ?? throw new InvalidOperationException("The work delegate returned no task.");
        _running = running;
        return running;
    }

    private protected override void SetResult()
    {
        if (_running is { } running)
        {
            _result = running.Result; // hand-off work stored its result before it ended
        }
    }
}

/// <summary>How a task is started: its limiter, its parent's token, its own timeout.</summary>
public sealed class TaskStartOptions
{
    /// <summary>Shared limiter; null for no limit.</summary>
    public ConcurrencyLimiter? Limiter { get; set; }

    /// <summary>The parent's token: cancelling it cancels the task (unless <see cref="Shielded"/>).</summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>The task's own deadline from when it starts running; on expiry it is cancelled and fails with <see cref="TimeoutException"/>.</summary>
    public TimeSpan? Timeout { get; set; }

    /// <summary>
    /// The work only hands the task off to a queue of its own: the timeout starts when the work
    /// calls <see cref="WorkTask.StartTimeout"/> (when it really begins), not when it is invoked.
    /// </summary>
    public bool DeferTimeout { get; set; }

    /// <summary>Ignore the group's cancellation (asyncio's shield).</summary>
    public bool Shielded { get; set; }

    /// <summary>Caller-defined data carried on <see cref="WorkTask.Tag"/>.</summary>
    public object? Tag { get; set; }

    /// <summary>
    /// Start the work on the creating thread instead of the thread pool. Only for work whose
    /// synchronous part is a quick hand-off (say, queueing to a worker): it saves a thread hop
    /// per task, but anything slow before the work's first await would block the creator.
    /// </summary>
    public bool StartInline { get; set; }
}

/// <summary>Describes a callback that threw.</summary>
public sealed class CallbackFailedEventArgs : EventArgs
{
    internal CallbackFailedEventArgs(WorkTask task, Exception exception)
    {
        Task = task;
        Exception = exception;
    }

    /// <summary>The task whose callback threw.</summary>
    public WorkTask Task { get; }

    /// <summary>What it threw.</summary>
    public Exception Exception { get; }
}
