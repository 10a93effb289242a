BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

# Tasks that must be cancelled wait in a cancellable loop (Start-Sleep) that gives up after about a
# minute: a module that fails to cancel makes the test fail, it does not hang the suite.

Describe 'Invoke-Gather' {
    AfterEach {
        Clear-AsyncTask
    }

    Context 'results' {
        It 'returns the outputs in input order although the tasks finish in reverse order' {
            $gates = @(0..3 | ForEach-Object { [System.Threading.ManualResetEventSlim]::new($false) })
            $finished = [System.Collections.ArrayList]::Synchronized([System.Collections.ArrayList]::new())

            $out = 1..3 | Invoke-Gather -ThrottleLimit 3 {
                $g = $using:gates
                $f = $using:finished
                # Item 3 goes first, then releases item 2, which releases item 1.
                if ($_ -lt 3 -and -not $g[$_].Wait(30000)) { throw "item $_ was never released" }
                [void]$f.Add($_)
                $g[$_ - 1].Set()
                "item $_"
            }

            @($finished) | Should -Be @(3, 2, 1)
            $out | Should -Be @('item 1', 'item 2', 'item 3')
        }

        It 'writes task 1''s output to the pipeline before the last task has finished (pipeline input)' {
            $release = [System.Threading.ManualResetEventSlim]::new($false)
            $seen = [System.Collections.Generic.List[string]]::new()

            # Task 2 can only finish after task 1's object has reached the end of the pipeline.
            1..2 | Invoke-Gather -ThrottleLimit 2 {
                if ($_ -eq 2) {
                    $r = $using:release
                    if (-not $r.Wait(30000)) { throw 'task 1''s output was held back until the end' }
                    'second'
                }
                else { 'first' }
            } | ForEach-Object {
                $seen.Add($_)
                if ($_ -eq 'first') { $release.Set() }
            }

            $seen | Should -Be @('first', 'second')
        }

        It 'writes task 1''s output to the pipeline before the last task has finished (-ScriptBlock array)' {
            $release = [System.Threading.ManualResetEventSlim]::new($false)
            $seen = [System.Collections.Generic.List[string]]::new()

            Invoke-Gather -ScriptBlock { 'first' }, {
                $r = $using:release
                if (-not $r.Wait(30000)) { throw 'task 1''s output was held back until the end' }
                'second'
            } | ForEach-Object {
                $seen.Add($_)
                if ($_ -eq 'first') { $release.Set() }
            }

            $seen | Should -Be @('first', 'second')
        }

        It 'binds $_ to each pipeline object' {
            1..10 | Invoke-Gather { $_ * 2 } | Should -Be @(2, 4, 6, 8, 10, 12, 14, 16, 18, 20)
        }

        It 'binds $_ and -ArgumentList together when the script block has a param block' {
            1..2 | Invoke-Gather { param($factor) $_ * $factor } -ArgumentList 10 | Should -Be @(10, 20)
        }

        It 'treats an array sent down the pipeline as one object' {
            , @(1, 2, 3) | Invoke-Gather { $_.Count } | Should -Be 3
            @(1, 2), @(3, 4, 5) | Invoke-Gather { $_.Count } | Should -Be @(2, 3)
        }

        It 'treats an array given to -InputObject as one object' {
            Invoke-Gather { $_.Count } -InputObject @(1, 2, 3) | Should -Be 3
        }

        It 'keeps all the objects of one task together, in the order the task wrote them' {
            1..3 | Invoke-Gather { $_; $_ * 10 } | Should -Be @(1, 10, 2, 20, 3, 30)
        }

        It 'runs every script block of -ScriptBlock and returns their outputs in order' {
            Invoke-Gather -ScriptBlock { 'a' }, { 'b'; 'b2' }, { 'c' } | Should -Be @('a', 'b', 'b2', 'c')
        }

        It 'runs all the script blocks of -ScriptBlock at once by default' {
            $c = New-SyncHashtable
            $c.Started = 0
            $sb = {
                $c = $using:c
                [System.Threading.Monitor]::Enter($c.SyncRoot)
                try { $c.Started++ } finally { [System.Threading.Monitor]::Exit($c.SyncRoot) }
                # Ends only once all three are running at the same time.
                foreach ($i in 1..1500) { if ($c.Started -ge 3) { break }; Start-Sleep -Milliseconds 20 }
                $c.Started -ge 3
            }

            Invoke-Gather -ScriptBlock $sb, $sb, $sb | Should -Be @($true, $true, $true)
        }

        It 'never drops a finished task''s output (1000 small gathers)' {
            # Many short calls: output lost to a race between a task's completion and its
            # delivery shows up in a few of them only.
            $short = 0
            foreach ($call in 1..1000) {
                $out = @(Invoke-Gather -ScriptBlock { 1 }, { 2 })
                if ($out.Count -ne 2) { $short++ }
            }
            "$short of 1000 calls lost output" | Should -Be '0 of 1000 calls lost output'
        }

        It 'gathers nothing, without error, when the pipeline is empty' {
            $out = @() | Invoke-Gather { $_ } -ErrorVariable errs
            $out | Should -BeNullOrEmpty
            $errs | Should -BeNullOrEmpty
        }

        It 'gathers existing tasks given to -Task, in input order' {
            $gate = [System.Threading.ManualResetEventSlim]::new($false)
            $t1 = Start-AsyncTask { $g = $using:gate; if (-not $g.Wait(30000)) { throw 'never released' }; 'one' }
            $t2 = Start-AsyncTask { $g = $using:gate; $g.Set(); 'two' }

            Invoke-Gather -Task $t1, $t2 | Should -Be @('one', 'two')
        }

        It 'gathers existing tasks sent down the pipeline' {
            $tasks = 1..3 | Start-AsyncTask { $_ * 3 }
            $tasks | Invoke-Gather | Should -Be @(3, 6, 9)
        }
    }

    Context 'errors (fail-fast)' {
        It 'keeps the message of the task''s exception' {
            $message = try { Invoke-Gather { throw 'boom' } } catch { $_.Exception.Message }
            $message | Should -Be 'boom'
        }

        It 'throws AsyncGroup.TaskFailed when a task fails' {
            { Invoke-Gather { throw 'boom' } } | Should -Throw -ErrorId 'AsyncGroup.TaskFailed,AsyncGroup.Commands.InvokeGatherCommand'
        }

        It 'keeps the type of the task''s exception' {
            $err = try { Invoke-Gather { throw [System.IO.FileNotFoundException]::new('no such file') } } catch { $_ }
            $err.Exception | Should -BeOfType ([System.IO.FileNotFoundException])
            $err.Exception.Message | Should -Be 'no such file'
        }

        It 'targets the failed task, whose state is Failed' {
            $err = try { 1..2 | Invoke-Gather { if ($_ -eq 2) { throw 'two' } } } catch { $_ }
            $err.TargetObject | Should -BeOfType ([AsyncGroup.AsyncTask])
            $err.TargetObject.State | Should -Be 'Failed'
            $err.TargetObject.InputObject | Should -Be 2
        }

        It 'emits the outputs of the tasks before the failed one, then throws' {
            $got = [System.Threading.ManualResetEventSlim]::new($false)
            $seen = [System.Collections.Generic.List[object]]::new()

            $err = try {
                1..2 | Invoke-Gather -ThrottleLimit 2 {
                    if ($_ -eq 1) { 'one' }
                    else {
                        # Fails only once 'one' has reached the end of the pipeline.
                        $g = $using:got
                        if (-not $g.Wait(30000)) { throw 'never released' }
                        throw 'two'
                    }
                } | ForEach-Object { $seen.Add($_); $got.Set() }
            }
            catch { $_ }

            $seen | Should -Be @('one')
            $err.Exception.Message | Should -Be 'two'
        }

        It 'cancels the other running tasks at the first failure, and they have ended when it throws' {
            $s = New-SyncHashtable
            $s.SiblingExited = [System.Threading.ManualResetEventSlim]::new($false)

            { 1..2 | Invoke-Gather -ThrottleLimit 2 {
                    $s = $using:s
                    if ($_ -eq 1) {
                        foreach ($i in 1..1500) { if ($s.SiblingStarted) { break }; Start-Sleep -Milliseconds 20 }
                        throw 'boom'
                    }
                    try {
                        $s.SiblingStarted = $true
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                        $s.SiblingFinished = $true
                    }
                    finally { $s.SiblingExited.Set() }
                } 3>$null } | Should -Throw -ErrorId 'AsyncGroup.TaskFailed,AsyncGroup.Commands.InvokeGatherCommand'

            $s.SiblingStarted | Should -BeTrue
            $s.SiblingFinished | Should -BeNullOrEmpty
            $s.SiblingExited.IsSet | Should -BeTrue
        }

        It 'stops reading its input at the first failure, so a long upstream ends with the error' {
            # Before, every later input was read and became a cancelled task: an endless upstream
            # never ended. Back-pressure bounds how far the input runs ahead of the failure.
            $read = [ref]0
            $err = try {
                & { foreach ($i in 1..200000) { $read.Value++; $i } } |
                    Invoke-Gather { if ($_ -eq 1) { throw 'first' }; $_ } -WarningAction SilentlyContinue | Out-Null
            }
            catch { $_ }

            $err.Exception.Message | Should -Be 'first'
            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskFailed,AsyncGroup.Commands.InvokeGatherCommand'
            $read.Value | Should -BeLessThan 100000
        }

        It 'does not cancel tasks given with -Task when one of them fails' {
            $bad = Start-AsyncTask { throw 'bad' }
            $slow = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }

            { Invoke-Gather -Task $slow, $bad } | Should -Throw -ErrorId 'AsyncGroup.TaskFailed,AsyncGroup.Commands.InvokeGatherCommand'

            # Left alone: queued for a worker or running, never cancelled.
            $slow.State | Should -BeIn @('Pending', 'Running')
        }

        It 'warns about the tasks it cancelled at the first failure, including those that never started' {
            $s = New-SyncHashtable
            $s.Started = 0

            # Two slots: the first task to start fails once a second one runs; the two others
            # wait for a slot that is never freed, so they never start.
            $err = try {
                1..4 | Invoke-Gather -ThrottleLimit 2 -WarningVariable warnings {
                    $s = $using:s
                    [System.Threading.Monitor]::Enter($s.SyncRoot)
                    try { $s.Started++; $me = $s.Started } finally { [System.Threading.Monitor]::Exit($s.SyncRoot) }
                    if ($me -eq 1) {
                        foreach ($i in 1..1500) { if ($s.Started -ge 2) { break }; Start-Sleep -Milliseconds 20 }
                        throw 'boom'
                    }
                    foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                } 3>$null
            }
            catch { $_ }

            $err.Exception.Message | Should -Be 'boom'
            $warnings | Should -HaveCount 1
            $warnings[0].Message | Should -Match '3 task\(s\) were cancelled \(2 of them never started\)'
        }
    }

    Context '-ReturnExceptions' {
        It 'places an error record at the failed task''s position and raises nothing' {
            $err = $null
            $out = try { 1..3 | Invoke-Gather -ReturnExceptions { if ($_ -eq 2) { throw "bad $_" }; $_ } } catch { $err = $_ }

            $err | Should -BeNullOrEmpty
            $out | Should -HaveCount 3
            $out[0] | Should -Be 1
            $out[1] | Should -BeOfType ([System.Management.Automation.ErrorRecord])
            $out[1].Exception.Message | Should -Be 'bad 2'
            $out[1].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskFailed'
            $out[1].TargetObject.InputObject | Should -Be 2
            $out[2] | Should -Be 3
        }

        It 'does not cancel the other tasks when one fails' {
            $reported = [System.Threading.ManualResetEventSlim]::new($false)
            $seen = [System.Collections.Generic.List[object]]::new()

            # Item 1 finishes only after item 2's error record has reached the pipeline.
            1..2 | Invoke-Gather -ReturnExceptions -AsCompleted -ThrottleLimit 2 {
                if ($_ -eq 2) { throw 'two' }
                $r = $using:reported
                if (-not $r.Wait(30000)) { throw 'never released' }
                'one'
            } | ForEach-Object { $seen.Add($_); $reported.Set() }

            $seen | Should -HaveCount 2
            $seen[0].Exception.Message | Should -Be 'two'
            $seen[1] | Should -Be 'one'
        }

        It 'places an AsyncGroup.TaskCancelled record at the position of a cancelled task' {
            $t1 = Start-AsyncTask { 'one' }
            $t2 = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
            $t2 | Stop-AsyncTask
            $null = Wait-AsyncGroup $t1, $t2 -Timeout 30

            $out = Invoke-Gather -Task $t1, $t2 -ReturnExceptions

            $out | Should -HaveCount 2
            $out[0] | Should -Be 'one'
            $out[1] | Should -BeOfType ([System.Management.Automation.ErrorRecord])
            $out[1].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskCancelled'
            $out[1].Exception | Should -BeOfType ([System.OperationCanceledException])
            $out[1].TargetObject | Should -Be $t2
        }

        It 'still reports each item cancelled by -Timeout at its position, then throws the timeout' {
            $seen = [System.Collections.Generic.List[object]]::new()

            $err = try {
                # -Timeout 3 is only an upper bound for the trivial item 1 to finish.
                1..2 | Invoke-Gather -ReturnExceptions -Timeout 3 -ThrottleLimit 2 {
                    if ($_ -eq 1) { 'one' } else { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
                } | ForEach-Object { $seen.Add($_) }
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            $seen | Should -HaveCount 2
            $seen[0] | Should -Be 'one'
            $seen[1].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskCancelled'
        }
    }

    Context '-Timeout' {
        It 'throws AsyncGroup.Timeout with a TimeoutException when the gather outlives -Timeout' {
            $err = try { Invoke-Gather -Timeout 0.5 { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } } 3>$null } catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            $err.Exception | Should -BeOfType ([System.TimeoutException])
            $err.CategoryInfo.Category | Should -Be 'OperationTimeout'
        }

        It 'cancels the unfinished tasks before it throws' {
            $s = New-SyncHashtable
            $s.Exited = [System.Threading.CountdownEvent]::new(2)

            { 1..2 | Invoke-Gather -Timeout 0.5 -ThrottleLimit 2 {
                    $s = $using:s
                    try {
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                        $s.Finished = $true
                    }
                    finally { $s.Exited.Signal() }
                } 3>$null } | Should -Throw -ErrorId 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'

            $s.Finished | Should -BeNullOrEmpty
            # Both tasks ran their finally block before Invoke-Gather returned.
            $s.Exited.CurrentCount | Should -Be 0
        }

        It 'warns, naming the cancelled items and how many never started' {
            $err = try {
                1..3 | Invoke-Gather -Timeout 0.5 -ThrottleLimit 1 -WarningVariable warnings {
                    foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                } 3>$null
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'

            $warnings | Should -HaveCount 1
            $warnings[0].Message | Should -Match 'timeout'
            $warnings[0].Message | Should -Match '3 task\(s\) were cancelled'
            # How many count as started is left open: a queued task can be admitted to the slot
            # at the very moment the deadline cancels everything.
            $warnings[0].Message | Should -Match '\(\d of them never started\)'
            # Items are named by their 0-based position in the input, never by their value.
            $warnings[0].Message | Should -Match '#0, #1, #2$'
        }

        It 'does not echo pipeline input values in that warning' {
            $err = try {
                'agSecretValue-4f1c' | Invoke-Gather -Timeout 0.3 -WarningVariable warnings {
                    foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                } 3>$null
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            $warnings | Should -HaveCount 1
            $warnings[0].Message | Should -Match '#0'
            $warnings[0].Message | Should -Not -Match 'agSecretValue'
        }

        It 'throws AsyncGroup.Timeout even when an input object''s ToString() throws' {
            if (-not ('AgThrowingToString' -as [type])) {
                Add-Type -TypeDefinition 'public class AgThrowingToString { public override string ToString() { throw new System.InvalidOperationException("no string for you"); } }'
            }

            $err = try {
                [AgThrowingToString]::new() | Invoke-Gather -Timeout 0.3 { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } } 3>$null
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            $err.Exception | Should -BeOfType ([System.TimeoutException])
        }

        It 'throws AsyncGroup.Timeout and leaves tasks given with -Task running' {
            $t = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }

            { Invoke-Gather -Task $t -Timeout 0.5 } | Should -Throw -ErrorId 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'

            # Left alone: queued for a worker or running, never cancelled.
            $t.State | Should -BeIn @('Pending', 'Running')
        }

        It 'surfaces no errors of its own when it fires while workers are still being opened' {
            # Issue 9, item 17: a stop that reached a worker while it was still loading the module
            # behind the task's first command (Start-Sleep autoloads Microsoft.PowerShell.Utility)
            # surfaced 'the module could not be loaded' errors. A fresh process, so the pool is
            # cold; each round asks for more workers than the last one opened. (Workers now have
            # the built-in commands at open; the stop can still reach one while it opens.) No
            # progress bar: under load a round outlasts its delay, and its records reach stderr.
            $command = @'
$ProgressPreference = 'SilentlyContinue'
Import-Module $env:ASYNCGROUP_MANIFEST
foreach ($timeout in 0.05, 0.1, 0.2, 0.3) {
    $Error.Clear()
    try { $null = 1..30 | Invoke-Gather { Start-Sleep -Milliseconds 2000; Get-Date } -ThrottleLimit 30 -Timeout $timeout 3>$null } catch { $null = $_ }
    foreach ($e in $Error) { "$timeout|$($e.FullyQualifiedErrorId)|$($e.Exception.Message)" }
}
'@
            $run = Invoke-ChildPowerShell -Command $command -TimeoutSeconds 180
            $run.TimedOut | Should -BeFalse
            # One error per round, the timeout itself, and nothing else.
            $run.Output | Should -HaveCount 4
            foreach ($line in $run.Output) {
                $line | Should -Match '^[0-9.]+\|AsyncGroup\.Timeout,AsyncGroup\.Commands\.InvokeGatherCommand\|'
            }
            $run.ErrorText | Should -BeNullOrEmpty
        }
    }

    Context '-TaskTimeout' {
        It 'fails only the task that outlives -TaskTimeout, with an AsyncGroup.Timeout record' {
            # -TaskTimeout 3 is only an upper bound for the trivial item 1 to finish.
            $out = 1..2 | Invoke-Gather -ReturnExceptions -TaskTimeout 3 -ThrottleLimit 2 {
                if ($_ -eq 1) { 'ok' } else { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
            }

            $out | Should -HaveCount 2
            $out[0] | Should -Be 'ok'
            $out[1].FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout'
            $out[1].Exception | Should -BeOfType ([System.TimeoutException])
            $out[1].TargetObject.State | Should -Be 'Failed'
        }

        It 'throws AsyncGroup.Timeout with a TimeoutException when a task outlives -TaskTimeout' {
            $err = try { Invoke-Gather -TaskTimeout 0.5 { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } } } catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            $err.Exception | Should -BeOfType ([System.TimeoutException])
        }
    }

    Context '-AsCompleted' {
        It 'emits the outputs in completion order' {
            $gates = @(0..3 | ForEach-Object { [System.Threading.ManualResetEventSlim]::new($false) })
            $seen = [System.Collections.Generic.List[object]]::new()

            # Item 3 finishes first; each object that reaches the pipeline releases the item before it.
            1..3 | Invoke-Gather -AsCompleted -ThrottleLimit 3 {
                $g = $using:gates
                if ($_ -lt 3 -and -not $g[$_].Wait(30000)) { throw "item $_ was never released" }
                $_
            } | ForEach-Object { $seen.Add($_); $gates[$_ - 1].Set() }

            $seen | Should -Be @(3, 2, 1)
        }
    }

    Context '-ThrottleLimit' {
        BeforeAll {
            # Each task waits until -ThrottleLimit tasks run at once (or every task has started),
            # so the peak reaches the limit; the counter records any excess.
            $script:CountingTask = {
                $c = $using:counter
                $limit = $using:limit
                $total = $using:total
                [System.Threading.Monitor]::Enter($c.SyncRoot)
                try {
                    $c.Running++
                    $c.Started++
                    if ($c.Running -gt $c.Max) { $c.Max = $c.Running }
                }
                finally { [System.Threading.Monitor]::Exit($c.SyncRoot) }
                try {
                    foreach ($i in 1..1500) {
                        if ($c.Running -ge $limit -or $c.Started -ge $total) { break }
                        Start-Sleep -Milliseconds 20
                    }
                }
                finally {
                    [System.Threading.Monitor]::Enter($c.SyncRoot)
                    try { $c.Running-- } finally { [System.Threading.Monitor]::Exit($c.SyncRoot) }
                }
                $_
            }
        }

        It 'runs at most -ThrottleLimit tasks at once' {
            $counter = New-SyncHashtable
            $counter.Running = 0; $counter.Started = 0; $counter.Max = 0
            $limit = 2
            $total = 6

            $out = 1..$total | Invoke-Gather -ThrottleLimit $limit -ScriptBlock $script:CountingTask

            $out | Should -Be @(1, 2, 3, 4, 5, 6)
            $counter.Max | Should -Be 2
        }

        It 'starts the queued items in input order' {
            # Repeated, with idle gaps between calls (which never make a correct module fail): a
            # start order left to thread-pool scheduling shows up in some calls only.
            foreach ($call in 1..5) {
                Start-Sleep -Milliseconds 250
                $started = [System.Collections.ArrayList]::Synchronized([System.Collections.ArrayList]::new())
                $null = 1..10 | Invoke-Gather -ThrottleLimit 1 { $l = $using:started; [void]$l.Add($_) }
                "call ${call}: $(@($started) -join ',')" | Should -Be "call ${call}: $(@(1..10) -join ',')"
            }
        }

        It 'runs at most 5 tasks at once by default with pipeline input' {
            $counter = New-SyncHashtable
            $counter.Running = 0; $counter.Started = 0; $counter.Max = 0
            $limit = 5
            $total = 8

            $null = 1..$total | Invoke-Gather -ScriptBlock $script:CountingTask

            $counter.Max | Should -Be 5
        }

        It 'runs the script blocks of -ScriptBlock one at a time with -ThrottleLimit 1' {
            $counter = New-SyncHashtable
            $counter.Running = 0; $counter.Started = 0; $counter.Max = 0
            $limit = 1
            $total = 3

            $null = Invoke-Gather -ThrottleLimit 1 -ScriptBlock $script:CountingTask, $script:CountingTask, $script:CountingTask

            $counter.Started | Should -Be 3
            $counter.Max | Should -Be 1
        }
    }

    Context 'common parameters' {
        It 'writes the head task''s verbose and warning records before the output it wrote after them' {
            # The task after the head finishing first made the gather write the head's output at
            # once, ahead of the head's verbose and warning records still queued (the order of
            # Invoke-Gather's Example 7 came out wrong in about 1 call in 10 with a warm worker).
            $wrong = @()
            foreach ($i in 1..60) {
                $got = Invoke-Gather { Write-Verbose 'checking A'; Write-Warning 'A is slow'; 'A' }, { 'B' } -Verbose 3>&1 4>&1
                $line = @($got | ForEach-Object { "$_" }) -join '|'
                if ($line -ne 'checking A|A is slow|A|B') { $wrong += $line }
            }

            $wrong | Should -BeNullOrEmpty
        }

        It 'writes the head task''s output after the records it wrote before it, even when a later task ended first' {
            # A later task ending made the gather post a notice for the head's output; read when
            # it came out of the queue, that notice released output the head wrote after a warning
            # queued behind the notice. Here the head writes between the notice's posting and its
            # reading: with two workers, C runs on B's worker after B's end was posted; the
            # downstream command holds the queue on B's record until C has queued its records, and
            # lets the head write on C's last one, which the notice follows.
            $e = @{}
            foreach ($name in 'A', 'AWrote', 'CDone') { $e[$name] = [System.Threading.ManualResetEventSlim]::new($false) }
            $seen = @(Invoke-Gather -Verbose -ThrottleLimit 2 {
                    $e = $using:e; $null = $e.A.Wait(120000); Write-Warning 'w'; 'A'; $e.AWrote.Set()
                }, {
                    Write-Verbose 'b'; 'B'
                }, {
                    $e = $using:e
                    foreach ($k in 1..200) { Write-Verbose "c$k" }
                    $e.CDone.Set()
                } 3>&1 4>&1 | ForEach-Object {
                    if ($_ -is [System.Management.Automation.VerboseRecord]) {
                        if ($_.Message -eq 'b') { $null = $e.CDone.Wait(120000) }
                        if ($_.Message -eq 'c200') { $e.A.Set(); $null = $e.AWrote.Wait(120000) }
                    }
                    elseif ($_ -is [System.Management.Automation.WarningRecord]) { 'warning' }
                    else { "$_" }
                })

            $seen -join '|' | Should -Be 'warning|A|B'
        }

        It 'writes a given task''s earlier records before the output it wrote after them (-Task)' {
            $first = Start-AsyncTask { Write-Warning 'w'; 'A' }
            Wait-Until { $first.IsDone }
            $second = Start-AsyncTask { 'B' }

            $seen = @(Invoke-Gather -Task $first, $second 3>&1 | ForEach-Object {
                    if ($_ -is [System.Management.Automation.WarningRecord]) { 'warning' } else { "$_" }
                })

            $seen -join '|' | Should -Be 'warning|A|B'
        }

        It 'stops at the first error with -ErrorAction Stop' {
            $s = New-SyncHashtable

            $err = try {
                1..2 | Invoke-Gather -ErrorAction Stop -ThrottleLimit 2 {
                    $s = $using:s
                    if ($_ -eq 1) {
                        foreach ($i in 1..1500) { if ($s.SiblingStarted) { break }; Start-Sleep -Milliseconds 20 }
                        Write-Error 'first error'
                        $s.AfterError = $true
                    }
                    else {
                        $s.SiblingStarted = $true
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                        $s.SiblingFinished = $true
                    }
                } 3>$null
            }
            catch { $_ }

            $err.Exception.Message | Should -Be 'first error'
            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskFailed,AsyncGroup.Commands.InvokeGatherCommand'
            $s.AfterError | Should -BeNullOrEmpty
            $s.SiblingFinished | Should -BeNullOrEmpty
        }

        It 'hides the tasks'' warnings with -WarningAction SilentlyContinue' {
            $out = Invoke-Gather { Write-Warning 'hidden'; 'out' } -WarningAction SilentlyContinue 3>&1
            $out | Should -Be @('out')
        }

        It 'sets -PipelineVariable to each object it writes' {
            1..3 | Invoke-Gather { $_ * 2 } -PipelineVariable pv | ForEach-Object { "$pv" } | Should -Be @('2', '4', '6')
        }

        It 'collects its output in -OutVariable' {
            $null = 1..3 | Invoke-Gather { $_ } -OutVariable collected
            @($collected) | Should -Be @(1, 2, 3)
        }
    }

    Context 'long pipelines (a task is let go once its output is written)' {
        It 'reads its input only a bounded distance ahead of its workers' {
            # The producer notes how far it has got past the tasks that started. Without
            # back-pressure it read all 1,000 items while the first eight ran; with it, at most
            # max(512, 4 x ThrottleLimit) tasks wait in the queue, plus those running.
            $c = New-SyncHashtable
            $c.Started = 0; $c.Ahead = 0

            $out = & {
                foreach ($i in 1..1000) {
                    $ahead = $i - $c.Started
                    if ($ahead -gt $c.Ahead) { $c.Ahead = $ahead }
                    $i
                }
            } | Invoke-Gather -ThrottleLimit 8 {
                $s = $using:c
                [System.Threading.Monitor]::Enter($s.SyncRoot)
                try { $s.Started++ } finally { [System.Threading.Monitor]::Exit($s.SyncRoot) }
                Start-Sleep -Milliseconds 10
                $_
            }

            $out | Should -Be (1..1000)
            $c.Ahead | Should -BeLessOrEqual 522
            $c.Ahead | Should -BeGreaterThan 256 # it does read ahead, to keep its workers fed
        }

        It 'lets go of an item''s output object once written, while the call still runs' {
            $probe = @{ Written = [System.Threading.ManualResetEventSlim]::new($false) }

            # Item 1's object is written first (the other items wait for it to reach the end of the
            # pipeline); by item 500 the call no longer holds it (the downstream command keeps only
            # a weak reference), though the call is still running.
            1..600 | Invoke-Gather -ThrottleLimit 2 {
                if ($_ -eq 1) { [System.Text.StringBuilder]::new('item 1') }
                else {
                    $p = $using:probe
                    if (-not $p.Written.Wait(30000)) { throw 'item 1 was never written' }
                    $_
                }
            } | ForEach-Object {
                if ($_ -is [System.Text.StringBuilder]) {
                    $probe.Weak = [System.WeakReference]::new($_)
                    $probe.Written.Set()
                }
                elseif ($_ -eq 500) {
                    [GC]::Collect()
                    [GC]::WaitForPendingFinalizers()
                    [GC]::Collect()
                    $probe.AliveAt500 = $probe.Weak.IsAlive
                }
            }

            $probe.Weak | Should -Not -BeNullOrEmpty
            $probe.AliveAt500 | Should -BeFalse
        }

        It 'keeps every output in input order, streaming several objects per item' {
            $out = 1..3000 | Invoke-Gather -ThrottleLimit 3 { $_; -$_ }

            $out | Should -HaveCount 6000
            $expected = foreach ($i in 1..3000) { $i; -$i }
            ($out -join ',') | Should -Be ($expected -join ',')
        }

        It 'streams the output of the item at the head of the order while it still runs' {
            $s = New-SyncHashtable
            # Item 1 writes, then waits (10 s at most) until the command downstream has its object.
            $out = 1..2 | Invoke-Gather -ThrottleLimit 2 {
                $s = $using:s
                if ($_ -eq 1) {
                    'early'
                    foreach ($i in 1..500) { if ($s.Seen) { break }; Start-Sleep -Milliseconds 20 }
                    "seen before the end: $([bool]$s.Seen)"
                }
                else { $_ }
            } | ForEach-Object { if ($_ -eq 'early') { $s.Seen = $true }; $_ }

            $out | Should -Be @('early', 'seen before the end: True', 2)
        }

        It 'writes every output exactly once with -AsCompleted' {
            $out = 1..3000 | Invoke-Gather -AsCompleted -ThrottleLimit 3 { $_; $_ + 0.5 }

            $out | Should -HaveCount 6000
            (($out | Sort-Object) -join ',') | Should -Be ((1..3000 | ForEach-Object { $_; $_ + 0.5 }) -join ',')
        }

        It 'stops at the failed item and names the first cancelled items in input order' {
            $seen = [System.Collections.Generic.List[object]]::new()

            $err = try {
                # The items after the failed one wait, so the failure finds them running or queued.
                1..3000 | Invoke-Gather -ThrottleLimit 3 -WarningVariable warnings {
                    if ($_ -eq 2500) { throw "bad $_" }
                    if ($_ -gt 2500) { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
                    $_
                } 3>$null | ForEach-Object { $seen.Add($_) }
            }
            catch { $_ }

            $err.Exception.Message | Should -Be 'bad 2500'
            $err.TargetObject.InputObject | Should -Be 2500
            # Items before the failed one that were still running when it failed were cancelled,
            # and output stops before the first of them: what was written is 1..k, in order.
            $seen.Count | Should -BeLessOrEqual 2499
            ($seen -join ',') | Should -Be ((1..([Math]::Max(1, $seen.Count)) | Select-Object -First $seen.Count) -join ',')

            $warnings | Should -HaveCount 1
            $warnings[0].Message | Should -Match '^Invoke-Gather stopped because task .* did not complete: (\d+) task\(s\) were cancelled \((\d+) of them never started\): (#\d+(, #\d+){9}), …$'
            $positions = @([regex]::Matches($warnings[0].Message, '#(\d+)') | ForEach-Object { [int] $_.Groups[1].Value })
            $positions | Should -HaveCount 10
            ($positions -join ',') | Should -Be (($positions | Sort-Object) -join ',')
            # The first item not written is the first cancelled one (position = its 0-based index).
            if ($seen.Count -lt 2499) { $positions[0] | Should -Be $seen.Count }
            else { $positions[0] | Should -Be 2500 }
        }

        It 'places every failure at its position with -ReturnExceptions' {
            $out = 1..3000 | Invoke-Gather -ReturnExceptions -ThrottleLimit 3 {
                if ($_ % 1000 -eq 0) { throw "bad $_" }
                $_
            }

            $out | Should -HaveCount 3000
            foreach ($i in 1..3000) {
                if ($i % 1000 -eq 0) {
                    $out[$i - 1] | Should -BeOfType ([System.Management.Automation.ErrorRecord])
                    $out[$i - 1].Exception.Message | Should -Be "bad $i"
                }
                elseif ($out[$i - 1] -ne $i) { $out[$i - 1] | Should -Be $i -Because "item $i" }
            }
        }
    }

    Context 'early stop downstream' {
        It 'cancels every other task once Select-Object -First 1 has its object' {
            $s = New-SyncHashtable
            $s.Started = 0
            $s.Exited = [System.Threading.CountdownEvent]::new(3)

            $first = 1..4 | Invoke-Gather -ThrottleLimit 4 {
                $s = $using:s
                if ($_ -eq 1) {
                    # Item 1 answers once the three others are running.
                    foreach ($i in 1..1500) { if ($s.Started -ge 3) { break }; Start-Sleep -Milliseconds 20 }
                    'first'
                }
                else {
                    [System.Threading.Monitor]::Enter($s.SyncRoot)
                    try { $s.Started++ } finally { [System.Threading.Monitor]::Exit($s.SyncRoot) }
                    try {
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                        $s.Finished = $true
                    }
                    finally { $s.Exited.Signal() }
                }
            } | Select-Object -First 1

            $first | Should -Be 'first'
            $s.Started | Should -Be 3
            $s.Finished | Should -BeNullOrEmpty
            # Every other task had left its loop before the pipeline returned.
            $s.Exited.CurrentCount | Should -Be 0
        }
    }

    Context 'bad input' {
        It 'refuses a null script block' {
            { Invoke-Gather -ScriptBlock $null } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.InvokeGatherCommand'
        }

        It 'refuses a null among the script blocks' {
            { Invoke-Gather -ScriptBlock { 1 }, $null } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.InvokeGatherCommand'
        }

        It 'refuses an empty script block before any task runs' {
            $s = New-SyncHashtable
            { Invoke-Gather -ScriptBlock { $s = $using:s; $s.Ran = $true }, { } } | Should -Throw -ErrorId 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.InvokeGatherCommand'
            $s.Ran | Should -BeNullOrEmpty
        }

        It 'refuses a script block of only white space and comments' {
            { Invoke-Gather {
                    # nothing
                } } | Should -Throw -ErrorId 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.InvokeGatherCommand'
        }

        It 'refuses a negative -Timeout' {
            { Invoke-Gather -Timeout -1 { 1 } } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.InvokeGatherCommand'
        }

        It 'refuses a negative -TaskTimeout' {
            { Invoke-Gather -TaskTimeout -0.5 { 1 } } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.InvokeGatherCommand'
        }

        It 'refuses -ThrottleLimit 0' {
            { Invoke-Gather -ThrottleLimit 0 { 1 } } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.InvokeGatherCommand'
        }

        It 'refuses several script blocks with pipeline input, before any task runs' {
            $s = New-SyncHashtable
            { 1..2 | Invoke-Gather -ScriptBlock { $s = $using:s; $s.Ran = $true }, { 2 } } | Should -Throw -ErrorId 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.InvokeGatherCommand'
            $s.Ran | Should -BeNullOrEmpty
        }

        It 'refuses an empty -Task list' {
            { Invoke-Gather -Task @() } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.InvokeGatherCommand'
        }

        It 'has no -<Name> with -Task: its parameter set does not offer it' -ForEach @(
            @{ Name = 'ImportModule'; Value = 'Microsoft.PowerShell.Utility' }
            @{ Name = 'Function'; Value = 'Get-AgNothing' }
            @{ Name = 'InitializationScript'; Value = { 1 } }
        ) {
            $taskSet = (Get-Command Invoke-Gather).ParameterSets | Where-Object Name -eq 'Task'
            $taskSet.Parameters.Name | Should -Not -Contain $Name
            $scriptBlockSet = (Get-Command Invoke-Gather).ParameterSets | Where-Object Name -eq 'ScriptBlock'
            $scriptBlockSet.Parameters.Name | Should -Contain $Name

            $t = Start-AsyncTask { 1 }
            $with = @{ $Name = $Value }
            { Invoke-Gather -Task $t @with } | Should -Throw -ErrorId 'AmbiguousParameterSet,AsyncGroup.Commands.InvokeGatherCommand'

            # Parameter completion lists only the parameters of the sets still possible (a typed
            # prefix is completed whatever its set: that is PowerShell's own rule).
            $line = 'Invoke-Gather -Task $t -'
            $completions = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText
            $completions | Should -Contain '-ReturnExceptions'
            $completions | Should -Not -Contain "-$Name"
        }

        It 'says, in one error, that the script block is missing when pipeline input comes without one' {
            $all = @(& { try { 1..3 | Invoke-Gather } catch { $_ } } 2>&1)

            $all | Should -HaveCount 1
            $all[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.InvokeGatherCommand'
            $all[0].Exception.Message | Should -Match 'no script block'
            $all[0].Exception.Message | Should -Match 'Invoke-Gather \{'
        }

        It 'says, in one error, that the script block is missing when piped strings come without one' {
            $all = @(& { try { 'a', 'b' | Invoke-Gather } catch { $_ } } 2>&1)

            $all | Should -HaveCount 1
            $all[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.InvokeGatherCommand'
            $all[0].Exception.Message | Should -Match 'no script block'
        }

        It 'refuses a stray object among piped tasks with the same error' {
            $t = Start-AsyncTask { 'from the task' }
            $err = try { $t, 42 | Invoke-Gather } catch { $_ }
            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.InvokeGatherCommand'
        }

        It 'says what it expects when given a string instead of a script block' {
            $err = try { Invoke-Gather 'Get-Date' } catch { $_ }

            $err | Should -Not -BeNullOrEmpty
            $err.Exception.Message | Should -Match 'script block'
            $err.Exception.Message | Should -Match '\{ Get-Date \}'
        }

        It 'says what it expects when -ScriptBlock is given a string' {
            $err = try { Invoke-Gather -ScriptBlock { 1 }, 'Get-Date' } catch { $_ }

            $err | Should -Not -BeNullOrEmpty
            $err.Exception.Message | Should -Match '\{ Get-Date \}'
        }

        It 'says what it expects when -Task is given something else' {
            $err = try { Invoke-Gather -Task 'some-task' } catch { $_ }

            $err | Should -Not -BeNullOrEmpty
            $err.Exception.Message | Should -Match 'AsyncTask'
            $err.Exception.Message | Should -Match 'Get-AsyncTask'
        }

        It 'refuses a task from another runspace' {
            $foreign = New-ForeignTask
            { Invoke-Gather -Task $foreign } | Should -Throw -ErrorId 'AsyncGroup.ForeignTask,AsyncGroup.Commands.InvokeGatherCommand'
        }
    }

    Context 'Ctrl+C' {
        It 'returns promptly when stopped and leaves no task running' {
            $s = New-SyncHashtable
            $s.Exited = [System.Threading.CountdownEvent]::new(4)

            $r = Invoke-StopHarness -StartedCount 4 -Signal $s -Script '
                param($Signal)
                1..4 | Invoke-Gather -ThrottleLimit 4 {
                    $s = $using:Signal
                    try {
                        $s.Started.Signal()
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                        $s.Finished = $true
                    }
                    finally { $s.Exited.Signal() }
                }'

            $r.Completed | Should -BeTrue -Because 'the stopped pipeline must return within 5 s'
            $r.State | Should -Be 'Stopped'
            $s.Exited.CurrentCount | Should -Be 0 -Because 'every task must have ended before the pipeline returned'
            $s.Finished | Should -BeNullOrEmpty
        }
    }
}
