using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests.Core;

/// <summary>The worker pool's reuse rules, without runspaces.</summary>
public class WarmPoolTests
{
    [Fact]
    public void An_empty_pool_with_nothing_returning_says_create()
    {
        var pool = new WarmPool<string>(TimeSpan.FromSeconds(10));
        Assert.Null(pool.TryRent()); // returns at once: nothing is on its way back
    }

    [Fact]
    public void Rent_prefers_the_most_recently_returned_item()
    {
        var pool = new WarmPool<string>(TimeSpan.Zero);
        pool.Returning();
        pool.Return("old");
        pool.Returning();
        pool.Return("new");
        Assert.Equal("new", pool.TryRent());
        Assert.Equal("old", pool.TryRent());
        Assert.Null(pool.TryRent());
    }

    [Fact]
    public async Task Rent_waits_for_an_item_on_its_way_back_instead_of_creating()
    {
        var pool = new WarmPool<string>(TestAsync.Deadline);
        pool.Returning();
        Task<string?> renter = Task.Run(() => pool.TryRent());
        Assert.False(renter.IsCompleted);
        pool.Return("back");
        Assert.Equal("back", await renter.Bounded());
    }

    [Fact]
    public void Returning_count_is_the_announcements_not_yet_ended()
    {
        var pool = new WarmPool<string>(TimeSpan.Zero);
        pool.Returning();
        pool.Returning();
        Assert.Equal(2, pool.ReturningCount);
        pool.Return("back");
        pool.Return(null); // not coming after all
        Assert.Equal(0, pool.ReturningCount);
        Assert.Equal(1, pool.IdleCount);
    }

    [Fact]
    public void Rent_gives_up_after_the_return_wait()
    {
        var pool = new WarmPool<string>(TimeSpan.FromMilliseconds(1));
        pool.Returning(); // announced but never returned
        Assert.Null(pool.TryRent());
    }

    [Fact]
    public void A_refused_return_ends_the_announcement()
    {
        var pool = new WarmPool<string>(TestAsync.Deadline);
        pool.Returning();
        Assert.False(pool.Return(null)); // the worker broke: the caller disposes it
        Assert.Null(pool.TryRent());      // and nobody waits for it any more
    }

    [Fact]
    public void A_late_item_is_refused_once_a_replacement_was_created_for_it()
    {
        // A stopped worker comes back slowly; the renter gave up waiting and created another:
        // the late one is surplus (the caller disposes it), so the pool does not grow.
        var pool = new WarmPool<string>(TimeSpan.FromMilliseconds(1));
        pool.Returning();
        Assert.Null(pool.TryRent());
        Assert.False(pool.Return("late"));
        Assert.Equal(0, pool.IdleCount);

        pool.Returning();
        Assert.True(pool.Return("next"), "The debt was paid: the next return is kept.");
        Assert.Equal(1, pool.IdleCount);
    }

    [Fact]
    public void An_item_that_never_comes_back_cancels_the_debt_taken_against_it()
    {
        var pool = new WarmPool<string>(TimeSpan.FromMilliseconds(1));
        pool.Returning();
        Assert.Null(pool.TryRent()); // a replacement is created for it
        Assert.False(pool.Return(null)); // it is not coming back after all: the replacement was needed
        pool.Returning();
        Assert.True(pool.Return("later"));
    }

    [Fact]
    public void Renting_with_nothing_on_its_way_back_takes_no_debt()
    {
        var pool = new WarmPool<string>(TimeSpan.FromMilliseconds(1));
        Assert.Null(pool.TryRent()); // real demand: a new item is created
        pool.Returning();
        Assert.True(pool.Return("kept"));
    }

    [Fact]
    public void Trim_hands_back_only_items_idle_for_too_long()
    {
        DateTime now = new(2026, 11, 21, 12, 0, 0, DateTimeKind.Utc);
        var pool = new WarmPool<string>(TimeSpan.Zero, () => now);
        pool.Returning();
        pool.Return("stale");
        now += TimeSpan.FromMinutes(2);
        pool.Returning();
        pool.Return("fresh");
        Assert.Equal(new[] { "stale" }, pool.Trim(now - TimeSpan.FromMinutes(1)));
        Assert.Equal(1, pool.IdleCount);
        Assert.Equal("fresh", pool.TryRent());
    }

    [Fact]
    public void An_idle_item_can_be_taken_out_and_the_others_keep_their_renting_order()
    {
        var pool = new WarmPool<string>(TimeSpan.Zero);
        foreach (string item in new[] { "a", "b", "c" })
        {
            pool.Returning();
            pool.Return(item);
        }

        Assert.Equal(new[] { "c", "b", "a" }, pool.IdleItems()); // the next to be rented first
        Assert.True(pool.RemoveIdle("b"));
        Assert.False(pool.RemoveIdle("b")); // no longer idle
        Assert.False(pool.RemoveIdle("never returned"));
        Assert.Equal(2, pool.IdleCount);
        Assert.Equal("c", pool.TryRent());
        Assert.Equal("a", pool.TryRent());
        Assert.Null(pool.TryRent());
    }

    [Fact]
    public void A_closed_pool_returns_its_idle_items_and_refuses_later_returns()
    {
        var pool = new WarmPool<string>(TimeSpan.Zero);
        pool.Returning();
        pool.Return("a");
        Assert.Equal(new[] { "a" }, pool.Close());
        pool.Returning();
        Assert.False(pool.Return("b"));
    }

    [Fact]
    public void Rent_idle_returns_null_at_once_when_nothing_is_idle_or_returning()
    {
        var pool = new WarmPool<string>(TestAsync.Deadline);
        Assert.Null(pool.TryRentIdle(TestAsync.Deadline)); // a long wait, but nothing to wait for
    }

    [Fact]
    public async Task Rent_idle_takes_an_item_that_comes_back_within_its_wait()
    {
        var pool = new WarmPool<string>(TimeSpan.Zero);
        pool.Returning();
        Task<string?> renter = Task.Run(() => pool.TryRentIdle(TestAsync.Deadline));
        pool.Return("back");
        Assert.Equal("back", await renter.Bounded());
    }

    [Fact]
    public void Rent_idle_that_gives_up_creates_no_replacement_debt()
    {
        // The caller of TryRentIdle creates nothing when it gives up (it hands over to TryRent):
        // the item on its way back must still be welcome when it arrives.
        var pool = new WarmPool<string>(TimeSpan.Zero);
        pool.Returning();
        Assert.Null(pool.TryRentIdle(TimeSpan.FromMilliseconds(1)));
        Assert.True(pool.Return("late"));
        Assert.Equal("late", pool.TryRentIdle(TimeSpan.Zero));
    }
}
