using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation.Runspaces;
using System.Threading;

namespace AsyncGroup.Execution;

/// <summary>
/// The PowerShell remoting sessions (-Session) one batch runs its tasks on, and the modules to
/// import there. Immutable. A task takes whichever of the sessions is free (the next free one
/// after the session used last, so idle sessions share the work evenly); a session runs one task
/// at a time, across every call in the process (see <see cref="SessionLease"/>).
/// </summary>
internal sealed class RemoteTarget
{
    private int _cursor;

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

    /// <summary>True when the session can run a pipeline now.</summary>
    internal static bool IsUsable(PSSession session) =>
        session.Runspace is { } runspace && runspace.RunspaceStateInfo.State == RunspaceState.Opened;

    /// <summary>
    /// Waits for a free, usable session and leases it; null when none of the sessions is usable
    /// any more (closed, broken, disconnected).
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public SessionLease? Acquire(CancellationToken cancellationToken)
    {
        using CancellationTokenRegistration wake = cancellationToken.Register(SessionLease.WakeAll);
        return SessionLease.Acquire(this, cancellationToken);
    }

    /// <summary>The session to try first, and moves the cursor past the one chosen (under the lease lock).</summary>
    internal int Cursor => _cursor;

    internal void Chose(int index) => _cursor = (index + 1) % Sessions.Count;
}

/// <summary>
/// A session held by one task. Process-wide: two calls (or two batches) given the same session
/// never run on it at once, so "one session runs one task at a time" holds across calls.
/// </summary>
internal sealed class SessionLease : IDisposable
{
    private static readonly object s_gate = new();
    private static readonly HashSet<Runspace> s_busy = new();
    private int _released;

    private SessionLease(PSSession session) => Session = session;

    public PSSession Session { get; }

    /// <summary>Sessions leased right now (for tests and diagnostics).</summary>
    internal static int BusyCount
    {
        get
        {
            lock (s_gate)
            {
                return s_busy.Count;
            }
        }
    }

    internal static SessionLease? Acquire(RemoteTarget target, CancellationToken cancellationToken)
    {
        lock (s_gate)
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int count = target.Sessions.Count;
                bool anyUsable = false;
                for (int i = 0; i < count; i++)
                {
                    int index = (target.Cursor + i) % count;
                    PSSession session = target.Sessions[index];
                    if (!RemoteTarget.IsUsable(session))
                    {
                        continue;
                    }

                    anyUsable = true;
                    if (s_busy.Add(session.Runspace))
                    {
                        target.Chose(index);
                        return new SessionLease(session);
                    }
                }

                if (!anyUsable)
                {
                    return null;
                }

                // Woken by a release or a cancellation; the timeout re-checks sessions that broke
                // while they were busy elsewhere.
                Monitor.Wait(s_gate, 500);
            }
        }
    }

    internal static void WakeAll()
    {
        lock (s_gate)
        {
            Monitor.PulseAll(s_gate);
        }
    }

    /// <summary>Frees the session for the next task.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) != 0)
        {
            return;
        }

        lock (s_gate)
        {
            s_busy.Remove(Session.Runspace);
            Monitor.PulseAll(s_gate);
        }
    }
}
