# The life cycle of the worker runspaces: a process that used the module ends with its last line,
# workers are never lost or added to, Start-AsyncTask has a process-wide default bound, and
# Remove-Module releases what the module owns. Most cases run in a fresh child PowerShell, whose
# whole lifetime Invoke-ChildPowerShell bounds (a process kept alive by the module is killed at the
# deadline and fails the test rather than the suite).

BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')

    # What every child script starts with. 'Wait-ChildUntil' is Wait-Until for the child.
    $script:ChildPrelude = @'
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue' # a redirected child writes progress to stderr as CLIXML
Import-Module $env:ASYNCGROUP_MANIFEST
function Wait-ChildUntil([scriptblock] $Condition, [double] $Seconds = 30) {
    $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
    while (-not (& $Condition)) {
        if ([DateTime]::UtcNow -gt $deadline) { return $false }
        Start-Sleep -Milliseconds 20
    }
    $true
}
'@

    function Invoke-Child([string] $Script, [double] $TimeoutSeconds = 90) {
        Invoke-ChildPowerShell -Command ($script:ChildPrelude + "`n" + $Script) -TimeoutSeconds $TimeoutSeconds
    }

    # A one-shot process must end as soon as its last line ran: ~1-3 s to start PowerShell and
    # import the module on a loaded 2-core box; an idle worker used to keep it alive for ~76 s.
    $script:LifetimeBound = 15
}

Describe 'A process that used the module' {
    It 'exits as soon as its last line ran after a gather' {
        $child = Invoke-Child '1..5 | Invoke-Gather { $_ * 2 }'
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.ExitCode | Should -Be 0
        $child.Output | Should -Be @('2', '4', '6', '8', '10')
        $child.Seconds | Should -BeLessThan $script:LifetimeBound
    }

    It 'exits as soon as its last line ran after only importing the module (a worker is opened in the background)' {
        # Issue 11: Import-Module starts opening a worker for the first call; a process that
        # never calls must not wait for it, nor for it to finish opening.
        $child = Invoke-Child "'imported'"
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.ExitCode | Should -Be 0
        $child.Output | Should -Be @('imported')
        $child.Seconds | Should -BeLessThan $script:LifetimeBound
    }

    It 'exits with the code given to exit after using the module' {
        $child = Invoke-Child @'
$null = Invoke-Gather { 1 }, { 2 }
$t = Start-AsyncTask { 'done' }
Receive-AsyncTask $t -Wait
exit 3
'@
        $child.TimedOut | Should -BeFalse
        $child.ExitCode | Should -Be 3
        $child.Output | Should -Be @('done')
        $child.Seconds | Should -BeLessThan $script:LifetimeBound
    }

    It 'has no idle worker pipeline left for PowerShell to stop when it closes the worker''s runspace' {
        # At exit the primary runspace disposes every other runspace, ours included, and stops the
        # pipelines still running in each. An idle worker's driver pipeline used to end by itself
        # meanwhile; ending while PowerShell stopped it, it could make the stop throw, and about
        # one exit in a hundred crashed ("Process terminated. The CancellationTokenSource has
        # been disposed."). A handler registered after the module's sees, as the close goes on,
        # whether a pipeline is still running (read through PowerShell's internal method: the
        # public availability reads None once the runspace closes).
        $child = Invoke-Child @'
Add-Type -TypeDefinition @"
using System;
using System.Reflection;
using System.Management.Automation.Runspaces;
public static class AgCloseProbe {
    public static string Seen = "not seen";
    public static bool Watch(Runspace r) {
        Type b = typeof(Runspace).Assembly.GetType("System.Management.Automation.Runspaces.RunspaceBase");
        MethodInfo m = b == null ? null : b.GetMethod("GetCurrentlyRunningPipeline", BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public);
        if (m == null) { return false; }
        r.StateChanged += (s, e) => {
            if (e.RunspaceStateInfo.State == RunspaceState.Closing) { Seen = m.Invoke(s, null) == null ? "no pipeline" : "a pipeline running"; }
        };
        return true;
    }
}
"@
$id = Invoke-Gather { [runspace]::DefaultRunspace.InstanceId }
$worker = Get-Runspace | Where-Object InstanceId -eq $id
if (-not [AgCloseProbe]::Watch($worker)) { 'no probe'; return }
$worker.Dispose()
[AgCloseProbe]::Seen
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        if ($child.Output -contains 'no probe') { Set-ItResult -Skipped -Because 'this PowerShell has no RunspaceBase.GetCurrentlyRunningPipeline to look with' }
        $child.Output | Should -Be @('no pipeline')
        $child.Seconds | Should -BeLessThan $script:LifetimeBound
    }

    It 'exits while a task it never awaited is still running (the task is abandoned)' {
        $child = Invoke-Child @'
$t = Start-AsyncTask { Start-Sleep -Seconds 60; 'finished' } -Name long-sleeper
if (-not (Wait-ChildUntil { $t.State -eq 'Running' })) { throw 'the task did not start' }
'started'
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.ExitCode | Should -Be 0
        $child.Output | Should -Be @('started')
        $child.Seconds | Should -BeLessThan $script:LifetimeBound
    }
}

