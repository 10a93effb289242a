using System.Collections.Concurrent;
using AsyncGroup.Core;
using Xunit;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>Throttling: <see cref="ConcurrencyLimiter"/>.</summary>
public class LimiterTests
{
    [Fact]
    public async Task A_limiter_never_runs_more_than_N_at_once()
    {
        const int limit = 3;
        int running = 0, max = 0;
        var limiter = new ConcurrencyLimiter(limit);
        var works = Enumerable.Range(0, 60).Select(i => (Func<CancellationToken, Task<int>>)(async _ =>
        {
            RecordMax(ref max, Interlocked.Increment(ref running));
            try
            {
                Assert.True(limiter.InUse <= limit);
                if (i % 2 == 0)
                {
                    await Task.Yield();
                }
                else
                {
                    await Task.Delay(1);
                }

                return i;
            }
            finally
            {
                Interlocked.Decrement(ref running);
            }
        }));

        int[] results = await Gather.RunAsync(works, new GatherOptions { Limiter = limiter }).Bounded();

        Assert.Equal(Enumerable.Range(0, 60), results);
        Assert.InRange(Volatile.Read(ref max), 1, limit);
    }

    [Fact]
    public async Task A_limiter_admits_exactly_N_and_queues_the_rest_as_Pending()
    {
        var limiter = new ConcurrencyLimiter(2);
        var release = NewGate();
        var started = Enumerable.Range(0, 5).Select(_ => NewGate()).ToArray();
        var tasks = started.Select((s, i) => WorkTask<int>.Run(SignalThenWait(s, release, i), options: new TaskStartOptions { Limiter = limiter })).ToArray();

        await Task.WhenAll(started[0].Task, started[1].Task).Bounded();

        Assert.Equal(2, limiter.InUse);
        Assert.Equal(new[] { WorkTaskState.Running, WorkTaskState.Running, WorkTaskState.Pending, WorkTaskState.Pending, WorkTaskState.Pending }, tasks.Select(t => t.State));
        release.SetResult();
        await Task.WhenAll(tasks.Select(t => t.Completion)).Bounded();
        Assert.All(tasks, t => Assert.Equal(WorkTaskState.Completed, t.State));
    }

    [Fact]
    public async Task Tasks_start_in_creation_order_under_a_limiter()
    {
        var order = new ConcurrentQueue<int>();
        var limiter = new ConcurrencyLimiter(1);
        var tasks = Enumerable.Range(0, 40).Select(i => WorkTask<int>.Run(async _ =>
        {
            order.Enqueue(i);
            await Task.Yield();
            return i;
        }, options: new TaskStartOptions { Limiter = limiter })).ToArray();

        await Task.WhenAll(tasks.Select(t => t.Completion)).Bounded();

        Assert.Equal(Enumerable.Range(0, 40), order);
    }

    [Fact]
    public async Task Tasks_created_on_a_pool_thread_start_in_creation_order_under_a_limiter()
    {
        // A pool thread queues Task.Run work to its own LIFO local queue: admission must not depend on it.
        var order = new ConcurrentQueue<int>();
        var limiter = new ConcurrencyLimiter(1);
        WorkTask<int>[] tasks = await Task.Run(() => Enumerable.Range(0, 40).Select(i => WorkTask<int>.Run(async _ =>
        {
            order.Enqueue(i);
            await Task.Yield();
            return i;
        }, options: new TaskStartOptions { Limiter = limiter })).ToArray()).Bounded();

        await Task.WhenAll(tasks.Select(t => t.Completion)).Bounded();

        Assert.Equal(Enumerable.Range(0, 40), order);
    }

    [Fact]
    public async Task Pending_tasks_that_are_cancelled_never_invoke_their_work()
    {
        var limiter = new ConcurrencyLimiter(1);
        TaskCompletionSource holderStarted = NewGate(), releaseHolder = NewGate();
        var holder = WorkTask<int>.Run(SignalThenWait(holderStarted, releaseHolder, 0), options: new TaskStartOptions { Limiter = limiter });
        await holderStarted.Task.Bounded();
        int invoked = 0;
        var queued = Enumerable.Range(0, 5).Select(_ => WorkTask<int>.Run(_ =>
        {
            Interlocked.Increment(ref invoked);
            return Task.FromResult(1);
        }, options: new TaskStartOptions { Limiter = limiter })).ToArray();

        foreach (WorkTask<int> t in queued)
        {
            Assert.Equal(WorkTaskState.Pending, t.State);
            Assert.True(t.Cancel());
            Assert.Equal(WorkTaskState.Cancelled, t.State);
        }

        releaseHolder.SetResult();
        await holder.Completion.Bounded();
        var after = WorkTask<int>.Run(_ => Task.FromResult(2), options: new TaskStartOptions { Limiter = limiter });
        Assert.Equal(2, await after.WaitAsync().Bounded());

        Assert.Equal(0, Volatile.Read(ref invoked));
        Assert.All(queued, t => Assert.Null(t.StartTime));
    }

    [Fact]
    public void A_limit_below_one_is_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ConcurrencyLimiter(0));
        Assert.Equal(4, new ConcurrencyLimiter(4).MaxConcurrency);
    }
}
