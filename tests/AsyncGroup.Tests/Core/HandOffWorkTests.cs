using System.Collections.Concurrent;
using AsyncGroup.Core;
using Xunit;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>
/// Hand-off work: a task that passes itself to a runner (the executor's worker queue) and is ended
/// by it, with no Task per run; and the permanent done callbacks such tasks register.
/// </summary>
public class HandOffWorkTests
{
    /// <summary>A runner: the tasks handed to it, in hand-off order, taken by the test.</summary>
    private sealed class Runner
    {
        public BlockingCollection<WorkTask<int>> Handed { get; } = new();

        public void HandOff(WorkTask<int> task) => Handed.Add(task);

        public WorkTask<int> Next()
        {
            Assert.True(Handed.TryTake(out WorkTask<int>? task, Deadline), "nothing was handed off in time");
            return task!;
        }
    }

    [Fact]
    public async Task Handed_off_work_runs_on_the_runner_and_the_task_completes_with_the_value_it_is_ended_with()
    {
        var runner = new Runner();
        var t = new WorkTask<int>(runner.HandOff, "h", null);
        t.Start();

        WorkTask<int> handed = runner.Next();
        Assert.Same(t, handed);
        Assert.Equal(WorkTaskState.Running, t.State);
        Assert.NotNull(t.StartTime);

        Assert.True(handed.EndWork(42));
        await t.Completion.Bounded();
        Assert.Equal(WorkTaskState.Completed, t.State);
        Assert.Equal(42, t.GetResult());
        Assert.False(handed.EndWork(7));
        Assert.False(handed.EndWork(new InvalidOperationException("late")));
        Assert.Equal(42, t.GetResult()); // the first end wins
    }

    [Fact]
    public async Task Handed_off_work_ended_with_an_exception_fails_the_task_with_it()
    {
        var runner = new Runner();
        var t = new WorkTask<int>(runner.HandOff, null, null);
        t.Start();
        var boom = new InvalidOperationException("boom");

        Assert.True(runner.Next().EndWork(boom));
        await t.Completion.Bounded();
        Assert.Equal(WorkTaskState.Failed, t.State);
        Assert.Same(boom, t.Exception);
        Assert.False(t.EndWork(5));
    }

    [Fact]
    public async Task Cancellation_reaches_the_runner_through_the_token_and_an_OperationCanceledException_end_is_Cancelled()
    {
        var runner = new Runner();
        var t = new WorkTask<int>(runner.HandOff, null, null);
        t.Start();
        WorkTask<int> handed = runner.Next();

        Assert.True(t.Cancel());
        Assert.True(handed.CancellationToken.IsCancellationRequested);
        Assert.Equal(WorkTaskState.Running, t.State); // a request: the runner decides when it ends

        handed.EndWork(new OperationCanceledException(handed.CancellationToken));
        await t.Completion.Bounded();
        Assert.Equal(WorkTaskState.Cancelled, t.State);
    }

    [Fact]
    public async Task An_OperationCanceledException_end_without_a_cancel_request_fails_the_task()
    {
        var runner = new Runner();
        var t = new WorkTask<int>(runner.HandOff, null, null);
        t.Start();

        runner.Next().EndWork(new OperationCanceledException("the runner's own"));
        await t.Completion.Bounded();
        Assert.Equal(WorkTaskState.Failed, t.State);
    }

    [Fact]
    public async Task A_hand_off_that_throws_fails_the_task_unless_it_ended_the_work_first()
    {
        var failing = new WorkTask<int>(_ => throw new InvalidOperationException("cannot queue"), null, null);
        failing.Start();
        await failing.Completion.Bounded();
        Assert.Equal(WorkTaskState.Failed, failing.State);
        Assert.Equal("cannot queue", failing.Exception!.Message);

        var endedFirst = new WorkTask<int>(w =>
        {
            w.EndWork(3);
            throw new InvalidOperationException("after the end");
        }, null, null);
        endedFirst.Start();
        await endedFirst.Completion.Bounded();
        Assert.Equal(WorkTaskState.Completed, endedFirst.State);
        Assert.Equal(3, endedFirst.GetResult());
    }

    [Fact]
    public void Work_cannot_be_ended_before_it_is_handed_off_nor_on_a_task_that_runs_its_own_work()
    {
        var limiter = new ConcurrencyLimiter(1);
        Assert.True(limiter.WaitAsync(CancellationToken.None).IsCompleted); // the only slot is held
        var runner = new Runner();
        var pending = new WorkTask<int>(runner.HandOff, null, new TaskStartOptions { Limiter = limiter });
        pending.Start();
        Assert.Equal(WorkTaskState.Pending, pending.State);
        Assert.Throws<InvalidOperationException>(() => pending.EndWork(1));

        var own = new WorkTask<int>(_ => Task.FromResult(1), null, null);
        Assert.Throws<InvalidOperationException>(() => own.EndWork(1));

        pending.Cancel();
        limiter.Release();
        Assert.Equal(WorkTaskState.Cancelled, pending.State);
        Assert.Empty(runner.Handed); // cancelled while it waited for its slot: never handed off
    }

