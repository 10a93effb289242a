using System.Collections.Generic;

namespace AsyncGroup.Core;

/// <summary>
/// What a stream's preference says to do with a record: the names and values of PowerShell's
/// <c>ActionPreference</c>, which the Core cannot reference. <see cref="Break"/> exists from
/// PowerShell 7 on.
/// </summary>
internal enum StreamAction
{
    SilentlyContinue = 0,
    Stop = 1,
    Continue = 2,
    Inquire = 3,
    Ignore = 4,
    Suspend = 5,
    Break = 6,
}

/// <summary>Where a task's preference variables live, which decides what the rule may change.</summary>
internal enum PreferenceScope
{
    /// <summary>
    /// A worker runspace (local or remote): it is given every preference, and has neither the
    /// caller's host to prompt on nor a debugger to stop in.
    /// </summary>
    Worker,

    /// <summary>
    /// A scope in the caller's own session (a Start-TaskGroup body): it inherits the caller's
    /// variables as they are, and while it runs the cmdlet's own <c>Write*</c> read those variables
    /// from it, so only what a common parameter gives is set there (the cmdlet's own <c>Write*</c>
    /// keep the parameter's value whatever the scope holds).
    /// </summary>
    CallerSession,
}

/// <summary>
/// One row of the table: a stream's preference variable and the common parameters that set it for
/// one command (an action such as <c>-WarningAction</c>, or a switch such as <c>-Verbose</c>) or
/// collect its records (<c>-WarningVariable</c>). Immutable.
/// </summary>
internal sealed class StreamPreference(string variable, string? actionParameter, string? switchParameter, string? collectorParameter)
{
    /// <summary>The preference variable a task reads (<c>WarningPreference</c>).</summary>
    internal string Variable => variable;

    /// <summary>The common parameter that names the action (<c>WarningAction</c>), if the stream has one.</summary>
    internal string? ActionParameter => actionParameter;

    /// <summary>The common switch that turns the stream on or off (<c>Verbose</c>), if the stream has one.</summary>
    internal string? SwitchParameter => switchParameter;

    /// <summary>The common parameter that collects the stream's records (<c>WarningVariable</c>), if the stream has one.</summary>
    internal string? CollectorParameter => collectorParameter;

    public override string ToString() => Variable;
}

/// <summary>
/// The one rule that decides which preference a task — or a Start-TaskGroup body, which passes its
/// preferences on to its children — runs with for each stream, from the common parameters given
/// to the cmdlet and the caller's preference variables. Whatever a task writes comes back to the
/// caller through the cmdlet's own <c>Write*</c> methods, which apply the cmdlet's own preference
/// once more; the rule therefore only has to make the task produce every record the cmdlet may
/// show or collect, and to leave to the cmdlet what needs the caller's host.
/// </summary>
internal static class TaskPreferences
{
    /// <summary>Every stream a task's preferences decide, in a fixed order.</summary>
    internal static IReadOnlyList<StreamPreference> Streams { get; } = new[]
    {
        new StreamPreference("ErrorActionPreference", "ErrorAction", null, "ErrorVariable"),
        new StreamPreference("WarningPreference", "WarningAction", null, "WarningVariable"),
        new StreamPreference("VerbosePreference", null, "Verbose", null),
        new StreamPreference("DebugPreference", null, "Debug", null),
        new StreamPreference("InformationPreference", "InformationAction", null, "InformationVariable"),
        // -ProgressAction exists from PowerShell 7.4 on; before, it is never given.
        new StreamPreference("ProgressPreference", "ProgressAction", null, null),
    };

    /// <summary>
    /// The action a common switch gives its stream: <c>-Verbose</c> and <c>-Debug</c> turn it on
    /// (Continue: Debug as PowerShell 7 has it, never Inquire), <c>-Verbose:$false</c> off.
    /// </summary>
    internal static StreamAction FromSwitch(bool isPresent) => isPresent ? StreamAction.Continue : StreamAction.SilentlyContinue;

    /// <summary>
    /// True when the cmdlet must show a verbose or debug record a task (or a group body) wrote
    /// although the caller's preference for that stream, <paramref name="callerPreference"/>,
    /// silences it: the task runs with that same preference, so a record it wrote anyway was asked
    /// for by its own code (<c>Write-Verbose -Verbose</c>, <c>Write-Debug -Debug</c>, a command
    /// called with <c>-Verbose</c>, its own preference variable), which a script shows whatever its
    /// caller's preference. A common switch given to the cmdlet that sets the stream's preference
    /// (<paramref name="switchGiven"/>: <c>-Verbose</c> or <c>-Debug</c>) decides for its call as it
    /// is. A preference variable that names no action (unset, or not an action) counts as
    /// PowerShell's default for these two streams, SilentlyContinue. (Information records are
    /// produced whatever the preference, so one that arrives says nothing of what the task asked.)
    /// </summary>
    internal static bool ShowsRecordAnyway(StreamAction? callerPreference, bool switchGiven) =>
        !switchGiven && callerPreference is null or StreamAction.SilentlyContinue or StreamAction.Ignore;

    /// <summary>
    /// The preference a task runs with for <paramref name="stream"/>: the action given to the cmdlet
    /// (<paramref name="given"/>, from the stream's action parameter or switch) when there is one,
    /// else, in a <see cref="PreferenceScope.Worker"/>, the caller's (<paramref name="inherited"/>).
    /// Null when there is nothing to set: in a worker, neither names an action; in the
    /// <see cref="PreferenceScope.CallerSession"/>, no action is given.
    /// </summary>
    /// <param name="stream">The stream's row of <see cref="Streams"/>.</param>
    /// <param name="given">What the cmdlet's action parameter or switch for the stream says, if given.</param>
    /// <param name="collects">True when the cmdlet's collector parameter for the stream is given.</param>
    /// <param name="inherited">The caller's preference variable, when it names an action.</param>
    /// <param name="scope">Where the task's preference variables live.</param>
    /// <param name="ignoreIsAPreference">
    /// True where Ignore is a valid preference variable value (PowerShell 7 on); Windows PowerShell
    /// 5.1 accepts it only as a parameter value and fails the command that reads such a variable.
    /// </param>
    internal static StreamAction? Decide(
        StreamPreference stream, StreamAction? given, bool collects, StreamAction? inherited, PreferenceScope scope, bool ignoreIsAPreference)
    {
        StreamAction? source = scope == PreferenceScope.CallerSession ? given : given ?? inherited;
        if (source is not StreamAction action)
        {
            return null;
        }

        switch (action)
        {
            case StreamAction.Inquire:
            case StreamAction.Break:
                // A prompt or a debugger stop needs the caller's host: the task produces the record
                // and the cmdlet's own Write* asks or stops, once, on the pipeline thread. (A worker
                // has no host to ask and no debugger to stop in; a group body would ask twice.)
                return StreamAction.Continue;
            case StreamAction.SilentlyContinue when collects && stream.CollectorParameter is not null:
                // -WarningVariable and friends collect what the caller silences, as they do for an
                // advanced function: the task must still produce it (the cmdlet then hides it).
                return StreamAction.Continue;
            case StreamAction.Ignore when !ignoreIsAPreference:
            case StreamAction.Suspend:
                // Suspend is a value for no preference variable (PowerShell 7 refuses it as a parameter too).
                return StreamAction.SilentlyContinue;
            default:
                return action;
        }
    }
}
