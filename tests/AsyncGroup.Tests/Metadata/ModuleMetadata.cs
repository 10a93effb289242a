using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace AsyncGroup.Tests.Metadata;

/// <summary>
/// The staged module (<c>out/AsyncGroup/AsyncGroup.dll</c>) read through metadata only, for tests
/// that compare it with the manifest, the help files or its own declarations.
/// </summary>
/// <remarks>
/// The cmdlet assembly is compiled against PowerShell reference assemblies that cannot run outside
/// a host, so it is never executed here: a <see cref="MetadataLoadContext"/> reads its types and
/// attributes. System.Management.Automation is resolved from the PowerShellStandard.Library package
/// in the NuGet cache (the version the cmdlet project references), the framework from the running
/// runtime's directory.
/// </remarks>
public sealed class ModuleMetadata : IDisposable
{
    private const string SmaNamespace = "System.Management.Automation.";

    /// <summary>
    /// Common and risk-mitigation parameter names. They are never properties of a cmdlet class, but
    /// a cmdlet that declared one would clash with PowerShell's, so they are filtered everywhere.
    /// </summary>
    public static readonly IReadOnlySet<string> CommonParameterNames = new HashSet<string>(StringComparer.OrdinalIgnoreCase)
    {
        "Verbose", "Debug", "ErrorAction", "WarningAction", "InformationAction", "ProgressAction",
        "ErrorVariable", "WarningVariable", "InformationVariable", "OutVariable", "OutBuffer",
        "PipelineVariable", "WhatIf", "Confirm", "UseTransaction",
    };

    private static readonly Lazy<ModuleMetadata> s_shared = new(Load);

    private readonly MetadataLoadContext _context;

    private ModuleMetadata(string repoRoot, MetadataLoadContext context, Assembly assembly)
    {
        RepoRoot = repoRoot;
        _context = context;
        Assembly = assembly;
        Cmdlets = ReadCmdlets(assembly);
    }

    /// <summary>One instance for the whole test run (loading takes a moment; the result never changes).</summary>
    public static ModuleMetadata Shared => s_shared.Value;

    /// <summary>The repository root: the nearest folder above the test binaries that holds AsyncGroup.sln.</summary>
    public string RepoRoot { get; }

    /// <summary>The staged module folder, <c>out/AsyncGroup</c>.</summary>
    public string ModuleDirectory => Path.Combine(RepoRoot, "out", "AsyncGroup");

    /// <summary>The platyPS markdown folder, <c>docs/help</c>.</summary>
    public string HelpDirectory => Path.Combine(RepoRoot, "docs", "help");

    /// <summary>The module manifest at the repository root.</summary>
    public string ManifestPath => Path.Combine(RepoRoot, "AsyncGroup.psd1");

    /// <summary>AsyncGroup.dll as loaded into the metadata context.</summary>
    public Assembly Assembly { get; }

    /// <summary>Every public non-abstract class with a CmdletAttribute, sorted by cmdlet name.</summary>
    public IReadOnlyList<CmdletMetadata> Cmdlets { get; }

