using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using System.Text;

namespace AsyncGroup.Execution;

/// <summary>
/// What every worker of one cmdlet call needs from the caller's session, captured once on the
/// pipeline thread: location, language mode, preference variables, copied functions, modules and
/// the initialization script. Immutable.
/// </summary>
internal sealed class WorkerSettings
{
    // Preferences no common parameter of these cmdlets sets: workers get the caller's as they are.
    private static readonly string[] s_otherPreferenceNames = { "ConfirmPreference", "WhatIfPreference" };

    public WorkerSettings(
        string fileSystemLocation,
        string? providerLocation,
        PSLanguageMode languageMode,
        IReadOnlyList<KeyValuePair<string, object?>> preferences,
        IReadOnlyList<KeyValuePair<string, string>> functions,
        IReadOnlyList<string> modules,
        string? initializationScript)
    {
        FileSystemLocation = fileSystemLocation;
        ProviderLocation = providerLocation;
        LanguageMode = languageMode;
        Preferences = preferences;
        Functions = functions;
        Modules = modules;
        InitializationScript = initializationScript;
    }

    /// <summary>The caller's current file-system location (the fallback when the provider location does not exist in a worker).</summary>
    public string FileSystemLocation { get; }

    /// <summary>The caller's current location when it is not in the file system (e.g. <c>Env:\</c>).</summary>
    public string? ProviderLocation { get; }

    public PSLanguageMode LanguageMode { get; }

    public IReadOnlyList<KeyValuePair<string, object?>> Preferences { get; }

    /// <summary>Function name → definition text, copied from the caller (-Function).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Functions { get; }

    /// <summary>
    /// Modules imported into each worker, part of the pool key: this module itself (by the path it
    /// was loaded from) first, then -ImportModule's.
    /// </summary>
    public IReadOnlyList<string> Modules { get; }

    public string? InitializationScript { get; }

    /// <summary>Captures the caller's session as seen from <paramref name="cmdlet"/>.</summary>
    /// <exception cref="ArgumentException">A function in <paramref name="functionNames"/> does not exist.</exception>
    public static WorkerSettings Capture(PSCmdlet cmdlet, string[]? functionNames, string[]? modules, ScriptBlock? initializationScript)
    {
        SessionState session = cmdlet.SessionState;
        PathInfo current = session.Path.CurrentLocation;
        string fileSystem = FileSystemProviderPath(session.Path.CurrentFileSystemLocation);
        string? provider = string.Equals(current.Provider.Name, "FileSystem", StringComparison.OrdinalIgnoreCase) ? null : current.Path;

        var preferences = new List<KeyValuePair<string, object?>>();
        foreach (var preference in CallerPreferences.ForWorkers(cmdlet)
            .Concat(s_otherPreferenceNames.Select(name => new KeyValuePair<string, object?>(name, cmdlet.GetVariableValue(name)))))
        {
            if (preference.Value is not null)
            {
                preferences.Add(preference);
            }
        }

        var functions = new List<KeyValuePair<string, string>>();
        foreach (string name in functionNames ?? Array.Empty<string>())
        {
            CommandInfo? command = cmdlet.InvokeCommand.GetCommand(name, CommandTypes.Function | CommandTypes.Filter);
            if (command is not FunctionInfo function)
            {
                throw new ArgumentException($"The function '{name}' passed to -Function was not found in the caller's session.");
            }

            // A filter is a function whose body is a process block.
            string definition = function is FilterInfo ? "process {" + function.Definition + "\n}" : function.Definition;
            functions.Add(new KeyValuePair<string, string>(function.Name, definition));
        }

        // Every task can use AsyncGroup's cmdlets (nested gathers, tasks, groups): each worker
        // imports the very module the caller loaded, however it was imported (by name, by path,
        // nested in another module). -ImportModule AsyncGroup by name adds nothing: a second
        // AsyncGroup found in PSModulePath could be another version.
        string own = OwnModulePath(cmdlet);
        string[] moduleList = new[] { own }.Concat((modules ?? Array.Empty<string>())
            .Where(m => !string.IsNullOrWhiteSpace(m) && !string.Equals(m.Trim(), OwnModuleName, StringComparison.OrdinalIgnoreCase))
            .Select(m => ResolveModule(cmdlet, m))
            .Where(m => !string.Equals(m, own, StringComparison.OrdinalIgnoreCase))
            .Distinct(StringComparer.OrdinalIgnoreCase)
            .OrderBy(m => m, StringComparer.OrdinalIgnoreCase))
            .ToArray();

        return new WorkerSettings(
            fileSystem,
            provider,
            session.LanguageMode,
            preferences,
            functions,
            moduleList,
            initializationScript is null ? null : ScriptPlan.BodyText(initializationScript));
    }

