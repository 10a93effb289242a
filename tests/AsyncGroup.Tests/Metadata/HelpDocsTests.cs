using System.Text;
using Xunit;

namespace AsyncGroup.Tests.Metadata;

/// <summary>
/// The platyPS help in docs/help matches the compiled cmdlets: one file per cmdlet and no file for a
/// cmdlet that is gone, every parameter documented and nothing documented that does not exist,
/// -WhatIf/-Confirm exactly where ShouldProcess is supported, and the sections Get-Help needs.
/// </summary>
public class HelpDocsTests
{
    private const string AboutTopic = "about_AsyncGroup.md";

    private static ModuleMetadata Module => ModuleMetadata.Shared;

    [Fact]
    public void Every_cmdlet_has_a_help_file_and_every_help_file_has_a_cmdlet()
    {
        var cmdlets = Module.Cmdlets.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
        var docs = CmdletHelpFiles().Select(Path.GetFileNameWithoutExtension).OfType<string>()
            .ToHashSet(StringComparer.Ordinal);

        var problems = new StringBuilder();
        foreach (string missing in cmdlets.Except(docs, StringComparer.Ordinal).Order())
        {
            problems.AppendLine($"  {missing}: cmdlet has no docs/help/{missing}.md");
        }

        foreach (string orphan in docs.Except(cmdlets, StringComparer.Ordinal).Order())
        {
            problems.AppendLine($"  {orphan}.md: no cmdlet named {orphan} in AsyncGroup.dll (renamed or removed?)");
        }

        Assert.True(problems.Length == 0, "Help files and cmdlets differ:" + Environment.NewLine + problems);
    }

    [Fact]
    public void Every_help_file_documents_exactly_the_parameters_of_its_cmdlet()
    {
        var problems = new StringBuilder();
        foreach (CmdletMetadata cmdlet in Module.Cmdlets)
        {
            HelpFile? doc = HelpFile.TryRead(Module.HelpDirectory, cmdlet.Name);
            if (doc is null)
            {
                continue; // reported by Every_cmdlet_has_a_help_file_and_every_help_file_has_a_cmdlet
            }

            var documented = doc.ParameterHeadings.ToHashSet(StringComparer.OrdinalIgnoreCase);
            var shouldProcess = new[] { "Confirm", "WhatIf" };
            foreach (string name in shouldProcess)
            {
                if (cmdlet.SupportsShouldProcess && !documented.Contains(name))
                {
                    problems.AppendLine($"  {cmdlet.Name}: supports ShouldProcess but '### -{name}' is missing");
                }
                else if (!cmdlet.SupportsShouldProcess && documented.Contains(name))
                {
                    problems.AppendLine($"  {cmdlet.Name}: documents -{name} but does not support ShouldProcess");
                }
            }

            documented.ExceptWith(shouldProcess);
            IReadOnlySet<string> actual = cmdlet.ParameterNames;
            foreach (string missing in actual.Except(documented, StringComparer.OrdinalIgnoreCase).Order())
            {
                problems.AppendLine($"  {cmdlet.Name}: parameter -{missing} is not documented (no '### -{missing}' under ## PARAMETERS)");
            }

            foreach (string extra in documented.Except(actual, StringComparer.OrdinalIgnoreCase).Order())
            {
                problems.AppendLine($"  {cmdlet.Name}: documents -{extra}, which the cmdlet does not have");
            }

            foreach (string duplicate in doc.ParameterHeadings.GroupBy(h => h, StringComparer.OrdinalIgnoreCase).Where(g => g.Count() > 1).Select(g => g.Key))
            {
                problems.AppendLine($"  {cmdlet.Name}: '### -{duplicate}' appears more than once");
            }
        }

        Assert.True(problems.Length == 0, "Documented parameters differ from the compiled cmdlets:" + Environment.NewLine + problems);
    }

