using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace AsyncGroup.Core;

/// <summary>
/// asyncio's free functions over <see cref="WorkTask"/>s: wait, as_completed, wait_for,
/// timeout and shield. None of them owns the tasks it is given, except where stated
/// (<see cref="WaitForAsync{T}"/> cancels on expiry, as asyncio does).
/// </summary>
public static class AsyncOps
{
    /// <summary>Completes when <paramref name="task"/> is done; throws <see cref="OperationCanceledException"/> if the token fires first. Never cancels the task.</summary>
    public static Task WhenDoneAsync(WorkTask task, CancellationToken cancellationToken = default)
    {
        if (task is null)
        {
            throw new ArgumentNullException(nameof(task));
        }

        if (task.IsDone || !cancellationToken.CanBeCanceled)
        {
            return task.Completion;
        }

        return WhenDoneSlowAsync(task.Completion, cancellationToken);
    }

    /// <summary>
    /// asyncio.wait: waits until <paramref name="returnWhen"/> is met or the timeout expires.
    /// Never cancels a task and never rethrows a task's error. A timeout is not an error:
    /// the result says <see cref="WaitOutcome.TimedOut"/>. The owner's token cancels the wait only.
    /// </summary>
    public static async Task<WaitOutcome> WaitAsync(
        IReadOnlyList<WorkTask> tasks,
        ReturnWhen returnWhen = ReturnWhen.AllCompleted,
        TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        ValidateTasks(tasks);
        ValidateTimeout(timeout);
        if (!Enum.IsDefined(typeof(ReturnWhen), returnWhen))
        {
            throw new ArgumentOutOfRangeException(nameof(returnWhen), returnWhen, "Unknown ReturnWhen value.");
        }

        var met = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        int remaining = tasks.Count;
        var registrations = new List<IDisposable>(tasks.Count);

        // One delegate for the whole wait, not one per task.
        Action<WorkTask> onDone = t =>
        {
            bool allDone = Interlocked.Decrement(ref remaining) == 0;
            if (allDone
                || returnWhen == ReturnWhen.FirstCompleted
                || (returnWhen == ReturnWhen.FirstException && t.State == WorkTaskState.Failed))
            {
                met.TrySetResult(true);
            }
        };
        try
        {
            foreach (WorkTask task in tasks)
            {
                registrations.Add(task.AddDoneCallback(onDone));
            }

            if (!met.Task.IsCompleted)
            {
                await WaitWithTimeoutAsync(met.Task, timeout, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            foreach (IDisposable registration in registrations)
            {
                registration.Dispose();
            }
        }

        var done = new List<WorkTask>();
        var pending = new List<WorkTask>();
        foreach (WorkTask task in tasks)
        {
            (task.IsDone ? done : pending).Add(task);
        }

        return new WaitOutcome(done, pending, timedOut: !met.Task.IsCompleted);
    }

    /// <summary>
    /// asyncio.as_completed: one awaitable per task, in completion order — the k-th completes
    /// with the k-th task to finish. On timeout every awaitable not yet completed throws
    /// <see cref="TimeoutException"/> and the tasks are left running (the caller decides);
    /// if the token fires they are cancelled instead.
    /// </summary>
    public static IReadOnlyList<Task<WorkTask>> AsCompleted(
        IReadOnlyList<WorkTask> tasks,
        TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        if (tasks is null)
        {
            throw new ArgumentNullException(nameof(tasks));
        }

        ValidateTimeout(timeout);
        var slots = new TaskCompletionSource<WorkTask>[tasks.Count];
        for (int i = 0; i < slots.Length; i++)
        {
            slots[i] = new TaskCompletionSource<WorkTask>(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        var state = new AsCompletedState(slots);
        foreach (WorkTask task in tasks)
        {
            task.AddDoneCallback(state.OnDone);
        }

        // Armed after the callbacks so that a zero timeout still yields what is already done.
        if (timeout is { } t)
        {
            state.Timer = new CancellationTokenSource(t);
            state.Timer.Token.Register(() => state.Abort(
                new TimeoutException($"{state.Left} of {slots.Length} task(s) did not complete within {t.TotalSeconds:0.###} s.")));
        }

        if (cancellationToken.CanBeCanceled)
        {
            state.OwnerRegistration = cancellationToken.Register(() => state.Abort(new OperationCanceledException(cancellationToken)));
        }

        return slots.Select(s => s.Task).ToArray();
    }

    /// <summary>
    /// asyncio.wait_for: awaits <paramref name="task"/> with a deadline. On expiry the task is
    /// cancelled and awaited; then a value it returned while cancelling wins, an error it raised
    /// while cancelling wins, and otherwise <see cref="TimeoutException"/> is thrown. Cancelling
    /// the owner's token cancels the task too, awaits it, and throws <see cref="OperationCanceledException"/>.
    /// </summary>
    public static async Task<T> WaitForAsync<T>(WorkTask<T> task, TimeSpan? timeout, CancellationToken cancellationToken = default)
    {
        if (task is null)
        {
            throw new ArgumentNullException(nameof(task));
        }

        ValidateTimeout(timeout);
        bool finished;
        try
        {
            finished = await WaitWithTimeoutAsync(task.Completion, timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            task.Cancel();
            await task.Completion.ConfigureAwait(false);
            throw;
        }

        if (!finished)
        {
            task.Cancel();
            await task.Completion.ConfigureAwait(false);
            if (task.State == WorkTaskState.Cancelled)
            {
                throw new TimeoutException(
                    $"Task '{task.Name}' did not complete within {timeout!.Value.TotalSeconds:0.###} s and was cancelled.",
                    task.Exception);
            }
        }

        return task.GetResult();
    }

    /// <summary>
    /// asyncio.timeout / wait_for on a delegate: runs <paramref name="work"/> as a task and
    /// applies <see cref="WaitForAsync{T}"/>.
    /// </summary>
    public static Task<T> RunWithTimeoutAsync<T>(Func<CancellationToken, Task<T>> work, TimeSpan? timeout, CancellationToken cancellationToken = default, string? name = null)
        => WaitForAsync(WorkTask<T>.Run(work, name), timeout, cancellationToken);

    /// <summary>
    /// asyncio.shield: awaits <paramref name="task"/>, but cancelling this wait (the token)
    /// throws <see cref="OperationCanceledException"/> without cancelling the task itself.
    /// </summary>
    public static async Task<T> ShieldAsync<T>(WorkTask<T> task, CancellationToken cancellationToken = default)
    {
        await WhenDoneAsync(task, cancellationToken).ConfigureAwait(false);
        return task.GetResult();
    }

    /// <summary>Awaits <paramref name="task"/> until the timeout; true if it completed in time. Throws on the token.</summary>
    internal static async Task<bool> WaitWithTimeoutAsync(Task task, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        if (task.IsCompleted)
        {
            return true;
        }

        if (timeout is null && !cancellationToken.CanBeCanceled)
        {
            await task.ConfigureAwait(false);
            return true;
        }

        if (timeout == TimeSpan.Zero)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return false;
        }

        using var delayCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task delay = Task.Delay(timeout ?? System.Threading.Timeout.InfiniteTimeSpan, delayCts.Token);
        Task first = await Task.WhenAny(task, delay).ConfigureAwait(false);
        if (first == task)
        {
            delayCts.Cancel(); // frees the timer now rather than at expiry
            return true;
        }

        cancellationToken.ThrowIfCancellationRequested();
        return false;
    }

    internal static void ValidateTimeout(TimeSpan? timeout)
    {
        if (timeout is { } t && (t < TimeSpan.Zero || t.TotalMilliseconds > int.MaxValue))
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), t, "The timeout must be zero or positive (and under 24 days).");
        }
    }

    private static void ValidateTasks(IReadOnlyList<WorkTask> tasks)
    {
        if (tasks is null)
        {
            throw new ArgumentNullException(nameof(tasks));
        }

        if (tasks.Count == 0)
        {
            throw new ArgumentException("At least one task is required.", nameof(tasks));
        }

        foreach (WorkTask t in tasks)
        {
            if (t is null)
            {
                throw new ArgumentException("The task list contains a null entry.", nameof(tasks));
            }
        }
    }

    private static async Task WhenDoneSlowAsync(Task completion, CancellationToken cancellationToken)
    {
        var cancelled = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        using (cancellationToken.Register(() => cancelled.TrySetResult(true)))
        {
            if (await Task.WhenAny(completion, cancelled.Task).ConfigureAwait(false) != completion)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }
        }
    }

