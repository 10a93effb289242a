using System;
using System.Linq;
using System.Management.Automation;
using System.Threading.Tasks;
using AsyncGroup.Commands;
using AsyncGroup.Execution;

namespace AsyncGroup;

/// <summary>
/// Remove-Module AsyncGroup: stops the session's tasks nobody awaited (with a warning naming them)
/// and releases every worker runspace — idle ones at once, busy ones as soon as their task has
/// stopped (a worker stuck in an uninterruptible call is disposed when that call returns).
/// </summary>
public sealed class ModuleCleanup : IModuleAssemblyCleanup
{
    /// <inheritdoc />
    public void OnRemove(PSModuleInfo psModuleInfo)
    {
        if (Worker.OnThisThread is { } worker)
        {
            // A task removed the module from its worker's runspace (every worker imports it): that
            // concerns that runspace alone, not the process's pools and tasks. The worker no longer
            // has the cmdlets every task may use, so it is not reused after this call.
            worker.Retire();
            return;
        }

        AsyncTask[] left = TaskRegistry.Snapshot(AsyncGroupCmdlet.CurrentRunspaceId).Where(t => !t.IsDone).ToArray();
        foreach (AsyncTask task in left)
        {
            task.Cancel();
        }

        // Closing the pools first: every worker that comes back from now on is disposed.
        WorkerPool.CloseAll();
        if (left.Length == 0)
        {
            return;
        }

        bool stopped = Task.WhenAll(left.Select(t => t.Work.Completion)).Wait(AsyncGroupCmdlet.ShutdownBound);
        string names = string.Join(", ", left.Select(t => $"'{t.Name}'"));
        WriteWarning(
            $"Removing the AsyncGroup module stopped {left.Length} unfinished task(s) that were never awaited: {names}."
            + (stopped ? string.Empty : " Some did not stop in time; their runspaces are disposed when they end."));
    }

    /// <summary>Writes through the session's Write-Warning (honours $WarningPreference and reaches the caller's warning stream).</summary>
    private static void WriteWarning(string message)
    {
        try
        {
            ScriptBlock.Create("param($m) Microsoft.PowerShell.Utility\\Write-Warning -Message $m").Invoke(message);
        }
        catch (Exception)
        {
            // No session to write to (the module is removed while its runspace closes): nothing to say it to.
        }
    }
}
