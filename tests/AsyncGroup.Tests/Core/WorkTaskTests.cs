using AsyncGroup.Core;
using Xunit;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>create_task, Task.cancel, add_done_callback: the life of one <see cref="WorkTask"/>.</summary>
public class WorkTaskTests
{
    [Fact]
    public async Task A_started_task_completes_with_its_value()
    {
        var t = WorkTask<int>.Run(_ => Task.FromResult(42));

        Assert.Equal(42, await t.WaitAsync().Bounded());
        Assert.Equal(WorkTaskState.Completed, t.State);
        Assert.Equal(42, t.ResultObject);
        Assert.Null(t.Exception);
    }

    [Fact]
    public async Task Names_default_to_Task_dash_Id_and_ids_increase()
    {
        var a = WorkTask<int>.Run(_ => Task.FromResult(1));
        var b = WorkTask<int>.Run(_ => Task.FromResult(2), name: "");
        var c = WorkTask<int>.Run(_ => Task.FromResult(3), name: "fetch");

        Assert.Equal("Task-" + a.Id, a.Name);
        Assert.Equal("Task-" + b.Id, b.Name);
        Assert.Equal("fetch", c.Name);
        Assert.True(b.Id > a.Id);
        Assert.True(c.Id > b.Id);
        await Task.WhenAll(a.Completion, b.Completion, c.Completion).Bounded();
    }

    [Fact]
    public async Task States_go_Pending_then_Running_then_Completed_with_start_and_end_times()
    {
        // A limiter of one whose slot is held keeps the task Pending for as long as we like.
        var limiter = new ConcurrencyLimiter(1);
        TaskCompletionSource holderStarted = NewGate(), releaseHolder = NewGate();
        var holder = WorkTask<int>.Run(SignalThenWait(holderStarted, releaseHolder, 0), options: new TaskStartOptions { Limiter = limiter });
        await holderStarted.Task.Bounded();

        TaskCompletionSource started = NewGate(), release = NewGate();
        var t = WorkTask<int>.Run(SignalThenWait(started, release, 5), options: new TaskStartOptions { Limiter = limiter });

        Assert.Equal(WorkTaskState.Pending, t.State);
        Assert.False(t.IsDone);
        Assert.Null(t.StartTime);
        Assert.Null(t.EndTime);
        Assert.Null(t.Duration);

        releaseHolder.SetResult();
        await started.Task.Bounded();

        Assert.Equal(WorkTaskState.Running, t.State);
        Assert.NotNull(t.StartTime);
        Assert.Null(t.EndTime);
        Assert.Null(t.Duration);

        release.SetResult();
        Assert.Equal(5, await t.WaitAsync().Bounded());

        Assert.Equal(WorkTaskState.Completed, t.State);
        Assert.True(t.IsDone);
        Assert.NotNull(t.EndTime);
        Assert.True(t.EndTime >= t.StartTime);
        Assert.Equal(t.EndTime - t.StartTime, t.Duration);
        Assert.True(t.Duration >= TimeSpan.Zero);
        await holder.Completion.Bounded();
    }

    [Fact]
    public async Task Work_that_throws_ends_Failed_with_the_same_exception()
    {
        var boom = new InvalidOperationException("boom");
        var t = WorkTask<int>.Run(async _ =>
        {
            await Task.Yield();
            throw boom;
        });

        await t.Completion.Bounded();

        Assert.Equal(WorkTaskState.Failed, t.State);
        Assert.Same(boom, t.Exception);
        Assert.Null(t.ResultObject);
        Assert.Same(boom, Assert.Throws<InvalidOperationException>(() => t.GetResult()));
        Assert.Same(boom, await Assert.ThrowsAsync<InvalidOperationException>(() => t.WaitAsync()));
    }

    [Fact]
    public async Task Work_that_throws_synchronously_ends_Failed()
    {
        var boom = new ArgumentException("sync");
        var t = WorkTask<int>.Run(_ => throw boom);

        await t.Completion.Bounded();

        Assert.Equal(WorkTaskState.Failed, t.State);
        Assert.Same(boom, t.Exception);
    }

