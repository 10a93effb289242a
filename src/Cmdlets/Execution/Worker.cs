using System;
using System.Collections;
using System.Collections.Generic;
using System.ComponentModel;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Threading;
using System.Threading.Tasks;

namespace AsyncGroup.Execution;

/// <summary>
/// One pooled runspace. While it serves a batch it runs one long-lived driver pipeline that takes
/// tasks from the batch, runs each in a fresh child scope, and attributes every output and stream
/// record to the task being run. Cancelling that task stops the driver; it restarts if the batch
/// has more work. A driver that does not stop within <see cref="StopGracePeriod"/> is abandoned:
/// its task is reported Cancelled, its runspace is never reused and is disposed when it ends.
/// </summary>
internal sealed class Worker
{
    /// <summary>How long a cancelled task may take to stop before its runspace is abandoned.</summary>
    internal static readonly TimeSpan StopGracePeriod = TimeSpan.FromSeconds(1);

    // Runs in the worker runspace. The initialization script is dot-sourced here so that its
    // definitions are visible to every task; the per-task loop itself is C# (Worker.Run).
    private const string DriverScript = @"param($__ag)
$__ag_init = $__ag.Prepare($ExecutionContext.SessionState)
if ($null -ne $__ag_init) { . $__ag_init }
$__ag.Run()";

    private readonly object _gate = new();
    private readonly WorkerPool _pool;
    private PowerShell? _ps;
    private ScriptBatch? _batch;
    private AsyncTask? _current;
    private ScriptBlock? _body;
    private bool _stopping;
    private bool _abandoned;
    private bool _returningSignalled;

    internal Worker(WorkerPool pool, Runspace runspace)
    {
        _pool = pool;
        Runspace = runspace;
    }

    internal Runspace Runspace { get; }

    /// <summary>When it last went idle (for the pool's trimming).</summary>
    internal DateTime IdleSince { get; set; } = DateTime.UtcNow;

