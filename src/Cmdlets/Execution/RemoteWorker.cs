using System;
using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Management.Automation.Remoting;
using System.Management.Automation.Runspaces;
using System.Threading;
using System.Threading.Tasks;

namespace AsyncGroup.Execution;

/// <summary>
/// The remote kind of worker: it serves a batch the way a local <see cref="Worker"/> does — takes
/// its tasks from the batch's queue until the batch is drained — but runs each task as one
/// pipeline on a leased PowerShell remoting session (<see cref="RemoteTarget"/>).
/// </summary>
/// <remarks>
/// Guarantees: every task it takes reaches a final state; output and stream records reach the task
/// live, output tagged with <c>PSComputerName</c>; a session that is unusable, breaks or drops
/// fails only the task it runs, with a ConnectionError naming the host; a cancelled task stops its
/// remote pipeline, and a pipeline that does not stop within <see cref="StopGracePeriod"/> is
/// abandoned (the task is Cancelled, the session stays leased until the pipeline ends). Sessions
/// are never opened or closed here: they belong to the caller.
/// </remarks>
internal sealed class RemoteWorker
{
    /// <summary>How long a cancelled remote pipeline may take to stop (a round trip) before it is abandoned.</summary>
    internal static readonly TimeSpan StopGracePeriod = Worker.StopGracePeriod + TimeSpan.FromSeconds(0.5);

    private readonly object _gate = new();
    private readonly ScriptBatch _batch;
    private readonly RemoteTarget _target;
    private AsyncTask? _current;
    private PowerShell? _ps;
    private AsyncTask? _stopping;
    private int _left;

    private RemoteWorker(ScriptBatch batch, RemoteTarget target)
    {
        _batch = batch;
        _target = target;
    }

    /// <summary>Starts a worker for <paramref name="batch"/> on a thread of its own (remote calls block).</summary>
    internal static void Start(ScriptBatch batch, RemoteTarget target)
    {
        var worker = new RemoteWorker(batch, target);
        _ = Task.Factory.StartNew(worker.Serve, CancellationToken.None, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default);
    }

    /// <summary>Stops the remote pipeline if it runs <paramref name="task"/>; abandons it after the grace period.</summary>
    internal void Stop(AsyncTask task)
    {
        PowerShell? ps;
        lock (_gate)
        {
            if (!ReferenceEquals(_current, task) || ReferenceEquals(_stopping, task))
            {
                return;
            }

            _stopping = task;
            ps = _ps;
        }

        // Armed first, and the stop sent from the thread pool: this runs in a cancellation callback,
        // on whatever thread cancelled (the pipeline thread, another task's worker finishing Core's
        // bookkeeping), and sending a stop over a remoting transport may block on its writes.
        _ = Task.Delay(StopGracePeriod).ContinueWith(_ => AbandonIfStuck(task), TaskScheduler.Default);
        SendStop(ps);
    }

    private void Serve()
    {
        try
        {
            while (Volatile.Read(ref _left) == 0)
            {
                AsyncTask? task = _batch.Take();
                if (task is null)
                {
                    break;
                }

                if (task.CancellationToken.IsCancellationRequested || task.IsExecutionDone)
                {
                    task.SetCancelled(task.CancellationToken);
                    continue;
                }

                try
                {
                    RunOn(task);
                }
                catch (Exception ex)
                {
                    // Not the script's doing (setting up the pipeline failed): the task it took
                    // must still end, or its caller waits for ever.
                    if (!task.IsExecutionDone)
                    {
                        task.SetFailed(ErrorHelper.FromException(
                            new InvalidOperationException($"{Label(task, capital: true)} could not be run on a remote session: {ex.Message}", ex), ErrorIds.WorkerFailed, task));
                    }
                }
            }
        }
        catch (Exception ex)
        {
            // Not a task's doing: fail what is queued rather than leave it waiting for ever.
            _batch.FailQueued(ex);
        }
        finally
        {
            Leave();
        }
    }

