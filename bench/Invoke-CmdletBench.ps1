#Requires -Version 5.1
<#
.SYNOPSIS
    Times AsyncGroup's cmdlets against ForEach-Object (sequential and -Parallel) and
    Start-ThreadJob, and checks the figures against the targets of SPEC section 4.

.DESCRIPTION
    One process; every case is run once as a warm-up (not counted) and then -Runs times, and
    the median is reported. Cold cases (the first call in a fresh process) are run in child
    processes of this same PowerShell, one per run. Cases that need PowerShell 7
    (ForEach-Object -Parallel) or the ThreadJob module are skipped with a message elsewhere.

    The module is imported from -ModulePath, else $env:ASYNCGROUP_MODULE_PATH, else
    ../out/AsyncGroup (the folder `./build.ps1` stages).

    Exit code: 0, or 1 when a case failed with an error (a missed target is reported, not an
    error).

.EXAMPLE
    dotnet pwsh -NoProfile -File bench/Invoke-CmdletBench.ps1

    With the pinned PowerShell (.NET tool); an installed pwsh works the same way.

.EXAMPLE
    dotnet pwsh -NoProfile -File bench/Invoke-CmdletBench.ps1 -Runs 5 -SkipSlow
#>
[CmdletBinding()]
param(
    # Timed runs per case (after one warm-up); the median is reported.
    [ValidateRange(1, 99)]
    [int] $Runs = 3,

    # Skip ForEach-Object -Parallel over 10,000 items (about a minute on two cores).
    [switch] $SkipSlow,

    # The module folder to import.
    [string] $ModulePath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
if (Get-Variable -Name PSStyle -ErrorAction Ignore) {
    $PSStyle.OutputRendering = 'PlainText' # tables that paste cleanly
}

if (-not $ModulePath) {
    $ModulePath = if ($env:ASYNCGROUP_MODULE_PATH) { $env:ASYNCGROUP_MODULE_PATH } else { Join-Path $PSScriptRoot '../out/AsyncGroup' }
}
if (-not (Test-Path -LiteralPath (Join-Path $ModulePath 'AsyncGroup.psd1'))) {
    throw "No AsyncGroup module in '$ModulePath': run ./build.ps1 first, or set ASYNCGROUP_MODULE_PATH."
}
$ModulePath = (Resolve-Path -LiteralPath $ModulePath).ProviderPath
Import-Module -Name $ModulePath

# Cold cases run in child processes of this same PowerShell (a .NET tool, native pwsh, or 5.1).
. (Join-Path $PSScriptRoot '../build/PowerShellCommand.ps1')
$ChildPowerShell = Get-PowerShellCommand
$IsPwsh7 = $PSVersionTable.PSVersion.Major -ge 7
$HasThreadJob = [bool] (Get-Command -Name Start-ThreadJob -ErrorAction Ignore)
$Invariant = [Globalization.CultureInfo]::InvariantCulture
$script:Failures = 0

# --- measuring ----------------------------------------------------------------------------

function Get-Median([double[]] $Values) {
    $sorted = @($Values | Sort-Object)
    $n = $sorted.Count
    if ($n % 2) { $sorted[($n - 1) / 2] } else { ($sorted[$n / 2 - 1] + $sorted[$n / 2]) / 2 }
}

# Median milliseconds of -Runs timed runs of $Body, after one untimed warm-up run.
# Bodies see the script's variables (dynamic scope); nothing here shadows them.
function Measure-Median([scriptblock] $Body) {
    $null = & $Body
    $timings = foreach ($run in 1..$Runs) {
        [GC]::Collect()
        [GC]::WaitForPendingFinalizers()
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $null = & $Body
        $clock.Stop()
        $clock.Elapsed.TotalMilliseconds
    }
    Get-Median $timings
}

# Runs a measurement; an error becomes a message in the table instead of ending the bench.
function Invoke-Case([scriptblock] $Measurement) {
    try {
        & $Measurement
    }
    catch {
        $script:Failures++
        "error: $($_.Exception.Message)"
    }
}

<#
  Cold: the first call in a fresh process. Each run is a child process that imports the
  module (timed separately) and then makes the call once. The command holds no double quotes
  (Windows PowerShell would mangle them on a native command line); values travel in
  environment variables.
#>
function Measure-Cold([int] $Count, [switch] $Parallel) {
    $call = if ($Parallel) {
        '$null = 1..$n | ForEach-Object -Parallel { Start-Sleep -Milliseconds 200 } -ThrottleLimit $n'
    }
    else {
        '$null = 1..$n | Invoke-Gather { Start-Sleep -Milliseconds 200 } -ThrottleLimit $n'
    }
    $command = @(
        '$ErrorActionPreference = ''Stop'''
        '$n = [int] $env:ASYNCGROUP_BENCH_COUNT'
        '$clock = [Diagnostics.Stopwatch]::StartNew()'
        'if (-not [int] $env:ASYNCGROUP_BENCH_PARALLEL) { Import-Module -Name $env:ASYNCGROUP_BENCH_MODULE }'
        '$import = $clock.Elapsed.TotalMilliseconds'
        '$clock.Restart()'
        $call
        '$call = $clock.Elapsed.TotalMilliseconds'
        '[string]::Format([Globalization.CultureInfo]::InvariantCulture, ''{0};{1}'', $import, $call)'
    ) -join '; '

    $env:ASYNCGROUP_BENCH_MODULE = $ModulePath
    $env:ASYNCGROUP_BENCH_COUNT = $Count
    $env:ASYNCGROUP_BENCH_PARALLEL = [int] [bool] $Parallel
    $imports = @()
    $calls = @()
    foreach ($run in 1..$Runs) {
        $childArguments = @($ChildPowerShell.Arguments) + @('-NoProfile', '-NonInteractive', '-Command', $command)
        $lines = @(& $ChildPowerShell.FilePath @childArguments)
        if ($LASTEXITCODE -ne 0) {
            throw "the child process failed (exit code $LASTEXITCODE): $($lines -join ' ')"
        }
        $parts = ([string] $lines[-1]).Split(';')
        $imports += [double]::Parse($parts[0], $Invariant)
        $calls += [double]::Parse($parts[1], $Invariant)
    }
    [pscustomobject]@{ Import = Get-Median $imports; Call = Get-Median $calls }
}

<#
  Latency of PowerShell.Stop() while 4 tasks sleep: the call runs in its own
  [powershell]::Create(); the tasks count a CountdownEvent down as they start, and Stop() is
  timed once they all have (plus 50 ms to be inside Start-Sleep). First run is the warm-up.
#>
function Measure-Stop([switch] $Parallel) {
    $code = if ($Parallel) {
        'param($signal) 1..4 | ForEach-Object -Parallel { $null = ($using:signal).Signal(); Start-Sleep -Seconds 30 } -ThrottleLimit 4'
    }
    else {
        'param($signal, $module) Import-Module -Name $module; 1..4 | Invoke-Gather { $null = ($using:signal).Signal(); Start-Sleep -Seconds 30 } -ThrottleLimit 4'
    }
    $timings = foreach ($run in 0..$Runs) {
        $signal = New-Object -TypeName Threading.CountdownEvent -ArgumentList 4
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript($code).AddArgument($signal).AddArgument($ModulePath)
            $null = $ps.BeginInvoke()
            if (-not $signal.Wait(30000)) {
                throw "the 4 tasks did not start within 30 s (state: $($ps.InvocationStateInfo.State), $($ps.InvocationStateInfo.Reason))"
            }
            Start-Sleep -Milliseconds 50
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $ps.Stop()
            $clock.Stop()
            if ($run -gt 0) { $clock.Elapsed.TotalMilliseconds }
        }
        finally {
            $ps.Dispose()
            $signal.Dispose()
        }
    }
    Get-Median $timings
}

