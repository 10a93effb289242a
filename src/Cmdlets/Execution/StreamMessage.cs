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
    /// <summary>
    /// The task wrote output: Payload is an <see cref="OutputNotice"/>, read the output it covers
    /// with OutputFrom. Posted once until read.
    /// </summary>
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

/// <summary>
/// The payload of a TaskOutput message: how much of the task's output the message may release.
/// A notice waits in the writer queue while the task runs on; output the task writes after a stream
/// record it posted behind the notice must not be released with the notice, or it overtakes that
/// record. The task closes the notice (sets <see cref="Limit"/>) when it posts such a record.
/// </summary>
internal sealed class OutputNotice
{
    /// <summary>No limit: the notice releases all output written until it is read.</summary>
    internal const int Open = -1;

    /// <summary>How many of the task's output objects the notice may release, or <see cref="Open"/>. Guarded by the task's lock.</summary>
    internal int Limit = Open;
}

/// <summary>Where a task's stream records go while a cmdlet delivers them live.</summary>
internal interface IStreamSink
{
    void Post(StreamMessage message);
}
