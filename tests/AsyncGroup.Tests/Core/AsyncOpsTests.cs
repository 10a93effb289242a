using AsyncGroup.Core;
using Xunit;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>asyncio.wait, as_completed, wait_for and shield: <see cref="AsyncOps"/>.</summary>
public class AsyncOpsTests
{
    [Fact]
    public async Task Wait_AllCompleted_returns_when_every_task_is_done()
    {
        TaskCompletionSource started = NewGate(), release = NewGate();
        var a = WorkTask<int>.Run(_ => Task.FromResult(1));
        var b = WorkTask<int>.Run(SignalThenWait(started, release, 2));
        await started.Task.Bounded();

        Task<WaitOutcome> wait = AsyncOps.WaitAsync(new WorkTask[] { a, b });
        Assert.False(wait.IsCompleted);
        release.SetResult();
        WaitOutcome outcome = await wait.Bounded();

        Assert.Equal(new WorkTask[] { a, b }, outcome.Done);
        Assert.Empty(outcome.Pending);
        Assert.False(outcome.TimedOut);
    }

    [Fact]
    public async Task Wait_FirstCompleted_returns_the_done_one_and_leaves_the_others_running()
    {
        TaskCompletionSource s1 = NewGate(), s2 = NewGate(), releaseFirst = NewGate(), firstStarted = NewGate();
        var first = WorkTask<int>.Run(SignalThenWait(firstStarted, releaseFirst, 1));
        var t1 = WorkTask<int>.Run(SignalThenBlock(s1));
        var t2 = WorkTask<int>.Run(SignalThenBlock(s2));
        await Task.WhenAll(s1.Task, s2.Task, firstStarted.Task).Bounded();

        Task<WaitOutcome> wait = AsyncOps.WaitAsync(new WorkTask[] { t1, first, t2 }, ReturnWhen.FirstCompleted);
        releaseFirst.SetResult();
        WaitOutcome outcome = await wait.Bounded();

        Assert.Equal(new WorkTask[] { first }, outcome.Done);
        Assert.Equal(new WorkTask[] { t1, t2 }, outcome.Pending);
        Assert.False(outcome.TimedOut);
        Assert.Equal(WorkTaskState.Running, t1.State);
        Assert.Equal(WorkTaskState.Running, t2.State);
        Assert.False(t1.IsCancellationRequested);
        Assert.False(t2.IsCancellationRequested);
        await CancelAndDrain(t1, t2);
    }

    [Fact]
    public async Task Wait_FirstException_returns_at_once_when_a_task_already_failed()
    {
        var failed = WorkTask<int>.Run(_ => throw new InvalidOperationException("x"));
        await failed.Completion.Bounded();
        var started = NewGate();
        var blocked = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();

        Task<WaitOutcome> wait = AsyncOps.WaitAsync(new WorkTask[] { blocked, failed }, ReturnWhen.FirstException);

        // Decided synchronously: the failed task's callback runs while the wait registers it.
        Assert.True(wait.IsCompleted);
        WaitOutcome outcome = await wait;
        Assert.Equal(new WorkTask[] { failed }, outcome.Done);
        Assert.Equal(new WorkTask[] { blocked }, outcome.Pending);
        Assert.False(outcome.TimedOut);
        Assert.False(blocked.IsCancellationRequested);
        await CancelAndDrain(blocked);
    }

    [Fact]
    public async Task Wait_FirstException_returns_when_a_running_task_fails()
    {
        TaskCompletionSource started = NewGate(), fail = NewGate();
        var failing = WorkTask<int>.Run(async _ =>
        {
            await fail.Task;
            throw new InvalidOperationException("x");
        });
        var blocked = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();

        Task<WaitOutcome> wait = AsyncOps.WaitAsync(new WorkTask[] { failing, blocked }, ReturnWhen.FirstException);
        fail.SetResult();
        WaitOutcome outcome = await wait.Bounded();

        Assert.Equal(new WorkTask[] { failing }, outcome.Done);
        Assert.Equal(WorkTaskState.Running, blocked.State);
        await CancelAndDrain(blocked);
    }

    [Fact]
    public async Task Wait_FirstException_degrades_to_AllCompleted_when_nothing_fails()
    {
        var completed = WorkTask<int>.Run(_ => Task.FromResult(1));
        var cancelledStarted = NewGate();
        var cancelled = WorkTask<int>.Run(SignalThenBlock(cancelledStarted));
        await cancelledStarted.Task.Bounded();
        cancelled.Cancel();
        await Task.WhenAll(completed.Completion, cancelled.Completion).Bounded();
        TaskCompletionSource started = NewGate(), release = NewGate();
        var last = WorkTask<int>.Run(SignalThenWait(started, release, 3));
        await started.Task.Bounded();

        Task<WaitOutcome> wait = AsyncOps.WaitAsync(new WorkTask[] { completed, cancelled, last }, ReturnWhen.FirstException);

        // A completion and a cancellation are not exceptions: still waiting for the last one.
        Assert.False(wait.IsCompleted);
        release.SetResult();
        WaitOutcome outcome = await wait.Bounded();
        Assert.Equal(new WorkTask[] { completed, cancelled, last }, outcome.Done);
        Assert.Empty(outcome.Pending);
        Assert.False(outcome.TimedOut);
    }

