#Requires -Version 5.1

<#
.SYNOPSIS
    Converts an about_*.md page of docs/help into the plain-text about_*.help.txt that Get-Help shows.

.DESCRIPTION
    Called by `build.ps1 -Task Docs`; needs nothing but PowerShell (platyPS 1.x does not convert
    about topics). The page follows platyPS's about template:

        # AsyncGroup                 (optional module title, dropped)
        ## about_AsyncGroup          (the topic name)
        # SHORT DESCRIPTION          (level-1 headings are the sections)
        ...
        ## A subsection              (level-2 headings inside a section)

    and becomes the classic about-topic layout: TOPIC, then each section heading in capitals at the
    left margin with its text indented by four spaces, subsection headings indented by two.
    Paragraphs and list items are re-wrapped to fit in 80 columns; inline markdown (`code`,
    **strong**, *emphasis*, [links](target)) is reduced to its text, keeping an absolute link's
    address in parentheses; tables are re-aligned without their pipes; code blocks are kept
    verbatim, only indented.

    The file is written as UTF-8 with a byte order mark (so that Windows PowerShell 5.1 reads any
    non-ASCII character correctly) and "\n" line ends, the same bytes on every platform.

.PARAMETER Path
    The about_*.md file.

.PARAMETER OutputPath
    The folder to write <topic>.help.txt to (created when missing).

.PARAMETER Width
    The widest a wrapped line may be. Code lines are never wrapped.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $Path,
    [Parameter(Mandatory)] [string] $OutputPath,
    [int] $Width = 80
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

# Inline markdown to plain text.
function ConvertTo-PlainText([string] $Text) {
    # Links and images: [text](target) -> text, or "text (target)" for an absolute address.
    $Text = [regex]::Replace($Text, '!?\[([^\]]*)\]\(([^)\s]*)[^)]*\)', {
            param($m)
            if ($m.Groups[2].Value -match '^[a-z]+://') { '{0} ({1})' -f $m.Groups[1].Value, $m.Groups[2].Value } else { $m.Groups[1].Value }
        })
    $Text = $Text -replace '<(https?://[^>]+)>', '$1'
    # Code spans: the text between the backticks, as written.
    $Text = [regex]::Replace($Text, '(`+)(.+?)\1', { param($m) $m.Groups[2].Value.Trim() })
    # Strong and emphasis, only when they enclose text (a lone * as in gather(*aws) stays).
    $Text = $Text -replace '(?<![\w*])\*\*(?=\S)(.+?)(?<=\S)\*\*(?![\w*])', '$1'
    $Text = $Text -replace '(?<![\w*])__(?=\S)(.+?)(?<=\S)__(?![\w*])', '$1'
    $Text = $Text -replace '(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])', '$1'
    # Backslash escapes.
    $Text -replace '\\([\\`*_{}\[\]()#+\-.!|<>])', '$1'
}

# Word-wraps one paragraph: $First starts the first line, $Rest every following one.
function Format-Wrapped([string] $Text, [string] $First, [string] $Rest) {
    $lines = New-Object System.Collections.Generic.List[string]
    $line = $First
    $empty = $true
    foreach ($word in ($Text -split '\s+' | Where-Object { $_ })) {
        if ($empty) {
            $line += $word
            $empty = $false
        }
        elseif ($line.Length + 1 + $word.Length -le $Width) {
            $line += ' ' + $word
        }
        else {
            $lines.Add($line)
            $line = $Rest + $word
        }
    }
    if (-not $empty) { $lines.Add($line) }
    $lines
}

# A markdown table (its lines) as aligned plain columns, indented by $Indent.
function Format-MarkdownTable([string[]] $TableLines, [string] $Indent) {
    $rows = New-Object System.Collections.Generic.List[object]
    $header = $true
    $headerRows = 0
    foreach ($line in $TableLines) {
        $cells = @(($line.Trim() -replace '^\|', '' -replace '\|$', '') -split '(?<!\\)\|' | ForEach-Object { ConvertTo-PlainText $_.Trim() })
        if ($cells -join '' -match '^[\s:\-]+$') {
            $header = $false
            continue
        }
        if ($header) { $headerRows++ }
        $rows.Add($cells)
    }
    $columns = ($rows | ForEach-Object { $_.Count } | Measure-Object -Maximum).Maximum
    $widths = @(for ($c = 0; $c -lt $columns; $c++) {
            ($rows | ForEach-Object { if ($c -lt $_.Count) { $_[$c].Length } else { 0 } } | Measure-Object -Maximum).Maximum
        })
    $format = {
        param($cells)
        $padded = for ($c = 0; $c -lt $columns; $c++) {
            $value = ''
            if ($c -lt $cells.Count) { $value = $cells[$c] }
            $value.PadRight($widths[$c])
        }
        ($Indent + ($padded -join '  ')).TrimEnd()
    }
    for ($r = 0; $r -lt $rows.Count; $r++) {
        & $format $rows[$r]
        if ($r -eq $headerRows - 1) {
            & $format @($widths | ForEach-Object { '-' * $_ })
        }
    }
}