    [Fact]
    public void Every_help_file_has_a_synopsis_a_description_and_at_least_two_examples()
    {
        var problems = new StringBuilder();
        foreach (string path in CmdletHelpFiles())
        {
            var doc = HelpFile.Read(path);
            string name = Path.GetFileName(path);
            if (string.IsNullOrWhiteSpace(doc.Section("SYNOPSIS")))
            {
                problems.AppendLine($"  {name}: ## SYNOPSIS is missing or empty");
            }

            if (string.IsNullOrWhiteSpace(doc.Section("DESCRIPTION")))
            {
                problems.AppendLine($"  {name}: ## DESCRIPTION is missing or empty");
            }

            if (doc.ExampleCount < 2)
            {
                problems.AppendLine($"  {name}: {doc.ExampleCount} '### Example' heading(s) under ## EXAMPLES, at least 2 are required");
            }
        }

        Assert.True(problems.Length == 0, "Help files are incomplete:" + Environment.NewLine + problems);
    }

    [Fact]
    public void About_topic_exists_and_mentions_every_cmdlet()
    {
        string path = Path.Combine(Module.HelpDirectory, AboutTopic);
        Assert.True(File.Exists(path), $"docs/help/{AboutTopic} is missing.");

        string text = File.ReadAllText(path);
        var missing = Module.Cmdlets.Select(c => c.Name)
            .Where(name => text.IndexOf(name, StringComparison.OrdinalIgnoreCase) < 0)
            .ToList();
        Assert.True(missing.Count == 0, $"docs/help/{AboutTopic} does not mention: {string.Join(", ", missing)}");
    }

    /// <summary>The cmdlet help files: every docs/help/*.md except the about topics.</summary>
    private static IEnumerable<string> CmdletHelpFiles() =>
        Directory.Exists(Module.HelpDirectory)
            ? Directory.GetFiles(Module.HelpDirectory, "*.md")
                .Where(f => !Path.GetFileName(f).StartsWith("about_", StringComparison.OrdinalIgnoreCase))
                .Order(StringComparer.OrdinalIgnoreCase)
            : Enumerable.Empty<string>();

    /// <summary>
    /// Just enough of a platyPS markdown reader: the text of each <c>## SECTION</c> and the
    /// <c>###</c> headings under PARAMETERS and EXAMPLES, ignoring anything inside code fences
    /// (example output may contain lines that look like headings).
    /// </summary>
    private sealed class HelpFile
    {
        private readonly Dictionary<string, StringBuilder> _sections = new(StringComparer.OrdinalIgnoreCase);
        private readonly List<string> _parameterHeadings = new();

        private HelpFile(IEnumerable<string> lines)
        {
            string? section = null;
            bool inFence = false;
            foreach (string raw in lines)
            {
                string line = raw.TrimEnd();
                if (line.TrimStart().StartsWith("```", StringComparison.Ordinal))
                {
                    inFence = !inFence;
                }
                else if (!inFence && line.StartsWith("## ", StringComparison.Ordinal))
                {
                    section = line.Substring(3).Trim();
                    _sections[section] = new StringBuilder();
                    continue;
                }
                else if (!inFence && line.StartsWith("### ", StringComparison.Ordinal) && section is not null)
                {
                    string heading = line.Substring(4).Trim();
                    if (section.Equals("PARAMETERS", StringComparison.OrdinalIgnoreCase) && heading.StartsWith('-'))
                    {
                        _parameterHeadings.Add(heading.Substring(1).Trim());
                    }
                    else if (section.Equals("EXAMPLES", StringComparison.OrdinalIgnoreCase) && heading.StartsWith("Example", StringComparison.OrdinalIgnoreCase))
                    {
                        ExampleCount++;
                    }
                }

                if (section is not null)
                {
                    _sections[section].AppendLine(line);
                }
            }
        }

        /// <summary>The names under <c>### -Name</c> in PARAMETERS (CommonParameters has no dash).</summary>
        public IReadOnlyList<string> ParameterHeadings => _parameterHeadings;

        public int ExampleCount { get; private set; }

        public static HelpFile Read(string path) => new(File.ReadAllLines(path));

        public static HelpFile? TryRead(string helpDirectory, string cmdletName)
        {
            string path = Path.Combine(helpDirectory, cmdletName + ".md");
            return File.Exists(path) ? Read(path) : null;
        }

        public string Section(string name) => _sections.TryGetValue(name, out StringBuilder? text) ? text.ToString() : string.Empty;
    }
}
