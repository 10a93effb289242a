using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation.Runspaces;
using System.Threading;
using AsyncGroup.Core;

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
    private static readonly ConcurrentDictionary<Worker, byte> s_busy = new();
    private static readonly SemaphoreSlim s_openSlots = new(OpenAtOnce);
    private static int s_created;
    private static int s_live;
    private static int s_warmedUp;

    private readonly WarmPool<Worker> _warm = new(ReturnWait);
    private readonly string[] _modules;
    private readonly object _sessionStateGate = new();
    private InitialSessionState? _sessionState;
    private SessionStateFormatEntry[] _deferredFormats = Array.Empty<SessionStateFormatEntry>();

    private WorkerPool(string[] modules) => _modules = modules;

    /// <summary>How many runspaces are opened at once, at most (see <see cref="Rent"/>).</summary>
    internal static int OpenAtOnce => Math.Max(2, Environment.ProcessorCount);

    /// <summary>How many worker runspaces this process has created (for tests and benchmarks).</summary>
    internal static int CreatedCount => Volatile.Read(ref s_created);

    /// <summary>Worker runspaces created and not yet disposed: busy, idle, or stopping.</summary>
    internal static int LiveCount => Volatile.Read(ref s_live);

    internal static WorkerPool For(IReadOnlyList<string> modules)
    {
        string key = string.Join("\u0001", modules);
        GC.KeepAlive(s_trimTimer);
        return s_pools.GetOrAdd(key, _ => new WorkerPool(new List<string>(modules).ToArray()));
    }

    /// <summary>Closes every idle worker; busy ones are closed when they come back. Called on Remove-Module.</summary>
    internal static void CloseAll()
    {
        foreach (WorkerPool pool in s_pools.Values)
        {
            foreach (Worker worker in pool._warm.Close())
            {
                worker.Close();
            }
        }

        s_pools.Clear();
    }

    /// <summary>
    /// A warm worker — waiting briefly for one on its way back (a millisecond away) rather than
    /// opening a new runspace (tens of milliseconds) — or a new one.
    /// </summary>
    /// <remarks>
    /// Runspaces are opened a few at a time (<see cref="s_openSlots"/>): opening is CPU-bound, and
    /// twenty opened at once on two cores all finish late, while opened a few at a time the first
    /// ones start their tasks early and, when those are short, serve the queue before the later
    /// ones are needed. A renter that waited for a slot opens nothing once
    /// <paramref name="stillNeeded"/> says its work was taken meanwhile: it gets null.
    /// </remarks>
    internal Worker? Rent(Func<bool>? stillNeeded = null)
    {
        Worker? worker = TakeUsable(static warm => warm.TryRent());
        if (worker is null)
        {
            s_openSlots.Wait();
            try
            {
                worker = TakeUsable(static warm => warm.TryRentIdle(TimeSpan.Zero));
                if (worker is null)
                {
                    if (stillNeeded is not null && !stillNeeded())
                    {
                        return null;
                    }

                    worker = Create();
                }
            }
            finally
            {
                s_openSlots.Release();
            }
        }

        s_busy[worker] = 0;
        return worker;
    }

    /// <summary>
    /// Opens one worker for the calls to come, on a background thread of its own, once per process
    /// (the first Import-Module; workers import the module too): a script's first call then finds
    /// a worker ready, or at least the pool's session state built and the code that opens a
    /// runspace compiled. The worker is an ordinary idle one: released by the idle trim, never
    /// keeping the process alive, closed by Remove-Module.
    /// </summary>
    internal static void WarmUp()
    {
        if (Interlocked.Exchange(ref s_warmedUp, 1) != 0)
        {
            return;
        }

        var thread = new Thread(() =>
        {
            try
            {
                For(new[] { WorkerSettings.OwnModulePathBesideAssembly() }).OpenIdle();
            }
            catch (Exception)
            {
                // Only a head start: the first call opens its workers itself.
            }
        })
        {
            IsBackground = true,
            Name = "AsyncGroup-WarmUp",
        };
        thread.Start();
    }

    /// <summary>Opens a worker into the idle stack unless one is idle already (see <see cref="WarmUp"/>).</summary>
    private void OpenIdle()
    {
        if (_warm.IdleCount > 0)
        {
            return;
        }

        // Announced as a worker coming back: a call renting while it opens waits for it (up to
        // ReturnWait) instead of opening another beside it; when it comes too late for that
        // renter, or the pool was closed meanwhile, it is refused and closed.
        _warm.Returning();
        Worker? worker = null;
        try
        {
            s_openSlots.Wait();
            try
            {
                worker = Create();
            }
            finally
            {
                s_openSlots.Release();
            }

            // Its driver starts now and compiles the task loop while it waits for a call: in a
            // cold process that is most of a first call's wait (a driver's first batch spent
            // 150 ms compiling before its first task; 500 ms under load).
            worker.StartIdleDriver();
        }
        finally
        {
            if (!_warm.Return(worker))
            {
                worker?.Close();
            }
        }
    }

    /// <summary>How long a call's own thread waits for a worker on its way back before leaving the wait to a thread of its own.</summary>
    private static readonly TimeSpan InlineReturnWait = TimeSpan.FromMilliseconds(3);

    /// <summary>
    /// An idle warm worker, or one coming back within a few milliseconds (the previous call's,
    /// finishing its clean-up), or null: see <see cref="Rent"/> for one that waits longer or opens a runspace.
    /// </summary>
    internal Worker? TryRentIdle()
    {
        Worker? worker = TakeUsable(static warm => warm.TryRentIdle(InlineReturnWait));
        if (worker is not null)
        {
            s_busy[worker] = 0;
        }

        return worker;
    }

    /// <summary>
    /// The first usable worker <paramref name="take"/> gives, or null. A worker whose runspace was
    /// closed from outside while it was idle (Get-Runspace lists the workers, and a user may
    /// dispose them) is let go and the next one taken: renting it failed every later call.
    /// </summary>
    private Worker? TakeUsable(Func<WarmPool<Worker>, Worker?> take)
    {
        while (take(_warm) is { } worker)
        {
            if (worker.IsUsable)
            {
                return worker;
            }

            worker.Close();
        }

        return null;
    }

    /// <summary>The names of the worker runspaces serving a call right now (or stuck and abandoned).</summary>
    internal static string[] BusyNames() => s_busy.Keys.Select(w => w.Runspace.Name).OrderBy(n => n, StringComparer.Ordinal).ToArray();

    /// <summary>
    /// Idle workers across all pools. A worker whose runspace was closed from outside while idle
    /// (its runspace already left <see cref="LiveCount"/>) is let go first: it can serve no call,
    /// and was counted idle until the next call rented past it or the idle trim.
    /// </summary>
    internal static int IdleCount
    {
        get
        {
            LetGoUnusableIdle();
            return s_pools.Values.Sum(p => p._warm.IdleCount);
        }
    }

    /// <summary>Workers announced as coming back to a pool and not back yet, across all pools.</summary>
    internal static int ReturningCount => s_pools.Values.Sum(p => p._warm.ReturningCount);

    /// <summary>Closes the idle workers whose runspace was closed from outside (Get-Runspace lists them).</summary>
    private static void LetGoUnusableIdle()
    {
        foreach (WorkerPool pool in s_pools.Values)
        {
            foreach (Worker worker in pool._warm.IdleItems())
            {
                if (!worker.IsUsable && pool._warm.RemoveIdle(worker))
                {
                    worker.Close();
                }
            }
        }
    }

    /// <summary>A worker is gone for good (disposed; called once per worker).</summary>
    internal static void Forget(Worker worker)
    {
        s_busy.TryRemove(worker, out _);
        Interlocked.Decrement(ref s_live);
    }

    /// <summary>A worker's batch is drained and it will be returned shortly.</summary>
    internal void Returning() => _warm.Returning();

    /// <summary>A worker that said it was returning will not come back after all.</summary>
    internal void NotReturning() => _warm.Return(null);

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

        s_busy.TryRemove(worker, out _);
        if (!_warm.Return(healthy ? worker : null))
        {
            worker.Close();
        }
    }

    private static void TrimAll()
    {
        foreach (WorkerPool pool in s_pools.Values)
        {
            foreach (Worker worker in pool._warm.Trim(DateTime.UtcNow - IdleTimeout))
            {
                worker.Close();
            }
        }
    }

    /// <summary>
    /// The pool's session state, built once: every runspace takes a copy of it when created, and
    /// building it costs about as much as the copy and the open together.
    /// </summary>
    /// <remarks>
    /// CreateDefault, not CreateDefault2: the built-in commands (Start-Sleep, Get-Date,
    /// ConvertTo-Json, Get-ChildItem...) are entries of the session state, as in a runspace created
    /// without one, instead of modules autoloaded on a task's first command — an autoload searches
    /// every PSModulePath folder and cost each new worker 20-200 ms, against a few milliseconds more
    /// at open. Other modules still autoload as usual. AsyncGroup itself is imported on first use
    /// (<see cref="OwnModuleImport"/>) unless -ImportModule names modules, which may need it first.
    /// The default format data is given to a worker on its first formatting command
    /// (<see cref="DeferredFormatData"/>).
    /// </remarks>
    private InitialSessionState SessionState
    {
        get
        {
            lock (_sessionStateGate)
            {
                if (_sessionState is null)
                {
                    InitialSessionState iss = InitialSessionState.CreateDefault();
                    _deferredFormats = DeferredFormatData.Split(iss);
                    string[] eager = LazyOwnModule is null ? _modules : Array.Empty<string>();
                    if (eager.Length > 0)
                    {
                        iss.ImportPSModule(eager);
                    }

                    // The worker runs its driver on a background thread of its own. ReuseThread would give the
                    // runspace a foreground "Pipeline Execution Thread" that the idle driver occupies, which kept
                    // every process that used the module alive until the idle trim (about 75 s).
                    iss.ThreadOptions = PSThreadOptions.UseCurrentThread;
                    _sessionState = iss;
                }

                return _sessionState;
            }
        }
    }

    /// <summary>
    /// AsyncGroup's own module (the first of the pool's modules, see WorkerSettings.Modules) when it
    /// is the only one: then workers import it on first use. Null when -ImportModule adds modules,
    /// which are imported at open after it (one of them may require it).
    /// </summary>
    private string? LazyOwnModule => _modules.Length == 1 ? _modules[0] : null;

    private Worker Create()
    {
        Runspace runspace = RunspaceFactory.CreateRunspace(SessionState);
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

        DeferredFormatData.Install(runspace, _deferredFormats);
        OwnModuleImport? import = LazyOwnModule is { } own ? OwnModuleImport.Install(runspace, own) : null;
        Interlocked.Increment(ref s_live);
        return new Worker(this, runspace) { OwnImport = import };
    }
}