# --- formatting ---------------------------------------------------------------------------

function Format-Ms($Value) {
    if ($Value -is [double]) { $Value.ToString('N1', $Invariant) } else { $Value }
}

function Format-Ratio([double] $Ratio) {
    $Ratio.ToString($(if ($Ratio -ge 10) { 'N0' } else { 'N2' }), $Invariant) + 'x'
}

function Format-PerItem($TotalMs, [int] $Items) {
    if ($TotalMs -isnot [double]) { return '' }
    $us = $TotalMs * 1000 / $Items
    if ($us -ge 10000) { ($us / 1000).ToString('N1', $Invariant) + ' ms' } else { $us.ToString('N1', $Invariant) + ' us' }
}

function Write-Table([string] $Title, [object[]] $Rows) {
    Write-Output ''
    Write-Output $Title
    Write-Output ($Rows | Format-Table -AutoSize -Wrap | Out-String -Width 200).TrimEnd()
}

$Summary = New-Object -TypeName System.Collections.Generic.List[object]
function Add-Verdict([string] $Case, [string] $Target, $Measured, [scriptblock] $Met) {
    $verdict = if ($Measured -is [string]) { 'n/a' } elseif (& $Met $Measured) { 'met' } else { 'NOT met' }
    $Summary.Add([pscustomobject]@{ Case = $Case; Target = $Target; Measured = $Measured; Verdict = $verdict })
}

