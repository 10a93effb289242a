using System;
using AsyncGroup.Core;

namespace AsyncGroup.Execution;

/// <summary>
/// The bound on tasks started without a throttle (Start-AsyncTask without -ThrottleLimit, outside a
/// Start-TaskGroup that has one): at most <see cref="Limit"/> of them run at once, the rest wait
/// first in, first out. One limiter serves the whole process; tasks started by a task (on a worker's
/// thread) use that worker's own limiter instead, so a task waiting for tasks it started never
/// waits for a slot its own level holds (nesting cannot deadlock on the bound).
/// </summary>
/// <remarks>
/// The default, 5, is the peers' (ThreadJob's -ThrottleLimit, ForEach-Object -Parallel's) and the
/// module's own Invoke-Gather pipeline default: a worker is a runspace (megabytes and tens of
/// milliseconds to open), and most tasks wait on I/O, so a small bound that users raise on purpose
/// beats one that grows with the core count. A new value applies to tasks started afterwards.
/// </remarks>
internal static class DefaultThrottle
{
    internal const int InitialLimit = 5;

    private static readonly object s_gate = new();
    private static ConcurrencyLimiter s_limiter = new(InitialLimit);

    /// <summary>The bound; at least 1.</summary>
    internal static int Limit
    {
        get
        {
            lock (s_gate)
            {
                return s_limiter.MaxConcurrency;
            }
        }

        set
        {
            if (value < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "The default throttle limit must be at least 1.");
            }

            lock (s_gate)
            {
                // Tasks admitted by the old limiter release their slots there; new tasks queue here.
                if (s_limiter.MaxConcurrency != value)
                {
                    s_limiter = new ConcurrencyLimiter(value);
                }
            }
        }
    }

    /// <summary>The limiter for a task started on this thread: the calling worker's own, or the process-wide one.</summary>
    internal static ConcurrencyLimiter Current
    {
        get
        {
            lock (s_gate)
            {
                return Worker.OnThisThread is { } worker ? worker.NestedLimiter(s_limiter.MaxConcurrency) : s_limiter;
            }
        }
    }
}
