using System;
using System.Collections;
using System.Collections.Generic;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using AsyncGroup.Core;

namespace AsyncGroup.Execution;

/// <summary>
/// The task loop: the driver takes the batch's tasks one after another (<see cref="MoveNext"/>)
/// and runs each in a scope of its own, either through a PowerShell loop (<see cref="Run"/>) or
/// from C# (<see cref="RunTasks"/>), attributing its output, exit code and terminating error to it.
/// </summary>
internal sealed partial class Worker
{
    // The per-task loop (see Run). 'do { } while ($false)' keeps a 'break' or 'continue' outside a
    // loop in a task from ending this loop: it ends the task, as it would end a script. The sink
    // hands each output object to the task the moment it is written.
    private const string TaskLoopScript = @"param($__ag_body)
& {
    while ($__ag.MoveNext()) {
        $_ = $__ag.Input
        $__ag_args = $__ag.Arguments
        do { try { & $__ag_body @__ag_args } catch { $__ag.Fail($_) } } while ($false)
    }
} | & { begin { $__ag_sink = $__ag } process { $__ag_sink.Out($_) } }";

    // The same for a script block with a process block: each task runs the whole block (begin,
    // process, end — as ForEach-Object -Parallel does), with its input piped in so that the
    // process block binds it to $_.
    private const string TaskLoopScriptNamedBlocks = @"param($__ag_body)
& {
    while ($__ag.MoveNext()) {
        $_ = $__ag.Input
        $__ag_args = $__ag.Arguments
        do {
            try {
                if ($__ag.HasInput) { , $_ | & $__ag_body @__ag_args } else { & $__ag_body @__ag_args }
            }
            catch { $__ag.Fail($_) }
        } while ($false)
    }
} | & { begin { $__ag_sink = $__ag } process { $__ag_sink.Out($_) } }";

    // The per-task loop for a plain script block in the driver's language mode, the common case:
    // a script cmdlet whose C# loop (RunTasks) runs each task's script block through its command
    // intrinsics, in a new scope and straight into this pipeline's output — the same semantics as
    // '& $__ag_body' above without a pipeline (and its command set-up and logging) per task. The
    // '$__ag_' names mark these lines as the driver's in error positions.
    private const string FastTaskLoopScript = @"param($__ag_body)
& { [CmdletBinding()] param() $__ag_loop = $PSCmdlet; $__ag.RunTasks($__ag_loop) } | & { begin { $__ag_sink = $__ag } process { $__ag_sink.Out($_) } }";

    private static readonly List<PSVariable> s_noVariables = new();

    // A task's $input is empty, as it is for '& $__ag_body' (null would give it one $null).
    private static readonly object[] s_noInput = Array.Empty<object>();

    private ScriptBlock? _body;
    private ScriptBlock? _loop;
    private ScriptBlock? _plainLoop;
    private ScriptBlock? _namedBlocksLoop;
    private ScriptBlock? _fastLoop;
    private string? _bodyText; // set when the batch runs on the fast loop
    private bool _ownScope = true; // the fast loop runs each task in a new scope (see ScriptPlan.NeedsOwnScope)
    private bool _drained;
    private bool _priming; // see Priming; set before the driver starts, cleared by EndBatch on its thread
    private ArrayList? _errors; // the session's $Error list, looked up by Prepare once per batch (see ClearErrors)
    private int _driverFrames;
    private int _loopFrames;

    /// <summary>
    /// The per-task loop. It runs as PowerShell (<see cref="TaskLoopScript"/>) in a child scope of
    /// the batch scope, one pipeline per batch: each task runs its script block with <c>&amp;</c>
    /// in a fresh scope of its own (with <c>$_</c> defined), so nothing an item defines is seen by
    /// the next one, and its output flows through the loop's sink to the task as it is written:
    /// streamed live, and kept when the task ends early (<c>exit</c>, a stop). <c>exit</c> cannot be
    /// caught by a script, so it ends the loop's pipeline here, where its code is kept, and the
    /// loop is entered again for the next task.
    /// </summary>
    internal void Run()
    {
        _drained = false;
        while (!_drained)
        {
            try
            {
                _loop!.InvokeWithContext((IDictionary?)null, s_noVariables, _body!);
            }
            catch (PipelineStoppedException)
            {
                throw; // the driver is being stopped: DriverEnded settles the task
            }
            catch (Exception) when (_current is null)
            {
                throw; // not a task's doing (the loop itself failed): the driver ends and reports it
            }
            catch (Exception ex)
            {
                EndCurrentTask(ex);
            }
        }
    }