    private void RunOn(AsyncTask task)
    {
        SessionLease? lease;
        try
        {
            lease = _target.Acquire(task.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            task.SetCancelled(task.CancellationToken);
            return;
        }

        if (lease is null)
        {
            task.SetFailed(SessionError(
                $"None of the sessions ({_target.HostNames}) can run {Label(task)}: each is closed, broken or disconnected.",
                null,
                task));
            return;
        }

        using (lease)
        {
            Run(task, lease.Session);
        }
    }

    /// <summary>
    /// Sends a stop to <paramref name="ps"/> from the thread pool: the caller may be a cancellation
    /// callback or a state-change event, and a stop over a remoting transport may block on its writes.
    /// </summary>
    private static void SendStop(PowerShell? ps) =>
        _ = Task.Run(() =>
        {
            try
            {
                ps?.BeginStop(null, null);
            }
            catch (Exception)
            {
                // The pipeline ended (or was disposed) meanwhile, or the session broke: the run settles the task.
            }
        });

    private void Run(AsyncTask task, PSSession session)
    {
        string host = session.ComputerName;
        using PowerShell ps = PowerShell.Create();
        ps.Runspace = session.Runspace;
        ps.AddScript(RemoteScript.Text, useLocalScope: true).AddArgument(RemoteScript.Arguments(_batch.Plan, task, _target));
        HookStreams(ps, task);
        var output = new PSDataCollection<PSObject>();
        output.DataAdded += (s, e) =>
        {
            foreach (PSObject item in ((PSDataCollection<PSObject>)s!).ReadAll())
            {
                if (item is not null && item.Properties["PSComputerName"] is null)
                {
                    item.Properties.Add(new PSNoteProperty("PSComputerName", host));
                }

                task.AddOutput(item!);
            }
        };

        // A stop sent while the pipeline was not running yet (Stop runs on any thread, the moment the
        // task is cancelled) had nothing to stop: it is sent again once the pipeline runs.
        ps.InvocationStateChanged += (_, e) =>
        {
            if (e.InvocationStateInfo.State == PSInvocationState.Running && task.CancellationToken.IsCancellationRequested)
            {
                SendStop(ps);
            }
        };

        lock (_gate)
        {
            _current = task;
            _ps = ps;
        }

        task.ComputerName = host;
        task.RunningRemotely = this;
        Exception? error = null;
        if (task.CancellationToken.IsCancellationRequested)
        {
            error = new PipelineStoppedException(); // cancelled between the take and now
        }
        else
        {
            task.MarkStarted();
            try
            {
                ps.Invoke<object, PSObject>(null, output, new PSInvocationSettings { Host = new TaskHost(task) });
            }
            catch (Exception ex)
            {
                error = ex;
            }
        }

        lock (_gate)
        {
            _current = null;
            _ps = null;
        }

        task.RunningRemotely = null;
        Settle(task, ps, session, error);
    }

    private static void Settle(AsyncTask task, PowerShell ps, PSSession session, Exception? error)
    {
        if (task.IsExecutionDone)
        {
            return; // abandoned
        }

        if (task.CancellationToken.IsCancellationRequested)
        {
            task.SetCancelled(task.CancellationToken);
            return;
        }

        PSInvocationStateInfo state = ps.InvocationStateInfo;
        if (error is null && state.State == PSInvocationState.Failed)
        {
            error = state.Reason;
        }

        bool broken = !RemoteTarget.IsUsable(session);
        if (error is null && state.State == PSInvocationState.Stopped)
        {
            error = new PipelineStoppedException();
        }

        if (error is null && !broken)
        {
            task.SetCompleted();
            return;
        }

        if (broken || error is PSRemotingTransportException or PSRemotingDataStructureException or PipelineStoppedException or null)
        {
            if (broken || error is PSRemotingTransportException or PSRemotingDataStructureException)
            {
                RemoteTarget.MarkFailed(session); // before the lease is released
            }

            string reason = error?.Message is { Length: > 0 } message ? " " + message : string.Empty;
            task.SetFailed(SessionError(
                string.Format(
                    CultureInfo.InvariantCulture,
                    "The session to '{0}' failed while it ran {1} (session state: {2}).{3}",
                    session.ComputerName,
                    Label(task),
                    session.Runspace?.RunspaceStateInfo.State.ToString() ?? "none",
                    reason),
                error,
                task));
            return;
        }

        task.SetFailed(error is RuntimeException { ErrorRecord: { } record }
            ? record
            : ErrorHelper.FromException(error, ErrorIds.TaskFailed, task));
    }

    /// <summary>
    /// "task 'Task-7'" for messages. A worker may take a task a moment before the cmdlet that
    /// created it has bound its Core task (which holds the name): reading Name then would throw, and
    /// the task would never end.
    /// </summary>
    private static string Label(AsyncTask task, bool capital = false) =>
        task.NameIfBound is { } name ? (capital ? "Task '" : "task '") + name + "'" : (capital ? "A task" : "a task");

    /// <summary>A session problem: category ConnectionError, the host named in the message.</summary>
    private static ErrorRecord SessionError(string message, Exception? inner, AsyncTask task) =>
        new(new PSRemotingTransportException(message, inner), ErrorIds.SessionFailed, ErrorCategory.ConnectionError, task);

    private static void HookStreams(PowerShell ps, AsyncTask task)
    {
        PSDataStreams streams = ps.Streams;
        streams.Error.DataAdded += (s, e) =>
        {
            foreach (ErrorRecord record in ((PSDataCollection<ErrorRecord>)s!).ReadAll())
            {
                task.AddError(record);
            }
        };
        Forward(streams.Warning, StreamKind.Warning, task);
        Forward(streams.Verbose, StreamKind.Verbose, task);
        Forward(streams.Debug, StreamKind.Debug, task);
        Forward(streams.Information, StreamKind.Information, task);
        Forward(streams.Progress, StreamKind.Progress, task);
    }

    private static void Forward<T>(PSDataCollection<T> collection, StreamKind kind, AsyncTask task)
    {
        collection.DataAdded += (s, e) =>
        {
            foreach (T record in ((PSDataCollection<T>)s!).ReadAll())
            {
                task.Post(new StreamMessage(kind, record, task));
            }
        };
    }

    private void AbandonIfStuck(AsyncTask task)
    {
        lock (_gate)
        {
            if (!ReferenceEquals(_current, task) || task.IsExecutionDone)
            {
                return;
            }
        }

        task.Post(new StreamMessage(StreamKind.Warning,
            $"{Label(task, capital: true)} on '{task.ComputerName}' did not stop within {StopGracePeriod.TotalSeconds:0.#} s of being cancelled; its remote pipeline was abandoned and the session is used again once that pipeline ends.",
            task));
        task.SetCancelled(task.CancellationToken);

        // The batch may start another worker in this one's place; this one leaves once its pipeline ends.
        Leave();
    }

    private void Leave()
    {
        if (Interlocked.Exchange(ref _left, 1) == 0)
        {
            _batch.RemoteWorkerLeft();
        }
    }

    /// <summary>
    /// The host a remote task's pipeline sees: its UI writes nothing (records arrive as stream data,
    /// never also on the caller's console through the session's host) and reads nothing; its
    /// SetShouldExit records the code a task gave to <c>exit</c>.
    /// </summary>
    private sealed class TaskHost : PSHost
    {
        private readonly Guid _id = Guid.NewGuid();
        private readonly AsyncTask _task;
        private readonly SilentUI _ui = new();

        public TaskHost(AsyncTask task) => _task = task;

        public override string Name => "AsyncGroupRemoteTask";

        public override Version Version => new(1, 0);

        public override Guid InstanceId => _id;

        public override PSHostUserInterface UI => _ui;

        public override CultureInfo CurrentCulture => CultureInfo.CurrentCulture;

        public override CultureInfo CurrentUICulture => CultureInfo.CurrentUICulture;

        public override void SetShouldExit(int exitCode) => _task.SetExitCode(exitCode);

        public override void EnterNestedPrompt() => throw new NotSupportedException();

        public override void ExitNestedPrompt() => throw new NotSupportedException();

        public override void NotifyBeginApplication()
        {
        }

        public override void NotifyEndApplication()
        {
        }
    }

    private sealed class SilentUI : PSHostUserInterface
    {
        private const string NoInput = "A task running on a remote session cannot read from the host.";

        public override PSHostRawUserInterface? RawUI => null;

        public override string ReadLine() => throw new PSNotSupportedException(NoInput);

        public override System.Security.SecureString ReadLineAsSecureString() => throw new PSNotSupportedException(NoInput);

        public override void Write(string value)
        {
        }

        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value)
        {
        }

        public override void WriteLine(string value)
        {
        }

        public override void WriteErrorLine(string value)
        {
        }

        public override void WriteDebugLine(string message)
        {
        }

        public override void WriteProgress(long sourceId, ProgressRecord record)
        {
        }

        public override void WriteVerboseLine(string message)
        {
        }

        public override void WriteWarningLine(string message)
        {
        }

        public override System.Collections.Generic.Dictionary<string, PSObject> Prompt(string caption, string message, System.Collections.ObjectModel.Collection<FieldDescription> descriptions) =>
            throw new PSNotSupportedException(NoInput);

        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) =>
            throw new PSNotSupportedException(NoInput);

        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName, PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options) =>
            throw new PSNotSupportedException(NoInput);

        public override int PromptForChoice(string caption, string message, System.Collections.ObjectModel.Collection<ChoiceDescription> choices, int defaultChoice) =>
            throw new PSNotSupportedException(NoInput);
    }
}
