using System.Linq;
using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests.Core;

/// <summary><see cref="TaskPreferences"/>: which preference a task or a group body runs with for each stream.</summary>
public class TaskPreferencesTests
{
    private static StreamPreference Row(string variable) => TaskPreferences.Streams.Single(s => s.Variable == variable);

    private static StreamAction? Worker(string variable, StreamAction? given, StreamAction? inherited, bool collects = false, bool ignoreIsAPreference = true) =>
        TaskPreferences.Decide(Row(variable), given, collects, inherited, PreferenceScope.Worker, ignoreIsAPreference);

    private static StreamAction? Body(string variable, StreamAction? given, StreamAction? inherited, bool collects = false, bool ignoreIsAPreference = true) =>
        TaskPreferences.Decide(Row(variable), given, collects, inherited, PreferenceScope.CallerSession, ignoreIsAPreference);

    [Fact]
    public void The_table_holds_each_stream_with_its_common_parameters()
    {
        Assert.Equal(
            new[] { "ErrorActionPreference", "WarningPreference", "VerbosePreference", "DebugPreference", "InformationPreference", "ProgressPreference" },
            TaskPreferences.Streams.Select(s => s.Variable));
        Assert.Equal(("ErrorAction", "ErrorVariable"), (Row("ErrorActionPreference").ActionParameter, Row("ErrorActionPreference").CollectorParameter));
        Assert.Equal("Verbose", Row("VerbosePreference").SwitchParameter);
        Assert.Equal("Debug", Row("DebugPreference").SwitchParameter);
        Assert.Equal("ProgressAction", Row("ProgressPreference").ActionParameter);
        Assert.Null(Row("ProgressPreference").CollectorParameter);
        Assert.All(TaskPreferences.Streams, s => Assert.True(s.ActionParameter is null ^ s.SwitchParameter is null));
    }

    [Fact]
    public void A_switch_turns_its_stream_on_with_Continue_and_off_with_SilentlyContinue()
    {
        Assert.Equal(StreamAction.Continue, TaskPreferences.FromSwitch(true));
        Assert.Equal(StreamAction.SilentlyContinue, TaskPreferences.FromSwitch(false));
    }

    [Theory]
    [InlineData(null)]
    [InlineData((int)StreamAction.SilentlyContinue)]
    [InlineData((int)StreamAction.Ignore)]
    public void A_verbose_or_debug_record_a_task_wrote_is_shown_when_only_the_callers_preference_silences_its_stream(int? callerValue)
    {
        StreamAction? caller = (StreamAction?)callerValue;
        Assert.True(TaskPreferences.ShowsRecordAnyway(caller, switchGiven: false));
        Assert.False(TaskPreferences.ShowsRecordAnyway(caller, switchGiven: true)); // -Verbose:$false (-Debug:$false) decides for the call
    }

    [Theory]
    [InlineData((int)StreamAction.Continue)]
    [InlineData((int)StreamAction.Inquire)]
    [InlineData((int)StreamAction.Stop)]
    [InlineData((int)StreamAction.Break)]
    public void A_verbose_or_debug_record_is_written_under_the_callers_preference_when_it_does_not_silence_its_stream(int caller)
    {
        Assert.False(TaskPreferences.ShowsRecordAnyway((StreamAction)caller, switchGiven: false));
    }

    [Fact]
    public void A_given_action_wins_over_the_callers()
    {
        Assert.Equal(StreamAction.Stop, Worker("ErrorActionPreference", StreamAction.Stop, StreamAction.Continue));
        Assert.Equal(StreamAction.Stop, Body("ErrorActionPreference", StreamAction.Stop, StreamAction.Continue));
    }

    [Fact]
    public void A_worker_gets_the_callers_preference_when_none_is_given()
    {
        Assert.Equal(StreamAction.SilentlyContinue, Worker("WarningPreference", null, StreamAction.SilentlyContinue));
        Assert.Null(Worker("WarningPreference", null, null));
    }

