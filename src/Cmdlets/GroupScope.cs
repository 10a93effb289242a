using System;
using AsyncGroup.Commands;
using AsyncGroup.Core;

namespace AsyncGroup;

/// <summary>
/// The Start-TaskGroup whose body is running on this thread, so that Start-AsyncTask inside the
/// body joins that group. The body runs synchronously on the pipeline thread, hence thread-static;
/// nested groups form a stack through <see cref="Previous"/>.
/// </summary>
internal sealed class GroupScope : IDisposable
{
    [ThreadStatic]
    private static GroupScope? t_current;

    private GroupScope(TaskGroup group, StartTaskGroupCommand owner)
    {
        Group = group;
        Owner = owner;
        Previous = t_current;
    }

    public static GroupScope? Current => t_current;

    public TaskGroup Group { get; }

    public StartTaskGroupCommand Owner { get; }

    public GroupScope? Previous { get; }

    public static GroupScope Enter(TaskGroup group, StartTaskGroupCommand owner)
    {
        var scope = new GroupScope(group, owner);
        t_current = scope;
        return scope;
    }

    public void Dispose()
    {
        if (ReferenceEquals(t_current, this))
        {
            t_current = Previous;
        }
    }
}
