using AsyncGroup.Core;
using Xunit;
using static AsyncGroup.Tests.Core.TestAsync;

namespace AsyncGroup.Tests.Core;

/// <summary>
/// Tests that load the whole box (races probed by repetition, the stress run). They run alone,
/// after the parallel collections, so that they neither slow the gate-driven tests down nor pick
/// up another test's unobserved exception.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HeavyCollection
{
    public const string Name = "Heavy (runs alone)";
}

/// <summary>Races that cannot be driven by gates, probed by repetition. Each failed before its fix.</summary>
[Collection(HeavyCollection.Name)]
public class RaceTests
{
    [Fact]
    public async Task A_cancel_racing_the_start_never_reports_Cancelled_for_work_that_ran()
    {
        // The work ignores its token and returns at once, so the only valid outcomes are
        // "Cancelled before the work was invoked" and "Completed with the value".
        // A Cancelled task whose work ran means the task was finished while its worker still ran.
        const int rounds = 3000;
        int bad = 0, cancelled = 0, completed = 0;
        for (int i = 0; i < rounds; i++)
        {
            int ran = 0;
            var t = WorkTask<int>.Run(_ =>
            {
                Volatile.Write(ref ran, 1);
                return Task.FromResult(7);
            });
            t.Cancel();
            await t.Completion.Bounded();
            if (t.State == WorkTaskState.Cancelled)
            {
                cancelled++;
                if (Volatile.Read(ref ran) == 1 || t.StartTime is not null)
                {
                    bad++;
                }
            }
            else
            {
                Assert.Equal(WorkTaskState.Completed, t.State);
                Assert.Equal(7, t.GetResult());
                completed++;
            }
        }

        Assert.True(bad == 0, $"{bad} of {rounds} tasks were reported Cancelled although their work ran ({cancelled} cancelled, {completed} completed).");
    }

}
