using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Threading.Tasks;
using AsyncGroup.Core;
using AsyncGroup.Execution;

namespace AsyncGroup.Commands;

/// <summary>
/// <para type="synopsis">Runs script blocks (or one script block per pipeline object) concurrently and returns their output in input order (asyncio's gather).</para>
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "Gather", DefaultParameterSetName = ScriptBlockSet)]
[OutputType(typeof(object))]
public sealed class InvokeGatherCommand : ScriptCmdletBase
{
    private const string ScriptBlockSet = "ScriptBlock";
    private const string TaskSet = "Task";
    private const int ProgressActivityId = 0x4147; // 'AG': distinct from the tasks' own progress bars
    private const int ReportedPositions = 10; // cancelled items named in the warning
    private const int QueuedPerWorker = 4;    // back-pressure (WaitForRoom): tasks queued per worker at most,
    private const int MinQueueBound = 512;    // and never fewer than this (32 let fast workers run dry)
    private const int ProgressTickMilliseconds = 250;
    private const int RoomWaitMilliseconds = 20; // see WaitForRoom

    // Only what can still matter to the call is kept per task: a task leaves these tables once its
    // output is written (or, after a fail-fast stop, once it is done), so a long pipeline holds the
    // tasks still running or waiting for their turn, not every task it ran (see Slot).
    private readonly Dictionary<AsyncTask, Slot> _live = new();   // tasks not yet written, any order
    private readonly Queue<AsyncTask> _unwritten = new();         // the same in input order (not with -AsCompleted)
    private readonly InOrderBuffer<AsyncTask> _order = new();     // done tasks waiting for an earlier one
    private readonly List<AsyncTask> _given = new();              // -Task: the tasks given, as given
    private readonly List<int> _firstCancelled = new();           // the smallest positions of cancelled tasks (ReportUnfinished)
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Stopwatch _progressClock = Stopwatch.StartNew(); // since the last progress tick
    private readonly Action<AsyncTask> _onTaskDone; // OnTaskDone as one delegate, not one per input
    private Gatherer<IReadOnlyList<PSObject>>? _gatherer;
    private ConcurrencyLimiter? _limiter;
    private ScriptBatch? _pipelineBatch;
    private AsyncTask? _halt;
    private bool _headMoved; // the head of the order changed since NotifyHead last looked
    private AsyncTask? _firstFailure;
    private int _count;      // tasks added: the next task's position
    private int _done;
    private int _cancelled;  // tasks that ended Cancelled
    private int _cancelledNeverStarted;
    private int _throttle;
    private int _queueBound; // see WaitForRoom
    private bool _progressShown;

    /// <summary>Creates the cmdlet.</summary>
    public InvokeGatherCommand() => _onTaskDone = OnTaskDone;

    /// <summary>The script blocks to run concurrently, or with pipeline input the one script block run for each object.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ScriptBlockSet)]
    [ScriptBlockArgument]
    [ValidateNotNullOrEmpty]
    public ScriptBlock[] ScriptBlock { get; set; } = null!;

    /// <summary>Pipeline input: each object is bound to <c>$_</c> in its own task.</summary>
    [Parameter(ValueFromPipeline = true, ParameterSetName = ScriptBlockSet)]
    public PSObject? InputObject { get; set; }

    /// <summary>Arguments passed to every script block (<c>$args</c> or its param block).</summary>
    [Parameter(ParameterSetName = ScriptBlockSet)]
    [Alias("Args")]
    public object[]? ArgumentList { get; set; }

    /// <summary>Gathers existing tasks instead of script blocks; they are not cancelled by this cmdlet.</summary>
    /// <remarks>Not-a-task arguments are reported by the cmdlet, once (see <see cref="AsyncTaskArgumentAttribute"/>).</remarks>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = TaskSet)]
    [AsyncTaskArgument(DeferToCommand = true)]
    [AllowNull]
    [ValidateTaskList]
    public AsyncTask[] Task { get; set; } = null!;

