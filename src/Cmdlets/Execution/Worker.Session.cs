using System;
using System.Collections;
using System.Management.Automation;
using System.Threading;

namespace AsyncGroup.Execution;

/// <summary>
/// Session hygiene: each batch (one call) starts from the worker's initial state with the
/// caller's settings applied, each task from the state the call's initialization left, and what a
/// call or an item changed is undone before the next one — a baseline taken once, then restored.
/// </summary>
internal sealed partial class Worker
{
    private SessionState? _session;
    private string? _callLocation; // where the batch's tasks start (a PowerShell path)
    private string? _locationTarget; // the caller's location that _callLocation was set for
    private SessionBaseline? _baseline;
    private SessionBaseline? _itemBaseline;

    /// <summary>Waits for the next batch; false when the worker is closing or must restart.</summary>
    internal bool NextBatch(SessionState session)
    {
        ScriptPlan plan;
        lock (_gate)
        {
            while (_assigned is null && !_closing && !_stopping)
            {
                Monitor.Wait(_gate);
            }

            if (_closing || _stopping)
            {
                return false;
            }

            _batch = _assigned;
            _assigned = null;
            plan = _batch!.Plan;
        }

        // The baseline of the worker's initial state is taken by the first call that needs it
        // (a cold worker's first call pays no more than it must): the calls before it left the
        // session alone. Aliases, drives and modules, dearer to record, are added by the first
        // call that may change them, for the same reason.
        if (!plan.LeavesSessionAlone)
        {
            _baseline ??= SessionBaseline.Take(session, withSessionItems: plan.MayChangeSessionState);
            if (plan.MayChangeSessionState)
            {
                _baseline.AddSessionItems(session);
            }
        }

        return true;
    }

