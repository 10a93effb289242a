using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests.Core;

/// <summary>Announcing a worker's way back to the pool: every counted announcement ends once.</summary>
public class ReturnAnnouncementTests
{
    [Fact]
    public void A_new_item_is_not_serving_so_a_notice_changes_nothing()
    {
        var item = new ReturnAnnouncement();
        Assert.False(item.TryAnnounce());
        Assert.False(item.TryAnnounce(item.Service));
        Assert.False(item.LeaveForGood());
    }

    [Fact]
    public void A_serving_item_is_announced_once()
    {
        var item = new ReturnAnnouncement();
        int service = item.Begin(announced: false);
        Assert.True(item.TryAnnounce(service));
        Assert.False(item.TryAnnounce(service));
        Assert.False(item.TryAnnounce());
        Assert.False(item.ComeBack()); // already counted: the return ends that announcement
    }

    [Fact]
    public void An_item_that_comes_back_unannounced_is_announced_by_its_return()
    {
        var item = new ReturnAnnouncement();
        item.Begin(announced: false);
        Assert.True(item.ComeBack());
    }

    [Fact]
    public void An_item_opened_for_an_announcement_takes_it_over()
    {
        var item = new ReturnAnnouncement();
        int service = item.Begin(announced: true);
        Assert.False(item.TryAnnounce(service));
        Assert.False(item.ComeBack());
    }

    [Fact]
    public void A_notice_that_arrives_after_the_item_came_back_changes_nothing()
    {
        // The defect: a drained batch announced a worker from a list taken a moment earlier, after
        // the worker had already come back; the pool then waited for a worker that was not coming.
        var item = new ReturnAnnouncement();
        int service = item.Begin(announced: false);
        Assert.True(item.ComeBack());
        Assert.False(item.TryAnnounce(service));
    }

    [Fact]
    public void A_late_notice_for_an_earlier_service_changes_nothing_in_the_next()
    {
        var item = new ReturnAnnouncement();
        int first = item.Begin(announced: false);
        item.ComeBack();
        int second = item.Begin(announced: false);
        Assert.NotEqual(first, second);
        Assert.False(item.TryAnnounce(first));
        Assert.True(item.TryAnnounce(second));
    }

    [Fact]
    public void An_item_that_keeps_serving_withdraws_once_and_can_be_announced_again()
    {
        var item = new ReturnAnnouncement();
        int service = item.Begin(announced: false);
        Assert.False(item.Withdraw()); // nothing to withdraw yet
        Assert.True(item.TryAnnounce(service));
        Assert.True(item.Withdraw());
        Assert.False(item.Withdraw());
        Assert.True(item.TryAnnounce(service));
    }

    [Fact]
    public void An_item_gone_for_good_withdraws_its_announcement_and_takes_no_more()
    {
        var item = new ReturnAnnouncement();
        int service = item.Begin(announced: false);
        Assert.True(item.TryAnnounce(service));
        Assert.True(item.LeaveForGood());
        Assert.False(item.LeaveForGood());
        Assert.False(item.TryAnnounce(service));
    }

    [Fact]
    public void An_unannounced_item_gone_for_good_has_nothing_to_withdraw()
    {
        var item = new ReturnAnnouncement();
        item.Begin(announced: false);
        Assert.False(item.LeaveForGood());
    }

    [Fact]
    public async Task Late_notices_racing_returns_leave_no_announcement_counted()
    {
        // One worker, many services. In each, another thread sends the notice a drained batch sends,
        // while the worker comes back; the pool must count nothing once every worker is back.
        var pool = new WarmPool<object>(TimeSpan.Zero);
        var item = new ReturnAnnouncement();
        var worker = new object();
        for (int i = 0; i < 2000; i++)
        {
            int service = item.Begin(announced: false);
            using var go = new ManualResetEventSlim();
            var notice = Task.Run(() =>
            {
                go.Wait();
                if (item.TryAnnounce(service))
                {
                    pool.Returning();
                }
            });
            go.Set();
            if (item.ComeBack())
            {
                pool.Returning();
            }

            Assert.True(pool.Return(worker));
            await notice.Bounded();
            Assert.Same(worker, pool.TryRentIdle(TimeSpan.Zero));
        }

        Assert.Equal(0, pool.ReturningCount);
    }
}
