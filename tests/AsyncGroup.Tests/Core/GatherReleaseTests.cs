using System.Runtime.CompilerServices;
using AsyncGroup.Core;
using Xunit;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>
/// <see cref="GatherOptions.ReleaseSettled"/>: a long gather holds what still runs, not every task
/// it ever ran, and its outcome rules stay those of an ordinary gather.
/// </summary>
public class GatherReleaseTests
{
    // More than the gatherer's smallest sweep: enough tasks ending after one to let go of it.
    private const int Plenty = 300;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_final_task_and_its_value_are_let_go_only_with_ReleaseSettled(bool release)
    {
        var gatherer = new Gatherer<object>(new GatherOptions { ReleaseSettled = release });
        (WeakReference task, WeakReference value) = AddOneAndWaitForIt(gatherer);
        var later = new List<WorkTask<object>>();
        for (int i = 0; i < Plenty; i++)
        {
            later.Add(gatherer.Add(_ => Task.FromResult<object>(i)));
        }

        await Task.WhenAll(later.Select(t => t.Completion)).Bounded();
        Collect();

        // A task's completion is visible a moment before its done callbacks (the sweeps) have run.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (release && (task.IsAlive || value.IsAlive) && clock.Elapsed < Deadline)
        {
            await Task.Delay(10);
            Collect();
        }

        Assert.Equal(!release, task.IsAlive);
        Assert.Equal(!release, value.IsAlive);

        gatherer.Seal();
        await gatherer.WhenAllAsync().Bounded();
        Assert.Equal(Plenty + 1, gatherer.Count);
    }

    [Fact]
    public async Task With_ReleaseSettled_Tasks_and_GetResultsAsync_are_refused()
    {
        var gatherer = new Gatherer<int>(new GatherOptions { ReleaseSettled = true });
        _ = gatherer.Add(_ => Task.FromResult(1));
        gatherer.Seal();

        Assert.Throws<InvalidOperationException>(() => gatherer.Tasks);
        await Assert.ThrowsAsync<InvalidOperationException>(() => gatherer.GetResultsAsync());
        await gatherer.WhenAllAsync().Bounded();
        Assert.Equal(1, gatherer.Count);
    }

    [Fact]
    public async Task With_ReleaseSettled_a_failure_still_cancels_a_task_that_outlived_many_others_and_is_rethrown()
    {
        var boom = new InvalidOperationException("boom");
        var started = NewGate();
        var gatherer = new Gatherer<int>(new GatherOptions { ReleaseSettled = true });
        WorkTask<int> early = gatherer.Add(SignalThenBlock(started));
        await started.Task.Bounded();
        var finished = new List<WorkTask<int>>();
        for (int i = 0; i < Plenty; i++)
        {
            finished.Add(gatherer.Add(_ => Task.FromResult(2)));
        }

        await Task.WhenAll(finished.Select(t => t.Completion)).Bounded();
        WorkTask<int> failing = gatherer.Add(async _ =>
        {
            await Task.Yield();
            throw boom;
        });
        gatherer.Seal();

        InvalidOperationException thrown = await Assert.ThrowsAsync<InvalidOperationException>(() => gatherer.WhenAllAsync().Bounded());
        Assert.Same(boom, thrown);
        Assert.Same(failing, gatherer.Trigger);
        Assert.Equal(WorkTaskState.Cancelled, early.State);
        Assert.All(finished, t => Assert.Equal(WorkTaskState.Completed, t.State));
    }

    [Fact]
    public async Task With_ReleaseSettled_the_owners_cancellation_reaches_every_unfinished_task()
    {
        using var owner = new CancellationTokenSource();
        var gatherer = new Gatherer<int>(new GatherOptions { ReleaseSettled = true }, owner.Token);
        var running = new List<WorkTask<int>>();
        for (int i = 0; i < Plenty; i++)
        {
            _ = gatherer.Add(_ => Task.FromResult(i));
            if (i % 50 == 0)
            {
                running.Add(gatherer.Add(UntilCancelled));
            }
        }

        gatherer.Seal();
        owner.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => gatherer.WhenAllAsync().Bounded());
        Assert.All(running, t => Assert.Equal(WorkTaskState.Cancelled, t.State));
    }

    [Fact]
    public async Task With_ReleaseSettled_a_timeout_counts_the_tasks_it_cut_short_among_all_added()
    {
        var gatherer = new Gatherer<int>(new GatherOptions { ReleaseSettled = true, Timeout = TimeSpan.FromMilliseconds(300) });
        var all = new List<WorkTask<int>>();
        for (int i = 0; i < Plenty; i++)
        {
            all.Add(gatherer.Add(_ => Task.FromResult(i)));
        }

        WorkTask<int> slow1 = gatherer.Add(UntilCancelled);
        WorkTask<int> slow2 = gatherer.Add(UntilCancelled);
        all.Add(slow1);
        all.Add(slow2);
        gatherer.Seal();

        TimeoutException thrown = await Assert.ThrowsAsync<TimeoutException>(() => gatherer.WhenAllAsync().Bounded());

        // However many quick tasks the deadline caught still queued on a busy machine, the count is
        // that of the tasks that ended Cancelled, out of every task added (not of those still held).
        int cancelled = all.Count(t => t.State == WorkTaskState.Cancelled);
        Assert.Contains($"{cancelled} of {Plenty + 2} task(s) were cancelled", thrown.Message);
        Assert.Equal(WorkTaskState.Cancelled, slow1.State);
        Assert.Equal(WorkTaskState.Cancelled, slow2.State);
    }

    [Fact]
    public async Task Without_ReleaseSettled_every_task_stays_listed_in_input_order()
    {
        var gatherer = new Gatherer<int>();
        for (int i = 0; i < Plenty; i++)
        {
            int value = i;
            _ = gatherer.Add(_ => Task.FromResult(value));
        }

        gatherer.Seal();
        int[] results = await gatherer.GetResultsAsync().Bounded();

        Assert.Equal(Enumerable.Range(0, Plenty), results);
        Assert.Equal(Plenty, gatherer.Tasks.Count);
        Assert.Equal(Plenty, gatherer.Count);
    }

    // Not inlined, and waiting synchronously: no local of the test method (nor an async state
    // machine) may keep the task or its value alive.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference Task, WeakReference Value) AddOneAndWaitForIt(Gatherer<object> gatherer)
    {
        WorkTask<object> task = gatherer.Add(_ => Task.FromResult(new object()));
        Assert.True(task.Completion.Wait(Deadline), "The first task did not finish.");
        Assert.Equal(WorkTaskState.Completed, task.State);
        return (new WeakReference(task), new WeakReference(task.GetResult()));
    }

    private static void Collect()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
