using System;
using System.Collections.ObjectModel;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Remoting.Internal;
using System.Management.Automation.Runspaces;
using System.Threading;
using System.Threading.Tasks;
using AsyncGroup.Core;

namespace AsyncGroup.Commands;

/// <summary>
/// <para type="synopsis">Runs a body in which every Start-AsyncTask joins one structured group (asyncio's TaskGroup).</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Start, "TaskGroup")]
[OutputType(typeof(object))]
public sealed class StartTaskGroupCommand : ScriptCmdletBase
{
    // Set when the body must end for a reason of ours: a Write* that threw (rethrown as is after the
    // join) or an inner group's failure (which becomes the body's error).
    private Exception? _bodyFailure;
    private PowerShell? _runningBody;
    // The caller's $ExecutionContext: its SessionState is the scope running at the moment, the one
    // whose preferences a record the body writes was written with.
    private EngineIntrinsics? _engine;

    /// <summary>The body, run in the caller's session; its output is this cmdlet's output.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ScriptBlockArgument]
    [ValidateNotNull]
    public ScriptBlock ScriptBlock { get; set; } = null!;

    /// <summary>The group's name, used in its error message.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Name { get; set; }

    /// <summary>Seconds the whole group may take; on expiry every child is cancelled and a timeout error is thrown.</summary>
    [Parameter]
    [ValidateRange(0.0, 2147483.0)]
    public double Timeout { get; set; }

    /// <summary>How many children may run at once (default: the process-wide [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit).</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int ThrottleLimit { get; set; }

    /// <summary>PowerShell remoting sessions the group's children run on by default (Start-AsyncTask -Session overrides it); the body itself runs here.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public PSSession[]? Session { get; set; }

    internal override PSSession[]? SessionParameter => Session;

    /// <summary>Modules to import into every worker runspace.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public override string[]? ImportModule { get; set; }

    /// <summary>Names of the caller's functions to copy into every worker.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(FunctionNameCompleter))]
    public override string[]? Function { get; set; }

    /// <summary>A script run in each worker before its first task (its definitions are visible to the tasks).</summary>
    [Parameter]
    [ValidateNotNull]
    public override ScriptBlock? InitializationScript { get; set; }

    /// <summary>Bounds how many children run at once: -ThrottleLimit, or the process-wide default.</summary>
    internal ConcurrencyLimiter ChildLimiter { get; private set; } = null!;

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        if (string.IsNullOrWhiteSpace(Execution.ScriptPlan.BodyText(ScriptBlock)))
        {
            ThrowArgumentError("The script block is empty: give the group a body to run.", ScriptBlock);
        }

        _ = Settings; // -Function/-ImportModule problems surface before the body runs; children inherit them
        _engine = GetVariableValue("ExecutionContext") as EngineIntrinsics;

        ChildLimiter = MyInvocation.BoundParameters.ContainsKey(nameof(ThrottleLimit)) ? new ConcurrencyLimiter(ThrottleLimit) : Execution.DefaultThrottle.Current;
        var options = new TaskGroupOptions
        {
            Limiter = ChildLimiter,
            Timeout = BoundSeconds(nameof(Timeout), Timeout),
        };
        var group = new TaskGroup(Name, options, PipelineStopToken);
        Exception? bodyError = RunBody(group);

