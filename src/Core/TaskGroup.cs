using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace AsyncGroup.Core;

/// <summary>Options of a <see cref="TaskGroup"/>.</summary>
public sealed class TaskGroupOptions
{
    /// <summary>Limits how many children run at once; null for no limit.</summary>
    public ConcurrencyLimiter? Limiter { get; set; }

    /// <summary>Deadline for the whole scope (asyncio.timeout around the group): on expiry the group is cancelled and, unless a child failed, <see cref="TimeoutException"/> is thrown.</summary>
    public TimeSpan? Timeout { get; set; }
}

/// <summary>
/// asyncio.TaskGroup: a structured scope that owns its children.
/// </summary>
/// <remarks>
/// Guarantees:
/// <list type="bullet">
/// <item>The first child failure (not a cancellation) or body error aborts the group: every other
/// child and the body's <see cref="Token"/> are cancelled (shielded children excepted).</item>
/// <item><see cref="JoinAsync"/> returns or throws only once every child — including children added
/// by children — is final: no worker outlives the scope.</item>
/// <item>Failures surface as one <see cref="TaskGroupException"/> holding every non-cancellation error,
/// the trigger first, the body's own error included. A child that is itself a group contributes
/// its aggregate as one element, so nested groups nest.</item>
/// <item>When only cancellation happened, the owner's cancellation surfaces as a plain
/// <see cref="OperationCanceledException"/> and the group's own deadline as <see cref="TimeoutException"/>.</item>
/// <item>Adding a child to a group that is aborting or finished throws <see cref="InvalidOperationException"/>.</item>
/// </list>
/// </remarks>
public sealed class TaskGroup
{
    private readonly object _gate = new();
    private readonly List<WorkTask> _children = new();
    private readonly List<Exception> _errors = new();
    private readonly CancellationTokenSource _cts;
    private readonly CancellationToken _ownerToken;
    private readonly ConcurrencyLimiter? _limiter;
    private readonly TimeSpan? _timeout;
    private readonly TaskCompletionSource<bool> _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action<WorkTask> _onChildDone;
    private CancellationTokenSource? _deadline;
    private OperationCanceledException? _bodyCancellation;
    private int _active;
    private bool _joining;
    private bool _finished;
    private bool _aborting;
    private bool _timedOut;

    /// <summary>Opens a group; <paramref name="cancellationToken"/> is its owner's.</summary>
    public TaskGroup(string? name = null, TaskGroupOptions? options = null, CancellationToken cancellationToken = default)
    {
        Name = string.IsNullOrEmpty(name) ? "TaskGroup" : name!;
        _ownerToken = cancellationToken;
        _limiter = options?.Limiter;
        _timeout = options?.Timeout;
        AsyncOps.ValidateTimeout(_timeout);
        _onChildDone = OnChildDone; // one delegate for the group, not one per child
        _cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Token = _cts.Token;

        // One registration for the whole group rather than one per child on the group's token:
        // thousands of children registering and unregistering on one token source contend for
        // its lock. Start refuses children once the token is cancelled, so none is missed.
        _cts.Token.Register(static s => ((TaskGroup)s!).CancelChildren(), this);
        if (_timeout is { } timeout)
        {
            _deadline = new CancellationTokenSource(timeout);
            _deadline.Token.Register(static s => ((TaskGroup)s!).OnDeadline(), this);
        }
    }

    /// <summary>The group's name, used in its error message.</summary>
    public string Name { get; }

    /// <summary>Cancelled when the group aborts, times out or its owner cancels: the body should observe it.</summary>
    public CancellationToken Token { get; }

    /// <summary>Every child ever started, in start order.</summary>
    public IReadOnlyList<WorkTask> Tasks
    {
        get
        {
            lock (_gate)
            {
                return _children.ToArray();
            }
        }
    }

    /// <summary>True once a failure, the deadline or the owner cancelled the group.</summary>
    public bool IsAborting
    {
        get
        {
            lock (_gate)
            {
                return _aborting || _ownerToken.IsCancellationRequested;
            }
        }
    }

    /// <summary>True once the scope has been joined and every child is final.</summary>
    public bool IsFinished
    {
        get
        {
            lock (_gate)
            {
                return _finished;
            }
        }
    }

