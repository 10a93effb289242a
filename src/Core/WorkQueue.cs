using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace AsyncGroup.Core;

/// <summary>
/// The queue between a producer of items and at most <c>maxWorkers</c> long-lived workers that
/// take them one at a time (the executor's batch). It decides when another worker is worth
/// starting, and tells a worker to leave only when no item can arrive any more.
/// </summary>
/// <remarks>
/// Guarantees: items are taken first-in first-out (a requeued item goes first); <see cref="Take"/>
/// returns null only once the queue is completed, empty, and every registered item has been queued
/// or unregistered — and then every waiting worker returns, whichever call drained the queue;
/// the start decisions never exceed <c>maxWorkers</c> live workers and never start
/// a worker while an idle one is already waiting.
/// <para>
/// Hand-off: a worker that finds the queue empty first spins for a few microseconds (one worker
/// at a time) before it blocks, and an item queued while a worker spins wakes nobody — the
/// spinner takes it. When items arrive a few microseconds apart (a fast producer feeding trivial
/// items), a worker goes from one item to the next without a sleep and a wake-up per item.
/// </para>
/// <para>
/// Back-pressure: a producer that outruns its workers can wait (<see cref="WaitForRoom"/>) until
/// the queue is down to a given length, woken once when it is, not once per item taken.
/// </para>
/// <para>
/// Late starts: workers beyond the first few (<c>startAtOnce</c>, say one per processor) start
/// only once items have waited a whole <c>lateStartDelay</c> while no worker came back for
/// another item — the workers there are busy with long items (waiting on the network,
/// sleeping), and more of them help. When workers keep coming back, the items are short, and
/// more workers than processors would only contend for them. Workers still starting (a cold
/// runspace opening) have not come back either, so they never hold the others back. The check
/// runs when items are queued, and when the owner asks (<see cref="CheckLateStart"/>, as the
/// producer waits for its items to end: <see cref="LateStartCheckIn"/> says when); a slow timer
/// covers a producer that pauses elsewhere. A timer per check cost a thread-pool wake-up per
/// call, which then spun for work on a processor the workers wanted.
/// </para>
/// </remarks>
public sealed class WorkQueue<T>
    where T : class
{
    /// <summary>How long a worker spins for an item before it blocks, when none is given.</summary>
    public static readonly TimeSpan DefaultSpin = TimeSpan.FromTicks(TimeSpan.TicksPerMillisecond / 20); // 50 µs

    private readonly object _gate = new();
    private readonly int _maxWorkers;
    private readonly long _spinTicks; // Stopwatch ticks; 0: never spin
    private T?[] _ring = new T?[16];
    private int _head; // index of the first item in _ring
    private int _count; // items queued (written under the gate, read by the spinner without it)
    private int _workers;
    private int _waiting; // blocked in Monitor.Wait
    private int _spinning; // spinning before blocking: 0 or 1
    private int _unqueued;
    private bool _completed; // written under the gate, read by the spinner without it
    private int _roomAt = -1; // a producer waits until at most this many items are queued; -1: none waits
    private ManualResetEventSlim? _room; // made on the first wait for room, set when there is room
    private readonly int _startAtOnce; // workers started as soon as items wait; the others start late
    private readonly long _lateStartDelayTicks; // Stopwatch ticks; long.MaxValue: the owner calls LateStartTick
    private readonly Action? _lateStart;
    private Timer? _lateStartTimer;
    private bool _lateStartArmed; // items wait for a worker beyond the first few: a check is due at _lateStartDue
    private bool _lateStartTimerSet; // the timer will fire (stopped once the queue is drained)
    private long _lateStartDue;
    private long _returns; // takes by workers back from an item (under the gate): the late-start check's sign of progress
    private long _returnsAtArm;
    private static readonly TimerCallback s_lateStartTick = static s => ((WorkQueue<T>)s!).LateStartTick();

    /// <summary>The fallback timer's delay: for a producer that neither queues nor waits on the queue.</summary>
    private static readonly TimeSpan FallbackCheckDelay = TimeSpan.FromMilliseconds(250);

    /// <summary>Creates a queue served by at most <paramref name="maxWorkers"/> workers.</summary>
    /// <param name="maxWorkers">The most workers the queue asks for.</param>
    /// <param name="spin">
    /// How long a worker that finds the queue empty spins before it blocks (null: <see cref="DefaultSpin"/>;
    /// zero: never). Never on a single processor, where the spinner would only delay the producer.
    /// </param>
    public WorkQueue(int maxWorkers, TimeSpan? spin = null)
        : this(maxWorkers, maxWorkers, Timeout.InfiniteTimeSpan, null, spin)
    {
    }

    /// <summary>
    /// Creates a queue whose workers beyond the first <paramref name="startAtOnce"/> start late
    /// (see the remarks on the type): once items have waited <paramref name="lateStartDelay"/> with
    /// no worker coming back for another, the queue counts the workers it needs and calls
    /// <paramref name="lateStart"/> once for each, on the thread that ran the check (the
    /// producer's, or the fallback timer's).
    /// </summary>
    /// <param name="maxWorkers">The most workers the queue asks for.</param>
    /// <param name="startAtOnce">Workers started as soon as items wait for them (at least 1).</param>
    /// <param name="lateStartDelay">
    /// How long waiting items must see no progress before more workers start; <see cref="Timeout.InfiniteTimeSpan"/>:
    /// never by itself and no timer, the owner calls <see cref="LateStartTick"/> (tests).
    /// </param>
    /// <param name="lateStart">Starts one worker the queue counted as started (as when <see cref="Enqueue"/> returns true).</param>
    /// <param name="spin">See <see cref="WorkQueue{T}(int, TimeSpan?)"/>.</param>
    public WorkQueue(int maxWorkers, int startAtOnce, TimeSpan lateStartDelay, Action? lateStart, TimeSpan? spin = null)
    {
        if (maxWorkers < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxWorkers), maxWorkers, "At least one worker is needed.");
        }

        if (startAtOnce < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(startAtOnce), startAtOnce, "At least one worker must start at once.");
        }

        if (startAtOnce < maxWorkers && lateStart is null)
        {
            throw new ArgumentNullException(nameof(lateStart), "Workers that start late need a way to be started.");
        }

        _maxWorkers = maxWorkers;
        _startAtOnce = Math.Min(startAtOnce, maxWorkers);
        _lateStartDelayTicks = lateStartDelay == Timeout.InfiniteTimeSpan ? long.MaxValue : Math.Max(1, (long)(lateStartDelay.TotalSeconds * Stopwatch.Frequency));
        _lateStart = lateStart;
        TimeSpan s = spin ?? DefaultSpin;
        _spinTicks = Environment.ProcessorCount < 2 || s <= TimeSpan.Zero
            ? 0
            : Math.Max(1, (long)(s.TotalSeconds * Stopwatch.Frequency));
    }

    /// <summary>Items queued and not taken.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Workers started and not yet left.</summary>
    public int Workers
    {
        get
        {
            lock (_gate)
            {
                return _workers;
            }
        }
    }

    /// <summary>Workers idle in <see cref="Take"/> waiting for an item (blocked, or spinning before they block).</summary>
    public int Waiting
    {
        get
        {
            lock (_gate)
            {
                return _waiting + _spinning;
            }
        }
    }

    /// <summary>True while a producer waits for room (<see cref="WaitForRoom"/>).</summary>
    public bool ProducerWaiting
    {
        get
        {
            lock (_gate)
            {
                return _roomAt >= 0;
            }
        }
    }

    /// <summary>True while an item may still be taken (queued, registered, or not completed).</summary>
    /// <remarks>Read without the lock (a worker asks after every item): each field is read once, in
    /// an order that errs towards true — completion is read first, and it never reverts.</remarks>
    public bool HasWork =>
        !Volatile.Read(ref _completed) || Volatile.Read(ref _unqueued) > 0 || Volatile.Read(ref _count) > 0;

    /// <summary>An item will be queued later (say, once admitted by a limiter): until then the queue is not drained.</summary>
    /// <remarks>Registration happens before <see cref="Complete"/> only, so it needs no lock: it
    /// cannot turn a drained queue back into a busy one. (It runs once per pipeline input, and the
    /// lock is the one every waiting worker wakes on.)</remarks>
    public void Register() => Interlocked.Increment(ref _unqueued);

    /// <summary>A registered item will never be queued (it was cancelled first).</summary>
    public void Unregister()
    {
        lock (_gate)
        {
            Interlocked.Decrement(ref _unqueued);
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Queues a registered item. True when the caller should start a worker for it.</summary>
    public bool Enqueue(T item)
    {
        int late;
        bool start;
        lock (_gate)
        {
            // Queued before it stops counting as registered: HasWork, read without the lock,
            // then sees the item as one or the other, never as neither.
            AddLastLocked(item);
            Interlocked.Decrement(ref _unqueued);

            // One idle worker takes the item: a spinning one without being woken. When it is the
            // last item the queue expects (completed, nothing else registered), every other waiter
            // must wake too and leave: a single Pulse left them waiting for ever on a queue that
            // was already drained.
            if (_completed && Volatile.Read(ref _unqueued) == 0)
            {
                Monitor.PulseAll(_gate);
            }
            else
            {
                WakeOneIfNeededLocked();
            }

            start = NeedWorkerLocked(out late);
        }

        StartLate(late);
        return start;
    }

    /// <summary>Puts back, first in line, an item a leaving worker took but never started.</summary>
    public bool Requeue(T item)
    {
        int late;
        bool start;
        lock (_gate)
        {
            GrowIfFullLocked();
            _head = (_head - 1 + _ring.Length) % _ring.Length;
            _ring[_head] = item;
            Volatile.Write(ref _count, _count + 1);
            WakeOneIfNeededLocked();
            start = NeedWorkerLocked(out late);
        }

        StartLate(late);
        return start;
    }

    /// <summary>Removes a queued item (it was cancelled before a worker took it).</summary>
    public bool TryRemove(T item)
    {
        lock (_gate)
        {
            for (int i = 0; i < _count; i++)
            {
                if (EqualityComparer<T>.Default.Equals(_ring[(_head + i) % _ring.Length]!, item))
                {
                    // Close the gap: the items after it move up one place, keeping their order.
                    for (int j = i; j < _count - 1; j++)
                    {
                        _ring[(_head + j) % _ring.Length] = _ring[(_head + j + 1) % _ring.Length];
                    }

                    _ring[(_head + _count - 1) % _ring.Length] = null;
                    Volatile.Write(ref _count, _count - 1);
                    SignalRoomLocked();
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>Removes and returns every queued item (to fail them when no worker can run).</summary>
    public List<T> RemoveAll()
    {
        lock (_gate)
        {
            var all = new List<T>(_count);
            while (_count > 0)
            {
                all.Add(TakeFirstLocked());
            }

            return all;
        }
    }

    /// <summary>No more items will be registered.</summary>
    public void Complete()
    {
        lock (_gate)
        {
            Volatile.Write(ref _completed, true);
            Monitor.PulseAll(_gate);
            if (_count == 0)
            {
                StopLateStartTimerLocked(); // nothing waits: no check is needed
            }
        }
    }

    /// <summary>Blocks a worker until an item is queued; null when the queue is drained for good.</summary>
    /// <param name="afterItem">
    /// The worker comes back from an item it ran: what tells the late-start check that the
    /// workers keep up (a worker's first take does not).
    /// </param>
    public T? Take(bool afterItem = false)
    {
        bool maySpin = _spinTicks > 0;
        while (true)
        {
            lock (_gate)
            {
                if (afterItem)
                {
                    _returns++; // under the gate, where the check reads it
                    afterItem = false;
                }

                if (_count > 0)
                {
                    return TakeFirstLocked();
                }

                if (_completed && Volatile.Read(ref _unqueued) == 0)
                {
                    return null;
                }

                if (!maySpin || _spinning > 0)
                {
                    _waiting++;
                    try
                    {
                        Monitor.Wait(_gate);
                    }
                    finally
                    {
                        _waiting--;
                    }

                    continue;
                }

                // This worker spins, outside the lock; the others block.
                _spinning = 1;
                maySpin = false;
            }

            SpinForItem();
            lock (_gate)
            {
                // Under the gate, with the check that follows: an item queued while this worker
                // spun woke nobody (see WakeOneIfNeededLocked), so it is taken by the next turn of
                // the loop, or — taken by a busy worker meanwhile — this worker blocks.
                _spinning = 0;
            }
        }
    }

    /// <summary>
    /// Blocks the producer until at most <paramref name="count"/> items are queued (taken by
    /// workers, or removed), for up to <paramref name="millisecondsTimeout"/>
    /// (<see cref="Timeout.Infinite"/>: no limit). True when there is room; false on timeout.
    /// One producer at a time.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public bool WaitForRoom(int count, int millisecondsTimeout, CancellationToken cancellationToken = default)
    {
        if (count < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, "The length to wait for must be zero or more.");
        }

        ManualResetEventSlim room;
        lock (_gate)
        {
            if (_count <= count)
            {
                return true;
            }

            room = _room ??= new ManualResetEventSlim(false);
            room.Reset();
            _roomAt = count;
        }

        try
        {
            return room.Wait(millisecondsTimeout, cancellationToken) || Count <= count;
        }
        finally
        {
            lock (_gate)
            {
                _roomAt = -1;
            }
        }
    }

    /// <summary>A worker left (drained, failed or abandoned). True when a replacement should start.</summary>
    public bool WorkerLeft()
    {
        int late;
        bool start;
        lock (_gate)
        {
            _workers--;
            start = NeedWorkerLocked(out late);
        }

        StartLate(late);
        return start;
    }

    /// <summary>A worker the queue asked for could not be started.</summary>
    public void WorkerFailedToStart()
    {
        lock (_gate)
        {
            _workers--;
        }
    }

    /// <summary>Spins until an item is queued, the queue may be drained, or the spin time is up.</summary>
    private void SpinForItem()
    {
        long deadline = Stopwatch.GetTimestamp() + _spinTicks;
        int turn = 0;
        while (Volatile.Read(ref _count) == 0 && !(Volatile.Read(ref _completed) && Volatile.Read(ref _unqueued) == 0))
        {
            if (++turn % 8 == 0)
            {
                // On a busy machine the producer may need this very processor: let it run.
                Thread.Yield();
                if (Stopwatch.GetTimestamp() >= deadline)
                {
                    return;
                }
            }
            else
            {
                Thread.SpinWait(20);
            }
        }
    }

    /// <summary>
    /// Wakes one blocked worker unless the items queued are already spoken for by a spinning one
    /// (it takes the first item without being woken).
    /// </summary>
    private void WakeOneIfNeededLocked()
    {
        if (_waiting > 0 && _count > _spinning)
        {
            Monitor.Pulse(_gate);
        }
    }

    /// <summary>
    /// True when the caller should start a worker now (counted as started). <paramref name="late"/>:
    /// workers beyond the first few that the late-start check started (counted too), for the
    /// caller to start with <see cref="StartLate"/> once out of the lock.
    /// </summary>
    private bool NeedWorkerLocked(out int late)
    {
        late = 0;
        if (WorkerWantedLocked)
        {
            if (_workers < _startAtOnce)
            {
                _workers++;
                return true;
            }

            late = LateStartCheckLocked(Stopwatch.GetTimestamp());
        }

        return false;
    }

    /// <summary>
    /// Arms the late-start check, or runs it once it is due: when no worker came back for an item
    /// since it was armed, workers start for the items no idle worker will take (up to the limit);
    /// otherwise it is armed again. Returns how many workers to start.
    /// </summary>
    private int LateStartCheckLocked(long now, bool due = false)
    {
        if (!_lateStartArmed)
        {
            _lateStartArmed = true;
            _returnsAtArm = _returns;
            _lateStartDue = DueFrom(now);
            ScheduleLateStartCheckLocked();
            return 0;
        }

        if (!due && now < _lateStartDue)
        {
            return 0;
        }

        long returns = _returns;
        if (returns != _returnsAtArm)
        {
            // The workers keep coming back: the items are short. Look again one delay from now.
            _returnsAtArm = returns;
            _lateStartDue = DueFrom(now);
            ScheduleLateStartCheckLocked();
            return 0;
        }

        int start = Math.Min(_count - _waiting - _spinning, _maxWorkers - _workers);
        _workers += start;
        StopLateStartTimerLocked(); // the next backlog arms it again
        return start;
    }

    /// <summary>Items wait that no idle worker will take, and the limit allows another worker.</summary>
    private bool WorkerWantedLocked => _count > _waiting + _spinning && _workers < _maxWorkers;

    private long DueFrom(long now) => _lateStartDelayTicks == long.MaxValue ? long.MaxValue : now + _lateStartDelayTicks;

    /// <summary>
    /// Time until the armed late-start check is due (zero when overdue); null when none is armed.
    /// A producer that waits for its items to end calls <see cref="CheckLateStart"/> then.
    /// </summary>
    public TimeSpan? LateStartCheckIn
    {
        get
        {
            lock (_gate)
            {
                if (!_lateStartArmed || _lateStartDelayTicks == long.MaxValue)
                {
                    return null;
                }

                long left = Math.Max(0, _lateStartDue - Stopwatch.GetTimestamp());
                return TimeSpan.FromSeconds(left / (double)Stopwatch.Frequency);
            }
        }
    }

    /// <summary>Runs the armed late-start check if it is due, and starts the workers it counts.</summary>
    public void CheckLateStart() => RunLateStartCheck(fromTimer: false);

    /// <summary>
    /// Sets the fallback timer for the armed check, once per armed spell (not moved at every
    /// re-arm): a timer moved earlier, or stopped, still woke a thread-pool thread at its old time.
    /// </summary>
    private void ScheduleLateStartCheckLocked()
    {
        if (!_lateStartArmed || _lateStartDelayTicks == long.MaxValue || _lateStartTimerSet)
        {
            return;
        }

        if (_lateStartTimer is null)
        {
            // The timer must not carry the arming thread's context (a runspace's, say) along.
            using (ExecutionContext.SuppressFlow())
            {
                _lateStartTimer = new Timer(s_lateStartTick, this, Timeout.Infinite, Timeout.Infinite);
            }
        }

        _lateStartTimer.Change(FallbackCheckDelay, Timeout.InfiniteTimeSpan);
        _lateStartTimerSet = true;
    }

    /// <summary>
    /// The late-start check from the fallback timer (or, in tests, from the owner): runs the armed
    /// check as if it were due, and starts the workers it counts.
    /// </summary>
    internal void LateStartTick() => RunLateStartCheck(fromTimer: true);

    /// <summary>
    /// The armed late-start check, from the producer (when due) or the timer (as if due). When no
    /// item waits for a worker any more, it is disarmed: the next backlog arms it again.
    /// </summary>
    private void RunLateStartCheck(bool fromTimer)
    {
        int start;
        lock (_gate)
        {
            if (fromTimer)
            {
                _lateStartTimerSet = false; // it fired (or the owner ticks)
            }

            if (!_lateStartArmed)
            {
                return;
            }

            if (!WorkerWantedLocked)
            {
                StopLateStartTimerLocked();
                return;
            }

            start = LateStartCheckLocked(Stopwatch.GetTimestamp(), due: fromTimer);
        }

        StartLate(start);
    }

    /// <summary>Starts the workers a late-start check counted (outside the lock).</summary>
    private void StartLate(int count)
    {
        for (int i = 0; i < count; i++)
        {
            _lateStart!();
        }
    }

    /// <summary>Disarms the late-start check (nothing waits, or its workers were started), timer included.</summary>
    private void StopLateStartTimerLocked()
    {
        _lateStartArmed = false;
        if (_lateStartTimerSet)
        {
            _lateStartTimerSet = false;
            _lateStartTimer!.Change(Timeout.Infinite, Timeout.Infinite); // so it does not run the check
        }
    }

    private void AddLastLocked(T item)
    {
        GrowIfFullLocked();
        _ring[(_head + _count) % _ring.Length] = item;
        Volatile.Write(ref _count, _count + 1);
    }

    private T TakeFirstLocked()
    {
        T item = _ring[_head]!;
        _ring[_head] = null;
        _head = (_head + 1) % _ring.Length;
        Volatile.Write(ref _count, _count - 1);
        SignalRoomLocked();
        if (_count == 0 && _completed && (_lateStartArmed || _lateStartTimerSet))
        {
            StopLateStartTimerLocked(); // drained: a call's last items leave no timer behind
        }

        return item;
    }

    /// <summary>Wakes a producer waiting for room once the queue is down to the length it waits for.</summary>
    private void SignalRoomLocked()
    {
        if (_roomAt >= 0 && _count <= _roomAt)
        {
            _roomAt = -1;
            _room!.Set();
        }
    }

    private void GrowIfFullLocked()
    {
        if (_count < _ring.Length)
        {
            return;
        }

        var bigger = new T?[_ring.Length * 2];
        for (int i = 0; i < _count; i++)
        {
            bigger[i] = _ring[(_head + i) % _ring.Length];
        }

        _ring = bigger;
        _head = 0;
    }
}