Describe 'A new worker' {
    It 'is opened in the background by Import-Module, and the first call uses it instead of opening one' {
        # Issue 11: a cold script's first call found no worker and paid for opening it.
        $child = Invoke-Child @'
$ready = Wait-ChildUntil { [AsyncGroup.WorkerPoolStatus]::IdleWorkers -eq 1 }
"ready=$ready created=$([AsyncGroup.WorkerPoolStatus]::CreatedWorkers)"
Invoke-Gather { 'ran' }
"created=$([AsyncGroup.WorkerPoolStatus]::CreatedWorkers)"
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.Output | Should -Be @('ready=True created=1', 'ran', 'created=1')
    }
}

Describe 'A worker whose runspace was closed from outside' {
    It 'is replaced, not rented, by the next call' {
        # Get-Runspace lists the workers, and a user may dispose them: the pool kept the dead
        # workers idle and every later call failed ("the runspace is not in the 'Opened' state").
        $child = Invoke-Child @'
$null = 1..4 | Invoke-Gather { $_ } -ThrottleLimit 4
$idle = Wait-ChildUntil { [AsyncGroup.WorkerPoolStatus]::IdleWorkers -ge 1 }
$disposed = @(Get-Runspace | Where-Object Name -like 'AsyncGroup-*' | ForEach-Object { $_.Dispose(); $_.Name }).Count
"idle=$idle disposed=$($disposed -ge 1)"
(1..4 | Invoke-Gather { $_ * 2 } -ThrottleLimit 4) -join ','
(Invoke-Gather { 'again' })
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.Output | Should -Be @('idle=True disposed=True', '2,4,6,8', 'again')
    }

    It 'is not counted as idle' {
        # IdleWorkers counted the dead workers until a call rented past them or the idle trim.
        $child = Invoke-Child @'
$null = 1..4 | Invoke-Gather { $_ } -ThrottleLimit 4
$idle = Wait-ChildUntil { [AsyncGroup.WorkerPoolStatus]::IdleWorkers -ge 1 }
Get-Runspace | Where-Object Name -like 'AsyncGroup-*' | ForEach-Object { $_.Dispose() }
"idle=$idle now=$([AsyncGroup.WorkerPoolStatus]::IdleWorkers) live=$([AsyncGroup.WorkerPoolStatus]::LiveWorkers)"
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.Output | Should -Be 'idle=True now=0 live=0'
    }
}

