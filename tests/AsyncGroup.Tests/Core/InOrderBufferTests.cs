using AsyncGroup.Core;
using Xunit;

namespace AsyncGroup.Tests.Core;

/// <summary>Streaming in input order: <see cref="InOrderBuffer{T}"/>.</summary>
public class InOrderBufferTests
{
    [Fact]
    public void Items_are_released_in_index_order_as_soon_as_order_allows()
    {
        var buffer = new InOrderBuffer<string>();

        buffer.Put(2, "c");
        Assert.False(buffer.TryTake(out _));
        Assert.Equal(1, buffer.Held);

        buffer.Put(0, "a");
        Assert.True(buffer.TryTake(out string? first));
        Assert.Equal("a", first);
        Assert.False(buffer.TryTake(out _)); // 1 is still missing, 2 waits
        Assert.Equal(1, buffer.NextIndex);

        buffer.Put(1, "b");
        Assert.True(buffer.TryTake(out string? second));
        Assert.True(buffer.TryTake(out string? third));
        Assert.Equal(new[] { "b", "c" }, new[] { second, third });
        Assert.False(buffer.TryTake(out _));
        Assert.Equal(3, buffer.NextIndex);
        Assert.Equal(0, buffer.Held);
    }

    [Fact]
    public void A_duplicate_index_is_rejected_whether_held_or_already_released()
    {
        var buffer = new InOrderBuffer<int>();
        buffer.Put(1, 10);

        Assert.Throws<ArgumentException>(() => buffer.Put(1, 11)); // held

        buffer.Put(0, 0);
        Assert.True(buffer.TryTake(out _));
        Assert.Throws<ArgumentException>(() => buffer.Put(0, 1)); // already released
        Assert.True(buffer.TryTake(out int one));
        Assert.Equal(10, one);
    }
}
