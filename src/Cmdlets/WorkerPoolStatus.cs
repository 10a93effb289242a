using AsyncGroup.Execution;

namespace AsyncGroup;

/// <summary>
/// The process-wide pool of worker runspaces: what it is doing, for diagnostics and tests
/// (<c>[AsyncGroup.WorkerPoolStatus]::BusyWorkers</c>), and the one setting it has,
/// <see cref="DefaultThrottleLimit"/>. An idle worker keeps a waiting driver pipeline, so
/// Get-Runspace shows it as Busy; this tells which ones really serve a call.
/// </summary>
public static class WorkerPoolStatus
{
    /// <summary>Names of the worker runspaces serving a call (or stuck and abandoned) right now.</summary>
    public static string[] BusyWorkers => WorkerPool.BusyNames();

    /// <summary>Workers waiting in the pool for the next call.</summary>
    public static int IdleWorkers => WorkerPool.IdleCount;

    /// <summary>
    /// Workers that a finished or stopping call announced as coming back to the pool and that are
    /// not back yet. A call that needs a worker while none is idle waits briefly for one of these
    /// instead of opening a runspace; 0 once the workers of the calls that ended are back.
    /// </summary>
    public static int ReturningWorkers => WorkerPool.ReturningCount;

    /// <summary>How many worker runspaces this process has created so far.</summary>
    public static int CreatedWorkers => WorkerPool.CreatedCount;

    /// <summary>Worker runspaces open right now (busy, idle or being stopped).</summary>
    public static int LiveWorkers => WorkerPool.LiveCount;

    /// <summary>
    /// How many tasks started without a throttle (Start-AsyncTask without -ThrottleLimit, and the
    /// children of a Start-TaskGroup without one) run at once, process-wide; the rest wait, first
    /// in, first out. Default 5; at least 1. Tasks started inside a task get a bound of this size
    /// of their own. A new value applies to tasks started afterwards.
    /// </summary>
    public static int DefaultThrottleLimit
    {
        get => DefaultThrottle.Limit;
        set => DefaultThrottle.Limit = value;
    }
}