    /// <summary>Runs <paramref name="body"/> in a new group and joins it (async with TaskGroup() as g: ...).</summary>
    public static async Task<T> RunAsync<T>(
        Func<TaskGroup, CancellationToken, Task<T>> body,
        string? name = null,
        TaskGroupOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        if (body is null)
        {
            throw new ArgumentNullException(nameof(body));
        }

        var group = new TaskGroup(name, options, cancellationToken);
        T result = default!;
        Exception? bodyError = null;
        try
        {
            result = await body(group, group.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            bodyError = ex;
        }

        await group.JoinAsync(bodyError).ConfigureAwait(false);
        return result;
    }

    /// <summary>Runs <paramref name="body"/> in a new group and joins it.</summary>
    public static Task RunAsync(
        Func<TaskGroup, CancellationToken, Task> body,
        string? name = null,
        TaskGroupOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        if (body is null)
        {
            throw new ArgumentNullException(nameof(body));
        }

        return RunAsync<bool>(async (g, ct) =>
        {
            await body(g, ct).ConfigureAwait(false);
            return true;
        }, name, options, cancellationToken);
    }

    /// <summary>Starts a child (TaskGroup.create_task). Children may start children until the group finishes.</summary>
    /// <param name="work">The child's work.</param>
    /// <param name="name">The child's name (default <c>Task-&lt;Id&gt;</c>).</param>
    /// <param name="shielded">The child ignores the group's cancellation.</param>
    /// <param name="timeout">The child's own deadline.</param>
    /// <param name="tag">Caller data carried on the child.</param>
    /// <param name="beforeStart">
    /// Runs on this thread once the group has accepted the child and before its work can run, so the
    /// caller can make the child known (listed, bound to its owner) before it can do anything. If it
    /// throws, the child is cancelled without ever running and the exception propagates.
    /// </param>
    /// <exception cref="InvalidOperationException">The group is aborting or finished (then <paramref name="beforeStart"/> is not called).</exception>
    public WorkTask<T> Start<T>(Func<CancellationToken, Task<T>> work, string? name = null, bool shielded = false, TimeSpan? timeout = null, object? tag = null, Action<WorkTask<T>>? beforeStart = null)
    {
        if (work is null)
        {
            throw new ArgumentNullException(nameof(work));
        }

        return StartChild(options => new WorkTask<T>(work, name, options), shielded, timeout, tag, beforeStart);
    }

    /// <summary>
    /// Starts a child whose work is handed off (see <see cref="WorkTask{T}"/>); otherwise as
    /// <see cref="Start{T}"/>. <paramref name="handOff"/> passes the child to its runner, which ends
    /// it with <see cref="WorkTask{T}.EndWork(T)"/> or <see cref="WorkTask{T}.EndWork(Exception)"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The group is aborting or finished (then <paramref name="beforeStart"/> is not called).</exception>
    public WorkTask<T> StartHandOff<T>(Action<WorkTask<T>> handOff, string? name = null, bool shielded = false, TimeSpan? timeout = null, object? tag = null, Action<WorkTask<T>>? beforeStart = null)
    {
        if (handOff is null)
        {
            throw new ArgumentNullException(nameof(handOff));
        }

        return StartChild(options => new WorkTask<T>(handOff, name, options), shielded, timeout, tag, beforeStart);
    }

    private WorkTask<T> StartChild<T>(Func<TaskStartOptions, WorkTask<T>> create, bool shielded, TimeSpan? timeout, object? tag, Action<WorkTask<T>>? beforeStart)
    {
        AsyncOps.ValidateTimeout(timeout);
        WorkTask<T> task;
        lock (_gate)
        {
            if (_finished)
            {
                throw new InvalidOperationException($"Task group '{Name}' has finished; no task can be added to it.");
            }

            if (_aborting || _cts.IsCancellationRequested)
            {
                throw new InvalidOperationException($"Task group '{Name}' is shutting down; no task can be added to it.");
            }

            task = create(new TaskStartOptions
            {
                Limiter = _limiter,
                Shielded = shielded,
                Timeout = timeout,
                Tag = tag,
            });
            _children.Add(task);
            _active++;
        }

        task.AddPermanentDoneCallback(_onChildDone);
        try
        {
            beforeStart?.Invoke(task);
            task.Start();
        }
        catch
        {
            // Accepted but never started: a Pending task ends Cancelled at once, so the group
            // counts it done and does not wait for it.
            task.Cancel();
            throw;
        }

        return task;
    }

    /// <summary>
    /// Ends the body and waits for every child. <paramref name="bodyError"/> is what the body threw,
    /// if anything. Throws as described on the type; returns when the group succeeded.
    /// </summary>
    public async Task JoinAsync(Exception? bodyError = null)
    {
        bool drained;
        lock (_gate)
        {
            if (_joining)
            {
                throw new InvalidOperationException($"Task group '{Name}' was already joined.");
            }

            _joining = true;
        }

        if (bodyError is OperationCanceledException oce)
        {
            // Cancelled by this group's abort or its owner: that is not a new error.
            if (!IsAborting)
            {
                _bodyCancellation = oce;
                Abort(null);
            }
        }
        else if (bodyError is not null)
        {
            Abort(bodyError);
        }

        lock (_gate)
        {
            drained = _active == 0;
            if (drained)
            {
                _finished = true;
            }
        }

        if (!drained)
        {
            await _drained.Task.ConfigureAwait(false);
        }

        _deadline?.Dispose();
        Exception[] errors;
        bool timedOut;
        lock (_gate)
        {
            errors = _errors.ToArray();
            timedOut = _timedOut;
        }

        _cts.Dispose();
        if (errors.Length > 0)
        {
            object[] tasks;
            lock (_gate)
            {
                tasks = _children.Select(c => c.Tag ?? c).ToArray();
            }

            throw new TaskGroupException(Name, errors, tasks);
        }

        if (_ownerToken.IsCancellationRequested)
        {
            throw new OperationCanceledException($"Task group '{Name}' was cancelled.", _ownerToken);
        }

        if (timedOut)
        {
            throw new TimeoutException($"Task group '{Name}' did not complete within {_timeout!.Value.TotalSeconds:0.###} s; its tasks were cancelled.");
        }

        if (_bodyCancellation is not null)
        {
            throw _bodyCancellation;
        }
    }

    private void OnChildDone(WorkTask child)
    {
        bool abort = false, drained;
        lock (_gate)
        {
            if (child.State == WorkTaskState.Failed)
            {
                _errors.Add(child.Exception!);
                abort = !_aborting;
            }

            _active--;
            drained = _joining && _active == 0;
            if (drained)
            {
                _finished = true;
            }
        }

        if (abort)
        {
            Abort(null);
        }

        if (drained)
        {
            _drained.TrySetResult(true);
        }
    }

    private void CancelChildren()
    {
        // Under the gate: a child started before the cancellation is in this snapshot, and Start
        // refuses one after it (it checks the token under the same gate).
        WorkTask[] children;
        lock (_gate)
        {
            children = _children.ToArray();
        }

        // Last started first, for the reason Gatherer gives: a worker freed by a cancelled child
        // takes the next waiting child at once, which must be cancelled by then.
        for (int i = children.Length - 1; i >= 0; i--)
        {
            if (!children[i].IsShielded)
            {
                children[i].Cancel(); // false, and nothing else, for a child already done
            }
        }
    }

    private void OnDeadline()
    {
        lock (_gate)
        {
            if (_finished || _aborting)
            {
                return;
            }

            _timedOut = true;
        }

        Abort(null);
    }

    private void Abort(Exception? error)
    {
        lock (_gate)
        {
            if (error is not null)
            {
                _errors.Add(error);
            }

            _aborting = true;
        }

        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already joined: every child is final.
        }
        catch (AggregateException ex)
        {
            // A registration on the group's token threw; cancellation still reached the others.
            lock (_gate)
            {
                _errors.AddRange(ex.InnerExceptions);
            }
        }
    }
}