    /// <summary>Emit a failed or cancelled task's error record at its position instead of stopping.</summary>
    [Parameter]
    public SwitchParameter ReturnExceptions { get; set; }

    /// <summary>Emit each task's output as it completes rather than in input order.</summary>
    [Parameter]
    public SwitchParameter AsCompleted { get; set; }

    /// <summary>Seconds the whole gather may take; on expiry unfinished tasks are cancelled and a timeout error is thrown.</summary>
    [Parameter]
    [ValidateRange(0.0, 2147483.0)]
    public double Timeout { get; set; }

    /// <summary>Seconds each task may run; a task that exceeds it fails with a timeout error.</summary>
    [Parameter(ParameterSetName = ScriptBlockSet)]
    [ValidateRange(0.0, 2147483.0)]
    public double TaskTimeout { get; set; }

    /// <summary>How many tasks run at once: 5 with pipeline input, otherwise one per script block.</summary>
    [Parameter(ParameterSetName = ScriptBlockSet)]
    [ValidateRange(1, int.MaxValue)]
    public int ThrottleLimit { get; set; }

    /// <summary>
    /// Runs the tasks on these PowerShell remoting sessions instead of local workers: pipeline
    /// items are spread over them (each goes to the next free session), script blocks run once on
    /// every session. One task per session at a time.
    /// </summary>
    [Parameter(ParameterSetName = ScriptBlockSet)]
    [ValidateNotNullOrEmpty]
    public PSSession[]? Session { get; set; }

    /// <summary>Modules to import into every worker runspace.</summary>
    [Parameter(ParameterSetName = ScriptBlockSet)]
    [ValidateNotNullOrEmpty]
    public override string[]? ImportModule { get; set; }

