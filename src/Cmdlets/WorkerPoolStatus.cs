using AsyncGroup.Execution;

namespace AsyncGroup;

/// <summary>
/// What the process-wide pool of worker runspaces is doing, for diagnostics and tests:
/// <c>[AsyncGroup.WorkerPoolStatus]::BusyWorkers</c>. An idle worker keeps a waiting driver
/// pipeline, so Get-Runspace shows it as Busy; this tells which ones really serve a call.
/// </summary>
public static class WorkerPoolStatus
{
    /// <summary>Names of the worker runspaces serving a call (or stuck and abandoned) right now.</summary>
    public static string[] BusyWorkers => WorkerPool.BusyNames();

    /// <summary>Workers waiting in the pool for the next call.</summary>
    public static int IdleWorkers => WorkerPool.IdleCount;

    /// <summary>How many worker runspaces this process has created so far.</summary>
    public static int CreatedWorkers => WorkerPool.CreatedCount;
}
