#requires -Version 7.0

<#
.SYNOPSIS
    Makes a copy of this PowerShell whose own assemblies are precompiled (ReadyToRun), to time the
    cold cases as an installed PowerShell runs them.

.DESCRIPTION
    The PowerShell of the NuGet package 'PowerShell' (a .NET tool) ships its assemblies as IL only:
    every fresh process compiles PowerShell's own code as it first runs it. The installers
    (.deb, .rpm, .msi, the archives) ship the same assemblies precompiled with crossgen2. A cold
    call pays for that difference: a fresh process's first 20-way fan-out compiled about 1,200
    methods here, a quarter of the processor time of the call, most of them PowerShell's.

    This script copies $PSHOME (the running PowerShell's folder) to -Destination and compiles every
    IL-only assembly there with crossgen2, for the operating system and processor it runs on.
    crossgen2 comes from NuGet (Microsoft.NETCore.App.Crossgen2.<rid>, the version of the running
    .NET), restored by a throwaway project in a temporary folder. Nothing is written to the
    repository; the copy is a measuring tool, not something to ship.

    Run the bench with the copy (its cold children then use it too):
        dotnet <Destination>/pwsh.dll -NoProfile -File bench/Invoke-CmdletBench.ps1 ...

.EXAMPLE
    dotnet pwsh -NoProfile -File bench/New-PrecompiledPowerShell.ps1 -Destination /tmp/pwsh-r2r
#>
[CmdletBinding()]
param(
    # The folder to create (it must not exist yet).
    [Parameter(Mandatory)]
    [string] $Destination
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
. (Join-Path $PSScriptRoot 'AssemblyCodeKind.ps1')

if (Test-Path -LiteralPath $Destination) {
    throw "'$Destination' exists already: give a folder to create."
}

$runtime = [System.Runtime.InteropServices.RuntimeInformation]
$version = [Environment]::Version.ToString(3) # the running .NET, e.g. 10.0.12
$os = if ($IsWindows) { 'win' } elseif ($IsMacOS) { 'osx' } else { 'linux' }
$arch = $runtime::OSArchitecture.ToString().ToLowerInvariant()
$rid = "$os-$arch"
$frameworkDir = [System.Runtime.InteropServices.RuntimeEnvironment]::GetRuntimeDirectory()

# crossgen2, restored from NuGet into the global packages folder by a throwaway project.
$restoreDir = Join-Path ([IO.Path]::GetTempPath()) "crossgen2-restore-$PID"
$null = New-Item -ItemType Directory -Path $restoreDir
try {
    $project = @"
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>net$($version.Split('.')[0]).0</TargetFramework></PropertyGroup>
  <ItemGroup><PackageDownload Include="Microsoft.NETCore.App.Crossgen2.$rid" Version="[$version]" /></ItemGroup>
</Project>
"@
    Set-Content -LiteralPath (Join-Path $restoreDir 'restore.csproj') -Value $project
    $output = & dotnet restore (Join-Path $restoreDir 'restore.csproj') --nologo 2>&1
    if ($LASTEXITCODE -ne 0) {
        throw "Could not restore Microsoft.NETCore.App.Crossgen2.$rid $version from NuGet:`n$($output -join "`n")"
    }
}
finally {
    Remove-Item -LiteralPath $restoreDir -Recurse -Force -ErrorAction SilentlyContinue
}

$packages = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path ([Environment]::GetFolderPath('UserProfile')) '.nuget/packages' }
$tools = Join-Path $packages "microsoft.netcore.app.crossgen2.$rid/$version/tools"
$crossgen = Join-Path $tools $(if ($IsWindows) { 'crossgen2.exe' } else { 'crossgen2' })
if (-not (Test-Path -LiteralPath $crossgen)) {
    throw "crossgen2 is not where its package puts it: '$crossgen'."
}

Copy-Item -LiteralPath $PSHOME -Destination $Destination -Recurse
$responseFile = Join-Path ([IO.Path]::GetTempPath()) "crossgen2-$PID.rsp"
$compiled = 0
$skipped = [System.Collections.Generic.List[string]]::new()
foreach ($file in Get-ChildItem -LiteralPath $PSHOME -Filter *.dll -File) {
    if ((Get-AssemblyCodeKind $file.FullName) -ne 'IL') {
        continue # precompiled already, or not a .NET assembly: crossgen2 has nothing to add
    }

    # The arguments go in a response file: on Unix, PowerShell expands a '*' in an argument to a
    # native command itself, and crossgen2 then took each referenced assembly for an input.
    $target = Join-Path $Destination $file.Name
    $arguments = @($file.FullName, '-o', $target, '-r', (Join-Path $frameworkDir '*.dll'), '-r', (Join-Path $PSHOME '*.dll'),
        '--targetos', $os, '--targetarch', $arch, '-O')
    Set-Content -LiteralPath $responseFile -Value $arguments
    $output = & $crossgen "@$responseFile" 2>&1
    if ($LASTEXITCODE -eq 0) {
        $compiled++
    }
    else {
        # A reference assembly or a facade: the IL-only copy stays.
        Copy-Item -LiteralPath $file.FullName -Destination $target -Force
        $skipped.Add("$($file.Name): $(@($output)[-1])")
    }
}

Remove-Item -LiteralPath $responseFile -ErrorAction SilentlyContinue
"Precompiled $compiled assemblies of $PSHOME into $Destination (crossgen2 $version, $rid)."
foreach ($line in $skipped) { "  left as IL: $line" }
'Run: dotnet {0} -NoProfile -File bench/Invoke-CmdletBench.ps1' -f (Join-Path $Destination 'pwsh.dll')
