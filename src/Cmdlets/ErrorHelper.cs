using System;
using System.Management.Automation;
using AsyncGroup.Core;

namespace AsyncGroup;

/// <summary>
/// The one place where exceptions become <see cref="ErrorRecord"/>s. A task's own error keeps its
/// original exception (type and message); only the error ID, target and category are ours.
/// </summary>
internal static class ErrorHelper
{
    private static readonly System.Reflection.PropertyInfo? s_preserveInvocationInfo =
        typeof(ErrorRecord).GetProperty("PreserveInvocationInfoOnce", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic);

    /// <summary>
    /// Marks a record written elsewhere (a worker, the group body) so that writing it from this
    /// cmdlet keeps its own FullyQualifiedErrorId and position, as Receive-Job and
    /// ForEach-Object -Parallel do. PowerShell exposes this only internally (5.1 and 7 alike);
    /// without it the record is merely re-attributed to this cmdlet.
    /// </summary>
    public static ErrorRecord Preserve(ErrorRecord record)
    {
        try
        {
            s_preserveInvocationInfo?.SetValue(record, true);
        }
        catch (Exception)
        {
            // Not fatal: the error still reaches the caller.
        }

        return record;
    }

    /// <summary>Maps an exception to a record with a meaningful category.</summary>
    public static ErrorRecord FromException(Exception exception, string errorId, object? target)
    {
        ErrorCategory category = exception switch
        {
            TimeoutException => ErrorCategory.OperationTimeout,
            OperationCanceledException => ErrorCategory.OperationStopped,
            PipelineStoppedException => ErrorCategory.OperationStopped,
            ArgumentException => ErrorCategory.InvalidArgument,
            InvalidOperationException => ErrorCategory.InvalidOperation,
            IContainsErrorRecord { ErrorRecord: { } inner } => inner.CategoryInfo.Category,
            _ => ErrorCategory.NotSpecified,
        };
        return new ErrorRecord(exception, errorId, category, target);
    }

    /// <summary>
    /// The error for a task that did not complete: a failed task's own exception under
    /// <see cref="ErrorIds.TaskFailed"/> (or <see cref="ErrorIds.Timeout"/> for its own timeout),
    /// a cancelled task under <see cref="ErrorIds.TaskCancelled"/>. The target is the task.
    /// </summary>
    public static ErrorRecord ForTask(AsyncTask task)
    {
        if (task.State == WorkTaskState.Cancelled)
        {
            var cancelled = new OperationCanceledException($"Task '{task.Name}' was cancelled.");
            return new ErrorRecord(cancelled, ErrorIds.TaskCancelled, ErrorCategory.OperationStopped, task);
        }

        ErrorRecord? original = task.Error;
        Exception exception = original?.Exception ?? task.Work.Exception ?? new InvalidOperationException($"Task '{task.Name}' did not complete.");
        if (exception is TimeoutException)
        {
            return new ErrorRecord(exception, ErrorIds.Timeout, ErrorCategory.OperationTimeout, task);
        }

        ErrorCategory category = original?.CategoryInfo.Category ?? ErrorCategory.NotSpecified;
        var record = new ErrorRecord(exception, ErrorIds.TaskFailed, category, task);
        if (original?.ErrorDetails is { } details)
        {
            record.ErrorDetails = details;
        }

        if (!string.IsNullOrEmpty(original?.ScriptStackTrace))
        {
            record.ErrorDetails ??= new ErrorDetails(exception.Message);
            record.ErrorDetails.RecommendedAction = $"Task '{task.Name}' failed. Its script stack trace:{Environment.NewLine}{original!.ScriptStackTrace}";
        }

        return record;
    }

    public static ErrorRecord Timeout(TimeoutException exception, object? target) =>
        new(exception, ErrorIds.Timeout, ErrorCategory.OperationTimeout, target);

    public static ErrorRecord InvalidArgument(string message, object? target, Exception? inner = null) =>
        new(new ArgumentException(message, inner), ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument, target);

    public static ErrorRecord GroupFailed(TaskGroupException exception, object? target)
    {
        ErrorCategory category = exception.Trigger is IContainsErrorRecord { ErrorRecord: { } trigger }
            ? trigger.CategoryInfo.Category
            : ErrorCategory.NotSpecified;
        return new ErrorRecord(exception, ErrorIds.TaskGroupFailed, category, target);
    }
}
