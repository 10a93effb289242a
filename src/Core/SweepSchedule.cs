using System;
using System.Threading;

namespace AsyncGroup.Core;

/// <summary>
/// When a list that drops its finished items now and then should sweep them out: once as many
/// items were released since the last sweep as half the list held after it (at least
/// <see cref="MinSweep"/>). Each item is then looked at a bounded number of times however long the
/// list lives, the list's lock is taken once per many releases, and the list holds about twice its
/// unfinished items. Used by a gather that releases its settled tasks and by a cmdlet's owned tasks.
/// </summary>
internal sealed class SweepSchedule
{
    /// <summary>Fewest releases worth a sweep: fewer, and sweeping costs more than it frees.</summary>
    internal const int MinSweep = 64;

    private int _sinceSweep;
    private volatile int _sweepAt = MinSweep;

    /// <summary>Counts one released item (any thread, no lock); true when a sweep is due.</summary>
    internal bool Released() => Interlocked.Increment(ref _sinceSweep) >= _sweepAt;

    /// <summary>
    /// Under the list's lock, before sweeping: false when the sweep is no longer due (another thread
    /// swept meanwhile); otherwise starts counting afresh.
    /// </summary>
    internal bool TryBegin()
    {
        if (Volatile.Read(ref _sinceSweep) < _sweepAt)
        {
            return false;
        }

        Volatile.Write(ref _sinceSweep, 0);
        return true;
    }

    /// <summary>Under the list's lock, after sweeping: the next sweep comes after half of what is left.</summary>
    internal void Swept(int remaining) => _sweepAt = Math.Max(MinSweep, remaining / 2);
}
