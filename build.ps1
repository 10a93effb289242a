#Requires -Version 5.1
<#
.SYNOPSIS
    Builds, tests, documents, packages and benchmarks the AsyncGroup module.

.DESCRIPTION
    A thin driver: staging the module (out/AsyncGroup/) is done by MSBuild, this script only
    calls the tools in order and stops at the first failure. Runs in Windows PowerShell 5.1
    and PowerShell 7. Tasks always run in this order, whatever order they are given in:

      Clean    remove out/, the projects' bin/ and obj/, TestResults/
      Build    dotnet build AsyncGroup.sln; check the staged module folder
      Docs     platyPS: docs/help/*.md -> out/AsyncGroup/en-US (MAML + about_AsyncGroup.help.txt)
      Test     dotnet test AsyncGroup.sln (xunit), then Pester (tests/*.Tests.ps1) against the
               staged module in a child process; results in TestResults/, and one closing line
               'N passed, N failed, N skipped' for both suites
      Package  out/AsyncGroup.<version>.nupkg with PSResourceGet (build/New-ModulePackage.ps1)
      Bench    bench/Invoke-CmdletBench.ps1 in a child process, then the Core harness
               (bench/AsyncGroup.Bench) when it exists

    Dependency versions are pinned in build.depends.psd1. Nothing needs the PowerShell Gallery:
    PowerShell itself is a local .NET tool (.config/dotnet-tools.json; 'dotnet tool restore',
    then 'dotnet pwsh'), and Pester, when no suitable one is importable, is restored from NuGet
    into the repository's ignored .tools/ folder (build/Tools.proj).

.EXAMPLE
    ./build.ps1

    Builds the Release configuration and prints the staged module's path. From bash on a machine
    that has only the .NET SDK: dotnet tool restore && dotnet pwsh ./build.ps1

.EXAMPLE
    ./build.ps1 -Task Clean, Build, Docs, Test, Package

    From PowerShell. From another shell write the list without spaces:
    pwsh ./build.ps1 -Task Clean,Build,Test
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    # One or more of Clean, Build, Docs, Test, Package, Bench. Checked below rather than with
    # [ValidateSet]: from a shell, `pwsh ./build.ps1 -Task Clean,Build` passes the single
    # string 'Clean,Build' (-File does not build arrays), so lists are split first.
    [ArgumentCompleter({
            param($commandName, $parameterName, $wordToComplete)
            'Clean', 'Build', 'Docs', 'Test', 'Package', 'Bench' | Where-Object { $_ -like "$wordToComplete*" }
        })]
    [Parameter(Position = 0)]
    [string[]] $Task = 'Build',

    [ValidateSet('Release', 'Debug')]
    [string] $Configuration = 'Release'
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$TaskOrder = 'Clean', 'Build', 'Docs', 'Test', 'Package', 'Bench'
$Task = @($Task | ForEach-Object { $_ -split '[,\s]+' } | Where-Object { $_ })
if ($Task.Count -eq 0) {
    throw "No task given. Tasks: $($TaskOrder -join ', ')."
}
foreach ($name in $Task) {
    if ($TaskOrder -notcontains $name) {
        throw "Unknown task '$name'. Tasks: $($TaskOrder -join ', ')."
    }
}

$RepoRoot = $PSScriptRoot
$Solution = Join-Path $RepoRoot 'AsyncGroup.sln'
$SourceManifest = Join-Path $RepoRoot 'AsyncGroup.psd1'
$OutDir = Join-Path $RepoRoot 'out'
$ModuleDir = Join-Path $OutDir 'AsyncGroup'
$TestResultsDir = Join-Path $RepoRoot 'TestResults'
$Depends = Import-PowerShellDataFile -Path (Join-Path $RepoRoot 'build.depends.psd1')

# --- helpers ---------------------------------------------------------------------------------

function Write-Step([string] $Message) {
    Write-Host "==> $Message" -ForegroundColor Cyan
}

# Runs a native command, echoes it, and fails when it fails.
function Invoke-Native {
    param(
        [Parameter(Mandatory)] [string] $FilePath,
        [string[]] $ArgumentList = @(),
        # What the command does, for the failure message (default: the command line).
        [string] $What
    )
    $line = "$FilePath $($ArgumentList -join ' ')"
    if (-not $What) { $What = "'$line'" }
    Write-Host "> $line" -ForegroundColor DarkGray
    # To the host, never into the caller's output: a function that runs a tool returns only
    # what it means to return.
    & $FilePath @ArgumentList | Out-Host
    if ($LASTEXITCODE -ne 0) {
        throw "$What failed (exit code $LASTEXITCODE)."
    }
}

function Get-ModuleVersion {
    # The version lives only in the manifest (the csproj reads it from there too).
    [string] (Import-PowerShellDataFile -Path $SourceManifest).ModuleVersion
}

# Get-PowerShellCommand: how to start a child of this very PowerShell (a .NET tool, a native
# pwsh, or Windows PowerShell 5.1), shared with the Pester suite.
. (Join-Path $RepoRoot 'build/PowerShellCommand.ps1')

# Runs a child PowerShell (same edition and install as this one) and fails when it fails.
function Invoke-ChildPowerShell {
    param(
        [Parameter(Mandatory)] [string[]] $ArgumentList,
        [Parameter(Mandatory)] [string] $What
    )
    $pwsh = Get-PowerShellCommand
    Invoke-Native $pwsh.FilePath (@($pwsh.Arguments) + @('-NoProfile', '-NonInteractive') + $ArgumentList) -What $What
}

$script:DotNetChecked = $false
function Assert-DotNet {
    if ($script:DotNetChecked) { return }
    if (-not (Get-Command -Name dotnet -CommandType Application -ErrorAction SilentlyContinue)) {
        throw "The .NET SDK $($Depends.DotNetSdk) or later is required ('dotnet' is not on PATH): https://dot.net"
    }
    $raw = @(& dotnet --version)[0]
    if ($LASTEXITCODE -ne 0 -or -not $raw) {
        throw "'dotnet --version' failed: is a .NET SDK (not only a runtime) installed? $($Depends.DotNetSdk) or later is required."
    }
    $found = [version] (([string] $raw).Trim() -replace '[-+].*$', '')
    if ($found -lt [version] $Depends.DotNetSdk) {
        throw ".NET SDK $found found; $($Depends.DotNetSdk) or later is required (build.depends.psd1)."
    }
    $script:DotNetChecked = $true
}

# Checks that MSBuild staged a complete module and returns the folder's full path.
function Assert-StagedModule {
    $missing = @('AsyncGroup.psd1', 'AsyncGroup.dll', 'AsyncGroup.Core.dll') |
        Where-Object { -not (Test-Path -LiteralPath (Join-Path $ModuleDir $_) -PathType Leaf) }
    if ($missing) {
        throw "The module is not (completely) staged in '$ModuleDir' (missing: $($missing -join ', ')). Run ./build.ps1 -Task Build first."
    }
    (Resolve-Path -LiteralPath $ModuleDir).ProviderPath
}

<#
  Returns the module (PSModuleInfo) to use for a pinned dependency (build.depends.psd1):
  - an importable one of the pinned major version, not older than the pinned version;
  - else, with -FromNuGet, the pinned version restored from NuGet into .tools/packages
    (build/Tools.proj; a module's NuGet package holds the module under tools/);
  - else an error that says what is missing and the command that fixes it.
#>
function Resolve-Dependency {
    param(
        [Parameter(Mandatory)] [string] $Name,
        [switch] $FromNuGet,
        # What to run when the module is missing and cannot be fetched from NuGet.
        [string] $InstallHint
    )
    $pinned = [version] $Depends[$Name]
    $found = @(Get-Module -ListAvailable -Name $Name |
            Where-Object { $_.Version.Major -eq $pinned.Major -and $_.Version -ge $pinned } |
            Sort-Object -Property Version -Descending)
    if ($found.Count -gt 0) {
        Write-Host "Using $Name $($found[0].Version) ($($found[0].Path))"
        return $found[0]
    }
    if (-not $FromNuGet) {
        throw "$Name $pinned (or a later $($pinned.Major).x) is required and not importable. $InstallHint"
    }

    # NuGet lowercases package folder names.
    $manifest = Join-Path $RepoRoot ".tools/packages/$($Name.ToLowerInvariant())/$pinned/tools/$Name.psd1"
    if (-not (Test-Path -LiteralPath $manifest -PathType Leaf)) {
        Write-Step "Restoring $Name $pinned from NuGet into .tools/packages"
        Assert-DotNet
        Invoke-Native dotnet @('restore', (Join-Path $RepoRoot 'build/Tools.proj'), "-p:$($Name)Version=$pinned", '--nologo') `
            -What "Restoring the NuGet package $Name $pinned (build/Tools.proj)"
        if (-not (Test-Path -LiteralPath $manifest -PathType Leaf)) {
            throw "The NuGet package $Name $pinned was restored but has no module at '$manifest'."
        }
    }
    $module = Get-Module -ListAvailable -Name $manifest
    Write-Host "Using $Name $($module.Version) ($manifest)"
    $module
}

# --- tasks -----------------------------------------------------------------------------------

function Invoke-Clean {
    Write-Step 'Clean'
    $targets = @($OutDir, $TestResultsDir, (Join-Path $RepoRoot 'BenchmarkDotNet.Artifacts'))
    foreach ($project in Get-ChildItem -Path $RepoRoot -Filter *.csproj -Recurse -File |
            Where-Object { $_.FullName -notmatch '[\\/](bin|obj|out)[\\/]' }) {
        $targets += Join-Path $project.DirectoryName 'bin'
        $targets += Join-Path $project.DirectoryName 'obj'
    }
    foreach ($path in $targets) {
        if (Test-Path -LiteralPath $path) {
            Write-Host "Removing $path"
            Remove-Item -LiteralPath $path -Recurse -Force
        }
    }
}

function Invoke-Build {
    Write-Step "Build ($Configuration)"
    Assert-DotNet
    # MSBuild stages out/AsyncGroup (src/Cmdlets/AsyncGroup.csproj, target StageModule).
    Invoke-Native dotnet @('build', $Solution, '-c', $Configuration, '--nologo')
    $staged = Assert-StagedModule
    Write-Host "Module staged: $staged" -ForegroundColor Green
}

function Invoke-Docs {
    Write-Step 'Docs'
    $helpSource = Join-Path $RepoRoot 'docs/help'
    if (-not (Get-ChildItem -Path $helpSource -Filter *.md -ErrorAction SilentlyContinue)) {
        throw "No platyPS markdown in '$helpSource': nothing to turn into help."
    }
    $staged = Assert-StagedModule
    $platyPS = Resolve-Dependency -Name platyPS
    Import-Module -Name $platyPS.Path -Force

    # One call converts every cmdlet page (grouped by their 'external help file' metadata,
    # AsyncGroup.dll-Help.xml) and every about_*.md into about_*.help.txt.
    $helpOut = Join-Path $staged 'en-US'
    New-ExternalHelp -Path $helpSource -OutputPath $helpOut -Force | Out-Null

    $about = Join-Path $helpSource 'about_AsyncGroup.md'
    $aboutOut = Join-Path $helpOut 'about_AsyncGroup.help.txt'
    if ((Test-Path -LiteralPath $about) -and -not (Test-Path -LiteralPath $aboutOut)) {
        New-ExternalHelp -Path $about -OutputPath $helpOut -Force | Out-Null
    }

    $maml = Join-Path $helpOut 'AsyncGroup.dll-Help.xml'
    if (-not (Test-Path -LiteralPath $maml)) {
        throw "platyPS wrote no '$maml': each docs/help/<Verb-Noun>.md needs 'external help file: AsyncGroup.dll-Help.xml' in its metadata."
    }
    if (-not (Test-Path -LiteralPath $aboutOut)) {
        throw "platyPS wrote no '$aboutOut' (is docs/help/about_AsyncGroup.md missing?)."
    }
    Get-ChildItem -LiteralPath $helpOut | ForEach-Object { Write-Host "Help: $($_.FullName)" -ForegroundColor Green }
}

function Invoke-Test {
    Write-Step "Test: xunit ($Configuration)"
    Assert-DotNet
    if (Test-Path -LiteralPath $TestResultsDir) {
        Remove-Item -LiteralPath $TestResultsDir -Recurse -Force
    }
    New-Item -ItemType Directory -Path $TestResultsDir -Force | Out-Null
    # Both suites run even when the first fails, so one run reports every failure.
    $failures = @()
    try {
        Invoke-Native dotnet @('test', $Solution, '-c', $Configuration, '--nologo',
            '--logger', 'trx', '--results-directory', $TestResultsDir) -What 'The xunit suite (dotnet test)'
    }
    catch {
        $failures += $_.Exception.Message
    }
    # dotnet test built (and so staged) the module.
    $staged = Assert-StagedModule

    Write-Step 'Test: Pester'
    $testsDir = Join-Path $RepoRoot 'tests'
    $pester = Resolve-Dependency -Name Pester -FromNuGet

    # A child process, so the staged DLL is never loaded (and locked) by this session and every
    # run starts clean. Paths travel in environment variables; the command has no double quotes,
    # which Windows PowerShell would mangle on a native command line.
    $command = @(
        # No global $ErrorActionPreference here: the tests run in this session's global scope
        # and check how the module honours the caller's preference.
        'Import-Module -Name $env:ASYNCGROUP_PESTER_PATH -Force -ErrorAction Stop'
        '$c = New-PesterConfiguration'
        '$c.Run.Path = $env:ASYNCGROUP_TESTS_PATH'
        '$c.Run.Exit = $true'
        '$c.Output.Verbosity = ''Normal'''
        '$c.TestResult.Enabled = $true'
        '$c.TestResult.OutputFormat = ''NUnit3'''
        '$c.TestResult.OutputPath = $env:ASYNCGROUP_PESTER_RESULT'
        'Invoke-Pester -Configuration $c'
    ) -join '; '
    $saved = @{}
    $environment = @{
        ASYNCGROUP_MODULE_PATH   = $staged
        ASYNCGROUP_PESTER_PATH   = $pester.Path
        ASYNCGROUP_TESTS_PATH    = $testsDir
        ASYNCGROUP_PESTER_RESULT = Join-Path $TestResultsDir 'pester.xml'
    }
    try {
        foreach ($name in $environment.Keys) {
            $saved[$name] = [Environment]::GetEnvironmentVariable($name)
            [Environment]::SetEnvironmentVariable($name, $environment[$name])
        }
        Invoke-ChildPowerShell @('-Command', $command) -What 'The Pester suite (tests/*.Tests.ps1 against the staged module)'
    }
    catch {
        $failures += $_.Exception.Message
    }
    finally {
        foreach ($name in $saved.Keys) {
            [Environment]::SetEnvironmentVariable($name, $saved[$name])
        }
    }

    Write-Step 'Test: results'
    & (Join-Path $RepoRoot 'build/Get-TestSummary.ps1') -Path $TestResultsDir
    if ($failures.Count -gt 0) {
        throw ($failures -join ' ')
    }
}

function Invoke-Package {
    Write-Step 'Package'
    $staged = Assert-StagedModule
    if (-not (Test-Path -LiteralPath (Join-Path $staged 'en-US/AsyncGroup.dll-Help.xml'))) {
        Write-Warning 'The staged module has no en-US help (AsyncGroup.dll-Help.xml): the package will ship without it.'
    }
    $package = & (Join-Path $RepoRoot 'build/New-ModulePackage.ps1') -ModulePath $staged -DestinationPath $OutDir
    Write-Host "Package: $($package.FullName)" -ForegroundColor Green
}

function Invoke-Bench {
    Write-Step 'Bench: cmdlets'
    $staged = Assert-StagedModule
    $saved = $env:ASYNCGROUP_MODULE_PATH
    try {
        $env:ASYNCGROUP_MODULE_PATH = $staged
        Invoke-ChildPowerShell @('-File', (Join-Path $RepoRoot 'bench/Invoke-CmdletBench.ps1')) -What 'The cmdlet benchmark'
    }
    finally {
        $env:ASYNCGROUP_MODULE_PATH = $saved
    }

    $coreBench = Join-Path $RepoRoot 'bench/AsyncGroup.Bench'
    if (Test-Path -LiteralPath $coreBench) {
        Write-Step 'Bench: Core'
        Assert-DotNet
        Invoke-Native dotnet @('run', '-c', 'Release', '--project', $coreBench)
    }
    else {
        Write-Host 'No bench/AsyncGroup.Bench project: Core benchmarks skipped.' -ForegroundColor Yellow
    }
}

# --- main ------------------------------------------------------------------------------------

foreach ($name in $TaskOrder | Where-Object { $Task -contains $_ }) {
    & "Invoke-$name"
}
