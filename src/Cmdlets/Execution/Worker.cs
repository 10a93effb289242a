using System;
using System.ComponentModel;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Threading;
using System.Threading.Tasks;
using AsyncGroup.Core;

namespace AsyncGroup.Execution;

/// <summary>
/// One pooled runspace running one long-lived driver pipeline. The driver waits for a batch,
/// runs it in a fresh child scope (so a call's settings, $using: values, functions and
/// initialization script die with it), takes tasks until the batch is drained, and waits for the
/// next batch — so neither a task nor a call pays for a pipeline, a parse of the driver, or a
/// runspace reset. Every output and stream record is attributed to the task being run.
/// </summary>
/// <remarks>
/// The driver runs synchronously on a background thread the worker owns (the runspace uses
/// <see cref="PSThreadOptions.UseCurrentThread"/>): an idle or stuck worker never keeps the process
/// alive, so a script that used the module ends with its last line.
/// Cancelling the running task stops the driver; it restarts if its batch has more work, and a
/// worker whose driver was stopped is reset before reuse. A driver that does not stop within
/// <see cref="StopGracePeriod"/> is abandoned: its task is reported Cancelled, and its runspace is
/// never reused and is disposed when the driver finally ends.
/// <para>
/// This file holds the driver's life cycle (start, stop, retire, close, abandon, and telling the
/// pool the worker is coming back); Worker.Session.cs the session hygiene between calls and
/// items; Worker.TaskLoop.cs the task loop; Worker.Streams.cs the stream hooks.
/// </para>
/// </remarks>
internal sealed partial class Worker
{
    /// <summary>How long a cancelled task may take to stop before its runspace is abandoned.</summary>
    internal static readonly TimeSpan StopGracePeriod = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How many more grace periods a stopped task that still has live child tasks is given before it
    /// is abandoned: a tree stops from the leaves up, each level under its own grace period.
    /// </summary>
    private const int MaxAbandonPostponements = 10;

    // PowerShell's own pipeline threads get 10 MB (deep recursion in scripts must behave the same).
    private const int DriverStackSize = 10_000_000;

    [ThreadStatic]
    private static Worker? t_driverOf;

    // Runs in the worker runspace. Each batch runs inside '& { }': a new scope per call. The
    // initialization script is dot-sourced into that scope so its definitions reach every task;
    // the per-task loop itself is C# (Worker.Run).
    // A warm-up worker's driver first goes once round the loop with no batch (Priming), which
    // compiles every line of it and the task loop before a call needs them.
    private const string DriverScript = @"param($__ag)
$__ag_priming = $__ag.Priming
while ($__ag_priming -or $__ag.NextBatch($ExecutionContext.SessionState)) {
    & {
        $__ag_init = $__ag.Prepare($ExecutionContext.SessionState)
        if ($null -ne $__ag_init) { . $__ag_init }
        $__ag.Run()
    }
    $__ag.EndBatch($ExecutionContext.SessionState)
    $__ag_priming = $false
}";

    private readonly object _gate = new();
    private readonly WorkerPool _pool;
    private PowerShell? _ps;
    private ScriptBatch? _batch;
    private ScriptBatch? _assigned;
    private AsyncTask? _current;
    private bool _stopping;
    private bool _abandoned;
    private bool _closing;
    private readonly ReturnAnnouncement _return = new(); // what the pool was told about this worker coming back
    private int _disposed;
    private ConcurrencyLimiter? _nestedLimiter;
    private readonly ManualResetEventSlim _driverExited = new(true); // reset while a driver runs

    /// <summary>The longest a closing runspace waits for its idle driver to end (see OnRunspaceStateChanged).</summary>
    private static readonly TimeSpan IdleDriverExitBound = TimeSpan.FromSeconds(1);

    internal Worker(WorkerPool pool, Runspace runspace)
    {
        _pool = pool;
        Runspace = runspace;

        // When PowerShell closes the runspace itself — the process's primary runspace closes every
        // other open one when the process exits — the idle driver must leave at once: it waits in
        // NextBatch, where a pipeline stop cannot reach it, and the close would wait for it (until the
        // idle trim, about 75 s later).
        runspace.StateChanged += OnRunspaceStateChanged;
    }

