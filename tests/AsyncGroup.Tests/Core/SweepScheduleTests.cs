using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests.Core;

/// <summary><see cref="SweepSchedule"/>: when a list that drops its finished items sweeps them out.</summary>
public class SweepScheduleTests
{
    [Fact]
    public void The_first_sweep_is_due_after_the_smallest_number_of_releases()
    {
        var schedule = new SweepSchedule();
        for (int i = 1; i < SweepSchedule.MinSweep; i++)
        {
            Assert.False(schedule.Released());
        }

        Assert.True(schedule.Released());
        Assert.True(schedule.TryBegin());
    }

    [Fact]
    public void The_next_sweep_comes_after_half_of_what_the_last_one_left()
    {
        var schedule = new SweepSchedule();
        for (int i = 0; i < SweepSchedule.MinSweep; i++)
        {
            schedule.Released();
        }

        Assert.True(schedule.TryBegin());
        schedule.Swept(1000);
        for (int i = 1; i < 500; i++)
        {
            Assert.False(schedule.Released());
        }

        Assert.True(schedule.Released());
    }

    [Fact]
    public void A_sweep_already_begun_is_not_begun_again_until_enough_new_releases()
    {
        var schedule = new SweepSchedule();
        for (int i = 0; i < SweepSchedule.MinSweep; i++)
        {
            schedule.Released();
        }

        Assert.True(schedule.TryBegin());
        Assert.False(schedule.TryBegin()); // the thread that lost the race finds nothing to do
        schedule.Swept(10); // a short list: the smallest number of releases again
        for (int i = 1; i < SweepSchedule.MinSweep; i++)
        {
            Assert.False(schedule.Released());
        }

        Assert.True(schedule.Released());
    }
}
