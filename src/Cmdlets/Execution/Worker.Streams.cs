using System.Collections.Generic;
using System.Management.Automation;

namespace AsyncGroup.Execution;

/// <summary>
/// Stream hooks: every record the driver's pipeline writes goes to the task being run, as it is
/// written; a record written while no task runs is kept for the next task.
/// </summary>
internal sealed partial class Worker
{
    private readonly List<KeyValuePair<StreamKind, object?>> _orphans = new();

    private void HookStreams(PowerShell ps)
    {
        PSDataStreams streams = ps.Streams;
        streams.Error.DataAdded += (s, e) =>
        {
            foreach (ErrorRecord record in ((PSDataCollection<ErrorRecord>)s!).ReadAll())
            {
                TaskErrorPosition.Relocate(record, _driverFrames, Runspace);
                if (_current is { } task)
                {
                    task.AddError(record);
                }
                else
                {
                    KeepForNextTask(StreamKind.Error, record);
                }
            }
        };
        Forward(streams.Warning, StreamKind.Warning);
        Forward(streams.Verbose, StreamKind.Verbose);
        Forward(streams.Debug, StreamKind.Debug);
        Forward(streams.Information, StreamKind.Information);
        Forward(streams.Progress, StreamKind.Progress);
    }

    private void Forward<T>(PSDataCollection<T> collection, StreamKind kind)
    {
        collection.DataAdded += (s, e) =>
        {
            foreach (T record in ((PSDataCollection<T>)s!).ReadAll())
            {
                if (_current is { } task)
                {
                    task.Post(new StreamMessage(kind, record, task));
                }
                else
                {
                    KeepForNextTask(kind, record);
                }
            }
        };
    }

    /// <summary>
    /// A record written while no task runs — by the -InitializationScript, say — belongs to the
    /// call, not to a task: it is delivered with the next task this worker runs (the call's own
    /// cmdlet receives it), rather than dropped.
    /// </summary>
    private void KeepForNextTask(StreamKind kind, object? record)
    {
        lock (_orphans)
        {
            _orphans.Add(new KeyValuePair<StreamKind, object?>(kind, record));
        }
    }

    private void DeliverOrphans(AsyncTask task)
    {
        KeyValuePair<StreamKind, object?>[] orphans;
        lock (_orphans)
        {
            if (_orphans.Count == 0)
            {
                return;
            }

            orphans = _orphans.ToArray();
            _orphans.Clear();
        }

        foreach (var orphan in orphans)
        {
            task.Post(new StreamMessage(orphan.Key, orphan.Value, task));
        }
    }
}
