using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace AsyncGroup.Core;

/// <summary>Options shared by <see cref="Gatherer{T}"/> and the <c>Gather*</c> helpers.</summary>
public sealed class GatherOptions
{
    /// <summary>asyncio's return_exceptions: failures and cancellations stay at their positions and nothing is raised.</summary>
    public bool ReturnExceptions { get; set; }

    /// <summary>Limits how many of the gather's tasks run at once; null for no limit.</summary>
    public ConcurrencyLimiter? Limiter { get; set; }

    /// <summary>Deadline for the whole gather: on expiry every unfinished task is cancelled and awaited, then <see cref="TimeoutException"/> is thrown if that cut any task short (one ended Cancelled).</summary>
    public TimeSpan? Timeout { get; set; }

    /// <summary>Deadline for each task from when it starts running (its own wait_for).</summary>
    public TimeSpan? TaskTimeout { get; set; }

    /// <summary>Start each task's work on the adding thread (see <see cref="TaskStartOptions.StartInline"/>).</summary>
    public bool StartInline { get; set; }

    /// <summary>Each task's timeout starts when its work calls <see cref="WorkTask.StartTimeout"/> (see <see cref="TaskStartOptions.DeferTimeout"/>).</summary>
    public bool DeferTaskTimeout { get; set; }

    /// <summary>
    /// The gather lets go of each task once it is final, keeping only the unfinished ones (to
    /// cancel them) and counters: a gather over a long stream of work then holds what still runs,
    /// not everything it ever ran. The caller keeps what it needs of each task from the task
    /// <see cref="Gatherer{T}.Add"/> returned or a done callback; <see cref="Gatherer{T}.Tasks"/>
    /// and <see cref="Gatherer{T}.GetResultsAsync"/> are then unavailable. The outcome rules of
    /// <see cref="Gatherer{T}.WhenAllAsync"/> are unchanged.
    /// </summary>
    public bool ReleaseSettled { get; set; }
}

/// <summary>
/// asyncio.gather over work the gatherer creates and therefore owns. Work may be added while
/// earlier tasks run (pipeline input), until <see cref="Seal"/>.
/// </summary>
/// <remarks>
/// Guarantees: <see cref="WhenAllAsync"/> returns or throws only once every task it created is
/// final — on success, failure, timeout or the owner's cancellation — so nothing is orphaned.
/// Without return-exceptions the first task to end other than Completed is the trigger: every
/// other unfinished task is cancelled and the trigger's exception is rethrown. Work added after
/// the gather stopped becomes an already-cancelled task at its position, so nothing is forgotten.
/// </remarks>
public sealed class Gatherer<T>
{
    private readonly object _gate = new();
    // Every task in input order; with ReleaseSettled only those not yet final (and a few final
    // ones until the next sweep), in input order still.
    private readonly List<WorkTask<T>> _tasks = new();
    private readonly GatherOptions _options;
    private readonly CancellationTokenSource _stop;
    private readonly CancellationToken _ownerToken;
    private readonly TaskCompletionSource<bool> _allDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource? _deadline;
    // Tasks not yet final, plus one held by the gather itself until Seal: whoever takes it to zero
    // finishes the gather, exactly once. Counted with Interlocked so that a completed task's done
    // callback never takes the gate (it would contend with Add on every task).
    private int _unfinished = 1;
    private int _count;     // tasks added, under the gate
    private int _cancelled; // tasks that ended Cancelled (Interlocked, from done callbacks)
    private readonly SweepSchedule _sweeps = new(); // ReleaseSettled: when to drop the final tasks from the list
    private bool _sealed;
    private volatile bool _timedOut; // read on every pipeline input: never under the gate
    private WorkTask<T>? _trigger;
    private readonly Action<WorkTask> _onTaskDone;
    private readonly TaskStartOptions _taskOptions; // read by the WorkTask constructor only, so shared (a tag is given apart)