    /// <summary>Loads the staged module; fails with a message that says what to build when it is missing.</summary>
    public static ModuleMetadata Load()
    {
        string root = FindRepoRoot();
        string moduleDir = Path.Combine(root, "out", "AsyncGroup");
        string cmdletDll = Path.Combine(moduleDir, "AsyncGroup.dll");
        string coreDll = Path.Combine(moduleDir, "AsyncGroup.Core.dll");
        foreach (string required in new[] { cmdletDll, coreDll })
        {
            if (!File.Exists(required))
            {
                throw new FileNotFoundException(
                    $"The staged module is missing '{required}'. Build the solution first (dotnet build AsyncGroup.sln) so that out/AsyncGroup is staged.",
                    required);
            }
        }

        string sma = FindSystemManagementAutomation(root);
        var paths = new List<string>(Directory.GetFiles(RuntimeEnvironment.GetRuntimeDirectory(), "*.dll"))
        {
            sma,
            coreDll,
            cmdletDll,
        };

        var context = new MetadataLoadContext(new PathAssemblyResolver(paths));
        try
        {
            return new ModuleMetadata(root, context, context.LoadFromAssemblyPath(cmdletDll));
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>Walks up from the test binaries to the folder that holds AsyncGroup.sln.</summary>
    public static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "AsyncGroup.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException($"No folder above '{AppContext.BaseDirectory}' contains AsyncGroup.sln.");
    }

    /// <inheritdoc />
    public void Dispose() => _context.Dispose();

    /// <summary>
    /// System.Management.Automation.dll from the PowerShellStandard.Library package the cmdlet
    /// project references, in the NuGet cache (NUGET_PACKAGES, else ~/.nuget/packages).
    /// </summary>
    private static string FindSystemManagementAutomation(string repoRoot)
    {
        string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } custom
            ? custom
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string package = Path.Combine(cache, "powershellstandard.library");

        string csproj = Path.Combine(repoRoot, "src", "Cmdlets", "AsyncGroup.csproj");
        Match reference = Regex.Match(
            File.Exists(csproj) ? File.ReadAllText(csproj) : string.Empty,
            "PackageReference\\s+Include=\"PowerShellStandard\\.Library\"\\s+Version=\"([^\"]+)\"",
            RegexOptions.IgnoreCase);
        var candidates = new List<string>();
        if (reference.Success)
        {
            candidates.Add(Path.Combine(package, reference.Groups[1].Value.ToLowerInvariant()));
        }

        if (Directory.Exists(package))
        {
            candidates.AddRange(Directory.GetDirectories(package).OrderByDescending(d => d, StringComparer.Ordinal));
        }

        foreach (string versionDir in candidates)
        {
            string dll = Path.Combine(versionDir, "lib", "netstandard2.0", "System.Management.Automation.dll");
            if (File.Exists(dll))
            {
                return dll;
            }
        }

        throw new FileNotFoundException(
            $"System.Management.Automation.dll of PowerShellStandard.Library was not found under '{package}'. Restore the solution (dotnet restore AsyncGroup.sln) or set NUGET_PACKAGES.");
    }

    private static IReadOnlyList<CmdletMetadata> ReadCmdlets(Assembly assembly)
    {
        var cmdlets = new List<CmdletMetadata>();
        foreach (Type type in assembly.GetExportedTypes())
        {
            if (!type.IsClass || type.IsAbstract)
            {
                continue;
            }

            CustomAttributeData? cmdlet = Attributes(type.GetCustomAttributesData(), "CmdletAttribute").FirstOrDefault();
            if (cmdlet is null)
            {
                continue;
            }

            cmdlets.Add(new CmdletMetadata(
                type,
                (string)cmdlet.ConstructorArguments[0].Value!,
                (string)cmdlet.ConstructorArguments[1].Value!,
                Named(cmdlet, "SupportsShouldProcess") is true,
                Named(cmdlet, "DefaultParameterSetName") as string,
                ReadParameters(type),
                ReadOutputTypes(type)));
        }

        return cmdlets.OrderBy(c => c.Name, StringComparer.OrdinalIgnoreCase).ToList();
    }

    private static IReadOnlyList<ParameterMetadata> ReadParameters(Type type)
    {
        var parameters = new List<ParameterMetadata>();
        foreach (PropertyInfo property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            IList<CustomAttributeData> attributes = property.GetCustomAttributesData();
            var sets = Attributes(attributes, "ParameterAttribute")
                .Select(a => new ParameterSetMetadata(
                    Named(a, "ParameterSetName") as string ?? "__AllParameterSets",
                    Named(a, "Mandatory") is true,
                    Named(a, "Position") is int position ? position : int.MinValue,
                    Named(a, "ValueFromPipeline") is true,
                    Named(a, "ValueFromPipelineByPropertyName") is true))
                .ToList();
            if (sets.Count == 0 || CommonParameterNames.Contains(property.Name))
            {
                continue;
            }

            var aliases = Attributes(attributes, "AliasAttribute")
                .SelectMany(a => a.ConstructorArguments)
                .SelectMany(StringValues)
                .ToList();
            parameters.Add(new ParameterMetadata(
                property.Name,
                property.PropertyType,
                sets,
                aliases,
                Attributes(attributes, "SupportsWildcardsAttribute").Any()));
        }

        return parameters.OrderBy(p => p.Name, StringComparer.OrdinalIgnoreCase).ToList();
    }

