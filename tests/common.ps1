# Shared set-up for the Pester suite: dot-source it from each file's top-level BeforeAll.
#
#   BeforeAll { . (Join-Path $PSScriptRoot 'common.ps1') }
#
# It imports the *staged* module once (out/AsyncGroup, or $env:ASYNCGROUP_MODULE_PATH so that
# build.ps1 can test another staged folder) and defines a few helpers. Everything here must run
# on Windows PowerShell 5.1 as well as PowerShell 7: no '??', no ternary, no '&&', no 'clean'.
#
# Rules the tests follow (the machine is a shared 2-core box):
# - assert order and outcome, never speed; deadlines are only upper bounds for "it returns at all";
# - coordinate with synchronized hashtables, events and task outcomes passed through $using:,
#   never with a sleep that "usually" suffices;
# - a task that must be cancelled waits in a *cancellable* loop (Start-Sleep) that gives up after
#   a minute, so that a module that fails to cancel makes the test fail rather than hang.

function Resolve-AsyncGroupManifest {
    $path = $env:ASYNCGROUP_MODULE_PATH
    if ([string]::IsNullOrEmpty($path)) {
        $path = Join-Path $PSScriptRoot '../out/AsyncGroup/AsyncGroup.psd1'
    }
    elseif (Test-Path -LiteralPath $path -PathType Container) {
        $path = Join-Path $path 'AsyncGroup.psd1'
    }

    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
        throw "The AsyncGroup module is not built: '$path' does not exist. Build it first (dotnet build src/Cmdlets, or ./build.ps1 -Task Build), or set ASYNCGROUP_MODULE_PATH to a staged module folder."
    }

    (Resolve-Path -LiteralPath $path).ProviderPath
}

$script:AsyncGroupManifest = Resolve-AsyncGroupManifest

# Get-PowerShellCommand: how to start a child of this same PowerShell (shared with build.ps1).
. (Join-Path $PSScriptRoot '../build/PowerShellCommand.ps1')

# A binary module cannot be reloaded into a process; import it once and make sure it is ours.
$loaded = Get-Module -Name AsyncGroup
if ($null -eq $loaded) {
    Import-Module -Name $script:AsyncGroupManifest -ErrorAction Stop
}
elseif ((Split-Path -Parent $loaded.Path) -ne (Split-Path -Parent $script:AsyncGroupManifest)) {
    throw "Another AsyncGroup module is already loaded from '$($loaded.Path)'; run the tests in a fresh process."
}

function Wait-Until {
    <#
    .SYNOPSIS
    Polls a condition until it is true; throws when the deadline passes. The deadline is an upper
    bound for "it happens at all", never a measure of speed.
    #>
    param(
        [Parameter(Mandatory, Position = 0)] [scriptblock] $Condition,
        [double] $TimeoutSeconds = 20,
        [string] $Because = 'the condition'
    )

    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while (-not (& $Condition)) {
        if ([DateTime]::UtcNow -gt $deadline) {
            throw "Timed out after $TimeoutSeconds s waiting for $Because."
        }
        Start-Sleep -Milliseconds 20
    }
}

function New-SyncHashtable {
    [hashtable]::Synchronized(@{})
}

function Get-BusyWorker {
    <#
    The worker runspaces (process-wide pool) serving a call right now. An idle worker keeps a
    driver pipeline waiting for its next call, so Get-Runspace reports it Busy; the module's
    own status says which workers really are.
    #>
    $names = [AsyncGroup.WorkerPoolStatus]::BusyWorkers
    if ($names.Count -eq 0) { return @() }
    @(Get-Runspace -Name $names)
}

function Get-WorkerCreatedCount {
    <# The highest worker number so far: workers are named AsyncGroup-Worker-<n> in creation order. #>
    $max = 0
    foreach ($rs in Get-Runspace -Name 'AsyncGroup-Worker-*') {
        $n = [int]($rs.Name -replace '^AsyncGroup-Worker-', '')
        if ($n -gt $max) { $max = $n }
    }
    $max
}

function Wait-NoBusyWorker {
    param([double] $TimeoutSeconds = 20)
    Wait-Until { (Get-BusyWorker).Count -eq 0 } -TimeoutSeconds $TimeoutSeconds -Because 'every AsyncGroup worker runspace to be idle'
}

