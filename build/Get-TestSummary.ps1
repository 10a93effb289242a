#Requires -Version 5.1

<#
.SYNOPSIS
    Sums the test results in a folder — xunit's TRX files and Pester's NUnit 3 XML — and prints a
    line per suite, then one closing line: 'N passed, N failed, N skipped'.

.DESCRIPTION
    Used by build.ps1 -Task Test and by .ci/run, so both report the same figures, read from the
    result files the runners wrote rather than from their console output. A suite whose result
    file is missing counts as one failure: a runner that crashed must not read as green.
#>
[CmdletBinding()]
param(
    # The folder holding *.trx (xunit) and pester.xml (Pester, NUnit 3 format).
    [Parameter(Mandatory)] [string] $Path
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

function New-Count([string] $Suite, [int] $Passed, [int] $Failed, [int] $Skipped) {
    [pscustomobject]@{ Suite = $Suite; Passed = $Passed; Failed = $Failed; Skipped = $Skipped }
}

$counts = @()

$trx = @(Get-ChildItem -Path $Path -Filter *.trx -File -ErrorAction SilentlyContinue)
if ($trx.Count -eq 0) {
    Write-Host "xunit: no TRX result in '$Path' (did 'dotnet test' run?)"
    $counts += New-Count 'xunit' 0 1 0
}
foreach ($file in $trx) {
    $xml = [xml] [System.IO.File]::ReadAllText($file.FullName)
    $c = $xml.TestRun.ResultSummary.Counters
    # TRX: 'total' includes tests that were not executed (skipped).
    $counts += New-Count 'xunit' ([int] $c.passed) ([int] $c.failed + [int] $c.error + [int] $c.timeout + [int] $c.aborted) ([int] $c.total - [int] $c.executed)
}

$pester = Join-Path $Path 'pester.xml'
if (Test-Path -LiteralPath $pester -PathType Leaf) {
    $run = ([xml] [System.IO.File]::ReadAllText($pester)).'test-run'
    # NUnit 3: inconclusive tests are neither passed nor failed; count them as skipped.
    $counts += New-Count 'Pester' ([int] $run.passed) ([int] $run.failed) ([int] $run.skipped + [int] $run.inconclusive)
}
else {
    Write-Host "Pester: no result file '$pester' (did Pester run?)"
    $counts += New-Count 'Pester' 0 1 0
}

foreach ($suite in 'xunit', 'Pester') {
    $mine = @($counts | Where-Object { $_.Suite -eq $suite })
    $p = ($mine | Measure-Object -Property Passed -Sum).Sum
    $f = ($mine | Measure-Object -Property Failed -Sum).Sum
    $s = ($mine | Measure-Object -Property Skipped -Sum).Sum
    Write-Host "${suite}: $p passed, $f failed, $s skipped"
}
$passed = ($counts | Measure-Object -Property Passed -Sum).Sum
$failed = ($counts | Measure-Object -Property Failed -Sum).Sum
$skipped = ($counts | Measure-Object -Property Skipped -Sum).Sum
"$passed passed, $failed failed, $skipped skipped"