    private sealed class AsCompletedState
    {
        private readonly TaskCompletionSource<WorkTask>[] _slots;
        private readonly object _gate = new();
        private int _next;
        private bool _aborted;

        public AsCompletedState(TaskCompletionSource<WorkTask>[] slots) => _slots = slots;

        public CancellationTokenSource? Timer { get; set; }

        public CancellationTokenRegistration OwnerRegistration { get; set; }

        public int Left
        {
            get
            {
                lock (_gate)
                {
                    return _slots.Length - _next;
                }
            }
        }

        public void OnDone(WorkTask task)
        {
            bool last;
            lock (_gate)
            {
                if (_aborted)
                {
                    return;
                }

                _slots[_next++].TrySetResult(task);
                last = _next == _slots.Length;
            }

            if (last)
            {
                Cleanup();
            }
        }

        public void Abort(Exception reason)
        {
            lock (_gate)
            {
                if (!_aborted && _next < _slots.Length)
                {
                    _aborted = true;
                    for (int i = _next; i < _slots.Length; i++)
                    {
                        if (reason is OperationCanceledException oce)
                        {
                            _slots[i].TrySetCanceled(oce.CancellationToken);
                        }
                        else
                        {
                            _slots[i].TrySetException(reason);
                        }
                    }
                }
            }

            Cleanup(fromOwner: reason is OperationCanceledException);
        }

        private void Cleanup(bool fromOwner = false)
        {
            // Disposing the timer's source drops its callback without waiting for it. The owner's
            // registration is left alone when we are inside it: disposing a registration waits for
            // a running callback, and two callbacks waiting for each other would deadlock.
            Timer?.Dispose();
            if (!fromOwner)
            {
                OwnerRegistration.Dispose();
            }
        }
    }
}

/// <summary>What <see cref="AsyncOps.WaitAsync"/> returns: the done and pending tasks, each in input order.</summary>
public sealed class WaitOutcome
{
    internal WaitOutcome(IReadOnlyList<WorkTask> done, IReadOnlyList<WorkTask> pending, bool timedOut)
    {
        Done = done;
        Pending = pending;
        TimedOut = timedOut;
    }

    /// <summary>Tasks whose state was final when the wait returned.</summary>
    public IReadOnlyList<WorkTask> Done { get; }

    /// <summary>Tasks still Pending or Running when the wait returned.</summary>
    public IReadOnlyList<WorkTask> Pending { get; }

    /// <summary>True when the wait ended because the timeout expired before its condition was met.</summary>
    public bool TimedOut { get; }
}