/// <summary>
/// The error of a failed <see cref="TaskGroup"/>: every non-cancellation error of its children and
/// body, the one that triggered the abort first (asyncio's ExceptionGroup).
/// </summary>
public sealed class TaskGroupException : AggregateException
{
    /// <summary>Creates the aggregate for group <paramref name="groupName"/>.</summary>
    public TaskGroupException(string groupName, IEnumerable<Exception> errors)
        : this(groupName, errors.ToArray(), Array.Empty<object>())
    {
    }

    /// <summary>Creates the aggregate for group <paramref name="groupName"/>, which ran <paramref name="tasks"/>.</summary>
    public TaskGroupException(string groupName, IEnumerable<Exception> errors, IEnumerable<object> tasks)
        : this(groupName, errors.ToArray(), tasks.ToArray())
    {
    }

    private TaskGroupException(string groupName, Exception[] errors, object[] tasks)
        : base(BuildMessage(groupName, errors), errors)
    {
        GroupName = groupName;
        Tasks = tasks;
        _message = BuildMessage(groupName, errors);
    }

    /// <summary>
    /// Every task the group ran, in the order they were started — failed, cancelled and succeeded
    /// alike, so a succeeded sibling's result can still be read — each as its
    /// <see cref="WorkTask.Tag"/> when it has one (the object the caller knows it by), else the task.
    /// </summary>
    public IReadOnlyList<object> Tasks { get; }

    private readonly string _message;

    /// <inheritdoc />
    /// <remarks>Overridden because .NET appends every inner message again after its own; ours already lists them.</remarks>
    public override string Message => _message;

    /// <summary>The group's name.</summary>
    public string GroupName { get; }

    /// <summary>The error that aborted the group.</summary>
    public Exception Trigger => InnerExceptions[0];

    private static string BuildMessage(string groupName, Exception[] errors)
    {
        if (errors.Length == 0)
        {
            throw new ArgumentException("A task group error needs at least one error.", nameof(errors));
        }

        string head = $"Task group '{groupName}' failed with {errors.Length} error(s)";
        return errors.Length == 1
            ? $"{head}: {errors[0].Message}"
            : $"{head}: " + string.Join("; ", errors.Select((e, i) => $"[{i + 1}] {e.Message}"));
    }
}