    internal Runspace Runspace { get; }

    /// <summary>True while its driver is running (idle workers with a driver take the next batch at once).</summary>
    internal bool IsHot
    {
        get
        {
            lock (_gate)
            {
                return _ps is not null;
            }
        }
    }

    internal AsyncTask? Current => _current;

    /// <summary>False once its runspace is closing or closed (by the module, or from outside) or the worker is retired.</summary>
    internal bool IsUsable
    {
        get
        {
            lock (_gate)
            {
                if (_closing)
                {
                    return false;
                }
            }

            return Runspace.RunspaceStateInfo.State == RunspaceState.Opened;
        }
    }

    /// <summary>Imports AsyncGroup into this worker on first use (null when it was imported at open).</summary>
    internal OwnModuleImport? OwnImport { get; set; }

    /// <summary>The worker whose driver runs on this thread (tasks run there), or null.</summary>
    internal static Worker? OnThisThread => t_driverOf;

    /// <summary>
    /// The bound for tasks this worker's tasks start without a throttle: a limiter of its own, so a
    /// task that waits for tasks it started never waits for a slot its own level holds.
    /// </summary>
    internal ConcurrencyLimiter NestedLimiter(int limit)
    {
        lock (_gate)
        {
            if (_nestedLimiter is null || _nestedLimiter.MaxConcurrency != limit)
            {
                _nestedLimiter = new ConcurrencyLimiter(limit);
            }

            return _nestedLimiter;
        }
    }

    /// <summary>
    /// The worker was just rented or opened for a batch: a new service begins, whose number a notice
    /// from another thread must name (<see cref="SignalReturning(int)"/>). <paramref name="announced"/>:
    /// the pool was already told it is coming back (its batch was drained while it was being opened).
    /// </summary>
    internal int BeginService(bool announced) => _return.Begin(announced);

    /// <summary>Hands <paramref name="batch"/> to the driver, starting the driver if it is not running.</summary>
    internal void Start(ScriptBatch batch)
    {
        bool startDriver;
        lock (_gate)
        {
            _assigned = batch;
            _stopping = false;
            startDriver = _ps is null;
            if (startDriver)
            {
                _ps = PowerShell.Create();
            }

            Monitor.PulseAll(_gate);
        }

        if (startDriver)
        {
            BeginDriver(_ps!);
        }
    }

    /// <summary>
    /// Starts the driver of a worker that has no batch yet, having it go once round its loop with
    /// nothing to run (<see cref="Priming"/>): the warm-up worker pays the compiling of the driver
    /// and the task loop before a call needs it. A batch handed over meanwhile waits for that.
    /// </summary>
    internal void StartIdleDriver()
    {
        bool startDriver;
        lock (_gate)
        {
            startDriver = _ps is null && !_closing;
            if (startDriver)
            {
                _priming = true;
                _ps = PowerShell.Create();
            }
        }

        if (startDriver)
        {
            BeginDriver(_ps!);
        }
    }

    /// <summary>Stops the driver if it is running <paramref name="task"/>; abandons it after the grace period.</summary>
    internal void Stop(AsyncTask task)
    {
        PowerShell? ps;
        int service;
        lock (_gate)
        {
            if (!ReferenceEquals(_current, task) || _stopping)
            {
                return;
            }

            _stopping = true;
            ps = _ps;
            service = _return.Service;
        }

        // A stopped worker usually comes back to the pool: say so now, so that a call renting
        // meanwhile waits for it (or, if it takes too long, replaces it) instead of adding a
        // runspace beside it. Announced whatever the batch holds now: a stop is most often part of
        // cancelling the whole call, whose queued tasks are removed only after this one is stopped.
        // DriverEnded withdraws the announcement if the worker keeps serving its batch after all.
        SignalReturning(service);

        try
        {
            ps?.BeginStop(null, null);
        }
        catch (ObjectDisposedException)
        {
            // The driver ended meanwhile.
        }

        ScheduleAbandonCheck(task, 0);
    }

    /// <summary>Called on the worker's own thread: the worker serves the rest of its batch, then is disposed instead of reused.</summary>
    internal void Retire()
    {
        lock (_gate)
        {
            _closing = true;
        }
    }

