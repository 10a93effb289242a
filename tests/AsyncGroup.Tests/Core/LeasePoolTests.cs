using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests.Core;

/// <summary>The rules that place remote tasks on sessions, without sessions.</summary>
public class LeasePoolTests
{
    private sealed class Resource
    {
        public Resource(string name) => Name = name;

        public string Name { get; }

        public bool Usable { get; set; } = true;
    }

    private static Resource[] Resources(params string[] names) => names.Select(n => new Resource(n)).ToArray();

    private static int Acquire(LeasePool<Resource> pool, Resource[] set, LeaseCursor cursor, CancellationToken token = default) =>
        pool.Acquire(set, r => r, r => r.Usable, cursor, token);

    [Fact]
    public void Free_resources_are_taken_in_turn_after_the_one_chosen_last()
    {
        var pool = new LeasePool<Resource>();
        Resource[] set = Resources("a", "b", "c");
        var cursor = new LeaseCursor();

        Assert.Equal(0, Acquire(pool, set, cursor));
        pool.Release(set[0]);
        Assert.Equal(1, Acquire(pool, set, cursor)); // a is free again, but b's turn comes first
        Assert.Equal(2, Acquire(pool, set, cursor));
        Assert.Equal(0, Acquire(pool, set, cursor));
        Assert.Equal(3, pool.HeldCount);
    }

    [Fact]
    public void A_resource_is_held_by_one_lease_at_a_time_across_sets()
    {
        var pool = new LeasePool<Resource>();
        Resource[] set = Resources("a", "b");
        Assert.Equal(0, Acquire(pool, set, new LeaseCursor()));

        // Another call given the same resources gets the free one.
        Assert.Equal(1, Acquire(pool, set, new LeaseCursor()));
    }

    [Fact]
    public void Unusable_resources_are_skipped_and_none_usable_returns_minus_one_at_once()
    {
        var pool = new LeasePool<Resource>();
        Resource[] set = Resources("broken", "ok");
        set[0].Usable = false;
        var cursor = new LeaseCursor();

        Assert.Equal(1, Acquire(pool, set, cursor));
        pool.Release(set[1]);
        set[1].Usable = false;
        Assert.Equal(-1, Acquire(pool, set, cursor));
        Assert.Equal(-1, Acquire(pool, Array.Empty<Resource>(), cursor));
    }

    [Fact]
    public async Task A_waiter_gets_the_resource_when_it_is_released()
    {
        var pool = new LeasePool<Resource>();
        Resource[] set = Resources("only");
        Assert.Equal(0, Acquire(pool, set, new LeaseCursor()));

        Task<int> waiter = Task.Run(() => Acquire(pool, set, new LeaseCursor()));
        await Task.Delay(50);
        Assert.False(waiter.IsCompleted);
        pool.Release(set[0]);
        Assert.Equal(0, await waiter.Bounded());
    }

    [Fact]
    public async Task A_waiter_gives_up_when_the_held_resource_becomes_unusable()
    {
        var pool = new LeasePool<Resource>() { RecheckInterval = TimeSpan.FromMilliseconds(20) };
        Resource[] set = Resources("only");
        Assert.Equal(0, Acquire(pool, set, new LeaseCursor()));

        Task<int> waiter = Task.Run(() => Acquire(pool, set, new LeaseCursor()));
        set[0].Usable = false; // it broke while held elsewhere
        Assert.Equal(-1, await waiter.Bounded());
    }

    [Fact]
    public async Task Cancelling_a_waiter_ends_its_wait()
    {
        var pool = new LeasePool<Resource>() { RecheckInterval = TimeSpan.FromMinutes(1) };
        Resource[] set = Resources("only");
        Assert.Equal(0, Acquire(pool, set, new LeaseCursor()));
        using var cts = new CancellationTokenSource();

        Task<int> waiter = Task.Run(() => Acquire(pool, set, new LeaseCursor(), cts.Token));
        await Task.Delay(50);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiter.Bounded());
        Assert.Equal(1, pool.HeldCount);
    }
}
