using System;
using System.Collections.Generic;
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
/// </remarks>
public sealed class WorkQueue<T>
    where T : class
{
    private readonly object _gate = new();
    private readonly LinkedList<T> _items = new();
    private readonly int _maxWorkers;
    private int _workers;
    private int _waiting;
    private int _unqueued;
    private bool _completed;

    /// <summary>Creates a queue served by at most <paramref name="maxWorkers"/> workers.</summary>
    public WorkQueue(int maxWorkers)
    {
        if (maxWorkers < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxWorkers), maxWorkers, "At least one worker is needed.");
        }

        _maxWorkers = maxWorkers;
    }

    /// <summary>Items queued and not taken.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _items.Count;
            }
        }
    }

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

    /// <summary>Workers blocked in <see cref="Take"/> waiting for an item.</summary>
    public int Waiting
    {
        get
        {
            lock (_gate)
            {
                return _waiting;
            }
        }
    }

    /// <summary>True while an item may still be taken (queued, registered, or not completed).</summary>
    public bool HasWork
    {
        get
        {
            lock (_gate)
            {
                return _items.Count > 0 || !_completed || Volatile.Read(ref _unqueued) > 0;
            }
        }
    }

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
        lock (_gate)
        {
            Interlocked.Decrement(ref _unqueued);
            _items.AddLast(item);

            // One waiter takes the item. When it is the last item the queue expects (completed,
            // nothing else registered), every other waiter must wake too and leave: a single Pulse
            // left them waiting for ever on a queue that was already drained.
            if (_completed && Volatile.Read(ref _unqueued) == 0)
            {
                Monitor.PulseAll(_gate);
            }
            else
            {
                Monitor.Pulse(_gate);
            }

            return NeedWorkerLocked();
        }
    }

    /// <summary>Puts back, first in line, an item a leaving worker took but never started.</summary>
    public bool Requeue(T item)
    {
        lock (_gate)
        {
            _items.AddFirst(item);
            Monitor.Pulse(_gate);
            return NeedWorkerLocked();
        }
    }

    /// <summary>Removes a queued item (it was cancelled before a worker took it).</summary>
    public bool TryRemove(T item)
    {
        lock (_gate)
        {
            return _items.Remove(item);
        }
    }

    /// <summary>Removes and returns every queued item (to fail them when no worker can run).</summary>
    public List<T> RemoveAll()
    {
        lock (_gate)
        {
            var all = new List<T>(_items);
            _items.Clear();
            return all;
        }
    }

    /// <summary>No more items will be registered.</summary>
    public void Complete()
    {
        lock (_gate)
        {
            _completed = true;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>Blocks a worker until an item is queued; null when the queue is drained for good.</summary>
    public T? Take()
    {
        lock (_gate)
        {
            while (true)
            {
                if (_items.First is { } first)
                {
                    _items.RemoveFirst();
                    return first.Value;
                }

                if (_completed && Volatile.Read(ref _unqueued) == 0)
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

    /// <summary>A worker left (drained, failed or abandoned). True when a replacement should start.</summary>
    public bool WorkerLeft()
    {
        lock (_gate)
        {
            _workers--;
            return NeedWorkerLocked();
        }
    }

    /// <summary>A worker the queue asked for could not be started.</summary>
    public void WorkerFailedToStart()
    {
        lock (_gate)
        {
            _workers--;
        }
    }

    private bool NeedWorkerLocked()
    {
        if (_items.Count > _waiting && _workers < _maxWorkers)
        {
            _workers++;
            return true;
        }

        return false;
    }
}