    [Fact]
    public async Task Wait_timeout_returns_done_and_pending_with_TimedOut_raises_nothing_and_cancels_nothing()
    {
        var done = WorkTask<int>.Run(_ => Task.FromResult(1));
        var started = NewGate();
        var blocked = WorkTask<int>.Run(SignalThenBlock(started));
        await Task.WhenAll(done.Completion, started.Task).Bounded();

        WaitOutcome outcome = await AsyncOps.WaitAsync(new WorkTask[] { done, blocked }, ReturnWhen.AllCompleted, TimeSpan.FromMilliseconds(50)).Bounded();

        Assert.True(outcome.TimedOut);
        Assert.Equal(new WorkTask[] { done }, outcome.Done);
        Assert.Equal(new WorkTask[] { blocked }, outcome.Pending);
        Assert.Equal(WorkTaskState.Running, blocked.State);
        Assert.False(blocked.IsCancellationRequested);
        await CancelAndDrain(blocked);
    }

    [Fact]
    public async Task Wait_with_a_zero_timeout_reports_without_waiting()
    {
        var started = NewGate();
        var blocked = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();

        WaitOutcome outcome = await AsyncOps.WaitAsync(new WorkTask[] { blocked }, timeout: TimeSpan.Zero).Bounded();

        Assert.True(outcome.TimedOut);
        Assert.Equal(new WorkTask[] { blocked }, outcome.Pending);
        await CancelAndDrain(blocked);
    }