    private const string OwnModuleName = "AsyncGroup";

    // Per drive, the last location translated by FileSystemProviderPath (see there). Weak keys:
    // an entry goes with its drive, and so with the runspace that made it.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<PSDriveInfo, LastLocation> s_lastLocations = new();

    /// <summary>
    /// The provider path of a file-system location. PowerShell resolves it anew on every read,
    /// checking the drive as it goes (on Linux that reads the mount table): about a tenth of a
    /// millisecond per call, a sixth of a warm small gather. The translation depends only on the
    /// location's path and its drive (a drive's root never changes; a drive removed and made
    /// again is another object), so each drive keeps its last answer for the same path.
    /// </summary>
    private static string FileSystemProviderPath(PathInfo location)
    {
        if (location.Drive is not { } drive)
        {
            return location.ProviderPath;
        }

        LastLocation last = s_lastLocations.GetValue(drive, static _ => new LastLocation());
        if (System.Threading.Volatile.Read(ref last.Entry) is { } entry && string.Equals(entry.Item1, location.Path, StringComparison.Ordinal))
        {
            return entry.Item2;
        }

        string providerPath = location.ProviderPath;
        System.Threading.Volatile.Write(ref last.Entry, Tuple.Create(location.Path, providerPath));
        return providerPath;
    }

    private sealed class LastLocation
    {
        public Tuple<string, string>? Entry; // the path, and its provider path
    }

    /// <summary>
    /// Where the caller's AsyncGroup was loaded from (its manifest, or its assembly when it was
    /// imported as one): importing that path into a worker adds the module the assembly already
    /// loaded in this process, so tasks run the caller's version, listed by Get-Command and Get-Module.
    /// </summary>
    private static string OwnModulePath(PSCmdlet cmdlet)
    {
        System.Reflection.Assembly own = typeof(WorkerSettings).Assembly;
        if (cmdlet.MyInvocation.MyCommand?.Module is { } module && !string.IsNullOrEmpty(module.Path) && System.IO.File.Exists(module.Path))
        {
            // A module imported through its manifest reports the assembly as its path and the
            // manifest's version: import the manifest then, or the worker's version would differ.
            string manifestBeside = System.IO.Path.Combine(module.ModuleBase, module.Name + ".psd1");
            bool fromManifest = module.Path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)
                && module.Version != own.GetName().Version
                && System.IO.File.Exists(manifestBeside);
            return fromManifest ? manifestBeside : module.Path;
        }

        // Not loaded as a module (the assembly was loaded another way): the manifest beside it, or the assembly itself.
        return OwnModulePathBesideAssembly();
    }

    /// <summary>
    /// The manifest beside this assembly, or the assembly itself: what <see cref="OwnModulePath"/>
    /// gives for a module imported through that manifest (or not imported as a module at all).
    /// </summary>
    internal static string OwnModulePathBesideAssembly()
    {
        string assembly = typeof(WorkerSettings).Assembly.Location;
        string manifest = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(assembly) ?? string.Empty, OwnModuleName + ".psd1");
        return System.IO.File.Exists(manifest) ? manifest : assembly;
    }

    /// <summary>
    /// A module for -ImportModule, checked in the caller's session before any task starts: a path
    /// is resolved against the caller's location (workers start elsewhere), a name must be
    /// loaded or available.
    /// </summary>
    private static string ResolveModule(PSCmdlet cmdlet, string module)
    {
        bool isPath = module.IndexOfAny(new[] { '/', '\\' }) >= 0 || module.StartsWith(".", StringComparison.Ordinal)
            || module.EndsWith(".psd1", StringComparison.OrdinalIgnoreCase) || module.EndsWith(".psm1", StringComparison.OrdinalIgnoreCase)
            || module.EndsWith(".dll", StringComparison.OrdinalIgnoreCase);
        if (isPath)
        {
            string full = cmdlet.SessionState.Path.GetUnresolvedProviderPathFromPSPath(module);
            if (!System.IO.File.Exists(full) && !System.IO.Directory.Exists(full))
            {
                throw new ArgumentException($"The module '{module}' passed to -ImportModule was not found (looked for '{full}').");
            }

            return full;
        }

        var found = cmdlet.InvokeCommand.InvokeScript(
            "param($n) @(Get-Module -Name $n) + @(Get-Module -ListAvailable -Name $n) | Select-Object -First 1",
            module);
        if (found.Count == 0 || found[0] is null)
        {
            throw new ArgumentException($"The module '{module}' passed to -ImportModule is neither loaded nor available in PSModulePath.");
        }

        return module;
    }
}