        // A stop that came from downstream (Select-Object -First) or Ctrl+C still joins the
        // children first: the group never returns with a child running.
        _runningBody = null;
        bool bodyStopped = (bodyError is PipelineStoppedException && !group.Token.IsCancellationRequested)
            || (bodyError is not null && ReferenceEquals(bodyError, _bodyFailure) && bodyError is not TaskGroupException);
        Task join = group.JoinAsync(bodyStopped ? new OperationCanceledException("The task group's body was stopped.", bodyError) : bodyError);
        try
        {
            Await(join);
        }
        catch (TaskGroupException ex)
        {
            GroupScope.Current?.Owner.InnerGroupFailed(ex);
            ThrowTerminatingError(ErrorHelper.GroupFailed(ex, group.Name));
        }
        catch (TimeoutException ex)
        {
            ThrowTerminatingError(ErrorHelper.Timeout(ex, group.Name));
        }
        catch (OperationCanceledException) when (PipelineStopToken.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
        catch (OperationCanceledException ex) when (!bodyStopped)
        {
            ThrowTerminatingError(ErrorHelper.FromException(ex, ErrorIds.TaskCancelled, group.Name));
        }
        catch (OperationCanceledException)
        {
            // Handled below: the body's own stop is rethrown as it came.
        }
        finally
        {
            // Stopped (Ctrl+C): the children were cancelled; wait for them, bounded — but a
            // shielded child, or a child still stopping tasks of its own, is waited for: no task
            // outlives the group.
            bool ended = join.IsCompleted || join.Wait(ShutdownBound);
            while (!ended && group.Tasks.Any(t => !t.IsDone && (t.IsShielded || t.Tag is AsyncTask { HasLiveChildren: true })))
            {
                ended = join.Wait(ShutdownBound);
            }
        }

        if (bodyStopped)
        {
            throw bodyError!;
        }
    }

    /// <summary>
    /// Runs the body as a nested pipeline of the caller's runspace, on this thread, so that the
    /// group can stop it when a child fails while its output and streams flow straight to ours.
    /// Returns what the body threw (null when it ended normally).
    /// </summary>
    private Exception? RunBody(TaskGroup group)
    {
        using PowerShell body = PowerShell.Create(RunspaceMode.CurrentRunspace);
        var gate = new BodyStopGate(body);

        // Warning, verbose, debug and information records of a nested pipeline go to the host
        // directly, past -WarningVariable and redirections: merged into the output, they come
        // back to us as records and are written through this cmdlet. Errors stay separate, so an
        // ErrorRecord the body outputs (Invoke-Gather -ReturnExceptions) stays output.
        // The body first tells the gate it runs: a stop wanted before then skips it.
        body.AddScript(
                "param($__agBody, $__agEnter) " + PreferenceAssignments() + "if ($__agEnter.Invoke()) { return }; & $__agBody 3>&1 4>&1 5>&1 6>&1",
                useLocalScope: true)
            .AddArgument(ScriptBlock)
            .AddArgument(new Func<bool>(gate.Enter));
        var output = new PSDataCollection<PSObject>();
        output.DataAdded += (s, e) => Forward(body, () =>
        {
            foreach (PSObject item in output.ReadAll())
            {
                WriteBodyItem(item);
            }
        });
        ForwardBodyStreams(body);

        using CancellationTokenRegistration stopBody = group.Token.Register(gate.Stop);

        _runningBody = body;
        using (GroupScope.Enter(group, this))
        {
            try
            {
                body.Invoke(null, output);
                if (gate.Skipped)
                {
                    // The deadline (or a child's failure) came before the body began.
                    return new OperationCanceledException("The task group's body was stopped before it started.", group.Token);
                }

                return _bodyFailure;
            }
            catch (Exception) when (_bodyFailure is not null)
            {
                // Our own Write* threw (downstream Select-Object -First, -ErrorAction Stop…):
                // that exception, not the body's stop it caused, is what must surface.
                return _bodyFailure;
            }
            catch (PipelineStoppedException ex) when (group.Token.IsCancellationRequested)
            {
                // We stopped it because a child failed, the deadline passed or the owner stopped.
                return new OperationCanceledException("The task group's body was stopped.", ex, group.Token);
            }
            catch (Exception ex)
            {
                return Unwrap(ex);
            }
        }
    }

    /// <summary>
    /// Stops the body only once it runs. PowerShell.BeginStop on a body not yet invoked races
    /// with Invoke (which then fails with "a command is currently stopping", or runs the body
    /// unstoppably): instead the body's first statement calls <see cref="Enter"/>, and a stop
    /// wanted before that makes the body return at once.
    /// </summary>
    private sealed class BodyStopGate
    {
        private readonly object _lock = new();
        private readonly PowerShell _body;
        private bool _entered;
        private bool _stopWanted;

