using System;
using System.Collections.Generic;
using System.Threading;

namespace AsyncGroup.Core;

/// <summary>
/// Exclusive leases on shared resources that serve one holder at a time (remote sessions): the
/// rule behind "one session runs one task at a time, items go to the next free session".
/// </summary>
/// <remarks>
/// Guarantees: a key is held by at most one lease at a time; <see cref="Acquire{T}"/> takes the
/// first candidate that is usable and free, looking from just after the candidate its cursor chose
/// last (so idle resources share the work in turn); it waits while every usable candidate is held,
/// and returns -1 at once when no candidate is usable any more. A release wakes the waiters; a
/// cancellation ends the wait with <see cref="OperationCanceledException"/>. Usability is checked
/// again at least every <see cref="RecheckInterval"/>, so a resource that breaks while held
/// elsewhere does not keep a waiter waiting.
/// </remarks>
public sealed class LeasePool<TKey>
    where TKey : class
{
    private readonly object _gate = new();
    private readonly HashSet<TKey> _held = new();

    /// <summary>How often a waiter re-checks usability without being woken.</summary>
    public TimeSpan RecheckInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Keys leased right now.</summary>
    public int HeldCount
    {
        get
        {
            lock (_gate)
            {
                return _held.Count;
            }
        }
    }

    /// <summary>
    /// Leases one of <paramref name="candidates"/>: returns its index (release it with
    /// <see cref="Release"/>), or -1 when none is usable.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public int Acquire<T>(IReadOnlyList<T> candidates, Func<T, TKey> keyOf, Func<T, bool> isUsable, LeaseCursor cursor, CancellationToken cancellationToken)
    {
        if (candidates.Count == 0)
        {
            return -1;
        }

        using CancellationTokenRegistration wake = cancellationToken.Register(WakeAll);
        lock (_gate)
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int count = candidates.Count;
                bool anyUsable = false;
                for (int i = 0; i < count; i++)
                {
                    int index = (cursor.Next + i) % count;
                    T candidate = candidates[index];
                    if (!isUsable(candidate))
                    {
                        continue;
                    }

                    anyUsable = true;
                    if (_held.Add(keyOf(candidate)))
                    {
                        cursor.Next = (index + 1) % count;
                        return index;
                    }
                }

                if (!anyUsable)
                {
                    return -1;
                }

                Monitor.Wait(_gate, RecheckInterval);
            }
        }
    }

    /// <summary>Ends the lease on <paramref name="key"/> and wakes the waiters.</summary>
    public void Release(TKey key)
    {
        lock (_gate)
        {
            _held.Remove(key);
            Monitor.PulseAll(_gate);
        }
    }

    private void WakeAll()
    {
        lock (_gate)
        {
            Monitor.PulseAll(_gate);
        }
    }
}

/// <summary>Where a set of candidates' next search starts (one per set, e.g. per batch); guarded by the pool.</summary>
public sealed class LeaseCursor
{
    internal int Next { get; set; }
}
