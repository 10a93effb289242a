using System;
using System.Collections.Generic;
using System.Threading;

namespace AsyncGroup.Core;

/// <summary>
/// Keeps expensive objects (worker runspaces) warm for reuse. Renting prefers the most recently
/// returned item; when none is idle but one is on its way back (<see cref="Returning"/>), renting
/// waits for it up to <c>returnWait</c> rather than creating a new one; items idle longer than a
/// limit are handed back by <see cref="Trim"/>.
/// </summary>
public sealed class WarmPool<T>
    where T : class
{
    private readonly object _gate = new();
    private readonly Stack<(T Item, DateTime Since)> _idle = new();
    private readonly TimeSpan _returnWait;
    private readonly Func<DateTime> _clock;
    private int _returning;
    private bool _closed;

    /// <summary>Creates a pool; <paramref name="clock"/> is for tests (UTC now by default).</summary>
    public WarmPool(TimeSpan returnWait, Func<DateTime>? clock = null)
    {
        _returnWait = returnWait;
        _clock = clock ?? (() => DateTime.UtcNow);
    }

    /// <summary>Items waiting to be rented.</summary>
    public int IdleCount
    {
        get
        {
            lock (_gate)
            {
                return _idle.Count;
            }
        }
    }

    /// <summary>
    /// An idle item, or — when none is idle and none is on its way back within the wait — null:
    /// the caller then creates one.
    /// </summary>
    public T? TryRent()
    {
        lock (_gate)
        {
            DateTime deadline = _clock() + _returnWait;
            while (_idle.Count == 0 && _returning > 0 && !_closed)
            {
                TimeSpan left = deadline - _clock();
                if (left <= TimeSpan.Zero || !Monitor.Wait(_gate, left))
                {
                    break;
                }
            }

            return _idle.Count > 0 ? _idle.Pop().Item : null;
        }
    }

    /// <summary>An item will be returned shortly: renters may wait for it.</summary>
    public void Returning()
    {
        lock (_gate)
        {
            _returning++;
        }
    }

    /// <summary>
    /// Ends a <see cref="Returning"/> announcement: the item comes back to the pool (true) or, when
    /// <paramref name="item"/> is null or the pool is closed, does not (false: the caller disposes it).
    /// </summary>
    public bool Return(T? item)
    {
        lock (_gate)
        {
            _returning = Math.Max(0, _returning - 1);
            Monitor.PulseAll(_gate);
            if (item is null || _closed)
            {
                return false;
            }

            _idle.Push((item, _clock()));
            return true;
        }
    }

    /// <summary>Removes and returns the items idle since before <paramref name="idleBefore"/>; the rest keep their order.</summary>
    public List<T> Trim(DateTime idleBefore)
    {
        lock (_gate)
        {
            var expired = new List<T>();
            var keep = new List<(T, DateTime)>();
            foreach (var entry in _idle)
            {
                if (entry.Since < idleBefore)
                {
                    expired.Add(entry.Item);
                }
                else
                {
                    keep.Add(entry);
                }
            }

            _idle.Clear();
            for (int i = keep.Count - 1; i >= 0; i--)
            {
                _idle.Push(keep[i]);
            }

            return expired;
        }
    }

    /// <summary>Closes the pool: returns every idle item; later returns are refused.</summary>
    public List<T> Close()
    {
        lock (_gate)
        {
            _closed = true;
            Monitor.PulseAll(_gate);
            var all = new List<T>();
            while (_idle.Count > 0)
            {
                all.Add(_idle.Pop().Item);
            }

            return all;
        }
    }
}
