using AsyncGroup.Core;
using Xunit;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>asyncio.gather: <see cref="Gatherer{T}"/> and <see cref="Gather"/>.</summary>
public class GatherTests
{
    [Fact]
    public async Task Results_come_in_input_order_when_completion_order_differs()
    {
        var gates = Enumerable.Range(0, 3).Select(_ => NewGate()).ToArray();
        var finished = new List<int>();
        var gatherer = new Gatherer<string>();
        for (int i = 0; i < 3; i++)
        {
            int index = i;
            _ = gatherer.Add(async _ =>
            {
                await gates[index].Task;
                lock (finished)
                {
                    finished.Add(index);
                }

                return "abc"[index].ToString();
            });
        }

        gatherer.Seal();
        IReadOnlyList<WorkTask<string>> tasks = gatherer.Tasks;
        foreach (int i in new[] { 2, 0, 1 })
        {
            gates[i].SetResult();
            await tasks[i].Completion.Bounded();
        }

        string[] results = await gatherer.GetResultsAsync().Bounded();

        Assert.Equal(new[] { 2, 0, 1 }, finished);
        Assert.Equal(new[] { "a", "b", "c" }, results);
    }

    [Fact]
    public async Task StartInline_starts_each_task_on_the_adding_thread_with_or_without_a_tag()
    {
        var gatherer = new Gatherer<int>(new GatherOptions { StartInline = true });
        int adder = Environment.CurrentManagedThreadId;
        int untagged = -1, tagged = -1;

        // The synchronous part of the work runs inside Add, on this thread, for both kinds of task.
        _ = gatherer.Add(_ =>
        {
            untagged = Environment.CurrentManagedThreadId;
            return Task.FromResult(1);
        });
        Assert.Equal(adder, untagged);
        _ = gatherer.Add(_ =>
        {
            tagged = Environment.CurrentManagedThreadId;
            return Task.FromResult(2);
        }, tag: "t");
        Assert.Equal(adder, tagged);

        gatherer.Seal();
        Assert.Equal(new[] { 1, 2 }, await gatherer.GetResultsAsync().Bounded());
    }

    [Fact]
    public async Task Gather_RunAsync_returns_values_in_input_order()
    {
        var gates = Enumerable.Range(0, 4).Select(_ => NewGate()).ToArray();
        var works = Enumerable.Range(0, 4).Select(i => (Func<CancellationToken, Task<int>>)(async _ =>
        {
            await gates[i].Task;
            return i * 10;
        })).ToList();

        Task<int[]> gather = Gather.RunAsync(works);
        foreach (int i in new[] { 3, 1, 2, 0 })
        {
            gates[i].SetResult();
        }

        Assert.Equal(new[] { 0, 10, 20, 30 }, await gather.Bounded());
    }

    [Fact]
    public async Task An_empty_gather_returns_an_empty_array()
    {
        Assert.Empty(await Gather.RunAsync(Array.Empty<Func<CancellationToken, Task<int>>>()).Bounded());
    }

    [Fact]
    public async Task Return_exceptions_keeps_every_outcome_at_its_position_including_a_cancelled_child()
    {
        var boom = new InvalidOperationException("boom");
        var cancelStarted = NewGate();
        var gatherer = new Gatherer<int>(new GatherOptions { ReturnExceptions = true });
        _ = gatherer.Add(_ => Task.FromResult(10));
        _ = gatherer.Add(async _ =>
        {
            await Task.Yield();
            throw boom;
        });
        WorkTask<int> toCancel = gatherer.Add(SignalThenBlock(cancelStarted));
        _ = gatherer.Add(_ => Task.FromResult(40));
        gatherer.Seal();
        await cancelStarted.Task.Bounded();

        toCancel.Cancel();
        await gatherer.WhenAllAsync().Bounded(); // raises nothing

        IReadOnlyList<WorkTask<int>> tasks = gatherer.Tasks;
        Assert.Equal(4, tasks.Count);
        Assert.Equal(WorkTaskState.Completed, tasks[0].State);
        Assert.Equal(10, tasks[0].GetResult());
        Assert.Equal(WorkTaskState.Failed, tasks[1].State);
        Assert.Same(boom, tasks[1].Exception);
        Assert.Same(toCancel, tasks[2]);
        Assert.Equal(WorkTaskState.Cancelled, tasks[2].State);
        Assert.IsAssignableFrom<OperationCanceledException>(tasks[2].Exception);
        Assert.Equal(WorkTaskState.Completed, tasks[3].State);
        Assert.Equal(40, tasks[3].GetResult());
        Assert.Null(gatherer.Trigger);
    }

