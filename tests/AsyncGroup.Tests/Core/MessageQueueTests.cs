using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests.Core;

/// <summary><see cref="MessageQueue{T}"/>: the writer queue many threads post to and one thread drains.</summary>
public class MessageQueueTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    [Fact]
    public void Messages_are_taken_in_the_order_they_were_posted()
    {
        var queue = new MessageQueue<int>();
        for (int i = 0; i < 100; i++)
        {
            queue.Post(i);
        }

        var taken = new List<int>();
        while (queue.TryTake(out int message))
        {
            taken.Add(message);
        }

        Assert.Equal(Enumerable.Range(0, 100), taken);
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public void An_empty_queue_gives_nothing_without_waiting_and_nothing_after_a_timeout()
    {
        var queue = new MessageQueue<string>();
        Assert.False(queue.TryTake(out _));
        Assert.False(queue.TryTake(out _, 0));
        Assert.False(queue.TryTake(out _, 20));
    }

    [Fact]
    public async Task A_post_wakes_the_consumer_waiting_without_a_limit()
    {
        var queue = new MessageQueue<string>();
        using var waiting = new ManualResetEventSlim();
        var consumer = Task.Run(() =>
        {
            waiting.Set();
            return queue.TryTake(out string? message, Timeout.Infinite) ? message : null;
        });

        Assert.True(waiting.Wait(Generous));
        queue.Post("hello");
        Assert.Equal("hello", await consumer.Bounded());
    }

    [Fact]
    public async Task Cancelling_the_token_ends_the_wait_with_OperationCanceledException()
    {
        var queue = new MessageQueue<string>();
        using var cts = new CancellationTokenSource();
        var consumer = Task.Run(() => queue.TryTake(out _, Timeout.Infinite, cts.Token));
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => consumer.Bounded());
    }

    [Fact]
    public void A_negative_timeout_other_than_infinite_is_refused()
    {
        var queue = new MessageQueue<int>();
        Assert.Throws<ArgumentOutOfRangeException>(() => queue.TryTake(out _, -2));
    }

    [Fact]
    public async Task Every_message_of_many_producers_reaches_a_consumer_that_blocks_between_them()
    {
        // The consumer blocks whenever the queue runs dry, so posts keep racing its last look
        // before the wait: a lost wake-up would leave it waiting with messages queued (and the
        // test would end with fewer than all of them).
        const int producers = 4;
        const int each = 20_000;
        var queue = new MessageQueue<(int Producer, int Seq)>();
        var last = Enumerable.Repeat(-1, producers).ToArray();
        int received = 0;
        var consumer = Task.Run(() =>
        {
            while (received < producers * each)
            {
                if (!queue.TryTake(out var message, (int)Generous.TotalMilliseconds))
                {
                    return false;
                }

                Assert.Equal(last[message.Producer] + 1, message.Seq); // each producer's order kept
                last[message.Producer] = message.Seq;
                received++;
            }

            return true;
        });

        Parallel.For(0, producers, p =>
        {
            for (int i = 0; i < each; i++)
            {
                queue.Post((p, i));
                if (i % 64 == 0)
                {
                    Thread.Yield(); // let the consumer drain the queue and block again
                }
            }
        });

        Assert.True(await consumer.WaitAsync(TimeSpan.FromSeconds(120)), $"the consumer waited {Generous.TotalSeconds} s with {queue.Count} message(s) queued");
        Assert.Equal(producers * each, received);
    }

    [Fact]
    public async Task A_post_racing_the_consumer_into_its_wait_is_never_lost()
    {
        // Ping-pong: every message is the last one posted until the consumer answers, so a post
        // that slips between the consumer's last look and its wait, and fails to wake it, leaves
        // it waiting for good (the test then fails on its deadline). The producer posts the next
        // message the moment the answer comes, while the consumer heads back into its wait.
        const int rounds = 20_000;
        var queue = new MessageQueue<int>();
        using var answered = new SemaphoreSlim(0);
        var consumer = Task.Run(() =>
        {
            for (int i = 0; i < rounds; i++)
            {
                Assert.True(queue.TryTake(out int message, Timeout.Infinite));
                Assert.Equal(i, message);
                answered.Release();
            }
        });

        var producer = Task.Run(async () =>
        {
            for (int i = 0; i < rounds; i++)
            {
                queue.Post(i);
                if (!await answered.WaitAsync(TimeSpan.FromSeconds(30)))
                {
                    return i; // the consumer never took message i
                }
            }

            return rounds;
        });

        Assert.Equal(rounds, await producer.WaitAsync(TimeSpan.FromSeconds(120)));
        await consumer.Bounded();
    }
}
