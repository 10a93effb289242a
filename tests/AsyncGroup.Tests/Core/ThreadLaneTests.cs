using System.Collections.Concurrent;
using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests.Core;

/// <summary>The lane that runs worker opens on a few threads of its own.</summary>
public class ThreadLaneTests
{
    [Fact]
    public async Task Never_runs_more_actions_at_once_than_its_threads_and_runs_them_all()
    {
        var lane = new ThreadLane(2, "lane-test");
        var release = new ManualResetEventSlim(false);
        int running = 0, most = 0, ran = 0;
        for (int i = 0; i < 10; i++)
        {
            lane.Run(() =>
            {
                TestAsync.RecordMax(ref most, Interlocked.Increment(ref running));
                release.Wait(TestAsync.Deadline);
                Interlocked.Decrement(ref running);
                Interlocked.Increment(ref ran);
            });
        }

        await WaitUntil(() => Volatile.Read(ref running) == 2);
        Assert.Equal(2, lane.Threads); // two threads for ten blocked actions, not ten
        release.Set();
        await WaitUntil(() => Volatile.Read(ref ran) == 10);
        Assert.Equal(2, Volatile.Read(ref most));
        await WaitUntil(() => lane.Threads == 0); // and they end once nothing is queued
    }

    [Fact]
    public async Task One_thread_runs_the_actions_in_the_order_they_were_queued()
    {
        var lane = new ThreadLane(1, "lane-test");
        var order = new ConcurrentQueue<int>();
        var gate = new ManualResetEventSlim(false);
        lane.Run(() => gate.Wait(TestAsync.Deadline)); // holds the thread while the rest queue up
        for (int i = 0; i < 20; i++)
        {
            int n = i;
            lane.Run(() => order.Enqueue(n));
        }

        gate.Set();
        await WaitUntil(() => order.Count == 20);
        Assert.Equal(Enumerable.Range(0, 20), order);
    }

    [Fact]
    public async Task An_action_that_throws_is_reported_and_the_next_one_still_runs()
    {
        var reported = new ConcurrentQueue<Exception>();
        var lane = new ThreadLane(1, "lane-test", reported.Enqueue);
        var ran = TestAsync.NewGate();
        lane.Run(() => throw new InvalidOperationException("boom"));
        lane.Run(() => ran.SetResult());
        await ran.Task.Bounded();
        Assert.Equal("boom", Assert.Single(reported).Message);
    }

    [Fact]
    public async Task A_report_that_throws_does_not_lose_the_thread()
    {
        var lane = new ThreadLane(1, "lane-test", _ => throw new InvalidOperationException("the report failed"));
        lane.Run(() => throw new InvalidOperationException("boom"));
        var ran = TestAsync.NewGate();
        lane.Run(() => ran.SetResult());
        await ran.Task.Bounded();
        await WaitUntil(() => lane.Threads == 0);
    }

    [Fact]
    public async Task Runs_on_named_background_threads()
    {
        var lane = new ThreadLane(1, "lane-test");
        var seen = TestAsync.NewGate<(bool Background, string? Name)>();
        lane.Run(() => seen.SetResult((Thread.CurrentThread.IsBackground, Thread.CurrentThread.Name)));
        (bool background, string? name) = await seen.Task.Bounded();
        Assert.True(background, "A lane thread must never keep the process alive.");
        Assert.Equal("lane-test", name);
    }

    [Fact]
    public async Task An_action_queued_while_the_last_thread_is_leaving_still_runs()
    {
        // The thread has found the queue empty but still counts: the action queued then starts no
        // thread of its own, so the leaving thread must take it.
        var lane = new ThreadLane(1, "lane-test");
        var late = TestAsync.NewGate();
        int leaving = 0, threadsThen = -1;
        lane.BeforeLeaving = () =>
        {
            if (Interlocked.Increment(ref leaving) == 1)
            {
                lane.Run(() => late.SetResult());
                threadsThen = lane.Threads; // (asserted below: an assertion failing on the lane thread would end the test host)
            }
        };
        lane.Run(() => { });
        await late.Task.Bounded();
        Assert.Equal(1, Volatile.Read(ref threadsThen)); // the late action started no thread of its own
        await WaitUntil(() => lane.Threads == 0);
    }

    [Fact]
    public void A_lane_needs_at_least_one_thread()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ThreadLane(0, "lane-test"));
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TestAsync.Deadline;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "Condition not reached before the deadline.");
            await Task.Delay(5);
        }
    }
}
