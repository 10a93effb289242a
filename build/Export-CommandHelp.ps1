#Requires -Version 5.1

<#
.SYNOPSIS
    Turns the cmdlet pages in docs/help into the MAML file Get-Help reads (AsyncGroup.dll-Help.xml).

.DESCRIPTION
    Called by `build.ps1 -Task Docs`; needs Microsoft.PowerShell.PlatyPS 1.x already imported.

    platyPS reads the markdown (Import-MarkdownCommandHelp) and builds the MAML object model
    (MamlConversionHelper, the code behind Export-MamlCommandHelp). This script then corrects three
    things platyPS 1.0.3 gets wrong for Get-Help, on that object model and never on the text:

    - Examples: platyPS puts the whole example, code fences included, into <maml:introduction> and
      leaves <dev:code> empty; blank lines inside a code block split it into paragraphs separated
      by a U+0080 character. Here the text before the first code block is the introduction, the
      code blocks (without their fences) are <dev:code>, and the text after them is <dev:remarks>,
      ending with an empty paragraph so that Get-Help leaves a blank line before the next example.
    - Related links: a link to another page of docs/help (Start-AsyncTask.md) means nothing to a
      user of the installed module, so only absolute http(s) addresses are kept as URIs.
    - Default values: platyPS's MAML model has no <dev:defaultValue>, so `Get-Help -Full` would show
      an empty "Default value" for every parameter; it is added from the markdown's value.

    The XML is written with "\n" line ends and no byte order mark on every platform, so that
    regenerating on Windows or Linux gives the same bytes.

.PARAMETER Path
    The folder of platyPS markdown: every *.md except about_*.md is a cmdlet page.

.PARAMETER OutputPath
    The folder to write AsyncGroup.dll-Help.xml to (created when missing).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $Path,
    [Parameter(Mandatory)] [string] $OutputPath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$HelpFileName = 'AsyncGroup.dll-Help.xml'

if (-not (Get-Command -Name Import-MarkdownCommandHelp -ErrorAction SilentlyContinue) -or
    -not ('Microsoft.PowerShell.PlatyPS.MAML.MamlConversionHelper' -as [type])) {
    throw 'Microsoft.PowerShell.PlatyPS 1.x must be imported before running this script.'
}

# Splits a platyPS example body (markdown) into introduction paragraphs, code and remark paragraphs.
function Split-Example {
    param([string] $Markdown)

    $intro = New-Object System.Collections.Generic.List[string]
    $remarks = New-Object System.Collections.Generic.List[string]
    $blocks = New-Object System.Collections.Generic.List[string]
    $paragraph = New-Object System.Collections.Generic.List[string]
    $block = $null
    $seenCode = $false

    $flush = {
        if ($paragraph.Count -gt 0) {
            if ($seenCode) { $remarks.Add(($paragraph -join "`n")) } else { $intro.Add(($paragraph -join "`n")) }
            $paragraph.Clear()
        }
    }

    foreach ($raw in ($Markdown -replace "`r`n", "`n") -split "`n") {
        $line = $raw.TrimEnd()
        if ($line -match '^\s*```') {
            if ($null -eq $block) {
                . $flush
                $block = New-Object System.Collections.Generic.List[string]
            }
            else {
                $blocks.Add(($block -join "`n"))
                $block = $null
                $seenCode = $true
            }
            continue
        }
        if ($null -ne $block) {
            $block.Add($raw.TrimEnd())
        }
        elseif ($line -eq '') {
            . $flush
        }
        else {
            $paragraph.Add($line)
        }
    }
    if ($null -ne $block) {
        throw "An example has a code fence that is never closed:`n$Markdown"
    }
    . $flush

    [pscustomobject]@{ Introduction = @($intro); Code = ($blocks -join "`n`n"); Remarks = @($remarks) }
}

$files = @(Get-ChildItem -LiteralPath $Path -Filter *.md -File |
        Where-Object { $_.Name -notlike 'about_*' } |
        Sort-Object -Property Name)
if ($files.Count -eq 0) {
    throw "No cmdlet pages (*.md other than about_*.md) in '$Path'."
}

$helps = New-Object 'System.Collections.Generic.List[Microsoft.PowerShell.PlatyPS.Model.CommandHelp]'
foreach ($file in $files) {
    $help = Import-MarkdownCommandHelp -Path $file.FullName
    if ($null -eq $help -or [string]::IsNullOrEmpty($help.Title)) {
        throw "platyPS could not read '$($file.FullName)' as command help."
    }
    if ($help.ExternalHelpFile -ne $HelpFileName) {
        throw "'$($file.Name)' must say 'external help file: $HelpFileName' in its metadata (found '$($help.ExternalHelpFile)')."
    }
    $helps.Add($help)
}