        internal BodyStopGate(PowerShell body) => _body = body;

        /// <summary>True when the body returned without running because a stop came first.</summary>
        internal bool Skipped { get; private set; }

        /// <summary>Called by the body's first statement; true when it must not run.</summary>
        internal bool Enter()
        {
            lock (_lock)
            {
                _entered = true;
                Skipped = _stopWanted;
                return _stopWanted;
            }
        }

        internal void Stop()
        {
            lock (_lock)
            {
                _stopWanted = true;
                if (!_entered)
                {
                    return;
                }
            }

            try
            {
                _body.BeginStop(null, null);
            }
            catch (ObjectDisposedException)
            {
                // The body already ended.
            }
        }
    }

    /// <summary>
    /// The body's preference variables for the common parameters given to the group, as an
    /// advanced function sets them: they reach everything the body runs, the children included
    /// (which capture their preferences from the body's scope). The rest the body inherits from the
    /// caller's scope. The values are action names, never user text.
    /// </summary>
    private string PreferenceAssignments()
    {
        var text = new System.Text.StringBuilder();
        foreach (var preference in Execution.CallerPreferences.ForCallerSession(this))
        {
            text.Append('$').Append(preference.Key).Append(" = '").Append(preference.Value).Append("'; ");
        }

        return text.ToString();
    }

    /// <summary>A cmdlet's terminating error in the body arrives wrapped; the aggregate keeps the original.</summary>
    private static Exception Unwrap(Exception ex) =>
        ex is CmdletInvocationException or ActionPreferenceStopException
        && ((IContainsErrorRecord)ex).ErrorRecord?.Exception is { } original && !ReferenceEquals(original, ex)
            ? original
            : ex;

    private static void Each<T>(Collection<T> items, Action<T> action)
    {
        foreach (T item in items)
        {
            action(item);
        }
    }

    /// <summary>
    /// Runs a write from the body's handlers. Write* may throw (a downstream command stopped us, or
    /// -ErrorAction Stop); PowerShell would turn that into a plain stop of the nested body, so it is
    /// kept, the body is stopped, and the exception is rethrown once the children are joined.
    /// </summary>
    private void Forward(PowerShell body, Action write)
    {
        if (_bodyFailure is not null)
        {
            return;
        }

        try
        {
            // We are on the pipeline thread: let the children's queued records out first, so
            // they reach the caller whenever the body writes, not only when it ends.
            DrainAvailable();
            write();
        }
        catch (Exception ex)
        {
            _bodyFailure = ex;
            body.BeginStop(null, null);
        }
    }

    private void WriteBodyItem(PSObject item)
    {
        if (item.BaseObject is WarningRecord or VerboseRecord or DebugRecord or InformationRecord)
        {
            WriteBodyRecord(item.BaseObject);
        }
        else
        {
            WriteObject(item);
        }
    }