    /// <summary>Applies the caller's settings to the batch scope, re-creates the script block; returns the initialization script, if any.</summary>
    internal ScriptBlock? Prepare(SessionState session)
    {
        if (_priming)
        {
            _loop = _fastLoop ??= ScriptBlock.Create(FastTaskLoopScript);
            _body = ScriptBlock.Create("$_");
            return null;
        }

        ScriptPlan plan = _batch!.Plan;
        WorkerSettings settings = plan.Settings;
        _session = session;
        _errors = session.PSVariable.GetValue("Error") as ArrayList;
        _driverFrames = TaskErrorPosition.FrameCount(Runspace); // below the initialization script
        _loopFrames = 0;
        foreach (var preference in settings.Preferences)
        {
            session.PSVariable.Set(preference.Key, preference.Value);
        }

        foreach (var value in plan.UsingValues)
        {
            session.PSVariable.Set(value.Key, value.Value);
        }

        // Setting the location looks the drive up (on Unix, a read of the mount table per mount
        // point): skipped when the worker is still where the previous call with the same location
        // left it, or, new or reset, already stands at the caller's location. A runspace opens in
        // the process's directory, which is most often the caller's, and there only the default
        // drives exist, so a PowerShell path equal to the caller's is the same place.
        string target = settings.ProviderLocation ?? settings.FileSystemLocation;
        string current = session.Path.CurrentLocation.Path;
        bool there = _locationTarget is null
            ? string.Equals(current, target, StringComparison.Ordinal)
            : string.Equals(target, _locationTarget, StringComparison.Ordinal) && string.Equals(current, _callLocation, StringComparison.Ordinal);
        if (!there)
        {
            SetLocation(session, settings);
            current = session.Path.CurrentLocation.Path;
        }

        _locationTarget = target;
        _callLocation = current;

        // User code is parsed here, in the worker, under the caller's language mode: a script block
        // remembers the mode it was created in, so a ConstrainedLanguage caller never gets
        // FullLanguage workers, while this driver keeps the mode it needs to talk to us.
        PSLanguageMode driverMode = session.LanguageMode;
        ScriptBlock? init = InLanguageMode(session, settings.LanguageMode, () =>
        {
            foreach (var function in settings.Functions)
            {
                session.InvokeProvider.Item.Set(@"function:\" + function.Key, ScriptBlock.Create(function.Value));
            }

            _body = ScriptBlock.Create(plan.WorkerText);
            return settings.InitializationScript is null ? null : ScriptBlock.Create(settings.InitializationScript);
        });

        // The loop itself is ours: created in the driver's own mode, like the driver. The fast loop
        // parses the task's text in the driver's mode, so it serves callers in that mode only.
        _bodyText = null;
        if (plan.HasProcessBlock)
        {
            _loop = _namedBlocksLoop ??= ScriptBlock.Create(TaskLoopScriptNamedBlocks);
        }
        else if (settings.LanguageMode == driverMode)
        {
            _bodyText = plan.WorkerText;
            _ownScope = plan.NeedsOwnScope;
            _loop = _fastLoop ??= ScriptBlock.Create(FastTaskLoopScript);
        }
        else
        {
            _loop = _plainLoop ??= ScriptBlock.Create(TaskLoopScript);
        }

        return init;
    }

    /// <summary>The batch is drained: the worker goes back to the pool with its driver still running.</summary>
    internal void EndBatch(SessionState session)
    {
        if (_priming)
        {
            _priming = false;
            _loop = null;
            _body = null;
            return; // no batch: the worker is already in the pool
        }

        _itemBaseline = null;
        if (_batch?.Plan is not { LeavesSessionAlone: true })
        {
            _baseline?.Restore(session, sessionItems: _batch?.Plan.MayChangeSessionState ?? true);
        }

        ScriptBatch? batch;
        bool stopping;
        lock (_gate)
        {
            batch = _batch;
            _batch = null;
            _body = null;
            _loop = null;
            _session = null;
            stopping = _stopping || _closing;
        }

        batch?.WorkerLeft(this);
        if (!stopping)
        {
            ComeBack(reset: false);
        }
    }

    /// <summary>
    /// Runs <paramref name="create"/> with the session in <paramref name="mode"/>, then back in its
    /// own mode. The mode is switched only when it differs: setting it, even to the mode it already
    /// has, makes PowerShell rebuild its type-conversion cache, which was a sixth of what a worker
    /// spent on a warm small call (twice per call, in the common case of a FullLanguage caller).
    /// </summary>
    private static T InLanguageMode<T>(SessionState session, PSLanguageMode mode, Func<T> create)
    {
        PSLanguageMode own = session.LanguageMode;
        if (own == mode)
        {
            return create();
        }

        session.LanguageMode = mode;
        try
        {
            return create();
        }
        finally
        {
            session.LanguageMode = own;
        }
    }

    private static void SetLocation(SessionState session, WorkerSettings settings)
    {
        if (settings.ProviderLocation is { } providerPath)
        {
            try
            {
                session.Path.SetLocation(providerPath);
                return;
            }
            catch (Exception)
            {
                // A drive that only exists in the caller (New-PSDrive): fall back to the file system.
            }
        }

        try
        {
            session.Path.SetLocation(WildcardPattern.Escape(settings.FileSystemLocation));
        }
        catch (Exception)
        {
            // The caller's directory may have been deleted; the worker keeps its own location.
        }
    }

    private void ResetBetweenItems(SessionState session, WorkerSettings settings)
    {
        ClearErrors();

        // Compared as a PowerShell path, the location set for the call: asking for the provider
        // path looks the drive up, which on Unix reads the mount table — that was half of what a
        // trivial item cost.
        if (!string.Equals(session.Path.CurrentLocation.Path, _callLocation, StringComparison.Ordinal))
        {
            SetLocation(session, settings);
            _callLocation = session.Path.CurrentLocation.Path;
            _locationTarget = settings.ProviderLocation ?? settings.FileSystemLocation;
        }
    }
}
