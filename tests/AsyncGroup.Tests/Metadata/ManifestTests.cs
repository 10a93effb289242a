using System.Text.RegularExpressions;
using System.Xml.Linq;
using Xunit;

namespace AsyncGroup.Tests.Metadata;

/// <summary>
/// The compiled cmdlets (read through metadata, no PowerShell host) against the manifest, the
/// format file and the parameter conventions of the spec.
/// </summary>
public class ManifestTests
{
    private static ModuleMetadata Module => ModuleMetadata.Shared;

    private static string Manifest => File.ReadAllText(Module.ManifestPath);

    [Fact]
    public void Manifest_exports_exactly_the_compiled_cmdlets_without_wildcards()
    {
        string[] exported = ArrayEntries("CmdletsToExport");
        Assert.DoesNotContain(exported, e => e.Contains('*'));
        var compiled = Module.Cmdlets.Select(c => c.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var missing = compiled.Except(exported, StringComparer.OrdinalIgnoreCase).ToList();
        var stale = exported.Except(compiled, StringComparer.OrdinalIgnoreCase).ToList();
        Assert.True(missing.Count == 0 && stale.Count == 0,
            $"CmdletsToExport differs from the compiled cmdlets. Not exported: [{string.Join(", ", missing)}]; exported but not compiled: [{string.Join(", ", stale)}].");
    }

    [Fact]
    public void Manifest_exports_nothing_else()
    {
        foreach (string key in new[] { "FunctionsToExport", "VariablesToExport", "AliasesToExport" })
        {
            Assert.True(ArrayEntries(key).Length == 0, $"{key} should be @() but lists: {string.Join(", ", ArrayEntries(key))}");
        }
    }

    [Fact]
    public void Manifest_targets_Windows_PowerShell_and_PowerShell_7()
    {
        Assert.Matches(new Regex(@"RootModule\s*=\s*'AsyncGroup\.dll'"), Manifest);
        Assert.Matches(new Regex(@"PowerShellVersion\s*=\s*'5\.1'"), Manifest);
        string[] editions = ArrayEntries("CompatiblePSEditions");
        Assert.Contains("Desktop", editions);
        Assert.Contains("Core", editions);
        string[] tags = ArrayEntries("Tags");
        Assert.Contains("PSEdition_Desktop", tags);
        Assert.Contains("PSEdition_Core", tags);
    }

    [Fact]
    public void Every_cmdlet_declares_an_output_type()
    {
        var without = Module.Cmdlets.Where(c => c.OutputTypes.Count == 0).Select(c => c.Name).ToList();
        Assert.True(without.Count == 0, $"Cmdlets without [OutputType]: {string.Join(", ", without)}");
    }

    [Fact]
    public void Every_cmdlet_class_is_sealed_and_named_after_its_verb_and_noun()
    {
        foreach (CmdletMetadata cmdlet in Module.Cmdlets)
        {
            Assert.True(cmdlet.Type.IsSealed, $"{cmdlet.Type.FullName} should be sealed.");
            Assert.Equal($"AsyncGroup.Commands.{cmdlet.Verb}{cmdlet.Noun}Command", cmdlet.Type.FullName);
        }
    }

    [Fact]
    public void Cmdlets_that_take_tasks_take_them_at_position_zero_and_from_the_pipeline()
    {
        var takers = Module.Cmdlets.Where(c => c.ParameterNames.Contains("Task")).ToList();
        Assert.NotEmpty(takers);
        foreach (CmdletMetadata cmdlet in takers)
        {
            ParameterMetadata task = cmdlet.Parameters.Single(p => p.Name == "Task");
            Assert.Equal("AsyncGroup.AsyncTask[]", task.Type.FullName);
            Assert.True(task.Sets.Any(s => s.Position == 0 && s.ValueFromPipeline), $"{cmdlet.Name} -Task should be at position 0 and take pipeline input.");
        }
    }

    [Fact]
    public void Timeouts_are_seconds_as_double_and_throttle_limits_are_integers()
    {
        foreach (CmdletMetadata cmdlet in Module.Cmdlets)
        {
            foreach (ParameterMetadata p in cmdlet.Parameters.Where(p => p.Name.EndsWith("Timeout", StringComparison.Ordinal)))
            {
                Assert.True(p.Type.FullName == "System.Double", $"{cmdlet.Name} -{p.Name} is {p.Type.FullName}, expected System.Double (seconds).");
            }

            foreach (ParameterMetadata p in cmdlet.Parameters.Where(p => p.Name == "ThrottleLimit"))
            {
                Assert.Equal("System.Int32", p.Type.FullName);
            }
        }
    }

    [Fact]
    public void Format_file_is_listed_staged_and_has_a_view_for_each_public_result_type()
    {
        string[] formats = ArrayEntries("FormatsToProcess");
        Assert.Contains("AsyncGroup.format.ps1xml", formats);
        string staged = Path.Combine(Module.ModuleDirectory, "AsyncGroup.format.ps1xml");
        Assert.True(File.Exists(staged), $"The format file was not staged to {staged}.");

        var viewed = XDocument.Load(staged).Descendants("TypeName").Select(e => e.Value.Trim()).ToHashSet();
        foreach (string type in new[] { "AsyncGroup.AsyncTask", "AsyncGroup.WaitResult", "AsyncGroup.Core.TaskGroupException" })
        {
            Assert.True(viewed.Contains(type), $"No view for {type} in the format file.");
        }

        Assert.NotNull(Module.Assembly.GetType("AsyncGroup.AsyncTask"));
        Assert.NotNull(Module.Assembly.GetType("AsyncGroup.WaitResult"));
    }

    [Fact]
    public void Build_stages_an_importable_module_folder()
    {
        foreach (string file in new[] { "AsyncGroup.psd1", "AsyncGroup.dll", "AsyncGroup.Core.dll", "AsyncGroup.format.ps1xml" })
        {
            Assert.True(File.Exists(Path.Combine(Module.ModuleDirectory, file)), $"{file} is missing from {Module.ModuleDirectory}.");
        }
    }

    /// <summary>The quoted entries of <c>Key = @( ... )</c> in the manifest (empty for <c>@()</c>).</summary>
    private static string[] ArrayEntries(string key)
    {
        Match m = Regex.Match(Manifest, key + @"\s*=\s*@\((?<body>[^)]*)\)", RegexOptions.Singleline);
        Assert.True(m.Success, $"The manifest has no '{key} = @(...)' entry.");
        return Regex.Matches(m.Groups["body"].Value, "'([^']*)'").Select(x => x.Groups[1].Value).ToArray();
    }
}