# --- header and a sanity check ------------------------------------------------------------

$module = Get-Module -Name AsyncGroup
Write-Output 'AsyncGroup cmdlet benchmarks'
Write-Output ("  date        {0:yyyy-MM-dd HH:mm}" -f (Get-Date))
$os = [Environment]::OSVersion.VersionString
try { $os = [Runtime.InteropServices.RuntimeInformation]::OSDescription } catch { } # .NET Framework before 4.7.1 lacks it
Write-Output "  PowerShell  $($PSVersionTable.PSVersion) ($($PSVersionTable.PSEdition)) on $os"
Write-Output "  processors  $([Environment]::ProcessorCount)"
Write-Output "  module      AsyncGroup $($module.Version) from $($module.ModuleBase)"
Write-Output "  method      median of $Runs run(s) after one warm-up; Stopwatch; trivial item = { `$_ * 2 }"

$expected = (1..100 | ForEach-Object { $_ * 2 }) -join ','
$actual = (1..100 | Invoke-Gather { $_ * 2 } -ThrottleLimit 4) -join ','
if ($actual -ne $expected) {
    throw "Invoke-Gather returned the wrong result for 1..100 (got: $actual)"
}

# --- (a) trivial items ----------------------------------------------------------------------

$rows = @()
$perItem = @{}
foreach ($N in 2000, 10000) {
    $sequential = Invoke-Case { Measure-Median { 1..$N | ForEach-Object { $_ * 2 } } }
    $gather = Invoke-Case { Measure-Median { 1..$N | Invoke-Gather { $_ * 2 } -ThrottleLimit 4 } }
    $parallel = if (-not $IsPwsh7) { 'skipped: needs PowerShell 7' }
    elseif ($N -gt 2000 -and $SkipSlow) { 'skipped: -SkipSlow' }
    else { Invoke-Case { Measure-Median { 1..$N | ForEach-Object -Parallel { $_ * 2 } -ThrottleLimit 4 } } }

    $perItem["seq$N"] = $sequential
    $perItem["ag$N"] = $gather
    $perItem["par$N"] = $parallel
    $rows += [pscustomobject]@{ Items = $N; Command = 'ForEach-Object (sequential)'; 'Median ms' = Format-Ms $sequential; 'Per item' = Format-PerItem $sequential $N; Ratio = '1 (baseline)' }
    $rows += [pscustomobject]@{ Items = $N; Command = 'Invoke-Gather -ThrottleLimit 4'; 'Median ms' = Format-Ms $gather; 'Per item' = Format-PerItem $gather $N
        Ratio = $(if ($gather -is [double] -and $sequential -is [double]) { (Format-Ratio ($gather / $sequential)) + ' sequential' } else { '' }) }
    $rows += [pscustomobject]@{ Items = $N; Command = 'ForEach-Object -Parallel -ThrottleLimit 4'; 'Median ms' = Format-Ms $parallel; 'Per item' = Format-PerItem $parallel $N
        Ratio = $(if ($parallel -is [double] -and $gather -is [double]) { (Format-Ratio ($parallel / $gather)) + ' Invoke-Gather' } else { '' }) }
}
if ($HasThreadJob) {
    $threadJob = Invoke-Case {
        Measure-Median {
            1..200 | ForEach-Object { Start-ThreadJob -ThrottleLimit 4 -ScriptBlock { param($x) $x * 2 } -ArgumentList $_ } |
                Receive-Job -Wait -AutoRemoveJob
        }
    }
    $rows += [pscustomobject]@{ Items = 200; Command = 'Start-ThreadJob -ThrottleLimit 4 (one job per item)'; 'Median ms' = Format-Ms $threadJob; 'Per item' = Format-PerItem $threadJob 200
        Ratio = $(if ($threadJob -is [double] -and $perItem['ag2000'] -is [double]) { (Format-Ratio (($threadJob / 200) / ($perItem['ag2000'] / 2000))) + ' Invoke-Gather (2,000) per item' } else { '' }) }
}
else {
    $rows += [pscustomobject]@{ Items = 200; Command = 'Start-ThreadJob'; 'Median ms' = 'skipped: ThreadJob not available'; 'Per item' = ''; Ratio = '' }
}
Write-Table '(a) Trivial items { $_ * 2 }, ThrottleLimit 4' $rows