Describe 'Worker churn' {
    It 'loses no worker: every worker is idle again after many calls (<Name>)' -ForEach @(
        @{ Name = 'Receive-AsyncTask -Wait'; Script = @'
$null = 1..32 | Invoke-Gather { $_ } -ThrottleLimit 8
foreach ($round in 1..5) {
    $t = 1..100 | Start-AsyncTask { $_ }
    $null = Receive-AsyncTask $t -Wait
    $t = 1..100 | Start-AsyncTask { $_ } -ThrottleLimit 50
    $null = Receive-AsyncTask $t -Wait
}
'@ }
        @{ Name = 'Wait-AsyncGroup'; Script = @'
foreach ($round in 1..10) {
    $t = 1..10 | Start-AsyncTask { $_ }
    $null = $t | Wait-AsyncGroup
    $t = 1..10 | Start-AsyncTask { $_ } -ThrottleLimit 10
    $null = $t | Wait-AsyncGroup
}
'@ }
    ) {
        $child = Invoke-Child ($Script + @'

$idle = Wait-ChildUntil { [AsyncGroup.WorkerPoolStatus]::BusyWorkers.Count -eq 0 } -Seconds 30
"busy=$([AsyncGroup.WorkerPoolStatus]::BusyWorkers.Count)"
'@)
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.Output | Should -Be @('busy=0')
        $child.Seconds | Should -BeLessThan 80
    }

    It 'leaves no worker announced as coming back once the calls are over, however late a drained call announces its workers' {
        # A drained call announces the workers serving it from a list taken a moment before; a
        # worker that came back in that moment was announced again, and the pool then counted a
        # worker on its way back that never came: later calls needing one more worker than were
        # idle waited up to 200 ms for it instead of opening one (a warm 20-way fan-out of 200 ms
        # sleeps took 608 ms instead of about 210 in one bench run). The test hook widens that moment.
        $child = Invoke-Child @'
$hook = [AsyncGroup.WorkerPoolStatus].Assembly.GetType('AsyncGroup.Execution.ScriptBatch').GetField('AnnounceDelayForTests', [Reflection.BindingFlags] 'NonPublic, Static')
$hook.SetValue($null, 5)
$unsettled = 0
try {
    foreach ($i in 1..20) {
        $null = 1..4 | Invoke-Gather { Start-Sleep -Milliseconds 1; $_ } -ThrottleLimit 4
        # A worker that has just left its call is still on its way back for a moment: wait for
        # that, not for one that never comes (the next call's return would hide it).
        $null = Wait-ChildUntil { [AsyncGroup.WorkerPoolStatus]::BusyWorkers.Count -eq 0 }
        if (-not (Wait-ChildUntil { [AsyncGroup.WorkerPoolStatus]::ReturningWorkers -eq 0 } -Seconds 0.5)) { $unsettled++ }
    }
}
finally { $hook.SetValue($null, 0) }
"calls that left a worker counted as coming back: $unsettled"
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.Output | Should -Be 'calls that left a worker counted as coming back: 0'
    }

    It 'never keeps more worker runspaces than the throttles need when stopped workers come back late' {
        # A timed-out call stops its worker while the next call rents: the stopped worker is replaced
        # or reused, never added to the pool beside its replacement (the largest throttle here is 4).
        $child = Invoke-Child @'
$most = 0
foreach ($i in 1..60) {
    try { $null = Invoke-Gather { Start-Sleep -Milliseconds 300 }, { 1 } -Timeout 0.03 -WarningAction SilentlyContinue } catch { $null = $_ }
    $null = 1..4 | Invoke-Gather { $_ } -ThrottleLimit 4
    $null = Wait-ChildUntil { [AsyncGroup.WorkerPoolStatus]::BusyWorkers.Count -eq 0 }
    $live = @(Get-Runspace -Name 'AsyncGroup-Worker-*' | Where-Object { $_.RunspaceStateInfo.State -eq 'Opened' }).Count
    if ($live -gt $most) { $most = $live }
}
"most=$most"
'@ -TimeoutSeconds 150
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        # At most the largest throttle; fewer when a worker takes several of the trivial items
        # before the others open (a worker now spins briefly for the next item).
        $child.Output | Should -Match '^most=[1-4]$'
    }
}

Describe 'The default bound on Start-AsyncTask' {
    It 'is documented, settable, and at least 1' {
        [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit | Should -BeGreaterOrEqual 1
        $before = [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit
        try {
            [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit = 7
            [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit | Should -Be 7
            { [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit = 0 } | Should -Throw
            [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit | Should -Be 7
        }
        finally {
            [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit = $before
        }
    }

    It 'runs 300 piped tasks correctly without opening more workers than the bound' {
        # The worker Import-Module opens in the background counts too: waited for first, as a
        # call made while it opens longer than the pool's return wait opens its own.
        $child = Invoke-Child @'
$null = Wait-ChildUntil { [AsyncGroup.WorkerPoolStatus]::IdleWorkers -eq 1 }
$t = 1..300 | Start-AsyncTask { $_ * 2 }
$r = Receive-AsyncTask $t -Wait
($r -join ',') -eq ((1..300 | ForEach-Object { $_ * 2 }) -join ',')
$limit = [AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit
$created = [AsyncGroup.WorkerPoolStatus]::CreatedWorkers
"created within bound: $($created -le $limit) ($created of $limit)"
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.Output[0] | Should -Be 'True'
        $child.Output[1] | Should -BeLike 'created within bound: True*'
    }

    It 'queues tasks beyond the bound first in, first out, and honours a new value' {
        # One piped call under a bound of 1: one worker, tasks strictly in order. Then separate
        # calls under a bound of 2: never more than two tasks ran at the same time. The worker
        # Import-Module opens in the background is waited for first: a call made while it is
        # opening for longer than the pool's return wait opens its own.
        $child = Invoke-Child @'
$null = Wait-ChildUntil { [AsyncGroup.WorkerPoolStatus]::IdleWorkers -eq 1 }
[AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit = 1
$log = [System.Collections.ArrayList]::Synchronized([System.Collections.ArrayList]::new())
$tasks = 1..12 | Start-AsyncTask { $null = ($using:log).Add($_); $_ }
$null = $tasks | Wait-AsyncGroup
"order=$($log.ToArray() -join ',')"
"created=$([AsyncGroup.WorkerPoolStatus]::CreatedWorkers)"
[AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit = 2
$tasks = foreach ($i in 1..12) { Start-AsyncTask { Start-Sleep -Milliseconds 30 } }
$null = $tasks | Wait-AsyncGroup
$most = 0
foreach ($x in $tasks) {
    $n = @($tasks | Where-Object { $_.StartTime -le $x.StartTime -and $x.StartTime -lt $_.EndTime }).Count
    if ($n -gt $most) { $most = $n }
}
"at most two at once: $($most -le 2) ($most); all completed: $(@($tasks | Where-Object State -ne 'Completed').Count -eq 0)"
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.Output[0] | Should -Be 'order=1,2,3,4,5,6,7,8,9,10,11,12'
        $child.Output[1] | Should -Be 'created=1'
        $child.Output[2] | Should -BeLike 'at most two at once: True (*); all completed: True'
    }

    It 'does not bind a call that gives its own -ThrottleLimit' {
        $child = Invoke-Child @'
[AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit = 1
$gate = [System.Threading.CountdownEvent]::new(3)
$tasks = 1..3 | Start-AsyncTask { $null = ($using:gate).Signal(); $null = ($using:gate).Wait(30000); 'met' } -ThrottleLimit 3
(Receive-AsyncTask $tasks -Wait) -join ','
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.Output | Should -Be @('met,met,met')
    }

    It 'does not make a task that waits for tasks it started wait for its own slot (nesting)' {
        $child = Invoke-Child @'
[AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit = 1
$outer = Start-AsyncTask -ImportModule $env:ASYNCGROUP_MANIFEST {
    $inner = 1..3 | Start-AsyncTask { $_ * 10 }
    (Receive-AsyncTask $inner -Wait) -join ','
}
Receive-AsyncTask $outer -Wait
'@
        $child.TimedOut | Should -BeFalse
        $child.ErrorText | Should -BeNullOrEmpty
        $child.Output | Should -Be @('10,20,30')
    }
}

Describe 'Remove-Module AsyncGroup' {
    It 'stops the tasks nobody awaited, with a warning naming them, and releases every worker' {
        $child = Invoke-Child @'
$a = Start-AsyncTask { Start-Sleep -Seconds 60; 'late' } -Name forgotten-one
$b = Start-AsyncTask { Start-Sleep -Seconds 60; 'late' } -Name forgotten-two
$null = 1..4 | Invoke-Gather { $_ } -ThrottleLimit 4
if (-not (Wait-ChildUntil { $a.State -eq 'Running' -and $b.State -eq 'Running' })) { throw 'the tasks did not start' }
Remove-Module AsyncGroup 3>&1 | ForEach-Object { "warning=$_" }
$stopped = Wait-ChildUntil { $a.IsDone -and $b.IsDone } -Seconds 10
"states=$($a.State),$($b.State)"
$released = Wait-ChildUntil {
    [AsyncGroup.WorkerPoolStatus]::BusyWorkers.Count -eq 0 -and [AsyncGroup.WorkerPoolStatus]::IdleWorkers -eq 0 -and
    @(Get-Runspace -Name 'AsyncGroup-Worker-*' | Where-Object { $_.RunspaceStateInfo.State -eq 'Opened' }).Count -eq 0
} -Seconds 10
"released=$released"
'@
        $child.TimedOut | Should -BeFalse
        # The warning reaches the session's warning stream (the host's, in this child).
        $all = ($child.Output + $child.ErrorText) -join "`n"
        $all | Should -Match "Removing the AsyncGroup module stopped 2 unfinished task\(s\) that were never awaited: 'forgotten-one', 'forgotten-two'"
        @($child.Output | Where-Object { $_ -like 'states=*' -or $_ -like 'released=*' }) | Should -Be @('states=Cancelled,Cancelled', 'released=True')
    }
}
