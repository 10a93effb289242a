using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Runtime.CompilerServices;

namespace AsyncGroup.Commands;

/// <summary>
/// Refuses a string given where a script block is expected, saying how to write it: PowerShell's
/// own message ("Cannot convert the value of type String to type ScriptBlock") does not.
/// Everything else passes unchanged to the usual conversion.
/// </summary>
internal sealed class ScriptBlockArgumentAttribute : ArgumentTransformationAttribute
{
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        foreach (object? item in ArgumentItems.Of(inputData))
        {
            if (item is string text)
            {
                throw new ArgumentTransformationMetadataException(
                    $"A script block is expected, not the string {ArgumentItems.Quote(text)}. Put the command in braces instead: {{ {ArgumentItems.Shorten(text)} }}.");
            }
        }

        return inputData;
    }
}

/// <summary>
/// Checks a -Task argument: tasks (one or many) pass unchanged; a string (most likely a task's
/// name) is refused with a message that says what is expected and how to select tasks by name
/// or id; anything else is left to PowerShell's conversion.
/// </summary>
/// <remarks>
/// With <see cref="DeferToCommand"/> (Invoke-Gather) a non-task becomes a one-element array
/// holding null instead of an error, and the cmdlet reports it once. Without that, objects piped
/// to a command whose script block was forgotten (<c>1..3 | Invoke-Gather</c>) would each fail to
/// bind to -Task, one error per object, and the real mistake would go unsaid.
/// </remarks>
internal sealed class AsyncTaskArgumentAttribute : ArgumentTransformationAttribute
{
    private static readonly ConditionalWeakTable<object, Rejected> s_rejected = new();

    /// <summary>The command reports a non-task itself (see <see cref="RejectedIn"/>).</summary>
    public bool DeferToCommand { get; set; }

    /// <summary>The command has -Name and -Id parameters to point to.</summary>
    public bool HasNameAndId { get; set; }

    /// <summary>True when <paramref name="value"/> is the marker this attribute made for a deferred non-task.</summary>
    public static bool IsMarker(AsyncTask?[] value) => s_rejected.TryGetValue(value, out _);

    /// <summary>What the argument held instead of tasks, when <paramref name="value"/> is a deferred marker.</summary>
    public static Rejected? RejectedIn(AsyncTask?[]? value) =>
        value is not null && s_rejected.TryGetValue(value, out Rejected? rejected) ? rejected : null;

    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        if (inputData is null)
        {
            return null; // the parameter's own null check speaks
        }

        List<object?> items = ArgumentItems.Of(inputData).ToList();
        if (items.All(item => item is AsyncTask))
        {
            return inputData; // an empty list too: the parameter's own validation speaks
        }

        object? stray = items.First(item => item is not AsyncTask);

        var rejected = new Rejected(stray?.GetType().FullName, stray as string);
        if (DeferToCommand)
        {
            var marker = new AsyncTask?[] { null };
            s_rejected.Add(marker, rejected);
            return marker;
        }

        if (rejected.Text is null)
        {
            // Left to the usual conversion, whose failure lets the binder try the next parameter:
            // an object with an Id property binds to -Id (ByPropertyName).
            return inputData;
        }

        throw new ArgumentTransformationMetadataException(ExpectedTasksMessage(rejected, HasNameAndId));
    }

    /// <summary>"Expected AsyncTask objects … but got the string …", with where to find tasks by name.</summary>
    public static string ExpectedTasksMessage(Rejected rejected, bool hasNameAndId)
    {
        string quoted = ArgumentItems.QuoteIfNeeded(rejected.Text ?? string.Empty);
        return $"Expected AsyncTask objects (from Start-AsyncTask or Get-AsyncTask), but got {rejected.Describe(showText: true)}."
            + (hasNameAndId
                ? $" To select tasks by name, use -Name {quoted} (or Get-AsyncTask -Name {quoted}); by id, use -Id."
                : $" To select tasks by name, pass (Get-AsyncTask -Name {quoted}).");
    }

    /// <summary>What stood where tasks were expected: its type, and its text when it was a string.</summary>
    internal sealed class Rejected
    {
        public Rejected(string? typeName, string? text)
        {
            TypeName = typeName;
            Text = text;
        }

        public string? TypeName { get; }

        public string? Text { get; }

        /// <summary>"the string 'x'" (only when <paramref name="showText"/>), "an object of type T" or "a null".</summary>
        public string Describe(bool showText) =>
            Text is not null && showText ? $"the string {ArgumentItems.Quote(Text)}"
            : TypeName is not null ? $"an object of type {TypeName}"
            : "a null";
    }
}

/// <summary>
/// The validation of a -Task list whose non-tasks the command reports itself
/// (<see cref="AsyncTaskArgumentAttribute.DeferToCommand"/>): null, an empty list and null items
/// are refused, as ValidateNotNullOrEmpty would, except the marker of a deferred non-task.
/// </summary>
internal sealed class ValidateTaskListAttribute : ValidateArgumentsAttribute
{
    protected override void Validate(object arguments, EngineIntrinsics engineIntrinsics)
    {
        if (arguments is AsyncTask?[] list && AsyncTaskArgumentAttribute.IsMarker(list))
        {
            return;
        }

        List<object?> items = ArgumentItems.Of(arguments).ToList();
        if (arguments is null || items.Count == 0 || items.Any(item => item is null))
        {
            throw new ValidationMetadataException("The argument is null or empty, or holds a null. Give one or more AsyncTask objects.");
        }
    }
}

/// <summary>Helpers shared by the argument checks.</summary>
internal static class ArgumentItems
{
    /// <summary>The items of an argument: its elements when it is a collection (not a string), else itself; PSObjects unwrapped.</summary>
    public static IEnumerable<object?> Of(object? inputData)
    {
        object? value = Unwrap(inputData);
        if (value is IEnumerable items and not string)
        {
            foreach (object? item in items)
            {
                yield return Unwrap(item);
            }

            yield break;
        }

        yield return value;
    }

    /// <summary>A string in single quotes, shortened when long.</summary>
    public static string Quote(string text) => "'" + Shorten(text).Replace("'", "''") + "'";

    /// <summary>A name as it would be typed as an argument: quoted only when it has to be.</summary>
    public static string QuoteIfNeeded(string name) =>
        name.Length == 0 || name.IndexOfAny(new[] { ' ', '\'', '"', '$', '`', ';', ',', '(', ')', '{', '}', '@', '#', '|', '&', '<', '>' }) >= 0 ? Quote(name) : name;

    public static string Shorten(string text) => text.Length <= 80 ? text : text.Substring(0, 77) + "...";

    private static object? Unwrap(object? value) => value is PSObject pso ? pso.BaseObject : value;
}
