BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')

    function Get-NestedGroupFailure {
        <# The error of a group (Outer) whose task (Middle) opens a group (Inner) whose task (Leaf) throws 'deep'. #>
        try {
            Start-TaskGroup -Name Outer {
                $null = Start-AsyncTask -Name Middle { Start-TaskGroup -Name Inner { $null = Start-AsyncTask -Name Leaf { throw 'deep' } } }
            }
        }
        catch { $_ }
    }
}

# Nested structured concurrency (issue 10): tasks that gather, start tasks and open task groups.
# Tasks that must be cancelled wait in a cancellable loop (Start-Sleep) that gives up after about a
# minute: a module that fails to cancel makes the test fail, it does not hang the suite.

Describe 'Nesting' {
    AfterEach {
        Clear-AsyncTask
    }

    Context 'the cmdlets exist in every task' {
        It 'lets a task gather when the module was imported by path, without -ImportModule' {
            $out = Invoke-Gather { Invoke-Gather { 1 }, { 2 } }
            $out | Should -Be @(1, 2)
        }

        It 'gives every task the caller''s own loaded module (same path and version)' {
            $mine = Get-Command Invoke-Gather
            $seen = Invoke-Gather {
                $c = Get-Command Invoke-Gather
                "$($c.ModuleName)|$($c.Version)|$($c.Module.Path)"
                @(Get-Command -Module AsyncGroup).Count
            }
            $seen[0] | Should -Be "$($mine.ModuleName)|$($mine.Version)|$($mine.Module.Path)"
            $seen[1] | Should -Be @(Get-Command -Module AsyncGroup).Count
        }

        It 'imports the module into a worker on first use, and keeps it there across calls and resets' {
            # Workers import AsyncGroup the first time a task looks one of its commands up (by name,
            # module-qualified, or Get-Command -Module): the session clean-up after a call that
            # imported a module of its own, and the reset after a stopped task, must not lose it.
            # A fresh process; each check runs one task on every idle worker (a countdown holds the
            # tasks until all have started), so the worker that was cleaned up or reset is among them.
            $command = @'
$ProgressPreference = 'SilentlyContinue' # under load a call outlasts the progress delay; its records go to stderr
Import-Module $env:ASYNCGROUP_MANIFEST
function Invoke-OnEveryIdleWorker([scriptblock] $Check) {
    while ([AsyncGroup.WorkerPoolStatus]::BusyWorkers.Count -gt 0) { Start-Sleep -Milliseconds 20 }
    $n = [Math]::Max(1, [AsyncGroup.WorkerPoolStatus]::IdleWorkers)
    $all = [System.Threading.CountdownEvent]::new($n)
    1..$n | Invoke-Gather -ThrottleLimit $n -ArgumentList $Check {
        param($check)
        $all = $using:all; $null = $all.Signal(); $null = $all.Wait(120000)
        [runspace]::DefaultRunspace.Name + '|' + (& ([scriptblock]::Create($check)))
    }
}
$cleaned = Invoke-Gather -ThrottleLimit 1 {
    [runspace]::DefaultRunspace.Name + '|' + @(Get-Module AsyncGroup).Count
    New-Module -Name Scratch -ScriptBlock { function Get-Scratch { 's' } } | Import-Module
    Invoke-Gather { 'nested-1' }
}
$afterCleanUp = Invoke-OnEveryIdleWorker { "$(@(Get-Module Scratch).Count) $(AsyncGroup\Invoke-Gather { 'nested-2' })" }
$t = Start-AsyncTask { [runspace]::DefaultRunspace.Name; Invoke-Gather { 'nested-3' }; foreach ($i in 1..600) { Start-Sleep -Milliseconds 100 } }
while (@($t.Output).Count -lt 2) { Start-Sleep -Milliseconds 20 }
Stop-AsyncTask $t
$afterReset = Invoke-OnEveryIdleWorker { "$(@(Get-Command -Module AsyncGroup).Count) $(Invoke-Gather { 'nested-4' })" }
$cleaned | ForEach-Object { "cleaned|$_" }
$afterCleanUp | ForEach-Object { "afterCleanUp|$_" }
$t.Output | ForEach-Object { "stopped|$_" }
$afterReset | ForEach-Object { "afterReset|$_" }
'@
            $run = Invoke-ChildPowerShell -Command $command -TimeoutSeconds 180
            $run.TimedOut | Should -BeFalse
            $run.ErrorText | Should -BeNullOrEmpty
            $lines = @($run.Output | ForEach-Object { , ($_ -split '\|') })
            $cleaned = @($lines | Where-Object { $_[0] -eq 'cleaned' })
            $cleaned[0][2] | Should -Be '0' # not imported before a task uses it
            $cleaned[1][1] | Should -Be 'nested-1'
            $afterCleanUp = @($lines | Where-Object { $_[0] -eq 'afterCleanUp' })
            @($afterCleanUp | ForEach-Object { $_[1] }) | Should -Contain $cleaned[0][1]
            $afterCleanUp | ForEach-Object { $_[2] | Should -Be '0 nested-2' }
            $stopped = @($lines | Where-Object { $_[0] -eq 'stopped' })
            $stopped[1][1] | Should -Be 'nested-3'
            $afterReset = @($lines | Where-Object { $_[0] -eq 'afterReset' })
            @($afterReset | ForEach-Object { $_[1] }) | Should -Contain $stopped[0][1]
            $count = @(Get-Command -Module AsyncGroup).Count
            $afterReset | ForEach-Object { $_[2] | Should -Be "$count nested-4" }
        }

        It 'nests five levels of Start-AsyncTask, Start-TaskGroup and Invoke-Gather' {
            $out = Invoke-Gather {
                Start-TaskGroup {
                    $t = Start-AsyncTask {
                        Invoke-Gather {
                            $inner = Start-AsyncTask { 'deep' }
                            Receive-AsyncTask $inner -Wait
                        }
                    }
                    Receive-AsyncTask $t -Wait
                }
                'group done'
            }
            $out | Should -Be @('deep', 'group done')
        }

        It 'gives them to a task that uses them through -Function or -InitializationScript' {
            function Invoke-Nested { Invoke-Gather { 'via function' } }
            Invoke-Gather -Function Invoke-Nested { Invoke-Nested } | Should -Be 'via function'
            Invoke-Gather -InitializationScript { function Invoke-Deep { Start-AsyncTask { 'via init' } | Receive-AsyncTask -Wait } } { Invoke-Deep } |
                Should -Be 'via init'
        }

        It 'works when the module was imported by name' {
            $folder = Split-Path (Split-Path $script:AsyncGroupManifest -Parent) -Parent
            $r = Invoke-ChildPowerShell -Command "`$env:PSModulePath = '$folder' + [IO.Path]::PathSeparator + `$env:PSModulePath; Import-Module AsyncGroup; Invoke-Gather { Invoke-Gather { 'by-name' } }"
            $r.Output | Should -Be @('by-name') -Because $r.ErrorText
        }

        It 'works when the module is nested in another module' {
            $wrapper = Join-Path $TestDrive 'Wrapper'
            $null = New-Item -ItemType Directory -Path $wrapper -Force
            Set-Content -LiteralPath (Join-Path $wrapper 'Wrapper.psm1') -Value 'function Invoke-Wrapped { Invoke-Gather { Invoke-Gather { "wrapped" } } }'
            Set-Content -LiteralPath (Join-Path $wrapper 'Wrapper.psd1') -Value ("@{ RootModule = 'Wrapper.psm1'; ModuleVersion = '1.0.0'; NestedModules = @('" + $script:AsyncGroupManifest + "'); FunctionsToExport = @('Invoke-Wrapped'); CmdletsToExport = @() }")
            $r = Invoke-ChildPowerShell -Command "Import-Module '$wrapper/Wrapper.psd1'; Invoke-Wrapped"
            $r.Output | Should -Be @('wrapped') -Because $r.ErrorText
        }

        It 'keeps the process''s pools, and every later task its cmdlets, when a task removes the module' {
            Invoke-Gather { 1 } | Should -Be 1
            Invoke-Gather { Remove-Module AsyncGroup; 'removed' } | Should -Be 'removed'
            # Remove-Module in a worker is that runspace's business: the process's idle workers stay.
            [AsyncGroup.WorkerPoolStatus]::IdleWorkers | Should -BeGreaterThan 0
            1..6 | Invoke-Gather -ThrottleLimit 3 { Invoke-Gather { 'still here' } } | Should -Be (@('still here') * 6)
        }
    }

    Context '$using: binds where the script block is handed over' {
        It 'reads the task''s variable in a nested Invoke-Gather (as ForEach-Object -Parallel does)' {
            $g = 'OUTER'
            $out = 'a', 'b' | Invoke-Gather { $g = $_; 1..2 | Invoke-Gather { "$using:g-$_" } }
            $out | Should -Be @('a-1', 'a-2', 'b-1', 'b-2')
            $null = $g
        }

        It 'reads the task''s variable in a nested Start-AsyncTask' {
            $x = 'OUTER'
            Invoke-Gather { $x = 'INNER'; $t = Start-AsyncTask { "sees $using:x" }; Receive-AsyncTask $t -Wait } | Should -Be 'sees INNER'
            $null = $x
        }

        It 'reads the task''s variable in a Start-AsyncTask inside a nested Start-TaskGroup' {
            $x = 'OUTER'
            $out = Invoke-Gather {
                $x = 'INNER'
                Start-TaskGroup { $t = Start-AsyncTask { "group sees $using:x" }; Receive-AsyncTask $t -Wait }
            }
            $out | Should -Be 'group sees INNER'
            $null = $x
        }

        It 'reads the task''s variable under module-qualified names and aliases' {
            $x = 'OUTER'
            $out = Invoke-Gather {
                $x = 'INNER'
                AsyncGroup\Invoke-Gather { "q $using:x" }
                $t = AsyncGroup\Start-AsyncTask -ScriptBlock { "s $using:x" }
                Receive-AsyncTask $t -Wait
            }
            $out | Should -Be @('q INNER', 's INNER')
            $null = $x
        }

        It 'keeps the caller''s value in plain nested script blocks of the task' {
            $n = 2
            $out = Invoke-Gather {
                $n = 0
                (1..3 | Where-Object { $_ -gt $using:n }) -join ','
                & { "call $using:n" }
                1 | ForEach-Object { "foreach $using:n" }
            }
            $out | Should -Be @('3', 'call 2', 'foreach 2')
            $null = $n
        }

        It 'mixes both in one block: the outer $using: is the caller''s, the handed-over one the task''s' {
            $v = 'caller'
            $out = Invoke-Gather { $v = "task of $using:v"; Invoke-Gather { "inner sees $using:v" } }
            $out | Should -Be 'inner sees task of caller'
            $null = $v
        }

        It 'reads the task''s variable in ForEach-Object -Parallel' -Skip:($PSVersionTable.PSVersion.Major -lt 7) {
            $v = 'OUTER'
            $out = Invoke-Gather {
                $v = 'INNER'
                1 | ForEach-Object -Parallel { "p $using:v" }
                1 | Microsoft.PowerShell.Core\ForEach-Object -Parallel { "q $using:v" }
                1 | % -Parallel { "a $using:v" }
            }
            $out | Should -Be @('p INNER', 'q INNER', 'a INNER')
            $null = $v
        }

        It 'reads the task''s variable in Start-ThreadJob' -Skip:($null -eq (Get-Command Start-ThreadJob -ErrorAction SilentlyContinue)) {
            $v = 'OUTER'
            $out = Invoke-Gather { $v = 'INNER'; Start-ThreadJob { "tj $using:v" } | Receive-Job -Wait -AutoRemoveJob }
            $out | Should -Be 'tj INNER'
            $null = $v
        }

        It 'reads the task''s variable in Start-Job' {
            $v = 'OUTER'
            $out = Invoke-Gather { $v = 'INNER'; Start-Job { "job $using:v" } | Receive-Job -Wait -AutoRemoveJob }
            $out | Should -Be 'job INNER'
            $null = $v
        }

        It 'leaves a local Invoke-Command''s $using: to PowerShell, as it does outside a task' {
            $expected = & { $v = 'x'; try { Invoke-Command { $using:v } } catch { $_.FullyQualifiedErrorId } }
            $v = 'OUTER'
            $out = Invoke-Gather { $v = 'INNER'; try { Invoke-Command { $using:v } } catch { $_.FullyQualifiedErrorId } }
            $out | Should -Be $expected
            $null = $v
        }
    }

    Context 'no pool starvation' {
        It 'finishes five levels of Invoke-Gather -ThrottleLimit 2, each gathering three children' {
            $r = Invoke-ChildPowerShell -TimeoutSeconds 240 -Command @'
Import-Module $env:ASYNCGROUP_MANIFEST
$out = 1..3 | Invoke-Gather -ThrottleLimit 2 {
    1..3 | Invoke-Gather -ThrottleLimit 2 {
        1..3 | Invoke-Gather -ThrottleLimit 2 {
            1..3 | Invoke-Gather -ThrottleLimit 2 {
                1..3 | Invoke-Gather -ThrottleLimit 2 { 'leaf' }
            }
        }
    }
}
"leaves=$(@($out).Count)"
"live=$([AsyncGroup.WorkerPoolStatus]::LiveWorkers)"
'@
            $r.TimedOut | Should -BeFalse
            $r.Output | Should -Contain 'leaves=243' -Because $r.ErrorText
            # Each level holds at most its throttle limit of workers: 2 + 4 + 8 + 16 + 32.
            [int](($r.Output | Where-Object { $_ -like 'live=*' }) -replace 'live=') | Should -BeLessOrEqual 62
        }

        It 'finishes five levels of unthrottled Start-AsyncTask and Start-TaskGroup with a default limit of 1' {
            $r = Invoke-ChildPowerShell -TimeoutSeconds 240 -Command @'
Import-Module $env:ASYNCGROUP_MANIFEST
[AsyncGroup.WorkerPoolStatus]::DefaultThrottleLimit = 1
$t = Start-AsyncTask {
    Start-TaskGroup {
        1..2 | ForEach-Object { $null = Start-AsyncTask {
            $a = 1..2 | Start-AsyncTask { Start-TaskGroup { 1..2 | ForEach-Object { $null = Start-AsyncTask { 'leaf' } } } }
            $a | Receive-AsyncTask -Wait
            Invoke-Gather -ThrottleLimit 1 { 'side' }, { 'side' }
        } }
    }
    'top'
}
$out = Receive-AsyncTask $t -Wait
"top=$(@($out | Where-Object { $_ -eq 'top' }).Count)"
'@
            $r.TimedOut | Should -BeFalse
            $r.Output | Should -Contain 'top=1' -Because $r.ErrorText
        }
    }

    Context 'a task tree is one ownership tree' {
        BeforeAll {
            # A three-level tree whose six leaves signal that they started and count that they
            # ended (their finally block runs when they are stopped), then wait to be cancelled.
            # The text runs in a scope that has $sig; New-TreeBlock makes a block that takes it from the caller.
            $script:Tree = {
                1..2 | Invoke-Gather -ThrottleLimit 2 {
                    $sig = $using:sig
                    1..3 | Invoke-Gather -ThrottleLimit 3 {
                        $sig = $using:sig
                        try {
                            $null = $sig.Started.Signal()
                            Start-Sleep -Seconds 60
                        }
                        finally {
                            $sig.Ended.Enqueue(1)
                        }
                    }
                }
            }.ToString()

            function New-TreeSignal {
                $s = New-SyncHashtable
                $s.Started = [System.Threading.CountdownEvent]::new(6)
                $s.Ended = [System.Collections.Concurrent.ConcurrentQueue[int]]::new()
                $s
            }

            function New-TreeBlock {
                [scriptblock]::Create('$sig = $using:sig' + [Environment]::NewLine + $script:Tree)
            }

            function Assert-TreeEnded($Signal) {
                # When the outer call has returned, every leaf that started has ended...
                $Signal.Ended.Count | Should -Be (6 - $Signal.Started.CurrentCount)
                # ...and no worker is left serving it (a worker may still be resetting for a moment).
                Wait-NoBusyWorker -TimeoutSeconds 30
                @(Get-AsyncTask -State Running) | Should -BeNullOrEmpty
            }
        }

        It 'ends the whole tree when the outer -Timeout expires' {
            $sig = New-TreeSignal
            $tree = New-TreeBlock
            { Invoke-Gather -Timeout 3 -WarningAction SilentlyContinue $tree } |
                Should -Throw -ErrorId 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            Assert-TreeEnded $sig
        }

        It 'ends a five-level tree before the outer -Timeout returns, abandoning nothing' {
            $r = Invoke-ChildPowerShell -TimeoutSeconds 240 -Command @'
Import-Module $env:ASYNCGROUP_MANIFEST
$sig = [hashtable]::Synchronized(@{ Started = [System.Collections.Concurrent.ConcurrentQueue[int]]::new(); Ended = [System.Collections.Concurrent.ConcurrentQueue[int]]::new() })
$leaf = '$sig = $using:sig; try { $sig.Started.Enqueue(1); Start-Sleep -Seconds 60 } finally { $sig.Ended.Enqueue(1) }'
$text = '$sig = $using:sig; 1..2 | Invoke-Gather -ThrottleLimit 2 { ' + $leaf + ' }'
foreach ($level in 1..4) { $text = '$sig = $using:sig; 1..2 | Invoke-Gather -ThrottleLimit 2 { ' + $text + ' }' }
$tree = [scriptblock]::Create($text)
try { 1 | Invoke-Gather -Timeout 10 $tree -WarningVariable warned -WarningAction SilentlyContinue } catch { "error=$($_.FullyQualifiedErrorId)" }
"started=$($sig.Started.Count)"
"ended=$($sig.Ended.Count)"
"abandoned=$(@($warned | Where-Object { "$_" -match 'abandoned' }).Count)"
'@
            $r.TimedOut | Should -BeFalse
            $r.Output | Should -Contain 'error=AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand' -Because $r.ErrorText
            # 32 leaves, once every worker could open within the timeout; each ended before the call returned.
            $started = ($r.Output | Where-Object { $_ -like 'started=*' }) -replace 'started='
            $r.Output | Should -Contain "ended=$started"
            $r.Output | Should -Contain 'abandoned=0'
        }

        It 'ends the whole tree when the outer task is stopped with Stop-AsyncTask' {
            $sig = New-TreeSignal
            $t = Start-AsyncTask (New-TreeBlock)
            $sig.Started.Wait([TimeSpan]::FromSeconds(60)) | Should -BeTrue -Because 'every leaf starts'
            Stop-AsyncTask -Task $t
            $null = Wait-AsyncGroup -Task $t -Timeout 60
            $t.State | Should -Be 'Cancelled'
            $sig.Ended.Count | Should -Be 6
            Assert-TreeEnded $sig
        }

        It 'ends the whole tree on Ctrl+C' {
            $sig = New-TreeSignal
            $sig.Tree = (New-TreeBlock).ToString()
            $r = Invoke-StopHarness -Signal $sig -StartedCount 6 -StartTimeoutSeconds 60 -StopDeadlineSeconds 30 -Script @'
param($Signal)
$sig = $Signal
Invoke-Gather ([scriptblock]::Create($Signal.Tree))
'@
            $r.Started | Should -BeTrue
            $r.Completed | Should -BeTrue
            $r.State | Should -Be 'Stopped'
            $sig.Ended.Count | Should -Be 6
            Wait-NoBusyWorker -TimeoutSeconds 30
        }

        It 'ends the whole tree when Select-Object -First stops the outer gather' {
            $sig = New-TreeSignal
            $tree = $script:Tree
            $out = 1..2 | Invoke-Gather -ThrottleLimit 2 {
                $sig = $using:sig
                if ($_ -eq 1) {
                    $deadline = [DateTime]::UtcNow.AddSeconds(60)
                    $null = $sig.Started.Wait([TimeSpan]::FromSeconds(60))
                    'first'
                }
                else {
                    & ([scriptblock]::Create($using:tree))
                }
            } | Select-Object -First 1
            $out | Should -Be 'first'
            $sig.Started.CurrentCount | Should -Be 0
            Assert-TreeEnded $sig
        }

        It 'cancels the tasks a task started and never awaited when it ends, with a warning naming them' {
            $out = Invoke-Gather {
                $script:orphan = Start-AsyncTask -Name Orphan-A { Start-Sleep -Seconds 60 }
                $null = Start-AsyncTask -Name Orphan-B { Start-Sleep -Seconds 60 }
                $done = Start-AsyncTask -Name Awaited { 'awaited' }
                Receive-AsyncTask $done -Wait
            } -WarningVariable warned -WarningAction SilentlyContinue
            $out | Should -Be 'awaited'
            @($warned).Count | Should -Be 1
            "$($warned[0])" | Should -Match "'Orphan-A', 'Orphan-B'"
            "$($warned[0])" | Should -Not -Match 'Awaited'
            Wait-NoBusyWorker -TimeoutSeconds 30
        }

        It 'cancels them when the owning task fails too, before its failure is reported' {
            $sig = New-SyncHashtable
            $sig.Started = [System.Threading.ManualResetEventSlim]::new($false)
            $sig.Ended = 0
            {
                Invoke-Gather {
                    $sig = $using:sig
                    $null = Start-AsyncTask -Name Orphan { $s = $using:sig; try { $s.Started.Set(); Start-Sleep -Seconds 60 } finally { $s.Ended = 1 } }
                    $null = $sig.Started.Wait([TimeSpan]::FromSeconds(60))
                    throw 'owner failed'
                } -WarningAction SilentlyContinue
            } | Should -Throw 'owner failed'
            $sig.Started.IsSet | Should -BeTrue
            $sig.Ended | Should -Be 1
        }

        It 'gives a nested Start-TaskGroup''s failure to the outer group as a nested aggregate' {
            $err = Get-NestedGroupFailure
            $err | Should -Not -BeNullOrEmpty
            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand'
            $outer = $err.Exception
            $outer | Should -BeOfType ([AsyncGroup.Core.TaskGroupException])
            $outer.GroupName | Should -Be 'Outer'
            $inner = $outer.InnerExceptions[0]
            $inner | Should -BeOfType ([AsyncGroup.Core.TaskGroupException])
            $inner.GroupName | Should -Be 'Inner'
            $inner.InnerExceptions[0].Message | Should -Be 'deep'
        }
    }

    Context 'a failed Start-TaskGroup keeps its tasks' {
        It 'lists them in its error, succeeded sibling included, and Get-AsyncTask still finds them' {
            $err = $null
            try {
                Start-TaskGroup -Name Shop {
                    $db = Start-AsyncTask -Name Db { 'db rows' }
                    $null = Start-AsyncTask -Name Web -ArgumentList $db {
                        param($db)
                        while (-not $db.IsDone) { Start-Sleep -Milliseconds 10 }
                        throw 'web down'
                    }
                }
            }
            catch { $err = $_ }
            [GC]::Collect()
            [GC]::WaitForPendingFinalizers()

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand'
            $tasks = @($err.Exception.Tasks)
            $tasks.Name | Should -Be @('Db', 'Web')
            $tasks[0] | Should -BeOfType ([AsyncGroup.AsyncTask])
            $tasks[0].State | Should -Be 'Completed'
            $tasks[0].Output | Should -Be 'db rows'
            $tasks[1].State | Should -Be 'Failed'
            (Get-AsyncTask -Name Db).Output | Should -Be 'db rows'
            (Get-AsyncTask -Name Web).Error.Exception.Message | Should -Be 'web down'
        }

        It 'lists a nested group''s tasks in the nested aggregate' {
            $err = Get-NestedGroupFailure
            @($err.Exception.Tasks).Name | Should -Be 'Middle'
            @($err.Exception.InnerExceptions[0].Tasks).Name | Should -Be 'Leaf'
            @($err.Exception.InnerExceptions[0].Tasks)[0].Parent.Name | Should -Be 'Middle'
        }
    }

    Context 'streams and errors from any depth' {
        It 'delivers a record written three levels down to the top caller while the tree still runs' {
            $r = Invoke-InNewRunspace -Script @'
param($Signal)
$sig = $Signal
Invoke-Gather {
    $sig = $using:sig
    Invoke-Gather {
        $sig = $using:sig
        Invoke-Gather {
            $sig = $using:sig
            Write-Warning 'from the deep'
            # The top caller's warning stream has it before this task ends.
            $deadline = [DateTime]::UtcNow.AddSeconds(60)
            while ($sig.Streams.Warning.Count -lt 1 -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 20 }
            "seen live: $($sig.Streams.Warning.Count -ge 1)"
        }
    }
}
'@
            $r.Failure | Should -BeNullOrEmpty
            $r.Output | Should -Be 'seen live: True'
            @($r.Signal.Streams.Warning).Message | Should -Be 'from the deep'
        }

        It 'honours the top caller''s common parameters at any depth' {
            $verbose = Invoke-Gather -Verbose { Invoke-Gather { Invoke-Gather { Write-Verbose 'deep verbose' } } } 4>&1
            "$verbose" | Should -Be 'deep verbose'

            $warnings = Invoke-Gather -WarningAction SilentlyContinue { Invoke-Gather { Write-Warning 'hidden'; 'x' } } 3>&1
            $warnings | Should -Be 'x'

            { Invoke-Gather -ErrorAction Stop { Invoke-Gather { Write-Error 'deep error'; 'not reached' } } } |
                Should -Throw 'deep error'
        }

        It 'does not pass on the verbose messages of importing AsyncGroup into a worker on first use' {
            # A fresh process: its workers have not imported the module yet, so the nested call's
            # lookup imports it there (OwnModuleImport) while -Verbose is in force in that worker.
            $r = Invoke-ChildPowerShell -Command @'
Import-Module $env:ASYNCGROUP_MANIFEST
Invoke-Gather -Verbose { Invoke-Gather { Write-Verbose 'deep verbose' } } 4>&1 | ForEach-Object { "[$_]" }
'@
            $r.Output | Should -Be @('[deep verbose]') -Because $r.ErrorText
        }

        It 'lists a task started inside a task in the session, with its Parent, and stops it from there' {
            $top = Start-AsyncTask -Name Top { $kid = Start-AsyncTask -Name Kid { Start-Sleep -Seconds 60 }; $null = Wait-AsyncGroup -Task $kid; "kid $($kid.State)" }
            Wait-Until { @(Get-AsyncTask -Name Kid -ErrorAction SilentlyContinue | Where-Object State -eq 'Running').Count -eq 1 } -TimeoutSeconds 60 -Because 'the nested task to run'
            $kid = Get-AsyncTask -Name Kid
            $kid.Parent | Should -Be $top
            Stop-AsyncTask -Name Kid
            Receive-AsyncTask $top -Wait | Should -Be 'kid Cancelled'
        }
    }

    Context 'Start-AsyncTask -Shield' {
        It 'is not cancelled when its group fails, and the group waits for it' {
            $sig = New-SyncHashtable
            $sig.Started = [System.Threading.ManualResetEventSlim]::new($false)
            $err = $null
            try {
                Start-TaskGroup {
                    $null = Start-AsyncTask -Name Kept -Shield { $s = $using:sig; $s.Started.Set(); Start-Sleep -Milliseconds 300; 'kept' }
                    $null = Start-AsyncTask -Name Failing { $s = $using:sig; $null = $s.Started.Wait(60000); throw 'sibling failed' }
                }
            }
            catch { $err = $_ }
            $err.Exception.Message | Should -Match 'sibling failed'
            $kept = @($err.Exception.Tasks | Where-Object Name -eq 'Kept')[0]
            $kept.IsShielded | Should -BeTrue
            $kept.State | Should -Be 'Completed'
            $kept.Output | Should -Be 'kept'
        }

        It 'is not cancelled when the task that started it ends: that task waits for it, without a warning' {
            $sig = New-SyncHashtable
            $out = Invoke-Gather {
                $sig = $using:sig
                $null = Start-AsyncTask -Shield { $s = $using:sig; Start-Sleep -Milliseconds 300; $s.Done = 'done' }
                'parent'
            } -WarningVariable warned
            $out | Should -Be 'parent'
            $sig.Done | Should -Be 'done'
            $warned | Should -BeNullOrEmpty
        }

        It 'is not cancelled when the task that started it is stopped: the stopped task ends after it' {
            $sig = New-SyncHashtable
            $sig.Started = [System.Threading.ManualResetEventSlim]::new($false)
            $sig.Release = [System.Threading.ManualResetEventSlim]::new($false)
            $top = Start-AsyncTask {
                $sig = $using:sig
                $null = Start-AsyncTask -Shield -Name Guarded { $s = $using:sig; $s.Started.Set(); $null = $s.Release.Wait(60000); $s.Done = 'finished' }
                Start-Sleep -Seconds 60
            }
            $sig.Started.Wait(60000) | Should -BeTrue
            Stop-AsyncTask -Task $top
            # Listed before it could signal: Start-AsyncTask registers a task before starting it.
            $guarded = Get-AsyncTask -Name Guarded
            $guarded | Should -HaveCount 1
            $null = Wait-AsyncGroup -Task $top -Timeout 1
            $top.IsDone | Should -BeFalse -Because 'the stopped task waits for its shielded child'
            $sig.Release.Set()
            $null = Wait-AsyncGroup -Task $top -Timeout 60
            $top.State | Should -Be 'Cancelled'
            $sig.Done | Should -Be 'finished'
            $guarded.State | Should -Be 'Completed'
        }

        It 'still ends on an explicit Stop-AsyncTask' {
            $t = Start-AsyncTask -Shield { Start-Sleep -Seconds 60 }
            Wait-Until { $t.State -eq 'Running' } -TimeoutSeconds 60
            Stop-AsyncTask -Task $t
            $null = Wait-AsyncGroup -Task $t -Timeout 60
            $t.State | Should -Be 'Cancelled'
        }
    }
}
