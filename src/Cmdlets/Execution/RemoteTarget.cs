using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation.Runspaces;
using System.Runtime.CompilerServices;
using System.Threading;
using AsyncGroup.Core;

namespace AsyncGroup.Execution;

/// <summary>
/// The PowerShell remoting sessions (-Session) one batch runs its tasks on, and the modules to
/// import there. A task takes whichever of the sessions is free (the next free one after the
/// session this batch used last, so idle sessions share the work in turn); a session runs one task
/// at a time across every call in the process. The placement rules are Core's <see cref="LeasePool{TKey}"/>.
/// </summary>
internal sealed class RemoteTarget
{
    // Keyed by runspace: two PSSession objects for one connection are one session.
    private static readonly LeasePool<Runspace> s_leases = new();
    private readonly LeaseCursor _cursor = new();

    public RemoteTarget(IReadOnlyList<PSSession> sessions, IReadOnlyList<string> modules)
    {
        Sessions = sessions;
        Modules = modules;
    }

    public IReadOnlyList<PSSession> Sessions { get; }

    /// <summary>Module names imported on the remote side before each task (-ImportModule).</summary>
    public IReadOnlyList<string> Modules { get; }

    /// <summary>The sessions' computer names, for messages.</summary>
    public string HostNames => string.Join(", ", Sessions.Select(s => "'" + s.ComputerName + "'").Distinct());

    // Sessions whose connection failed under a task. A dropped connection can still read as Opened
    // for a moment after the task on it failed: the next task must not be placed there meanwhile.
    private static readonly ConditionalWeakTable<Runspace, object> s_failed = new();

    /// <summary>True when the session can run a pipeline now.</summary>
    internal static bool IsUsable(PSSession session) =>
        session.Runspace is { } runspace && runspace.RunspaceStateInfo.State == RunspaceState.Opened && !s_failed.TryGetValue(runspace, out _);

    /// <summary>The session's connection failed under a task: no task is placed on it again.</summary>
    internal static void MarkFailed(PSSession session)
    {
        if (session.Runspace is { } runspace)
        {
            s_failed.GetValue(runspace, _ => new object());
        }
    }

    /// <summary>
    /// Waits for a free, usable session and leases it; null when none of the sessions is usable
    /// any more (closed, broken, disconnected).
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public SessionLease? Acquire(CancellationToken cancellationToken)
    {
        int index = s_leases.Acquire(Sessions, s => s.Runspace, IsUsable, _cursor, cancellationToken);
        return index < 0 ? null : new SessionLease(Sessions[index], s_leases);
    }
}

/// <summary>A session held by one task until disposed.</summary>
internal sealed class SessionLease : IDisposable
{
    private readonly LeasePool<Runspace> _pool;
    private int _released;

    internal SessionLease(PSSession session, LeasePool<Runspace> pool)
    {
        Session = session;
        _pool = pool;
    }

    public PSSession Session { get; }

    /// <summary>Frees the session for the next task.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            _pool.Release(Session.Runspace);
        }
    }
}