/// <summary>
/// One script block made ready to cross runspaces: its text (re-created in each worker, never
/// invoked on another runspace's thread), its <c>$using:</c> values, and the settings of the call.
/// Immutable; built on the pipeline thread.
/// </summary>
internal sealed class ScriptPlan
{
    internal const string UsingPrefix = "__ag_using_";

    private ScriptPlan(string displayText, string workerText, IReadOnlyList<KeyValuePair<string, object?>> usingValues, WorkerSettings settings)
    {
        DisplayText = displayText;
        WorkerText = workerText;
        UsingValues = usingValues;
        Settings = settings;
    }

    /// <summary>The script block as the user wrote it.</summary>
    public string DisplayText { get; }

    /// <summary>What workers parse: the body with every <c>$using:</c> expression rewritten to a variable.</summary>
    public string WorkerText { get; }

    /// <summary>Worker variable name → value for every <c>$using:</c> expression.</summary>
    public IReadOnlyList<KeyValuePair<string, object?>> UsingValues { get; }

    public WorkerSettings Settings { get; }

    /// <summary>Builds the plan, evaluating every <c>$using:</c> expression in the caller's scope.</summary>
    /// <exception cref="ArgumentException">The script block is empty, or a $using: value is unset or is a script block.</exception>
    public static ScriptPlan Create(PSCmdlet cmdlet, ScriptBlock scriptBlock, WorkerSettings settings)
    {
        if (scriptBlock is null)
        {
            throw new ArgumentException("The script block cannot be null.");
        }

        var ast = (ScriptBlockAst)scriptBlock.Ast;
        string body = BodyText(scriptBlock);
        if (string.IsNullOrWhiteSpace(body) || IsEmpty(ast))
        {
            throw new ArgumentException("The script block is empty: give it something to run.");
        }

        int bodyStart = BodyStartOffset(ast);
        var usings = ast.FindAll(a => a is UsingExpressionAst u && !IsHandedOver(u, ast), searchNestedScriptBlocks: true)
            .Cast<UsingExpressionAst>()
            .OrderBy(u => u.Extent.StartOffset)
            .ToList();

        var values = new List<KeyValuePair<string, object?>>();
        var byExpression = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var text = new StringBuilder(body.Length + 16);
        int position = 0;
        foreach (UsingExpressionAst usingAst in usings)
        {
            string expression = usingAst.Extent.Text;
            if (!byExpression.TryGetValue(expression, out string? variable))
            {
                variable = UsingPrefix + values.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
                byExpression.Add(expression, variable);
                values.Add(new KeyValuePair<string, object?>(variable, EvaluateUsing(cmdlet, usingAst)));
            }

            int start = usingAst.Extent.StartOffset - bodyStart;
            text.Append(body, position, start - position).Append('$').Append(variable);
            position = usingAst.Extent.EndOffset - bodyStart;
        }

        text.Append(body, position, body.Length - position);
        bool callsNothing = CallsNothingIn(ast);
        return new ScriptPlan(body, PositionPadding(ast) + text, values, settings)
        {
            TouchesSharedScopes = MayTouchSharedScopes(ast),
            HasProcessBlock = ast.ProcessBlock is not null,
            CallsNothing = callsNothing,
            NeedsOwnScope = !callsNothing || MayDefineInItsScope(ast),
        };
    }

