using System;
using System.Collections.Generic;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using AsyncGroup.Execution;

namespace AsyncGroup.Commands;

/// <summary>
/// Base of the cmdlets that run script blocks in workers: the parameters they share and the one
/// way to turn a script block into worker work.
/// </summary>
public abstract class ScriptCmdletBase : AsyncGroupCmdlet
{
    private WorkerSettings? _settings;

    // -ImportModule, -Function and -InitializationScript are declared by each cmdlet, so that a
    // cmdlet offers them only in the parameter sets where they configure new workers
    // (Invoke-Gather -Task starts none).

    /// <summary>Modules to import into every worker runspace.</summary>
    public abstract string[]? ImportModule { get; set; }

    /// <summary>Names of the caller's functions to copy into every worker.</summary>
    public abstract string[]? Function { get; set; }

    /// <summary>A script run in each worker before its first task (its definitions are visible to the tasks).</summary>
    public abstract ScriptBlock? InitializationScript { get; set; }

    /// <summary>The -Session value of this cmdlet, if it has one (null: local workers).</summary>
    internal virtual PSSession[]? SessionParameter => null;

    /// <summary>The remoting sessions this call's tasks run on: -Session, or inside Start-TaskGroup the group's; null to run locally.</summary>
    internal PSSession[]? RemoteSessions => SessionParameter ?? (this is StartTaskGroupCommand ? null : GroupScope.Current?.Owner.SessionParameter);

    /// <summary>The session settings every worker of this call gets, captured once.</summary>
    internal WorkerSettings Settings => _settings ??= CaptureSettings();

    /// <summary>Turns a script block into a batch served by at most <paramref name="maxWorkers"/> workers.</summary>
    /// <remarks>With <paramref name="sessions"/>, the batch's workers run its tasks on those remoting sessions.</remarks>
    internal ScriptBatch CreateBatch(ScriptBlock scriptBlock, int maxWorkers, IReadOnlyList<PSSession>? sessions = null)
    {
        ScriptPlan plan;
        try
        {
            plan = ScriptPlan.Create(this, scriptBlock, Settings);
        }
        catch (UsingScriptBlockException ex)
        {
            ThrowTerminatingError(new ErrorRecord(ex, ErrorIds.UsingScriptBlock, ErrorCategory.InvalidArgument, scriptBlock));
            throw; // not reached
        }
        catch (ArgumentException ex)
        {
            ThrowArgumentError(ex.Message, scriptBlock, ex);
            throw; // not reached
        }

        var batch = new ScriptBatch(plan, maxWorkers, sessions is null ? null : new RemoteTarget(sessions, RemoteModules()));
        TrackBatch(batch);
        return batch;
    }

    private IReadOnlyList<string> RemoteModules()
    {
        StartTaskGroupCommand? group = this is StartTaskGroupCommand ? null : GroupScope.Current?.Owner;
        return ImportModule ?? group?.ImportModule ?? Array.Empty<string>();
    }

    private WorkerSettings CaptureSettings()
    {
        // Inside Start-TaskGroup, what the group was given is the default for what runs in it.
        StartTaskGroupCommand? group = this is StartTaskGroupCommand ? null : GroupScope.Current?.Owner;
        try
        {
            // Remote tasks import -ImportModule on the remote computer: it is not looked for here.
            return WorkerSettings.Capture(
                this,
                Function ?? group?.Function,
                RemoteSessions is null ? ImportModule ?? group?.ImportModule : null,
                InitializationScript ?? group?.InitializationScript);
        }
        catch (ArgumentException ex)
        {
            ThrowArgumentError(ex.Message, Function, ex);
            throw; // not reached
        }
    }
}
