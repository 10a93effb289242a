#requires -Version 7.0

<#
.SYNOPSIS
    Compares the warm per-item cost of two builds of AsyncGroup in one process, paired round by round.

.DESCRIPTION
    A change worth a few percent cannot be seen by timing two builds in separate processes on a
    shared machine: its speed moves by more than that from one minute to the next. This script
    builds each git revision with its assemblies renamed (AsyncGroupA.dll, AsyncGroupB.dll and
    their Core), imports both into one fresh process with a command prefix (Invoke-AGather,
    Invoke-BGather) and alternates them: each round times two calls of one build, then two of the
    other, the order swapped every round. Both builds then see the same machine, and the median of
    the per-round ratios B/A is the figure (with its quartiles). Two copies of the same revision
    read 1.00 (quartiles about 0.91-1.10 over 100 rounds).

    The builds go to a temporary folder outside the repository (git worktrees, removed after).
    Only what a trivial pipeline item exercises is meant to be compared: the renamed builds are not
    staged as modules (no manifest, help or format file).

.EXAMPLE
    dotnet pwsh -NoProfile -File bench/Compare-Builds.ps1 -Base HEAD~1 -Head HEAD

    Compares the last commit with the one before it, at 2,000 and 10,000 trivial items.
#>
[CmdletBinding()]
param(
    # The build measured as A (a git revision of this repository).
    [string] $Base = 'HEAD~1',

    # The build measured as B; 'WORKTREE' takes the working tree as it is, uncommitted changes included.
    [string] $Head = 'WORKTREE',

    # Items per call; each size is measured in a process of its own.
    [int[]] $Items = @(2000, 10000),

    # Paired rounds per size.
    [ValidateRange(4, 10000)]
    [int] $Rounds = 100,

    [ValidateRange(1, 64)]
    [int] $ThrottleLimit = 4
)

$ErrorActionPreference = 'Stop'
$repo = (Resolve-Path (Join-Path $PSScriptRoot '..')).Path
. (Join-Path $repo 'build/PowerShellCommand.ps1') # Get-PowerShellCommand: how to start a child of this PowerShell
$work = Join-Path ([IO.Path]::GetTempPath()) "asyncgroup-compare-$PID"
New-Item -ItemType Directory -Path $work -Force | Out-Null

# Builds $Revision with every assembly name suffixed by $Suffix into $work/$Suffix; returns the cmdlet DLL.
function Build-Variant([string] $Revision, [string] $Suffix) {
    $src = Join-Path $work "$Suffix-src"
    if ($Revision -eq 'WORKTREE') {
        New-Item -ItemType Directory -Path $src -Force | Out-Null
        Copy-Item -Path (Join-Path $repo 'src'), (Join-Path $repo 'AsyncGroup.psd1'), (Join-Path $repo 'Directory.Build.props') -Destination $src -Recurse
        Get-ChildItem -Path $src -Directory -Recurse -Include bin, obj | Remove-Item -Recurse -Force
    }
    else {
        git -C $repo worktree add --detach --quiet $src $Revision
        if ($LASTEXITCODE -ne 0) { throw "git worktree add failed for '$Revision'." }
    }

    try {
        $cmdlets = Join-Path $src 'src/Cmdlets/AsyncGroup.csproj'
        $core = Join-Path $src 'src/Core/AsyncGroup.Core.csproj'
        $text = (Get-Content -Raw $cmdlets) -replace '<AssemblyName>AsyncGroup</AssemblyName>', "<AssemblyName>AsyncGroup$Suffix</AssemblyName>" `
            -replace 'AfterTargets="Build"', 'AfterTargets="NoSuchTarget"'
        Set-Content -Path $cmdlets -Value $text -NoNewline
        $text = (Get-Content -Raw $core) -replace '<AssemblyName>AsyncGroup.Core</AssemblyName>', "<AssemblyName>AsyncGroup$Suffix.Core</AssemblyName>" `
            -replace '<InternalsVisibleTo Include="AsyncGroup" />', "<InternalsVisibleTo Include=`"AsyncGroup$Suffix`" />"
        Set-Content -Path $core -Value $text -NoNewline

        $out = Join-Path $work $Suffix
        $log = dotnet build $cmdlets -c Release --nologo -o $out 2>&1
        if ($LASTEXITCODE -ne 0) { $log | Select-Object -Last 20 | Write-Host; throw "The build of '$Revision' failed." }
        Join-Path $out "AsyncGroup$Suffix.dll"
    }
    finally {
        if ($Revision -ne 'WORKTREE') { git -C $repo worktree remove --force $src }
    }
}

# One process per size: both builds imported, paired rounds, the median of the ratios.
$measure = {
    param([string] $DllA, [string] $DllB, [int] $Count, [int] $Rounds, [int] $Throttle)
    Import-Module $DllA -Prefix A
    Import-Module $DllB -Prefix B
    $items = 1..$Count
    $a = { $null = $items | Invoke-AGather { $_ * 2 } -ThrottleLimit $Throttle }
    $b = { $null = $items | Invoke-BGather { $_ * 2 } -ThrottleLimit $Throttle }
    $clock = [Diagnostics.Stopwatch]::StartNew()
    while ($clock.Elapsed.TotalSeconds -lt 12) { & $a; & $b } # both at the JIT's steady state
    $perA = [Collections.Generic.List[double]]::new(); $perB = [Collections.Generic.List[double]]::new(); $ratios = [Collections.Generic.List[double]]::new()
    for ($i = 0; $i -lt $Rounds; $i++) {
        $first, $second = if ($i % 2) { $a, $b } else { $b, $a }
        $clock.Restart(); & $first; & $first; $x = $clock.Elapsed.TotalMilliseconds
        $clock.Restart(); & $second; & $second; $y = $clock.Elapsed.TotalMilliseconds
        $ta, $tb = if ($i % 2) { $x, $y } else { $y, $x }
        $perA.Add($ta * 500 / $Count); $perB.Add($tb * 500 / $Count); $ratios.Add($tb / $ta)
    }
    $at = { param($list, $q) ($list | Sort-Object)[[int][Math]::Floor(($list.Count - 1) * $q)] }
    [pscustomobject]@{
        Items = $Count
        'A µs/item' = [Math]::Round((& $at $perA 0.5), 2)
        'B µs/item' = [Math]::Round((& $at $perB 0.5), 2)
        'B/A median' = [Math]::Round((& $at $ratios 0.5), 3)
        'B/A quartiles' = '{0:N3}..{1:N3}' -f (& $at $ratios 0.25), (& $at $ratios 0.75)
    } | ConvertTo-Json -Compress
}

try {
    $dllA = Build-Variant $Base 'A'
    $dllB = Build-Variant $Head 'B'
    $pwsh = Get-PowerShellCommand
    $script = Join-Path $work 'measure.ps1'
    Set-Content -Path $script -Value $measure.ToString()
    $results = foreach ($count in $Items) {
        $arguments = @($pwsh.Arguments) + @('-NoProfile', '-File', $script, '-DllA', $dllA, '-DllB', $dllB, '-Count', $count, '-Rounds', $Rounds, '-Throttle', $ThrottleLimit)
        $json = & $pwsh.FilePath @arguments
        if ($LASTEXITCODE -ne 0) { throw "The measuring process failed for $count items." }
        $json | Select-Object -Last 1 | ConvertFrom-Json
    }

    "A = $Base, B = $Head; ThrottleLimit $ThrottleLimit; $Rounds paired rounds per size; below 1 means B is faster."
    $results | Format-Table -AutoSize | Out-String -Width 200
}
finally {
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}
