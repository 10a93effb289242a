BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

Describe 'Start-AsyncTask' {
    AfterEach {
        Clear-AsyncTask
    }

    Context 'the task it returns' {
        It 'returns an AsyncGroup.AsyncTask with an Id, a default name Task-N (N = Id) and a state' {
            $t = Start-AsyncTask { 1 }

            $t | Should -BeOfType ([AsyncGroup.AsyncTask])
            $t.Id | Should -BeGreaterThan 0
            $t.Name | Should -Be "Task-$($t.Id)"
            $t.State | Should -BeIn @('Pending', 'Running', 'Completed')
        }

        It 'gives each task a distinct Id' {
            $a = Start-AsyncTask { 1 }
            $b = Start-AsyncTask { 1 }
            $a.Id | Should -Not -Be $b.Id
        }

        It 'names the task with -Name' {
            $t = Start-AsyncTask { 1 } -Name 'download'
            $t.Name | Should -Be 'download'
        }

        It 'keeps what the script block wrote to the output stream in Output once Completed' {
            $t = Start-AsyncTask { 'a'; 'b' }
            $null = Wait-AsyncGroup $t

            $t.State | Should -Be 'Completed'
            $t.IsDone | Should -BeTrue
            $t.Output | Should -Be @('a', 'b')
        }

        It 'records StartTime, EndTime and Duration once done' {
            $t = Start-AsyncTask { 1 }
            $null = Wait-AsyncGroup $t

            $t.StartTime | Should -BeOfType ([datetime])
            $t.EndTime | Should -BeOfType ([datetime])
            $t.EndTime | Should -Not -BeLessThan $t.StartTime
            $t.Duration | Should -BeOfType ([timespan])
        }

        It 'is Running while its script block runs' {
            $s = New-SyncHashtable
            $t = Start-AsyncTask { $s = $using:s; $s.Running = $true; foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
            Wait-Until { $s.Running } -Because 'the task to start'

            $t.State | Should -Be 'Running'
            $t.IsDone | Should -BeFalse
        }

        It 'fails with its terminating error kept in Error, with the script stack trace' {
            $t = Start-AsyncTask { throw 'task boom' }
            $null = Wait-AsyncGroup $t

            $t.State | Should -Be 'Failed'
            $t.Error | Should -BeOfType ([System.Management.Automation.ErrorRecord])
            $t.Error.Exception.Message | Should -Be 'task boom'
            $t.Error.ScriptStackTrace | Should -Not -BeNullOrEmpty
        }

        It 'keeps non-terminating errors in Errors without failing the task' {
            $t = Start-AsyncTask { Write-Error 'soft'; 'still here' }
            $null = Wait-AsyncGroup $t

            $t.State | Should -Be 'Completed'
            $t.Output | Should -Be @('still here')
            $t.Errors | Should -HaveCount 1
            $t.Errors[0].Exception.Message | Should -Be 'soft'
        }

        It 'can be cancelled with Cancel(), which returns $true, and ends Cancelled' {
            $s = New-SyncHashtable
            $t = Start-AsyncTask { $s = $using:s; $s.Running = $true; foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }; $s.Finished = $true }
            Wait-Until { $s.Running } -Because 'the task to start'

            $t.Cancel() | Should -BeTrue
            $null = Wait-AsyncGroup $t -Timeout 30

            $t.State | Should -Be 'Cancelled'
            $s.Finished | Should -BeNullOrEmpty
        }

        It 'returns $false from Cancel() when the task is already done' {
            $t = Start-AsyncTask { 1 }
            $null = Wait-AsyncGroup $t

            $t.Cancel() | Should -BeFalse
            $t.State | Should -Be 'Completed'
        }

        It 'raises its Completed event once it is done, usable with Register-ObjectEvent' {
            $gate = [System.Threading.ManualResetEventSlim]::new($false)
            $t = Start-AsyncTask { $g = $using:gate; if (-not $g.Wait(30000)) { throw 'never released' }; 'done' }
            $sourceId = "AsyncGroupTest-Completed-$($t.Id)"
            $null = Register-ObjectEvent -InputObject $t -EventName Completed -SourceIdentifier $sourceId
            try {
                $gate.Set()
                $event = Wait-Event -SourceIdentifier $sourceId -Timeout 30

                $event | Should -Not -BeNullOrEmpty
                $event.Sender | Should -Be $t
                $t.State | Should -Be 'Completed'
            }
            finally {
                Unregister-Event -SourceIdentifier $sourceId -ErrorAction SilentlyContinue
                Remove-Event -SourceIdentifier $sourceId -ErrorAction SilentlyContinue
            }
        }

        It 'shows Id, Name and State in its default table view' {
            $t = Start-AsyncTask { 1 } -Name 'formatted-task'
            $null = Wait-AsyncGroup $t

            $text = $t | Format-Table | Out-String

            $text | Should -Match '\bId\b'
            $text | Should -Match '\bName\b'
            $text | Should -Match '\bState\b'
            $text | Should -Match 'formatted-task'
            $text | Should -Match 'Completed'
        }
    }

    Context 'input' {
        It 'makes one task per pipeline object, each with $_ bound to its object' {
            $tasks = 1..3 | Start-AsyncTask { $_ * 10 }

            $tasks | Should -HaveCount 3
            ($tasks | ForEach-Object { $_.Id } | Select-Object -Unique) | Should -HaveCount 3
            $tasks | Receive-AsyncTask -Wait | Should -Be @(10, 20, 30)
        }

        It 'binds -InputObject to $_' {
            Start-AsyncTask { $_ + 1 } -InputObject 41 | Receive-AsyncTask -Wait | Should -Be 42
        }

        It 'passes -ArgumentList to $args' {
            Start-AsyncTask { $args[0] + $args[1] } -ArgumentList 40, 2 | Receive-AsyncTask -Wait | Should -Be 42
        }

        It 'passes -ArgumentList to the param block' {
            Start-AsyncTask { param($a, $b) "$a-$b" } -ArgumentList 'x', 'y' | Receive-AsyncTask -Wait | Should -Be 'x-y'
        }

        It 'binds $_ and -ArgumentList together when the script block has a param block' {
            Start-AsyncTask { param($m) $_ * $m } -InputObject 3 -ArgumentList 10 | Receive-AsyncTask -Wait | Should -Be 30
        }
    }

    Context '-Timeout' {
        It 'fails the task with a timeout error when it outlives -Timeout' {
            $t = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } } -Timeout 0.5
            $null = Wait-AsyncGroup $t -Timeout 30

            $t.State | Should -Be 'Failed'
            $t.Error.Exception | Should -BeOfType ([System.TimeoutException])
            $t.Error.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout'
        }

        It 'does not affect a task that finishes in time' {
            $t = Start-AsyncTask { 'quick' } -Timeout 60
            $null = Wait-AsyncGroup $t

            $t.State | Should -Be 'Completed'
            $t.Output | Should -Be @('quick')
        }
    }

    Context '-ThrottleLimit' {
        It 'runs at most -ThrottleLimit of the tasks it starts at once' {
            $c = New-SyncHashtable
            $c.Running = 0; $c.Max = 0; $c.Started = 0

            $tasks = 1..4 | Start-AsyncTask -ThrottleLimit 2 {
                $c = $using:c
                [System.Threading.Monitor]::Enter($c.SyncRoot)
                try { $c.Running++; $c.Started++; if ($c.Running -gt $c.Max) { $c.Max = $c.Running } }
                finally { [System.Threading.Monitor]::Exit($c.SyncRoot) }
                try { foreach ($i in 1..1500) { if ($c.Running -ge 2 -or $c.Started -ge 4) { break }; Start-Sleep -Milliseconds 20 } }
                finally {
                    [System.Threading.Monitor]::Enter($c.SyncRoot)
                    try { $c.Running-- } finally { [System.Threading.Monitor]::Exit($c.SyncRoot) }
                }
            }
            $null = Wait-AsyncGroup $tasks -Timeout 60

            ($tasks | Where-Object State -eq 'Completed') | Should -HaveCount 4
            $c.Max | Should -Be 2
        }

        It 'keeps the tasks beyond the limit Pending' {
            $tasks = 1..2 | Start-AsyncTask -ThrottleLimit 1 { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
            Wait-Until { @($tasks | Where-Object State -eq 'Running').Count -eq 1 } -Because 'one task to hold the only slot'

            $pending = @($tasks | Where-Object State -eq 'Pending')
            $pending | Should -HaveCount 1
            $pending[0].StartTime | Should -BeNullOrEmpty
        }

        It 'starts the tasks beyond the limit in the order they were created' {
            # Repeated, with idle gaps between calls (which never make a correct module fail): a
            # start order left to thread-pool scheduling shows up in some calls only.
            foreach ($call in 1..10) {
                Start-Sleep -Milliseconds 250
                $started = [System.Collections.ArrayList]::Synchronized([System.Collections.ArrayList]::new())
                $tasks = 1..6 | Start-AsyncTask -ThrottleLimit 1 { $l = $using:started; [void]$l.Add($_) }
                $null = Wait-AsyncGroup $tasks -Timeout 60
                "call ${call}: $(@($started) -join ',')" | Should -Be "call ${call}: $(@(1..6) -join ',')"
            }
        }
    }

    Context 'registration' {
        # The seam holds the thread running Start-AsyncTask just after it started the task, until
        # the task's script block has run its first statement: whatever the hook then sees, the
        # running task could see too. So these fail every time, not by chance, if the task is
        # listed or given its Parent only after it was started.
        BeforeAll {
            $script:AfterStart = [AsyncGroup.Commands.StartAsyncTaskCommand].GetProperty('AfterStart', [System.Reflection.BindingFlags]'NonPublic,Static')

            # Sets the seam to wait until the task signals $Probe.Ran, then count how many tasks named
            # $Name Get-AsyncTask lists; the findings land in $Probe.Seen.
            function New-ListedProbe([string] $Name) {
                $ran = [System.Threading.ManualResetEventSlim]::new($false)
                $seen = New-SyncHashtable
                $script:AfterStart.SetValue($null, [Action[AsyncGroup.AsyncTask]] {
                        param($task)
                        $seen.Ran = $ran.Wait(60000)
                        $seen.Listed = @(Get-AsyncTask | Where-Object Name -EQ $Name).Count
                    }.GetNewClosure())
                @{ Ran = $ran; Seen = $seen }
            }
        }

        AfterEach {
            $script:AfterStart.SetValue($null, $null)
        }

        It 'is listed by Get-AsyncTask before its script block can run' {
            $probe = New-ListedProbe 'registration-probe'
            $seen = $probe.Seen

            $t = Start-AsyncTask { param($ran) $ran.Set() } -ArgumentList $probe.Ran -Name 'registration-probe'
            $script:AfterStart.SetValue($null, $null)

            $seen.Ran | Should -BeTrue -Because 'the task ran while Start-AsyncTask was held after starting it'
            $seen.Listed | Should -Be 1 -Because 'a task that can run (and signal others) is already listed'
            $null = Wait-AsyncGroup $t -Timeout 60
            $t.State | Should -Be 'Completed'
        }

        It 'is listed before its script block can run when it joins a Start-TaskGroup' {
            $probe = New-ListedProbe 'group-registration-probe'
            $seen = $probe.Seen
            $ran = $probe.Ran

            Start-TaskGroup {
                $null = Start-AsyncTask { param($ran) $ran.Set() } -ArgumentList $ran -Name 'group-registration-probe'
            }

            $seen.Ran | Should -BeTrue -Because 'the child ran while Start-AsyncTask was held after starting it'
            $seen.Listed | Should -Be 1 -Because 'a group child that can run is already listed'
        }

        It 'has its Parent set and is listed before its script block can run when a task starts it' {
            $parent = Start-AsyncTask -Name 'registration-parent' {
                # The hook is made here, so it runs in this task's runspace, on its thread.
                $ran = [System.Threading.ManualResetEventSlim]::new($false)
                $seen = [hashtable]::Synchronized(@{})
                $hook = [AsyncGroup.Commands.StartAsyncTaskCommand].GetProperty('AfterStart', [System.Reflection.BindingFlags]'NonPublic,Static')
                $hook.SetValue($null, [Action[AsyncGroup.AsyncTask]] {
                        param($task)
                        $seen.Ran = $ran.Wait(60000)
                        $seen.Parent = if ($null -ne $task.Parent) { $task.Parent.Name } else { '(none)' }
                        $seen.Listed = @(Get-AsyncTask | Where-Object Name -EQ 'nested-registration-probe').Count
                    }.GetNewClosure())
                try {
                    $child = Start-AsyncTask { param($ran) $ran.Set() } -ArgumentList $ran -Name 'nested-registration-probe'
                }
                finally {
                    $hook.SetValue($null, $null)
                }

                $null = Wait-AsyncGroup $child -Timeout 60
                [pscustomobject]@{ Ran = $seen.Ran; Parent = $seen.Parent; Listed = $seen.Listed }
            }

            $null = Wait-AsyncGroup $parent -Timeout 120
            $parent.Error | Should -BeNullOrEmpty
            $seen = $parent.Output[0]
            $seen.Ran | Should -BeTrue -Because 'the child ran while Start-AsyncTask was held after starting it'
            $seen.Parent | Should -Be 'registration-parent' -Because 'a child that can run already names the task that started it'
            $seen.Listed | Should -Be 1 -Because 'a child that can run is already listed in its parent''s runspace'
        }

        It 'lists no task that a closed Start-TaskGroup refused' {
            try {
                Start-TaskGroup {
                    try {
                        $null = Start-AsyncTask { throw 'child boom' }
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                    }
                    finally {
                        $null = Start-AsyncTask { 'too late' } -Name 'refused-probe' -ErrorAction SilentlyContinue
                    }
                } 2>$null
            }
            catch {
                $_.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand'
            }

            @(Get-AsyncTask | Where-Object Name -EQ 'refused-probe') | Should -HaveCount 0
        }
    }

    Context 'bad input' {
        It 'says what it expects when given a string instead of a script block' {
            $err = try { Start-AsyncTask 'Get-Date' } catch { $_ }

            $err | Should -Not -BeNullOrEmpty
            $err.Exception.Message | Should -Match '\{ Get-Date \}'
        }

        It 'refuses a null script block' {
            { Start-AsyncTask -ScriptBlock $null } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.StartAsyncTaskCommand'
        }

        It 'refuses an empty script block' {
            { Start-AsyncTask { } } | Should -Throw -ErrorId 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.StartAsyncTaskCommand'
        }

        It 'refuses a negative -Timeout' {
            { Start-AsyncTask { 1 } -Timeout -1 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.StartAsyncTaskCommand'
        }

        It 'refuses -ThrottleLimit 0' {
            { Start-AsyncTask { 1 } -ThrottleLimit 0 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.StartAsyncTaskCommand'
        }

        It 'refuses an empty -Name' {
            { Start-AsyncTask { 1 } -Name '' } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.StartAsyncTaskCommand'
        }

        It 'refuses a script block passed with $using: before starting any task' {
            $sb = { 'inner' }
            $s = New-SyncHashtable

            { 1..2 | Start-AsyncTask { $s = $using:s; $s.Ran = $true; & $using:sb } } | Should -Throw -ErrorId 'AsyncGroup.UsingScriptBlock,AsyncGroup.Commands.StartAsyncTaskCommand'

            $s.Ran | Should -BeNullOrEmpty
        }
    }
}