    /// <summary>Ends the driver (if idle) and disposes the runspace; a busy worker is disposed when its driver ends.</summary>
    internal void Close()
    {
        bool hot;
        lock (_gate)
        {
            _closing = true;
            hot = _ps is not null;
            Monitor.PulseAll(_gate);
        }

        if (!hot)
        {
            DisposeRunspace();
        }
    }

    private void OnRunspaceStateChanged(object? sender, RunspaceStateEventArgs e)
    {
        RunspaceState state = e.RunspaceStateInfo.State;
        if (state is not (RunspaceState.Closing or RunspaceState.Closed or RunspaceState.Broken))
        {
            return;
        }

        bool idle;
        lock (_gate)
        {
            _closing = true;
            Monitor.PulseAll(_gate);

            // Running no task: waiting in NextBatch, or on its way there from a batch that ended
            // (at a script's exit, the workers of its last call are often still going back).
            idle = _ps is not null && _current is null && !_priming && t_driverOf != this;
        }

        // An idle driver leaves at once, and its pipeline must be over before the close goes on to
        // stop the runspace's pipelines: a pipeline that ends while PowerShell stops it can make
        // the stop throw (an ObjectDisposedException from the pipeline's stop token), which at
        // process exit PowerShell turns into a crash, "Process terminated", about one exit in a
        // hundred. This handler runs on the closing thread before that stop, so waiting here for
        // the idle driver to end leaves the close no pipeline to stop. A driver running a task, or
        // a warm-up worker's first pass, is left to the close's own stop, as before (it ends at
        // the next statement).
        if (state == RunspaceState.Closing && idle)
        {
            _driverExited.Wait(IdleDriverExitBound);
        }
    }

    /// <summary>Resets a worker whose driver has ended: variables, $Error, location and functions return to the initial state.</summary>
    internal void Reset()
    {
        _locationTarget = null;
        Runspace.ResetRunspaceState();
        OwnImport?.Forget();
    }

