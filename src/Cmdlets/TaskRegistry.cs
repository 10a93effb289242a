using System;
using System.Collections.Generic;
using System.Linq;

namespace AsyncGroup;

/// <summary>
/// The tasks Start-AsyncTask created, per runspace, for Get-AsyncTask and Stop-AsyncTask -Id/-Name.
/// Unfinished tasks are held strongly; finished ones only weakly, so the module never keeps
/// finished work alive: once the caller drops a finished task, it disappears from the list.
/// </summary>
internal static class TaskRegistry
{
    private static readonly object s_gate = new();
    private static readonly Dictionary<Guid, List<Entry>> s_byRunspace = new();

    /// <remarks>
    /// A task started inside a task is listed in its own (worker) runspace and in the runspace of
    /// every task above it, so the session that started the tree sees all of it (with Parent).
    /// </remarks>
    public static void Add(AsyncTask task)
    {
        var entry = new Entry(task);
        lock (s_gate)
        {
            foreach (Guid runspaceId in task.TreeRunspaceIds())
            {
                if (!s_byRunspace.TryGetValue(runspaceId, out List<Entry>? list))
                {
                    list = new List<Entry>();
                    s_byRunspace.Add(runspaceId, list);
                }

                list.RemoveAll(e => e.Target is null);
                list.Add(entry);
            }
        }

        task.Work.AddDoneCallback(_ => entry.Release());
    }

    /// <summary>Unlists <paramref name="task"/> everywhere <see cref="Add"/> listed it (its start failed).</summary>
    public static void Remove(AsyncTask task)
    {
        lock (s_gate)
        {
            foreach (Guid runspaceId in task.TreeRunspaceIds())
            {
                if (s_byRunspace.TryGetValue(runspaceId, out List<Entry>? list))
                {
                    list.RemoveAll(e => e.Target is null || ReferenceEquals(e.Target, task));
                }
            }
        }
    }

    /// <summary>The live tasks of <paramref name="runspaceId"/>, oldest first.</summary>
    public static IReadOnlyList<AsyncTask> Snapshot(Guid runspaceId)
    {
        lock (s_gate)
        {
            if (!s_byRunspace.TryGetValue(runspaceId, out List<Entry>? list))
            {
                return Array.Empty<AsyncTask>();
            }

            list.RemoveAll(e => e.Target is null);
            return list.Select(e => e.Target).OfType<AsyncTask>().ToArray();
        }
    }

    public static void Clear()
    {
        lock (s_gate)
        {
            s_byRunspace.Clear();
        }
    }

    private sealed class Entry
    {
        private readonly WeakReference<AsyncTask> _weak;
        private AsyncTask? _strong;

        public Entry(AsyncTask task)
        {
            _weak = new WeakReference<AsyncTask>(task);
            _strong = task;
        }

        public AsyncTask? Target => _strong ?? (_weak.TryGetTarget(out AsyncTask? t) ? t : null);

        public void Release() => _strong = null;
    }
}
