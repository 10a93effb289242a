BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

Describe 'Wait-AsyncTask' {
    AfterEach {
        Clear-AsyncTask
    }

    It 'emits the output of the task once it is done' {
        $gate = [System.Threading.ManualResetEventSlim]::new($false)
        $t = Start-AsyncTask { $g = $using:gate; if (-not $g.Wait(30000)) { throw 'never released' }; 'result' }
        $gate.Set()

        Wait-AsyncTask $t | Should -Be 'result'
        $t.State | Should -Be 'Completed'
    }

    It 'emits the outputs of several tasks in input order' {
        $gate = [System.Threading.ManualResetEventSlim]::new($false)
        $t1 = Start-AsyncTask { $g = $using:gate; if (-not $g.Wait(30000)) { throw 'never released' }; 'one' }
        $t2 = Start-AsyncTask { $g = $using:gate; $g.Set(); 'two' }

        Wait-AsyncTask $t1, $t2 | Should -Be @('one', 'two')
    }

    It 'takes the tasks from the pipeline' {
        1..2 | Start-AsyncTask { $_ * 5 } | Wait-AsyncTask | Should -Be @(5, 10)
    }

    It 'emits the output of a task that finishes within -Timeout' {
        $t = Start-AsyncTask { 'in time' }
        Wait-AsyncTask $t -Timeout 60 | Should -Be 'in time'
    }

    It 'delivers the task''s stream records while it waits' {
        $gate = [System.Threading.ManualResetEventSlim]::new($false)
        $t = Start-AsyncTask {
            Write-Warning 'live'
            $g = $using:gate
            if (-not $g.Wait(30000)) { throw 'the warning was not delivered while the task ran' }
            'out'
        }
        $seen = [System.Collections.Generic.List[object]]::new()

        Wait-AsyncTask $t 3>&1 | ForEach-Object {
            $seen.Add($_)
            if ($_ -is [System.Management.Automation.WarningRecord]) { $gate.Set() }
        }

        $seen | Should -HaveCount 2
        $seen[0].Message | Should -Be 'live'
        $seen[1] | Should -Be 'out'
    }

    Context '-Timeout expiry' {
        It 'throws AsyncGroup.Timeout with a TimeoutException' {
            $t = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }

            $err = try { Wait-AsyncTask $t -Timeout 0.3 } catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.WaitAsyncTaskCommand'
            $err.Exception | Should -BeOfType ([System.TimeoutException])
            $err.CategoryInfo.Category | Should -Be 'OperationTimeout'
        }

        It 'cancels the task and waits for it to end before throwing' {
            $s = New-SyncHashtable
            $t = Start-AsyncTask {
                $s = $using:s
                try { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }; $s.Finished = $true }
                finally { $s.Exited = $true }
            }

            { Wait-AsyncTask $t -Timeout 0.3 } | Should -Throw -ErrorId 'AsyncGroup.Timeout,AsyncGroup.Commands.WaitAsyncTaskCommand'

            $t.State | Should -Be 'Cancelled'
            $s.Exited | Should -BeTrue
            $s.Finished | Should -BeNullOrEmpty
        }

        It 'emits the output of the tasks that finished in time before throwing' {
            $quick = Start-AsyncTask { 'quick' }
            $slow = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
            $null = Wait-AsyncGroup $quick
            $seen = [System.Collections.Generic.List[object]]::new()

            $err = try { Wait-AsyncTask $quick, $slow -Timeout 0.5 | ForEach-Object { $seen.Add($_) } } catch { $_ }

            $seen | Should -Be 'quick'
            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.WaitAsyncTaskCommand'
            $slow.State | Should -Be 'Cancelled'
        }
    }

    Context 'errors' {
        It 'writes a failed task''s error as a non-terminating AsyncGroup.TaskFailed error' {
            $bad = Start-AsyncTask { throw 'bad task' }
            $good = Start-AsyncTask { 'good' }

            $out = Wait-AsyncTask $bad, $good -ErrorVariable errs -ErrorAction SilentlyContinue

            $out | Should -Be 'good'
            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskFailed,AsyncGroup.Commands.WaitAsyncTaskCommand'
            $errs[0].Exception.Message | Should -Be 'bad task'
        }
    }

    Context '-Name and -Id' {
        It 'waits for the tasks whose names match -Name (wildcards allowed)' {
            # Held: the session lists a finished task only while someone holds it.
            $a = Start-AsyncTask -Name 'ag-wait-a' { 'A' }
            $b = Start-AsyncTask -Name 'ag-wait-b' { 'B' }

            @(Wait-AsyncTask -Name 'ag-wait-*' | Sort-Object) | Should -Be @('A', 'B')
        }

        It 'waits for the tasks given by -Id, and cancels them on timeout' {
            $a = Start-AsyncTask { 'A' }
            $slow = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }

            Wait-AsyncTask -Id $a.Id | Should -Be 'A'
            { Wait-AsyncTask -Id $slow.Id -Timeout 0.2 } | Should -Throw -ErrorId 'AsyncGroup.Timeout,AsyncGroup.Commands.WaitAsyncTaskCommand'
            $slow.State | Should -Be 'Cancelled'
        }

        It 'writes AsyncGroup.TaskNotFound for a name that matches no task, and nothing else' {
            $out = Wait-AsyncTask -Name 'ag-no-such-task' -ErrorVariable errs -ErrorAction SilentlyContinue
            $out | Should -BeNullOrEmpty
            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskNotFound,AsyncGroup.Commands.WaitAsyncTaskCommand'
        }

        It 'completes -Name from the session''s tasks' {
            $t = Start-AsyncTask -Name 'ag-wait-completion' { 1 }

            $line = 'Wait-AsyncTask -Name ag-wait-compl'
            (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain 'ag-wait-completion'
        }
    }

    Context 'bad input' {
        It 'refuses a negative -Timeout' {
            $t = Start-AsyncTask { 1 }
            { Wait-AsyncTask $t -Timeout -1 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.WaitAsyncTaskCommand'
        }

        It 'refuses an empty -Task list' {
            { Wait-AsyncTask -Task @() } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.WaitAsyncTaskCommand'
        }

        It 'refuses an empty pipeline' {
            { @() | Wait-AsyncTask } | Should -Throw -ErrorId 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.WaitAsyncTaskCommand'
        }

        It 'says what it expects when given a name, and points to -Name and Get-AsyncTask' {
            $err = try { Wait-AsyncTask foo } catch { $_ }

            $err | Should -Not -BeNullOrEmpty
            $err.Exception.Message | Should -Match '-Name foo'
            $err.Exception.Message | Should -Match 'Get-AsyncTask'
        }

        It 'refuses a task from another runspace' {
            $foreign = New-ForeignTask
            { Wait-AsyncTask $foreign } | Should -Throw -ErrorId 'AsyncGroup.ForeignTask,AsyncGroup.Commands.WaitAsyncTaskCommand'
        }
    }

    Context 'Ctrl+C' {
        It 'returns promptly when stopped and leaves the waited task not running' {
            $s = New-SyncHashtable
            $r = Invoke-StopHarness -Signal $s -Script '
                param($Signal)
                $Signal.Task = Start-AsyncTask { $s = $using:Signal; $s.Started.Signal(); foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
                Wait-AsyncTask $Signal.Task'
            try {
                $r.Completed | Should -BeTrue -Because 'the stopped pipeline must return within 5 s'
                $r.State | Should -Be 'Stopped'
                # wait_for semantics: cancelling the wait cancels the awaited task.
                $s.Task.State | Should -Be 'Cancelled'
            }
            finally {
                $null = $s.Task.Cancel()
            }
        }
    }
}
