using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace AsyncGroup.Execution;

/// <summary>
/// The tasks of one script plan (one cmdlet call, or one script block of it) and the workers
/// serving them. Workers take tasks from the batch's queue until it is completed and empty, so in
/// pipeline mode an item costs a queue hop, not a runspace, a parse or a PowerShell instance.
/// </summary>
internal sealed class ScriptBatch
{
    private readonly object _gate = new();
    private readonly LinkedList<AsyncTask> _queue = new();
    private readonly int _maxWorkers;
    private int _workers;
    private int _waiting;
    private int _unqueued; // tasks created for this batch that have not reached the queue yet
    private bool _completed;

    public ScriptBatch(ScriptPlan plan, int maxWorkers)
    {
        Plan = plan;
        _maxWorkers = Math.Max(1, maxWorkers);
        Pool = WorkerPool.For(plan.Settings.Modules);
    }

    public ScriptPlan Plan { get; }

    public WorkerPool Pool { get; }

    /// <summary>A task was created for this batch: until it is queued (or ends first), the batch is not drained.</summary>
    public void Register()
    {
        lock (_gate)
        {
            _unqueued++;
        }
    }

    /// <summary>A registered task ended without ever being queued (cancelled while pending).</summary>
    public void Unregister()
    {
        lock (_gate)
        {
            _unqueued--;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Queues a task whose Core work just started; it is cancelled through <paramref name="cancellationToken"/>.</summary>
    public void Enqueue(AsyncTask task, CancellationToken cancellationToken)
    {
        bool spawn;
        lock (_gate)
        {
            _unqueued--;
            _queue.AddLast(task);
            spawn = NeedWorkerLocked();
            Monitor.Pulse(_gate);
        }

        cancellationToken.Register(static s => ((AsyncTask)s!).Batch.Cancel((AsyncTask)s!), task);
        if (spawn)
        {
            StartWorker();
        }
    }

    /// <summary>No more tasks will come: idle workers finish once the queue is empty.</summary>
    public void Complete()
    {
        lock (_gate)
        {
            _completed = true;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Blocks a worker until a task is queued; null when the batch is complete and drained.</summary>
    internal AsyncTask? Take()
    {
        lock (_gate)
        {
            while (true)
            {
                if (_queue.First is { } first)
                {
                    _queue.RemoveFirst();
                    return first.Value;
                }

                if (_completed && _unqueued == 0)
                {
                    return null;
                }

                _waiting++;
                try
                {
                    Monitor.Wait(_gate);
                }
                finally
                {
                    _waiting--;
                }
            }
        }
    }

    /// <summary>Puts back a task a stopping worker took but never started.</summary>
    internal void Requeue(AsyncTask task)
    {
        bool spawn;
        lock (_gate)
        {
            _queue.AddFirst(task);
            spawn = NeedWorkerLocked();
            Monitor.Pulse(_gate);
        }

        if (spawn)
        {
            StartWorker();
        }
    }

    /// <summary>True while the batch may still hand out tasks.</summary>
    internal bool HasWork
    {
        get
        {
            lock (_gate)
            {
                return _queue.Count > 0 || !_completed || _unqueued > 0;
            }
        }
    }

    /// <summary>A worker stopped serving this batch (drained, failed or abandoned).</summary>
    internal void WorkerLeft()
    {
        bool spawn;
        lock (_gate)
        {
            _workers--;
            spawn = NeedWorkerLocked();
        }

        if (spawn)
        {
            StartWorker();
        }
    }

    private bool NeedWorkerLocked()
    {
        if (_queue.Count > _waiting && _workers < _maxWorkers)
        {
            _workers++;
            return true;
        }

        return false;
    }

    private void StartWorker()
    {
        // Opening a runspace takes tens of milliseconds: never on the caller's thread, and several in parallel.
        _ = Task.Run(() =>
        {
            Worker worker;
            try
            {
                worker = Pool.Rent();
            }
            catch (Exception ex)
            {
                FailQueued(ex);
                WorkerLeftAfterFailure();
                return;
            }

            worker.Start(this);
        });
    }

    private void WorkerLeftAfterFailure()
    {
        lock (_gate)
        {
            _workers--;
        }
    }

    /// <summary>Fails every queued task with <paramref name="ex"/> (a worker could not be created or its driver broke).</summary>
    internal void FailQueued(Exception ex)
    {
        List<AsyncTask> failed;
        lock (_gate)
        {
            failed = new List<AsyncTask>(_queue);
            _queue.Clear();
        }

        foreach (AsyncTask task in failed)
        {
            task.SetFailed(ErrorHelper.FromException(
                new InvalidOperationException("A worker runspace could not be created: " + ex.Message, ex),
                ErrorIds.WorkerFailed,
                task));
        }
    }

    /// <summary>Cancels a task wherever it is: still queued, or running on a worker.</summary>
    private void Cancel(AsyncTask task)
    {
        bool wasQueued;
        lock (_gate)
        {
            wasQueued = _queue.Remove(task);
        }

        if (wasQueued)
        {
            task.SetCancelled(task.CancellationToken);
            return;
        }

        task.RunningOn?.Stop(task);
    }
}
