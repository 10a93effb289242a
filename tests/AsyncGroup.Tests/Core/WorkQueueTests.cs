using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests.Core;

/// <summary>The executor's batch queue rules, without runspaces.</summary>
public class WorkQueueTests
{
    private static WorkQueue<string> QueueWith(int maxWorkers, params string[] items)
    {
        var queue = new WorkQueue<string>(maxWorkers);
        foreach (string item in items)
        {
            queue.Register();
            queue.Enqueue(item);
        }

        return queue;
    }

    [Fact]
    public void Items_are_taken_first_in_first_out_and_a_requeued_item_goes_first()
    {
        var queue = QueueWith(1, "a", "b", "c");
        Assert.Equal("a", queue.Take());
        queue.Requeue("a");
        queue.Complete();
        Assert.Equal(new[] { "a", "b", "c" }, new[] { queue.Take(), queue.Take(), queue.Take() });
        Assert.Null(queue.Take());
    }

    [Fact]
    public async Task Take_blocks_until_an_item_is_queued()
    {
        var queue = new WorkQueue<string>(1);
        queue.Register();
        Task<string?> taker = Task.Run(() => queue.Take());
        await Task.Yield();
        Assert.False(taker.IsCompleted);
        queue.Enqueue("x");
        Assert.Equal("x", await taker.Bounded());
    }

    [Fact]
    public async Task A_completed_queue_is_not_drained_while_a_registered_item_has_not_arrived()
    {
        var queue = new WorkQueue<string>(1);
        queue.Register(); // admitted later by a limiter, say
        queue.Complete();
        Task<string?> taker = Task.Run(() => queue.Take());
        await WaitUntil(() => queue.Waiting == 1 || taker.IsCompleted);
        Assert.False(taker.IsCompleted, "Take returned although a registered item was still to come.");
        queue.Enqueue("late");
        Assert.Equal("late", await taker.Bounded());
        Assert.Null(queue.Take());
    }

    [Fact]
    public async Task Unregistering_the_last_expected_item_releases_waiting_workers()
    {
        var queue = new WorkQueue<string>(1);
        queue.Register();
        queue.Complete();
        Task<string?> taker = Task.Run(() => queue.Take());
        queue.Unregister();
        Assert.Null(await taker.Bounded());
        Assert.False(queue.HasWork);
    }

    [Fact]
    public void Start_decisions_never_exceed_the_worker_limit()
    {
        var queue = new WorkQueue<string>(2);
        int starts = 0;
        for (int i = 0; i < 10; i++)
        {
            queue.Register();
            if (queue.Enqueue("i" + i))
            {
                starts++;
            }
        }

        Assert.Equal(2, starts);
        Assert.Equal(2, queue.Workers);
    }

    [Fact]
    public async Task No_worker_is_started_while_an_idle_one_is_waiting()
    {
        var queue = new WorkQueue<string>(4);
        queue.Register();
        Assert.True(queue.Enqueue("first"));        // one worker for the first item
        Assert.Equal("first", queue.Take());
        Task<string?> idle = Task.Run(() => queue.Take()); // that worker now waits
        await WaitUntil(() => queue.Waiting == 1);
        queue.Register();
        Assert.False(queue.Enqueue("second"), "A second worker was started although one was idle.");
        Assert.Equal("second", await idle.Bounded());
    }

    [Fact]
    public void A_leaving_worker_is_replaced_only_while_items_remain()
    {
        var queue = QueueWith(1, "a", "b");
        Assert.Equal(1, queue.Workers);
        Assert.True(queue.WorkerLeft(), "Items remain: a replacement is needed.");
        Assert.Equal("a", queue.Take());
        Assert.Equal("b", queue.Take());
        Assert.False(queue.WorkerLeft(), "Nothing remains: no replacement.");
    }