function Clear-AsyncTask {
    <# Cancels this session's unfinished Start-AsyncTask tasks and waits (bounded) for them. #>
    $left = @(Get-AsyncTask -State Pending, Running)
    if ($left.Count -gt 0) {
        $left | Stop-AsyncTask
        $null = Wait-AsyncGroup -Task $left -Timeout 20
    }
}

function New-AsyncGroupRunspace {
    <# A new runspace (same process) with the staged module imported. Dispose it. #>
    $iss = [System.Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
    $iss.ImportPSModule([string[]]@($script:AsyncGroupManifest))
    $rs = [runspacefactory]::CreateRunspace($iss)
    $rs.Open()
    $rs
}

function New-ForeignTask {
    <# A finished AsyncTask created in another runspace (session) of this process. #>
    $rs = New-AsyncGroupRunspace
    $ps = [powershell]::Create()
    try {
        $ps.Runspace = $rs
        $null = $ps.AddScript('$t = Start-AsyncTask { 1 } -Name foreign-task; $null = Wait-AsyncGroup $t; $t')
        $result = $ps.Invoke()
        if ($result.Count -ne 1) { throw "Could not create a foreign task: $($ps.Streams.Error | Out-String)" }
        $result[0]
    }
    finally {
        $ps.Dispose()
        $rs.Dispose()
    }
}

function Invoke-InNewRunspace {
    <#
    .SYNOPSIS
    Runs -Script (param($Signal)) on a new runspace of this process that imports the module, and
    returns its output, errors, progress records and invocation state. For behaviours that could end the caller's own
    script (so that a module bug fails one test instead of aborting the test file).
    #>
    param(
        [Parameter(Mandatory)] [string] $Script,
        [hashtable] $Signal
    )

    if ($null -eq $Signal) { $Signal = New-SyncHashtable }
    $rs = New-AsyncGroupRunspace
    $ps = [powershell]::Create()
    try {
        $ps.Runspace = $rs
        # Tasks may watch the invocation's own streams (e.g. wait for a progress record).
        $Signal.Streams = $ps.Streams
        $null = $ps.AddScript($Script).AddParameter('Signal', $Signal)
        $output = $null
        $failure = $null
        try { $output = $ps.Invoke() } catch { $failure = $_.Exception }
        [pscustomobject]@{
            Output  = @($output)
            Errors  = @($ps.Streams.Error)
            Progress = @($ps.Streams.Progress)
            Failure = $failure
            State   = $ps.InvocationStateInfo.State
            Signal  = $Signal
        }
    }
    finally {
        $ps.Dispose()
        $rs.Dispose()
    }
}

function Invoke-StopHarness {
    <#
    .SYNOPSIS
    The Ctrl+C harness. Runs -Script (param($Signal)) with [powershell] on a new runspace that
    imports the module, waits until the script calls $Signal.Started.Signal() -StartedCount times
    (typically from inside the tasks, through $using:Signal), then stops the pipeline with BeginStop
    and measures how long until the invocation completed.

    .OUTPUTS
    Started, Completed, StopSeconds, State (PSInvocationState), Reason, Warnings, Errors, Output and
    the Signal hashtable (whatever the script and its tasks recorded). Always disposes what it made;
    an invocation that does not complete within -StopDeadlineSeconds is given 30 s more before the
    harness gives up on it (and then leaks it rather than hang the suite).
    #>
    param(
        [Parameter(Mandatory)] [string] $Script,
        [int] $StartedCount = 1,
        [hashtable] $Signal,
        [double] $StartTimeoutSeconds = 30,
        [double] $StopDeadlineSeconds = 5
    )

    if ($null -eq $Signal) { $Signal = New-SyncHashtable }
    $Signal.Started = [System.Threading.CountdownEvent]::new($StartedCount)

    $rs = New-AsyncGroupRunspace
    $ps = [powershell]::Create()
    $ps.Runspace = $rs
    $null = $ps.AddScript($Script).AddParameter('Signal', $Signal)
    $output = [System.Management.Automation.PSDataCollection[psobject]]::new()
    $noInput = [System.Management.Automation.PSDataCollection[psobject]]::new()
    $noInput.Complete()
    $disposable = $true
    try {
        $async = $ps.BeginInvoke($noInput, $output)
        $startedIndex = [System.Threading.WaitHandle]::WaitAny(
            [System.Threading.WaitHandle[]]@($Signal.Started.WaitHandle, $async.AsyncWaitHandle),
            [TimeSpan]::FromSeconds($StartTimeoutSeconds))
        $started = $Signal.Started.IsSet
        if (-not $started) {
            $why = 'the script did not signal that it started'
            if ($startedIndex -eq 1) { $why = "the script ended before it signalled ($($ps.InvocationStateInfo.State): $($ps.InvocationStateInfo.Reason) $($ps.Streams.Error | Out-String))" }
            throw "Stop harness: $why within $StartTimeoutSeconds s."
        }

        $clock = [System.Diagnostics.Stopwatch]::StartNew()
        $null = $ps.BeginStop($null, $null)
        $completed = $async.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds($StopDeadlineSeconds))
        $clock.Stop()
        if (-not $completed) {
            $disposable = $async.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30))
        }

        [pscustomobject]@{
            Started     = $started
            Completed   = $completed
            StopSeconds = $clock.Elapsed.TotalSeconds
            State       = $ps.InvocationStateInfo.State
            Reason      = $ps.InvocationStateInfo.Reason
            Warnings    = @($ps.Streams.Warning | ForEach-Object { $_.Message })
            Errors      = @($ps.Streams.Error)
            Output      = @($output)
            Signal      = $Signal
        }
    }
    finally {
        if ($disposable) {
            $ps.Dispose()
            $rs.Dispose()
        }
    }
}