$items = [Microsoft.PowerShell.PlatyPS.MAML.MamlConversionHelper]::ConvertCommandHelpToMamlHelpItems($helps)

foreach ($command in $items.Commands) {
    # The example's markdown as platyPS read it: its MAML paragraphs are trimmed, which would lose
    # the indentation of a code line that follows a blank line.
    $help = $helps | Where-Object { $_.Title -eq $command.Details.Name }
    if (@($help).Count -ne 1 -or @($help.Examples).Count -ne $command.Examples.Count) {
        throw "The MAML of '$($command.Details.Name)' does not match its markdown."
    }
    for ($i = 0; $i -lt $command.Examples.Count; $i++) {
        $example = $command.Examples[$i]
        $parts = Split-Example -Markdown $help.Examples[$i].Remarks
        if ([string]::IsNullOrEmpty($parts.Code)) {
            throw "$($command.Details.Name), '$($example.Title)': the example has no code block."
        }
        $example.Description.Clear()
        foreach ($p in $parts.Introduction) { $example.Description.Add($p) }
        $example.Code = $parts.Code
        $example.Remarks.Clear()
        foreach ($p in $parts.Remarks) { $example.Remarks.Add($p) }
        # Get-Help prints paragraphs with a blank line between them but none after the last one;
        # an empty paragraph keeps the next example's title off the last line of this one.
        $example.Remarks.Add('')
    }

    $links = @($command.RelatedLinks)
    $command.RelatedLinks.Clear()
    foreach ($link in $links) {
        if ($link.Uri -notmatch '^https?://') {
            if ([string]::IsNullOrEmpty($link.LinkText)) { continue }
            $link.Uri = ''
        }
        $command.RelatedLinks.Add($link)
    }
}

# Serialize through platyPS into a document, add the default values, write it deterministically.
$document = New-Object System.Xml.XmlDocument
$writer = $document.CreateNavigator().AppendChild()
try {
    $items.WriteTo($writer)
}
finally {
    $writer.Close()
}

$ns = New-Object System.Xml.XmlNamespaceManager $document.NameTable
$ns.AddNamespace('msh', 'http://msh')
$ns.AddNamespace('maml', 'http://schemas.microsoft.com/maml/2004/10')
$ns.AddNamespace('command', 'http://schemas.microsoft.com/maml/dev/command/2004/10')
$ns.AddNamespace('dev', 'http://schemas.microsoft.com/maml/dev/2004/10')

foreach ($help in $helps) {
    $commandNode = $document.SelectSingleNode("/msh:helpItems/command:command[command:details/command:name='$($help.Title)']", $ns)
    if ($null -eq $commandNode) {
        throw "The MAML has no command '$($help.Title)'."
    }
    foreach ($parameter in $help.Parameters) {
        if ([string]::IsNullOrEmpty($parameter.DefaultValue)) { continue }
        $node = $commandNode.SelectSingleNode("command:parameters/command:parameter[maml:name='$($parameter.Name)']", $ns)
        if ($null -eq $node) {
            throw "The MAML of '$($help.Title)' has no parameter '$($parameter.Name)'."
        }
        $default = $document.CreateElement('dev', 'defaultValue', 'http://schemas.microsoft.com/maml/dev/2004/10')
        $default.InnerText = $parameter.DefaultValue
        [void] $node.AppendChild($default)
    }
}

New-Item -ItemType Directory -Path $OutputPath -Force | Out-Null
$target = Join-Path (Resolve-Path -LiteralPath $OutputPath).ProviderPath $HelpFileName
$settings = New-Object System.Xml.XmlWriterSettings
$settings.Indent = $true
$settings.IndentChars = '  '
$settings.NewLineChars = "`n"
$settings.NewLineHandling = [System.Xml.NewLineHandling]::Replace
$settings.Encoding = New-Object System.Text.UTF8Encoding $false
$out = [System.Xml.XmlWriter]::Create($target, $settings)
try {
    $document.Save($out)
}
finally {
    $out.Close()
}
# XmlWriter leaves the file without a final line end.
[System.IO.File]::AppendAllText($target, "`n", $settings.Encoding)

Get-Item -LiteralPath $target
