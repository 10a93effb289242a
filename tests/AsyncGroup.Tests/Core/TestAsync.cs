using AsyncGroup.Core;
using System.Runtime.CompilerServices;
using Xunit.Sdk;

namespace AsyncGroup.Tests.Core;

/// <summary>
/// Helpers that keep the Core tests driven by gates: every wait is bounded by a generous
/// deadline that fails the test (it never decides an outcome), because the box is a shared
/// 2-core machine and these tests assert order and outcome, never speed.
/// </summary>
internal static class TestAsync
{
    /// <summary>How long a test waits for something that must happen before calling it a hang.</summary>
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    /// <summary>A gate: a TaskCompletionSource whose continuations never run inline on the opener.</summary>
    public static TaskCompletionSource NewGate() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>A gate that carries a value.</summary>
    public static TaskCompletionSource<T> NewGate<T>() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Awaits <paramref name="task"/>; fails the test (not with TimeoutException) if it hangs.</summary>
    public static async Task Bounded(this Task task, [CallerArgumentExpression(nameof(task))] string? what = null)
    {
        try
        {
            await task.WaitAsync(Deadline);
        }
        catch (TimeoutException) when (!task.IsCompleted)
        {
            throw new XunitException($"'{what}' did not finish within {Deadline.TotalSeconds:0} s.");
        }
    }

    /// <summary>Awaits <paramref name="task"/> and returns its value; fails the test if it hangs.</summary>
    public static async Task<T> Bounded<T>(this Task<T> task, [CallerArgumentExpression(nameof(task))] string? what = null)
    {
        try
        {
            return await task.WaitAsync(Deadline);
        }
        catch (TimeoutException) when (!task.IsCompleted)
        {
            throw new XunitException($"'{what}' did not finish within {Deadline.TotalSeconds:0} s.");
        }
    }

    /// <summary>Work that runs until its token is cancelled, then honours the cancellation.</summary>
    public static async Task<int> UntilCancelled(CancellationToken ct)
    {
        await Task.Delay(Timeout.Infinite, ct);
        return -1;
    }

    /// <summary>Work that signals <paramref name="started"/>, then runs until cancelled.</summary>
    public static Func<CancellationToken, Task<int>> SignalThenBlock(TaskCompletionSource started) => async ct =>
    {
        started.TrySetResult();
        await Task.Delay(Timeout.Infinite, ct);
        return -1;
    };

    /// <summary>
    /// Work that signals <paramref name="running"/> and runs until cancelled; its cancellation notes
    /// whether the task <paramref name="next"/> gives was already cancelled — whether a worker it
    /// freed could still start that task.
    /// </summary>
    public static Func<CancellationToken, Task<int>> NoteNextCancelledOnCancel(TaskCompletionSource running, Func<WorkTask?> next, Action<bool> note) => async ct =>
    {
        var freed = NewGate();
        using (ct.Register(() =>
        {
            note(next()!.IsCancellationRequested);
            freed.TrySetResult();
        }))
        {
            running.TrySetResult();
            await freed.Task;
        }

        ct.ThrowIfCancellationRequested();
        return -1;
    };

    /// <summary>Work that signals <paramref name="started"/>, waits for <paramref name="release"/> (ignoring cancellation), then returns <paramref name="value"/>.</summary>
    public static Func<CancellationToken, Task<int>> SignalThenWait(TaskCompletionSource started, TaskCompletionSource release, int value) => async _ =>
    {
        started.TrySetResult();
        await release.Task;
        return value;
    };

    /// <summary>Cancels and awaits tasks a test deliberately left running, so nothing leaks into the next test.</summary>
    public static async Task CancelAndDrain(params WorkTask[] tasks)
    {
        foreach (WorkTask t in tasks)
        {
            t.Cancel();
        }

        await Task.WhenAll(tasks.Select(t => t.Completion)).Bounded();
    }

    /// <summary>Records the highest value a counter reaches (lock-free).</summary>
    public static void RecordMax(ref int max, int value)
    {
        int seen = Volatile.Read(ref max);
        while (value > seen)
        {
            int prior = Interlocked.CompareExchange(ref max, value, seen);
            if (prior == seen)
            {
                return;
            }

            seen = prior;
        }
    }
}