    /// <summary>Creates a gather; <paramref name="cancellationToken"/> is its owner's.</summary>
    public Gatherer(GatherOptions? options = null, CancellationToken cancellationToken = default)
    {
        _options = options ?? new GatherOptions();
        AsyncOps.ValidateTimeout(_options.Timeout);
        AsyncOps.ValidateTimeout(_options.TaskTimeout);
        _ownerToken = cancellationToken;
        _onTaskDone = OnTaskDone; // one delegate for the gather, not one per task
        _taskOptions = new TaskStartOptions { Limiter = _options.Limiter, Timeout = _options.TaskTimeout, DeferTimeout = _options.DeferTaskTimeout, StartInline = _options.StartInline };
        _stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);

        // One registration for the whole gather rather than one per task on _stop: under load,
        // thousands of tasks registering and unregistering on one token source contend for its
        // lock (that cost ~1 µs per task on 2 cores). Add cancels a task created after the stop.
        _stop.Token.Register(static s => ((Gatherer<T>)s!).CancelUnfinished(), this);
        if (_options.Timeout is { } timeout)
        {
            _deadline = new CancellationTokenSource(timeout);
            _deadline.Token.Register(static s => ((Gatherer<T>)s!).OnDeadline(), this);
        }
    }

    /// <summary>The tasks in input order.</summary>
    /// <exception cref="InvalidOperationException">The gather releases settled tasks (<see cref="GatherOptions.ReleaseSettled"/>).</exception>
    public IReadOnlyList<WorkTask<T>> Tasks
    {
        get
        {
            ThrowIfReleasing(nameof(Tasks));
            lock (_gate)
            {
                return _tasks.ToArray();
            }
        }
    }

    /// <summary>How many tasks were added (the next task's index).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _count;
            }
        }
    }

    /// <summary>True once the gather stopped early (failure, timeout or the owner's cancellation).</summary>
    public bool IsStopping => _stop.IsCancellationRequested; // readable after Dispose

    /// <summary>The task whose failure stopped the gather, if any.</summary>
    public WorkTask<T>? Trigger
    {
        get
        {
            lock (_gate)
            {
                return _trigger;
            }
        }
    }

    /// <summary>True when the gather's own deadline expired.</summary>
    public bool TimedOut => _timedOut;

    /// <summary>Creates and starts the next task (its index is its position in <see cref="Tasks"/>).</summary>
    public WorkTask<T> Add(Func<CancellationToken, Task<T>> work, string? name = null, object? tag = null)
    {
        if (work is null)
        {
            throw new ArgumentNullException(nameof(work));
        }

        return AddTask(new WorkTask<T>(work, name, _taskOptions, tag));
    }

    /// <summary>
    /// Creates and starts the next task, with hand-off work (see <see cref="WorkTask{T}"/>):
    /// <paramref name="handOff"/> passes the task to its runner, which ends it with
    /// <see cref="WorkTask{T}.EndWork(T)"/> or <see cref="WorkTask{T}.EndWork(Exception)"/>.
    /// </summary>
    public WorkTask<T> AddHandOff(Action<WorkTask<T>> handOff, string? name = null, object? tag = null)
    {
        if (handOff is null)
        {
            throw new ArgumentNullException(nameof(handOff));
        }

        return AddTask(new WorkTask<T>(handOff, name, _taskOptions, tag));
    }

    /// <summary>Lists and starts a task just created (not started) for this gather.</summary>
    private WorkTask<T> AddTask(WorkTask<T> task)
    {
        bool stopping;
        lock (_gate)
        {
            if (_sealed)
            {
                throw new InvalidOperationException("No work can be added to a gather after it was sealed.");
            }

            _tasks.Add(task);
            _count++;
            Interlocked.Increment(ref _unfinished);

            // Read under the gate: either CancelUnfinished's snapshot (taken under the gate after
            // the stop was requested) includes this task, or this read sees the stop.
            stopping = _stop.IsCancellationRequested;
        }

        task.AddPermanentDoneCallback(_onTaskDone);
        if (stopping)
        {
            task.Cancel(); // still Pending: it becomes Cancelled at its position and never runs
        }

        task.Start();
        return task;
    }

    /// <summary>Declares that no more work will be added.</summary>
    public void Seal()
    {
        lock (_gate)
        {
            if (_sealed)
            {
                return;
            }

            _sealed = true;
        }

        if (Interlocked.Decrement(ref _unfinished) == 0)
        {
            Finish();
        }
    }

    /// <summary>Stops the gather as its owner would: every unfinished task is cancelled.</summary>
    public void Cancel() => StopAll();

    /// <summary>
    /// Completes once sealed and every task is final. Then, in this order: the owner's cancellation
    /// throws <see cref="OperationCanceledException"/>; the deadline throws <see cref="TimeoutException"/>
    /// when it cut a task short (one ended Cancelled); without return-exceptions the trigger's
    /// exception is rethrown. Otherwise returns normally; read the outcomes from <see cref="Tasks"/>.
    /// A deadline that fired while the last tasks were finishing anyway, or whose cancellation every
    /// task answered with a value, is not a timeout (asyncio.timeout behaves the same way).
    /// </summary>
    public async Task WhenAllAsync()
    {
        await _allDone.Task.ConfigureAwait(false);
        if (_ownerToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("The gather was cancelled by its owner.", _ownerToken);
        }

        WorkTask<T>? trigger;
        bool timedOut;
        int total;
        lock (_gate)
        {
            trigger = _trigger;
            timedOut = _timedOut;
            total = _count;
        }

        // Every task is final and counted by now: each done callback counts before it lets the gather finish.
        int unfinishedAtTimeout = Volatile.Read(ref _cancelled);

        if (trigger is not null && !_options.ReturnExceptions)
        {
            trigger.ThrowIfNotCompleted();
        }

        // Counted, not assumed: the deadline may fire in the instant between the last task becoming
        // final and the gather noticing, and then nothing was cut short.
        if (timedOut && unfinishedAtTimeout > 0)
        {
            throw new TimeoutException(
                $"The gather did not complete within {_options.Timeout!.Value.TotalSeconds:0.###} s; {unfinishedAtTimeout} of {total} task(s) were cancelled.");
        }
    }

    /// <summary>Awaits the gather and returns every task's value in input order (fail-fast).</summary>
    /// <exception cref="InvalidOperationException">The gather releases settled tasks (<see cref="GatherOptions.ReleaseSettled"/>).</exception>
    public async Task<T[]> GetResultsAsync()
    {
        ThrowIfReleasing(nameof(GetResultsAsync));
        await WhenAllAsync().ConfigureAwait(false);
        IReadOnlyList<WorkTask<T>> tasks = Tasks;
        var results = new T[tasks.Count];
        for (int i = 0; i < results.Length; i++)
        {
            results[i] = tasks[i].GetResult();
        }

        return results;
    }

    private void OnDeadline()
    {
        lock (_gate)
        {
            if (_trigger is not null || _allDone.Task.IsCompleted)
            {
                return;
            }

            _timedOut = true;
        }

        StopAll();
    }

    private void ThrowIfReleasing(string member)
    {
        if (_options.ReleaseSettled)
        {
            throw new InvalidOperationException($"{member} is not available: this gather releases its tasks as they finish (ReleaseSettled).");
        }
    }

    private void OnTaskDone(WorkTask task)
    {
        if (task.State == WorkTaskState.Cancelled)
        {
            Interlocked.Increment(ref _cancelled);
        }

        if (_options.ReleaseSettled && _sweeps.Released())
        {
            Sweep();
        }

        bool stop = false;
        if (task.State != WorkTaskState.Completed && !_options.ReturnExceptions)
        {
            lock (_gate)
            {
                if (_trigger is null && !_timedOut && !_stop.IsCancellationRequested)
                {
                    _trigger = (WorkTask<T>)task;
                    stop = true;
                }
            }
        }

        if (stop)
        {
            StopAll();
        }

        if (Interlocked.Decrement(ref _unfinished) == 0)
        {
            Finish();
        }
    }

    /// <summary>
    /// ReleaseSettled: drops the final tasks from the list, when <see cref="SweepSchedule"/> says so
    /// (the gate is taken once per many tasks; the list holds about twice the unfinished tasks).
    /// </summary>
    private void Sweep()
    {
        lock (_gate)
        {
            if (!_sweeps.TryBegin())
            {
                return; // another thread swept meanwhile
            }

            _tasks.RemoveAll(static t => t.IsDone);
            _sweeps.Swept(_tasks.Count);
        }
    }

    private void CancelUnfinished()
    {
        WorkTask<T>[] tasks;
        lock (_gate)
        {
            tasks = _tasks.ToArray();
        }

        // Last added first: the tasks still waiting for a slot or a worker are the later ones, and
        // a cancelled running task frees its worker, which takes the next waiting task at once:
        // cancelled in input order, that task could start after the gather had already stopped.
        for (int i = tasks.Length - 1; i >= 0; i--)
        {
            tasks[i].Cancel(); // false, and nothing else, for a task already done
        }
    }

    private void StopAll()
    {
        try
        {
            _stop.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Every task is already final: there is nothing left to stop.
        }
    }

    private void Finish()
    {
        if (_options.ReleaseSettled)
        {
            lock (_gate)
            {
                _tasks.Clear(); // all final: nothing left to cancel
            }
        }

        _deadline?.Dispose();
        _deadline = null;
        _stop.Dispose(); // unregisters from the owner's token
        _allDone.TrySetResult(true);
    }
}