$source = (Resolve-Path -LiteralPath $Path).ProviderPath
$lines = @(([System.IO.File]::ReadAllText($source) -replace "`r`n", "`n") -split "`n")

# The topic: the first heading that names an about_ topic, else the file name.
$topic = [System.IO.Path]::GetFileNameWithoutExtension($source)
$start = 0
for ($i = 0; $i -lt $lines.Count; $i++) {
    if ($lines[$i] -match '^#{1,2}\s+(about_\w+)\s*$') {
        $topic = $Matches[1]
        $start = $i + 1
        break
    }
}

$out = New-Object System.Collections.Generic.List[string]
$out.Add('TOPIC')
$out.Add('    ' + $topic)

$indent = '    '
$paragraph = New-Object System.Collections.Generic.List[string]
$listItem = $null      # @{ Marker; Text } of the list item being read
$table = New-Object System.Collections.Generic.List[string]
$code = $null          # lines of the code block being read

# The blank line before a block, except right under a heading (the classic about layout).
$noGap = $false
$gap = {
    if (-not $script:noGap) { $out.Add('') }
    $script:noGap = $false
}

# Ends whatever block is open and writes it out.
$flush = {
    if ($paragraph.Count -gt 0) {
        . $gap
        foreach ($l in Format-Wrapped (ConvertTo-PlainText ($paragraph -join ' ')) $indent $indent) { $out.Add($l) }
        $paragraph.Clear()
    }
    if ($null -ne $listItem) {
        $hanging = $indent + (' ' * ($listItem.Marker.Length + 1))
        foreach ($l in Format-Wrapped (ConvertTo-PlainText $listItem.Text) ($indent + $listItem.Marker + ' ') $hanging) { $out.Add($l) }
        $script:listItem = $null
    }
    if ($table.Count -gt 0) {
        . $gap
        foreach ($l in Format-MarkdownTable $table.ToArray() $indent) { $out.Add($l) }
        $table.Clear()
    }
}

$inList = $false
for ($i = $start; $i -lt $lines.Count; $i++) {
    $line = $lines[$i].TrimEnd()

    if ($null -ne $code) {
        if ($line -match '^\s*```') {
            . $gap
            foreach ($l in $code) {
                if ($l -eq '') { $out.Add('') } else { $out.Add($indent + $l) }
            }
            $code = $null
        }
        else {
            $code.Add($lines[$i].TrimEnd())
        }
        continue
    }

    if ($line -match '^\s*```') {
        . $flush
        $inList = $false
        $code = New-Object System.Collections.Generic.List[string]
    }
    elseif ($line -match '^#\s+(.+)$') {
        . $flush
        $inList = $false
        $out.Add('')
        $out.Add((ConvertTo-PlainText $Matches[1].Trim()).ToUpperInvariant())
        $script:noGap = $true
    }
    elseif ($line -match '^#{2,6}\s+(.+)$') {
        . $flush
        $inList = $false
        $out.Add('')
        $out.Add('  ' + (ConvertTo-PlainText $Matches[1].Trim()))
        $script:noGap = $true
    }
    elseif ($line -match '^\s*\|') {
        if ($table.Count -eq 0) {
            . $flush
            $inList = $false
        }
        $table.Add($line)
    }
    elseif ($line -match '^\s*([-*+]|\d+[.)])\s+(.*)$') {
        . $flush
        if (-not $inList) { . $gap }
        $inList = $true
        $script:listItem = @{ Marker = $Matches[1]; Text = $Matches[2] }
    }
    elseif ($line -eq '') {
        . $flush
        $inList = $false
    }
    elseif ($null -ne $listItem -and $line -match '^\s+\S') {
        # A continuation line of a list item.
        $listItem.Text += ' ' + $line.Trim()
    }
    else {
        if ($null -ne $listItem) { . $flush }
        if ($inList) { . $gap; $inList = $false }
        $paragraph.Add($line.Trim())
    }
}
if ($null -ne $code) {
    throw "'$source' has a code block that is never closed."
}
. $flush

# The sections start with a blank line; the file starts with TOPIC and ends with one line end.
New-Item -ItemType Directory -Path $OutputPath -Force | Out-Null
$target = Join-Path (Resolve-Path -LiteralPath $OutputPath).ProviderPath "$topic.help.txt"
$text = (($out | ForEach-Object { $_.TrimEnd() }) -join "`n").TrimEnd() + "`n"
[System.IO.File]::WriteAllText($target, $text, (New-Object System.Text.UTF8Encoding $true))
Get-Item -LiteralPath $target
