using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;

namespace AsyncGroup.Execution;

/// <summary>
/// What a worker's session looked like before a call (or an item) ran, and the way back to it:
/// the clean-reuse rule. Variables and functions that were not there are removed, global
/// variables that were reassigned or whose dictionary was changed in place
/// (<c>$PSDefaultParameterValues</c>) get their values back, and — when the code may have changed
/// them — aliases and PSDrives are put back and modules imported meanwhile are removed.
/// </summary>
/// <remarks>Runs on the worker's pipeline thread only. Best effort: what cannot be restored (a
/// constant, a module that refuses removal) is left, and the next call's own scope is still fresh.</remarks>
internal sealed class SessionBaseline
{
    // Variables the engine sets itself, or that belong to the driver: never worth restoring or removing.
    private static readonly HashSet<string> s_engineVariables = new(StringComparer.OrdinalIgnoreCase)
    {
        "?", "_", "PSItem", "args", "input", "this", "MyInvocation", "PSCmdlet", "PSBoundParameters",
        "LASTEXITCODE", "Matches", "__ag", "__ag_init", "__ag_body", "__ag_args", "__ag_loop", "foreach", "switch",
        "PSScriptRoot", "PSCommandPath", "Error", "StackTrace", "PWD", "ExecutionContext", "Host", "PID",
        "NestedPromptLevel", "null", "true", "false",
    };

    private readonly HashSet<string> _variables;
    private readonly HashSet<string> _functions;
    private readonly Dictionary<string, object?> _globalValues = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, KeyValuePair<object, object?>[]> _dictionaries = new(StringComparer.OrdinalIgnoreCase);
    private bool _withSessionItems;
    private readonly Dictionary<string, string> _aliases = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _drives = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<PSModuleInfo> _modules = new();

    private SessionBaseline(SessionState session, bool withSessionItems)
    {
        _variables = new HashSet<string>(VariableNames(session), StringComparer.OrdinalIgnoreCase);
        _functions = new HashSet<string>(FunctionNames(session), StringComparer.OrdinalIgnoreCase);
        foreach (string name in _variables)
        {
            if (s_engineVariables.Contains(name) || session.PSVariable.Get("global:" + name) is not { } variable
                || (variable.Options & (ScopedItemOptions.ReadOnly | ScopedItemOptions.Constant)) != 0)
            {
                continue;
            }

            _globalValues[name] = variable.Value;
            if (variable.Value is IDictionary dictionary)
            {
                _dictionaries[name] = Entries(dictionary);
            }
        }

        if (withSessionItems)
        {
            AddSessionItems(session);
        }
    }

    /// <summary>
    /// Records aliases, drives and modules as they are now, for a baseline taken without them:
    /// correct only while nothing run since <see cref="Take"/> may have changed them.
    /// </summary>
    public void AddSessionItems(SessionState session)
    {
        if (_withSessionItems)
        {
            return;
        }

        foreach (AliasInfo alias in Aliases(session))
        {
            _aliases[alias.Name] = alias.Definition;
        }

        _drives.UnionWith(session.Drive.GetAll().Select(d => d.Name));
        _modules.UnionWith(Modules(session));
        _withSessionItems = true;
    }

    /// <summary>
    /// Records the session as it is now. With <paramref name="withSessionItems"/> aliases, drives and
    /// modules are recorded too (and can then be restored): that costs more, so it is asked for
    /// only when the code that runs may change them.
    /// </summary>
    public static SessionBaseline Take(SessionState session, bool withSessionItems) => new(session, withSessionItems);

    /// <summary>True when this baseline can restore aliases, drives and modules.</summary>
    public bool HasSessionItems => _withSessionItems;

    /// <summary>Brings the session back to this baseline (see the class remarks).</summary>
    public void Restore(SessionState session, bool sessionItems)
    {
        try
        {
            RestoreVariables(session);
            RemoveNewFunctions(session);
            if (sessionItems && _withSessionItems)
            {
                RestoreAliases(session);
                RemoveNewDrives(session);
                RemoveNewModules(session);
            }
        }
        catch (Exception)
        {
            // Best effort: a worker that cannot be cleaned is still correct for its next call's own scope.
        }
    }

    private void RestoreVariables(SessionState session)
    {
        foreach (string name in VariableNames(session))
        {
            if (!_variables.Contains(name) && !s_engineVariables.Contains(name))
            {
                TryRun(() => session.PSVariable.Remove("script:" + name));
                TryRun(() => session.PSVariable.Remove("global:" + name));
            }
        }

        foreach (var saved in _globalValues)
        {
            PSVariable? variable = session.PSVariable.Get("global:" + saved.Key);
            if (variable is null)
            {
                TryRun(() => session.PSVariable.Set("global:" + saved.Key, saved.Value));
                continue;
            }

            if (!ReferenceEquals(variable.Value, saved.Value) && !Equals(variable.Value, saved.Value))
            {
                TryRun(() => variable.Value = saved.Value);
            }

            if (_dictionaries.TryGetValue(saved.Key, out var entries) && saved.Value is IDictionary dictionary && !SameEntries(dictionary, entries))
            {
                TryRun(() =>
                {
                    dictionary.Clear();
                    foreach (var entry in entries)
                    {
                        dictionary[entry.Key] = entry.Value;
                    }
                });
            }
        }
    }

