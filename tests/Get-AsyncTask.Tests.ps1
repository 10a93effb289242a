BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

Describe 'Get-AsyncTask' {
    AfterEach {
        Clear-AsyncTask
    }

    It 'lists the session''s tasks' {
        $a = Start-AsyncTask { 1 }
        $b = Start-AsyncTask { 2 }

        $ids = @(Get-AsyncTask | ForEach-Object { $_.Id })

        $ids | Should -Contain $a.Id
        $ids | Should -Contain $b.Id
    }

    It 'lists the tasks oldest first' {
        $a = Start-AsyncTask { 1 } -Name 'order-probe-1'
        $b = Start-AsyncTask { 2 } -Name 'order-probe-2'

        (Get-AsyncTask -Name 'order-probe-*').Name | Should -Be @('order-probe-1', 'order-probe-2')
    }

    It 'gets tasks by -Id' {
        $a = Start-AsyncTask { 1 }
        $b = Start-AsyncTask { 2 }

        $got = Get-AsyncTask -Id $b.Id

        $got | Should -Be $b
    }

    It 'gets tasks by -Id from the pipeline by property name' {
        $a = Start-AsyncTask { 1 }
        [pscustomobject]@{ Id = $a.Id } | Get-AsyncTask | Should -Be $a
    }

    It 'gets tasks by -Name, with wildcards' {
        $a = Start-AsyncTask { 1 } -Name 'get-probe-alpha'
        $b = Start-AsyncTask { 2 } -Name 'get-probe-beta'

        Get-AsyncTask -Name 'get-probe-alpha' | Should -Be $a
        (Get-AsyncTask -Name 'get-probe-*') | Should -HaveCount 2
    }

    It 'gets tasks by name given by position' {
        $a = Start-AsyncTask { 1 } -Name 'positional-probe'
        Get-AsyncTask 'positional-probe' | Should -Be $a
    }

    It 'filters by -State' {
        $done = Start-AsyncTask { 1 } -Name 'state-probe-done'
        $null = Wait-AsyncGroup $done
        $running = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } } -Name 'state-probe-running'
        Wait-Until { $running.State -eq 'Running' } -Because 'the task to start'

        Get-AsyncTask -Name 'state-probe-*' -State Running | Should -Be $running
        Get-AsyncTask -Name 'state-probe-*' -State Completed | Should -Be $done
        (Get-AsyncTask -Name 'state-probe-*' -State Running, Completed) | Should -HaveCount 2
    }

    It 'does not keep a finished task alive once the caller drops it' {
        # Held here until the first check: the session holds a finished task only weakly, so a
        # collection between the call and the check (any allocation may trigger one) dropped it.
        $holder = @{}
        & {
            $t = Start-AsyncTask { 1 } -Name 'gc-probe-task'
            $null = Wait-AsyncGroup $t
            $holder.Task = $t
        }
        Get-AsyncTask -Name 'gc-probe-task' -ErrorAction SilentlyContinue | Should -Not -BeNullOrEmpty -Because 'a finished task is listed until it is collected'
        $holder.Clear()

        [GC]::Collect()
        [GC]::WaitForPendingFinalizers()
        [GC]::Collect()

        Get-AsyncTask -Name 'gc-probe-*' | Should -BeNullOrEmpty
    }

    It 'keeps an unfinished task listed even when the caller dropped it' {
        & { $null = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } } -Name 'kept-probe-task' }

        [GC]::Collect()
        [GC]::WaitForPendingFinalizers()
        [GC]::Collect()

        Get-AsyncTask -Name 'kept-probe-task' | Should -Not -BeNullOrEmpty
    }

    It 'does not list the tasks of another runspace' {
        $null = New-ForeignTask
        Get-AsyncTask -Name 'foreign-task*' | Should -BeNullOrEmpty
    }

    Context 'bad input' {
        It 'writes AsyncGroup.TaskNotFound for an unknown -Id' {
            Get-AsyncTask -Id ([long]::MaxValue) -ErrorVariable errs -ErrorAction SilentlyContinue

            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskNotFound,AsyncGroup.Commands.GetAsyncTaskCommand'
            $errs[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        }

        It 'writes AsyncGroup.TaskNotFound for an unknown -Name without wildcards' {
            Get-AsyncTask -Name 'no-such-task-anywhere' -ErrorVariable errs -ErrorAction SilentlyContinue

            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskNotFound,AsyncGroup.Commands.GetAsyncTaskCommand'
        }

        It 'refuses an unknown -State' {
            { Get-AsyncTask -State Sleeping } | Should -Throw -ErrorId 'CannotConvertArgumentNoMessage,AsyncGroup.Commands.GetAsyncTaskCommand'
        }
    }
}