    /// <summary>
    /// Relays a warning, verbose, debug or information record the body wrote. The body's own
    /// Write-Warning (Write-Verbose…) applies the preference of the scope it runs in, as in a script:
    /// under Inquire it asks the user, and Halt fails the body. Our Write* would read that same
    /// variable (the body's scope is the current one while it writes) and ask a second time, so the
    /// record is then passed on with Inquire taken as Continue, as Receive-Job passes on a job's. An
    /// Inquire that only the group's own common parameters give (-WarningAction Inquire, -Debug: the
    /// body runs with Continue) is still asked here, once. (PowerShell offers that override only
    /// through PSStreamObject, the class Receive-Job and ForEach-Object -Parallel relay records with.)
    /// A prompt the host cannot show fails this record alone, as it would in a script
    /// (<see cref="AsyncGroupCmdlet.WriteMessageOrError"/>): the group goes on.
    /// </summary>
    private void WriteBodyRecord(object record) => WriteMessageOrError(
        () =>
        {
            (PSStreamObjectType type, object payload, string preference) = record switch
            {
                WarningRecord w => (PSStreamObjectType.Warning, (object)w.Message, "WarningPreference"),
                VerboseRecord v => (PSStreamObjectType.Verbose, v.Message, "VerbosePreference"),
                DebugRecord d => (PSStreamObjectType.Debug, d.Message, "DebugPreference"),
                _ => (PSStreamObjectType.Information, record, "InformationPreference"),
            };
            var streamObject = new PSStreamObject(type, payload);
            bool overrideInquire = AskedInBody(preference);
            void Write() => streamObject.WriteStreamObject(this, overrideInquire);
            if (type is PSStreamObjectType.Verbose or PSStreamObjectType.Debug)
            {
                // The body's own -Verbose or -Debug, shown as in a script.
                Execution.CallerPreferences.WriteAskedForRecord(this, debug: type == PSStreamObjectType.Debug, Write);
            }
            else
            {
                Write();
            }
        },
        null);

    /// <summary>
    /// Relays a non-terminating error the body wrote, keeping its own id and position. The body's
    /// command (or, for a statement's error, the script) already applied the preference of the scope
    /// it ran in, asking under Inquire as in a script; our WriteError would ask again (or, where the
    /// body's command did not ask, <c>Write-Error -ErrorAction Continue</c>, ask where a script does
    /// not, and fail the group when the host cannot), so Inquire is then taken as Continue, as for
    /// the other streams. -ErrorAction Inquire given to the group (the body then runs with Continue)
    /// is still asked here, once; -ErrorVariable and -ErrorAction Stop of the group are unchanged. A
    /// prompt here that the host cannot show ends the group, as it ends the Inquire scope in a script.
    /// </summary>
    private void WriteBodyError(ErrorRecord record) =>
        new PSStreamObject(PSStreamObjectType.Error, ErrorHelper.Preserve(record))
            .WriteStreamObject(this, overrideInquire: AskedInBody("ErrorActionPreference"));

    /// <summary>True when <paramref name="preference"/>, in the scope running now (the body's, while it writes), is Inquire: the body's command asked.</summary>
    private bool AskedInBody(string preference)
    {
        object? value = _engine?.SessionState.PSVariable.GetValue(preference);
        if (value is PSObject pso)
        {
            value = pso.BaseObject;
        }

        return value is not null
            && LanguagePrimitives.TryConvertTo(value, out ActionPreference action)
            && action == ActionPreference.Inquire;
    }

    /// <summary>
    /// An inner Start-TaskGroup in this group's body failed. PowerShell makes a cmdlet's terminating
    /// error end only its statement, but a failed inner group must fail this one (as in asyncio):
    /// the body is stopped and the inner aggregate becomes this group's body error.
    /// </summary>
    internal void InnerGroupFailed(TaskGroupException error)
    {
        if (_bodyFailure is null)
        {
            _bodyFailure = error;
            _runningBody?.BeginStop(null, null);
        }
    }

    private void ForwardBodyStreams(PowerShell body)
    {
        PSDataStreams streams = body.Streams;
        streams.Error.DataAdded += (s, e) => Forward(body, () => Each(streams.Error.ReadAll(), WriteBodyError));
        streams.Warning.DataAdded += (s, e) => Forward(body, () => Each(streams.Warning.ReadAll(), WriteBodyRecord));
        streams.Verbose.DataAdded += (s, e) => Forward(body, () => Each(streams.Verbose.ReadAll(), WriteBodyRecord));
        streams.Debug.DataAdded += (s, e) => Forward(body, () => Each(streams.Debug.ReadAll(), WriteBodyRecord));
        streams.Information.DataAdded += (s, e) => Forward(body, () => Each(streams.Information.ReadAll(), WriteBodyRecord));
        streams.Progress.DataAdded += (s, e) => Forward(body, () => Each(streams.Progress.ReadAll(), WriteProgress));
    }
}
