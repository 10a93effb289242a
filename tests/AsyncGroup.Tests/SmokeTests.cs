using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests;

public class SmokeTests
{
    [Fact]
    public async Task A_started_task_completes_with_its_value()
    {
        var t = WorkTask<int>.Run(_ => Task.FromResult(42));
        Assert.Equal(42, await t);
        Assert.Equal(WorkTaskState.Completed, t.State);
    }
}
