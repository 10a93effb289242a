using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading;

namespace AsyncGroup.Core;

/// <summary>
/// A first-in first-out queue that any thread posts to and one thread takes from, blocking when
/// it is empty: a cmdlet's writer queue (workers post records and completions, the pipeline thread
/// writes them).
/// </summary>
/// <remarks>
/// Guarantees: messages are taken in the order they were posted (per posting thread, and in the
/// order the posts completed across threads); a message posted while the consumer waits wakes it;
/// a post that finds no consumer waiting takes no lock and wakes nobody. One consumer at a time.
/// <para>
/// Why not <c>BlockingCollection</c>: it counts messages with a semaphore, a lock taken on every
/// post and every take. A gather over a long pipeline posts a completion per input, so that lock
/// was on the pipeline thread's path once per item, twice.
/// </para>
/// </remarks>
internal sealed class MessageQueue<T>
{
    private readonly ConcurrentQueue<T> _queue = new();
    // Its default spin (a few microseconds) before it blocks: when many tasks end in quick
    // succession the next message usually comes within it, and a post then wakes no sleeper.
    private readonly ManualResetEventSlim _posted = new(false);
    private int _consumerWaiting; // 1 while the consumer may block: a post must then set _posted

    /// <summary>Messages posted and not yet taken.</summary>
    public int Count => _queue.Count;

    /// <summary>Queues <paramref name="message"/> (any thread).</summary>
    public void Post(T message)
    {
        _queue.Enqueue(message);

        // The enqueue above is a full fence, as is the consumer's announcement before its last look:
        // either the consumer's look finds this message, or this read sees it waiting.
        if (Volatile.Read(ref _consumerWaiting) != 0)
        {
            _posted.Set();
        }
    }

    /// <summary>Takes the oldest message without blocking; false when there is none.</summary>
    public bool TryTake(out T message) => _queue.TryDequeue(out message!);

    /// <summary>
    /// Takes the oldest message, waiting up to <paramref name="millisecondsTimeout"/>
    /// (<see cref="Timeout.Infinite"/>: no limit) for one to be posted; false when none came in time.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public bool TryTake(out T message, int millisecondsTimeout, CancellationToken cancellationToken = default)
    {
        if (millisecondsTimeout < Timeout.Infinite)
        {
            throw new ArgumentOutOfRangeException(nameof(millisecondsTimeout), millisecondsTimeout, "The timeout must be Timeout.Infinite (-1) or zero or more.");
        }

        if (_queue.TryDequeue(out message!))
        {
            return true;
        }

        long started = Stopwatch.GetTimestamp();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            _posted.Reset();
            Interlocked.Exchange(ref _consumerWaiting, 1);
            try
            {
                // The last look, after announcing the wait: a message posted before the announcement
                // is found here, one posted after it sets the event.
                if (_queue.TryDequeue(out message!))
                {
                    return true;
                }

                int wait = Remaining(millisecondsTimeout, started);
                if (wait == 0 || !_posted.Wait(wait, cancellationToken))
                {
                    return _queue.TryDequeue(out message!);
                }
            }
            finally
            {
                Volatile.Write(ref _consumerWaiting, 0);
            }

            if (_queue.TryDequeue(out message!))
            {
                return true;
            }
        }
    }

    private static int Remaining(int millisecondsTimeout, long started)
    {
        if (millisecondsTimeout == Timeout.Infinite)
        {
            return Timeout.Infinite;
        }

        long elapsedMs = (Stopwatch.GetTimestamp() - started) * 1000 / Stopwatch.Frequency;
        return elapsedMs >= millisecondsTimeout ? 0 : (int)(millisecondsTimeout - elapsedMs);
    }
}
