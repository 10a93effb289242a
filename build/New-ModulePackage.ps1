#Requires -Version 5.1

<#
.SYNOPSIS
    Packs a staged module folder into <Name>.<Version>.nupkg, the package the PowerShell Gallery
    serves, with PSResourceGet's Compress-PSResource: no repository, no API key, no NuGet client.

.DESCRIPTION
    Used by build.ps1 -Task Package and by the Pester suite (tests/Package.Tests.ps1), so the test
    checks the very code that makes the package. Writes the package into -DestinationPath and
    returns its FileInfo. PSResourceGet (Microsoft.PowerShell.PSResourceGet 1.1 or later) ships
    with PowerShell 7.4 and later; on Windows PowerShell 5.1 install it first.
#>
[CmdletBinding()]
[OutputType([System.IO.FileInfo])]
param(
    # The staged module folder (out/AsyncGroup).
    [Parameter(Mandatory)] [string] $ModulePath,
    # Where the .nupkg goes; created when missing.
    [Parameter(Mandatory)] [string] $DestinationPath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$ModulePath = (Resolve-Path -LiteralPath $ModulePath).ProviderPath
$name = Split-Path -Leaf $ModulePath
$manifestPath = Join-Path $ModulePath "$name.psd1"
if (-not (Test-Path -LiteralPath $manifestPath -PathType Leaf)) {
    throw "'$ModulePath' is not a staged module folder: it has no $name.psd1. Run ./build.ps1 -Task Build first."
}
# The manifest check Compress-PSResource runs too, first, for the plain error.
$manifest = Test-ModuleManifest -Path $manifestPath

$command = Get-Command -Name Compress-PSResource -ErrorAction SilentlyContinue
if (-not $command) {
    throw ("Compress-PSResource (module Microsoft.PowerShell.PSResourceGet 1.1 or later) is not available. " +
        "It ships with PowerShell 7.4 and later; on Windows PowerShell 5.1 run: " +
        "Install-Module Microsoft.PowerShell.PSResourceGet -Scope CurrentUser, then start a new session.")
}

New-Item -ItemType Directory -Path $DestinationPath -Force | Out-Null
$DestinationPath = (Resolve-Path -LiteralPath $DestinationPath).ProviderPath
$package = Join-Path $DestinationPath "$name.$($manifest.Version).nupkg"
if (Test-Path -LiteralPath $package) {
    Remove-Item -LiteralPath $package -Force
}

Compress-PSResource -Path $ModulePath -DestinationPath $DestinationPath
if (-not (Test-Path -LiteralPath $package -PathType Leaf)) {
    throw "Compress-PSResource wrote no '$package'."
}
Get-Item -LiteralPath $package