    [Fact]
    public void A_queued_item_can_be_removed_and_all_can_be_taken_out_for_failing()
    {
        var queue = QueueWith(1, "a", "b", "c");
        Assert.True(queue.TryRemove("b"));
        Assert.False(queue.TryRemove("b"));
        Assert.Equal(new[] { "a", "c" }, queue.RemoveAll());
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public async Task The_last_expected_item_releases_every_other_waiting_worker()
    {
        // The item that ends the queue (completed, nothing else registered) goes to one waiter;
        // every other waiter must learn at once that nothing more can come.
        var queue = new WorkQueue<string>(8);
        queue.Register();
        queue.Complete();
        Task<string?>[] takers = Enumerable.Range(0, 4).Select(_ => Task.Run(() => queue.Take())).ToArray();
        await WaitUntil(() => queue.Waiting == 4);
        queue.Enqueue("last");
        string?[] taken = await Task.WhenAll(takers).Bounded();
        Assert.Equal(new[] { "last" }, taken.Where(t => t is not null));
        Assert.Equal(3, taken.Count(t => t is null));
    }

    [Fact]
    public async Task Many_producers_and_consumers_take_every_item_once_and_every_consumer_leaves()
    {
        // Stress: producers register, enqueue or unregister concurrently while consumers take;
        // rounds repeat the race. Every item is taken exactly once and no consumer is left waiting
        // on a queue that is completed and empty.
        for (int round = 0; round < 200; round++)
        {
            var queue = new WorkQueue<string>(int.MaxValue);
            const int producers = 4, perProducer = 25;
            for (int i = 0; i < producers * perProducer; i++)
            {
                queue.Register();
            }

            var taken = new System.Collections.Concurrent.ConcurrentBag<string>();
            Task[] consumers = Enumerable.Range(0, 6).Select(_ => Task.Factory.StartNew(() =>
            {
                while (queue.Take() is { } item)
                {
                    taken.Add(item);
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();

            int unregistered = 0;
            Task[] feeders = Enumerable.Range(0, producers).Select(p => Task.Factory.StartNew(() =>
            {
                for (int i = 0; i < perProducer; i++)
                {
                    if ((i + round) % 7 == 0)
                    {
                        Interlocked.Increment(ref unregistered);
                        queue.Unregister(); // cancelled before it was queued
                    }
                    else
                    {
                        queue.Enqueue($"{p}:{i}");
                    }
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();

            if (round % 2 == 0)
            {
                queue.Complete(); // completed while items are still arriving
            }

            await Task.WhenAll(feeders).Bounded();
            if (round % 2 == 1)
            {
                queue.Complete(); // completed after the last item
            }

            await Task.WhenAll(consumers).Bounded();
            Assert.Equal(producers * perProducer - unregistered, taken.Count);
            Assert.Equal(taken.Count, taken.Distinct().Count());
            Assert.False(queue.HasWork);
        }
    }

    // A spin far longer than any test: a worker that spins stays spinning until something happens.
    private static readonly TimeSpan LongSpin = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task A_spinning_worker_takes_an_item_queued_while_it_spins()
    {
        var queue = new WorkQueue<string>(1, LongSpin);
        queue.Register();
        Task<string?> spinner = Task.Run(() => queue.Take());
        await WaitUntil(() => queue.Waiting == 1);
        queue.Enqueue("x");
        Assert.Equal("x", await spinner.Bounded());
    }

    [Fact]
    public async Task With_one_worker_spinning_a_second_item_wakes_a_blocked_worker()
    {
        // The spinner is counted on for one item only: the next one must wake a blocked worker,
        // or it would wait until the spinner came back for it.
        var queue = new WorkQueue<string>(2, LongSpin);
        queue.Register();
        queue.Register();
        queue.Register();
        Task<string?> first = Task.Run(() => queue.Take());
        await WaitUntil(() => queue.Waiting == 1);
        Task<string?> second = Task.Run(() => queue.Take());
        await WaitUntil(() => queue.Waiting == 2); // one spins, one blocks
        queue.Enqueue("a");
        queue.Enqueue("b");
        string?[] taken = await Task.WhenAll(first, second).Bounded();
        Assert.Equal(new[] { "a", "b" }, taken.OrderBy(t => t));
    }

    [Fact]
    public async Task A_spinning_worker_leaves_once_the_queue_is_drained()
    {
        var queue = new WorkQueue<string>(1, LongSpin);
        queue.Register();
        queue.Complete();
        Task<string?> spinner = Task.Run(() => queue.Take());
        await WaitUntil(() => queue.Waiting == 1);
        queue.Unregister(); // the last expected item will never come
        Assert.Null(await spinner.Bounded());

        var completed = new WorkQueue<string>(1, LongSpin);
        Task<string?> other = Task.Run(() => completed.Take());
        await WaitUntil(() => completed.Waiting == 1);
        completed.Complete();
        Assert.Null(await other.Bounded());
    }

    [Fact]
    public async Task No_worker_is_started_while_an_idle_one_is_spinning()
    {
        var queue = new WorkQueue<string>(4, LongSpin);
        queue.Register();
        Assert.True(queue.Enqueue("first"));
        Assert.Equal("first", queue.Take());
        Task<string?> idle = Task.Run(() => queue.Take());
        await WaitUntil(() => queue.Waiting == 1);
        queue.Register();
        Assert.False(queue.Enqueue("second"), "A second worker was started although one was spinning for an item.");
        Assert.Equal("second", await idle.Bounded());
    }

    [Fact]
    public void The_queue_grows_and_keeps_its_order_through_requeues_and_removals()
    {
        var queue = new WorkQueue<string>(1, TimeSpan.Zero);
        var expected = new List<string>();
        for (int i = 0; i < 100; i++)
        {
            queue.Register();
            queue.Enqueue("i" + i);
            expected.Add("i" + i);
            if (i % 10 == 9)
            {
                // Take one and put it back first in line: the order is unchanged.
                string? head = queue.Take();
                Assert.Equal(expected[0], head);
                queue.Requeue(head!);
            }
        }

        Assert.True(queue.TryRemove("i50"));
        expected.Remove("i50");
        Assert.Equal(99, queue.Count);
        queue.Complete();
        var taken = new List<string>();
        while (queue.Take() is { } item)
        {
            taken.Add(item);
        }

        Assert.Equal(expected, taken);
    }

    [Fact]
    public void WaitForRoom_returns_at_once_when_the_queue_is_short_enough()
    {
        var queue = QueueWith(1, "a", "b");
        Assert.True(queue.WaitForRoom(2, 0));
        Assert.True(queue.WaitForRoom(5, Timeout.Infinite));
    }

    [Fact]
    public async Task WaitForRoom_wakes_the_producer_once_workers_take_the_queue_down_to_the_length()
    {
        var queue = QueueWith(1, "a", "b", "c", "d", "e");
        Task<bool> producer = Task.Run(() => queue.WaitForRoom(2, Timeout.Infinite));
        await WaitUntil(() => queue.ProducerWaiting);
        Assert.Equal("a", queue.Take());
        Assert.Equal("b", queue.Take());

        // Three are left, one more than the producer waits for: it must still be waiting.
        await Task.Delay(100);
        Assert.False(producer.IsCompleted, "The producer was woken while the queue was still longer than it waits for.");
        Assert.Equal("c", queue.Take());
        Assert.True(await producer.Bounded());
        Assert.Equal(2, queue.Count);
    }

    [Fact]
    public void WaitForRoom_gives_false_when_no_room_is_made_in_time()
    {
        var queue = QueueWith(1, "a", "b", "c");
        Assert.False(queue.WaitForRoom(1, 50));
        Assert.Equal(3, queue.Count);
    }

    [Fact]
    public async Task Removing_queued_items_makes_room_too()
    {
        var queue = QueueWith(1, "a", "b", "c");
        Task<bool> producer = Task.Run(() => queue.WaitForRoom(2, Timeout.Infinite));
        await WaitUntil(() => queue.ProducerWaiting);
        Assert.True(queue.TryRemove("b"));
        Assert.True(await producer.Bounded());

        producer = Task.Run(() => queue.WaitForRoom(0, Timeout.Infinite));
        await WaitUntil(() => queue.ProducerWaiting);
        Assert.Equal(2, queue.RemoveAll().Count);
        Assert.True(await producer.Bounded());
    }

    [Fact]
    public async Task WaitForRoom_throws_when_its_token_is_cancelled()
    {
        var queue = QueueWith(1, "a", "b");
        using var stop = new CancellationTokenSource();
        Task<bool> producer = Task.Run(() => queue.WaitForRoom(0, Timeout.Infinite, stop.Token));
        await WaitUntil(() => queue.ProducerWaiting);
        stop.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => producer.Bounded());
        Assert.False(queue.ProducerWaiting);

        // The queue is as it was, and a later wait still works.
        Assert.Equal(2, queue.Count);
        Assert.True(queue.WaitForRoom(2, 0));
    }

    // Late starts, driven by hand: no timer (an infinite delay), the test calls LateStartTick.
    private static WorkQueue<string> LateStartQueue(int maxWorkers, int startAtOnce, Action lateStart) =>
        new(maxWorkers, startAtOnce, Timeout.InfiniteTimeSpan, lateStart);

    private static int EnqueueAll(WorkQueue<string> queue, params string[] items)
    {
        int starts = 0;
        foreach (string item in items)
        {
            queue.Register();
            if (queue.Enqueue(item))
            {
                starts++;
            }
        }

        return starts;
    }

    [Fact]
    public void Workers_beyond_the_first_start_late_once_waiting_items_saw_no_progress()
    {
        int lateStarts = 0;
        var queue = LateStartQueue(4, 1, () => lateStarts++);
        Assert.Equal(1, EnqueueAll(queue, "a", "b", "c"));
        Assert.Equal(0, lateStarts);

        // A whole delay without an item taken: a worker for each waiting item, up to the limit.
        queue.LateStartTick();
        Assert.Equal(3, lateStarts);
        Assert.Equal(4, queue.Workers);
        queue.LateStartTick(); // not armed again: nothing more
        Assert.Equal(3, lateStarts);
    }

    [Fact]
    public void Workers_that_keep_up_with_the_items_get_no_late_company()
    {
        int lateStarts = 0;
        var queue = LateStartQueue(4, 2, () => lateStarts++);
        Assert.Equal(2, EnqueueAll(queue, "a", "b", "c", "d"));

        // A worker came back for another item since the check was armed: the workers keep up,
        // so it is armed again.
        Assert.Equal("a", queue.Take());
        Assert.Equal("b", queue.Take(afterItem: true));
        queue.LateStartTick();
        Assert.Equal(0, lateStarts);
        Assert.Equal(2, queue.Workers);

        // Then a delay with no progress, items still waiting: two more workers, one for each.
        queue.LateStartTick();
        Assert.Equal(2, lateStarts);
        Assert.Equal(4, queue.Workers);
    }

    [Fact]
    public void A_worker_s_first_take_is_no_sign_that_the_workers_keep_up()
    {
        // A fan-out: the first worker takes its item and sleeps; only a worker back from an item
        // shows that the items are short.
        int lateStarts = 0;
        var queue = LateStartQueue(3, 1, () => lateStarts++);
        Assert.Equal(1, EnqueueAll(queue, "a", "b", "c"));
        Assert.Equal("a", queue.Take());
        queue.LateStartTick();
        Assert.Equal(2, lateStarts);
    }

    [Fact]
    public void A_late_start_counts_only_items_no_idle_worker_is_there_to_take()
    {
        int lateStarts = 0;
        var queue = LateStartQueue(8, 1, () => lateStarts++);
        Assert.Equal(1, EnqueueAll(queue, "a", "b"));
        Assert.Equal("a", queue.Take());
        Assert.Equal("b", queue.Take());
        queue.LateStartTick(); // progress: armed again, nothing waits now
        queue.LateStartTick();
        Assert.Equal(0, lateStarts);

        Assert.Equal(0, EnqueueAll(queue, "c", "d", "e"));
        queue.LateStartTick(); // armed with progress counted at "c": none taken since
        Assert.Equal(3, lateStarts);
    }

    [Fact]
    public async Task With_a_real_timer_blocked_workers_get_company_after_the_delay()
    {
        var started = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        int lateStarts = 0;
        var queue = new WorkQueue<string>(3, 1, TimeSpan.FromMilliseconds(20), () =>
        {
            if (Interlocked.Increment(ref lateStarts) == 2)
            {
                started.SetResult(2);
            }
        });
        Assert.Equal(1, EnqueueAll(queue, "a", "b", "c"));
        Assert.Equal("a", queue.Take()); // the one worker is now busy with "a" for as long as it likes

        Assert.Equal(2, await started.Task.Bounded());
        Assert.Equal(3, queue.Workers);
    }

    [Fact]
    public void The_producer_s_check_does_nothing_before_the_delay()
    {
        int lateStarts = 0;
        var queue = new WorkQueue<string>(3, 1, TimeSpan.FromSeconds(30), () => Interlocked.Increment(ref lateStarts));
        Assert.Null(queue.LateStartCheckIn); // nothing waits yet
        Assert.Equal(1, EnqueueAll(queue, "a", "b", "c"));

        TimeSpan? due = queue.LateStartCheckIn;
        Assert.NotNull(due);
        Assert.True(due > TimeSpan.FromSeconds(20), $"due in {due}");
        queue.CheckLateStart();
        Assert.Equal(0, lateStarts);
    }

    [Fact]
    public async Task The_producer_s_check_starts_workers_once_it_is_due_and_then_nothing_is_pending()
    {
        int lateStarts = 0;
        var queue = new WorkQueue<string>(3, 1, TimeSpan.FromMilliseconds(1), () => Interlocked.Increment(ref lateStarts));
        Assert.Equal(1, EnqueueAll(queue, "a", "b", "c"));
        Assert.Equal("a", queue.Take());
        queue.Complete();

        await WaitUntil(() => queue.LateStartCheckIn is not { } due || due == TimeSpan.Zero);
        queue.CheckLateStart();
        Assert.Equal(2, Volatile.Read(ref lateStarts)); // (or the fallback timer got there first: the same starts)
        Assert.Equal(3, queue.Workers);
        Assert.Null(queue.LateStartCheckIn);
    }

    [Fact]
    public void A_queue_whose_workers_start_late_needs_a_way_to_start_them()
    {
        Assert.Throws<ArgumentNullException>(() => new WorkQueue<string>(4, 1, TimeSpan.FromMilliseconds(5), null));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WorkQueue<string>(4, 0, TimeSpan.FromMilliseconds(5), () => { }));
        Assert.Equal(0, new WorkQueue<string>(4, 4, TimeSpan.FromMilliseconds(5), null).Workers); // all at once: no late start
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TestAsync.Deadline;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "Condition not reached before the deadline.");
            await Task.Delay(5);
        }
    }
}