    private static IReadOnlyList<string> ReadOutputTypes(Type type) =>
        Attributes(type.GetCustomAttributesData(), "OutputTypeAttribute")
            .SelectMany(a => a.ConstructorArguments)
            .SelectMany(arg => arg.Value switch
            {
                Type t => new[] { t.FullName ?? t.Name },
                string s => new[] { s },
                IEnumerable<CustomAttributeTypedArgument> items => items.Select(i => i.Value switch
                {
                    Type t => t.FullName ?? t.Name,
                    var other => other?.ToString() ?? string.Empty,
                }).ToArray(),
                _ => Array.Empty<string>(),
            })
            .ToList();

    private static IEnumerable<CustomAttributeData> Attributes(IEnumerable<CustomAttributeData> attributes, string name) =>
        attributes.Where(a => a.AttributeType.FullName == SmaNamespace + name);

    private static object? Named(CustomAttributeData attribute, string name)
    {
        foreach (CustomAttributeNamedArgument argument in attribute.NamedArguments)
        {
            if (argument.MemberName == name)
            {
                return argument.TypedValue.Value;
            }
        }

        return null;
    }

    private static IEnumerable<string> StringValues(CustomAttributeTypedArgument argument) => argument.Value switch
    {
        string s => new[] { s },
        IEnumerable<CustomAttributeTypedArgument> items => items.Select(i => i.Value as string).OfType<string>(),
        _ => Array.Empty<string>(),
    };
}

/// <summary>A cmdlet class as declared by its attributes.</summary>
/// <param name="Type">The class, loaded for metadata only.</param>
/// <param name="Verb">The CmdletAttribute verb.</param>
/// <param name="Noun">The CmdletAttribute noun.</param>
/// <param name="SupportsShouldProcess">True when PowerShell adds -WhatIf and -Confirm.</param>
/// <param name="DefaultParameterSetName">The declared default parameter set, if any.</param>
/// <param name="Parameters">Its parameters (inherited ones included, common ones excluded), by name.</param>
/// <param name="OutputTypes">The type names its OutputTypeAttributes declare.</param>
public sealed record CmdletMetadata(
    Type Type,
    string Verb,
    string Noun,
    bool SupportsShouldProcess,
    string? DefaultParameterSetName,
    IReadOnlyList<ParameterMetadata> Parameters,
    IReadOnlyList<string> OutputTypes)
{
    /// <summary>Verb-Noun.</summary>
    public string Name => $"{Verb}-{Noun}";

    /// <summary>The parameter names, as a case-insensitive set.</summary>
    public IReadOnlySet<string> ParameterNames => new HashSet<string>(Parameters.Select(p => p.Name), StringComparer.OrdinalIgnoreCase);

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>One public property with at least one ParameterAttribute.</summary>
/// <param name="Name">The parameter name.</param>
/// <param name="Type">The property type (a metadata-only type).</param>
/// <param name="Sets">One entry per ParameterAttribute.</param>
/// <param name="Aliases">The AliasAttribute names.</param>
/// <param name="SupportsWildcards">True when it carries SupportsWildcardsAttribute.</param>
public sealed record ParameterMetadata(
    string Name,
    Type Type,
    IReadOnlyList<ParameterSetMetadata> Sets,
    IReadOnlyList<string> Aliases,
    bool SupportsWildcards);

/// <summary>What one ParameterAttribute says.</summary>
/// <param name="Name">The parameter set (<c>__AllParameterSets</c> when none is named).</param>
/// <param name="Mandatory">Mandatory in this set.</param>
/// <param name="Position">The position, or <see cref="int.MinValue"/> when named only.</param>
/// <param name="ValueFromPipeline">Binds pipeline objects by value.</param>
/// <param name="ValueFromPipelineByPropertyName">Binds pipeline objects by property name.</param>
public sealed record ParameterSetMetadata(
    string Name,
    bool Mandatory,
    int Position,
    bool ValueFromPipeline,
    bool ValueFromPipelineByPropertyName);
