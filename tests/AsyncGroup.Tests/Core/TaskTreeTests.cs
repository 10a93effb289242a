using AsyncGroup.Core;
using Xunit;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>
/// The Core rules behind nested structured concurrency: a task started with its parent's token
/// belongs to the parent's tree, a failed group keeps the tasks it ran, nested groups nest.
/// </summary>
public class TaskTreeTests
{
    /// <summary>Starts a task owned by <paramref name="parent"/> (its token), as a task's Start-AsyncTask does.</summary>
    private static WorkTask<int> Child(WorkTask? parent, Func<CancellationToken, Task<int>> work, bool shielded = false) =>
        WorkTask<int>.Run(work, options: new TaskStartOptions
        {
            CancellationToken = parent?.CancellationToken ?? default,
            Shielded = shielded,
        });

    [Fact]
    public async Task Cancelling_the_root_cancels_every_task_of_the_tree_at_any_depth()
    {
        var started = Enumerable.Range(0, 3).Select(_ => NewGate()).ToArray();
        var root = Child(null, SignalThenBlock(started[0]));
        var child = Child(root, SignalThenBlock(started[1]));
        var grandchild = Child(child, SignalThenBlock(started[2]));
        await Task.WhenAll(started.Select(s => s.Task)).Bounded();

        Assert.True(root.Cancel());
        await Task.WhenAll(root.Completion, child.Completion, grandchild.Completion).Bounded();

        Assert.Equal(WorkTaskState.Cancelled, root.State);
        Assert.Equal(WorkTaskState.Cancelled, child.State);
        Assert.Equal(WorkTaskState.Cancelled, grandchild.State);
    }

    [Fact]
    public async Task A_shielded_child_is_not_cancelled_with_its_parent_and_keeps_its_result()
    {
        TaskCompletionSource parentStarted = NewGate(), childStarted = NewGate(), release = NewGate();
        var parent = Child(null, SignalThenBlock(parentStarted));
        var shielded = Child(parent, SignalThenWait(childStarted, release, 7), shielded: true);
        await Task.WhenAll(parentStarted.Task, childStarted.Task).Bounded();

        parent.Cancel();
        await parent.Completion.Bounded();

        Assert.Equal(WorkTaskState.Cancelled, parent.State);
        Assert.False(shielded.IsCancellationRequested);
        release.SetResult();
        await shielded.Completion.Bounded();
        Assert.Equal(7, shielded.GetResult());
    }

    [Fact]
    public async Task A_child_started_after_its_parent_was_cancelled_is_cancelled_at_once()
    {
        var parentStarted = NewGate();
        var parent = Child(null, SignalThenBlock(parentStarted));
        await parentStarted.Task.Bounded();
        parent.Cancel();
        await parent.Completion.Bounded();

        bool ran = false;
        var late = Child(parent, _ =>
        {
            ran = true;
            return Task.FromResult(1);
        });
        await late.Completion.Bounded();

        Assert.Equal(WorkTaskState.Cancelled, late.State);
        Assert.False(ran);
    }

    [Fact]
    public async Task A_failed_group_keeps_every_task_it_ran_in_start_order_succeeded_siblings_included()
    {
        var boom = new InvalidOperationException("boom");
        var firstDone = NewGate();

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync(async (g, ct) =>
        {
            var db = g.Start(_ => Task.FromResult(1), name: "Db", tag: "db-tag");
            await db.Completion;
            _ = g.Start<int>(_ => throw boom, name: "Web");
        }, name: "outer").Bounded());

        Assert.Equal(2, ex.Tasks.Count);
        Assert.Equal("db-tag", ex.Tasks[0]); // the tag, when the caller gave one
        var web = Assert.IsAssignableFrom<WorkTask>(ex.Tasks[1]); // else the task itself
        Assert.Equal("Web", web.Name);
        Assert.Equal(WorkTaskState.Failed, web.State);
        Assert.Same(boom, Assert.Single(ex.InnerExceptions));
    }

    [Fact]
    public async Task A_nested_groups_aggregate_nests_inside_its_owners_and_keeps_its_own_tasks()
    {
        var boom = new InvalidOperationException("deep");

        var ex = await Assert.ThrowsAsync<TaskGroupException>(() => TaskGroup.RunAsync((outer, outerToken) =>
        {
            _ = outer.Start(ct => TaskGroup.RunAsync<int>((inner, innerToken) =>
            {
                _ = inner.Start<int>(leafToken => throw boom, name: "Leaf");
                return Task.FromResult(0);
            }, name: "inner", cancellationToken: ct), name: "Middle");
            return Task.CompletedTask;
        }, name: "outer").Bounded());

        var middle = Assert.IsAssignableFrom<WorkTask>(Assert.Single(ex.Tasks));
        Assert.Equal("Middle", middle.Name);
        var inner = Assert.IsType<TaskGroupException>(Assert.Single(ex.InnerExceptions));
        Assert.Equal("inner", inner.GroupName);
        Assert.Equal("Leaf", Assert.IsAssignableFrom<WorkTask>(Assert.Single(inner.Tasks)).Name);
        Assert.Same(boom, Assert.Single(inner.InnerExceptions));
    }
}
