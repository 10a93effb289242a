using System.Collections.Concurrent;
using System.Diagnostics;
using AsyncGroup.Core;
using Xunit;
using Xunit.Abstractions;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>
/// The race-freedom rule under load: thousands of tasks across gathers, groups (nested) and plain
/// tasks, with random outcomes, random small delays and random Cancel() calls from other threads.
/// Every decision comes from a seeded Random, so a failing round names its seed; the interleaving
/// is the machine's. Nothing here asserts speed.
/// </summary>
[Collection(HeavyCollection.Name)]
public class StressTests
{
    private const int Rounds = 5;
    private const int TasksPerRound = 2000;
    private const int BaseSeed = 20261121;

    private readonly ITestOutputHelper _output;

    public StressTests(ITestOutputHelper output) => _output = output;

    private enum Outcome
    {
        Value,
        Throw,
        ObserveCancel,
        IgnoreCancelAndReturn,
    }

    [Fact]
    public async Task Thousands_of_tasks_each_reach_exactly_one_final_state_and_nothing_goes_unobserved()
    {
        // Flush what earlier tests left for the finalizer before listening.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var unobserved = new ConcurrentQueue<Exception>();
        EventHandler<UnobservedTaskExceptionEventArgs> onUnobserved = (_, e) => unobserved.Enqueue(e.Exception);
        TaskScheduler.UnobservedTaskException += onUnobserved;
        var all = new List<Tracked>();
        var clock = Stopwatch.StartNew();
        try
        {
            for (int round = 0; round < Rounds; round++)
            {
                int seed = BaseSeed + round;
                var r = new StressRound(seed);
                await r.RunAsync();
                string failure = r.Violations.IsEmpty
                    ? string.Empty
                    : $"Round {round} (seed {seed}) broke {r.Violations.Count} rule(s); first ones:\n  " + string.Join("\n  ", r.Violations.Take(10));
                Assert.True(r.Violations.IsEmpty, failure);
                _output.WriteLine($"round {round} seed {seed}: {r.Tracked.Count} tasks, {r.Scopes} scopes, {r.CancelCalls} Cancel() calls from other threads, {r.Describe()}");
                all.AddRange(r.Tracked);
            }

            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
        }
        finally
        {
            TaskScheduler.UnobservedTaskException -= onUnobserved;
        }

        // Re-checked at the very end: nothing fired twice, however late.
        Assert.All(all, t =>
        {
            Assert.Equal(1, Volatile.Read(ref t.Callbacks));
            Assert.InRange(Volatile.Read(ref t.Events), t.EventExpected ? 1 : 0, 1);
            Assert.True(t.Task!.IsDone);
        });
        Assert.True(unobserved.IsEmpty, "Unobserved task exception(s): " + string.Join("; ", unobserved.Select(e => e.Message)));
        _output.WriteLine($"{all.Count} tasks in {clock.Elapsed.TotalSeconds:0.00} s; " +
            string.Join(", ", all.GroupBy(t => t.Task!.State).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}")));
    }

    /// <summary>What the test knows about one task, filled in by the work, the callback and the event.</summary>
    private sealed class Tracked
    {
        public WorkTask? Task;
        public int Entered;
        public int Exited;
        public int Callbacks;
        public int Events;
        public bool EventExpected;
        public bool HasExtra;
        public int PlannedValue;
        public Outcome Outcome;
        public readonly TaskCompletionSource CallbackRan = NewGate();
        public readonly TaskCompletionSource EventFired = NewGate();
    }

    private sealed class StressRound
    {
        private readonly int _seed;
        private readonly object _gate = new();
        private readonly List<CancellationTokenSource> _owners = new();
        private int _cancelCalls;
        private int _scopes;
        private volatile bool _stopCanceller;

        public StressRound(int seed) => _seed = seed;

        public List<Tracked> Tracked { get; } = new();

        public ConcurrentQueue<string> Violations { get; } = new();

        public int CancelCalls => _cancelCalls;

        public int Scopes => _scopes;

        public string Describe() => string.Join(", ", Tracked.GroupBy(t => t.Task!.State).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}"));

        public async Task RunAsync()
        {
            var rng = new Random(_seed);
            var canceller = new Thread(() => CancelRandomly(new Random(_seed ^ 0x5bd1e995))) { IsBackground = true, Name = "stress canceller" };
            canceller.Start();
            var scopes = new List<Task>();
            try
            {
                int planned = 0;
                while (planned < TasksPerRound)
                {
                    int size = rng.Next(5, 40);
                    planned += size;
                    var scopeRng = new Random(rng.Next());
                    int kind = rng.Next(10);
                    scopes.Add(kind < 4 ? GatherScopeAsync(scopeRng, size)
                        : kind < 8 ? GroupScopeAsync(scopeRng, size, depth: 0, ownerToken: NewOwner(rng))
                        : PlainScopeAsync(scopeRng, size));
                    Interlocked.Increment(ref _scopes);
                }

                Task all = Task.WhenAll(scopes);
                await all.WaitAsync(TimeSpan.FromSeconds(60));
            }
            catch (TimeoutException)
            {
                Violations.Enqueue($"the round did not finish within 60 s ({scopes.Count(s => !s.IsCompleted)} scope(s) still running)");
                return;
            }
            finally
            {
                _stopCanceller = true;
                canceller.Join();
                foreach (CancellationTokenSource owner in _owners)
                {
                    owner.Dispose();
                }
            }

            Tracked[] snapshot;
            lock (_gate)
            {
                snapshot = Tracked.ToArray();
            }

            try
            {
                // Every done callback runs, and so does the event of every task that was not done
                // when the test subscribed (one that was may have raised it already).
                await Task.WhenAll(snapshot.Select(t => t.CallbackRan.Task)).Bounded();
                await Task.WhenAll(snapshot.Where(t => t.EventExpected).Select(t => t.EventFired.Task)).Bounded();
            }
            catch (Exception ex)
            {
                Violations.Enqueue("callbacks or events missing: " + ex.Message);
                return;
            }

            foreach (Tracked t in snapshot)
            {
                CheckFinal(t, "end of round");
                if (Volatile.Read(ref t.Callbacks) != 1)
                {
                    Violations.Enqueue($"{t.Task} ran its done callback {t.Callbacks} times");
                }

                if (Volatile.Read(ref t.Events) > 1 || (t.EventExpected && Volatile.Read(ref t.Events) != 1))
                {
                    Violations.Enqueue($"{t.Task} raised Completed {t.Events} times (expected {(t.EventExpected ? "1" : "0 or 1")})");
                }
            }
        }

        private CancellationToken NewOwner(Random rng)
        {
            if (rng.Next(8) != 0)
            {
                return default;
            }

            var cts = new CancellationTokenSource();
            lock (_gate)
            {
                _owners.Add(cts);
            }

            return cts.Token;
        }

        private void CancelRandomly(Random rng)
        {
            int n = 0;
            while (!_stopCanceller)
            {
                Tracked? victim = null;
                CancellationTokenSource? owner = null;
                lock (_gate)
                {
                    if (Tracked.Count > 0)
                    {
                        // Half the time one of the newest tasks: those are the ones racing their own start.
                        victim = rng.Next(2) == 0
                            ? Tracked[rng.Next(Tracked.Count)]
                            : Tracked[Math.Max(0, Tracked.Count - 1 - rng.Next(16))];
                    }

                    if (_owners.Count > 0 && rng.Next(40) == 0)
                    {
                        owner = _owners[rng.Next(_owners.Count)];
                    }
                }

                if (victim?.Task is { } task && rng.Next(3) == 0)
                {
                    task.Cancel();
                    Interlocked.Increment(ref _cancelCalls);
                }

                owner?.Cancel();
                if (++n % 8 == 0)
                {
                    Thread.Sleep(1); // pacing only: leave the second core to the work
                }
                else
                {
                    Thread.Yield();
                }
            }
        }

        /// <summary>Sometimes cancels a task just started, racing the worker that is about to run it.</summary>
        private void CancelRightAway(Random rng, WorkTask task)
        {
            if (rng.Next(16) == 0)
            {
                task.Cancel();
                Interlocked.Increment(ref _cancelCalls);
            }
        }

        private Tracked NewTracked(Random rng)
        {
            int roll = rng.Next(100);
            return new Tracked
            {
                PlannedValue = rng.Next(),
                Outcome = roll < 55 ? Outcome.Value : roll < 67 ? Outcome.Throw : roll < 85 ? Outcome.ObserveCancel : Outcome.IgnoreCancelAndReturn,
            };
        }

        /// <summary>Subscribes the done callback and the Completed event, then lets the canceller see the task.</summary>
        private void Track(Tracked t, WorkTask task)
        {
            t.Task = task;
            task.Completed += (s, _) =>
            {
                if (!((WorkTask)s!).IsDone)
                {
                    Violations.Enqueue($"{s} raised Completed before its state was final");
                }

                Interlocked.Increment(ref t.Events);
                t.EventFired.TrySetResult();
            };

            // Subscribed before this read: if the task is not done now, its event must reach us.
            t.EventExpected = !task.IsDone;
            task.AddDoneCallback(x =>
            {
                if (!x.IsDone)
                {
                    Violations.Enqueue($"{x} ran a done callback before its state was final");
                }

                Interlocked.Increment(ref t.Callbacks);
                t.CallbackRan.TrySetResult();
            });
            lock (_gate)
            {
                Tracked.Add(t);
            }
        }

        private Func<CancellationToken, Task<int>> Work(Tracked t, int pause, Func<CancellationToken, Task>? extra = null)
        {
            t.HasExtra = extra is not null;
            return WorkAsync;

            async Task<int> WorkAsync(CancellationToken ct)
            {
                Interlocked.Increment(ref t.Entered);
                try
                {
                    if (extra is not null)
                    {
                        await extra(ct);
                    }

                    switch (t.Outcome)
                    {
                        case Outcome.Value:
                            await PauseAsync(pause, CancellationToken.None);
                            return t.PlannedValue;
                        case Outcome.Throw:
                            await PauseAsync(pause, CancellationToken.None);
                            throw new StressException();
                        case Outcome.ObserveCancel:
                            await PauseAsync(pause, ct);
                            ct.ThrowIfCancellationRequested();
                            return t.PlannedValue;
                        default:
                            try
                            {
                                await PauseAsync(pause, ct);
                            }
                            catch (OperationCanceledException)
                            {
                                // Cancellation is a request: this work declines it.
                            }

                            return t.PlannedValue;
                    }
                }
                finally
                {
                    Interlocked.Increment(ref t.Exited);
                }
            }
        }

        private static async Task PauseAsync(int pause, CancellationToken ct)
        {
            switch (pause)
            {
                case 0:
                    await Task.Yield();
                    break;
                case 1:
                    await Task.Delay(0, ct);
                    break;
                default:
                    await Task.Delay(pause - 1, ct); // 1 or 2 ms
                    break;
            }
        }

        /// <summary>Checks a task the moment its scope returned: final, its worker gone, its outcome coherent.</summary>
        private void CheckFinal(Tracked t, string when)
        {
            WorkTask task = t.Task!;
            WorkTaskState state = task.State;
            if (!WorkTaskStateIsFinal(state))
            {
                Violations.Enqueue($"{when}: {task} is still {state}");
                return;
            }

            if (Volatile.Read(ref t.Entered) != Volatile.Read(ref t.Exited))
            {
                Violations.Enqueue($"{when}: {task} is {state} but its work is still running");
            }

            if (task.StartTime is null && Volatile.Read(ref t.Entered) != 0)
            {
                Violations.Enqueue($"{when}: {task} never started but its work ran");
            }

            switch (state)
            {
                case WorkTaskState.Completed when !Equals(task.ResultObject, t.PlannedValue):
                    Violations.Enqueue($"{when}: {task} completed with {task.ResultObject} instead of {t.PlannedValue}");
                    break;
                case WorkTaskState.Completed when t.Outcome == Outcome.Throw:
                    Violations.Enqueue($"{when}: {task} completed although its work throws");
                    break;
                case WorkTaskState.Failed when task.Exception is not (StressException or TimeoutException or TaskGroupException):
                    Violations.Enqueue($"{when}: {task} failed with an unexpected {task.Exception}");
                    break;
                case WorkTaskState.Cancelled when !task.IsCancellationRequested:
                    Violations.Enqueue($"{when}: {task} is Cancelled without a cancel request");
                    break;
                case WorkTaskState.Cancelled when t.Outcome != Outcome.ObserveCancel && !t.HasExtra && Volatile.Read(ref t.Entered) != 0:
                    // This work never observes its token: once invoked, it can only complete or fail.
                    Violations.Enqueue($"{when}: {task} is Cancelled although its work ran and ignores cancellation ({t.Outcome})");
                    break;
            }
        }

        private static bool WorkTaskStateIsFinal(WorkTaskState s) => s is WorkTaskState.Completed or WorkTaskState.Failed or WorkTaskState.Cancelled;

        private void CheckScope(IEnumerable<WorkTask> tasks, Dictionary<WorkTask, Tracked> trackedBy, string scope)
        {
            foreach (WorkTask task in tasks)
            {
                if (trackedBy.TryGetValue(task, out Tracked? t))
                {
                    CheckFinal(t, scope + " returned");
                }
                else if (!task.IsDone)
                {
                    Violations.Enqueue($"{scope} returned while {task} is {task.State}");
                }
            }
        }

        private async Task GatherScopeAsync(Random rng, int size)
        {
            var options = new GatherOptions
            {
                ReturnExceptions = rng.Next(2) == 0,
                Limiter = rng.Next(3) == 0 ? new ConcurrencyLimiter(rng.Next(1, 5)) : null,
                Timeout = rng.Next(8) == 0 ? TimeSpan.FromMilliseconds(rng.Next(1, 6)) : null,
                TaskTimeout = rng.Next(10) == 0 ? TimeSpan.FromMilliseconds(rng.Next(1, 4)) : null,
            };
            CancellationToken ownerToken = NewOwner(rng);
            var gatherer = new Gatherer<int>(options, ownerToken);
            var trackedBy = new Dictionary<WorkTask, Tracked>();
            for (int i = 0; i < size; i++)
            {
                Tracked t = NewTracked(rng);
                WorkTask<int> task = gatherer.Add(Work(t, rng.Next(4)));
                Track(t, task);
                trackedBy.Add(task, t);
                CancelRightAway(rng, task);
                if (rng.Next(10) == 0)
                {
                    await Task.Yield(); // pipeline input: work keeps arriving while earlier tasks run
                }
            }

            gatherer.Seal();
            Exception? error = null;
            try
            {
                await gatherer.WhenAllAsync().Bounded();
            }
            catch (Exception ex)
            {
                error = ex;
            }

            CheckScope(gatherer.Tasks, trackedBy, "gather");
            bool timeoutsPossible = options.Timeout is not null || options.TaskTimeout is not null;
            switch (error)
            {
                case null:
                    break;
                case OperationCanceledException:
                case StressException when !options.ReturnExceptions:
                case TimeoutException when timeoutsPossible:
                    break;
                default:
                    Violations.Enqueue($"gather (return-exceptions {options.ReturnExceptions}) threw an unexpected {error}");
                    break;
            }

            if (error is TimeoutException && gatherer.TimedOut && !gatherer.Tasks.Any(t => t.State == WorkTaskState.Cancelled))
            {
                Violations.Enqueue("gather threw TimeoutException although no task was cut short");
            }
        }

        private async Task GroupScopeAsync(Random rng, int size, int depth, CancellationToken ownerToken)
        {
            var options = new TaskGroupOptions
            {
                Limiter = rng.Next(4) == 0 ? new ConcurrencyLimiter(rng.Next(1, 5)) : null,
                Timeout = depth == 0 && rng.Next(10) == 0 ? TimeSpan.FromMilliseconds(rng.Next(1, 6)) : null,
            };
            var trackedBy = new ConcurrentDictionary<WorkTask, Tracked>();
            TaskGroup? group = null;
            bool bodyThrew = false;
            int bodyPause = rng.Next(4);
            bool bodyThrows = rng.Next(20) == 0;
            bool bodyObserves = rng.Next(4) == 0;
            var plans = Enumerable.Range(0, size).Select(_ => (Tracked: NewTracked(rng), Pause: rng.Next(4), Role: rng.Next(12), Seed: rng.Next())).ToList();
            Exception? error = null;
            try
            {
                await TaskGroup.RunAsync(async (g, ct) =>
                {
                    group = g;
                    var children = new List<WorkTask>();
                    foreach ((Tracked t, int pause, int role, int seed) in plans)
                    {
                        Func<CancellationToken, Task>? extra = null;
                        if (role == 0 && depth < 2)
                        {
                            // A child that runs a nested group (its aggregate nests in ours).
                            extra = childToken => GroupScopeAsync(new Random(seed), 3 + (seed % 6), depth + 1, childToken);
                        }
                        else if (role == 1)
                        {
                            // A child that adds grandchildren to this group.
                            extra = _ =>
                            {
                                var childRng = new Random(seed);
                                for (int k = 0; k < 2; k++)
                                {
                                    Tracked grandchild = NewTracked(childRng);
                                    try
                                    {
                                        WorkTask<int> gt = g.Start(Work(grandchild, childRng.Next(4)));
                                        Track(grandchild, gt);
                                        trackedBy[gt] = grandchild;
                                    }
                                    catch (InvalidOperationException)
                                    {
                                        // The group is aborting or finished: refused, as documented.
                                    }
                                }

                                return Task.CompletedTask;
                            };
                        }

                        WorkTask<int> task;
                        try
                        {
                            task = g.Start(Work(t, pause, extra), timeout: role == 2 ? TimeSpan.FromMilliseconds(1 + (seed % 3)) : null);
                        }
                        catch (InvalidOperationException)
                        {
                            break; // a sibling already failed: the group refuses new children
                        }

                        Track(t, task);
                        trackedBy[task] = t;
                        children.Add(task);
                        CancelRightAway(rng, task);
                    }

                    if (children.Count > 0 && rng.Next(3) == 0)
                    {
                        // Cancel a sibling from this (pool) thread while the canceller does the same from its own.
                        children[rng.Next(children.Count)].Cancel();
                        Interlocked.Increment(ref _cancelCalls);
                    }

                    await PauseAsync(bodyPause, bodyObserves ? ct : CancellationToken.None);
                    if (bodyThrows)
                    {
                        bodyThrew = true;
                        throw new StressException();
                    }
                }, name: $"stress-{depth}", options: options, cancellationToken: ownerToken).Bounded();
            }
            catch (Exception ex)
            {
                error = ex;
            }

            string scope = $"group (depth {depth})";
            if (group is null)
            {
                Violations.Enqueue($"{scope}: the body never ran ({error})");
                return;
            }

            CheckScope(group.Tasks, new Dictionary<WorkTask, Tracked>(trackedBy), scope);
            int failedChildren = group.Tasks.Count(t => t.State == WorkTaskState.Failed);
            int expectedErrors = failedChildren + (bodyThrew ? 1 : 0);
            if (expectedErrors > 0)
            {
                if (error is not TaskGroupException aggregate)
                {
                    Violations.Enqueue($"{scope}: {expectedErrors} error(s) but it threw {error?.GetType().Name ?? "nothing"}");
                }
                else if (aggregate.InnerExceptions.Count != expectedErrors)
                {
                    Violations.Enqueue($"{scope}: the aggregate holds {aggregate.InnerExceptions.Count} error(s), expected {expectedErrors}");
                }
                else if (aggregate.InnerExceptions.Any(e => e is not (StressException or TimeoutException or TaskGroupException)))
                {
                    Violations.Enqueue($"{scope}: the aggregate holds an unexpected error: {aggregate.Message}");
                }
            }
            else if (error is not (null or OperationCanceledException or TimeoutException))
            {
                Violations.Enqueue($"{scope}: no error but it threw {error}");
            }
            else if (error is OperationCanceledException && !ownerToken.IsCancellationRequested)
            {
                Violations.Enqueue($"{scope}: threw OperationCanceledException but its owner was not cancelled");
            }
            else if (error is TimeoutException && options.Timeout is null)
            {
                Violations.Enqueue($"{scope}: threw TimeoutException without a timeout");
            }

            if (depth > 0 && error is not null)
            {
                // A nested group's outcome is its parent child's: the aggregate nests, a cancellation cancels.
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
            }
        }

        private async Task PlainScopeAsync(Random rng, int size)
        {
            var limiter = rng.Next(3) == 0 ? new ConcurrencyLimiter(rng.Next(1, 4)) : null;
            var trackedBy = new Dictionary<WorkTask, Tracked>();
            var tasks = new List<WorkTask>();
            for (int i = 0; i < size; i++)
            {
                Tracked t = NewTracked(rng);

                // Created unstarted (internal API) so that the event is subscribed before anything can happen.
                var task = new WorkTask<int>(Work(t, rng.Next(4)), null, new TaskStartOptions { Limiter = limiter });
                Track(t, task);
                task.Start();
                trackedBy.Add(task, t);
                tasks.Add(task);
                CancelRightAway(rng, task);
            }

            if (rng.Next(2) == 0)
            {
                WaitOutcome outcome = await AsyncOps.WaitAsync(tasks).Bounded();
                if (outcome.TimedOut || outcome.Pending.Count != 0 || outcome.Done.Count != tasks.Count)
                {
                    Violations.Enqueue($"wait(AllCompleted) returned {outcome.Done.Count} done, {outcome.Pending.Count} pending, timed out {outcome.TimedOut}");
                }
            }
            else
            {
                var yielded = new HashSet<WorkTask>();
                foreach (Task<WorkTask> next in AsyncOps.AsCompleted(tasks))
                {
                    WorkTask done = await next.Bounded();
                    if (!done.IsDone || !yielded.Add(done))
                    {
                        Violations.Enqueue($"as_completed yielded {done} twice or before it was done");
                    }
                }

                if (yielded.Count != tasks.Count)
                {
                    Violations.Enqueue($"as_completed yielded {yielded.Count} of {tasks.Count} tasks");
                }
            }

            CheckScope(tasks, trackedBy, "plain tasks");
            foreach (WorkTask task in tasks)
            {
                if (task.Exception is OperationCanceledException && task.State == WorkTaskState.Failed)
                {
                    Violations.Enqueue($"{task} failed with a cancellation that was requested");
                }
            }
        }
    }

    private sealed class StressException : Exception
    {
        public StressException()
            : base("planned failure")
        {
        }
    }
}
