using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Threading;

namespace AsyncGroup.Execution;

/// <summary>
/// Gives a worker PowerShell's default format data the first time a command that formats is
/// looked up there (Out-String, Out-File, Format-Table, Tee-Object...). Loaded at open, the
/// default views were about half of a worker's managed memory (some 480 KB of 1 MB) and a third of
/// its open time (8 of 23 ms), paid by every worker although few tasks format anything: a task's
/// output goes back to the caller as objects, and the caller formats them with its own views.
/// </summary>
/// <remarks>
/// <para>The pool's session state is built without the default format entries
/// (<see cref="Split"/>). On the first formatting command the hook puts them back in the worker's
/// own session state, ahead of any a module added meanwhile (the order an import at open would
/// have given), and rebuilds the worker's format data with <c>Update-FormatData</c>; the command
/// then runs as it would in any session. Modules with format files import as usual before and
/// after.</para>
/// <para>The hook is PowerShell's PostCommandLookupAction, which sees the command a name resolved
/// to, aliases included, and removes itself once the views are in. Commands looked up for later
/// use (<c>Get-Command Out-String</c>) count as well, since the lookup is the only sign of use
/// PowerShell offers.</para>
/// </remarks>
internal sealed class DeferredFormatData
{
    // The built-in commands that read the session's format data, and Get-Command, whose result
    // may be one of them invoked later without another lookup. Tee-Object writes its file through
    // Out-File without looking it up.
    private static readonly HashSet<string> s_formattingCommands = new(StringComparer.OrdinalIgnoreCase)
    {
        "Out-String", "Out-File", "Out-Host", "Out-Default", "Out-Printer", "Out-GridView", "Tee-Object",
        "Format-Table", "Format-List", "Format-Wide", "Format-Custom",
        "Get-FormatData", "Export-FormatData", "Update-FormatData", "Get-Command",
    };

    private readonly Runspace _runspace;
    private readonly CommandInvocationIntrinsics _commands;
    private readonly SessionStateFormatEntry[] _defaults;
    private int _loaded;

    private DeferredFormatData(Runspace runspace, SessionStateFormatEntry[] defaults)
    {
        _runspace = runspace;
        _defaults = defaults;

        // Taken now: the runspace's SessionStateProxy refuses to be used while a command runs.
        _commands = runspace.SessionStateProxy.InvokeCommand;
    }

    /// <summary>
    /// Takes the format entries out of a session state that runspaces will be created from, and
    /// returns them, to be given back to each worker by <see cref="Install"/>.
    /// </summary>
    internal static SessionStateFormatEntry[] Split(InitialSessionState sessionState)
    {
        SessionStateFormatEntry[] defaults = sessionState.Formats.ToArray();
        sessionState.Formats.Clear();
        return defaults;
    }

    /// <summary>Hooks a newly opened worker runspace (before its driver starts).</summary>
    internal static void Install(Runspace runspace, SessionStateFormatEntry[] defaults)
    {
        if (defaults.Length == 0)
        {
            return;
        }

        var hook = new DeferredFormatData(runspace, defaults);
        hook._commands.PostCommandLookupAction = (EventHandler<CommandLookupEventArgs>)Delegate.Combine(
            hook._commands.PostCommandLookupAction, new EventHandler<CommandLookupEventArgs>(hook.OnLookup));
    }

    /// <summary>True when <paramref name="command"/> is (or is an alias of) a command that formats.</summary>
    internal static bool Formats(CommandInfo? command)
    {
        if (command is AliasInfo alias)
        {
            command = alias.ResolvedCommand;
        }

        // A function of the same name (a proxy) calls the cmdlet, which is looked up in its turn.
        return command is CmdletInfo cmdlet && s_formattingCommands.Contains(cmdlet.Name);
    }

    private void OnLookup(object? sender, CommandLookupEventArgs e)
    {
        if (Volatile.Read(ref _loaded) != 0 || !Formats(e.Command))
        {
            return;
        }

        // Set first: Update-FormatData is looked up too.
        Volatile.Write(ref _loaded, 1);
        try
        {
            _commands.PostCommandLookupAction = (EventHandler<CommandLookupEventArgs>?)Delegate.Remove(
                _commands.PostCommandLookupAction, new EventHandler<CommandLookupEventArgs>(OnLookup));
            InitialSessionStateEntryCollection<SessionStateFormatEntry> formats = _runspace.InitialSessionState.Formats;
            SessionStateFormatEntry[] added = formats.ToArray();
            formats.Clear();
            foreach (SessionStateFormatEntry entry in _defaults)
            {
                formats.Add((SessionStateFormatEntry)entry.Clone());
            }

            foreach (SessionStateFormatEntry entry in added)
            {
                formats.Add(entry);
            }

            using PowerShell ps = PowerShell.Create(RunspaceMode.CurrentRunspace);
            ps.AddCommand("Microsoft.PowerShell.Utility\\Update-FormatData")
                .AddParameter("Verbose", false)
                .AddParameter("WhatIf", false)
                .AddParameter("Confirm", false)
                .AddParameter("ErrorAction", ActionPreference.Stop)
                .Invoke();
        }
        catch (Exception)
        {
            // The command goes on with the views the worker has.
        }
    }
}