/// <summary>One-call gathers over delegates.</summary>
public static class Gather
{
    /// <summary>asyncio.gather: values in input order; the first failure cancels the rest and is rethrown.</summary>
    public static Task<T[]> RunAsync<T>(IEnumerable<Func<CancellationToken, Task<T>>> works, GatherOptions? options = null, CancellationToken cancellationToken = default)
    {
        var gatherer = new Gatherer<T>(WithReturnExceptions(options, false), cancellationToken);
        AddAll(gatherer, works);
        return gatherer.GetResultsAsync();
    }

    /// <summary>asyncio.gather(return_exceptions=True): every task, settled, in input order; nothing is raised for a task's failure.</summary>
    public static async Task<IReadOnlyList<WorkTask<T>>> RunSettledAsync<T>(IEnumerable<Func<CancellationToken, Task<T>>> works, GatherOptions? options = null, CancellationToken cancellationToken = default)
    {
        var gatherer = new Gatherer<T>(WithReturnExceptions(options, true), cancellationToken);
        AddAll(gatherer, works);
        await gatherer.WhenAllAsync().ConfigureAwait(false);
        return gatherer.Tasks;
    }

    private static void AddAll<T>(Gatherer<T> gatherer, IEnumerable<Func<CancellationToken, Task<T>>> works)
    {
        if (works is null)
        {
            throw new ArgumentNullException(nameof(works));
        }

        foreach (Func<CancellationToken, Task<T>> work in works)
        {
            gatherer.Add(work);
        }

        gatherer.Seal();
    }

    // Not copied: DeferTaskTimeout, since a work given here never sees its task and so could never
    // start its own timeout (each would run without one), and ReleaseSettled, since these read Tasks.
    private static GatherOptions WithReturnExceptions(GatherOptions? options, bool value) => new()
    {
        ReturnExceptions = value,
        Limiter = options?.Limiter,
        Timeout = options?.Timeout,
        TaskTimeout = options?.TaskTimeout,
        StartInline = options?.StartInline ?? false,
    };
}
