using System.Diagnostics;
using AsyncGroup.Core;
using Xunit;
using Xunit.Abstractions;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>asyncio.TaskGroup: <see cref="TaskGroup"/>.</summary>
public class TaskGroupTests
{
    private readonly ITestOutputHelper _output;

    public TaskGroupTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public async Task Two_children_both_finish_and_the_group_returns_the_bodys_value()
    {
        WorkTask<int>? a = null, b = null;

        string result = await TaskGroup.RunAsync(async (g, _) =>
        {
            a = g.Start(_ => Task.FromResult(1));
            b = g.Start(async _ =>
            {
                await Task.Yield();
                return 2;
            });
            await Task.Yield();
            return "body";
        }).Bounded();

        Assert.Equal("body", result);
        Assert.Equal(1, a!.GetResult());
        Assert.Equal(2, b!.GetResult());
    }

    [Fact]
    public async Task A_failure_cancels_a_waiting_child_before_the_running_one_whose_cancellation_frees_its_worker()
    {
        // As for a gather: a worker freed by a cancelled child takes the next waiting child at once,
        // which must already be cancelled, or it would start after the group had failed.
        WorkTask<int>? waiting = null;
        bool? waitingCancelledFirst = null;

        await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync(async (g, body) =>
        {
            var fail = NewGate();
            var running = NewGate();
            _ = g.Start(NoteNextCancelledOnCancel(running, () => waiting, c => waitingCancelledFirst = c));
            _ = g.Start<int>(async _ =>
            {
                await fail.Task;
                throw new InvalidOperationException("boom");
            });
            waiting = g.Start(UntilCancelled);
            await running.Task;
            fail.SetResult();
            await Task.Delay(Timeout.Infinite, body);
        }).Bounded());

