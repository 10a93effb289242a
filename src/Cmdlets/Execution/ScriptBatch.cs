using System;
using System.Collections.Generic;
using System.Threading;
using System.Management.Automation;
using AsyncGroup.Core;

namespace AsyncGroup.Execution;

/// <summary>
/// The tasks of one script plan (one cmdlet call, or one script block of it) and the workers
/// serving them. Workers take tasks from the batch's queue until it is drained, so in pipeline
/// mode an item costs a queue hop, not a runspace, a parse or a PowerShell instance. The queueing
/// rules live in Core's <see cref="WorkQueue{T}"/>; this class connects them to runspaces.
/// </summary>
internal sealed class ScriptBatch
{
    private readonly WorkQueue<AsyncTask> _queue;
    private readonly object _startGate = new();
    private int _starting;  // workers asked for whose runspace is still being rented or opened
    private int _announced; // of those, how many the pool was told are coming straight back
    private readonly List<KeyValuePair<Worker, int>> _serving = new(); // workers handed this batch that have not left it, with their service numbers

    /// <summary>
    /// How long queued tasks must wait with no worker coming back for another before local
    /// workers beyond one per processor start (see <see cref="WorkQueue{T}"/>'s late starts):
    /// tasks that do not block run no faster on more workers than processors, and 4 workers on
    /// 2 processors spent about a fifth more processor time per trivial item than 2. Tasks that
    /// block (a fan-out of requests or sleeps) get the rest of their workers this much later.
    /// </summary>
    internal static readonly TimeSpan LateStartDelay = TimeSpan.FromMilliseconds(5);

    public ScriptBatch(ScriptPlan plan, int maxWorkers, RemoteTarget? remote = null)
    {
        Plan = plan;
        Remote = remote;
        maxWorkers = Math.Max(1, maxWorkers);

        // Remote tasks wait on the network and cost this computer little: every session starts at once.
        _queue = remote is not null
            ? new WorkQueue<AsyncTask>(maxWorkers)
            : new WorkQueue<AsyncTask>(maxWorkers, Math.Max(1, Environment.ProcessorCount), LateStartDelay, StartWorker);
        Pool = WorkerPool.For(plan.Settings.Modules);
    }

    public ScriptPlan Plan { get; }

    public WorkerPool Pool { get; }

    /// <summary>The remoting sessions the batch runs on (-Session); null for local workers.</summary>
    internal RemoteTarget? Remote { get; }

    /// <summary>Tasks queued and not yet taken by a worker.</summary>
    internal int Queued => _queue.Count;

    /// <summary>Blocks the producer until at most <paramref name="count"/> tasks are queued, or the timeout; true when there is room.</summary>
    internal bool WaitForRoom(int count, int millisecondsTimeout, CancellationToken cancellationToken) =>
        _queue.WaitForRoom(count, millisecondsTimeout, cancellationToken);

    /// <summary>Time until the batch should look again whether its tasks need more workers (see <see cref="CheckLateStart"/>); null: nothing to look at.</summary>
    internal TimeSpan? LateStartCheckIn => _queue.LateStartCheckIn;

    /// <summary>
    /// Starts more workers (up to the limit) if queued tasks waited the late-start delay with no
    /// worker coming back for another: called by the producer while it waits for its tasks.
    /// </summary>
    internal void CheckLateStart() => _queue.CheckLateStart();

    /// <summary>True while the batch may still hand out tasks.</summary>
    internal bool HasWork => _queue.HasWork;

    /// <summary>A task was created for this batch: until it is queued (or ends first), the batch is not drained.</summary>
    public void Register() => _queue.Register();

    /// <summary>A registered task ended without ever being queued (cancelled while pending).</summary>
    public void Unregister()
    {
        _queue.Unregister();
        AnnounceIfDrained();
    }

    /// <summary>
    /// Queues a task whose Core work just started (<paramref name="cancellationToken"/> is its
    /// token). A later cancellation calls <see cref="Cancel"/> through the task's handler.
    /// </summary>
    public void Enqueue(AsyncTask task, CancellationToken cancellationToken)
    {
        bool spawn = _queue.Enqueue(task);

        // Later requests reach the task through its Core task's cancellation handler (set when the
        // task is bound: see AsyncTask.Bind); one made while it was being queued is honoured here.
        if (cancellationToken.IsCancellationRequested)
        {
            Cancel(task);
        }

        if (spawn)
        {
            StartWorker();
        }
    }

    /// <summary>No more tasks will come: idle workers finish once the queue is drained.</summary>
    public void Complete()
    {
        _queue.Complete();
        AnnounceIfDrained();
    }

    /// <summary>Blocks a worker until a task is queued; null when the batch is drained.</summary>
    /// <param name="afterTask">The worker comes back from a task it ran (see <see cref="WorkQueue{T}.Take"/>).</param>
    internal AsyncTask? Take(bool afterTask = false) => _queue.Take(afterTask);

    /// <summary>Puts back a task a stopping worker took but never started.</summary>
    internal void Requeue(AsyncTask task)
    {
        if (_queue.Requeue(task))
        {
            StartWorker();
        }
    }

    /// <summary>A worker stopped serving this batch (drained, failed or abandoned).</summary>
    internal void WorkerLeft(Worker worker)
    {
        lock (_startGate)
        {
            _serving.RemoveAll(entry => ReferenceEquals(entry.Key, worker));
        }

        if (_queue.WorkerLeft())
        {
            StartWorker();
        }
    }

    /// <summary>
    /// Fails every queued task: a worker could not be created, or its driver failed before running
    /// a task (say, -InitializationScript threw — that error is kept as it was).
    /// </summary>
    internal void FailQueued(Exception ex)
    {
        foreach (AsyncTask task in _queue.RemoveAll())
        {
            task.SetFailed(ex is IContainsErrorRecord { ErrorRecord: { } record }
                ? record
                : ErrorHelper.FromException(new InvalidOperationException("A worker runspace could not be created: " + ex.Message, ex), ErrorIds.WorkerFailed, task));
        }
    }

