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

    [Fact]
    public async Task A_gather_deadline_racing_the_last_completions_raises_TimeoutException_only_when_a_task_was_cut_short()
    {
        // The deadline and the work's own timer are set for the same instant, so on some rounds
        // the deadline fires while the gather is completing. Either outcome is fine as long as it
        // is consistent: a TimeoutException must mean some task was actually cut short.
        const int rounds = 600;
        int spurious = 0, timeouts = 0;
        for (int i = 0; i < rounds; i++)
        {
            var gatherer = new Gatherer<int>(new GatherOptions { Timeout = TimeSpan.FromMilliseconds(1) });
            for (int k = 0; k < 3; k++)
            {
                _ = gatherer.Add(async ct =>
                {
                    await Task.Delay(1, ct);
                    return 1;
                });
            }

            gatherer.Seal();
            try
            {
                await gatherer.WhenAllAsync().Bounded();
            }
            catch (TimeoutException)
            {
                timeouts++;
                if (gatherer.Tasks.All(t => t.State == WorkTaskState.Completed))
                {
                    spurious++;
                }
            }
        }

        Assert.True(spurious == 0, $"{spurious} of {timeouts} timeouts were raised although every task had completed ({rounds} rounds).");
    }
}