    [Fact]
    public async Task RunSettledAsync_returns_every_task_in_input_order_and_raises_nothing()
    {
        var boom = new FormatException("bad");
        var works = new Func<CancellationToken, Task<int>>[]
        {
            _ => throw boom,
            _ => Task.FromResult(2),
        };

        IReadOnlyList<WorkTask<int>> tasks = await Gather.RunSettledAsync(works).Bounded();

        Assert.Equal(WorkTaskState.Failed, tasks[0].State);
        Assert.Same(boom, tasks[0].Exception);
        Assert.Equal(2, tasks[1].GetResult());
    }

    [Fact]
    public async Task The_first_failure_propagates_and_the_gathers_unfinished_tasks_end_Cancelled()
    {
        var boom = new InvalidOperationException("first failure");
        TaskCompletionSource siblingStarted = NewGate();
        bool siblingCleaned = false;
        var gatherer = new Gatherer<int>();
        WorkTask<int> first = gatherer.Add(_ => Task.FromResult(1));
        _ = gatherer.Add(async ct =>
        {
            siblingStarted.SetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
                return 0;
            }
            finally
            {
                siblingCleaned = true;
            }
        });
        _ = gatherer.Add(async _ =>
        {
            // Fail only once the first task is done and the sibling is running.
            await first.Completion;
            await siblingStarted.Task;
            throw boom;
        });
        gatherer.Seal();

        var thrown = await Assert.ThrowsAsync<InvalidOperationException>(() => gatherer.GetResultsAsync().Bounded());