    /// <summary>
    /// True when the script block may leave something in the global or script scope ($global:,
    /// $script:, function global:, Set-Variable, Import-Module …): only then does a worker pay for
    /// cleaning those scopes after each item. Every task's own scope is fresh regardless.
    /// </summary>
    public bool TouchesSharedScopes { get; private set; }

    /// <summary>
    /// True when the call may change session-wide state (aliases, drives, modules, global
    /// variables): its script block may, or it copies functions or runs an initialization script,
    /// whose code is not inspected. Only then does a worker restore aliases, drives and modules
    /// when the call ends.
    /// </summary>
    public bool MayChangeSessionState => TouchesSharedScopes || Settings.Functions.Count > 0 || Settings.InitializationScript is not null;

    /// <summary>
    /// True when the script block runs no command and calls no method (say, <c>{ $_ * 2 }</c>) and
    /// names no variable outside its own scope: it cannot change the session beyond the scope it
    /// runs in, so with no copied functions and no initialization script a worker skips the
    /// clean-up after the call.
    /// </summary>
    public bool LeavesSessionAlone => CallsNothing && !MayChangeSessionState;

    private bool CallsNothing { get; set; }

    private static bool CallsNothingIn(ScriptBlockAst ast) =>
        ast.Find(a => a switch
        {
            CommandAst or InvokeMemberExpressionAst => true,
            VariableExpressionAst v => v.VariablePath.IsGlobal || v.VariablePath.IsScript || v.VariablePath.IsDriveQualified
                || s_sessionVariables.Contains(v.VariablePath.UserPath),
            _ => false,
        }, searchNestedScriptBlocks: true) is null;

    /// <summary>
    /// False when the script block can define nothing in the scope it runs in — no assignment,
    /// command, method call, function, loop or switch (they set <c>$foreach</c>, <c>$switch</c>),
    /// <c>-match</c> (it sets <c>$Matches</c>), param block — and reads no variable that a script
    /// block's own scope sets (<c>$MyInvocation</c>, <c>$input</c> …): say, <c>{ $_ * 2 }</c>.
    /// Its tasks then run in the task loop's scope, not each in a new one: to such a block the two
    /// are the same, and a new scope per item cost PowerShell about 900 bytes and its clean-up.
    /// </summary>
    public bool NeedsOwnScope { get; private set; } = true;

    /// <summary>The part of <see cref="NeedsOwnScope"/> beyond <see cref="CallsNothing"/>.</summary>
    private static bool MayDefineInItsScope(ScriptBlockAst ast) =>
        ast.ParamBlock is not null || ast.DynamicParamBlock is not null || ast.BeginBlock is not null || ast.ProcessBlock is not null
        || ast.Find(a => a switch
        {
            AssignmentStatementAst or FunctionDefinitionAst or TypeDefinitionAst or UsingStatementAst or DataStatementAst
                or TrapStatementAst or ForEachStatementAst or ForStatementAst or SwitchStatementAst => true,
            UnaryExpressionAst u => u.TokenKind is TokenKind.PlusPlus or TokenKind.MinusMinus or TokenKind.PostfixPlusPlus or TokenKind.PostfixMinusMinus,
            BinaryExpressionAst b => b.Operator is TokenKind.Imatch or TokenKind.Inotmatch or TokenKind.Cmatch or TokenKind.Cnotmatch,
            VariableExpressionAst v => s_ownScopeVariables.Contains(v.VariablePath.UserPath),
            _ => false,
        }, searchNestedScriptBlocks: true) is not null;

    // Variables a script block's invocation sets in its own scope: read in the loop's scope, they
    // would be the loop's.
    private static readonly HashSet<string> s_ownScopeVariables = new(StringComparer.OrdinalIgnoreCase)
    {
        "MyInvocation", "input", "PSScriptRoot", "PSCommandPath", "PSBoundParameters", "args", "this",
    };

    /// <summary>True when the script block has a process block: its task's input is piped in, so that block binds it to <c>$_</c>.</summary>
    public bool HasProcessBlock { get; private set; }

