using System;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using System.Reflection;
using System.Runtime.CompilerServices;

namespace AsyncGroup.Execution;

/// <summary>
/// Makes an error record written in a worker point at the task's own code, never at the module's
/// driver: its script stack trace loses the driver's frames, and a position that names the driver
/// (a Write-Error's position is the invocation of the script block that called it, which for a
/// task is the driver's '&amp; $body') becomes the statement that wrote the error.
/// </summary>
/// <remarks>
/// PowerShell offers no public setter for either; the internal members are looked up by name (as
/// <see cref="ErrorHelper.Preserve"/> does) and, when missing, the record is left as it was.
/// Each record is rewritten once: a record forwarded by a nested call was already rewritten
/// where it was written.
/// </remarks>
internal static class TaskErrorPosition
{
    private const string DriverMarker = "$__ag_";
    private static readonly ConditionalWeakTable<ErrorRecord, object> s_done = new();
    private static readonly object s_mark = new();

    private static readonly MethodInfo? s_setInvocationInfo = typeof(ErrorRecord).GetMethod(
        "SetInvocationInfo", BindingFlags.Instance | BindingFlags.NonPublic, null, new[] { typeof(InvocationInfo) }, null);

    private static readonly FieldInfo? s_stackField =
        typeof(ErrorRecord).GetField("_scriptStackTrace", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? typeof(ErrorRecord).GetField("scriptStackTrace", BindingFlags.Instance | BindingFlags.NonPublic);

    /// <summary>The number of script frames the worker itself has below the code it runs now.</summary>
    public static int FrameCount(System.Management.Automation.Runspaces.Runspace runspace)
    {
        try
        {
            return runspace.Debugger.GetCallStack().Count();
        }
        catch (Exception)
        {
            return 0;
        }
    }

    /// <summary>Rewrites <paramref name="record"/> (once); <paramref name="runspace"/> is the worker's, on its own thread.</summary>
    public static void Relocate(ErrorRecord record, int driverFrames, System.Management.Automation.Runspaces.Runspace runspace)
    {
        lock (s_done)
        {
            if (s_done.TryGetValue(record, out _))
            {
                return;
            }

            s_done.Add(record, s_mark);
        }

        try
        {
            TrimStack(record, driverFrames);
            if (record.InvocationInfo is { } info && string.IsNullOrEmpty(info.ScriptName) && (info.Line ?? string.Empty).IndexOf(DriverMarker, StringComparison.Ordinal) >= 0)
            {
                // The innermost frame that is not the driver is where the task wrote the error.
                IScriptExtent? position = runspace.Debugger.GetCallStack()
                    .Select(f => f.Position)
                    .FirstOrDefault(p => p is not null && !IsDriver(p));
                s_setInvocationInfo?.Invoke(record, new object?[] { InvocationInfo.Create(info.MyCommand, position ?? EmptyExtent) });
            }
        }
        catch (Exception)
        {
            // Best effort: the record still reaches the caller as it was.
        }
    }

    private static readonly IScriptExtent EmptyExtent = new ScriptExtent(new ScriptPosition(string.Empty, 0, 0, string.Empty), new ScriptPosition(string.Empty, 0, 0, string.Empty));

    private static bool IsDriver(IScriptExtent? extent) =>
        extent is not null && string.IsNullOrEmpty(extent.File) && extent.Text.IndexOf(DriverMarker, StringComparison.Ordinal) >= 0;

    private static void TrimStack(ErrorRecord record, int driverFrames)
    {
        string? stack = record.ScriptStackTrace;
        if (s_stackField is null || driverFrames <= 0 || string.IsNullOrEmpty(stack))
        {
            return;
        }

        string[] lines = stack!.Split('\n');
        if (lines.Length <= driverFrames)
        {
            return;
        }

        string trimmed = string.Join("\n", lines, 0, lines.Length - driverFrames).TrimEnd('\r');
        s_stackField.SetValue(record, trimmed);
    }
}
