# Runs the help examples of docs/help/*.md and compares what they print with what the docs show.
#
# Convention (the marker). An example is checked when its transcript is fenced as ```pwsh; one
# fenced as ```powershell is illustrative only (say why in its text). The marker is the fence's
# language word because platyPS copies every line of an example into the MAML that Get-Help shows
# (an HTML comment marker would show up there as text), and the fence line is shown anyway.
# GitHub highlights both words as PowerShell.
#
# A checked transcript is written as a console session:
#   PS> <command>                  a command ('>> ' lines continue it)
#   <output lines>                 what the command prints, up to the next 'PS> '
#
# Each example runs in a fresh child PowerShell (so task ids and names start at 1, as in a new
# session), command after command, in an empty temporary folder. What a command writes is shown
# as the console shows it: objects formatted as tables or lists, 'WARNING: ', 'VERBOSE: ' and
# 'DEBUG: ' before those records, errors in the concise view ('Invoke-Gather: message'),
# host output (Write-Host, -WhatIf) in place.
#
# Comparison, line by line, ignoring blank lines, trailing spaces and the width of runs of spaces
# (table alignment): lines must match exactly, except that a number with a decimal point in the
# shown output (a measured time such as 0.63852 or 2.044s) matches any number.

BeforeDiscovery {
    function Get-HelpExample {
        param([string] $Directory)
        foreach ($file in Get-ChildItem -LiteralPath $Directory -Filter '*.md' | Sort-Object Name) {
            $lines = @(Get-Content -LiteralPath $file.FullName)
            $title = $null
            for ($i = 0; $i -lt $lines.Count; $i++) {
                if ($lines[$i] -match '^#{2,3} (Example .+)$') { $title = $Matches[1]; continue }
                if ($lines[$i] -ne '```pwsh') { continue }
                $start = $i + 1
                $end = $start
                while ($end -lt $lines.Count -and $lines[$end] -ne '```') { $end++ }
                @{
                    File  = $file.Name
                    Title = $title
                    Line  = $start
                    Text  = @($lines[$start..($end - 1)])
                }
                $i = $end
            }
        }
    }

    $helpDir = Join-Path $PSScriptRoot '../docs/help'
    $examples = @(Get-HelpExample -Directory $helpDir)
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')

    function ConvertFrom-Transcript {
        <# Splits a transcript into commands, each with the output lines the docs show for it. #>
        param([string[]] $Text)
        $commands = [System.Collections.Generic.List[object]]::new()
        $current = $null
        foreach ($line in $Text) {
            if ($line -match '^PS> ?(.*)$') {
                $current = [pscustomobject]@{ Command = $Matches[1]; Expected = [System.Collections.Generic.List[string]]::new() }
                $commands.Add($current)
            }
            elseif ($line -match '^>> ?(.*)$' -and $null -ne $current -and $current.Expected.Count -eq 0) {
                $current.Command += "`n" + $Matches[1]
            }
            elseif ($null -ne $current) {
                $current.Expected.Add($line)
            }
            else {
                throw "A checked transcript must start with 'PS> ': '$line'"
            }
        }
        $commands
    }

    function Get-NormalLine {
        param([string[]] $Lines)
        foreach ($line in $Lines) {
            $normal = ($line -replace '\s+', ' ').Trim()
            if ($normal -ne '') { $normal }
        }
    }

    function Test-LineMatch {
        <# True when an actual line matches a shown line (decimal numbers in the shown line match any number). #>
        param([string] $Shown, [string] $Actual)
        $pattern = [regex]::Escape($Shown) -replace '\d+\\\.\d+', '\d+(?:\.\d+)?'
        $Actual -match ('^' + $pattern + '$')
    }

    # The child's driver: runs each command, writes a marker line before it and renders what it
    # writes as the console would (see the convention at the top).
    $script:Driver = @'
$ErrorActionPreference = 'Continue'
$ProgressPreference = 'SilentlyContinue'
if ($PSStyle) { $PSStyle.OutputRendering = 'PlainText' }
Import-Module -Name $env:ASYNCGROUP_MANIFEST -ErrorAction Stop
Set-Location -LiteralPath $__agFolder
function __agWrite([string[]] $lines) { foreach ($l in $lines) { [Console]::Out.WriteLine($l) } }
$__agObjects = [System.Collections.Generic.List[object]]::new()
function __agFlush {
    # Objects are formatted together (one table for several tasks), up to the next record.
    if ($__agObjects.Count -gt 0) { __agWrite ($__agObjects | Out-String -Stream -Width 4096); $__agObjects.Clear() }
}
function __agRender {
    [CmdletBinding()]
    param([Parameter(ValueFromPipeline)] $Item)
    process {
        $record = $Item
        if ($record -is [System.Management.Automation.PSObject]) { $record = $record.PSObject.BaseObject }
        $prefix = $null
        if ($record -is [System.Management.Automation.WarningRecord]) { $prefix = 'WARNING: ' }
        elseif ($record -is [System.Management.Automation.VerboseRecord]) { $prefix = 'VERBOSE: ' }
        elseif ($record -is [System.Management.Automation.DebugRecord]) { $prefix = 'DEBUG: ' }
        if ($null -ne $prefix -or $record -is [System.Management.Automation.InformationRecord] -or $record -is [System.Management.Automation.ErrorRecord]) {
            __agFlush
            if ($null -ne $prefix) { __agWrite ($prefix + $record.Message) }
            elseif ($record -is [System.Management.Automation.InformationRecord]) { __agWrite ([string] $record.MessageData) }
            else { __agWrite ($record | Out-String -Stream -Width 4096) }
            return
        }
        $__agObjects.Add($Item)
    }
}
'@
}

