BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')

    # A task that runs until cancelled (or about a minute) and records whether it got to its end.
    function Start-LongTask {
        param([string] $Name, [hashtable] $Flags)
        if ($null -eq $Flags) { $Flags = New-SyncHashtable }
        $params = @{ ScriptBlock = { $f = $using:Flags; $f.Running = $true; foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }; $f.Finished = $true } }
        if ($Name) { $params.Name = $Name }
        $t = Start-AsyncTask @params
        Wait-Until { $Flags.Running } -Because 'the task to start'
        $t
    }
}

Describe 'Stop-AsyncTask' {
    AfterEach {
        Clear-AsyncTask
    }

    It 'cancels a running task given with -Task' {
        $flags = New-SyncHashtable
        $t = Start-LongTask -Flags $flags

        Stop-AsyncTask -Task $t
        $null = Wait-AsyncGroup $t -Timeout 30

        $t.State | Should -Be 'Cancelled'
        $flags.Finished | Should -BeNullOrEmpty
    }

    It 'cancels the tasks sent down the pipeline' {
        $tasks = @((Start-LongTask), (Start-LongTask))

        $tasks | Stop-AsyncTask
        $null = Wait-AsyncGroup $tasks -Timeout 30

        ($tasks | Where-Object State -eq 'Cancelled') | Should -HaveCount 2
    }

    It 'cancels a task by -Id' {
        $t = Start-LongTask
        Stop-AsyncTask -Id $t.Id
        $null = Wait-AsyncGroup $t -Timeout 30

        $t.State | Should -Be 'Cancelled'
    }

    It 'cancels tasks by -Name, with wildcards' {
        $a = Start-LongTask -Name 'stop-me-a'
        $b = Start-LongTask -Name 'stop-me-b'
        $keep = Start-LongTask -Name 'keep-me'

        Stop-AsyncTask -Name 'stop-me-*'
        $null = Wait-AsyncGroup $a, $b -Timeout 30

        $a.State | Should -Be 'Cancelled'
        $b.State | Should -Be 'Cancelled'
        $keep.State | Should -Be 'Running'
    }

    It 'outputs nothing without -PassThru' {
        $t = Start-LongTask
        Stop-AsyncTask $t | Should -BeNullOrEmpty
    }

    It 'outputs each task with -PassThru' {
        $t = Start-LongTask
        $out = Stop-AsyncTask $t -PassThru

        $out | Should -Be $t
    }

    It 'cancels a Pending task at once: it never starts' {
        $tasks = 1..2 | Start-AsyncTask -ThrottleLimit 1 { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
        Wait-Until { @($tasks | Where-Object State -eq 'Running').Count -eq 1 } -Because 'one task to hold the only slot'
        $pending = $tasks | Where-Object State -eq 'Pending'
        $pending | Should -HaveCount 1

        Stop-AsyncTask $pending

        $pending.State | Should -Be 'Cancelled'
        $pending.StartTime | Should -BeNullOrEmpty
    }

    It 'does not treat stopping a finished task as an error' {
        $t = Start-AsyncTask { 'done' }
        $null = Wait-AsyncGroup $t

        { Stop-AsyncTask $t -ErrorAction Stop } | Should -Not -Throw
        $t.State | Should -Be 'Completed'
        $t.Output | Should -Be 'done'
    }

    It 'does nothing with -WhatIf' {
        $t = Start-LongTask
        Stop-AsyncTask $t -WhatIf

        $t.State | Should -Be 'Running'
    }

    Context 'bad input' {
        It 'writes AsyncGroup.TaskNotFound for an unknown -Id' {
            Stop-AsyncTask -Id ([long]::MaxValue) -ErrorVariable errs -ErrorAction SilentlyContinue

            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskNotFound,AsyncGroup.Commands.StopAsyncTaskCommand'
        }

        It 'writes AsyncGroup.TaskNotFound for an unknown -Name without wildcards' {
            Stop-AsyncTask -Name 'no-such-task-anywhere' -ErrorVariable errs -ErrorAction SilentlyContinue

            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskNotFound,AsyncGroup.Commands.StopAsyncTaskCommand'
        }

        It 'writes nothing for a -Name pattern that matches no task' {
            Stop-AsyncTask -Name 'no-such-task-*' -ErrorVariable errs
            $errs | Should -BeNullOrEmpty
        }

        It 'refuses a null task' {
            { Stop-AsyncTask -Task $null } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.StopAsyncTaskCommand'
        }

        It 'refuses a task from another runspace' {
            $foreign = New-ForeignTask
            { Stop-AsyncTask $foreign } | Should -Throw -ErrorId 'AsyncGroup.ForeignTask,AsyncGroup.Commands.StopAsyncTaskCommand'
        }
    }
}
