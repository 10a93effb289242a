namespace AsyncGroup.Core;

/// <summary>
/// The life of a <see cref="WorkTask"/>: Pending → Running → exactly one of
/// Completed, Failed or Cancelled. A Pending task may go straight to Cancelled.
/// </summary>
public enum WorkTaskState
{
    /// <summary>Created, waiting for a concurrency slot or a thread.</summary>
    Pending = 0,
    /// <summary>Its work delegate has been invoked and has not finished.</summary>
    Running = 1,
    /// <summary>The work returned a value (possibly after a cancellation request).</summary>
    Completed = 2,
    /// <summary>The work threw, or its own timeout expired.</summary>
    Failed = 3,
    /// <summary>The work was cancelled (before it started, or it honoured the request).</summary>
    Cancelled = 4,
}

/// <summary>When <see cref="AsyncOps.WaitAsync"/> returns (asyncio's return_when).</summary>
public enum ReturnWhen
{
    /// <summary>When every task is done.</summary>
    AllCompleted = 0,
    /// <summary>When any task is done.</summary>
    FirstCompleted = 1,
    /// <summary>When any task fails; equivalent to AllCompleted when none does.</summary>
    FirstException = 2,
}
