using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Threading;

namespace AsyncGroup.Execution;

/// <summary>
/// Imports AsyncGroup into a worker the first time one of its commands is looked up there: a
/// nested Invoke-Gather, Start-AsyncTask..., Get-Command Invoke-Gather, Get-Command -Module
/// AsyncGroup, Get-Help. Importing the manifest at open cost every new worker 10-25 ms (60 ms for a
/// cold process's first), paid by the many tasks that never nest a call.
/// </summary>
/// <remarks>
/// The module is imported by the path the caller loaded it from, so a task gets the caller's
/// version, as with an import at open. Until then <c>Get-Module</c> in a task does not list it.
/// The hook is PowerShell's PreCommandLookupAction, which runs before every command lookup in the
/// worker: it compares one name against a set and does nothing once the module is in.
/// </remarks>
internal sealed class OwnModuleImport
{
    private const string ModulePrefix = "AsyncGroup\\";

    private static readonly HashSet<string> s_commands = new(
        typeof(OwnModuleImport).Assembly.GetTypes()
            .Where(t => t.IsPublic && !t.IsAbstract && typeof(Cmdlet).IsAssignableFrom(t))
            .SelectMany(t => t.GetCustomAttributes(typeof(CmdletAttribute), false).Cast<CmdletAttribute>())
            .Select(a => a.VerbName + "-" + a.NounName),
        StringComparer.OrdinalIgnoreCase);

    private readonly string _path;
    private int _imported;

    private OwnModuleImport(string path) => _path = path;

    /// <summary>Hooks a newly opened worker runspace (before its driver starts).</summary>
    internal static OwnModuleImport Install(Runspace runspace, string path)
    {
        var import = new OwnModuleImport(path);
        runspace.SessionStateProxy.InvokeCommand.PreCommandLookupAction = import.OnLookup;
        return import;
    }

    /// <summary>
    /// The worker's session was reset (its driver was stopped): import again on the next lookup,
    /// which does nothing if the module is still there.
    /// </summary>
    internal void Forget() => Volatile.Write(ref _imported, 0);

    /// <summary>True when a lookup of <paramref name="name"/> may find one of AsyncGroup's commands.</summary>
    private static bool Names(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return false;
        }

        if (s_commands.Contains(name!) || name!.StartsWith(ModulePrefix, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        if (!WildcardPattern.ContainsWildcardCharacters(name))
        {
            return false;
        }

        var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
        return s_commands.Any(pattern.IsMatch);
    }

    private void OnLookup(object? sender, CommandLookupEventArgs e)
    {
        if (Volatile.Read(ref _imported) != 0 || !Names(e.CommandName))
        {
            return;
        }

        // Set first: the import looks commands up too.
        Volatile.Write(ref _imported, 1);
        try
        {
            // Quiet: the import is the worker's own business, done where the import at open used
            // to be, and a task runs under the top caller's -Verbose, which would otherwise pass
            // on Import-Module's "Loading module from path..." messages to that caller.
            using PowerShell ps = PowerShell.Create(RunspaceMode.CurrentRunspace);
            ps.AddCommand("Microsoft.PowerShell.Core\\Import-Module")
                .AddParameter("Name", _path)
                .AddParameter("Global")
                .AddParameter("Verbose", false)
                .AddParameter("ErrorAction", ActionPreference.Stop)
                .Invoke();
        }
        catch (Exception)
        {
            // The lookup goes on and reports the command as PowerShell would; nothing to add here.
            Volatile.Write(ref _imported, 0);
        }
    }
}