    /// <summary>Starts (or restarts) the driver for <paramref name="batch"/>.</summary>
    internal void Start(ScriptBatch batch)
    {
        PowerShell ps = PowerShell.Create();
        ps.Runspace = Runspace;
        ps.AddScript(DriverScript, useLocalScope: true).AddArgument(new WorkerDriverContext(this, batch.Plan));
        HookStreams(ps);
        // Task output is returned by InvokeWithContext; anything else the driver writes (say, an
        // initialization script's output) belongs to no task and is dropped.
        var output = new PSDataCollection<PSObject>();
        output.DataAdded += (s, e) => ((PSDataCollection<PSObject>)s!).ReadAll();

        lock (_gate)
        {
            _ps = ps;
            _batch = batch;
            _stopping = false;
        }

        try
        {
            ps.BeginInvoke<PSObject, PSObject>(null, output, null, OnDriverEnded, ps);
        }
        catch (Exception ex)
        {
            DriverEnded(ps, ex);
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

        try
        {
            ps?.BeginStop(null, null);
        }
        catch (ObjectDisposedException)
        {
            // The driver ended meanwhile.
        }

        _ = Task.Delay(StopGracePeriod).ContinueWith(_ => AbandonIfStuck(task), TaskScheduler.Default);
    }

    // --- called by the driver, on the worker's pipeline thread -------------------------------

    /// <summary>Applies the caller's settings to the driver scope, re-creates the script block; returns the initialization script, if any.</summary>
    internal ScriptBlock? Prepare(SessionState session, ScriptPlan plan)
    {
        WorkerSettings settings = plan.Settings;
        foreach (var preference in settings.Preferences)
        {
            session.PSVariable.Set(preference.Key, preference.Value);
        }

        foreach (var value in plan.UsingValues)
        {
            session.PSVariable.Set(value.Key, value.Value);
        }

        SetLocation(session, settings);

        // User code is parsed here, in the worker, under the caller's language mode: a script block
        // remembers the mode it was created in, so a ConstrainedLanguage caller never gets
        // FullLanguage workers, while this driver keeps the mode it needs to talk to us.
        PSLanguageMode driverMode = session.LanguageMode;
        session.LanguageMode = settings.LanguageMode;
        try
        {
            foreach (var function in settings.Functions)
            {
                session.InvokeProvider.Item.Set(@"function:\" + function.Key, ScriptBlock.Create(function.Value));
            }

            _body = ScriptBlock.Create(plan.WorkerText);
            return settings.InitializationScript is null ? null : ScriptBlock.Create(settings.InitializationScript);
        }
        finally
        {
            session.LanguageMode = driverMode;
        }
    }

    /// <summary>
    /// The per-task loop, on the worker's pipeline thread: each task runs the script block in a
    /// fresh child scope of the driver (InvokeWithContext, with <c>$_</c> defined), so nothing an
    /// item defines is seen by the next one, and no pipeline is created per item.
    /// </summary>
    internal void Run(SessionState session, ScriptPlan plan)
    {
        ScriptBlock body = _body!;
        var variables = new List<PSVariable>(1);
        while (MoveNext(session, plan))
        {
            AsyncTask task = _current!;
            variables.Clear();
            if (task.HasInput)
            {
                variables.Add(new PSVariable("_", task.InputObject));
            }

            try
            {
                foreach (PSObject item in body.InvokeWithContext((IDictionary?)null, variables, task.Arguments))
                {
                    task.AddOutput(item);
                }
            }
            catch (PipelineStoppedException)
            {
                throw; // the driver is being stopped: DriverEnded settles the task
            }
            catch (RuntimeException ex)
            {
                Fail(ex.ErrorRecord);
            }
            catch (Exception ex) when (IsFlowControl(ex))
            {
                // 'exit', or 'break'/'continue' outside a loop, ends the task as it would end a script.
            }
            catch (Exception ex)
            {
                Fail(ErrorHelper.FromException(ex, ErrorIds.TaskFailed, task));
            }
        }
    }

    private static bool IsFlowControl(Exception ex) =>
        ex.GetType().Name is "ExitException" or "BreakException" or "ContinueException" or "ReturnException";

    internal AsyncTask? Current => _current;

    internal bool MoveNext(SessionState session, ScriptPlan plan)
    {
        while (true)
        {
            ScriptBatch batch;
            lock (_gate)
            {
                _current?.SetCompleted();
                if (_current is not null)
                {
                    _current.RunningOn = null;
                }

                _current = null;
                if (_stopping || _batch is null)
                {
                    return false;
                }

                batch = _batch;
            }

            AsyncTask? next = batch.Take();
            if (next is null)
            {
                _pool.Returning(); // tell renters this worker is about to come back
                _returningSignalled = true;
                return false;
            }

            lock (_gate)
            {
                if (_stopping)
                {
                    batch.Requeue(next);
                    return false;
                }

                _current = next;
                next.RunningOn = this;
            }

            if (next.Work.IsCancellationRequested || next.IsExecutionDone)
            {
                next.SetCancelled(next.Work.CancellationToken);
                continue;
            }

            ResetBetweenItems(session, plan.Settings);
            next.MarkStarted();
            return true;
        }
    }

    internal void Fail(ErrorRecord record)
    {
        AsyncTask? current = _current;
        if (current is null)
        {
            return;
        }

        // An error raised while the task is being stopped (say, a command whose module was
        // half-loaded when the stop arrived) is the stop's side effect, not a failure.
        if (current.Work.IsCancellationRequested)
        {
            current.SetCancelled(current.Work.CancellationToken);
            return;
        }

        current.SetFailed(record);
    }

    // --- lifetime -------------------------------------------------------------------------------

    internal void Reset()
    {
        // Between calls nothing carries over: variables, $Error, location and functions return
        // to the initial session state. (Between items of one call, each item runs in a fresh
        // child scope and $Error and the location are reset in ResetBetweenItems.)
        Runspace.ResetRunspaceState();
    }

    internal void Dispose()
    {
        try
        {
            Runspace.Dispose();
        }
        catch (Exception)
        {
            // Disposing a broken runspace must not take the caller down.
        }
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

    private static void ResetBetweenItems(SessionState session, WorkerSettings settings)
    {
        if (session.PSVariable.GetValue("Error") is ArrayList errors && errors.Count > 0)
        {
            errors.Clear();
        }

        string expected = settings.ProviderLocation ?? settings.FileSystemLocation;
        PathInfo current = session.Path.CurrentLocation;
        string actual = settings.ProviderLocation is null ? current.ProviderPath : current.Path;
        if (!string.Equals(actual, expected, StringComparison.Ordinal))
        {
            SetLocation(session, settings);
        }
    }

    private void HookStreams(PowerShell ps)
    {
        PSDataStreams streams = ps.Streams;
        streams.Error.DataAdded += (s, e) =>
        {
            foreach (ErrorRecord record in ((PSDataCollection<ErrorRecord>)s!).ReadAll())
            {
                _current?.AddError(record);
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
                _current?.Post(new StreamMessage(kind, record, _current));
            }
        };
    }

    private void OnDriverEnded(IAsyncResult result)
    {
        var ps = (PowerShell)result.AsyncState!;
        Exception? error = null;
        try
        {
            ps.EndInvoke(result);
        }
        catch (Exception ex)
        {
            error = ex;
        }

        DriverEnded(ps, error);
    }

    private void DriverEnded(PowerShell ps, Exception? error)
    {
        AsyncTask? current;
        ScriptBatch? batch;
        bool abandoned;
        lock (_gate)
        {
            current = _current;
            _current = null;
            batch = _batch;
            _batch = null;
            _ps = null;
            abandoned = _abandoned;
        }

        if (current is not null)
        {
            current.RunningOn = null;
            if (!current.IsExecutionDone)
            {
                if (current.Work.IsCancellationRequested)
                {
                    current.SetCancelled(current.Work.CancellationToken);
                }
                else
                {
                    current.SetFailed(error is not null
                        ? ErrorHelper.FromException(error, ErrorIds.WorkerFailed, current)
                        : ErrorHelper.FromException(new InvalidOperationException("The worker stopped before the task finished."), ErrorIds.WorkerFailed, current));
                }
            }
        }
        else if (error is not null && error is not PipelineStoppedException && batch is not null)
        {
            // The driver failed before any task started (e.g. a broken -InitializationScript):
            // the next task of the batch carries the error rather than looping forever.
            AsyncTask? victim = batch.Take();
            victim?.SetFailed(ErrorHelper.FromException(error, ErrorIds.WorkerFailed, victim));
        }

        ps.Dispose();
        if (abandoned)
        {
            Dispose();
            return;
        }

        if (batch is null)
        {
            return;
        }

        if (error is not null && current is not null && batch.HasWork)
        {
            // Stopped for one task's cancellation: keep serving the batch.
            Start(batch);
            return;
        }

        batch.WorkerLeft();
        if (!_returningSignalled)
        {
            _pool.Returning();
        }

        _returningSignalled = false;
        _pool.Return(this);
    }

    private void AbandonIfStuck(AsyncTask task)
    {
        ScriptBatch? batch;
        lock (_gate)
        {
            if (!ReferenceEquals(_current, task) || task.IsExecutionDone)
            {
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
        task.SetCancelled(task.Work.CancellationToken);
        batch?.WorkerLeft();
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
    private readonly ScriptPlan _plan;
    private SessionState? _session;

    internal WorkerDriverContext(Worker worker, ScriptPlan plan)
    {
        _worker = worker;
        _plan = plan;
    }

    /// <summary>Applies the caller's settings to the driver scope; returns the initialization script to dot-source, if any.</summary>
    public ScriptBlock? Prepare(SessionState session)
    {
        _session = session;
        return _worker.Prepare(session, _plan);
    }

    /// <summary>Runs tasks until the batch is drained or the driver is stopped.</summary>
    public void Run() => _worker.Run(_session!, _plan);
}