    /// <summary>
    /// True while a driver started by <see cref="StartIdleDriver"/> goes once round its loop with
    /// no batch: Prepare sets up the fast task loop, Run runs it (it takes no task and ends) and
    /// EndBatch does nothing, so the code a call's first tasks need is compiled while the worker
    /// waits.
    /// </summary>
    internal bool Priming => _priming;

    /// <summary>
    /// The fast per-task loop (<see cref="FastTaskLoopScript"/>): runs every task of the batch from
    /// C#. Each task's script block runs in a new scope below the loop's, where <c>$_</c> is its
    /// input (or in the loop's scope, for a block that can define nothing there: see
    /// <see cref="ScriptPlan.NeedsOwnScope"/>), and writes into the loop's output pipe, so output streams to the task as it is
    /// written. <c>exit</c>, a stray <c>break</c> or <c>continue</c>, and a terminating error end
    /// the task, not the loop.
    /// </summary>
    internal void RunTasks(PSCmdlet loop)
    {
        string text = _bodyText!;
        CommandInvocationIntrinsics invoke = loop.InvokeCommand;

        // $_ of the loop's own scope, where each task's scope finds it: set once by name, then
        // kept, so that an item sets its input without parsing the name and searching the scopes.
        PSVariableIntrinsics variables = loop.SessionState.PSVariable;
        variables.Set("local:_", null);
        PSVariable underbar = variables.Get("local:_");
        while (MoveNext())
        {
            try
            {
                underbar.Value = CurrentInput;
                invoke.InvokeScript(text, _ownScope, PipelineResultTypes.Output, s_noInput, CurrentArguments);
            }
            catch (PipelineStoppedException)
            {
                throw; // the driver is being stopped: DriverEnded settles the task
            }
            catch (Exception ex)
            {
                EndCurrentTask(ex);
            }
        }
    }

    /// <summary>
    /// Settles the running task after its script block threw: <c>exit</c> (or a labelled
    /// <c>break</c> with no matching loop) ends it as it would end a script — what it wrote is kept
    /// and the exit code, if any, recorded; any other exception fails it.
    /// </summary>
    private void EndCurrentTask(Exception ex)
    {
        if (IsFlowControl(ex))
        {
            if (ExitCodeOf(ex) is { } code)
            {
                _current?.SetExitCode(code);
            }
        }
        else if (ex is RuntimeException runtime)
        {
            Fail(runtime.ErrorRecord);
        }
        else
        {
            Fail(ErrorHelper.FromException(ex, ErrorIds.TaskFailed, _current));
        }
    }

    internal bool MoveNext()
    {
        while (true)
        {
            ScriptBatch batch;
            AsyncTask? finished;
            bool stop;
            lock (_gate)
            {
                finished = _current;
                _current = null;
                stop = _stopping || _batch is null;
                batch = _batch!;
            }

            if (finished is not null)
            {
                finished.RunningOn = null;
                if (!stop)
                {
                    SignalReturningIfLast();
                }

                finished.SetCompleted(); // outside the lock: Core's continuation runs inline
            }

            if (stop)
            {
                _drained = true;
                return false;
            }

            AsyncTask? next = batch.Take(afterTask: finished is not null);
            if (next is null)
            {
                _drained = true;
                SignalReturning(); // tell renters this worker is about to come back
                return false;
            }

            lock (_gate)
            {
                if (_stopping)
                {
                    batch.Requeue(next);
                    _drained = true;
                    return false;
                }

                _current = next;
                next.RunningOn = this;
            }

            if (next.CancellationToken.IsCancellationRequested || next.IsExecutionDone)
            {
                // Cancelled after it was taken: its queue may be drained (the call timed out), and
                // ending it may let the call return.
                SignalReturningIfLast();
                next.SetCancelled(next.CancellationToken);
                continue;
            }

            DeliverOrphans(next);
            if (batch.Plan.LeavesSessionAlone)
            {
                // A task that runs no command and calls no method cannot move the location: only
                // what it may have added to $Error is cleared.
                ClearErrors();
            }
            else
            {
                ResetBetweenItems(_session!, batch.Plan.Settings);
            }

            if (batch.Plan.TouchesSharedScopes)
            {
                // After initialization, before the first task: what the call itself defines stays.
                _itemBaseline ??= SessionBaseline.Take(_session!, withSessionItems: true);
                _itemBaseline.Restore(_session!, sessionItems: true);
            }

            if (_loopFrames == 0)
            {
                // Called from the task loop: every frame below a task's own code is the driver's.
                _loopFrames = TaskErrorPosition.FrameCount(Runspace);
            }

            _driverFrames = _loopFrames;
            next.MarkStarted();
            return true;
        }
    }

