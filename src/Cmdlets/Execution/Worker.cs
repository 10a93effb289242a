using System;
using System.Collections;
using System.Collections.Generic;
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
/// </remarks>
internal sealed class Worker
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
    private const string DriverScript = @"param($__ag)
while ($__ag.NextBatch($ExecutionContext.SessionState)) {
    & {
        $__ag_init = $__ag.Prepare($ExecutionContext.SessionState)
        if ($null -ne $__ag_init) { . $__ag_init }
        $__ag.Run()
    }
    $__ag.EndBatch($ExecutionContext.SessionState)
}";

    // The per-task loop (see Run). 'do { } while ($false)' keeps a 'break' or 'continue' outside a
    // loop in a task from ending this loop: it ends the task, as it would end a script. The sink
    // hands each output object to the task the moment it is written.
    private const string TaskLoopScript = @"param($__ag_body)
& {
    while ($__ag.MoveNext()) {
        $_ = $__ag.Input
        $__ag_args = $__ag.Arguments
        do { try { & $__ag_body @__ag_args } catch { $__ag.Fail($_) } } while ($false)
    }
} | & { process { $__ag.Out($_) } }";

    // The same for a script block with a process block: each task runs the whole block (begin,
    // process, end — as ForEach-Object -Parallel does), with its input piped in so that the
    // process block binds it to $_.
    private const string TaskLoopScriptNamedBlocks = @"param($__ag_body)
& {
    while ($__ag.MoveNext()) {
        $_ = $__ag.Input
        $__ag_args = $__ag.Arguments
        do {
            try {
                if ($__ag.HasInput) { , $_ | & $__ag_body @__ag_args } else { & $__ag_body @__ag_args }
            }
            catch { $__ag.Fail($_) }
        } while ($false)
    }
} | & { process { $__ag.Out($_) } }";

    // The per-task loop for a plain script block in the driver's language mode, the common case:
    // a script cmdlet whose C# loop (RunTasks) runs each task's script block through its command
    // intrinsics, in a new scope and straight into this pipeline's output — the same semantics as
    // '& $__ag_body' above without a pipeline (and its command set-up and logging) per task. The
    // '$__ag_' names mark these lines as the driver's in error positions.
    private const string FastTaskLoopScript = @"param($__ag_body)