$seq = $perItem['seq2000']; $ag = $perItem['ag2000']; $par = $perItem['par2000']
Add-Verdict '2,000 trivial items: Invoke-Gather / sequential' '<= 3x' $(if ($ag -is [double] -and $seq -is [double]) { [math]::Round($ag / $seq, 2) } else { 'n/a' }) { param($v) $v -le 3 }
Add-Verdict '2,000 trivial items: -Parallel / Invoke-Gather' '>= 20x' $(if ($ag -is [double] -and $par -is [double]) { [math]::Round($par / $ag, 1) } else { 'n/a' }) { param($v) $v -ge 20 }

# --- (b) fan-out of sleeping tasks ----------------------------------------------------------

$rows = @()
foreach ($C in 20, 100) {
    $warm = Invoke-Case { Measure-Median { 1..$C | Invoke-Gather { Start-Sleep -Milliseconds 200 } -ThrottleLimit $C } }
    $cold = Invoke-Case { Measure-Cold -Count $C }
    $rows += [pscustomobject]@{ Tasks = $C; Command = 'Invoke-Gather'; 'Warm ms' = Format-Ms $warm; 'Cold ms' = $(if ($cold -is [string]) { $cold } else { Format-Ms $cold.Call })
        'Import ms (cold)' = $(if ($cold -is [string]) { '' } else { Format-Ms $cold.Import })
        'Warm - ideal' = $(if ($warm -is [double]) { Format-Ms ($warm - 200) } else { '' }) }
    if ($C -eq 20) {
        Add-Verdict '20 x Start-Sleep 200 ms, TL 20, warm (ideal 200 ms)' '<= 300 ms' $(if ($warm -is [double]) { [math]::Round($warm) } else { 'n/a' }) { param($v) $v -le 300 }
        Add-Verdict '20 x Start-Sleep 200 ms, TL 20, cold (ideal 200 ms)' '<= 400 ms' $(if ($cold -isnot [string]) { [math]::Round($cold.Call) } else { 'n/a' }) { param($v) $v -le 400 }
    }

    if ($IsPwsh7) {
        $warm = Invoke-Case { Measure-Median { 1..$C | ForEach-Object -Parallel { Start-Sleep -Milliseconds 200 } -ThrottleLimit $C } }
        $cold = Invoke-Case { Measure-Cold -Count $C -Parallel }
        $rows += [pscustomobject]@{ Tasks = $C; Command = 'ForEach-Object -Parallel'; 'Warm ms' = Format-Ms $warm; 'Cold ms' = $(if ($cold -is [string]) { $cold } else { Format-Ms $cold.Call })
            'Import ms (cold)' = ''
            'Warm - ideal' = $(if ($warm -is [double]) { Format-Ms ($warm - 200) } else { '' }) }
    }
}
Write-Table '(b) Fan-out: N x Start-Sleep -Milliseconds 200, ThrottleLimit N (ideal 200 ms); cold = first call in a fresh process' $rows

# --- (c) a small call repeated --------------------------------------------------------------

