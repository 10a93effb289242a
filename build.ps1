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
      Docs     docs/help/*.md -> src/Cmdlets/en-US (committed: MAML through platyPS 1.x, and
               about_AsyncGroup.help.txt through build/ConvertTo-AboutHelp.ps1); Build stages them
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
  Returns the module (PSModuleInfo) to use for a pinned dependency (build.depends.psd1) that
  build/Tools.proj can restore: an importable one of the pinned major version, not older than
  the pinned version; else the pinned version restored from NuGet into .tools/packages (a
  module's NuGet package holds the module under tools/).
#>
function Resolve-Dependency {
    param(
        [Parameter(Mandatory)] [string] $Name
    )
    $pinned = [version] $Depends[$Name]
    $found = @(Get-Module -ListAvailable -Name $Name |
            Where-Object { $_.Version.Major -eq $pinned.Major -and $_.Version -ge $pinned } |
            Sort-Object -Property Version -Descending)
    if ($found.Count -gt 0) {
        Write-Host "Using $Name $($found[0].Version) ($($found[0].Path))"
        return $found[0]
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
    # docs/help is the source. The generated help is committed in src/Cmdlets/en-US, which MSBuild
    # stages into out/AsyncGroup/en-US, so that a build ships help without platyPS.
    $helpSource = Join-Path $RepoRoot 'docs/help'
    $helpOut = Join-Path $RepoRoot 'src/Cmdlets/en-US'
    $about = Join-Path $helpSource 'about_AsyncGroup.md'
    if (-not (Test-Path -LiteralPath $about -PathType Leaf)) {
        throw "'$about' is missing: it is the source of about_AsyncGroup.help.txt."
    }

    # The about topic needs nothing but PowerShell.
    $written = @(& (Join-Path $RepoRoot 'build/ConvertTo-AboutHelp.ps1') -Path $about -OutputPath $helpOut)

    # The cmdlet help needs platyPS 1.x (module Microsoft.PowerShell.PlatyPS, not platyPS 0.x).
    $platyName = 'Microsoft.PowerShell.PlatyPS'
    $pinned = [version] $Depends[$platyName]
    $platyPS = Get-Module -ListAvailable -Name $platyName |
        Where-Object { $_.Version.Major -eq $pinned.Major } |
        Sort-Object -Property Version -Descending |
        Select-Object -First 1
    if (-not $platyPS) {
        # The steps go to the host line by line: an error message would be re-wrapped into one block.
        $sep = [IO.Path]::PathSeparator
        @(
            "$platyName $($pinned.Major).x is needed to regenerate src/Cmdlets/en-US/AsyncGroup.dll-Help.xml (the build itself ships the committed file)."
            'Make it importable, then run ./build.ps1 -Task Docs again. Either:'
            "  a) from the PowerShell Gallery:  Install-PSResource -Name $platyName -Version $pinned -Scope CurrentUser"
            "     (Windows PowerShell 5.1:       Install-Module -Name $platyName -RequiredVersion $pinned -Scope CurrentUser)"
            '  b) or build it from its public source, outside this repository (needs git and the .NET SDK):'
            "       git clone --branch v$pinned https://github.com/PowerShell/platyPS ../platyPS"
            '       Remove-Item ../platyPS/nuget.config        # it names a private feed'
            '       # if your NuGet source lacks its Markdig.Signed or YamlDotNet version, set them to 0.44.0 and 15.3.0'
            '       # in ../platyPS/src/Microsoft.PowerShell.PlatyPS.csproj'
            '       ../platyPS/build.ps1 -Configuration Release -OutputDir ../platyPS/out'
            "       `$env:PSModulePath = (Resolve-Path ../platyPS/out).ProviderPath + '$sep' + `$env:PSModulePath"
        ) | ForEach-Object { Write-Host $_ -ForegroundColor Yellow }
        throw "$platyName $pinned is not importable (no $platyName $($pinned.Major).x in `$env:PSModulePath), so the cmdlet help was not regenerated; $($written[0].Name) was. Install or build it as shown above, then run ./build.ps1 -Task Docs again."
    }
    if ($platyPS.Version -ne $pinned) {
        Write-Warning "Using $platyName $($platyPS.Version); build.depends.psd1 pins $pinned. Check the generated MAML before committing it."
    }
    Write-Host "Using $platyName $($platyPS.Version) ($($platyPS.Path))"
    Import-Module -Name $platyPS.Path -Force
    $written += & (Join-Path $RepoRoot 'build/Export-CommandHelp.ps1') -Path $helpSource -OutputPath $helpOut

    # Refresh an already staged module too (the next build would otherwise be needed).
    if (Test-Path -LiteralPath (Join-Path $ModuleDir 'AsyncGroup.psd1') -PathType Leaf) {
        $stagedHelp = Join-Path $ModuleDir 'en-US'
        New-Item -ItemType Directory -Path $stagedHelp -Force | Out-Null
        $written | Copy-Item -Destination $stagedHelp -Force
    }
    foreach ($file in $written) {
        Write-Host "Help: $($file.FullName)" -ForegroundColor Green
    }
    Write-Host 'Commit src/Cmdlets/en-US together with the docs/help change (an xunit test fails while they differ).'
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
    $pester = Resolve-Dependency -Name Pester

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