        Assert.True(waitingCancelledFirst);
        Assert.Equal(WorkTaskState.Cancelled, waiting!.State);
    }

    [Fact]
    public async Task One_child_cancelled_via_Cancel_while_the_others_finish_is_not_an_error()
    {
        WorkTask<int>? cancelled = null, finished = null;
        TaskGroup? group = null;

        await TaskGroup.RunAsync(async (g, _) =>
        {
            group = g;
            var started = NewGate();
            cancelled = g.Start(SignalThenBlock(started));
            finished = g.Start(_ => Task.FromResult(2));
            await started.Task;
            cancelled.Cancel();
        }).Bounded();

        Assert.Equal(WorkTaskState.Cancelled, cancelled!.State);
        Assert.Equal(WorkTaskState.Completed, finished!.State);
        Assert.False(group!.IsAborting);
        Assert.True(group.IsFinished);
    }

    [Fact]
    public async Task A_failure_cancels_the_siblings_and_the_body_and_the_aggregate_holds_only_that_error()
    {
        var boom = new InvalidOperationException("boom");
        WorkTask<int>? sibling = null, failing = null;
        bool bodySawCancellation = false;

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync(async (g, ct) =>
        {
            var siblingStarted = NewGate();
            sibling = g.Start(SignalThenBlock(siblingStarted));
            failing = g.Start<int>(async _ =>
            {
                await siblingStarted.Task;
                throw boom;
            });
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            finally
            {
                bodySawCancellation = ct.IsCancellationRequested;
            }
        }, name: "g1").Bounded());

        Assert.Single(ex.InnerExceptions);
        Assert.Same(boom, ex.InnerExceptions[0]);
        Assert.Same(boom, ex.Trigger);
        Assert.Equal("g1", ex.GroupName);
        Assert.Contains("boom", ex.Message);
        Assert.True(bodySawCancellation);
        Assert.Equal(WorkTaskState.Cancelled, sibling!.State);
        Assert.Equal(WorkTaskState.Failed, failing!.State);
    }

    [Fact]
    public async Task A_child_error_then_a_body_error_are_both_in_the_aggregate_child_first()
    {
        var childError = new InvalidOperationException("child");
        var bodyError = new FormatException("body");

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync(async (g, ct) =>
        {
            _ = g.Start<int>(async _ =>
            {
                await Task.Yield();
                throw childError;
            });
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                throw bodyError;
            }
        }).Bounded());

        Assert.Equal(new Exception[] { childError, bodyError }, ex.InnerExceptions);
    }

    [Fact]
    public async Task A_body_error_then_a_child_error_are_both_in_the_aggregate_body_first()
    {
        var childError = new InvalidOperationException("child, while cancelling");
        var bodyError = new FormatException("body");

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync(async (g, bodyToken) =>
        {
            var started = NewGate();
            _ = g.Start<int>(async ct =>
            {
                started.SetResult();
                try
                {
                    await Task.Delay(Timeout.Infinite, ct);
                    return 0;
                }
                catch (OperationCanceledException)
                {
                    throw childError;
                }
            });
            await started.Task;
            throw bodyError;
        }).Bounded());

        Assert.Equal(new Exception[] { bodyError, childError }, ex.InnerExceptions);
        Assert.Same(bodyError, ex.Trigger);
    }

    [Fact]
    public async Task An_inner_group_failure_nests_inside_the_outer_aggregate()
    {
        var boom = new InvalidOperationException("inner boom");
        WorkTask<int>? outerSibling = null;

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync(async (outer, outerToken) =>
        {
            var started = NewGate();
            outerSibling = outer.Start(SignalThenBlock(started));
            _ = outer.Start(ct => TaskGroup.RunAsync<int>(async (inner, innerToken) =>
            {
                await started.Task;
                _ = inner.Start<int>(_ => throw boom);
                return 0;
            }, name: "inner", cancellationToken: ct));
            await Task.Yield();
        }, name: "outer").Bounded());

        Assert.Equal("outer", ex.GroupName);
        Assert.Single(ex.InnerExceptions);
        var inner = Assert.IsType<TaskGroupException>(ex.InnerExceptions[0]);
        Assert.Equal("inner", inner.GroupName);
        Assert.Same(boom, Assert.Single(inner.InnerExceptions));
        Assert.Equal(WorkTaskState.Cancelled, outerSibling!.State);
    }

    [Fact]
    public async Task An_inner_group_run_by_the_body_nests_inside_the_outer_aggregate()
    {
        var boom = new InvalidOperationException("inner boom");

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync(async (outer, ct) =>
        {
            await TaskGroup.RunAsync(async (inner, innerToken) =>
            {
                _ = inner.Start<int>(_ => throw boom);
                await Task.Yield();
            }, name: "inner", cancellationToken: ct);
        }, name: "outer").Bounded());

        var inner = Assert.IsType<TaskGroupException>(Assert.Single(ex.InnerExceptions));
        Assert.Same(boom, Assert.Single(inner.InnerExceptions));
    }

    [Fact]
    public async Task Owner_cancellation_gives_a_plain_OperationCanceledException_not_an_aggregate()
    {
        using var owner = new CancellationTokenSource();
        var started = Enumerable.Range(0, 3).Select(_ => NewGate()).ToArray();
        var bodyStarted = NewGate();
        var children = new List<WorkTask>();

        Task run = TaskGroup.RunAsync(async (g, ct) =>
        {
            foreach (TaskCompletionSource s in started)
            {
                children.Add(g.Start(SignalThenBlock(s)));
            }

            bodyStarted.SetResult();
            await Task.Delay(Timeout.Infinite, ct);
        }, cancellationToken: owner.Token);
        await Task.WhenAll(started.Select(s => s.Task).Append(bodyStarted.Task)).Bounded();

        owner.Cancel();

        var ex = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.Bounded());
        Assert.Equal(owner.Token, ex.CancellationToken);
        Assert.All(children, c => Assert.Equal(WorkTaskState.Cancelled, c.State));
    }

    [Fact]
    public async Task Children_adding_children_are_awaited()
    {
        TaskCompletionSource grandchildStarted = NewGate(), releaseGrandchild = NewGate();
        WorkTask<int>? child = null, grandchild = null;

        Task run = TaskGroup.RunAsync((g, _) =>
        {
            child = g.Start(_ =>
            {
                grandchild = g.Start(SignalThenWait(grandchildStarted, releaseGrandchild, 3));
                return Task.FromResult(1);
            });
            return Task.CompletedTask;
        });
        await grandchildStarted.Task.Bounded();
        await child!.Completion.Bounded();

        // The body and the child are done; the scope still waits for the grandchild.
        Assert.False(run.IsCompleted);
        releaseGrandchild.SetResult();
        await run.Bounded();

        Assert.Equal(WorkTaskState.Completed, grandchild!.State);
        Assert.Equal(3, grandchild.GetResult());
    }

    [Fact]
    public async Task Creating_a_task_on_a_finished_group_throws_InvalidOperationException()
    {
        TaskGroup? group = null;
        await TaskGroup.RunAsync((g, _) =>
        {
            group = g;
            g.Start(_ => Task.FromResult(1));
            return Task.CompletedTask;
        }).Bounded();

        Assert.True(group!.IsFinished);
        Assert.Throws<InvalidOperationException>(() => group.Start(_ => Task.FromResult(2)));
        Assert.Single(group.Tasks);
    }

    [Fact]
    public async Task Creating_a_task_on_an_aborting_group_throws_InvalidOperationException()
    {
        var boom = new InvalidOperationException("boom");
        Exception? startError = null;
        bool wasAborting = false;

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync(async (g, ct) =>
        {
            _ = g.Start<int>(_ => throw boom);
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                wasAborting = g.IsAborting;
                startError = Record.Exception(() => g.Start(_ => Task.FromResult(2)));
            }
        }).Bounded());

        Assert.True(wasAborting);
        Assert.IsType<InvalidOperationException>(startError);
        Assert.Same(boom, Assert.Single(ex.InnerExceptions));
    }

    [Fact]
    public async Task A_child_is_prepared_after_the_group_accepts_it_and_before_its_work_can_run()
    {
        bool prepared = false, preparedWhenRun = false;
        WorkTaskState stateWhenPrepared = WorkTaskState.Completed;
        WorkTask<int>? seen = null, child = null;

        await TaskGroup.RunAsync((g, _) =>
        {
            child = g.Start(
                _ =>
                {
                    preparedWhenRun = Volatile.Read(ref prepared);
                    return Task.FromResult(1);
                },
                beforeStart: t =>
                {
                    seen = t;
                    stateWhenPrepared = t.State;
                    Volatile.Write(ref prepared, true);
                });
            return Task.CompletedTask;
        }).Bounded();

        Assert.Same(child, seen);
        Assert.Equal(WorkTaskState.Pending, stateWhenPrepared);
        Assert.True(preparedWhenRun);
        Assert.Equal(1, child!.GetResult());
    }

    [Fact]
    public async Task A_child_whose_preparation_throws_ends_Cancelled_without_running_and_the_group_does_not_wait_for_it()
    {
        var prepError = new InvalidOperationException("prep");
        bool ran = false;
        Exception? startError = null;
        TaskGroup? group = null;

        await TaskGroup.RunAsync((g, _) =>
        {
            group = g;
            startError = Record.Exception(() => g.Start(
                _ =>
                {
                    ran = true;
                    return Task.FromResult(1);
                },
                beforeStart: _ => throw prepError));
            return Task.CompletedTask;
        }).Bounded();

        Assert.Same(prepError, startError);
        Assert.False(ran);
        WorkTask child = Assert.Single(group!.Tasks);
        Assert.Equal(WorkTaskState.Cancelled, child.State);
    }

    [Fact]
    public async Task A_child_the_group_refuses_is_never_prepared()
    {
        TaskGroup? group = null;
        await TaskGroup.RunAsync((g, _) =>
        {
            group = g;
            return Task.CompletedTask;
        }).Bounded();

        bool prepared = false;
        Assert.Throws<InvalidOperationException>(() => group!.Start(_ => Task.FromResult(2), beforeStart: _ => prepared = true));
        Assert.False(prepared);
        Assert.Empty(group!.Tasks);
    }

    [Fact]
    public async Task A_group_timeout_cancels_the_children_and_throws_TimeoutException()
    {
        int entered = 0, cleaned = 0;
        WorkTask<int>? child = null;

        await Assert.ThrowsAsync<TimeoutException>(() => TaskGroup.RunAsync((g, _) =>
        {
            child = g.Start(async ct =>
            {
                Volatile.Write(ref entered, 1);
                try
                {
                    await Task.Delay(Timeout.Infinite, ct);
                    return 0;
                }
                finally
                {
                    Volatile.Write(ref cleaned, 1);
                }
            });
            return Task.CompletedTask;
        }, options: new TaskGroupOptions { Timeout = TimeSpan.FromMilliseconds(100) }).Bounded());

        Assert.Equal(WorkTaskState.Cancelled, child!.State);
        // Awaited: its finally had run (unless the deadline found it still queued and it never ran).
        Assert.Equal(Volatile.Read(ref entered), Volatile.Read(ref cleaned));
    }

    [Fact]
    public async Task A_limiter_in_a_group_bounds_its_children()
    {
        const int limit = 2;
        int running = 0, max = 0;
        var limiter = new ConcurrencyLimiter(limit);
        var children = new List<WorkTask<int>>();

        await TaskGroup.RunAsync((g, _) =>
        {
            for (int i = 0; i < 30; i++)
            {
                int index = i;
                children.Add(g.Start(async _ =>
                {
                    RecordMax(ref max, Interlocked.Increment(ref running));
                    try
                    {
                        await Task.Delay(1);
                        return index;
                    }
                    finally
                    {
                        Interlocked.Decrement(ref running);
                    }
                }));
            }

            return Task.CompletedTask;
        }, options: new TaskGroupOptions { Limiter = limiter }).Bounded();

        Assert.InRange(Volatile.Read(ref max), 1, limit);
        Assert.Equal(Enumerable.Range(0, 30), children.Select(c => c.GetResult()));
    }

    [Fact]
    public async Task A_shielded_child_keeps_running_when_the_group_is_cancelled_and_completes_with_its_value()
    {
        using var owner = new CancellationTokenSource();
        TaskCompletionSource shieldedStarted = NewGate(), releaseShielded = NewGate(), plainStarted = NewGate();
        WorkTask<int>? shielded = null, plain = null;

        Task run = TaskGroup.RunAsync(async (g, ct) =>
        {
            shielded = g.Start(SignalThenWait(shieldedStarted, releaseShielded, 42), shielded: true);
            plain = g.Start(SignalThenBlock(plainStarted));
            await Task.Delay(Timeout.Infinite, ct);
        }, cancellationToken: owner.Token);
        await Task.WhenAll(shieldedStarted.Task, plainStarted.Task).Bounded();

        owner.Cancel();
        await plain!.Completion.Bounded();

        Assert.Equal(WorkTaskState.Cancelled, plain.State);
        Assert.Equal(WorkTaskState.Running, shielded!.State);
        Assert.False(shielded.IsCancellationRequested);
        Assert.False(run.IsCompleted); // the scope still owns the shielded child
        releaseShielded.SetResult();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.Bounded());
        Assert.Equal(WorkTaskState.Completed, shielded.State);
        Assert.Equal(42, shielded.GetResult());
    }

    [Fact]
    public async Task A_sibling_blocked_in_a_cancellable_wait_ends_Cancelled_after_a_group_failure()
    {
        // The promptness rule, asserted as an outcome: the sibling ends, Cancelled. The latency is
        // printed for information only; the box is shared, so it is never asserted.
        var siblingStarted = NewGate();
        var failedAt = new Stopwatch();
        WorkTask<int>? sibling = null;

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync(async (g, bodyToken) =>
        {
            sibling = g.Start(SignalThenBlock(siblingStarted));
            await siblingStarted.Task;
            _ = g.Start<int>(_ =>
            {
                failedAt.Start();
                throw new InvalidOperationException("boom");
            });
        }).Bounded());
        await sibling!.Completion.Bounded();
        TimeSpan latency = failedAt.Elapsed;

        Assert.Equal(WorkTaskState.Cancelled, sibling.State);
        Assert.Single(ex.InnerExceptions);
        _output.WriteLine($"sibling ended {latency.TotalMilliseconds:0.0} ms after the failure");
    }

    [Fact]
    public async Task A_sibling_blocked_in_a_cancellable_wait_ends_Cancelled_after_a_gather_failure()
    {
        var siblingStarted = NewGate();
        var gatherer = new Gatherer<int>();
        WorkTask<int> sibling = gatherer.Add(SignalThenBlock(siblingStarted));
        var failedAt = new Stopwatch();
        _ = gatherer.Add(async _ =>
        {
            await siblingStarted.Task;
            failedAt.Start();
            throw new InvalidOperationException("boom");
        });
        gatherer.Seal();

        await Assert.ThrowsAsync<InvalidOperationException>(() => gatherer.WhenAllAsync().Bounded());
        await sibling.Completion.Bounded();

        Assert.Equal(WorkTaskState.Cancelled, sibling.State);
        _output.WriteLine($"sibling ended {failedAt.Elapsed.TotalMilliseconds:0.0} ms after the failure");
    }

    [Fact]
    public async Task An_OperationCanceledException_a_child_throws_on_its_own_is_a_failure_of_the_group()
    {
        var own = new OperationCanceledException("the child's own timeout");

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync((g, _) =>
        {
            g.Start<int>(_ => throw own);
            return Task.CompletedTask;
        }).Bounded());

        Assert.Same(own, Assert.Single(ex.InnerExceptions));
    }

    [Fact]
    public async Task A_body_that_throws_alone_fails_the_group_with_its_error()
    {
        var bodyError = new FormatException("body");
        WorkTask<int>? child = null;

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync((g, _) =>
        {
            child = g.Start(UntilCancelled);
            throw bodyError;
        }).Bounded());

        Assert.Same(bodyError, Assert.Single(ex.InnerExceptions));
        Assert.Equal(WorkTaskState.Cancelled, child!.State);
    }

    [Fact]
    public async Task Joining_a_group_twice_throws_InvalidOperationException()
    {
        var group = new TaskGroup();
        _ = group.Start(_ => Task.FromResult(1));
        await group.JoinAsync().Bounded();

        await Assert.ThrowsAsync<InvalidOperationException>(() => group.JoinAsync());
    }
}