& { [CmdletBinding()] param() $__ag_loop = $PSCmdlet; $__ag.RunTasks($__ag_loop) } | & { process { $__ag.Out($_) } }";

    private static readonly List<PSVariable> s_noVariables = new();

    // A task's $input is empty, as it is for '& $__ag_body' (null would give it one $null).
    private static readonly object[] s_noInput = Array.Empty<object>();

    private readonly object _gate = new();
    private readonly WorkerPool _pool;
    private PowerShell? _ps;
    private ScriptBatch? _batch;
    private ScriptBatch? _assigned;
    private AsyncTask? _current;
    private ScriptBlock? _body;
    private ScriptBlock? _loop;
    private ScriptBlock? _plainLoop;
    private ScriptBlock? _namedBlocksLoop;
    private ScriptBlock? _fastLoop;
    private string? _bodyText; // set when the batch runs on the fast loop
    private readonly List<KeyValuePair<StreamKind, object?>> _orphans = new();
    private bool _drained;
    private int _driverFrames;
    private int _loopFrames;
    private SessionState? _session;
    private string? _callLocation; // where the batch's tasks start (a PowerShell path)
    private string? _locationTarget; // the caller's location that _callLocation was set for
    private SessionBaseline? _baseline;
    private SessionBaseline? _itemBaseline;
    private bool _stopping;
    private bool _abandoned;
    private bool _closing;
    private int _returningSignalled;
    private int _disposed;
    private ConcurrencyLimiter? _nestedLimiter;

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
    /// The pool was already told this worker is coming back (its batch was drained while it was
    /// being opened): a later <see cref="SignalReturning"/> must not tell it twice.
    /// </summary>
    internal void MarkAnnounced() => Interlocked.Exchange(ref _returningSignalled, 1);

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

    /// <summary>Stops the driver if it is running <paramref name="task"/>; abandons it after the grace period.</summary>
    internal void Stop(AsyncTask task)
    {
        PowerShell? ps;
        lock (_gate)
        {
            if (!ReferenceEquals(_current, task) || _stopping)
            {
                return;
            }

            _stopping = true;
            ps = _ps;
        }

        // A stopped worker usually comes back to the pool: say so now, so that a call renting
        // meanwhile waits for it (or, if it takes too long, replaces it) instead of adding a
        // runspace beside it. Announced whatever the batch holds now: a stop is most often part of
        // cancelling the whole call, whose queued tasks are removed only after this one is stopped.
        // DriverEnded withdraws the announcement if the worker keeps serving its batch after all.
        SignalReturning();

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
        if (e.RunspaceStateInfo.State is RunspaceState.Closing or RunspaceState.Closed or RunspaceState.Broken)
        {
            lock (_gate)
            {
                _closing = true;
                Monitor.PulseAll(_gate);
            }
        }
    }

    // --- called by the driver, on the worker's pipeline thread -------------------------------

    /// <summary>Waits for the next batch; false when the worker is closing or must restart.</summary>
    internal bool NextBatch(SessionState session)
    {
        ScriptPlan plan;
        lock (_gate)
        {
            while (_assigned is null && !_closing && !_stopping)
            {
                Monitor.Wait(_gate);
            }

            if (_closing || _stopping)
            {
                return false;
            }

            _batch = _assigned;
            _assigned = null;
            plan = _batch!.Plan;
        }

        // The baseline of the worker's initial state is taken by the first call that needs it
        // (a cold worker's first call pays no more than it must): the calls before it left the
        // session alone. Aliases, drives and modules, dearer to record, are added by the first
        // call that may change them, for the same reason.
        if (!plan.LeavesSessionAlone)
        {
            _baseline ??= SessionBaseline.Take(session, withSessionItems: plan.MayChangeSessionState);
            if (plan.MayChangeSessionState)
            {
                _baseline.AddSessionItems(session);
            }
        }

        return true;
    }

    /// <summary>Applies the caller's settings to the batch scope, re-creates the script block; returns the initialization script, if any.</summary>
    internal ScriptBlock? Prepare(SessionState session)
    {
        ScriptPlan plan = _batch!.Plan;
        WorkerSettings settings = plan.Settings;
        _session = session;
        _driverFrames = TaskErrorPosition.FrameCount(Runspace); // below the initialization script
        _loopFrames = 0;
        foreach (var preference in settings.Preferences)
        {
            session.PSVariable.Set(preference.Key, preference.Value);
        }

        foreach (var value in plan.UsingValues)
        {
            session.PSVariable.Set(value.Key, value.Value);
        }

        // Setting the location looks the drive up (on Unix, a read of the mount table): skipped when
        // the worker is still where the previous call with the same location left it.
        string target = settings.ProviderLocation ?? settings.FileSystemLocation;
        if (!string.Equals(target, _locationTarget, StringComparison.Ordinal)
            || !string.Equals(session.Path.CurrentLocation.Path, _callLocation, StringComparison.Ordinal))
        {
            SetLocation(session, settings);
            _locationTarget = target;
            _callLocation = session.Path.CurrentLocation.Path;
        }

        // User code is parsed here, in the worker, under the caller's language mode: a script block
        // remembers the mode it was created in, so a ConstrainedLanguage caller never gets
        // FullLanguage workers, while this driver keeps the mode it needs to talk to us.
        PSLanguageMode driverMode = session.LanguageMode;
        session.LanguageMode = settings.LanguageMode;
        ScriptBlock? init;
        try
        {
            foreach (var function in settings.Functions)
            {
                session.InvokeProvider.Item.Set(@"function:\" + function.Key, ScriptBlock.Create(function.Value));
            }

            _body = ScriptBlock.Create(plan.WorkerText);
            init = settings.InitializationScript is null ? null : ScriptBlock.Create(settings.InitializationScript);
        }
        finally
        {
            session.LanguageMode = driverMode;
        }

        // The loop itself is ours: created in the driver's own mode, like the driver. The fast loop
        // parses the task's text in the driver's mode, so it serves callers in that mode only.
        _bodyText = null;
        if (plan.HasProcessBlock)
        {
            _loop = _namedBlocksLoop ??= ScriptBlock.Create(TaskLoopScriptNamedBlocks);
        }
        else if (settings.LanguageMode == driverMode)
        {
            _bodyText = plan.WorkerText;
            _loop = _fastLoop ??= ScriptBlock.Create(FastTaskLoopScript);
        }
        else
        {
            _loop = _plainLoop ??= ScriptBlock.Create(TaskLoopScript);
        }

        return init;
    }

    /// <summary>
    /// The per-task loop. It runs as PowerShell (<see cref="TaskLoopScript"/>) in a child scope of
    /// the batch scope, one pipeline per batch: each task runs its script block with <c>&amp;</c>
    /// in a fresh scope of its own (with <c>$_</c> defined), so nothing an item defines is seen by
    /// the next one, and its output flows through the loop's sink to the task as it is written:
    /// streamed live, and kept when the task ends early (<c>exit</c>, a stop). <c>exit</c> cannot be
    /// caught by a script, so it ends the loop's pipeline here, where its code is kept, and the
    /// loop is entered again for the next task.
    /// </summary>
    internal void Run()
    {
        _drained = false;
        while (!_drained)
        {
            try
            {
                _loop!.InvokeWithContext((IDictionary?)null, s_noVariables, _body!);
            }
            catch (PipelineStoppedException)
            {
                throw; // the driver is being stopped: DriverEnded settles the task
            }
            catch (Exception) when (_current is null)
            {
                throw; // not a task's doing (the loop itself failed): the driver ends and reports it
            }
            catch (Exception ex) when (IsFlowControl(ex))
            {
                // 'exit' (or a labelled 'break' with no matching loop) ends the task as it would end
                // a script: what it wrote is kept, and the exit code, if any, is recorded.
                if (ExitCodeOf(ex) is { } code)
                {
                    _current?.SetExitCode(code);
                }
            }
            catch (RuntimeException ex)
            {
                Fail(ex.ErrorRecord);
            }
            catch (Exception ex)
            {
                Fail(ErrorHelper.FromException(ex, ErrorIds.TaskFailed, _current));
            }
        }
    }

    /// <summary>
    /// The fast per-task loop (<see cref="FastTaskLoopScript"/>): runs every task of the batch from
    /// C#. Each task's script block runs in a new scope below the loop's, where <c>$_</c> is its
    /// input, and writes into the loop's output pipe, so output streams to the task as it is
    /// written. <c>exit</c>, a stray <c>break</c> or <c>continue</c>, and a terminating error end
    /// the task, not the loop.
    /// </summary>
    internal void RunTasks(PSCmdlet loop)
    {
        string text = _bodyText!;
        CommandInvocationIntrinsics invoke = loop.InvokeCommand;
        PSVariableIntrinsics variables = loop.SessionState.PSVariable;
        while (MoveNext())
        {
            try
            {
                variables.Set("_", CurrentInput);
                invoke.InvokeScript(text, true, PipelineResultTypes.Output, s_noInput, CurrentArguments);
            }
            catch (PipelineStoppedException)
            {
                throw; // the driver is being stopped: DriverEnded settles the task
            }
            catch (Exception ex) when (IsFlowControl(ex))
            {
                if (ExitCodeOf(ex) is { } code)
                {
                    _current?.SetExitCode(code);
                }
            }
            catch (RuntimeException ex)
            {
                Fail(ex.ErrorRecord);
            }
            catch (Exception ex)
            {
                Fail(ErrorHelper.FromException(ex, ErrorIds.TaskFailed, _current));
            }
        }
    }

    /// <summary>The input of the task being run (bound to <c>$_</c>), or null.</summary>
    internal object? CurrentInput => _current is { HasInput: true } task ? InWorker(task.InputObject) : null;

    /// <summary>True when the task being run has a pipeline input.</summary>
    internal bool CurrentHasInput => _current?.HasInput ?? false;

    /// <summary>The arguments of the task being run.</summary>
    internal object?[] CurrentArguments
    {
        get
        {
            object?[] arguments = _current?.Arguments ?? Array.Empty<object?>();
            if (Array.Exists(arguments, a => IsScriptBlock(a)))
            {
                arguments = Array.ConvertAll(arguments, InWorker);
            }

            return arguments;
        }
    }

    private static bool IsScriptBlock(object? value) => (value is PSObject pso ? pso.BaseObject : value) is ScriptBlock;

    /// <summary>
    /// A script block given as pipeline input or in -ArgumentList is bound to the caller's session:
    /// invoked here it would run against the caller's session state on this thread. It is
    /// re-created from its text in the worker instead (in the caller's language mode), as the task's
    /// own script block is; like a $using: value it loses what it was bound to (its closure, its module).
    /// </summary>
    private object? InWorker(object? value)
    {
        if ((value is PSObject pso ? pso.BaseObject : value) is not ScriptBlock block || _session is not { } session)
        {
            return value;
        }

        PSLanguageMode driverMode = session.LanguageMode;
        session.LanguageMode = _batch!.Plan.Settings.LanguageMode;
        try
        {
            return ScriptBlock.Create(block.ToString());
        }
        finally
        {
            session.LanguageMode = driverMode;
        }
    }

    /// <summary>One object the task being run wrote to its output, as it writes it.</summary>
    internal void Out(PSObject? item) => _current?.AddOutput(item!);

    /// <summary>A terminating error of the task being run (caught by the loop).</summary>
    internal void Fail(ErrorRecord record) => FailCurrent(record);

    /// <summary>The batch is drained: the worker goes back to the pool with its driver still running.</summary>
    internal void EndBatch(SessionState session)
    {
        _itemBaseline = null;
        if (_batch?.Plan is not { LeavesSessionAlone: true })
        {
            _baseline?.Restore(session, sessionItems: _batch?.Plan.MayChangeSessionState ?? true);
        }

        ScriptBatch? batch;
        bool stopping;
        lock (_gate)
        {
            batch = _batch;
            _batch = null;
            _body = null;
            _loop = null;
            _session = null;
            stopping = _stopping || _closing;
        }

        batch?.WorkerLeft(this);
        if (!stopping)
        {
            SignalReturning();
            Interlocked.Exchange(ref _returningSignalled, 0);
            _pool.Return(this, reset: false);
        }
    }

    // --- lifetime -------------------------------------------------------------------------------

    /// <summary>Resets a worker whose driver has ended: variables, $Error, location and functions return to the initial state.</summary>
    internal void Reset()
    {
        _locationTarget = null;
        Runspace.ResetRunspaceState();
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

    private static bool IsFlowControl(Exception ex) =>
        ex.GetType().Name is "ExitException" or "BreakException" or "ContinueException" or "ReturnException";

    /// <summary>The code given to 'exit' (read by name: the exception type is not in the reference assemblies).</summary>
    private static int? ExitCodeOf(Exception ex)
    {
        if (ex.GetType().Name != "ExitException")
        {
            return null;
        }

        object? argument = ex.GetType().GetProperty("Argument")?.GetValue(ex);
        return LanguagePrimitives.TryConvertTo(argument, System.Globalization.CultureInfo.InvariantCulture, out int code) ? code : 0;
    }

    private static void SetLocation(SessionState session, WorkerSettings settings)
    {
        if (settings.ProviderLocation is { } providerPath)
        {
            try
            {
                session.Path.SetLocation(providerPath);
                return;
            }
            catch (Exception)
            {
                // A drive that only exists in the caller (New-PSDrive): fall back to the file system.
            }
        }

        try
        {
            session.Path.SetLocation(WildcardPattern.Escape(settings.FileSystemLocation));
        }
        catch (Exception)
        {
            // The caller's directory may have been deleted; the worker keeps its own location.
        }
    }

    private void ResetBetweenItems(SessionState session, WorkerSettings settings)
    {
        if (session.PSVariable.GetValue("Error") is ArrayList errors && errors.Count > 0)
        {
            errors.Clear();
        }

        // Compared as a PowerShell path, the location set for the call: asking for the provider
        // path looks the drive up, which on Unix reads the mount table — that was half of what a
        // trivial item cost.
        if (!string.Equals(session.Path.CurrentLocation.Path, _callLocation, StringComparison.Ordinal))
        {
            SetLocation(session, settings);
            _callLocation = session.Path.CurrentLocation.Path;
            _locationTarget = settings.ProviderLocation ?? settings.FileSystemLocation;
        }
    }

    internal bool MoveNext()
    {
        while (true)
        {
            ScriptBatch batch;
            AsyncTask? finished;
            bool stop;
            lock (_gate)
            {
                finished = _current;
                _current = null;
                stop = _stopping || _batch is null;
                batch = _batch!;
            }

            if (finished is not null)
            {
                finished.RunningOn = null;
                if (!stop)
                {
                    SignalReturningIfLast();
                }

                finished.SetCompleted(); // outside the lock: Core's continuation runs inline
            }

            if (stop)
            {
                _drained = true;
                return false;
            }

            AsyncTask? next = batch.Take();
            if (next is null)
            {
                _drained = true;
                SignalReturning(); // tell renters this worker is about to come back
                return false;
            }

            lock (_gate)
            {
                if (_stopping)
                {
                    batch.Requeue(next);
                    _drained = true;
                    return false;
                }

                _current = next;
                next.RunningOn = this;
            }

            if (next.CancellationToken.IsCancellationRequested || next.IsExecutionDone)
            {
                // Cancelled after it was taken: its queue may be drained (the call timed out), and
                // ending it may let the call return.
                SignalReturningIfLast();
                next.SetCancelled(next.CancellationToken);
                continue;
            }

            DeliverOrphans(next);
            ResetBetweenItems(_session!, batch.Plan.Settings);
            if (batch.Plan.TouchesSharedScopes)
            {
                // After initialization, before the first task: what the call itself defines stays.
                _itemBaseline ??= SessionBaseline.Take(_session!, withSessionItems: true);
                _itemBaseline.Restore(_session!, sessionItems: true);
            }

            if (_loopFrames == 0)
            {
                // Called from the task loop: every frame below a task's own code is the driver's.
                _loopFrames = TaskErrorPosition.FrameCount(Runspace);
            }

            _driverFrames = _loopFrames;
            next.MarkStarted();
            return true;
        }
    }

    private void FailCurrent(ErrorRecord record)
    {
        TaskErrorPosition.Relocate(record, _driverFrames, Runspace);
        AsyncTask? current = _current;
        if (current is null)
        {
            return;
        }

        SignalReturningIfLast();

        // An error raised while the task is being stopped (say, a command whose module was
        // half-loaded when the stop arrived) is the stop's side effect, not a failure.
        if (current.CancellationToken.IsCancellationRequested)
        {
            current.SetCancelled(current.CancellationToken);
            return;
        }

        current.SetFailed(record);
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

    /// <summary>Tells the pool, once, that this worker is on its way back (called from any thread).</summary>
    internal void SignalReturning()
    {
        if (Interlocked.Exchange(ref _returningSignalled, 1) == 0)
        {
            _pool.Returning();
        }
    }

    /// <summary>The worker will not come back after all (it keeps serving its batch, or it is abandoned or closed).</summary>
    private void WithdrawReturning()
    {
        if (Interlocked.Exchange(ref _returningSignalled, 0) == 1)
        {
            _pool.NotReturning();
        }
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
        try
        {
            thread.Start();
        }
        catch (Exception ex)
        {
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

        DriverEnded(ps, error);
    }

    private void HookStreams(PowerShell ps)
    {
        PSDataStreams streams = ps.Streams;
        streams.Error.DataAdded += (s, e) =>
        {
            foreach (ErrorRecord record in ((PSDataCollection<ErrorRecord>)s!).ReadAll())
            {
                TaskErrorPosition.Relocate(record, _driverFrames, Runspace);
                if (_current is { } task)
                {
                    task.AddError(record);
                }
                else
                {
                    KeepForNextTask(StreamKind.Error, record);
                }
            }
        };
        Forward(streams.Warning, StreamKind.Warning);
        Forward(streams.Verbose, StreamKind.Verbose);
        Forward(streams.Debug, StreamKind.Debug);
        Forward(streams.Information, StreamKind.Information);
        Forward(streams.Progress, StreamKind.Progress);
    }

    private void Forward<T>(PSDataCollection<T> collection, StreamKind kind)
    {
        collection.DataAdded += (s, e) =>
        {
            foreach (T record in ((PSDataCollection<T>)s!).ReadAll())
            {
                if (_current is { } task)
                {
                    task.Post(new StreamMessage(kind, record, task));
                }
                else
                {
                    KeepForNextTask(kind, record);
                }
            }
        };
    }

    /// <summary>
    /// A record written while no task runs — by the -InitializationScript, say — belongs to the
    /// call, not to a task: it is delivered with the next task this worker runs (the call's own
    /// cmdlet receives it), rather than dropped.
    /// </summary>
    private void KeepForNextTask(StreamKind kind, object? record)
    {
        lock (_orphans)
        {
            _orphans.Add(new KeyValuePair<StreamKind, object?>(kind, record));
        }
    }

    private void DeliverOrphans(AsyncTask task)
    {
        KeyValuePair<StreamKind, object?>[] orphans;
        lock (_orphans)
        {
            if (_orphans.Count == 0)
            {
                return;
            }

            orphans = _orphans.ToArray();
            _orphans.Clear();
        }

        foreach (var orphan in orphans)
        {
            task.Post(new StreamMessage(orphan.Key, orphan.Value, task));
        }
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
            WithdrawReturning();
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
        SignalReturning();
        Interlocked.Exchange(ref _returningSignalled, 0);
        _pool.Return(this, reset: true);
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
        WithdrawReturning(); // never reused: a call renting now must not wait for it
        batch?.WorkerLeft(this);
    }
}

/// <summary>
/// The object the driver script in a worker runspace talks to. Public only because PowerShell
/// binds methods on public types; not part of the module's API.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class WorkerDriverContext
{
    private readonly Worker _worker;

    internal WorkerDriverContext(Worker worker) => _worker = worker;

    /// <summary>Waits for the next batch; false when the driver should end.</summary>
    public bool NextBatch(SessionState session) => _worker.NextBatch(session);

    /// <summary>Applies the caller's settings to the batch scope; returns the initialization script to dot-source, if any.</summary>
    public ScriptBlock? Prepare(SessionState session) => _worker.Prepare(session);

    /// <summary>Runs tasks until the batch is drained or the driver is stopped.</summary>
    public void Run() => _worker.Run();

    /// <summary>Runs every task of the batch (the fast loop); <paramref name="loop"/> is the loop's script cmdlet.</summary>
    public void RunTasks(PSCmdlet loop) => _worker.RunTasks(loop);

    /// <summary>Finishes the task just run and starts the next one; false when the batch is drained.</summary>
    public bool MoveNext() => _worker.MoveNext();

    /// <summary>The pipeline input of the task being run (its <c>$_</c>), or null.</summary>
    public object? Input => _worker.CurrentInput;

    /// <summary>True when the task being run has pipeline input.</summary>
    public bool HasInput => _worker.CurrentHasInput;

    /// <summary>The arguments of the task being run.</summary>
    public object?[] Arguments => _worker.CurrentArguments;

    /// <summary>Hands one output object to the task being run.</summary>
    public void Out(PSObject? item) => _worker.Out(item);

    /// <summary>Fails the task being run with its terminating error.</summary>
    public void Fail(ErrorRecord record) => _worker.Fail(record);

    /// <summary>Returns the worker to the pool once its batch is drained.</summary>
    public void EndBatch(SessionState session) => _worker.EndBatch(session);
}