    [Fact]
    public async Task A_limiter_slot_is_held_from_the_hand_off_until_the_work_ends()
    {
        var limiter = new ConcurrencyLimiter(1);
        var runner = new Runner();
        var first = new WorkTask<int>(runner.HandOff, null, new TaskStartOptions { Limiter = limiter });
        var second = new WorkTask<int>(runner.HandOff, null, new TaskStartOptions { Limiter = limiter });
        first.Start();
        second.Start();

        Assert.Same(first, runner.Next());
        Assert.False(runner.Handed.TryTake(out _, TimeSpan.FromMilliseconds(200))); // no slot for the second yet
        Assert.Equal(WorkTaskState.Pending, second.State);

        first.EndWork(1);
        Assert.Same(second, runner.Next());
        second.EndWork(2);
        await Task.WhenAll(first.Completion, second.Completion).Bounded();
        Assert.Equal(new[] { 1, 2 }, new[] { first.GetResult(), second.GetResult() });
    }

    [Fact]
    public async Task A_gather_of_hand_off_work_ends_when_the_runner_has_ended_every_task_and_keeps_input_order()
    {
        var runner = new Runner();
        var gatherer = new Gatherer<int>(new GatherOptions { StartInline = true }); // handed off in order, as Invoke-Gather does
        var tasks = Enumerable.Range(0, 5).Select(i => gatherer.AddHandOff(runner.HandOff, tag: i)).ToList();
        gatherer.Seal();

        var handed = Enumerable.Range(0, 5).Select(_ => runner.Next()).ToList();
        Assert.Equal(tasks, handed);
        Task all = gatherer.WhenAllAsync();
        foreach (WorkTask<int> task in Enumerable.Reverse(handed))
        {
            Assert.False(all.IsCompleted);
            task.EndWork((int)task.Tag! * 10);
        }

        await all.Bounded();
        Assert.Equal(new[] { 0, 10, 20, 30, 40 }, await gatherer.GetResultsAsync().Bounded());
    }

    [Fact]
    public async Task A_gather_stopped_by_a_failed_hand_off_task_cancels_the_others_through_their_tokens()
    {
        var runner = new Runner();
        var gatherer = new Gatherer<int>();
        WorkTask<int> a = gatherer.AddHandOff(runner.HandOff);
        WorkTask<int> b = gatherer.AddHandOff(runner.HandOff);
        gatherer.Seal();
        _ = runner.Next();
        _ = runner.Next();

        a.EndWork(new InvalidOperationException("a failed"));
        Assert.True(b.CancellationToken.IsCancellationRequested);
        b.EndWork(new OperationCanceledException(b.CancellationToken));

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => gatherer.WhenAllAsync().Bounded());
        Assert.Equal("a failed", ex.Message);
        Assert.Equal(WorkTaskState.Cancelled, b.State);
    }

    [Fact]
    public async Task A_task_group_child_with_hand_off_work_is_awaited_by_the_group()
    {
        var runner = new Runner();
        var group = new TaskGroup("g");
        WorkTask<int> child = group.StartHandOff<int>(runner.HandOff, "child");
        Task join = group.JoinAsync();

        WorkTask<int> handed = runner.Next();
        Assert.False(join.IsCompleted);
        handed.EndWork(9);
        await join.Bounded();
        Assert.Equal(9, child.GetResult());
    }

    [Fact]
    public async Task Permanent_callbacks_and_removable_ones_run_once_each_in_registration_order()
    {
        var runner = new Runner();
        var t = new WorkTask<int>(runner.HandOff, null, null);
        var order = new List<string>();
        t.AddPermanentDoneCallback(_ => order.Add("p1"));
        t.AddPermanentDoneCallback(_ => order.Add("p2"));
        IDisposable r1 = t.AddDoneCallback(_ => order.Add("r1"));
        t.AddPermanentDoneCallback(_ => order.Add("p3")); // after an entry: must stay after it
        t.AddDoneCallback(_ => order.Add("r2"));
        t.AddPermanentDoneCallback(_ => order.Add("p4"));
        t.Start();

        runner.Next().EndWork(1);
        await t.Completion.Bounded();
        Assert.Equal(new[] { "p1", "p2", "r1", "p3", "r2", "p4" }, order);

        t.AddPermanentDoneCallback(_ => order.Add("late")); // already done: runs at once, here
        Assert.Equal("late", order[^1]);
        r1.Dispose(); // ran already: no effect
        Assert.Equal(7, order.Count);
    }

    [Fact]
    public async Task More_than_three_permanent_callbacks_all_run_in_order_and_a_throwing_one_stops_none()
    {
        var runner = new Runner();
        var t = new WorkTask<int>(runner.HandOff, null, null);
        var order = new List<int>();
        var failures = new List<Exception>();
        EventHandler<CallbackFailedEventArgs> onFailed = (_, e) =>
        {
            if (ReferenceEquals(e.Task, t))
            {
                lock (failures)
                {
                    failures.Add(e.Exception);
                }
            }
        };
        WorkTask.CallbackFailed += onFailed;
        try
        {
            for (int i = 0; i < 5; i++)
            {
                int index = i;
                t.AddPermanentDoneCallback(_ =>
                {
                    order.Add(index);
                    if (index == 1)
                    {
                        throw new InvalidOperationException("callback 1");
                    }
                });
            }

            t.Start();
            runner.Next().EndWork(1); // the callbacks run here, on this thread, before it returns
            await t.Completion.Bounded();
        }
        finally
        {
            WorkTask.CallbackFailed -= onFailed;
        }

        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, order);
        Assert.Equal("callback 1", Assert.Single(failures).Message);
    }
}
