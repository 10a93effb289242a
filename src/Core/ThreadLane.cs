using System;
using System.Collections.Concurrent;
using System.Threading;

namespace AsyncGroup.Core;

/// <summary>
/// Runs blocking actions first-in first-out on at most <c>maxThreads</c> threads of its own:
/// a thread starts when an action is queued and fewer are running, and ends once nothing is
/// queued. Made for work that a semaphore lets through a few at a time anyway (opening runspaces):
/// a thread per action only added threads that waited, each with its stack — five hundred of
/// them for a 500-way fan-out.
/// </summary>
/// <remarks>
/// Threads are background threads, so a queued action never keeps a process alive. An action is
/// expected to handle its own failures: an exception that escapes it goes to <c>unhandled</c>
/// (when given; otherwise it is dropped, as a faulted task nobody awaits would drop it) and the
/// thread goes on with the next action.
/// </remarks>
internal sealed class ThreadLane
{
    private readonly ConcurrentQueue<Action> _queue = new();
    private readonly int _maxThreads;
    private readonly string _threadName;
    private readonly Action<Exception>? _unhandled;
    private int _threads; // running, or about to run, the serve loop

    /// <summary>Creates a lane of at most <paramref name="maxThreads"/> threads named <paramref name="threadName"/>.</summary>
    public ThreadLane(int maxThreads, string threadName, Action<Exception>? unhandled = null)
    {
        if (maxThreads < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxThreads), maxThreads, "At least one thread is needed.");
        }

        _maxThreads = maxThreads;
        _threadName = threadName;
        _unhandled = unhandled;
    }

    /// <summary>Threads serving the lane right now.</summary>
    public int Threads => Volatile.Read(ref _threads);

    /// <summary>
    /// Tests only: runs on a thread that found the queue empty, before it counts itself out — the
    /// moment when an action queued finds every thread still counted and starts none.
    /// </summary>
    internal Action? BeforeLeaving { get; set; }

    /// <summary>Queues <paramref name="action"/>; it runs on a lane thread, after the actions queued before it started.</summary>
    public void Run(Action action)
    {
        if (action is null)
        {
            throw new ArgumentNullException(nameof(action));
        }

        _queue.Enqueue(action);
        if (TryAddThread())
        {
            try
            {
                var thread = new Thread(Serve) { IsBackground = true, Name = _threadName };
                thread.Start();
            }
            catch (Exception)
            {
                // No thread after all (the system refused one): uncount it, so that a later action
                // can start one, and tell the caller.
                Interlocked.Decrement(ref _threads);
                throw;
            }
        }
    }

    /// <summary>Counts one more thread if the limit allows it; true when the caller must start it.</summary>
    private bool TryAddThread()
    {
        while (true)
        {
            int running = Volatile.Read(ref _threads);
            if (running >= _maxThreads)
            {
                return false; // a running thread takes the action before it ends (see Serve)
            }

            if (Interlocked.CompareExchange(ref _threads, running + 1, running) == running)
            {
                return true;
            }
        }
    }

    private void Report(Exception ex)
    {
        try
        {
            _unhandled?.Invoke(ex);
        }
        catch (Exception)
        {
            // The report itself failed: the thread must still go on, and count itself out when it ends.
        }
    }

    private void Serve()
    {
        while (true)
        {
            while (_queue.TryDequeue(out Action? action))
            {
                try
                {
                    action();
                }
                catch (Exception ex)
                {
                    Report(ex);
                }
            }

            BeforeLeaving?.Invoke();
            Interlocked.Decrement(ref _threads);

            // An action queued after the last look, while every thread still counted, started no
            // thread: it was left to a running one. This one takes it back, unless the queue is
            // empty or another thread has started meanwhile and will.
            if (_queue.IsEmpty || !TryAddThread())
            {
                return;
            }
        }
    }
}