    [Fact]
    public async Task Cancel_returns_false_when_the_task_is_already_done()
    {
        var t = WorkTask<int>.Run(_ => Task.FromResult(1));
        await t.Completion.Bounded();

        Assert.False(t.Cancel());
        Assert.Equal(WorkTaskState.Completed, t.State);
        Assert.False(t.IsCancellationRequested);
    }

    [Fact]
    public async Task Cancelling_a_Pending_task_makes_it_Cancelled_at_once_and_its_work_never_runs()
    {
        var limiter = new ConcurrencyLimiter(1);
        TaskCompletionSource holderStarted = NewGate(), releaseHolder = NewGate();
        var holder = WorkTask<int>.Run(SignalThenWait(holderStarted, releaseHolder, 0), options: new TaskStartOptions { Limiter = limiter });
        await holderStarted.Task.Bounded();
        int invoked = 0;
        var t = WorkTask<int>.Run(_ =>
        {
            Interlocked.Increment(ref invoked);
            return Task.FromResult(1);
        }, options: new TaskStartOptions { Limiter = limiter });
        Assert.Equal(WorkTaskState.Pending, t.State);

        Assert.True(t.Cancel());

        // No await in between: a Pending task is final as soon as Cancel returns.
        Assert.Equal(WorkTaskState.Cancelled, t.State);
        Assert.IsAssignableFrom<OperationCanceledException>(t.Exception);
        Assert.Null(t.StartTime);
        Assert.False(t.Cancel());

        releaseHolder.SetResult();
        await holder.Completion.Bounded();
        // The slot the cancelled task was queued for went to the next task instead.
        var next = WorkTask<int>.Run(_ => Task.FromResult(2), options: new TaskStartOptions { Limiter = limiter });
        Assert.Equal(2, await next.WaitAsync().Bounded());
        Assert.Equal(0, Volatile.Read(ref invoked));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => t.WaitAsync());
    }

    [Fact]
    public async Task Work_that_honours_cancellation_ends_Cancelled_not_Failed()
    {
        var started = NewGate();
        var t = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();

        Assert.True(t.Cancel());
        await t.Completion.Bounded();

        Assert.Equal(WorkTaskState.Cancelled, t.State);
        Assert.IsAssignableFrom<OperationCanceledException>(t.Exception);
        Assert.True(t.IsCancellationRequested);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => t.WaitAsync());
    }

    [Fact]
    public async Task Cancellation_is_a_request_work_that_catches_it_and_returns_a_value_ends_Completed()
    {
        var started = NewGate();
        var t = WorkTask<int>.Run(async ct =>
        {
            started.SetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                return 99;
            }

            return 0;
        });
        await started.Task.Bounded();

        Assert.True(t.Cancel());

        Assert.Equal(99, await t.WaitAsync().Bounded());
        Assert.Equal(WorkTaskState.Completed, t.State);
        Assert.True(t.IsCancellationRequested);
        Assert.Null(t.Exception);
    }

    [Fact]
    public async Task An_OperationCanceledException_thrown_without_a_cancel_request_fails_the_task()
    {
        // Documented rule: say an HTTP client's own timeout. It is a failure, not a cancellation,
        // so a group never mistakes a real error for a sibling's cancellation.
        var own = new OperationCanceledException("the client's own timeout");
        var t = WorkTask<int>.Run(async _ =>
        {
            await Task.Yield();
            throw own;
        });

        await t.Completion.Bounded();

        Assert.Equal(WorkTaskState.Failed, t.State);
        Assert.Same(own, t.Exception);
        Assert.False(t.IsCancellationRequested);
    }

    [Fact]
    public async Task Done_callbacks_run_once_each_in_registration_order_after_the_state_is_final()
    {
        TaskCompletionSource started = NewGate(), release = NewGate();
        var t = WorkTask<int>.Run(SignalThenWait(started, release, 1));
        var calls = new List<(int Index, WorkTaskState State)>();
        var allRan = NewGate();
        for (int i = 0; i < 3; i++)
        {
            int index = i;
            t.AddDoneCallback(x =>
            {
                lock (calls)
                {
                    calls.Add((index, x.State));
                    if (calls.Count == 3)
                    {
                        allRan.SetResult();
                    }
                }
            });
        }

        await started.Task.Bounded();
        lock (calls)
        {
            Assert.Empty(calls);
        }

        release.SetResult();
        await allRan.Task.Bounded();
        await t.Completion.Bounded();

        lock (calls)
        {
            Assert.Equal(new[] { 0, 1, 2 }, calls.Select(c => c.Index));
            Assert.All(calls, c => Assert.Equal(WorkTaskState.Completed, c.State));
        }
    }

    [Fact]
    public async Task A_done_callback_added_after_completion_runs_at_once_on_the_caller()
    {
        var t = WorkTask<int>.Run(_ => Task.FromResult(1));
        await t.Completion.Bounded();
        int thread = -1, count = 0;

        using (t.AddDoneCallback(x =>
        {
            thread = Environment.CurrentManagedThreadId;
            count++;
            Assert.Equal(WorkTaskState.Completed, x.State);
        }))
        {
            // Ran inside AddDoneCallback: no waiting needed.
            Assert.Equal(1, count);
            Assert.Equal(Environment.CurrentManagedThreadId, thread);
        }

        Assert.Equal(1, count);
    }

    [Fact]
    public async Task Registration_order_holds_when_an_earlier_callback_was_removed()
    {
        TaskCompletionSource started = NewGate(), release = NewGate();
        var t = WorkTask<int>.Run(SignalThenWait(started, release, 1));
        var order = new List<string>();
        var last = NewGate();
        IDisposable a = t.AddDoneCallback(_ => order.Add("a"));
        t.AddDoneCallback(_ => order.Add("b"));
        a.Dispose();
        t.AddDoneCallback(_ => order.Add("c"));
        IDisposable d = t.AddDoneCallback(_ => order.Add("d"));
        t.AddDoneCallback(_ => order.Add("e"));
        d.Dispose();
        t.AddDoneCallback(_ =>
        {
            order.Add("f");
            last.SetResult();
        });
        await started.Task.Bounded();

        release.SetResult();
        await last.Task.Bounded();

        // All ran on one thread, one after the other, in registration order.
        Assert.Equal(new[] { "b", "c", "e", "f" }, order);
    }

    [Fact]
    public async Task Registration_order_holds_when_the_last_callback_was_removed()
    {
        TaskCompletionSource started = NewGate(), release = NewGate();
        var t = WorkTask<int>.Run(SignalThenWait(started, release, 1));
        var order = new List<string>();
        var last = NewGate();
        t.AddDoneCallback(_ => order.Add("a"));
        IDisposable b = t.AddDoneCallback(_ => order.Add("b"));
        b.Dispose(); // the newest entry: the next one must follow "a", not the removed "b"
        IDisposable c = t.AddDoneCallback(_ => order.Add("c"));
        IDisposable d = t.AddDoneCallback(_ => order.Add("d"));
        d.Dispose();
        c.Dispose(); // the newest two, newest first
        t.AddDoneCallback(_ =>
        {
            order.Add("e");
            last.SetResult();
        });
        await started.Task.Bounded();

        release.SetResult();
        await last.Task.Bounded();

        Assert.Equal(new[] { "a", "e" }, order);
    }

    [Fact]
    public async Task A_cancellation_handler_runs_once_when_a_running_task_is_cancelled()
    {
        var started = NewGate();
        var t = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();
        int ran = 0;
        object? seen = null;
        var state = new object();
        t.OnCancelRequested(s =>
        {
            seen = s;
            Interlocked.Increment(ref ran);
        }, state);
        Assert.Equal(0, Volatile.Read(ref ran)); // nothing asked yet

        Assert.True(t.Cancel());
        t.Cancel(); // a second request runs nothing more
        await t.Completion.Bounded();

        Assert.Equal(WorkTaskState.Cancelled, t.State);
        Assert.Equal(1, Volatile.Read(ref ran));
        Assert.Same(state, seen);
    }

    [Fact]
    public async Task A_cancellation_handler_set_after_the_request_runs_at_once_on_the_caller()
    {
        var started = NewGate();
        var t = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();
        Assert.True(t.Cancel());
        int ran = 0;
        int thread = -1;

        t.OnCancelRequested(_ =>
        {
            Interlocked.Increment(ref ran);
            thread = Environment.CurrentManagedThreadId;
        }, null);

        Assert.Equal(1, Volatile.Read(ref ran));
        Assert.Equal(Environment.CurrentManagedThreadId, thread);
        await t.Completion.Bounded();
    }

    [Fact]
    public async Task A_task_timeout_runs_the_cancellation_handler()
    {
        var started = NewGate();
        var handled = NewGate();
        var t = WorkTask<int>.Run(SignalThenBlock(started), options: new TaskStartOptions { Timeout = TimeSpan.FromMilliseconds(50) });
        t.OnCancelRequested(_ => handled.TrySetResult(), null);
        await started.Task.Bounded();

        await handled.Task.Bounded();
        await t.Completion.Bounded();
        Assert.Equal(WorkTaskState.Failed, t.State);
        Assert.IsType<TimeoutException>(t.Exception);
    }

    [Fact]
    public async Task A_second_cancellation_handler_is_refused_and_a_throwing_one_raises_CallbackFailed()
    {
        var started = NewGate();
        var t = WorkTask<int>.Run(SignalThenBlock(started));
        await started.Task.Bounded();
        var boom = new InvalidOperationException("handler boom");
        t.OnCancelRequested(_ => throw boom, null);
        Assert.Throws<InvalidOperationException>(() => t.OnCancelRequested(_ => { }, null));

        Exception? reported = null;
        EventHandler<CallbackFailedEventArgs> onFailed = (_, e) =>
        {
            if (ReferenceEquals(e.Task, t))
            {
                reported = e.Exception;
            }
        };
        WorkTask.CallbackFailed += onFailed;
        try
        {
            Assert.True(t.Cancel()); // the handler runs on this thread, inside the request
            await t.Completion.Bounded();
        }
        finally
        {
            WorkTask.CallbackFailed -= onFailed;
        }

        Assert.Same(boom, reported);
        Assert.Equal(WorkTaskState.Cancelled, t.State);
    }

    [Fact]
    public async Task Completion_first_read_after_the_task_ended_is_already_complete()
    {
        var done = NewGate();
        var t = WorkTask<int>.Run(_ => Task.FromResult(5));
        t.AddDoneCallback(_ => done.SetResult());
        await done.Task.Bounded(); // final, and Completion never read so far

        Task<WorkTask> completion = t.Completion;
        Assert.True(completion.IsCompletedSuccessfully);
        Assert.Same(t, await completion);
        Assert.Same(completion, t.Completion); // one task, however often it is read
    }

    [Fact]
    public async Task Disposing_a_registration_before_completion_prevents_the_callback()
    {
        TaskCompletionSource started = NewGate(), release = NewGate();
        var t = WorkTask<int>.Run(SignalThenWait(started, release, 1));
        int removed = 0;
        var kept = NewGate();
        IDisposable registration = t.AddDoneCallback(_ => Interlocked.Increment(ref removed));
        t.AddDoneCallback(_ => kept.SetResult());
        await started.Task.Bounded();

        registration.Dispose();
        release.SetResult();

        // Callbacks run in registration order: once the later one ran, the removed one had its turn.
        await kept.Task.Bounded();
        Assert.Equal(0, Volatile.Read(ref removed));
        registration.Dispose(); // a second dispose is harmless
    }

    [Fact]
    public async Task The_Completed_event_fires_once_after_the_state_is_final()
    {
        TaskCompletionSource started = NewGate(), release = NewGate();
        var t = WorkTask<int>.Run(SignalThenWait(started, release, 1));
        int fired = 0;
        WorkTaskState seen = WorkTaskState.Pending;
        object? sender = null;
        var firedGate = NewGate();
        t.Completed += (s, _) =>
        {
            Interlocked.Increment(ref fired);
            seen = ((WorkTask)s!).State;
            sender = s;
            firedGate.TrySetResult();
        };
        await started.Task.Bounded();
        Assert.Equal(0, Volatile.Read(ref fired));

        release.SetResult();
        await firedGate.Task.Bounded();
        await t.Completion.Bounded();

        Assert.Equal(1, Volatile.Read(ref fired));
        Assert.Equal(WorkTaskState.Completed, seen);
        Assert.Same(t, sender);
    }

    [Fact]
    public async Task A_throwing_callback_raises_CallbackFailed_and_does_not_stop_the_others()
    {
        TaskCompletionSource started = NewGate(), release = NewGate();
        var t = WorkTask<int>.Run(SignalThenWait(started, release, 1));
        var failures = new List<Exception>();
        var boom = new InvalidOperationException("callback boom");
        var eventBoom = new InvalidOperationException("event boom");
        var lastHandlerRan = NewGate();
        var twoFailures = NewGate();
        bool secondRan = false;
        EventHandler<CallbackFailedEventArgs> onFailed = (_, e) =>
        {
            if (ReferenceEquals(e.Task, t))
            {
                lock (failures)
                {
                    failures.Add(e.Exception);
                    if (failures.Count == 2)
                    {
                        twoFailures.SetResult();
                    }
                }
            }
        };
        WorkTask.CallbackFailed += onFailed;
        try
        {
            t.AddDoneCallback(_ => throw boom);
            t.AddDoneCallback(_ => secondRan = true);
            t.Completed += (_, _) => throw eventBoom;
            t.Completed += (_, _) => lastHandlerRan.SetResult();
            await started.Task.Bounded();

            release.SetResult();

            // Done callbacks run before the Completed event, and each handler on its own.
            await Task.WhenAll(twoFailures.Task, lastHandlerRan.Task).Bounded();
            Assert.True(secondRan);
            Assert.Equal(WorkTaskState.Completed, t.State);
            Assert.Equal(1, t.GetResult());
            lock (failures)
            {
                Assert.Equal(new Exception[] { boom, eventBoom }, failures);
            }
        }
        finally
        {
            WorkTask.CallbackFailed -= onFailed;
        }
    }

    [Fact]
    public async Task A_task_timeout_fails_the_task_with_TimeoutException()
    {
        bool cleaned = false;
        var t = WorkTask<int>.Run(async ct =>
        {
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
                return 0;
            }
            finally
            {
                cleaned = true;
            }
        }, options: new TaskStartOptions { Timeout = TimeSpan.FromMilliseconds(50) });

        await t.Completion.Bounded();

        Assert.Equal(WorkTaskState.Failed, t.State);
        Assert.IsType<TimeoutException>(t.Exception);
        Assert.IsAssignableFrom<OperationCanceledException>(t.Exception!.InnerException);
        Assert.True(cleaned);
        await Assert.ThrowsAsync<TimeoutException>(() => t.WaitAsync());
    }

    [Fact]
    public async Task A_deferred_task_timeout_counts_from_StartTimeout_not_from_when_the_work_was_invoked()
    {
        // The work first waits in a queue of its own (a gate here) for far longer than its timeout.
        var self = TestAsync.NewGate<WorkTask<int>>();
        var queued = TestAsync.NewGate();
        var dequeue = TestAsync.NewGate();
        var t = WorkTask<int>.Run(async ct =>
        {
            queued.TrySetResult();
            await dequeue.Task;
            (await self.Task).StartTimeout(); // the work really begins now
            await Task.Delay(Timeout.Infinite, ct);
            return 0;
        }, options: new TaskStartOptions { Timeout = TimeSpan.FromMilliseconds(50), DeferTimeout = true });
        self.SetResult(t);

        await queued.Task.Bounded();
        await Task.Delay(300); // six timeouts' worth of waiting in the queue must not count
        Assert.Equal(WorkTaskState.Running, t.State);

        dequeue.SetResult();
        await t.Completion.Bounded();
        Assert.Equal(WorkTaskState.Failed, t.State);
        Assert.IsType<TimeoutException>(t.Exception);
    }

    [Fact]
    public async Task A_deferred_task_timeout_lets_work_that_finishes_in_time_complete()
    {
        var self = TestAsync.NewGate<WorkTask<int>>();
        var t = WorkTask<int>.Run(async _ =>
        {
            (await self.Task).StartTimeout();
            return 7;
        }, options: new TaskStartOptions { Timeout = TimeSpan.FromSeconds(30), DeferTimeout = true });
        self.SetResult(t);

        await t.Completion.Bounded();
        Assert.Equal(WorkTaskState.Completed, t.State);
        Assert.Equal(7, t.GetResult());
        t.StartTimeout(); // after the end: no effect, no throw
    }

    [Fact]
    public void A_negative_task_timeout_is_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            WorkTask<int>.Run(_ => Task.FromResult(1), options: new TaskStartOptions { Timeout = TimeSpan.FromSeconds(-1) }));
    }

    [Fact]
    public async Task A_task_timeout_too_large_for_a_timer_is_rejected_at_creation()
    {
        // Left to the worker, the timer's ArgumentOutOfRangeException would escape and leave the
        // task Running for ever.
        WorkTask<int>? t = null;
        var ex = Record.Exception(() => t = WorkTask<int>.Run(_ => Task.FromResult(1), options: new TaskStartOptions { Timeout = TimeSpan.FromDays(30) }));
        if (t is not null)
        {
            await t.Completion.Bounded();
        }

        Assert.IsType<ArgumentOutOfRangeException>(ex);
    }

    [Fact]
    public async Task The_parent_token_cancels_the_task_unless_it_is_shielded()
    {
        using var parent = new CancellationTokenSource();
        TaskCompletionSource aStarted = NewGate(), bStarted = NewGate(), releaseB = NewGate();
        var a = WorkTask<int>.Run(SignalThenBlock(aStarted), options: new TaskStartOptions { CancellationToken = parent.Token });
        var b = WorkTask<int>.Run(SignalThenWait(bStarted, releaseB, 8), options: new TaskStartOptions { CancellationToken = parent.Token, Shielded = true });
        await Task.WhenAll(aStarted.Task, bStarted.Task).Bounded();

        parent.Cancel();
        await a.Completion.Bounded();

        Assert.Equal(WorkTaskState.Cancelled, a.State);
        Assert.True(b.IsShielded);
        Assert.Equal(WorkTaskState.Running, b.State);
        Assert.False(b.IsCancellationRequested);
        releaseB.SetResult();
        Assert.Equal(8, await b.WaitAsync().Bounded());
    }

    [Fact]
    public async Task A_task_created_with_an_already_cancelled_parent_is_Cancelled_and_never_runs()
    {
        using var parent = new CancellationTokenSource();
        parent.Cancel();
        int ran = 0;

        var t = WorkTask<int>.Run(_ =>
        {
            Interlocked.Increment(ref ran);
            return Task.FromResult(1);
        }, options: new TaskStartOptions { CancellationToken = parent.Token });

        Assert.Equal(WorkTaskState.Cancelled, t.State);
        await t.Completion.Bounded();
        Assert.Equal(0, Volatile.Read(ref ran));
    }

    [Fact]
    public async Task Tag_is_carried_and_ToString_names_the_state()
    {
        var t = WorkTask<int>.Run(_ => Task.FromResult(1), name: "n", options: new TaskStartOptions { Tag = "input" });
        await t.Completion.Bounded();

        Assert.Equal("input", t.Tag);
        Assert.Equal("n (Completed)", t.ToString());
    }
}