    [Fact]
    public async Task Wait_on_an_empty_list_throws_ArgumentException()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => AsyncOps.WaitAsync(Array.Empty<WorkTask>()));
    }

    [Fact]
    public async Task Wait_rejects_a_null_entry_and_an_unknown_ReturnWhen()
    {
        var t = WorkTask<int>.Run(_ => Task.FromResult(1));
        await Assert.ThrowsAsync<ArgumentException>(() => AsyncOps.WaitAsync(new WorkTask[] { t, null! }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => AsyncOps.WaitAsync(new WorkTask[] { t }, (ReturnWhen)42));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => AsyncOps.WaitAsync(new WorkTask[] { t }, timeout: TimeSpan.FromSeconds(-1)));
    }

    [Fact]
    public async Task Cancelling_the_waits_owner_token_cancels_the_wait_only()
    {
        using var owner = new CancellationTokenSource();
        var started = NewGate();
        var blocked = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();
        Task<WaitOutcome> wait = AsyncOps.WaitAsync(new WorkTask[] { blocked }, cancellationToken: owner.Token);

        owner.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait.Bounded());
        Assert.Equal(WorkTaskState.Running, blocked.State);
        Assert.False(blocked.IsCancellationRequested);
        await CancelAndDrain(blocked);
    }

    [Fact]
    public async Task AsCompleted_yields_tasks_in_completion_order()
    {
        var gates = Enumerable.Range(0, 3).Select(_ => NewGate()).ToArray();
        var tasks = gates.Select((g, i) => WorkTask<int>.Run(async _ =>
        {
            await g.Task;
            return i;
        })).ToArray();

        IReadOnlyList<Task<WorkTask>> slots = AsyncOps.AsCompleted(tasks);
        var yielded = new List<WorkTask>();
        foreach ((int release, int slot) in new[] { (2, 0), (0, 1), (1, 2) })
        {
            gates[release].SetResult();
            yielded.Add(await slots[slot].Bounded());
        }

        Assert.Equal(new WorkTask[] { tasks[2], tasks[0], tasks[1] }, yielded);
    }

    [Fact]
    public async Task AsCompleted_timeout_throws_TimeoutException_for_the_rest_and_leaves_them_running()
    {
        var done = WorkTask<int>.Run(_ => Task.FromResult(1));
        await done.Completion.Bounded();
        TaskCompletionSource s1 = NewGate(), s2 = NewGate();
        var b1 = WorkTask<int>.Run(SignalThenBlock(s1));
        var b2 = WorkTask<int>.Run(SignalThenBlock(s2));
        await Task.WhenAll(s1.Task, s2.Task).Bounded();

        IReadOnlyList<Task<WorkTask>> slots = AsyncOps.AsCompleted(new WorkTask[] { b1, done, b2 }, TimeSpan.FromMilliseconds(50));

        Assert.Same(done, await slots[0].Bounded());
        await Assert.ThrowsAsync<TimeoutException>(() => slots[1].Bounded());
        await Assert.ThrowsAsync<TimeoutException>(() => slots[2].Bounded());
        Assert.Equal(WorkTaskState.Running, b1.State);
        Assert.Equal(WorkTaskState.Running, b2.State);
        Assert.False(b1.IsCancellationRequested || b2.IsCancellationRequested);
        await CancelAndDrain(b1, b2);
    }

    [Fact]
    public async Task AsCompleted_owner_cancellation_cancels_the_remaining_awaitables()
    {
        using var owner = new CancellationTokenSource();
        var started = NewGate();
        var blocked = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();
        IReadOnlyList<Task<WorkTask>> slots = AsyncOps.AsCompleted(new WorkTask[] { blocked }, cancellationToken: owner.Token);

        owner.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => slots[0].Bounded());
        await CancelAndDrain(blocked);
    }

    [Fact]
    public async Task WaitFor_returns_the_value_when_the_task_finishes_in_time()
    {
        var t = WorkTask<int>.Run(_ => Task.FromResult(5));

        Assert.Equal(5, await AsyncOps.WaitForAsync(t, TimeSpan.FromSeconds(30)).Bounded());
    }

    [Fact]
    public async Task WaitFor_on_expiry_cancels_the_task_and_its_cleanup_has_run_before_TimeoutException()
    {
        int cleaned = 0;
        var started = NewGate();
        var t = WorkTask<int>.Run(async ct =>
        {
            started.SetResult();
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

        await started.Task.Bounded(); // the deadline must find the work running

        var ex = await Assert.ThrowsAsync<TimeoutException>(() => AsyncOps.WaitForAsync(t, TimeSpan.FromMilliseconds(50)).Bounded());

        // Checked the moment the exception surfaced: the work's finally block had already run.
        Assert.Equal(1, Volatile.Read(ref cleaned));
        Assert.Equal(WorkTaskState.Cancelled, t.State);
        Assert.IsAssignableFrom<OperationCanceledException>(ex.InnerException);
    }

    [Fact]
    public async Task WaitFor_a_value_returned_while_cancelling_wins()
    {
        var started = NewGate();
        var t = WorkTask<int>.Run(async ct =>
        {
            started.SetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
                return 0;
            }
            catch (OperationCanceledException)
            {
                return 7;
            }
        });

        await started.Task.Bounded(); // the deadline must find the work running

        Assert.Equal(7, await AsyncOps.WaitForAsync(t, TimeSpan.FromMilliseconds(50)).Bounded());
        Assert.Equal(WorkTaskState.Completed, t.State);
    }

    [Fact]
    public async Task WaitFor_an_error_raised_while_cancelling_wins()
    {
        var cleanupFailed = new InvalidOperationException("cleanup failed");
        var started = NewGate();
        var t = WorkTask<int>.Run(async ct =>
        {
            started.SetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
                return 0;
            }
            catch (OperationCanceledException)
            {
                throw cleanupFailed;
            }
        });

        await started.Task.Bounded(); // the deadline must find the work running

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => AsyncOps.WaitForAsync(t, TimeSpan.FromMilliseconds(50)).Bounded());

        Assert.Same(cleanupFailed, ex);
        Assert.Equal(WorkTaskState.Failed, t.State);
    }

    [Fact]
    public async Task WaitFor_owner_cancellation_cancels_the_task_and_throws_OperationCanceledException()
    {
        using var owner = new CancellationTokenSource();
        var started = NewGate();
        var t = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();
        Task<int> waitFor = AsyncOps.WaitForAsync(t, null, owner.Token);

        owner.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waitFor.Bounded());
        Assert.Equal(WorkTaskState.Cancelled, t.State);
    }

    [Fact]
    public async Task RunWithTimeoutAsync_cancels_the_work_on_expiry_and_throws_TimeoutException()
    {
        int entered = 0, cleaned = 0;

        await Assert.ThrowsAsync<TimeoutException>(() => AsyncOps.RunWithTimeoutAsync<int>(async ct =>
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
        }, TimeSpan.FromMilliseconds(50)).Bounded());

        // Usually it ran and was cancelled; on a loaded box it may have been cancelled while still queued.
        Assert.Equal(Volatile.Read(ref entered), Volatile.Read(ref cleaned));
    }

    [Fact]
    public async Task ShieldAsync_cancelling_the_outer_wait_throws_and_the_inner_task_completes()
    {
        using var outer = new CancellationTokenSource();
        TaskCompletionSource started = NewGate(), release = NewGate();
        var t = WorkTask<int>.Run(SignalThenWait(started, release, 11));
        await started.Task.Bounded();
        Task<int> shielded = AsyncOps.ShieldAsync(t, outer.Token);

        outer.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => shielded.Bounded());
        Assert.Equal(WorkTaskState.Running, t.State);
        Assert.False(t.IsCancellationRequested);
        release.SetResult();
        Assert.Equal(11, await t.WaitAsync().Bounded());
    }

    [Fact]
    public async Task ShieldAsync_returns_the_value_when_not_cancelled()
    {
        var t = WorkTask<int>.Run(_ => Task.FromResult(4));

        Assert.Equal(4, await AsyncOps.ShieldAsync(t).Bounded());
    }
}
