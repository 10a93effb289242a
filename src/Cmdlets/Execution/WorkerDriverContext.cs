using System.ComponentModel;
using System.Management.Automation;

namespace AsyncGroup.Execution;

/// <summary>
/// The object the driver script in a worker runspace talks to. Public only because PowerShell
/// binds methods on public types; not part of the module's API.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed class WorkerDriverContext
{
    private readonly Worker _worker;

    internal WorkerDriverContext(Worker worker) => _worker = worker;

    /// <summary>True while a warm-up worker's driver goes round its loop once with no batch (see <see cref="Worker.Priming"/>).</summary>
    public bool Priming => _worker.Priming;

    /// <summary>Waits for the next batch; false when the driver should end.</summary>
    public bool NextBatch(SessionState session) => _worker.NextBatch(session);

    /// <summary>Applies the caller's settings to the batch scope; returns the initialization script to dot-source, if any.</summary>
    public ScriptBlock? Prepare(SessionState session) => _worker.Prepare(session);

    /// <summary>Runs tasks until the batch is drained or the driver is stopped.</summary>
    public void Run() => _worker.Run();

    /// <summary>Runs every task of the batch (the fast loop); <paramref name="loop"/> is the loop's script cmdlet.</summary>
    public void RunTasks(PSCmdlet loop) => _worker.RunTasks(loop);

    /// <summary>Finishes the task just run and starts the next one; false when the batch is drained.</summary>
    public bool MoveNext() => _worker.MoveNext();

    /// <summary>The pipeline input of the task being run (its <c>$_</c>), or null.</summary>
    public object? Input => _worker.CurrentInput;

    /// <summary>True when the task being run has pipeline input.</summary>
    public bool HasInput => _worker.CurrentHasInput;

    /// <summary>The arguments of the task being run.</summary>
    public object?[] Arguments => _worker.CurrentArguments;

    /// <summary>Hands one output object to the task being run.</summary>
    public void Out(PSObject? item) => _worker.Out(item);

    /// <summary>Fails the task being run with its terminating error.</summary>
    public void Fail(ErrorRecord record) => _worker.Fail(record);

    /// <summary>Returns the worker to the pool once its batch is drained.</summary>
    public void EndBatch(SessionState session) => _worker.EndBatch(session);
}