    internal void DisposeRunspace()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        WorkerPool.Forget(this);
        try
        {
            Runspace.Dispose();
        }
        catch (Exception)
        {
            // Disposing a broken runspace must not take the caller down.
        }
    }

    /// <summary>
    /// Before this worker ends a task (completed, failed or cancelled): when its batch can hand out
    /// nothing more, the worker is on its way back, and renters must know before the task's end lets
    /// the caller return and rent again — or they open a runspace beside this one.
    /// </summary>
    private void SignalReturningIfLast()
    {
        if (_batch is { } batch && !batch.HasWork)
        {
            SignalReturning();
        }
    }

    /// <summary>
    /// Tells the pool, once per service, that this worker is on its way back: from another thread,
    /// naming the service the notice is for, which changes nothing once that service has ended (the
    /// worker came back, maybe to serve another batch since).
    /// </summary>
    internal void SignalReturning(int service)
    {
        if (_return.TryAnnounce(service))
        {
            _pool.Returning();
        }
    }

    /// <summary>The same, from the worker's own thread while it serves.</summary>
    private void SignalReturning()
    {
        if (_return.TryAnnounce())
        {
            _pool.Returning();
        }
    }

    /// <summary>The worker keeps serving its batch after all: a call renting now must not wait for it.</summary>
    private void WithdrawReturning()
    {
        if (_return.Withdraw())
        {
            _pool.NotReturning();
        }
    }

    /// <summary>The worker will never come back (abandoned or closing).</summary>
    private void LeaveForGood()
    {
        if (_return.LeaveForGood())
        {
            _pool.NotReturning();
        }
    }

    /// <summary>Hands the worker back to the pool, ending its announcement (made now if it was not).</summary>
    private void ComeBack(bool reset)
    {
        if (_return.ComeBack())
        {
            _pool.Returning();
        }

        _pool.Return(this, reset);
    }

    private void BeginDriver(PowerShell ps)
    {
        ps.Runspace = Runspace;
        ps.AddScript(DriverScript, useLocalScope: true).AddArgument(new WorkerDriverContext(this));
        HookStreams(ps);

        // A background thread of our own runs the driver synchronously: the runspace uses
        // UseCurrentThread, so no foreground pipeline thread of PowerShell's is ever created.
        var thread = new Thread(() => RunDriver(ps), DriverStackSize)
        {
            IsBackground = true,
            Name = Runspace.Name,
        };
        _driverExited.Reset();
        try
        {
            thread.Start();
        }
        catch (Exception ex)
        {
            _driverExited.Set();
            DriverEnded(ps, ex);
        }
    }

    private void RunDriver(PowerShell ps)
    {
        t_driverOf = this;

        // Task output is returned by InvokeWithContext; anything else the driver writes (say, an
        // initialization script's output) belongs to no task and is dropped.
        var output = new PSDataCollection<PSObject>();
        output.DataAdded += (s, e) => ((PSDataCollection<PSObject>)s!).ReadAll();
        Exception? error = null;
        try
        {
            ps.Invoke<PSObject, PSObject>(null, output, null);
        }
        catch (Exception ex)
        {
            error = ex;
        }
        finally
        {
            _driverExited.Set(); // the pipeline is over (see OnRunspaceStateChanged)
        }

        DriverEnded(ps, error);
    }

    private void DriverEnded(PowerShell ps, Exception? error)
    {
        AsyncTask? current;
        ScriptBatch? batch;
        bool abandoned, closing;
        lock (_gate)
        {
            current = _current;
            _current = null;
            batch = _batch ?? _assigned;
            _batch = null;
            _assigned = null;
            _body = null;
            _loop = null;
            _session = null;
            _ps = null;
            abandoned = _abandoned;
            closing = _closing;
        }

        if (current is not null)
        {
            current.RunningOn = null;
            if (!current.IsExecutionDone)
            {
                if (current.CancellationToken.IsCancellationRequested)
                {
                    current.SetCancelled(current.CancellationToken);
                }
                else
                {
                    current.SetFailed(ErrorHelper.FromException(
                        error ?? new InvalidOperationException("The worker stopped before the task finished."), ErrorIds.WorkerFailed, current));
                }
            }
        }
        else if (error is not null && error is not PipelineStoppedException && batch is not null)
        {
            // The driver failed before any task started (e.g. a broken -InitializationScript):
            // fail what is queued rather than restart into the same error forever.
            batch.FailQueued(error);
        }

        ps.Dispose();
        if (abandoned || closing)
        {
            LeaveForGood();
            DisposeRunspace();
            return;
        }

        if (batch is not null && current is not null && batch.HasWork)
        {
            // Stopped for one task's cancellation: keep serving the batch.
            WithdrawReturning();
            Start(batch);
            return;
        }

        batch?.WorkerLeft(this);
        ComeBack(reset: true);
    }

    private void ScheduleAbandonCheck(AsyncTask task, int postponed) =>
        _ = Task.Delay(StopGracePeriod).ContinueWith(_ => AbandonIfStuck(task, postponed), TaskScheduler.Default);

    private void AbandonIfStuck(AsyncTask task, int postponed)
    {
        ScriptBatch? batch;
        lock (_gate)
        {
            if (!ReferenceEquals(_current, task) || task.IsExecutionDone)
            {
                return;
            }

            if (task.HasLiveChildren && postponed < MaxAbandonPostponements)
            {
                // The task waits for tasks it started, which are being stopped too (each under its
                // own grace period): it is not stuck, and abandoning it would let its owner return
                // while part of its tree still runs. Look again after another grace period.
                ScheduleAbandonCheck(task, postponed + 1);
                return;
            }

            _abandoned = true;
            _current = null;
            batch = _batch;
            _batch = null;
        }

        task.RunningOn = null;
        task.Post(new StreamMessage(StreamKind.Warning,
            $"Task '{task.Name}' did not stop within {StopGracePeriod.TotalSeconds:0.#} s of being cancelled (it may be blocked in a .NET call); its runspace was abandoned and will be disposed when the call returns.",
            task));
        task.SetCancelled(task.CancellationToken);
        LeaveForGood(); // never reused: a call renting now must not wait for it
        batch?.WorkerLeft(this);
    }
}