    /// <summary>
    /// Tests only (set by reflection): milliseconds to wait between taking the list of the workers
    /// serving a drained batch and announcing them, so that a worker can come back meanwhile.
    /// </summary>
    internal static int AnnounceDelayForTests;

    /// <summary>
    /// Once nothing is left to run, every worker of this batch — still being opened, or serving it —
    /// will go back to the pool: the pool is told now, so a call renting meanwhile waits for it (or
    /// replaces it) instead of adding a runspace beside it.
    /// </summary>
    private void AnnounceIfDrained()
    {
        if (_queue.HasWork)
        {
            return;
        }

        KeyValuePair<Worker, int>[] serving;
        lock (_startGate)
        {
            // Counted by the pool under the gate: a worker still being opened arrives (or is given
            // up) under it too, and ends the announcement taken for it only once it was made.
            for (int i = _announced; i < _starting; i++)
            {
                Pool.Returning();
            }

            _announced = _starting;
            serving = _serving.ToArray();
        }

        if (AnnounceDelayForTests > 0)
        {
            Thread.Sleep(AnnounceDelayForTests);
        }

        // Every worker serving the batch leaves once its current task (if any) ends — whether it
        // waits for a task, is still preparing for its first, or runs one: announced now, before
        // the call's last task ends and lets the caller return and rent again. A worker that came
        // back since the list was taken is not announced again: its service is over.
        foreach (KeyValuePair<Worker, int> entry in serving)
        {
            entry.Key.SignalReturning(entry.Value);
        }
    }

    /// <summary>
    /// A worker asked for is rented (<paramref name="worker"/>), or failed to be (null): was it
    /// announced as coming back? A rented worker counts as serving the batch from this moment, in
    /// the same step, so a drain announces it exactly once (as starting, or as serving).
    /// </summary>
    private bool WorkerArrived(Worker? worker = null)
    {
        lock (_startGate)
        {
            _starting--;
            bool announced = _announced > 0;
            if (announced)
            {
                _announced--;
            }

            if (worker is not null)
            {
                // Under the gate: a drain announces a worker either as starting (counted above, and
                // taken over by its service) or as serving — never both.
                _serving.Add(new KeyValuePair<Worker, int>(worker, worker.BeginService(announced)));
            }

            return announced;
        }
    }

    private void StartWorker()
    {
        if (Remote is not null)
        {
            RemoteWorker.Start(this, Remote);
            return;
        }

        lock (_startGate)
        {
            _starting++;
        }

        // A warm worker is handed over at once, on this thread: a thread of its own would cost
        // more than a small call's whole work.
        if (Pool.TryRentIdle() is { } idle)
        {
            WorkerArrived(idle);
            idle.Start(this);
            return;
        }

        // Opening a runspace blocks for tens of milliseconds: never on the caller's thread, and not
        // on the thread pool either — twenty blocked pool threads starve it (it grows by about one
        // thread a second), which made a cold fan-out several times slower. Opens run on a few
        // threads of their own, as many as may open at once: a thread per worker asked for only
        // added threads waiting for their turn (about 500 of them in a 500-way fan-out).
        s_openers.Run(OpenWorker);
    }

    /// <summary>Threads that open (or rent) the workers batches ask for, as many as the pool opens at once.</summary>
    private static readonly ThreadLane s_openers = new(WorkerPool.OpenAtOnce, "AsyncGroup-Open");

    /// <summary>On an opener thread: rents or opens a worker the batch asked for, and starts it on the batch.</summary>
    private void OpenWorker()
    {
        if (!_queue.HasWork)
        {
            // Every task ended before a worker was needed (a timeout while the call started):
            // open no runspace for nothing.
            NoWorker(null);
            return;
        }

        Worker? worker;
        try
        {
            // Still needed when a queued task waits with no worker waiting to take it.
            worker = Pool.Rent(() => _queue.Count > _queue.Waiting);
        }
        catch (Exception ex)
        {
            NoWorker(ex);
            return;
        }

        if (worker is null)
        {
            NoWorker(null); // the workers already serving the batch took its tasks meanwhile
            return;
        }

        WorkerArrived(worker);
        worker.Start(this);
    }

    /// <summary>
    /// A worker asked for will not serve the batch (none was needed, or none could be created,
    /// <paramref name="failure"/>): withdraw its announcement, fail what is queued, free its place.
    /// </summary>
    private void NoWorker(Exception? failure)
    {
        if (WorkerArrived())
        {
            Pool.NotReturning();
        }

        if (failure is not null)
        {
            FailQueued(failure);
            _queue.WorkerFailedToStart();
            return;
        }

        // Not needed when asked: but a task queued since, while this worker still counted, may
        // need one now.
        if (_queue.WorkerLeft())
        {
            StartWorker();
        }
    }

    /// <summary>Cancels a task wherever it is: still queued, or running on a worker.</summary>
    internal void Cancel(AsyncTask task)
    {
        if (_queue.TryRemove(task))
        {
            // Announce before the task ends: ending the call's last task lets the call return,
            // and a call renting right after must already see these workers on their way back.
            AnnounceIfDrained();
            task.SetCancelled(task.CancellationToken);
            return;
        }

        task.RunningOn?.Stop(task);
        task.RunningRemotely?.Stop(task);
    }

    /// <summary>A remote worker stopped serving this batch (drained, failed or abandoned).</summary>
    internal void RemoteWorkerLeft()
    {
        if (_queue.WorkerLeft())
        {
            StartWorker();
        }
    }
}