    private void RemoveNewFunctions(SessionState session)
    {
        foreach (string name in FunctionNames(session).ToList())
        {
            if (!_functions.Contains(name))
            {
                for (int i = 0; i < 3 && session.InvokeProvider.Item.Exists(@"function:\" + name); i++)
                {
                    TryRun(() => session.InvokeProvider.Item.Remove(@"function:\" + name, false));
                }
            }
        }
    }

    private void RestoreAliases(SessionState session)
    {
        foreach (AliasInfo alias in Aliases(session))
        {
            if (!_aliases.TryGetValue(alias.Name, out string? definition))
            {
                for (int i = 0; i < 3 && session.InvokeProvider.Item.Exists(@"alias:\" + alias.Name); i++)
                {
                    TryRun(() => session.InvokeProvider.Item.Remove(@"alias:\" + alias.Name, false));
                }
            }
            else if (!string.Equals(alias.Definition, definition, StringComparison.OrdinalIgnoreCase))
            {
                TryRun(() => session.InvokeProvider.Item.Set(@"alias:\" + alias.Name, definition));
            }
        }
    }

    private void RemoveNewDrives(SessionState session)
    {
        foreach (PSDriveInfo drive in session.Drive.GetAll().ToList())
        {
            if (!_drives.Contains(drive.Name))
            {
                TryRun(() => session.Drive.Remove(drive.Name, true, "global"));
                TryRun(() => session.Drive.Remove(drive.Name, true, "script"));
            }
        }
    }

    private void RemoveNewModules(SessionState session)
    {
        // AsyncGroup imported on a task's first use of it (OwnModuleImport) is part of the worker.
        var added = Modules(session).Where(m => !_modules.Contains(m) && m.ImplementingAssembly != typeof(SessionBaseline).Assembly).ToArray();
        if (added.Length > 0)
        {
            TryRun(() => session.InvokeCommand.InvokeScript(
                @"param($m) Microsoft.PowerShell.Core\Remove-Module -ModuleInfo $m -Force -ErrorAction SilentlyContinue", new object[] { added }));
        }
    }

    private static IEnumerable<PSModuleInfo> Modules(SessionState session)
    {
        try
        {
            return session.InvokeCommand.InvokeScript(@"Microsoft.PowerShell.Core\Get-Module").Select(o => o?.BaseObject).OfType<PSModuleInfo>().ToList();
        }
        catch (Exception)
        {
            return Array.Empty<PSModuleInfo>();
        }
    }

    private static KeyValuePair<object, object?>[] Entries(IDictionary dictionary)
    {
        var entries = new List<KeyValuePair<object, object?>>(dictionary.Count);
        foreach (DictionaryEntry entry in dictionary)
        {
            entries.Add(new KeyValuePair<object, object?>(entry.Key, entry.Value));
        }

        return entries.ToArray();
    }

    private static bool SameEntries(IDictionary dictionary, KeyValuePair<object, object?>[] entries)
    {
        if (dictionary.Count != entries.Length)
        {
            return false;
        }

        foreach (var entry in entries)
        {
            if (!dictionary.Contains(entry.Key) || !Equals(dictionary[entry.Key], entry.Value))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The names of the variables the session's current scope sees. Listed with Get-Variable, not
    /// the Variable: drive: a drive wraps each item with six note properties (PSPath, PSDrive…)
    /// that PowerShell keeps attached to the variable for as long as it lives — about 47 KB per
    /// worker, on every worker that ever took a baseline — and the listing took about twice as
    /// long. Named with its module, so that a function or alias a task defined with the same name
    /// is not what runs.
    /// </summary>
    private static List<string> VariableNames(SessionState session)
    {
        var names = new List<string>();
        foreach (PSObject? item in session.InvokeCommand.InvokeScript(@"Microsoft.PowerShell.Utility\Get-Variable"))
        {
            if (item?.BaseObject is PSVariable variable)
            {
                names.Add(variable.Name);
            }
        }

        return names;
    }

    /// <summary>
    /// The aliases the session's current scope sees, listed with Get-Alias for the reason given at
    /// <see cref="VariableNames"/>: through the Alias: drive, the note properties kept on each of
    /// the 140-odd built-in aliases were about 120 KB per worker.
    /// </summary>
    private static List<AliasInfo> Aliases(SessionState session) =>
        session.InvokeCommand.InvokeScript(@"Microsoft.PowerShell.Utility\Get-Alias").Select(o => o?.BaseObject).OfType<AliasInfo>().ToList();

    /// <summary>The names of the functions the session's current scope sees (a few dozen: the drive is cheaper than a command here).</summary>
    private static IEnumerable<string> FunctionNames(SessionState session)
    {
        foreach (PSObject item in session.InvokeProvider.ChildItem.Get(@"function:\", false))
        {
            if (item.BaseObject is CommandInfo command)
            {
                yield return command.Name;
            }
        }
    }

    private static void TryRun(Action action)
    {
        try
        {
            action();
        }
        catch (Exception)
        {
            // Not in that scope, constant or read-only: nothing to restore.
        }
    }
}
