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
/// <remarks>
/// The pool never holds more items than were needed at once: when a renter gives up waiting for an
/// item on its way back and creates a replacement, the late item is refused on its return (the
/// caller disposes it) unless another renter is waiting for it. So a stopped worker that comes
/// back slowly is replaced, not added to.
/// </remarks>
public sealed class WarmPool<T>
    where T : class
{
    private readonly object _gate = new();
    private readonly Stack<(T Item, DateTime Since)> _idle = new();
    private readonly TimeSpan _returnWait;
    private readonly Func<DateTime> _clock;
    private int _returning;
    private int _replaced;
    private int _renters;
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

    /// <summary>Items announced as on their way back (<see cref="Returning"/>) and not returned yet.</summary>
    public int ReturningCount
    {
        get
        {
            lock (_gate)
            {
                return _returning;
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
            WaitForReturning(_returnWait);

            if (_idle.Count > 0)
            {
                return _idle.Pop().Item;
            }

            if (_returning > 0 && !_closed)
            {
                // The caller creates a replacement for an item still on its way back: that item
                // is surplus when it arrives.
                _replaced = Math.Min(_replaced + 1, _returning);
            }

            return null;
        }
    }

    /// <summary>
    /// An idle item, or one that comes back within <paramref name="wait"/> (waited for only while
    /// one is on its way back); otherwise null — and unlike <see cref="TryRent"/>, no replacement is
    /// counted: the caller may still call <see cref="TryRent"/>.
    /// </summary>
    public T? TryRentIdle(TimeSpan wait)
    {
        lock (_gate)
        {
            WaitForReturning(wait);

            return _idle.Count > 0 ? _idle.Pop().Item : null;
        }
    }

    /// <summary>
    /// Under the lock: waits, up to <paramref name="wait"/>, while nothing is idle and an item is on
    /// its way back; counted as a renter meanwhile.
    /// </summary>
    private void WaitForReturning(TimeSpan wait)
    {
        DateTime deadline = _clock() + wait;
        _renters++;
        try
        {
            while (_idle.Count == 0 && _returning > 0 && !_closed)
            {
                TimeSpan left = deadline - _clock();
                if (left <= TimeSpan.Zero || !Monitor.Wait(_gate, left))
                {
                    break;
                }
            }
        }
        finally
        {
            _renters--;
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
    /// Ends a <see cref="Returning"/> announcement: the item comes back to the pool (true) or does
    /// not (false: the caller disposes it) — when <paramref name="item"/> is null (it is not coming
    /// back after all), the pool is closed, or a replacement was created while it was on its way
    /// and no renter is waiting for it now.
    /// </summary>
    public bool Return(T? item)
    {
        lock (_gate)
        {
            _returning = Math.Max(0, _returning - 1);
            Monitor.PulseAll(_gate);
            bool refuse = item is null || _closed;
            if (!refuse && _replaced > 0 && _renters == 0)
            {
                _replaced--;
                refuse = true;
            }

            // A debt never outlives the announcements it was taken against.
            _replaced = Math.Min(_replaced, _returning);
            if (refuse)
            {
                return false;
            }

            _idle.Push((item!, _clock()));
            return true;
        }
    }

    /// <summary>Removes and returns the items idle since before <paramref name="idleBefore"/>; the rest keep their order.</summary>
    public List<T> Trim(DateTime idleBefore)
    {
        lock (_gate)
        {
            return RemoveIdleLocked(entry => entry.Since < idleBefore);
        }
    }

    /// <summary>The idle items now, the next to be rented first (a snapshot: they may be rented meanwhile).</summary>
    public List<T> IdleItems()
    {
        lock (_gate)
        {
            var items = new List<T>(_idle.Count);
            foreach (var entry in _idle)
            {
                items.Add(entry.Item);
            }

            return items;
        }
    }

    /// <summary>
    /// Takes <paramref name="item"/> out of the idle items, the others keeping their order; false
    /// when it is not idle (rented meanwhile, or never returned). The caller disposes it.
    /// </summary>
    public bool RemoveIdle(T item)
    {
        lock (_gate)
        {
            return RemoveIdleLocked(entry => ReferenceEquals(entry.Item, item)).Count > 0;
        }
    }

    /// <summary>Under the lock: removes and returns the idle items <paramref name="remove"/> picks; the rest keep their order.</summary>
    private List<T> RemoveIdleLocked(Func<(T Item, DateTime Since), bool> remove)
    {
        var removed = new List<T>();
        var keep = new List<(T, DateTime)>(_idle.Count);
        foreach (var entry in _idle)
        {
            if (remove(entry))
            {
                removed.Add(entry.Item);
            }
            else
            {
                keep.Add(entry);
            }
        }

        if (removed.Count > 0)
        {
            _idle.Clear();
            for (int i = keep.Count - 1; i >= 0; i--)
            {
                _idle.Push(keep[i]);
            }
        }

        return removed;
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
