using System.Linq;

namespace AsyncGroup;

/// <summary>What Wait-AsyncGroup returns (asyncio.wait's (done, pending) pair).</summary>
public sealed class WaitResult
{
    internal WaitResult(AsyncTask[] done, AsyncTask[] pending, bool timedOut)
    {
        Done = done;
        Pending = pending;
        TimedOut = timedOut;
    }

    /// <summary>Tasks that had finished when the wait returned, in input order.</summary>
    public AsyncTask[] Done { get; }

    /// <summary>Tasks still pending or running, in input order. They were not cancelled.</summary>
    public AsyncTask[] Pending { get; }

    /// <summary>True when the timeout expired before the -ReturnWhen condition was met.</summary>
    public bool TimedOut { get; }

    /// <inheritdoc />
    public override string ToString() => $"Done: {Done.Length}, Pending: {Pending.Length}" + (TimedOut ? " (timed out)" : string.Empty);

    internal static WaitResult From(Core.WaitOutcome outcome) => new(
        outcome.Done.Select(w => (AsyncTask)w.Tag!).ToArray(),
        outcome.Pending.Select(w => (AsyncTask)w.Tag!).ToArray(),
        outcome.TimedOut);
}
