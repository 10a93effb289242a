BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

Describe 'Wait-AsyncGroup' {
    AfterEach {
        Clear-AsyncTask
    }

    It 'waits for all the tasks by default and returns a WaitResult' {
        $gate = [System.Threading.ManualResetEventSlim]::new($false)
        $t1 = Start-AsyncTask { $g = $using:gate; if (-not $g.Wait(30000)) { throw 'never released' }; 1 }
        $t2 = Start-AsyncTask { $g = $using:gate; $g.Set(); 2 }

        $r = Wait-AsyncGroup $t1, $t2

        $r | Should -BeOfType ([AsyncGroup.WaitResult])
        $r.Done | Should -HaveCount 2
        $r.Done[0] | Should -Be $t1
        $r.Done[1] | Should -Be $t2
        $r.Pending | Should -HaveCount 0
        $r.TimedOut | Should -BeFalse
    }

    It 'takes the tasks from the pipeline' {
        $tasks = 1..3 | Start-AsyncTask { $_ }
        $r = $tasks | Wait-AsyncGroup

        $r.Done | Should -HaveCount 3
        ($tasks | Where-Object IsDone) | Should -HaveCount 3
    }

    It 'writes no task output' {
        $t = Start-AsyncTask { 'not mine to emit' }
        $out = @(Wait-AsyncGroup $t)

        $out | Should -HaveCount 1
        $out[0] | Should -BeOfType ([AsyncGroup.WaitResult])
    }

    It 'returns at the first completion with -ReturnWhen FirstCompleted and leaves the others running' {
        $quick = Start-AsyncTask { 'quick' }
        $slow = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }

        $r = Wait-AsyncGroup $quick, $slow -ReturnWhen FirstCompleted

        $r.Done | Should -Be $quick
        $r.Pending | Should -Be $slow
        $r.TimedOut | Should -BeFalse
        # Left alone: still queued for a worker or already running, never cancelled.
        $slow.State | Should -BeIn @('Pending', 'Running')
        $slow.IsDone | Should -BeFalse
    }

    It 'returns at the first failure with -ReturnWhen FirstException, without raising it or cancelling the others' {
        $bad = Start-AsyncTask { throw 'bad' }
        $slow = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }

        $err = $null
        $r = try { Wait-AsyncGroup $bad, $slow -ReturnWhen FirstException -ErrorVariable errs } catch { $err = $_ }

        $err | Should -BeNullOrEmpty
        $errs | Should -BeNullOrEmpty
        $r.Done | Should -Be $bad
        $bad.State | Should -Be 'Failed'
        $r.Pending | Should -Be $slow
        # Left alone: queued for a worker or running, never cancelled.
        $slow.State | Should -BeIn @('Pending', 'Running')
    }

    It 'waits for all with -ReturnWhen FirstException when nothing fails' {
        $first = Start-AsyncTask { 'first' }
        # The second task cannot finish before the first one is done.
        $second = Start-AsyncTask {
            $f = $using:first
            foreach ($i in 1..1500) { if ($f.IsDone) { break }; Start-Sleep -Milliseconds 20 }
            Start-Sleep -Milliseconds 200
            'second'
        }

        $r = Wait-AsyncGroup $first, $second -ReturnWhen FirstException

        $r.Done | Should -HaveCount 2
        $r.Pending | Should -HaveCount 0
        $second.State | Should -Be 'Completed'
    }

    It 'returns TimedOut when -Timeout expires, without cancelling anything' {
        $slow = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }

        $err = $null
        $r = try { Wait-AsyncGroup $slow -Timeout 0.3 } catch { $err = $_ }

        $err | Should -BeNullOrEmpty
        $r.TimedOut | Should -BeTrue
        $r.Pending | Should -Be $slow
        $r.Done | Should -HaveCount 0
        # Left alone: queued for a worker or running, never cancelled.
        $slow.State | Should -BeIn @('Pending', 'Running')
    }

    It 'returns at once with -Timeout 0' {
        $slow = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
        $r = Wait-AsyncGroup $slow -Timeout 0

        $r.TimedOut | Should -BeTrue
        $slow.State | Should -BeIn @('Pending', 'Running')
    }

    It 'shows Done, Pending and TimedOut in its default table view' {
        $t = Start-AsyncTask { 1 } -Name 'viewed-task'
        $text = Wait-AsyncGroup $t | Format-Table | Out-String

        $text | Should -Match '\bDone\b'
        $text | Should -Match '\bPending\b'
        $text | Should -Match '\bTimedOut\b'
        $text | Should -Match 'viewed-task'
    }

    Context 'bad input' {
        It 'refuses an unknown -ReturnWhen' {
            $t = Start-AsyncTask { 1 }
            { Wait-AsyncGroup $t -ReturnWhen Sometimes } | Should -Throw -ErrorId 'CannotConvertArgumentNoMessage,AsyncGroup.Commands.WaitAsyncGroupCommand'
        }

        It 'refuses a negative -Timeout' {
            $t = Start-AsyncTask { 1 }
            { Wait-AsyncGroup $t -Timeout -1 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.WaitAsyncGroupCommand'
        }

        It 'refuses an empty -Task list' {
            { Wait-AsyncGroup -Task @() } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.WaitAsyncGroupCommand'
        }

        It 'refuses an empty pipeline' {
            { @() | Wait-AsyncGroup } | Should -Throw -ErrorId 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.WaitAsyncGroupCommand'
        }

        It 'refuses a task from another runspace' {
            $foreign = New-ForeignTask
            { Wait-AsyncGroup $foreign } | Should -Throw -ErrorId 'AsyncGroup.ForeignTask,AsyncGroup.Commands.WaitAsyncGroupCommand'
        }
    }

    Context 'Ctrl+C' {
        It 'returns promptly when stopped and does not cancel the tasks it waited for' {
            $s = New-SyncHashtable
            $r = Invoke-StopHarness -Signal $s -Script '
                param($Signal)
                $Signal.Task = Start-AsyncTask { $s = $using:Signal; $s.Started.Signal(); foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
                Wait-AsyncGroup $Signal.Task'
            try {
                $r.Completed | Should -BeTrue -Because 'the stopped pipeline must return within 5 s'
                $r.State | Should -Be 'Stopped'
                $s.Task.State | Should -Be 'Running'
            }
            finally {
                $null = $s.Task.Cancel()
            }
        }
    }
}
