using System;
using System.Collections.Generic;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using AsyncGroup.Core;
using AsyncGroup.Execution;

namespace AsyncGroup.Commands;

/// <summary>
/// <para type="synopsis">Starts a script block as a named task in a worker runspace (asyncio's create_task).</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Start, "AsyncTask")]
[OutputType(typeof(AsyncTask))]
public sealed class StartAsyncTaskCommand : ScriptCmdletBase
{
    private ScriptBatch? _batch;
    private ConcurrencyLimiter? _limiter;
    private GroupScope? _scope;

    /// <summary>The script block to run; <c>$_</c> is -InputObject, <c>$args</c> is -ArgumentList.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ScriptBlockArgument]
    [ValidateNotNull]
    public ScriptBlock ScriptBlock { get; set; } = null!;

    /// <summary>Arguments passed to the script block.</summary>
    [Parameter]
    [Alias("Args")]
    public object[]? ArgumentList { get; set; }

    /// <summary>Bound to <c>$_</c>; one task per pipeline object.</summary>
    [Parameter(ValueFromPipeline = true)]
    public PSObject? InputObject { get; set; }

    /// <summary>The task's name (default <c>Task-&lt;Id&gt;</c>).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Name { get; set; }

    /// <summary>Seconds the task may run; on expiry it is cancelled and fails with a timeout error.</summary>
    [Parameter]
    [ValidateRange(0.0, 2147483.0)]
    public double Timeout { get; set; }

    /// <summary>Cancellation from above (the task group, the task that started it, an outer stop) does not reach the task; its owner waits for it instead (asyncio's shield).</summary>
    [Parameter]
    public SwitchParameter Shield { get; set; }

    /// <summary>How many of the tasks this call starts may run at once (default: the process-wide [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit, shared by every call that gives none). Inside Start-TaskGroup the group's limit applies.</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int ThrottleLimit { get; set; }

    /// <summary>Runs the task on one of these PowerShell remoting sessions (the first free one) instead of a local worker; inside Start-TaskGroup the group's sessions are the default.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public PSSession[]? Session { get; set; }

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

    internal override PSSession[]? SessionParameter => Session;

    /// <summary>
    /// Test seam, null in use: the Pester suite sets it (by reflection) to run on the creating
    /// thread right after a task's work has been started — from then on its script block may run —
    /// so a test can hold that thread there and check what the running task can already see.
    /// </summary>
    internal static Action<AsyncTask>? AfterStart { get; set; }

    /// <inheritdoc />
    protected override void BeginProcessing()
    {
        _scope = GroupScope.Current;
        bool throttled = MyInvocation.BoundParameters.ContainsKey(nameof(ThrottleLimit));
        if (_scope is null)
        {
            // Without -ThrottleLimit, the process-wide default bound: tasks beyond it wait in order.
            _limiter = throttled ? new ConcurrencyLimiter(ThrottleLimit) : DefaultThrottle.Current;
        }

        // The batch never needs more workers than tasks can run at once.
        int maxWorkers = _limiter?.MaxConcurrency ?? (throttled ? ThrottleLimit : _scope!.Owner.ChildLimiter.MaxConcurrency);
        PSSession[]? sessions = RemoteSessions;
        _batch = sessions is null ? CreateBatch(ScriptBlock, maxWorkers) : CreateBatch(ScriptBlock, Math.Min(maxWorkers, sessions.Length), sessions);
    }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        bool hasInput = MyInvocation.BoundParameters.ContainsKey(nameof(InputObject));
        var task = new AsyncTask(_batch!, hasInput ? InputObject : null, hasInput, ArgumentList ?? Array.Empty<object>(), CurrentRunspaceId);
        TimeSpan? timeout = BoundSeconds(nameof(Timeout), Timeout);

        // Started by a task's script block (inside a group or not): that task is its parent.
        AsyncTask? parent = Worker.OnThisThread?.Current;
        bool enlisted = false;
        WorkTask<IReadOnlyList<PSObject>> work;
        try
        {
            if (_scope is not null)
            {
                IStreamSink groupSink = _scope.Owner.Sink;
                work = _scope.Group.StartHandOff<IReadOnlyList<PSObject>>(AsyncTask.HandOffWork, Name, shielded: Shield.IsPresent, timeout: timeout, tag: task, beforeStart: w =>
                {
                    enlisted = true;
                    Enlist(task, w, parent);

                    // The group's cmdlet delivers its children's streams while it waits for them.
                    task.AttachSink(groupSink);
                });
            }
            else
            {
                // Owned by the task that started it, if any: its cancellation reaches this one,
                // and it is cancelled when that task ends without awaiting it.
                work = new WorkTask<IReadOnlyList<PSObject>>(AsyncTask.HandOffWork, Name, new TaskStartOptions
                {
                    Limiter = _limiter,
                    Timeout = timeout,
                    Tag = task,
                    DeferTimeout = true,
                    CancellationToken = parent?.CancellationToken ?? default,
                    Shielded = Shield.IsPresent,
                });
                enlisted = true;
                Enlist(task, work, parent);
                parent?.Adopt(task);
                work.Start();
            }
        }
        catch (Exception) when (enlisted)
        {
            Withdraw(task);
            throw;
        }
        catch (InvalidOperationException ex) when (_scope is not null)
        {
            // The group refused the task before creating it: nothing was listed.
            ThrowTerminatingError(new ErrorRecord(ex, ErrorIds.GroupClosed, ErrorCategory.InvalidOperation, ScriptBlock));
            return;
        }

        AfterStart?.Invoke(task);
        WriteObject(task);
    }

    /// <summary>
    /// Makes <paramref name="task"/> known before its work can run: its parent, its Core task, and
    /// the lists Get-AsyncTask reads. Once it runs it may signal other threads, and whoever they
    /// tell must already find it (with its Parent) there.
    /// </summary>
    private static void Enlist(AsyncTask task, WorkTask<IReadOnlyList<PSObject>> work, AsyncTask? parent)
    {
        task.SetParent(parent);
        task.Bind(work);
        TaskRegistry.Add(task);
    }

    /// <summary>
    /// Undoes <see cref="Enlist"/> for a task whose start failed: it ends Cancelled without having
    /// run (which also releases its parent's count and its batch) and is listed nowhere.
    /// </summary>
    private static void Withdraw(AsyncTask task)
    {
        task.Cancel();
        TaskRegistry.Remove(task);
    }
}
