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
      Test     dotnet test AsyncGroup.sln, then Pester (tests/*.Tests.ps1) against the staged
               module in a child process
      Package  out/AsyncGroup.<version>.nupkg through a throwaway local PSRepository
      Bench    bench/Invoke-CmdletBench.ps1 in a child process, then the Core harness
               (bench/AsyncGroup.Bench) when it exists

    Dependency versions are pinned in build.depends.psd1.

.EXAMPLE
    ./build.ps1

    Builds the Release configuration and prints the staged module's path.

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
    & $FilePath @ArgumentList
    if ($LASTEXITCODE -ne 0) {
        throw "$What failed (exit code $LASTEXITCODE)."
    }
}

function Get-ModuleVersion {
    # The version lives only in the manifest (the csproj reads it from there too).
    [string] (Import-PowerShellDataFile -Path $SourceManifest).ModuleVersion
}

# This very PowerShell (powershell.exe or pwsh), for child processes of the same edition.
function Get-PowerShellPath {
    (Get-Process -Id $PID).Path
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
  Returns the module (PSModuleInfo from -ListAvailable) to use for a pinned dependency: the
  newest importable one of the pinned major version, or, when there is none, the pinned
  version installed for the current user.
#>
function Resolve-Dependency {
    param(
        [Parameter(Mandatory)] [string] $Name,
        [switch] $NoInstall,
        [string] $InstallHint
    )
    $pinned = [version] $Depends[$Name]
    $found = @(Get-Module -ListAvailable -Name $Name |
            Where-Object { $_.Version.Major -eq $pinned.Major } |
            Sort-Object -Property Version -Descending)
    if ($found.Count -gt 0) {
        Write-Host "Using $Name $($found[0].Version) ($($found[0].Path))"
        return $found[0]
    }

    if ($NoInstall) {
        throw "$Name $($pinned.Major).x is required and not installed. $InstallHint"
    }
    if (-not (Get-Command -Name Install-Module -ErrorAction SilentlyContinue)) {
        throw "$Name $pinned is required and not installed, and Install-Module (PowerShellGet) is not available to install it. Install $Name $pinned by hand (for example from https://www.powershellgallery.com/packages/$Name/$pinned)."
    }

    Write-Step "Installing $Name $pinned for the current user"
    # -SkipPublisherCheck: Windows PowerShell ships an older, differently signed Pester.
    Install-Module -Name $Name -RequiredVersion $pinned -Scope CurrentUser -Force -SkipPublisherCheck -AllowClobber
    $installed = Get-Module -ListAvailable -Name $Name | Where-Object { $_.Version -eq $pinned } | Select-Object -First 1
    if (-not $installed) {
        throw "Install-Module reported success but $Name $pinned is not importable (check `$env:PSModulePath)."
    }
    $installed
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
    Invoke-Native dotnet @('test', $Solution, '-c', $Configuration, '--nologo',
        '--logger', 'trx', '--results-directory', $TestResultsDir)
    # dotnet test built (and so staged) the module.
    $staged = Assert-StagedModule

    Write-Step 'Test: Pester'
    $testsDir = Join-Path $RepoRoot 'tests'
    if (-not (Get-ChildItem -Path $testsDir -Filter *.Tests.ps1 -Recurse -File -ErrorAction SilentlyContinue)) {
        Write-Host "No tests/*.Tests.ps1 found: Pester skipped." -ForegroundColor Yellow
        return
    }
    $pester = Resolve-Dependency -Name Pester
    New-Item -ItemType Directory -Path $TestResultsDir -Force | Out-Null

    # A child process, so the staged DLL is never loaded (and locked) by this session and every
    # run starts clean. Paths travel in environment variables; the command has no double quotes,
    # which Windows PowerShell would mangle on a native command line.
    $command = @(
        '$ErrorActionPreference = ''Stop'''
        'Import-Module -Name $env:ASYNCGROUP_PESTER_PATH -Force'
        '$c = New-PesterConfiguration'
        '$c.Run.Path = $env:ASYNCGROUP_TESTS_PATH'
        '$c.Run.Exit = $true'
        '$c.Run.Throw = $true'
        '$c.Output.Verbosity = ''Detailed'''
        '$c.TestResult.Enabled = $true'
        '$c.TestResult.OutputFormat = ''NUnitXml'''
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
        Invoke-Native (Get-PowerShellPath) @('-NoProfile', '-NonInteractive', '-Command', $command) -What 'Pester (tests/*.Tests.ps1 against the staged module)'
    }
    finally {
        foreach ($name in $saved.Keys) {
            [Environment]::SetEnvironmentVariable($name, $saved[$name])
        }
    }
    Write-Host "Pester results: $($environment.ASYNCGROUP_PESTER_RESULT)" -ForegroundColor Green
}

function Invoke-Package {
    Write-Step 'Package'
    $staged = Assert-StagedModule
    $version = Get-ModuleVersion
    if (-not (Test-Path -LiteralPath (Join-Path $staged 'en-US/AsyncGroup.dll-Help.xml'))) {
        Write-Warning 'The staged module has no en-US help: run ./build.ps1 -Task Build,Docs,Package to include it.'
    }

    # Publish-Module runs the same check; doing it first gives the plain error.
    Test-ModuleManifest -Path (Join-Path $staged 'AsyncGroup.psd1') | Out-Null

    $powerShellGet = Resolve-Dependency -Name PowerShellGet -NoInstall -InstallHint (
        "Run: Install-Module PowerShellGet -RequiredVersion $($Depends.PowerShellGet) -Scope CurrentUser -Force -AllowClobber, then start a new session.")
    Import-Module -Name $powerShellGet.Path -Force

    $repositoryName = 'AsyncGroupBuild-' + [guid]::NewGuid().ToString('N').Substring(0, 8)
    $repositoryDir = Join-Path ([IO.Path]::GetTempPath()) $repositoryName
    New-Item -ItemType Directory -Path $repositoryDir | Out-Null
    try {
        Register-PSRepository -Name $repositoryName -SourceLocation $repositoryDir -PublishLocation $repositoryDir -InstallationPolicy Trusted
        # -Force bootstraps the NuGet client without prompting; a local folder needs no API key.
        Publish-Module -Path $staged -Repository $repositoryName -Force
        $nupkg = Join-Path $repositoryDir "AsyncGroup.$version.nupkg"
        if (-not (Test-Path -LiteralPath $nupkg)) {
            throw "Publish-Module wrote no '$nupkg'."
        }
        Copy-Item -LiteralPath $nupkg -Destination $OutDir -Force
        Write-Host "Package: $(Join-Path $OutDir "AsyncGroup.$version.nupkg")" -ForegroundColor Green
    }
    finally {
        if (Get-PSRepository -Name $repositoryName -ErrorAction SilentlyContinue) {
            Unregister-PSRepository -Name $repositoryName
        }
        Remove-Item -LiteralPath $repositoryDir -Recurse -Force -ErrorAction SilentlyContinue
    }
}

function Invoke-Bench {
    Write-Step 'Bench: cmdlets'
    $staged = Assert-StagedModule
    $saved = $env:ASYNCGROUP_MODULE_PATH
    try {
        $env:ASYNCGROUP_MODULE_PATH = $staged
        Invoke-Native (Get-PowerShellPath) @('-NoProfile', '-NonInteractive', '-File', (Join-Path $RepoRoot 'bench/Invoke-CmdletBench.ps1')) -What 'The cmdlet benchmark'
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