    [Fact]
    public void A_body_is_given_nothing_when_no_action_is_given_it_inherits_the_callers_as_it_is()
    {
        Assert.Null(Body("WarningPreference", null, StreamAction.SilentlyContinue, collects: true));
        Assert.Null(Body("WarningPreference", null, StreamAction.Inquire));
        Assert.Null(Body("ErrorActionPreference", null, StreamAction.Ignore, ignoreIsAPreference: false));
    }

    [Theory]
    [InlineData("Inquire")]
    [InlineData("Break")]
    public void Prompting_and_breaking_become_Continue_the_cmdlet_does_them(string name)
    {
        var action = (StreamAction)System.Enum.Parse(typeof(StreamAction), name);
        Assert.Equal(StreamAction.Continue, Worker("ErrorActionPreference", action, null));
        Assert.Equal(StreamAction.Continue, Worker("ErrorActionPreference", null, action));
        Assert.Equal(StreamAction.Continue, Body("ErrorActionPreference", action, null));
    }

    [Theory]
    [InlineData("ErrorActionPreference")]
    [InlineData("WarningPreference")]
    [InlineData("InformationPreference")]
    public void A_collected_stream_is_produced_even_when_silenced(string variable)
    {
        Assert.Equal(StreamAction.Continue, Worker(variable, StreamAction.SilentlyContinue, null, collects: true));
        Assert.Equal(StreamAction.Continue, Worker(variable, null, StreamAction.SilentlyContinue, collects: true));
        Assert.Equal(StreamAction.Continue, Body(variable, StreamAction.SilentlyContinue, null, collects: true));
        Assert.Equal(StreamAction.SilentlyContinue, Worker(variable, StreamAction.SilentlyContinue, null, collects: false));
    }

    [Fact]
    public void Collecting_does_not_undo_Ignore()
    {
        Assert.Equal(StreamAction.Ignore, Worker("ErrorActionPreference", StreamAction.Ignore, null, collects: true));
    }

    [Fact]
    public void Ignore_is_kept_where_it_is_a_preference_value_and_becomes_SilentlyContinue_elsewhere()
    {
        Assert.Equal(StreamAction.Ignore, Worker("ErrorActionPreference", StreamAction.Ignore, null));
        Assert.Equal(StreamAction.Ignore, Body("ErrorActionPreference", StreamAction.Ignore, null));
        Assert.Equal(StreamAction.SilentlyContinue, Worker("ErrorActionPreference", StreamAction.Ignore, null, ignoreIsAPreference: false));
        Assert.Equal(StreamAction.SilentlyContinue, Worker("WarningPreference", null, StreamAction.Ignore, ignoreIsAPreference: false));
        Assert.Equal(StreamAction.SilentlyContinue, Body("ErrorActionPreference", StreamAction.Ignore, null, ignoreIsAPreference: false));
    }

    [Fact]
    public void Suspend_becomes_SilentlyContinue()
    {
        Assert.Equal(StreamAction.SilentlyContinue, Worker("ErrorActionPreference", StreamAction.Suspend, null));
        Assert.Equal(StreamAction.SilentlyContinue, Body("ErrorActionPreference", StreamAction.Suspend, null));
    }

    [Theory]
    [InlineData("SilentlyContinue")]
    [InlineData("Stop")]
    [InlineData("Continue")]
    public void Other_actions_pass_through_unchanged(string name)
    {
        var action = (StreamAction)System.Enum.Parse(typeof(StreamAction), name);
        foreach (StreamPreference stream in TaskPreferences.Streams)
        {
            Assert.Equal(action, TaskPreferences.Decide(stream, action, false, null, PreferenceScope.Worker, true));
            Assert.Equal(action, TaskPreferences.Decide(stream, action, false, null, PreferenceScope.CallerSession, true));
        }
    }

    [Fact]
    public void Its_actions_have_the_names_and_values_of_ActionPreference()
    {
        // AsyncGroup.Commands casts between the two by value and writes the names into script text.
        Assert.Equal(
            new[] { "SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend", "Break" },
            Enumerable.Range(0, 7).Select(i => ((StreamAction)i).ToString()));
    }
}
