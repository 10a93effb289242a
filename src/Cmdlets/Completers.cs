using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using AsyncGroup.Commands;

namespace AsyncGroup;

/// <summary>Completes -Name from the session's tasks.</summary>
public sealed class TaskNameCompleter : IArgumentCompleter
{
    /// <inheritdoc />
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var pattern = new WildcardPattern((wordToComplete ?? string.Empty).Trim('\'', '"') + "*", WildcardOptions.IgnoreCase);
        return TaskRegistry.Snapshot(AsyncGroupCmdlet.CurrentRunspaceId)
            .Select(t => t.Name)
            .Where(n => pattern.IsMatch(n))
            .Distinct()
            .Select(n => new CompletionResult(Quote(n), n, CompletionResultType.ParameterValue, n));
    }

    private static string Quote(string name) =>
        name.IndexOfAny(new[] { ' ', '\'', '"', '$', '`', ';', ',', '(', ')', '{', '}' }) >= 0 ? "'" + name.Replace("'", "''") + "'" : name;
}

/// <summary>Completes -Id from the session's tasks, showing each task's name and state.</summary>
public sealed class TaskIdCompleter : IArgumentCompleter
{
    /// <inheritdoc />
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string prefix = wordToComplete ?? string.Empty;
        return TaskRegistry.Snapshot(AsyncGroupCmdlet.CurrentRunspaceId)
            .Where(t => t.Id.ToString(CultureInfo.InvariantCulture).StartsWith(prefix, System.StringComparison.Ordinal))
            .Select(t => new CompletionResult(
                t.Id.ToString(CultureInfo.InvariantCulture),
                t.Id.ToString(CultureInfo.InvariantCulture),
                CompletionResultType.ParameterValue,
                $"{t.Name} ({t.State})"));
    }
}

/// <summary>
/// Completes -Function from the functions (and filters) defined in the caller's session, each
/// name once: those -Function can copy. Functions of modules that are installed but not imported
/// are not offered (Get-Command would list them, once per installed version).
/// </summary>
public sealed class FunctionNameCompleter : IArgumentCompleter
{
    /// <inheritdoc />
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var pattern = new WildcardPattern((wordToComplete ?? string.Empty).Trim('\'', '"') + "*", WildcardOptions.IgnoreCase);
        using var ps = PowerShell.Create(RunspaceMode.CurrentRunspace);
        ps.AddCommand("Microsoft.PowerShell.Management\\Get-ChildItem").AddParameter("Path", "Function:");
        return ps.Invoke()
            .Select(o => o?.BaseObject is FunctionInfo f ? f.Name : null)
            .Where(n => !string.IsNullOrEmpty(n) && pattern.IsMatch(n))
            .Distinct(StringComparer.OrdinalIgnoreCase)
            .OrderBy(n => n, StringComparer.OrdinalIgnoreCase)
            .Select(n => new CompletionResult(Commands.ArgumentItems.QuoteIfNeeded(n!), n!, CompletionResultType.ParameterValue, n!))
            .ToList();
    }
}