function Invoke-ChildPowerShell {
    <#
    .SYNOPSIS
    Runs -Command in a fresh child PowerShell (-NoProfile -NonInteractive) that has
    $env:ASYNCGROUP_MANIFEST set to the staged module's manifest, and returns ExitCode, Output
    (stdout lines), Text (stdout whole), ErrorText (stderr), Seconds (the whole process's lifetime)
    and TimedOut. A child still running after -TimeoutSeconds is killed (TimedOut is then true), so
    a hang fails the test instead of the suite. With -Answer the child can ask (it is started
    without -NonInteractive) and reads those lines, then the end of its input.
    #>
    param(
        [Parameter(Mandatory)] [string] $Command,
        [double] $TimeoutSeconds = 60,
        [string[]] $Answer
    )

    $pwsh = Get-PowerShellCommand
    $info = [System.Diagnostics.ProcessStartInfo]::new()
    $info.FileName = $pwsh.FilePath
    # One argument string (netstandard2.0 / .NET Framework have no ArgumentList). The command goes
    # base64-encoded (UTF-16LE, as -EncodedCommand wants) so no quoting can mangle it.
    $encoded = [Convert]::ToBase64String([System.Text.Encoding]::Unicode.GetBytes($Command))
    $interactive = @(if ($null -eq $Answer) { '-NonInteractive' })
    $parts = @($pwsh.Arguments | ForEach-Object { '"' + $_ + '"' }) + @('-NoProfile') + $interactive + @('-EncodedCommand', $encoded)
    $info.Arguments = $parts -join ' '
    $info.UseShellExecute = $false
    $info.RedirectStandardOutput = $true
    $info.RedirectStandardError = $true
    $info.RedirectStandardInput = $true
    $info.EnvironmentVariables['ASYNCGROUP_MANIFEST'] = $script:AsyncGroupManifest

    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    $process = [System.Diagnostics.Process]::Start($info)
    try {
        foreach ($line in $(if ($null -ne $Answer) { $Answer })) { $process.StandardInput.WriteLine($line) }
        $process.StandardInput.Close()
        $stdout = $process.StandardOutput.ReadToEndAsync()
        $stderr = $process.StandardError.ReadToEndAsync()
        $exited = $process.WaitForExit([int]($TimeoutSeconds * 1000))
        if (-not $exited) {
            try { $process.Kill() } catch { $null = $_ }
            $null = $process.WaitForExit(10000)
        }
        else {
            $process.WaitForExit() # flushes the redirected streams
        }
        $clock.Stop()
        $null = [System.Threading.Tasks.Task]::WaitAll(@($stdout, $stderr), 10000)
        [pscustomobject]@{
            ExitCode  = if ($exited) { $process.ExitCode } else { $null }
            Output    = @(($stdout.Result -split '\r?\n') | Where-Object { $_ -ne '' })
            Text      = $stdout.Result
            ErrorText = $stderr.Result
            Seconds   = $clock.Elapsed.TotalSeconds
            TimedOut  = -not $exited
        }
    }
    finally {
        $process.Dispose()
    }
}
