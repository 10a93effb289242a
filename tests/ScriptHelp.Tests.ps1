# Get-Help works for the repository's own scripts (build.ps1, build/, bench/) as it does for the
# module's cmdlets: each script's comment-based help is found, so `Get-Help ./build.ps1` shows
# its synopsis and not only its syntax. PowerShell ignores a help block that directly follows
# the '#Requires' line (no blank line between them): the two then read as one comment.

BeforeDiscovery {
    $root = Join-Path $PSScriptRoot '..'
    $files = @(Get-Item -LiteralPath (Join-Path $root 'build.ps1')) +
        @(Get-ChildItem -Path (Join-Path $root 'build'), (Join-Path $root 'bench') -Filter *.ps1 -File)
    # One case per script with a .SYNOPSIS, with that synopsis's first line.
    $script:Scripts = foreach ($file in $files | Sort-Object -Property FullName) {
        $lines = @(Get-Content -LiteralPath $file.FullName)
        $at = [array]::FindIndex($lines, [Predicate[string]] { param($l) $l.Trim() -eq '.SYNOPSIS' })
        $function = [array]::FindIndex($lines, [Predicate[string]] { param($l) $l -match '^\s*function\s' })
        if ($at -lt 0 -or ($function -ge 0 -and $function -lt $at)) {
            continue # no help, or only a function's (a file of functions to dot-source)
        }

        $first = $lines[($at + 1)..($lines.Count - 1)] | Where-Object { $_.Trim() } | Select-Object -First 1
        @{ Name = $file.Name; Path = $file.FullName; Synopsis = $first.Trim() }
    }
}

Describe 'The help of the repository''s scripts' {
    It 'finds the scripts with comment-based help' -TestCases @{ Count = @($script:Scripts).Count } {
        $Count | Should -BeGreaterThan 5
    }

    It '<Name> shows its synopsis with Get-Help' -ForEach $script:Scripts {
        $help = Get-Help -Name $Path
        "$($help.Synopsis)" | Should -BeLike "$([WildcardPattern]::Escape($Synopsis))*"
    }
}