$rows = @()
$small = Invoke-Case { (Measure-Median { for ($k = 0; $k -lt 50; $k++) { $null = 1..8 | Invoke-Gather { $_ * 2 } -ThrottleLimit 4 } }) / 50 }
$rows += [pscustomobject]@{ Command = 'Invoke-Gather -ThrottleLimit 4'; 'Per call ms' = Format-Ms $small; Ratio = '1 (baseline)' }
if ($IsPwsh7) {
    $smallParallel = Invoke-Case { (Measure-Median { for ($k = 0; $k -lt 50; $k++) { $null = 1..8 | ForEach-Object -Parallel { $_ * 2 } -ThrottleLimit 4 } }) / 50 }
    $rows += [pscustomobject]@{ Command = 'ForEach-Object -Parallel -ThrottleLimit 4'; 'Per call ms' = Format-Ms $smallParallel
        Ratio = $(if ($small -is [double] -and $smallParallel -is [double]) { (Format-Ratio ($smallParallel / $small)) + ' Invoke-Gather' } else { '' }) }
}
Write-Table '(c) A small call (8 trivial items) repeated 50 times, warm' $rows
Add-Verdict 'small call (8 items), per call, warm' '<= 2 ms' $(if ($small -is [double]) { [math]::Round($small, 2) } else { 'n/a' }) { param($v) $v -le 2 }

# --- (d) latency until control returns ------------------------------------------------------

$rows = @()
$stop = Invoke-Case { Measure-Stop }
$rows += [pscustomobject]@{ Case = 'PowerShell.Stop() while 4 tasks sleep'; Command = 'Invoke-Gather'; 'Median ms' = Format-Ms $stop; Ideal = '0' }
if ($IsPwsh7) {
    $stopParallel = Invoke-Case { Measure-Stop -Parallel }
    $rows += [pscustomobject]@{ Case = 'PowerShell.Stop() while 4 tasks sleep'; Command = 'ForEach-Object -Parallel'; 'Median ms' = Format-Ms $stopParallel; Ideal = '0' }
}

$timeout = Invoke-Case {
    Measure-Median {
        try {
            1..4 | Invoke-Gather { Start-Sleep -Seconds 10 } -ThrottleLimit 4 -Timeout 0.2 -WarningAction SilentlyContinue
            throw 'Invoke-Gather -Timeout 0.2 returned without a timeout error'
        }
        catch {
            if ($_.FullyQualifiedErrorId -notlike 'AsyncGroup.Timeout*') { throw }
        }
    }
}
$rows += [pscustomobject]@{ Case = '-Timeout 0.2 on 4 tasks sleeping 10 s (time - 200 ms)'; Command = 'Invoke-Gather'
    'Median ms' = $(if ($timeout -is [double]) { Format-Ms ($timeout - 200) } else { $timeout }); Ideal = '0' }

$first = Invoke-Case { Measure-Median { 1..4 | Invoke-Gather { Start-Sleep -Milliseconds (200 * $_); $_ } -ThrottleLimit 4 | Select-Object -First 1 } }
$rows += [pscustomobject]@{ Case = 'Select-Object -First 1 of 4 items sleeping 200*i ms (total)'; Command = 'Invoke-Gather'; 'Median ms' = Format-Ms $first; Ideal = '200' }
if ($IsPwsh7) {
    $firstParallel = Invoke-Case { Measure-Median { 1..4 | ForEach-Object -Parallel { Start-Sleep -Milliseconds (200 * $_); $_ } -ThrottleLimit 4 | Select-Object -First 1 } }
    $rows += [pscustomobject]@{ Case = 'Select-Object -First 1 of 4 items sleeping 200*i ms (total)'; Command = 'ForEach-Object -Parallel'; 'Median ms' = Format-Ms $firstParallel; Ideal = '200' }
}
Write-Table '(d) Latency until control returns' $rows
Add-Verdict 'Select-Object -First 1 of items sleeping 200*i ms' '<= 240 ms' $(if ($first -is [double]) { [math]::Round($first) } else { 'n/a' }) { param($v) $v -le 240 }
Add-Verdict 'PowerShell.Stop() while 4 tasks sleep' '<= 10 ms' $(if ($stop -is [double]) { [math]::Round($stop, 1) } else { 'n/a' }) { param($v) $v -le 10 }

# --- summary --------------------------------------------------------------------------------

Write-Table 'Against the targets of SPEC section 4' $Summary.ToArray()
if ($script:Failures -gt 0) {
    Write-Output ''
    Write-Output "$($script:Failures) case(s) failed with an error (see 'error:' above)."
    exit 1
}
