using System;
using System.Collections.Generic;
using System.Management.Automation;
using AsyncGroup.Core;

namespace AsyncGroup.Execution;

/// <summary>
/// The preferences a cmdlet call's tasks run with, one per stream, decided by
/// <see cref="TaskPreferences"/> from the call's common parameters and the caller's preference
/// variables: every value for a worker (<see cref="WorkerSettings"/>), those the common parameters
/// give for a Start-TaskGroup body, which inherits the rest from the caller's scope.
/// </summary>
internal static class CallerPreferences
{
    // Ignore became a valid preference variable value in PowerShell 7, whose engine assembly is
    // versioned 7.x (Windows PowerShell 5.1's is 3.0).
    private static readonly bool s_ignoreIsAPreference = typeof(ActionPreference).Assembly.GetName().Version.Major >= 7;

    /// <summary>
    /// What the workers of <paramref name="cmdlet"/>'s call get, every stream's preference variable
    /// and its value: the action decided, else (no action named) the caller's value as it is.
    /// </summary>
    internal static IEnumerable<KeyValuePair<string, object?>> ForWorkers(PSCmdlet cmdlet)
    {
        foreach ((StreamPreference stream, object? callerValue, StreamAction? decided) in Decide(cmdlet, PreferenceScope.Worker))
        {
            object? value = decided is StreamAction action ? (ActionPreference)(int)action : callerValue;
            yield return new KeyValuePair<string, object?>(stream.Variable, value);
        }
    }

    /// <summary>
    /// What a Start-TaskGroup body, run in the caller's session, is given: the preference variables
    /// that the common parameters of <paramref name="cmdlet"/> set, with their values.
    /// </summary>
    internal static IEnumerable<KeyValuePair<string, StreamAction>> ForCallerSession(PSCmdlet cmdlet)
    {
        foreach ((StreamPreference stream, _, StreamAction? decided) in Decide(cmdlet, PreferenceScope.CallerSession))
        {
            if (decided is StreamAction action)
            {
                yield return new KeyValuePair<string, StreamAction>(stream.Variable, action);
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="write"/>, the cmdlet's write of a verbose (<paramref name="debug"/>:
    /// debug) record a task or a group body wrote, so that the record is shown when only the
    /// caller's preference silences that stream (see <see cref="TaskPreferences.ShowsRecordAnyway"/>).
    /// The cmdlet's <c>WriteVerbose</c> reads <c>$VerbosePreference</c> from the scope that is
    /// current when it writes, and its <c>WriteDebug</c> reads <c>$DebugPreference</c> there on its
    /// first write (then keeps it for the command), so the variable is set to Continue in that scope
    /// for the write alone and put back as it was. On the pipeline thread only.
    /// </summary>
    internal static void WriteAskedForRecord(PSCmdlet cmdlet, bool debug, Action write)
    {
        string variable = debug ? "DebugPreference" : "VerbosePreference";
        var bound = cmdlet.MyInvocation.BoundParameters;
        bool switchGiven = bound.ContainsKey("Debug") || (!debug && bound.ContainsKey("Verbose"));
        if (!TaskPreferences.ShowsRecordAnyway(ToAction(cmdlet.GetVariableValue(variable)), switchGiven))
        {
            write();
            return;
        }

        string local = "local:" + variable;
        PSVariableIntrinsics variables = cmdlet.SessionState.PSVariable;
        PSVariable? own = variables.Get(local);
        object? before = own?.Value;
        try
        {
            variables.Set(local, ActionPreference.Continue);
        }
        catch (Exception)
        {
            write(); // a variable that cannot be set (made constant by the caller): written as it is
            return;
        }

        try
        {
            write();
        }
        finally
        {
            if (own is null)
            {
                variables.Remove(local);
            }
            else
            {
                own.Value = before;
            }
        }
    }

    /// <summary>Every stream's preference for the call of <paramref name="cmdlet"/>, read on its pipeline thread.</summary>
    private static IEnumerable<(StreamPreference Stream, object? CallerValue, StreamAction? Decided)> Decide(PSCmdlet cmdlet, PreferenceScope scope)
    {
        var bound = cmdlet.MyInvocation.BoundParameters;
        foreach (StreamPreference stream in TaskPreferences.Streams)
        {
            StreamAction? given = null;
            if (stream.SwitchParameter is { } name && bound.TryGetValue(name, out object? on))
            {
                given = TaskPreferences.FromSwitch(IsPresent(on));
            }
            else if (stream.ActionParameter is { } action && bound.TryGetValue(action, out object? named))
            {
                given = ToAction(named);
            }

            bool collects = stream.CollectorParameter is { } collector && bound.ContainsKey(collector);
            object? callerValue = cmdlet.GetVariableValue(stream.Variable);
            yield return (stream, callerValue, TaskPreferences.Decide(stream, given, collects, ToAction(callerValue), scope, s_ignoreIsAPreference));
        }
    }

    /// <summary>
    /// An action from a parameter or a preference variable: an ActionPreference, or what PowerShell
    /// converts to one (a variable assigned in a script or function scope holds the name as a string).
    /// </summary>
    private static StreamAction? ToAction(object? value)
    {
        if (value is PSObject pso)
        {
            value = pso.BaseObject;
        }

        if (value is null || !LanguagePrimitives.TryConvertTo(value, out ActionPreference preference))
        {
            return null;
        }

        var action = (StreamAction)(int)preference;
        return Enum.IsDefined(typeof(StreamAction), action) ? action : null;
    }

    private static bool IsPresent(object? value) => value switch
    {
        SwitchParameter s => s.IsPresent,
        bool b => b,
        _ => value is not null,
    };
}