        Assert.Same(boom, thrown);
        Assert.Equal("first failure", thrown.Message);
        IReadOnlyList<WorkTask<int>> tasks = gatherer.Tasks;
        Assert.All(tasks, t => Assert.True(t.IsDone, $"{t} is not final"));
        Assert.Equal(WorkTaskState.Completed, tasks[0].State);
        Assert.Equal(WorkTaskState.Cancelled, tasks[1].State);
        Assert.Equal(WorkTaskState.Failed, tasks[2].State);
        Assert.True(siblingCleaned);
        Assert.Same(tasks[2], gatherer.Trigger);
        Assert.True(gatherer.IsStopping);
    }

    [Fact]
    public async Task The_first_failure_cancels_queued_tasks_before_they_run()
    {
        var boom = new InvalidOperationException("boom");
        int queuedRan = 0;
        var works = new List<Func<CancellationToken, Task<int>>>
        {
            async _ =>
            {
                await Task.Yield();
                throw boom;
            },
        };
        for (int i = 0; i < 5; i++)
        {
            works.Add(_ =>
            {
                Interlocked.Increment(ref queuedRan);
                return Task.FromResult(0);
            });
        }

        var thrown = await Assert.ThrowsAsync<InvalidOperationException>(
            () => Gather.RunAsync(works, new GatherOptions { Limiter = new ConcurrencyLimiter(1) }).Bounded());

        Assert.Same(boom, thrown);
        // With one slot and creation-order admission the failing task ran first; the rest were still queued.
        Assert.Equal(0, Volatile.Read(ref queuedRan));
    }

    [Fact]
    public async Task Stopping_cancels_a_waiting_task_before_the_running_one_whose_cancellation_frees_its_worker()
    {
        // A worker whose task is cancelled takes the next waiting one at once: if that one was not
        // cancelled yet, it would start after the gather had already failed (seen in Invoke-Gather
        // under load). The running task's cancellation here records whether the waiting task it
        // would take next was already cancelled.
        var fail = new TaskCompletionSource<bool>();
        WorkTask<int>? waiting = null;
        bool? waitingCancelledFirst = null;
        var running = NewGate();
        var gatherer = new Gatherer<int>();
        _ = gatherer.Add(NoteNextCancelledOnCancel(running, () => waiting, c => waitingCancelledFirst = c));
        _ = gatherer.Add(async _ =>
        {
            await fail.Task;
            throw new InvalidOperationException("boom");
        });
        waiting = gatherer.Add(UntilCancelled);
        gatherer.Seal();

        await running.Task.Bounded();
        fail.SetResult(true);
        await Assert.ThrowsAsync<InvalidOperationException>(() => gatherer.GetResultsAsync().Bounded());

        Assert.True(waitingCancelledFirst);
        Assert.Equal(WorkTaskState.Cancelled, waiting.State);
    }

    [Fact]
    public async Task Cancelling_the_gathers_owner_cancels_every_child_and_throws_OperationCanceledException()
    {
        using var owner = new CancellationTokenSource();
        var started = Enumerable.Range(0, 3).Select(_ => NewGate()).ToArray();
        var gatherer = new Gatherer<int>(cancellationToken: owner.Token);
        foreach (TaskCompletionSource s in started)
        {
            _ = gatherer.Add(SignalThenBlock(s));
        }

        gatherer.Seal();
        await Task.WhenAll(started.Select(s => s.Task)).Bounded();

        owner.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => gatherer.WhenAllAsync().Bounded());
        Assert.All(gatherer.Tasks, t => Assert.Equal(WorkTaskState.Cancelled, t.State));
    }

    [Fact]
    public async Task Gather_RunAsync_owner_cancellation_throws_OperationCanceledException()
    {
        using var owner = new CancellationTokenSource();
        var started = NewGate();
        Task<int[]> gather = Gather.RunAsync(new Func<CancellationToken, Task<int>>[] { SignalThenBlock(started), UntilCancelled }, cancellationToken: owner.Token);
        await started.Task.Bounded();

        owner.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => gather.Bounded());
    }

    [Fact]
    public async Task A_gather_timeout_cancels_and_awaits_the_unfinished_then_throws_TimeoutException()
    {
        // The deadline runs from construction, so on a loaded box a task may still be queued when
        // it fires; the assertions hold either way (a queued task is cancelled without running).
        int slowEntered = 0, cleaned = 0;
        var gatherer = new Gatherer<int>(new GatherOptions { Timeout = TimeSpan.FromMilliseconds(100) });
        WorkTask<int> quick = gatherer.Add(_ => Task.FromResult(1));
        WorkTask<int> slow = gatherer.Add(async ct =>
        {
            Volatile.Write(ref slowEntered, 1);
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

        // The deadline stops the gather while it is still open for more work.
        await slow.Completion.Bounded();
        int lateRan = 0;
        WorkTask<int> late = gatherer.Add(_ =>
        {
            Interlocked.Increment(ref lateRan);
            return Task.FromResult(3);
        });
        gatherer.Seal();

        await Assert.ThrowsAsync<TimeoutException>(() => gatherer.WhenAllAsync().Bounded());

        Assert.True(gatherer.TimedOut);
        Assert.True(quick.State == WorkTaskState.Completed || (quick.State == WorkTaskState.Cancelled && quick.StartTime is null), quick.ToString());
        Assert.Equal(WorkTaskState.Cancelled, slow.State);
        Assert.Equal(Volatile.Read(ref slowEntered), Volatile.Read(ref cleaned)); // awaited: its finally ran if it started
        // Nothing silently dropped: the late work is a Cancelled task at its position, never run.
        Assert.Same(late, gatherer.Tasks[2]);
        Assert.Equal(WorkTaskState.Cancelled, late.State);
        Assert.Equal(0, Volatile.Read(ref lateRan));
    }

    [Fact]
    public async Task A_gather_deadline_whose_cancellation_every_task_answers_with_a_value_returns_the_values()
    {
        // asyncio.timeout semantics: a timeout is raised only when the cancellation cut work short.
        var works = Enumerable.Range(0, 3).Select(i => (Func<CancellationToken, Task<int>>)(async ct =>
        {
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
                return -1;
            }
            catch (OperationCanceledException)
            {
                return i;
            }
        }));

        var gatherer = new Gatherer<int>(new GatherOptions { Timeout = TimeSpan.FromMilliseconds(100) });
        foreach (Func<CancellationToken, Task<int>> work in works)
        {
            _ = gatherer.Add(work);
        }

        gatherer.Seal();
        Exception? error = await Record.ExceptionAsync(() => gatherer.GetResultsAsync().Bounded());

        Assert.True(gatherer.TimedOut);
        IReadOnlyList<WorkTask<int>> tasks = gatherer.Tasks;
        if (tasks.All(t => t.StartTime is not null))
        {
            Assert.Null(error);
            Assert.Equal(new[] { 0, 1, 2 }, tasks.Select(t => t.GetResult()));
        }
        else
        {
            // Only on a box so loaded that a task was still queued at the deadline: that one was cut short.
            Assert.IsType<TimeoutException>(error);
            Assert.All(tasks.Where(t => t.StartTime is null), t => Assert.Equal(WorkTaskState.Cancelled, t.State));
        }
    }

    [Fact]
    public async Task Gather_RunAsync_timeout_throws_TimeoutException()
    {
        var works = new Func<CancellationToken, Task<int>>[] { _ => Task.FromResult(1), UntilCancelled };

        await Assert.ThrowsAsync<TimeoutException>(
            () => Gather.RunAsync(works, new GatherOptions { Timeout = TimeSpan.FromMilliseconds(50) }).Bounded());
    }

    [Fact]
    public async Task Work_added_after_a_failure_is_a_Cancelled_task_at_its_position()
    {
        var boom = new InvalidOperationException("boom");
        var fail = NewGate();
        var gatherer = new Gatherer<int>();
        WorkTask<int> failing = gatherer.Add(async _ =>
        {
            await fail.Task;
            throw boom;
        });
        // Registered after the gatherer's own callback, so it runs once the gather has stopped.
        var stopped = NewGate();
        failing.AddDoneCallback(_ => stopped.SetResult());
        fail.SetResult();
        await stopped.Task.Bounded();

        WorkTask<int> late = gatherer.Add(_ => Task.FromResult(1));
        gatherer.Seal();

        Assert.Equal(WorkTaskState.Cancelled, late.State);
        Assert.Same(boom, await Assert.ThrowsAsync<InvalidOperationException>(() => gatherer.WhenAllAsync().Bounded()));
        Assert.Equal(new WorkTask[] { failing, late }, gatherer.Tasks);
    }

    [Fact]
    public async Task A_per_task_timeout_fails_only_that_task_with_TimeoutException()
    {
        var works = new Func<CancellationToken, Task<int>>[] { _ => Task.FromResult(1), UntilCancelled };

        IReadOnlyList<WorkTask<int>> tasks = await Gather.RunSettledAsync(works, new GatherOptions { TaskTimeout = TimeSpan.FromMilliseconds(300) }).Bounded();

        Assert.Equal(WorkTaskState.Completed, tasks[0].State);
        Assert.Equal(WorkTaskState.Failed, tasks[1].State);
        Assert.IsType<TimeoutException>(tasks[1].Exception);
    }

    [Fact]
    public async Task A_per_task_timeout_without_return_exceptions_is_the_gathers_failure()
    {
        var works = new Func<CancellationToken, Task<int>>[] { UntilCancelled, UntilCancelled };

        await Assert.ThrowsAsync<TimeoutException>(
            () => Gather.RunAsync(works, new GatherOptions { TaskTimeout = TimeSpan.FromMilliseconds(50) }).Bounded());
    }

    [Fact]
    public async Task Adding_after_the_gather_is_sealed_throws_InvalidOperationException()
    {
        var gatherer = new Gatherer<int>();
        _ = gatherer.Add(_ => Task.FromResult(1));
        gatherer.Seal();
        await gatherer.WhenAllAsync().Bounded();

        Assert.Throws<InvalidOperationException>(() => gatherer.Add(_ => Task.FromResult(2)));
        _ = Assert.Single(gatherer.Tasks);
    }

    [Fact]
    public async Task Adding_to_a_sealed_but_running_gather_throws_InvalidOperationException()
    {
        var started = NewGate();
        var gatherer = new Gatherer<int>();
        _ = gatherer.Add(SignalThenBlock(started));
        gatherer.Seal();
        await started.Task.Bounded();

        Assert.Throws<InvalidOperationException>(() => gatherer.Add(_ => Task.FromResult(2)));
        gatherer.Cancel();
        await gatherer.Tasks[0].Completion.Bounded();
        Assert.Equal(WorkTaskState.Cancelled, gatherer.Tasks[0].State);
        _ = Assert.Single(gatherer.Tasks);
    }

    [Fact]
    public void Negative_gather_timeouts_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Gatherer<int>(new GatherOptions { Timeout = TimeSpan.FromSeconds(-1) }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Gatherer<int>(new GatherOptions { TaskTimeout = TimeSpan.FromSeconds(-1) }));
    }
}
