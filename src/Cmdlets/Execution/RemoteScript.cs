using System;
using System.Collections;
using System.Globalization;
using System.Management.Automation;

namespace AsyncGroup.Execution;

/// <summary>
/// What a remote session runs for one task: a small wrapper script, sent as text, and one
/// hashtable argument holding the task's plan (the same <see cref="ScriptPlan"/> local workers
/// use: body with <c>$using:</c> rewritten, <c>$using:</c> values, functions, initialization script,
/// preferences) and its input and arguments. Nothing has to be installed on the remote computer.
/// </summary>
/// <remarks>
/// The wrapper runs in a scope of its own (useLocalScope), so what one task defines is gone for the
/// next one; only what a task puts in the global scope stays in the session, as with Invoke-Command.
/// The body is parsed remotely, under the remote endpoint's language mode.
/// </remarks>
internal static class RemoteScript
{
    internal const string Text = @"param($__ag)
foreach ($__ag_entry in $__ag.Preferences.GetEnumerator()) { Set-Variable -Name $__ag_entry.Key -Value $__ag_entry.Value }
foreach ($__ag_entry in $__ag.Using.GetEnumerator()) { Set-Variable -Name $__ag_entry.Key -Value $__ag_entry.Value }
foreach ($__ag_module in $__ag.Modules) { Import-Module -Name $__ag_module -ErrorAction Stop }
foreach ($__ag_entry in $__ag.Functions.GetEnumerator()) { Set-Item -LiteralPath ('function:' + $__ag_entry.Key) -Value ([scriptblock]::Create($__ag_entry.Value)) }
if ($null -ne $__ag.Init) { $null = . ([scriptblock]::Create($__ag.Init)) }
$__ag_body = [scriptblock]::Create($__ag.Body)
$__ag_args = @($__ag.Arguments)
if ($__ag.HasProcessBlock -and $__ag.HasInput) { , $__ag.Input | & $__ag_body @__ag_args }
else { $_ = $__ag.Input; & $__ag_body @__ag_args }";

    /// <summary>The wrapper's argument for <paramref name="task"/> run from <paramref name="plan"/>.</summary>
    internal static Hashtable Arguments(ScriptPlan plan, AsyncTask task, RemoteTarget target)
    {
        WorkerSettings settings = plan.Settings;
        var preferences = new Hashtable(StringComparer.OrdinalIgnoreCase);
        foreach (var preference in settings.Preferences)
        {
            preferences[preference.Key] = ForRemote(preference.Value);
        }

        var usings = new Hashtable(StringComparer.OrdinalIgnoreCase);
        foreach (var value in plan.UsingValues)
        {
            usings[value.Key] = value.Value;
        }

        var functions = new Hashtable(StringComparer.OrdinalIgnoreCase);
        foreach (var function in settings.Functions)
        {
            functions[function.Key] = function.Value;
        }

        var modules = new string[target.Modules.Count];
        for (int i = 0; i < modules.Length; i++)
        {
            modules[i] = target.Modules[i];
        }

        return new Hashtable
        {
            ["Preferences"] = preferences,
            ["Using"] = usings,
            ["Modules"] = modules,
            ["Functions"] = functions,
            ["Init"] = settings.InitializationScript,
            ["Body"] = plan.WorkerText,
            ["HasProcessBlock"] = plan.HasProcessBlock,
            ["HasInput"] = task.HasInput,
            ["Input"] = task.HasInput ? task.InputObject : null,
            ["Arguments"] = task.Arguments,
        };
    }

    /// <summary>
    /// A preference value as the remote session should receive it: enums by name (PowerShell
    /// converts a name when it reads the preference, whatever the remote version knows of the
    /// type), switches as booleans.
    /// </summary>
    private static object? ForRemote(object? value) => value switch
    {
        Enum e => e.ToString(),
        SwitchParameter s => s.IsPresent,
        IFormattable f when value is not bool => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value,
    };
}
