using System.Management.Automation;

namespace AsyncGroup.Execution;

/// <summary>What a worker (or Core callback) asks the pipeline thread to do.</summary>
internal enum StreamKind
{
    Output,
    Error,
    Warning,
    Verbose,
    Debug,
    Information,
    Progress,
    /// <summary>A task reached its final state; Payload is the <see cref="AsyncTask"/>.</summary>
    TaskDone,
    /// <summary>The task wrote output (read it with OutputFrom); posted once until read.</summary>
    TaskOutput,
    /// <summary>Nothing to write: wakes the pump so it re-checks what it waits for.</summary>
    Wake,
}

/// <summary>One record posted to a cmdlet's writer queue. Immutable.</summary>
internal readonly struct StreamMessage
{
    public StreamMessage(StreamKind kind, object? payload, AsyncTask? task = null)
    {
        Kind = kind;
        Payload = payload;
        Task = task;
    }

    public StreamKind Kind { get; }

    public object? Payload { get; }

    public AsyncTask? Task { get; }
}

/// <summary>Where a task's stream records go while a cmdlet delivers them live.</summary>
internal interface IStreamSink
{
    void Post(StreamMessage message);
}