    /// <summary>Names of the caller's functions to copy into every worker.</summary>
    [Parameter(ParameterSetName = ScriptBlockSet)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(FunctionNameCompleter))]
    public override string[]? Function { get; set; }

    /// <summary>A script run in each worker before its first task (its definitions are visible to the tasks).</summary>
    [Parameter(ParameterSetName = ScriptBlockSet)]
    [ValidateNotNull]
    public override ScriptBlock? InitializationScript { get; set; }

    internal override PSSession[]? SessionParameter => Session;

    private bool PipelineMode => ParameterSetName == ScriptBlockSet && (MyInvocation.ExpectingInput || Bound(nameof(InputObject)));

    private TimeSpan? TimeoutSpan => BoundSeconds(nameof(Timeout), Timeout);

    /// <inheritdoc />
    protected override void BeginProcessing()
    {
        if (ParameterSetName == TaskSet)
        {
            if (Bound(nameof(Task)) && AsyncTaskArgumentAttribute.RejectedIn(Task) is { } rejected)
            {
                ThrowArgumentError(NotTasksMessage(rejected), null);
            }

            return;
        }

        if (PipelineMode && ScriptBlock.Length != 1)
        {
            ThrowArgumentError($"With pipeline input Invoke-Gather runs one script block for each object, but {ScriptBlock.Length} were given.", ScriptBlock);
        }

        int sessions = Session?.Length ?? 0;
        int limit = Bound(nameof(ThrottleLimit)) ? ThrottleLimit
            : sessions > 0 ? (PipelineMode ? sessions : sessions * ScriptBlock.Length)
            : PipelineMode ? 5 : ScriptBlock.Length;
        _throttle = limit;

        // With pipeline input one batch serves every item and its workers (at most the throttle
        // limit) are the limit: items wait in the batch queue, so a worker goes straight from one
        // item to the next. Separate script blocks are separate batches, limited by Core.
        _limiter = PipelineMode ? null : new ConcurrencyLimiter(limit);
        if (PipelineMode)
        {
            // Remote: one worker per session at most (a session runs one task at a time).
            _pipelineBatch = Session is null ? CreateBatch(ScriptBlock[0], limit) : CreateBatch(ScriptBlock[0], Math.Min(limit, sessions), Session);
            _queueBound = Math.Max(MinQueueBound, QueuedPerWorker * limit);
        }
    }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        if (ParameterSetName == TaskSet)
        {
            if (AsyncTaskArgumentAttribute.RejectedIn(Task) is { } rejected)
            {
                // Pipeline input that is not a task: the script block was forgotten. Its value is
                // not shown (it may be anything, a secret included), only its type.
                ThrowArgumentError(
                    $"Invoke-Gather received pipeline input ({rejected.Describe(showText: false)}) but no script block to run for it. "
                    + "Give the script block, as in: 1..3 | Invoke-Gather { $_ * 2 }. To gather tasks, pipe AsyncTask objects (from Start-AsyncTask or Get-AsyncTask).",
                    null);
            }

            foreach (AsyncTask task in Task)
            {
                EnsureLocal(task);
                _given.Add(task);
            }

            return;
        }

        if (PipelineMode)
        {
            if (_gatherer is { IsStopping: true } stopping && (stopping.TimedOut || stopping.Trigger is not null))
            {
                // -Timeout expired, or a task failed (fail-fast), while the upstream was still
                // producing: end the call now, which also stops the upstream, rather than after the
                // last input. Each later input only became a cancelled task, and an endless
                // upstream never got to its last one.
                try
                {
                    FinishGather(timedOut: stopping.TimedOut);
                }
                finally
                {
                    ShutdownOwned();
                }
            }

            NotifyHead();
            AddTask(_pipelineBatch!, InputObject, hasInput: true);
            DrainAvailable(_onTaskDone);
            WaitForRoom(_pipelineBatch!);
        }
    }

    /// <summary>
    /// Back-pressure. When the input comes faster than the workers run it, the tasks waiting for
    /// a worker piled up without limit: a long upstream (every file of a tree, say) feeding slow
    /// tasks was read to its end ahead of them, each item holding its input, its task and its
    /// bookkeeping. Once <see cref="_queueBound"/> tasks wait, this thread takes no more input
    /// until half of them have started, woken once then (not once per task), and writes what the
    /// tasks write meanwhile every <see cref="RoomWaitMilliseconds"/> at the latest. The bound is
    /// large on purpose: with fast items the workers must not run dry while this thread wakes up.
    /// </summary>
    /// <exception cref="PipelineStoppedException">The pipeline was stopped.</exception>
    private void WaitForRoom(ScriptBatch batch)
    {
        if (batch.Queued < _queueBound)
        {
            return;
        }

        // A stopping gather (a failure, -Timeout) cancels what is queued: no more waiting.
        while (_gatherer is not { IsStopping: true })
        {
            bool room;
            NotifyHead();
            try
            {
                room = batch.WaitForRoom(_queueBound / 2, RoomWaitMilliseconds, PipelineStopToken);
            }
            catch (OperationCanceledException)
            {
                throw new PipelineStoppedException();
            }

            DrainAvailable(_onTaskDone);
            if (room)
            {
                return;
            }

            batch.CheckLateStart(); // the queue is full: its tasks may be ones that block
            TickProgress();
        }
    }

    /// <inheritdoc />
    protected override void EndProcessing()
    {
        if (ParameterSetName == TaskSet)
        {
            GatherGivenTasks();
            return;
        }

        try
        {
            if (!PipelineMode)
            {
                // Every script block is checked before the first one starts.
                // With -Session, each script block runs once on every session, in session order.
                ScriptBatch[] batches = Session is null
                    ? ScriptBlock.Select(sb => CreateBatch(sb, 1)).ToArray()
                    : ScriptBlock.SelectMany(sb => Session.Select(s => CreateBatch(sb, 1, new[] { s }))).ToArray();
                foreach (ScriptBatch batch in batches)
                {
                    AddTask(batch, null, hasInput: false);
                }
            }

            FinishGather(timedOut: false);
        }
        finally
        {
            ShutdownOwned();
        }
    }

    /// <summary>
    /// Waits for every task, writing output and streams meanwhile, then raises what ended the
    /// gather. <paramref name="timedOut"/>: the -Timeout expired before the input ended; the
    /// timeout error is thrown even when no started task was cut short.
    /// </summary>
    private void FinishGather(bool timedOut)
    {
        Gatherer<IReadOnlyList<PSObject>> gatherer = Gatherer;
        gatherer.Seal();
        CompleteBatches(); // workers leave as soon as the queue drains, ready for the next call

        // Every task's completion notice first (each task posts one, after Core has counted it
        // final): the gather is then complete, and awaiting it goes on here. Awaited while still
        // running, its end was handed to the thread pool, so every call woke a pool thread, which
        // then spun for more work on a processor the workers wanted.
        PumpUntil(() => _done >= _count, _onTaskDone, OnFinishingTick, nextTickMilliseconds: FinishingTickMilliseconds);
        Task all = gatherer.WhenAllAsync();
        Pump(all, _onTaskDone, ShowProgress);
        CatchUp(DoneInInputOrder());
        CompleteProgress();
        try
        {
            all.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (PipelineStopToken.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
        catch (TimeoutException ex)
        {
            ReportUnfinished("the timeout expired");
            ThrowTerminatingError(ErrorHelper.Timeout(ex, null));
        }
        catch (Exception) when (gatherer.Trigger?.Tag is AsyncTask trigger)
        {
            ReportUnfinished($"task '{trigger.Name}' did not complete");
            ThrowTerminatingError(ErrorHelper.ForTask(trigger));
        }

        if (timedOut)
        {
            ReportUnfinished("the timeout expired");
            ThrowTerminatingError(ErrorHelper.Timeout(
                new TimeoutException($"The gather did not complete within {Timeout:0.###} s: the input had not ended."), null));
        }
    }

    /// <summary>
    /// While the tasks end: how long until the next tick. Sooner than the progress tick while
    /// the pipeline batch's late-start check is pending (its tasks may need more workers).
    /// </summary>
    private int FinishingTickMilliseconds() =>
        _pipelineBatch?.LateStartCheckIn is { } due
            ? Math.Min(ProgressTickMilliseconds, Math.Max(1, (int)Math.Ceiling(due.TotalMilliseconds)))
            : ProgressTickMilliseconds;

    private void OnFinishingTick()
    {
        _pipelineBatch?.CheckLateStart();
        TickProgress();
    }

    /// <summary>Shows progress if the last progress tick is <see cref="ProgressTickMilliseconds"/> old.</summary>
    private void TickProgress()
    {
        if (_progressClock.ElapsedMilliseconds >= ProgressTickMilliseconds)
        {
            _progressClock.Restart();
            ShowProgress();
        }
    }

    private bool Bound(string name) => MyInvocation.BoundParameters.ContainsKey(name);

    private static string NotTasksMessage(AsyncTaskArgumentAttribute.Rejected rejected)
    {
        string message = $"Invoke-Gather runs script blocks, or gathers the AsyncTask objects given to -Task, but it was given {rejected.Describe(showText: true)}.";
        return rejected.Text is { } text
            ? message + $" To run a command, put it in braces: Invoke-Gather {{ {ArgumentItems.Shorten(text)} }}. To gather tasks by name: Invoke-Gather -Task (Get-AsyncTask -Name {ArgumentItems.QuoteIfNeeded(text)})."
            : message + " To gather tasks by id or name, pass (Get-AsyncTask -Id …) or (Get-AsyncTask -Name …).";
    }

    /// <summary>
    /// The gather, created when the first task is added (or at the end, for an empty pipeline):
    /// its -Timeout runs from the first input, not from when an upstream command started.
    /// </summary>
    private Gatherer<IReadOnlyList<PSObject>> Gatherer => _gatherer ??= new Gatherer<IReadOnlyList<PSObject>>(
        new GatherOptions
        {
            ReturnExceptions = ReturnExceptions.IsPresent,
            Limiter = _limiter,
            Timeout = TimeoutSpan,
            TaskTimeout = BoundSeconds(nameof(TaskTimeout), TaskTimeout),
            StartInline = true, // the work only queues the item for a worker
            DeferTaskTimeout = true, // -TaskTimeout counts from when a worker starts the item
            ReleaseSettled = true, // this cmdlet keeps what it still needs of each task itself
        },
        PipelineStopToken);

    private void AddTask(ScriptBatch batch, object? input, bool hasInput)
    {
        var task = new AsyncTask(batch, input, hasInput, ArgumentList ?? Array.Empty<object>(), CurrentRunspaceId)
        {
            Index = _count,
        };
        task.SetParent(Worker.OnThisThread?.Current); // a gather inside a task: part of that task's tree
        Track(task);
        task.AttachSink(Sink);
        if (AsCompleted)
        {
            task.RequestOutputNotices(); // its output streams (see OnTaskOutput)
        }
        else if (task.Index == _order.NextIndex)
        {
            _headMoved = true; // it is the head: it streams too, once it has run a while (see NotifyHead)
        }

        task.Bind(Gatherer.AddHandOff(AsyncTask.HandOffWork, tag: task));
        NotifyWhenDone(task);
    }

    /// <summary>Starts keeping track of <paramref name="task"/> at the next position.</summary>
    private void Track(AsyncTask task)
    {
        _live.Add(task, new Slot(_count++));
        if (!AsCompleted)
        {
            _unwritten.Enqueue(task);
        }
    }

    /// <summary>
    /// The gather (or wait) can complete a moment before the last completion notices reach the
    /// queue. Handle what is queued, then any finished task still unseen, so no output is lost.
    /// </summary>
    private void CatchUp(IEnumerable<AsyncTask> finished)
    {
        DrainAvailable(_onTaskDone);
        foreach (AsyncTask task in finished)
        {
            if (task.IsDone)
            {
                OnTaskDone(task);
            }
        }
    }

    /// <summary>The finished tasks whose completion notice was not handled yet, in input order.</summary>
    private List<AsyncTask> DoneInInputOrder() =>
        _live.Where(e => !e.Value.Processed && e.Key.IsDone).OrderBy(e => e.Value.Position).Select(e => e.Key).ToList();

    /// <summary>Releases a finished task's output in input order (or at once with -AsCompleted).</summary>
    private void OnTaskDone(AsyncTask task)
    {
        if (!_live.TryGetValue(task, out Slot? slot) || slot.Processed)
        {
            return; // already handled (by CatchUp, or written and let go)
        }

        slot.Processed = true;
        _done++;
        if (_firstFailure is null && task.State != WorkTaskState.Completed)
        {
            _firstFailure = task;
        }

        if (task.State == WorkTaskState.Cancelled)
        {
            CountCancelled(task, slot.Position);
        }

        if (AsCompleted)
        {
            LetGo(task);
            Emit(task, slot);
            return;
        }

        _order.Put(slot.Position, task);
        bool moved = false;
        while (_order.TryTake(out AsyncTask next))
        {
            _ = _unwritten.Dequeue(); // next, always: both are in input order
            Slot taken = _live[next];
            LetGo(next);
            Emit(next, taken);
            moved = true;
        }

        // The new head of the order streams from now on (see NotifyHead).
        if (moved)
        {
            _headMoved = true;
        }
    }

    /// <summary>
    /// Makes the head of the input order stream its output, once it has had time to write some:
    /// the next time this thread can write (the next input) or before it waits. Most heads end
    /// before then, and their completion writes their output: asking each new head for notices at
    /// once cost a notice message for about every other item of a fast pipeline. What the head
    /// wrote so far is written through the queue, after the stream records it posted before
    /// writing it (written here at once, it overtook its own queued verbose and warning records);
    /// what it writes later posts notices of its own. A head that is done needs none: its
    /// completion, queued behind its records, writes it all.
    /// </summary>
    private void NotifyHead()
    {
        if (!_headMoved)
        {
            return;
        }

        _headMoved = false;
        if (_unwritten.Count > 0 && _unwritten.Peek() is { IsDone: false } head)
        {
            head.PostOutputNotice(Sink);
        }
    }

    /// <inheritdoc />
    private protected override void BeforeWait() => NotifyHead();

    /// <summary>
    /// Forgets a task whose output is written (or never will be, after a fail-fast stop): nothing
    /// the call still does needs it, and whoever holds the AsyncTask still has all of it.
    /// </summary>
    private void LetGo(AsyncTask task) => _live.Remove(task);

    /// <summary>The tasks this call created and has not let go of (none with -Task: those it does not own).</summary>
    private protected override IReadOnlyList<AsyncTask> OwnedTasks() =>
        ParameterSetName == TaskSet ? Array.Empty<AsyncTask>() : _live.OrderBy(e => e.Value.Position).Select(e => e.Key).ToList();

    /// <summary>Counts a cancelled task for <see cref="ReportUnfinished"/>, keeping the ten smallest positions.</summary>
    private void CountCancelled(AsyncTask task, int position)
    {
        _cancelled++;
        if (task.StartTime is null)
        {
            _cancelledNeverStarted++;
        }

        if (_firstCancelled.Count < ReportedPositions || position < _firstCancelled[_firstCancelled.Count - 1])
        {
            int at = _firstCancelled.BinarySearch(position);
            _firstCancelled.Insert(at < 0 ? ~at : at, position);
            if (_firstCancelled.Count > ReportedPositions)
            {
                _firstCancelled.RemoveAt(ReportedPositions);
            }
        }
    }

    /// <summary>
    /// Streams a running task's output as it is written when order allows: the task at the head of
    /// the input order (every task with -AsCompleted). The others keep theirs until they are the head.
    /// </summary>
    internal override void OnTaskOutput(AsyncTask task, OutputNotice? notice)
    {
        if (_halt is null && _live.TryGetValue(task, out Slot? slot) && (AsCompleted || slot.Position == _order.NextIndex))
        {
            WriteNewOutput(task, slot, notice);
        }
    }

    /// <summary>Writes the task's output not written yet: all of it, or what <paramref name="notice"/> releases.</summary>
    private void WriteNewOutput(AsyncTask task, Slot slot, OutputNotice? notice = null)
    {
        List<PSObject> items = task.OutputFrom(slot.Written, notice);
        slot.Written += items.Count;
        foreach (PSObject item in items)
        {
            WriteObject(item);
        }
    }

    private void Emit(AsyncTask task, Slot slot)
    {
        if (_halt is not null)
        {
            return;
        }

        if (task.State == WorkTaskState.Completed)
        {
            WriteNewOutput(task, slot);
        }
        else if (ReturnExceptions)
        {
            WriteObject(ErrorHelper.ForTask(task));
        }
        else
        {
            // Fail-fast: nothing after the first task that did not complete is emitted; the
            // terminating error follows once every owned task has stopped.
            _halt = task;
        }
    }

    /// <summary>Nothing silently dropped: say which items were cancelled or never ran.</summary>
    private void ReportUnfinished(string reason)
    {
        if (ReturnExceptions)
        {
            return; // every item was already emitted at its position
        }

        // Every task is done and counted by now (FinishGather caught up with them all).
        if (_cancelled == 0)
        {
            return;
        }

        // Items are named by position only: an input value may be secret, huge, or have a
        // ToString() that throws, and building a warning must never replace the real error.
        TryWriteWarning(() => string.Format(
            CultureInfo.CurrentCulture,
            "Invoke-Gather stopped because {0}: {1} task(s) were cancelled ({2} of them never started): {3}",
            reason,
            _cancelled,
            _cancelledNeverStarted,
            string.Join(", ", _firstCancelled.Select(p => "#" + p.ToString(CultureInfo.InvariantCulture))) + (_cancelled > ReportedPositions ? ", …" : string.Empty)));
    }

    private void ShowProgress()
    {
        if (_clock.ElapsedMilliseconds < 1000 || IsProgressSilent())
        {
            return;
        }

        int total = _count;
        int running = Math.Min(_throttle, _live.Keys.Count(t => t.State == WorkTaskState.Running)); // a task not tracked is done
        int queued = Math.Max(0, total - _done - running);
        var record = new ProgressRecord(ProgressActivityId, "Invoke-Gather", $"{_done} done, {running} running, {queued} queued")
        {
            PercentComplete = total == 0 ? 0 : Math.Min(100, _done * 100 / total),
        };
        WriteProgress(record);
        _progressShown = true;
    }

    private void CompleteProgress()
    {
        if (_progressShown)
        {
            WriteProgress(new ProgressRecord(ProgressActivityId, "Invoke-Gather", "Done") { RecordType = ProgressRecordType.Completed });
        }
    }

    private bool IsProgressSilent()
    {
        object? value = GetVariableValue("ProgressPreference");
        if (value is PSObject pso)
        {
            value = pso.BaseObject;
        }

        return value is ActionPreference.SilentlyContinue or ActionPreference.Ignore;
    }

    /// <summary>-Task: gather tasks this cmdlet does not own. Their streams are delivered; they are never cancelled here.</summary>
    private void GatherGivenTasks()
    {
        var distinct = new HashSet<AsyncTask>();
        List<AsyncTask> given = _given.Where(distinct.Add).ToList();
        if (given.Count == 0)
        {
            ThrowArgumentError("No tasks were given to gather.", null);
        }

        foreach (AsyncTask task in given)
        {
            Track(task);
        }

        try
        {
            foreach (AsyncTask task in given)
            {
                task.AttachSink(Sink);
                if (AsCompleted || _live[task].Position == 0)
                {
                    // What it wrote before this call, behind the records it wrote before this call
                    // (AttachSink just queued them); later output comes with notices of its own.
                    task.PostOutputNotice(Sink);
                }

                NotifyWhenDone(task);
            }

            Task<WaitOutcome> wait = AsyncOps.WaitAsync(
                given.Select(t => (WorkTask)t.Work).ToList(),
                ReturnExceptions ? ReturnWhen.AllCompleted : ReturnWhen.FirstException,
                TimeoutSpan,
                PipelineStopToken);
            Pump(wait, _onTaskDone);

            WaitOutcome outcome;
            try
            {
                outcome = wait.GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                throw new PipelineStoppedException();
            }

            CatchUp(outcome.Done.Select(w => (AsyncTask)w.Tag!));

            ReleaseTasks(given, drain: true);
            if (_firstFailure is not null && !ReturnExceptions)
            {
                ThrowTerminatingError(ErrorHelper.ForTask(_firstFailure));
            }

            if (outcome.TimedOut)
            {
                ThrowTerminatingError(ErrorHelper.Timeout(
                    new TimeoutException($"{outcome.Pending.Count} of {given.Count} task(s) did not complete within {Timeout:0.###} s; they were left running."),
                    outcome.Pending.Select(w => w.Tag).ToArray()));
            }
        }
        finally
        {
            ReleaseTasks(given, drain: false);
        }
    }

    /// <summary>What the call keeps of a task until its output is written.</summary>
    private sealed class Slot
    {
        public Slot(int position) => Position = position;

        /// <summary>Its position in the input.</summary>
        public int Position { get; }

        /// <summary>How many of its output objects were already written (it streams while at the head).</summary>
        public int Written { get; set; }

        /// <summary>Its completion was handled (it may still wait for an earlier task).</summary>
        public bool Processed { get; set; }
    }
}