    // Commands that run a script block they are given elsewhere (another runspace, thread or
    // process) and bind its $using: themselves, where they run; module qualifiers are stripped.
    private static readonly HashSet<string> s_concurrencyCommands = new(StringComparer.OrdinalIgnoreCase)
    {
        "Invoke-Gather", "Start-AsyncTask", "Start-TaskGroup", "Start-ThreadJob", "Start-Job", "sajb", "Invoke-Command", "icm",
    };

    // ForEach-Object and its aliases hand their script block over only with -Parallel.
    private static readonly HashSet<string> s_forEachCommands = new(StringComparer.OrdinalIgnoreCase) { "ForEach-Object", "%", "foreach" };

    /// <summary>
    /// True when <paramref name="usingAst"/> lies in a script block that the script hands to a
    /// concurrency command (a nested Invoke-Gather, Start-AsyncTask, ForEach-Object -Parallel,
    /// Start-ThreadJob, Start-Job, Invoke-Command…): that command binds it in the task, from the
    /// task's variables, as PowerShell binds it for those commands. A plain nested block
    /// (<c>Where-Object { }</c>, <c>&amp; { }</c>) reads the caller's value like the rest of the block.
    /// </summary>
    private static bool IsHandedOver(UsingExpressionAst usingAst, ScriptBlockAst root)
    {
        for (Ast? node = usingAst.Parent; node is not null && !ReferenceEquals(node, root); node = node.Parent)
        {
            if (node is ScriptBlockExpressionAst block && ArgumentOf(block) is { } command && IsConcurrencyCommand(command))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The command a script block literal is an argument of (directly, in an array, in parentheses…), if any.</summary>
    private static CommandAst? ArgumentOf(ScriptBlockExpressionAst block)
    {
        for (Ast? node = block.Parent; node is not null; node = node.Parent)
        {
            switch (node)
            {
                case CommandAst command:
                    return command;
                case ScriptBlockAst:
                case StatementBlockAst { Parent: not ArrayExpressionAst and not SubExpressionAst }:
                    return null;
            }
        }

        return null;
    }

    private static bool IsConcurrencyCommand(CommandAst command)
    {
        string? name = command.GetCommandName();
        if (string.IsNullOrEmpty(name))
        {
            return false;
        }

        name = name!.Substring(name.LastIndexOf('\\') + 1);
        if (s_concurrencyCommands.Contains(name))
        {
            return true;
        }

        return s_forEachCommands.Contains(name) && command.CommandElements.OfType<CommandParameterAst>().Any(p =>
            p.ParameterName.Length >= 2 && "Parallel".StartsWith(p.ParameterName, StringComparison.OrdinalIgnoreCase));
    }

    private static readonly HashSet<string> s_scopeCommands = new(StringComparer.OrdinalIgnoreCase)
    {
        "Set-Variable", "New-Variable", "sv", "nv", "Set-Item", "New-Item", "si", "ni",
        "Import-Module", "ipmo", "Set-Alias", "New-Alias", "sal", "nal", "Invoke-Expression", "iex", ".",
        "New-PSDrive", "ndr", "mount", "Remove-PSDrive", "rdr", "Remove-Item", "ri", "rm", "del", "Remove-Variable", "rv",
        "Clear-Variable", "clv", "Remove-Alias", "Remove-Module", "rmo", "New-Module", "nmo",
    };

    // Session-wide variables a script changes in place or through the engine, without a scope prefix.
    private static readonly HashSet<string> s_sessionVariables = new(StringComparer.OrdinalIgnoreCase)
    {
        "PSDefaultParameterValues", "ExecutionContext", "Host",
    };

    private static bool MayTouchSharedScopes(ScriptBlockAst ast) =>
        ast.Find(a => a switch
        {
            VariableExpressionAst v => v.VariablePath.IsGlobal || v.VariablePath.IsScript || s_sessionVariables.Contains(v.VariablePath.UserPath),
            FunctionDefinitionAst f => f.Name.IndexOf(':') >= 0,
            CommandAst c => c.InvocationOperator == TokenKind.Dot || s_scopeCommands.Contains(c.GetCommandName() ?? string.Empty),
            _ => false,
        }, searchNestedScriptBlocks: true) is not null;

    /// <summary>
    /// Blank lines and spaces that put the body, once parsed in the worker, at the line and column
    /// where it stands in the caller's script: a task's error positions and stack trace then name
    /// the caller's own line numbers.
    /// </summary>
    private static string PositionPadding(ScriptBlockAst ast)
    {
        IScriptExtent extent = ast.Extent;
        bool braces = HasBraces(ast, extent.Text);
        int lines = Math.Max(0, extent.StartLineNumber - 1);
        int columns = Math.Max(0, extent.StartColumnNumber - 1 + (braces ? 1 : 0));
        return lines == 0 && columns == 0 ? string.Empty : new string('\n', lines) + new string(' ', columns);
    }

    /// <summary>The text between a literal's braces (or the whole text of a created script block).</summary>
    internal static string BodyText(ScriptBlock scriptBlock)
    {
        var ast = (ScriptBlockAst)scriptBlock.Ast;
        string text = ast.Extent.Text;
        return HasBraces(ast, text) ? text.Substring(1, text.Length - 2) : text;
    }

    private static int BodyStartOffset(ScriptBlockAst ast) =>
        ast.Extent.StartOffset + (HasBraces(ast, ast.Extent.Text) ? 1 : 0);

    private static bool HasBraces(ScriptBlockAst ast, string text) =>
        ast.Parent is not null && text.Length >= 2 && text[0] == '{' && text[text.Length - 1] == '}';

    private static bool IsEmpty(ScriptBlockAst ast) =>
        ast.ParamBlock is null && ast.DynamicParamBlock is null && ast.BeginBlock is null && ast.ProcessBlock is null
        && (ast.EndBlock is null || ast.EndBlock.Statements.Count == 0) && ast.EndBlock?.Traps is not { Count: > 0 }
        && !HasOtherNamedBlocks(ast);

    // PowerShell 7.3 added a clean block; look it up by name so the 5.1 reference still compiles.
    private static bool HasOtherNamedBlocks(ScriptBlockAst ast) =>
        ast.GetType().GetProperty("CleanBlock")?.GetValue(ast) is not null;

    private static object? EvaluateUsing(PSCmdlet cmdlet, UsingExpressionAst usingAst)
    {
        VariableExpressionAst variable = UsingExpressionAst.ExtractUsingVariable(usingAst);
        string name = variable.VariablePath.UserPath;
        object? value;
        if (usingAst.SubExpression is VariableExpressionAst && !name.Contains(':'))
        {
            PSVariable? psVariable = cmdlet.SessionState.PSVariable.Get(name);
            if (psVariable is null)
            {
                throw new ArgumentException(
                    $"The value of the using variable '{usingAst.Extent.Text}' cannot be retrieved because it has not been set in the caller's session.");
            }

            value = psVariable.Value;
        }
        else
        {
            // Index and member access ($using:a[0], $using:h.Key) and drive-qualified names
            // ($using:env:PATH): evaluate the same expression without 'using:' in the caller's scope.
            string expression = usingAst.SubExpression.Extent.Text;
            int colon = expression.IndexOf("using:", StringComparison.OrdinalIgnoreCase);
            if (colon >= 0)
            {
                expression = expression.Remove(colon, "using:".Length);
            }

            var results = cmdlet.InvokeCommand.InvokeScript(expression);
            value = results.Count switch
            {
                0 => null,
                1 => results[0],
                _ => results.ToArray(),
            };
        }

        object? inner = value is PSObject pso ? pso.BaseObject : value;
        if (inner is ScriptBlock)
        {
            throw new UsingScriptBlockException(
                $"The using variable '{usingAst.Extent.Text}' holds a script block. Script blocks cannot be passed with $using: because they would run on another runspace's thread; pass its text and re-create it with [scriptblock]::Create().");
        }

        return value;
    }
}

/// <summary>A <c>$using:</c> value is a script block: refused, as PowerShell refuses it for ForEach-Object -Parallel.</summary>
internal sealed class UsingScriptBlockException : ArgumentException
{
    public UsingScriptBlockException(string message)
        : base(message)
    {
    }
}
