#Requires -Version 7.0

<#
.SYNOPSIS
    Times Invoke-Gather -Session against Invoke-Command -Session: 200 short remote items over 4
    loopback SSH sessions with the same ThrottleLimit, and prints a markdown table.

.DESCRIPTION
    Starts the throwaway OpenSSH endpoint the remoting tests use (tests/SshEndpoint.ps1: sshd on a
    free 127.0.0.1 port, this same PowerShell as the 'powershell' subsystem; needs root and
    openssh-server), opens -Sessions sessions to it, and times each case once as a warm-up and
    then -Runs times; the median is reported. Every case computes the same results (item * 2, in
    input order) and the script checks that they do.

    Cases:
    - Invoke-Gather -Session: the items piped in, spread over the sessions (one task per session
      at a time, -ThrottleLimit = sessions);
    - Invoke-Command, one call per item, round-robin over the sessions: the direct translation of
      a per-item loop (sequential: Invoke-Command has no way to run items concurrently on one
      call's sessions);
    (Invoke-Command -AsJob per item is no option: a second pipeline on a busy session fails with
    "Pipelines cannot be run concurrently".)
    - Invoke-Command hand-chunked: one call over all sessions, each session taking its share of
      the items (the fastest way to use Invoke-Command, at the price of splitting the work by hand
      and losing per-item timeout, fail-fast and ordering).

.EXAMPLE
    dotnet pwsh -NoProfile -File bench/Invoke-RemoteBench.ps1

.EXAMPLE
    dotnet pwsh -NoProfile -File bench/Invoke-RemoteBench.ps1 -Items 500 -Runs 5 -OutFile remote.md
#>
[CmdletBinding()]
param(
    [ValidateRange(1, 100000)] [int] $Items = 200,
    [ValidateRange(1, 64)] [int] $Sessions = 4,
    [ValidateRange(1, 99)] [int] $Runs = 3,
    # Also write the table to this file.
    [string] $OutFile,
    # The module folder to import.
    [string] $ModulePath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
if (Get-Variable -Name PSStyle -ErrorAction Ignore) { $PSStyle.OutputRendering = 'PlainText' }

if (-not $ModulePath) {
    $ModulePath = if ($env:ASYNCGROUP_MODULE_PATH) { $env:ASYNCGROUP_MODULE_PATH } else { Join-Path $PSScriptRoot '../out/AsyncGroup' }
}
if (-not (Test-Path -LiteralPath (Join-Path $ModulePath 'AsyncGroup.psd1'))) {
    throw "No AsyncGroup module in '$ModulePath': run ./build.ps1 first, or set ASYNCGROUP_MODULE_PATH."
}
Import-Module -Name (Resolve-Path -LiteralPath $ModulePath).ProviderPath

. (Join-Path $PSScriptRoot '../build/PowerShellCommand.ps1')
. (Join-Path $PSScriptRoot '../tests/SshEndpoint.ps1')

$endpoint = Start-SshTestEndpoint
if ($null -eq $endpoint) { throw "No SSH endpoint: $SshSkipReason" }

try {
    $s = @(New-SshTestSession $endpoint -Count $Sessions)
    $inputItems = 1..$Items
    $expected = @($inputItems | ForEach-Object { $_ * 2 })

    $cases = [ordered]@{
        "Invoke-Gather -Session (TL $Sessions)" = {
            $inputItems | Invoke-Gather -Session $s -ThrottleLimit $Sessions { $_ * 2 }
        }
        'Invoke-Command per item, round-robin' = {
            for ($i = 0; $i -lt $inputItems.Count; $i++) {
                Invoke-Command -Session $s[$i % $s.Count] -ScriptBlock { param($x) $x * 2 } -ArgumentList $inputItems[$i]
            }
        }
        "Invoke-Command hand-chunked (TL $Sessions)" = {
            $n = $s.Count
            $jobs = for ($k = 0; $k -lt $n; $k++) {
                $share = @(for ($i = $k; $i -lt $inputItems.Count; $i += $n) { $inputItems[$i] })
                Invoke-Command -Session $s[$k] -ThrottleLimit $Sessions -AsJob -ScriptBlock { param($items) foreach ($x in $items) { $x * 2 } } -ArgumentList (, $share)
            }
            $null = $jobs | Wait-Job
            $parts = foreach ($job in $jobs) { , @(Receive-Job -Job $job); Remove-Job -Job $job }
            # Back to input order.
            for ($i = 0; $i -lt $inputItems.Count; $i++) { $parts[$i % $n][[math]::Floor($i / $n)] }
        }
    }

    $rows = foreach ($name in $cases.Keys) {
        $block = $cases[$name]
        $result = @(& $block)
        if ((@($result | ForEach-Object { [int]"$_" }) -join ',') -ne ($expected -join ',')) {
            throw "Case '$name' returned wrong results: $(@($result)[0..4] -join ',') …"
        }
        $times = foreach ($run in 1..$Runs) {
            [GC]::Collect()
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            $null = & $block
            $clock.Elapsed.TotalMilliseconds
        }
        $median = @($times | Sort-Object)[[math]::Floor($Runs / 2)]
        [pscustomobject]@{ Case = $name; Median = $median }
    }

    $baseline = ($rows | Where-Object Case -like 'Invoke-Command per item*').Median
    $machine = "$(Get-Date -Format 'yyyy-MM-dd') · nproc $([Environment]::ProcessorCount) · PowerShell $($PSVersionTable.PSVersion) · OpenSSH loopback · $Items items, $Sessions sessions, median of $Runs"
    $lines = @(
        $machine
        ''
        '| case | total ms | ms per item | vs Invoke-Command per item |'
        '|---|---:|---:|---:|'
    )
    foreach ($row in $rows) {
        $lines += '| {0} | {1:N0} | {2:N2} | {3:N2}x |' -f $row.Case, $row.Median, ($row.Median / $Items), ($row.Median / $baseline)
    }
    $lines
    if ($OutFile) { $lines | Set-Content -LiteralPath $OutFile }
}
finally {
    Stop-SshTestEndpoint $endpoint
}
