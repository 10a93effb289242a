BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

Describe 'Receive-AsyncTask' {
    AfterEach {
        Clear-AsyncTask
    }

    Context 'output' {
        It 'emits the output of a finished task' {
            $t = Start-AsyncTask { 'a'; 'b' }
            $null = Wait-AsyncGroup $t

            Receive-AsyncTask $t | Should -Be @('a', 'b')
        }

        It 'takes the tasks from the pipeline' {
            $t = Start-AsyncTask { 'piped' }
            $t | Receive-AsyncTask -Wait | Should -Be 'piped'
        }

        It 'can receive a finished task again' {
            $t = Start-AsyncTask { 'again' }
            $null = Wait-AsyncGroup $t

            Receive-AsyncTask $t | Should -Be 'again'
            Receive-AsyncTask $t | Should -Be 'again'
        }

        It 'waits with -Wait for an unfinished task' {
            $gate = [System.Threading.ManualResetEventSlim]::new($false)
            $t = Start-AsyncTask { $g = $using:gate; if (-not $g.Wait(30000)) { throw 'never released' }; 'late' }
            $t.IsDone | Should -BeFalse
            $gate.Set()

            Receive-AsyncTask $t -Wait | Should -Be 'late'
        }

        It 'emits with -Wait in input order although the tasks finish in reverse order' {
            $gate = [System.Threading.ManualResetEventSlim]::new($false)
            $t1 = Start-AsyncTask { $g = $using:gate; if (-not $g.Wait(30000)) { throw 'never released' }; 'one' }
            $t2 = Start-AsyncTask { $g = $using:gate; $g.Set(); 'two' }

            Receive-AsyncTask $t1, $t2 -Wait | Should -Be @('one', 'two')
        }

        It 'emits with -AsCompleted in completion order' {
            $gates = @(0..3 | ForEach-Object { [System.Threading.ManualResetEventSlim]::new($false) })
            # Task 3 finishes first; each object that reaches the pipeline releases the task before it.
            $tasks = 1..3 | Start-AsyncTask {
                $g = $using:gates
                if ($_ -lt 3 -and -not $g[$_].Wait(30000)) { throw "task $_ was never released" }
                $_
            }
            $seen = [System.Collections.Generic.List[object]]::new()

            $tasks | Receive-AsyncTask -AsCompleted | ForEach-Object { $seen.Add($_); $gates[$_ - 1].Set() }

            $seen | Should -Be @(3, 2, 1)
        }

        It 'delivers the stream records a task wrote while nobody was listening' {
            $t = Start-AsyncTask { Write-Warning 'buffered warning'; Write-Information 'buffered info'; 'out' }
            $null = Wait-AsyncGroup $t

            $out = Receive-AsyncTask $t -WarningVariable warnings -InformationVariable infos 3>$null 6>$null

            $out | Should -Be 'out'
            $warnings.Message | Should -Be 'buffered warning'
            $infos.MessageData | Should -Be 'buffered info'
        }

        It 'delivers the stream records of a task it waits for while the task runs' {
            $gate = [System.Threading.ManualResetEventSlim]::new($false)
            $t = Start-AsyncTask {
                Write-Warning 'live'
                $g = $using:gate
                if (-not $g.Wait(30000)) { throw 'the warning was not delivered while the task ran' }
                'out'
            }
            $seen = [System.Collections.Generic.List[object]]::new()

            Receive-AsyncTask $t -Wait 3>&1 | ForEach-Object {
                $seen.Add($_)
                if ($_ -is [System.Management.Automation.WarningRecord]) { $gate.Set() }
            }

            $seen | Should -HaveCount 2
            $seen[0].Message | Should -Be 'live'
            $seen[1] | Should -Be 'out'
        }
    }

    Context 'errors' {
        It 're-raises a failed task''s error as a non-terminating AsyncGroup.TaskFailed error' {
            $t = Start-AsyncTask { throw 'task boom' }
            $null = Wait-AsyncGroup $t

            $out = Receive-AsyncTask $t -ErrorVariable errs -ErrorAction SilentlyContinue

            $out | Should -BeNullOrEmpty
            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskFailed,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
            $errs[0].Exception.Message | Should -Be 'task boom'
            $errs[0].TargetObject | Should -Be $t
        }

        It 'goes on to the next task after a failed one' {
            $bad = Start-AsyncTask { throw 'bad' }
            $good = Start-AsyncTask { 'good' }

            $out = Receive-AsyncTask $bad, $good -Wait -ErrorVariable errs -ErrorAction SilentlyContinue

            $out | Should -Be 'good'
            $errs | Should -HaveCount 1
        }

        It 'throws with -ErrorAction Stop' {
            $t = Start-AsyncTask { throw 'task boom' }
            $null = Wait-AsyncGroup $t

            { Receive-AsyncTask $t -ErrorAction Stop } | Should -Throw -ErrorId 'AsyncGroup.TaskFailed,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
        }

        It 'reports a cancelled task with AsyncGroup.TaskCancelled' {
            $t = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
            $t | Stop-AsyncTask
            $null = Wait-AsyncGroup $t -Timeout 30

            $null = Receive-AsyncTask $t -ErrorVariable errs -ErrorAction SilentlyContinue

            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskCancelled,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
            $errs[0].CategoryInfo.Category | Should -Be 'OperationStopped'
        }

        It 'writes AsyncGroup.TaskNotDone for a running task without -Wait' {
            $t = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }

            $out = Receive-AsyncTask $t -ErrorVariable errs -ErrorAction SilentlyContinue

            $out | Should -BeNullOrEmpty
            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskNotDone,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
            $t.IsDone | Should -BeFalse
        }

        It 'throws AsyncGroup.Timeout when -Wait -Timeout expires, and leaves the task running' {
            $t = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }

            $err = try { Receive-AsyncTask $t -Wait -Timeout 0.3 } catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
            $err.Exception | Should -BeOfType ([System.TimeoutException])
            # Left alone: queued for a worker or running, never cancelled.
            $t.State | Should -BeIn @('Pending', 'Running')
        }

        It 'throws AsyncGroup.Timeout when -AsCompleted -Timeout expires, after the finished tasks'' output' {
            $quick = Start-AsyncTask { 'quick' }
            $slow = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
            $null = Wait-AsyncGroup $quick
            $seen = [System.Collections.Generic.List[object]]::new()

            $err = try { Receive-AsyncTask $quick, $slow -AsCompleted -Timeout 0.3 | ForEach-Object { $seen.Add($_) } } catch { $_ }

            $seen | Should -Be 'quick'
            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
            # Left alone: queued for a worker or running, never cancelled.
            $slow.State | Should -BeIn @('Pending', 'Running')
        }
    }

    Context '-Name and -Id' {
        It 'receives the tasks whose names match -Name (wildcards allowed)' {
            # Held: the session lists a finished task only while someone holds it.
            $a = Start-AsyncTask -Name 'ag-recv-a' { 'A' }
            $b = Start-AsyncTask -Name 'ag-recv-b' { 'B' }

            @(Receive-AsyncTask -Name 'ag-recv-*' -Wait | Sort-Object) | Should -Be @('A', 'B')
            Receive-AsyncTask -Name 'ag-recv-b' -Wait | Should -Be 'B'
        }

        It 'receives the tasks given by -Id' {
            $a = Start-AsyncTask { 'A' }
            $b = Start-AsyncTask { 'B' }

            Receive-AsyncTask -Id $b.Id, $a.Id -Wait | Should -Be @('B', 'A')
        }

        It 'takes -Id from the Id property of piped objects' {
            $a = Start-AsyncTask { 'A' }
            [pscustomobject]@{ Id = $a.Id } | Receive-AsyncTask -Wait | Should -Be 'A'
        }

        It 'writes AsyncGroup.TaskNotFound for a name or id that matches no task, and nothing else' {
            $out = Receive-AsyncTask -Name 'ag-no-such-task' -Wait -ErrorVariable errs -ErrorAction SilentlyContinue
            $out | Should -BeNullOrEmpty
            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskNotFound,AsyncGroup.Commands.ReceiveAsyncTaskCommand'

            $out = Receive-AsyncTask -Id 987654321 -Wait -ErrorVariable errs -ErrorAction SilentlyContinue
            $out | Should -BeNullOrEmpty
            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskNotFound,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
        }

        It 'completes -Name and -Id from the session''s tasks' {
            $t = Start-AsyncTask -Name 'ag-recv-completion' { 1 }

            $line = 'Receive-AsyncTask -Name ag-recv-compl'
            (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain 'ag-recv-completion'
            $line = "Receive-AsyncTask -Id $($t.Id)"
            (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain "$($t.Id)"
        }
    }

    Context 'bad input' {
        It 'refuses an empty -Task list' {
            { Receive-AsyncTask -Task @() } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
        }

        It 'refuses a null task' {
            { Receive-AsyncTask -Task $null } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
        }

        It 'refuses a negative -Timeout' {
            $t = Start-AsyncTask { 1 }
            { Receive-AsyncTask $t -Wait -Timeout -1 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
        }

        It 'says what it expects when given a name, and points to -Name and Get-AsyncTask' {
            $err = try { Receive-AsyncTask foo } catch { $_ }

            $err | Should -Not -BeNullOrEmpty
            $err.Exception.Message | Should -Match 'AsyncTask'
            $err.Exception.Message | Should -Match '-Name foo'
            $err.Exception.Message | Should -Match 'Get-AsyncTask'
        }

        It 'refuses a task from another runspace' {
            $foreign = New-ForeignTask
            { Receive-AsyncTask $foreign } | Should -Throw -ErrorId 'AsyncGroup.ForeignTask,AsyncGroup.Commands.ReceiveAsyncTaskCommand'
        }
    }
}
