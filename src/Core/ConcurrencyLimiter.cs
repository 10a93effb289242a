using System;
using System.Threading;
using System.Threading.Tasks;

namespace AsyncGroup.Core;

/// <summary>
/// Bounds how many tasks run at once. Waiters are admitted first-in first-out, so tasks
/// start in the order they were created. Shared by every task started with it.
/// </summary>
public sealed class ConcurrencyLimiter
{
    private readonly SemaphoreSlim _slots;

    /// <summary>Creates a limiter admitting at most <paramref name="maxConcurrency"/> tasks at once.</summary>
    public ConcurrencyLimiter(int maxConcurrency)
    {
        if (maxConcurrency < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxConcurrency), maxConcurrency, "The concurrency limit must be at least 1.");
        }

        MaxConcurrency = maxConcurrency;
        _slots = new SemaphoreSlim(maxConcurrency, maxConcurrency);
    }

    /// <summary>The most tasks admitted at once.</summary>
    public int MaxConcurrency { get; }

    /// <summary>How many slots are taken right now.</summary>
    public int InUse => MaxConcurrency - _slots.CurrentCount;

    internal Task WaitAsync(CancellationToken cancellationToken) => _slots.WaitAsync(cancellationToken);

    internal void Release() => _slots.Release();
}