# The transcripts show PowerShell 7's console (its concise error view); Windows PowerShell 5.1
# renders errors differently, so the check runs on PowerShell 7 only.
Describe 'Help example <File>: <Title>' -ForEach $examples {
    It 'prints what the docs show' -Skip:($PSVersionTable.PSEdition -eq 'Desktop') {
        $commands = @(ConvertFrom-Transcript -Text $Text)
        $commands.Count | Should -BeGreaterThan 0

        $folder = Join-Path ([System.IO.Path]::GetTempPath()) ('ag-example-' + [guid]::NewGuid().ToString('N'))
        $null = New-Item -ItemType Directory -Path $folder
        try {
            $script = [System.Text.StringBuilder]::new()
            $null = $script.AppendLine('$__agFolder = ''' + $folder.Replace("'", "''") + '''')
            $null = $script.AppendLine($script:Driver)
            for ($i = 0; $i -lt $commands.Count; $i++) {
                $encoded = [Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($commands[$i].Command))
                $null = $script.AppendLine("[Console]::Out.WriteLine('<<<AG-EXAMPLE $i>>>')")
                $null = $script.AppendLine("`$__agCommand = [scriptblock]::Create([System.Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('$encoded')))")
                # A terminating error ends the command's pipeline: what it wrote before is still shown, then the error.
                $null = $script.AppendLine('try { . $__agCommand *>&1 | __agRender } catch { $_ | __agRender }; __agFlush')
            }
            $null = $script.AppendLine("[Console]::Out.WriteLine('<<<AG-EXAMPLE END>>>')")
            $null = $script.AppendLine('[Console]::Out.Flush(); [Environment]::Exit(0)')

            $run = Invoke-ChildPowerShell -Command $script.ToString() -TimeoutSeconds 180
        }
        finally {
            Remove-Item -LiteralPath $folder -Recurse -Force -ErrorAction SilentlyContinue
        }

        $run.TimedOut | Should -BeFalse -Because "the example must end ($($run.ErrorText))"
        $run.Output | Should -Contain '<<<AG-EXAMPLE END>>>' -Because "the example must run to its end ($($run.ErrorText))"

        # Split the child's output at the markers: one block per command.
        $actual = @{}
        $index = -1
        foreach ($outLine in $run.Output) {
            if ($outLine -match '^<<<AG-EXAMPLE (\d+|END)>>>$') {
                if ($Matches[1] -eq 'END') { break }
                $index = [int] $Matches[1]
                $actual[$index] = [System.Collections.Generic.List[string]]::new()
                continue
            }
            if ($index -ge 0) { $actual[$index].Add($outLine) }
        }

        for ($i = 0; $i -lt $commands.Count; $i++) {
            $shown = @(Get-NormalLine $commands[$i].Expected)
            $got = @(Get-NormalLine $actual[$i])
            $because = "command $($i + 1) of the example in $File (line $Line) prints:`n$($got -join "`n")`nand the docs show:`n$($shown -join "`n")`n"
            $got.Count | Should -Be $shown.Count -Because $because
            for ($j = 0; $j -lt $shown.Count; $j++) {
                Test-LineMatch -Shown $shown[$j] -Actual $got[$j] | Should -BeTrue -Because $because
            }
        }
    }
}