    /// <summary>
    /// Empties <c>$Error</c> between items (the next task starts with none). The list is the one
    /// Prepare looked up for the batch: a variable lookup by name per item was a noticeable part of
    /// a trivial item's cost, and within a batch <c>$Error</c> (a constant) always holds the same
    /// list; a reset between batches may replace it.
    /// </summary>
    private void ClearErrors()
    {
        if (_errors is { Count: > 0 } errors)
        {
            errors.Clear();
        }
    }

    /// <summary>The input of the task being run (bound to <c>$_</c>), or null.</summary>
    internal object? CurrentInput => _current is { HasInput: true } task ? InWorker(task.InputObject) : null;

    /// <summary>True when the task being run has a pipeline input.</summary>
    internal bool CurrentHasInput => _current?.HasInput ?? false;

    /// <summary>The arguments of the task being run.</summary>
    internal object?[] CurrentArguments
    {
        get
        {
            object?[] arguments = _current?.Arguments ?? Array.Empty<object?>();
            if (Array.Exists(arguments, a => IsScriptBlock(a)))
            {
                arguments = Array.ConvertAll(arguments, InWorker);
            }

            return arguments;
        }
    }

    private static bool IsScriptBlock(object? value) => (value is PSObject pso ? pso.BaseObject : value) is ScriptBlock;

    /// <summary>
    /// A script block given as pipeline input or in -ArgumentList is bound to the caller's session:
    /// invoked here it would run against the caller's session state on this thread. It is
    /// re-created from its text in the worker instead (in the caller's language mode), as the task's
    /// own script block is; like a $using: value it loses what it was bound to (its closure, its module).
    /// </summary>
    private object? InWorker(object? value)
    {
        if ((value is PSObject pso ? pso.BaseObject : value) is not ScriptBlock block || _session is not { } session)
        {
            return value;
        }

        return Recreated(session, block);
    }

    // Apart from InWorker: the lambda's closure was allocated on every call of InWorker (once per
    // item, for its input), script block or not.
    private ScriptBlock Recreated(SessionState session, ScriptBlock block) =>
        InLanguageMode(session, _batch!.Plan.Settings.LanguageMode, () => ScriptBlock.Create(block.ToString()));

    /// <summary>One object the task being run wrote to its output, as it writes it.</summary>
    internal void Out(PSObject? item) => _current?.AddOutput(item!);

    /// <summary>A terminating error of the task being run (caught by the loop).</summary>
    internal void Fail(ErrorRecord record) => FailCurrent(record);

    private void FailCurrent(ErrorRecord record)
    {
        TaskErrorPosition.Relocate(record, _driverFrames, Runspace);
        AsyncTask? current = _current;
        if (current is null)
        {
            return;
        }

        SignalReturningIfLast();

        // An error raised while the task is being stopped (say, a command whose module was
        // half-loaded when the stop arrived) is the stop's side effect, not a failure.
        if (current.CancellationToken.IsCancellationRequested)
        {
            current.SetCancelled(current.CancellationToken);
            return;
        }

        current.SetFailed(record);
    }

    private static bool IsFlowControl(Exception ex) =>
        ex.GetType().Name is "ExitException" or "BreakException" or "ContinueException" or "ReturnException";

    /// <summary>The code given to 'exit' (read by name: the exception type is not in the reference assemblies).</summary>
    private static int? ExitCodeOf(Exception ex)
    {
        if (ex.GetType().Name != "ExitException")
        {
            return null;
        }

        object? argument = ex.GetType().GetProperty("Argument")?.GetValue(ex);
        return LanguagePrimitives.TryConvertTo(argument, System.Globalization.CultureInfo.InvariantCulture, out int code) ? code : 0;
    }
}
