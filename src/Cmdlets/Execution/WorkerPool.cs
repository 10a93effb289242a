using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Management.Automation.Runspaces;
using System.Threading;

namespace AsyncGroup.Execution;

/// <summary>
/// Warm worker runspaces, one pool per set of -ImportModule modules, shared by every call in the
/// process. Runspaces are created lazily with the cheapest session state that still behaves like a
/// normal session (CreateDefault2: commands autoload), reset when they come back, released after
/// <see cref="IdleTimeout"/> unused and when the module is removed.
/// </summary>
internal sealed class WorkerPool
{
    /// <summary>How long an idle worker is kept.</summary>
    internal static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(60);

    /// <summary>How long Rent waits for a returning worker before opening a new runspace.</summary>
    private static readonly TimeSpan ReturnWait = TimeSpan.FromMilliseconds(200);

    private static readonly ConcurrentDictionary<string, WorkerPool> s_pools = new(StringComparer.OrdinalIgnoreCase);
    private static readonly Timer s_trimTimer = new(_ => TrimAll(), null, TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(15));
    private static int s_created;

    private readonly object _gate = new();
    private readonly Stack<Worker> _idle = new();
    private readonly string[] _modules;
    private int _returning;
    private bool _closed;

    private WorkerPool(string[] modules) => _modules = modules;

    /// <summary>How many worker runspaces this process has created (for tests and benchmarks).</summary>
    internal static int CreatedCount => Volatile.Read(ref s_created);

    /// <summary>Idle workers across all pools.</summary>
    internal static int IdleCount
    {
        get
        {
            int count = 0;
            foreach (WorkerPool pool in s_pools.Values)
            {
                lock (pool._gate)
                {
                    count += pool._idle.Count;
                }
            }

            return count;
        }
    }

    internal static WorkerPool For(IReadOnlyList<string> modules)
    {
        string key = string.Join("\u0001", modules);
        GC.KeepAlive(s_trimTimer);
        return s_pools.GetOrAdd(key, _ => new WorkerPool(new List<string>(modules).ToArray()));
    }

    /// <summary>Disposes every idle worker; busy ones are disposed when they come back. Called on Remove-Module.</summary>
    internal static void CloseAll()
    {
        foreach (WorkerPool pool in s_pools.Values)
        {
            pool.Close();
        }

        s_pools.Clear();
    }

    internal Worker Rent()
    {
        lock (_gate)
        {
            // A worker on its way back (its driver ended, its state is being reset) is a
            // millisecond away; opening a new runspace costs tens. Back-to-back calls reuse it.
            var deadline = DateTime.UtcNow + ReturnWait;
            while (_idle.Count == 0 && _returning > 0)
            {
                TimeSpan left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_gate, left))
                {
                    break;
                }
            }

            if (_idle.Count > 0)
            {
                return _idle.Pop();
            }
        }

        return Create();
    }

    /// <summary>A worker's driver is ending and it will be returned shortly.</summary>
    internal void Returning()
    {
        lock (_gate)
        {
            _returning++;
        }
    }

    /// <summary>
    /// Takes a worker back. A worker whose driver ended (stopped or failed) is reset first; one
    /// whose driver is still waiting for its next batch needs no reset: each batch ran in a scope
    /// of its own that is already gone.
    /// </summary>
    internal void Return(Worker worker, bool reset)
    {
        bool healthy = true;
        if (reset)
        {
            try
            {
                worker.Reset();
            }
            catch (Exception)
            {
                healthy = false;
            }
        }

        lock (_gate)
        {
            _returning = Math.Max(0, _returning - 1);
            Monitor.PulseAll(_gate);
            if (healthy && !_closed)
            {
                worker.IdleSince = DateTime.UtcNow;
                _idle.Push(worker);
                return;
            }
        }

        worker.Close();
    }

    private static void TrimAll()
    {
        foreach (WorkerPool pool in s_pools.Values)
        {
            pool.Trim(DateTime.UtcNow - IdleTimeout);
        }
    }

    private Worker Create()
    {
        InitialSessionState iss = InitialSessionState.CreateDefault2();
        if (_modules.Length > 0)
        {
            iss.ImportPSModule(_modules);
        }

        iss.ThreadOptions = PSThreadOptions.ReuseThread;
        Runspace runspace = RunspaceFactory.CreateRunspace(iss);
        int n = Interlocked.Increment(ref s_created);
        runspace.Name = "AsyncGroup-Worker-" + n;
        try
        {
            runspace.Open();
        }
        catch
        {
            runspace.Dispose();
            throw;
        }

        return new Worker(this, runspace);
    }

    private void Trim(DateTime idleBefore)
    {
        var expired = new List<Worker>();
        lock (_gate)
        {
            if (_idle.Count == 0)
            {
                return;
            }

            var keep = new List<Worker>();
            foreach (Worker worker in _idle)
            {
                (worker.IdleSince < idleBefore ? expired : keep).Add(worker);
            }

            _idle.Clear();
            for (int i = keep.Count - 1; i >= 0; i--)
            {
                _idle.Push(keep[i]);
            }
        }

        foreach (Worker worker in expired)
        {
            worker.Close();
        }
    }

    private void Close()
    {
        Worker[] idle;
        lock (_gate)
        {
            _closed = true;
            idle = _idle.ToArray();
            _idle.Clear();
        }

        foreach (Worker worker in idle)
        {
            worker.Close();
        }
    }
}
