BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
    . (Join-Path $PSScriptRoot 'SshEndpoint.ps1')

    # One throwaway sshd on 127.0.0.1 for the whole file; two sessions to it stand in for two hosts.
    # The remote side runs on this machine, so tasks coordinate with the test through files in
    # $script:gateDir (a task waits for a file in a cancellable loop that gives up after a minute).
    $script:endpoint = Start-SshTestEndpoint
    $script:skipReason = $script:SshSkipReason
    if ($null -eq $script:endpoint) {
        Write-Warning "The remoting tests are skipped: no SSH endpoint could be started ($script:skipReason)."
    }
    else {
        $script:sessions = @(New-SshTestSession $script:endpoint -Count 2)
        $script:sessionPids = @(Get-SshSessionProcessId $script:sessions)
    }
    $script:gateDir = Join-Path ([System.IO.Path]::GetTempPath()) ('ag-gates-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $script:gateDir | Out-Null

    function Skip-WithoutSsh {
        if ($null -eq $script:endpoint) {
            Set-ItResult -Skipped -Because "no SSH endpoint: $script:skipReason"
            return $true
        }
        $false
    }

    function New-Gate {
        Join-Path $script:gateDir ([guid]::NewGuid().ToString('N'))
    }

    function Assert-SessionsFree {
        # The remote pipelines ended: every session is Opened and can run a command at once.
        param($Session = $script:sessions)
        foreach ($s in @($Session)) {
            Wait-Until { $s.Runspace.RunspaceAvailability -eq 'Available' } -TimeoutSeconds 20 -Because "session $($s.Id) to become available"
            $s.State | Should -Be 'Opened'
            Invoke-Command -Session $s -ScriptBlock { 'alive' } | Should -Be 'alive'
        }
    }
}

AfterAll {
    Clear-AsyncTask
    Stop-SshTestEndpoint $script:endpoint
    Remove-Item -LiteralPath $script:gateDir -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Remoting (-Session over SSH)' {
    AfterEach {
        Clear-AsyncTask
    }

    Context 'fan-out' {
        It 'spreads pipeline items over the sessions and returns the outputs in input order, with PSComputerName' {
            if (Skip-WithoutSsh) { return }
            $gate = New-Gate
            # Item 1 finishes last (it waits for item 6), so order is the gather's doing.
            $out = 1..6 | Invoke-Gather -Session $script:sessions {
                $gate = $using:gate
                if ($_ -eq 1) {
                    foreach ($i in 1..3000) { if (Test-Path $gate) { break }; Start-Sleep -Milliseconds 20 }
                }
                if ($_ -eq 6) { New-Item -ItemType File -Path $gate | Out-Null }
                [pscustomobject]@{ N = $_; Pid = $PID }
            }

            @($out | ForEach-Object N) | Should -Be @(1, 2, 3, 4, 5, 6)
            @($out | ForEach-Object PSComputerName | Select-Object -Unique) | Should -Be @('127.0.0.1')
            # Both hosts served items (item 1 held one session while the others ran on the other).
            @($out | ForEach-Object Pid | Sort-Object -Unique) | Should -Be @($script:sessionPids | Sort-Object)
        }

        It 'runs a script block once on every session, in session order, when there is no pipeline input' {
            if (Skip-WithoutSsh) { return }
            $out = Invoke-Gather -Session $script:sessions { $PID }, { "second $PID" }

            $out | Should -Be @($script:sessionPids[0], $script:sessionPids[1], "second $($script:sessionPids[0])", "second $($script:sessionPids[1])")
        }

        It 'runs one task per session at a time and -ThrottleLimit bounds the total' {
            if (Skip-WithoutSsh) { return }
            $log = New-Gate
            $out = 1..6 | Invoke-Gather -Session $script:sessions -ThrottleLimit 1 {
                $log = $using:log
                Add-Content -Path $log -Value "start $_"
                Start-Sleep -Milliseconds 50
                Add-Content -Path $log -Value "end $_"
                $PID
            }

            $lines = @(Get-Content -Path $log)
            # Throttle 1: strictly one after the other, on whichever session was free.
            $lines | Should -Be @(1..6 | ForEach-Object { "start $_"; "end $_" })
            $out.Count | Should -Be 6
        }

        It 'carries $using:, -ArgumentList, $_, -Function and -InitializationScript to the remote side' {
            if (Skip-WithoutSsh) { return }
            $factor = 10
            $list = @(4, 5)
            function Format-Item { param($v) "<$v>" }

            $out = 1..2 | Invoke-Gather -Session $script:sessions -ArgumentList 'arg' -Function Format-Item -InitializationScript { $prefix = 'init' } {
                param($a)
                "$prefix $(Format-Item ($_ * $using:factor)) $a $($using:list[1])"
            }

            $out | Should -Be @('init <10> arg 5', 'init <20> arg 5')
        }

        It 'binds pipeline input to a process block' {
            if (Skip-WithoutSsh) { return }
            $out = 1..3 | Invoke-Gather -Session $script:sessions { begin { $n = 0 } process { $n += $_ } end { "sum $n" } }
            $out | Should -Be @('sum 1', 'sum 2', 'sum 3')
        }

        It 'delivers remote streams with the caller''s preferences and common parameters' {
            if (Skip-WithoutSsh) { return }
            $warnings = $null
            $errs = $null
            $info = $null
            $out = Invoke-Gather -Session $script:sessions[0] -Verbose -WarningVariable warnings -ErrorVariable errs -InformationVariable info {
                Write-Verbose 'remote verbose'
                Write-Warning 'remote warning'
                Write-Error 'remote error'
                Write-Information 'remote info'
                'done'
            } 4>&1 2>$null 3>$null

            @($out | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message) | Should -Be 'remote verbose'
            @($out | Where-Object { $_ -is [string] }) | Should -Be 'done'
            @($warnings | ForEach-Object Message) | Should -Be 'remote warning'
            @($errs | ForEach-Object { $_.Exception.Message }) | Should -Be 'remote error'
            @($info | ForEach-Object { "$($_.MessageData)" }) | Should -Be 'remote info'
        }

        It 'does not also print remote records on the caller''s console (they arrive as stream data only)' {
            if (Skip-WithoutSsh) { return }
            # A child process, so that its console output can be read: records silenced by the
            # caller (3>$null 4>$null) must not show up through the session's host either.
            $e = $script:endpoint
            $r = Invoke-ChildPowerShell -TimeoutSeconds 120 -Command @"
Import-Module `$env:ASYNCGROUP_MANIFEST
`$ProgressPreference = 'SilentlyContinue'
$(Get-SshTestSessionScript $e -Variable s)
Invoke-Gather -Session `$s { Write-Warning 'remote-warning'; Write-Verbose 'remote-verbose' -Verbose; Write-Host 'remote-host'; 'out' } 3>`$null 4>`$null 6>`$null
Remove-PSSession `$s
"@

            $r.TimedOut | Should -BeFalse
            $r.ErrorText | Should -BeNullOrEmpty
            $r.Output | Should -Be @('out')
        }

        It 'exit ends a remote task with its exit code and leaves the session usable' {
            if (Skip-WithoutSsh) { return }
            $t = Start-AsyncTask -Session $script:sessions[0] { 'before'; exit 3; 'after' }
            $null = Wait-AsyncGroup -Task $t -Timeout 60

            $t.State | Should -Be 'Completed'
            $t.Output | Should -Be @('before')
            $t.ExitCode | Should -Be 3
            Assert-SessionsFree
        }

        It 'fails the task on a non-terminating error when -ErrorAction Stop is given' {
            if (Skip-WithoutSsh) { return }
            { Invoke-Gather -Session $script:sessions[0] -ErrorAction Stop { Write-Error 'stop here'; 'not reached' } } |
                Should -Throw -ExpectedMessage 'stop here'
        }
    }

    Context 'errors, timeouts and fail-fast' {
        It 'raises a remote terminating error with its message; -ReturnExceptions puts it at its position' {
            if (Skip-WithoutSsh) { return }
            $caught = $null
            try { Invoke-Gather -Session $script:sessions[0] { throw 'boom' } } catch { $caught = $_ }
            $caught.Exception.Message | Should -Be 'boom'
            $caught.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskFailed,AsyncGroup.Commands.InvokeGatherCommand'

            $out = 1..3 | Invoke-Gather -Session $script:sessions -ReturnExceptions { if ($_ -eq 2) { throw "bad $_" }; $_ }
            $out[0] | Should -Be 1
            $out[1] | Should -BeOfType [System.Management.Automation.ErrorRecord]
            $out[1].Exception.Message | Should -Be 'bad 2'
            $out[2] | Should -Be 3
        }

        It 'fails fast: the first failure stops the remote siblings and the sessions are free again' {
            if (Skip-WithoutSsh) { return }
            $gate = New-Gate
            $caught = $null
            try {
                1..2 | Invoke-Gather -Session $script:sessions {
                    $gate = $using:gate
                    if ($_ -eq 1) {
                        New-Item -ItemType File -Path $gate | Out-Null
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                        'sibling finished'
                    }
                    else {
                        foreach ($i in 1..3000) { if (Test-Path $gate) { break }; Start-Sleep -Milliseconds 20 }
                        throw 'fail fast'
                    }
                }
            }
            catch { $caught = $_ }

            $caught.Exception.Message | Should -Be 'fail fast'
            Assert-SessionsFree
        }

        It '-Timeout cancels the remote pipelines and throws AsyncGroup.Timeout' {
            if (Skip-WithoutSsh) { return }
            $caught = $null
            try { 1..4 | Invoke-Gather -Session $script:sessions -Timeout 1 -WarningAction SilentlyContinue { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } } }
            catch { $caught = $_ }

            $caught.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            Assert-SessionsFree
        }

        It '-TaskTimeout fails only the slow item' {
            if (Skip-WithoutSsh) { return }
            $out = 1..3 | Invoke-Gather -Session $script:sessions -TaskTimeout 1 -ReturnExceptions {
                if ($_ -eq 2) { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
                $_
            }

            $out[0] | Should -Be 1
            $out[1].FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout'
            $out[2] | Should -Be 3
            Assert-SessionsFree
        }
    }

    Context 'stopping' {
        It 'Select-Object -First 1 stops the remote pipelines (repeated)' {
            if (Skip-WithoutSsh) { return }
            foreach ($round in 1..5) {
                $clock = [System.Diagnostics.Stopwatch]::StartNew()
                $first = 1..4 | Invoke-Gather -Session $script:sessions {
                    if ($_ -gt 1) { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
                    $_
                } | Select-Object -First 1
                $clock.Stop()

                $first | Should -Be 1
                $clock.Elapsed.TotalSeconds | Should -BeLessThan 30 -Because 'the sleeping remote items must be stopped, not awaited'
                Assert-SessionsFree
            }
        }

        It 'Ctrl+C stops the remote pipelines promptly (repeated)' {
            if (Skip-WithoutSsh) { return }
            foreach ($round in 1..3) {
                $signal = New-SyncHashtable
                $signal.Sessions = $script:sessions
                $signal.Gate = New-Gate
                $r = Invoke-StopHarness -Signal $signal -StopDeadlineSeconds 10 -Script '
                    param($Signal)
                    # A local watcher says "started" once both remote tasks have written their marker.
                    $null = Start-AsyncTask {
                        $s = $using:Signal
                        foreach ($i in 1..3000) {
                            if ((Test-Path ($s.Gate + ".1")) -and (Test-Path ($s.Gate + ".2"))) { $s.Started.Signal(); break }
                            Start-Sleep -Milliseconds 20
                        }
                    }
                    1..2 | Invoke-Gather -Session $Signal.Sessions {
                        $gate = ($using:Signal).Gate
                        New-Item -ItemType File -Path ($gate + "." + $_) | Out-Null
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                    }'

                $r.Completed | Should -BeTrue -Because 'the stopped pipeline must return within 10 s'
                $r.State | Should -Be 'Stopped'
                Assert-SessionsFree
            }
        }
    }

    Context 'abandoned remote pipelines' {
        It 'a remote pipeline that cannot be stopped is abandoned with a warning; its session is used again once it ends' {
            if (Skip-WithoutSsh) { return }
            $gate = New-Gate
            $warnings = $null
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            $caught = $null
            try {
                Invoke-Gather -Session $script:sessions[0] -Timeout 1 -WarningVariable warnings -WarningAction SilentlyContinue -ArgumentList $gate {
                    param($g)
                    # Blocked in a .NET call: a pipeline stop cannot interrupt it. The stop takes
                    # effect once the call returns: the finally block marks that moment.
                    try { [System.Threading.Thread]::Sleep(20000) }
                    finally { New-Item -ItemType File -Path $g | Out-Null }
                }
            }
            catch { $caught = $_ }
            $clock.Stop()

            $caught.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 15 -Because 'the call returns after the grace period, not when the remote sleep ends'
            @($warnings | Where-Object { "$_" -like '*abandoned*' }).Count | Should -Be 1
            Test-Path $gate | Should -BeFalse

            # The abandoned pipeline runs on; a new task on that session waits for it to end.
            Invoke-Gather -Session $script:sessions[0] -ArgumentList $gate { param($g) Test-Path $g } | Should -BeTrue
            Assert-SessionsFree
        }
    }

    Context 'tasks and groups' {
        It 'Start-AsyncTask -Session runs on a session; Wait-AsyncGroup -ReturnWhen FirstCompleted returns the quick one' {
            if (Skip-WithoutSsh) { return }
            $slow = Start-AsyncTask -Session $script:sessions[0] { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
            $quick = Start-AsyncTask -Session $script:sessions[1] { "quick $PID" }

            $result = Wait-AsyncGroup -Task $slow, $quick -ReturnWhen FirstCompleted -Timeout 60
            @($result.Done) | Should -Be @($quick)
            @($result.Pending) | Should -Be @($slow)
            Receive-AsyncTask $quick | Should -Be "quick $($script:sessionPids[1])"
            $quick.ComputerName | Should -Be '127.0.0.1'

            Stop-AsyncTask $slow
            Wait-Until { $slow.IsDone } -Because 'the remote task to stop'
            $slow.State | Should -Be 'Cancelled'
            Assert-SessionsFree
        }

        It 'Start-TaskGroup -Session: children run remotely and a failure cancels the others' {
            if (Skip-WithoutSsh) { return }
            $gate = New-Gate
            $caught = $null
            $children = New-SyncHashtable
            try {
                # -Timeout only bounds a broken module: the failure ends the group long before.
                Start-TaskGroup -Session $script:sessions -Timeout 120 {
                    $children.sleeper = Start-AsyncTask -Name sleeper -ArgumentList $gate {
                        param($g)
                        New-Item -ItemType File -Path $g | Out-Null
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                    }
                    $children.failer = Start-AsyncTask -Name failer -ArgumentList $gate {
                        param($g)
                        foreach ($i in 1..3000) { if (Test-Path $g) { break }; Start-Sleep -Milliseconds 20 }
                        throw 'child failed'
                    }
                }
            }
            catch { $caught = $_ }

            $states = "sleeper $($children.sleeper.State) on $($children.sleeper.ComputerName), failer $($children.failer.State) started $($children.failer.StartTime)"
            $caught.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand' -Because $states
            $caught.Exception.InnerExceptions.Count | Should -Be 1
            $caught.Exception.InnerExceptions[0].Message | Should -Be 'child failed'
            Assert-SessionsFree
        }

        It 'never closes the sessions it was given' {
            if (Skip-WithoutSsh) { return }
            $null = 1..4 | Invoke-Gather -Session $script:sessions -Timeout 120 { $_ }
            foreach ($s in $script:sessions) { $s.State | Should -Be 'Opened' }
            @(Get-PSSession | Where-Object { $script:sessions -contains $_ }).Count | Should -Be 2
        }
    }

    Context 'faults' {
        It 'a closed session fails only its own task, with a ConnectionError naming the host' {
            if (Skip-WithoutSsh) { return }
            $closed = @(New-SshTestSession $script:endpoint -Count 1)[0]
            Remove-PSSession -Session $closed

            $out = Invoke-Gather -Session $script:sessions[0], $closed -ReturnExceptions -Timeout 120 { 'ran' }
            $out[0] | Should -Be 'ran'
            $out[1] | Should -BeOfType [System.Management.Automation.ErrorRecord]
            $out[1].CategoryInfo.Category | Should -Be 'ConnectionError'
            $out[1].Exception.Message | Should -BeLike "*'127.0.0.1'*"
            $out[1].TargetObject.Error.FullyQualifiedErrorId | Should -Be 'AsyncGroup.SessionFailed'

            # Spread over both, every item goes to the working session.
            $spread = 1..4 | Invoke-Gather -Session $closed, $script:sessions[0] -Timeout 120 { $_ }
            $spread | Should -Be @(1, 2, 3, 4)
        }

        It 'a task that fails at once on a closed session still ends (repeated; it once raced the task''s own set-up)' {
            if (Skip-WithoutSsh) { return }
            # A child process bounds a hang: the lost task never ended, and neither did the call.
            $e = $script:endpoint
            $r = Invoke-ChildPowerShell -TimeoutSeconds 180 -Command @"
Import-Module `$env:ASYNCGROUP_MANIFEST
`$ProgressPreference = 'SilentlyContinue'
$(Get-SshTestSessionScript $e -Variable closed)
Remove-PSSession `$closed
`$failed = 0
foreach (`$i in 1..40) {
    `$r = Invoke-Gather -Session `$closed -ReturnExceptions { 1 }
    if (`$r.CategoryInfo.Category -eq 'ConnectionError') { `$failed++ }
    `$t = Start-AsyncTask -Session `$closed { 1 }
    `$null = Wait-AsyncGroup -Task `$t
    if (`$t.Error.CategoryInfo.Category -eq 'ConnectionError') { `$failed++ }
}
"failed `$failed"
"@

            $r.TimedOut | Should -BeFalse -Because 'every task on the closed session must end'
            $r.Output | Should -Be @('failed 80')
        }

        It 'killing a session''s remote process mid-task fails that task only; the others finish on the other session' {
            if (Skip-WithoutSsh) { return }
            $pair = @(New-SshTestSession $script:endpoint -Count 2)
            $victimPid = @(Get-SshSessionProcessId $pair[0])[0]
            $gate = New-Gate
            $doomed = Start-AsyncTask -Session $pair[0] -ArgumentList $gate {
                param($g)
                $PID
                New-Item -ItemType File -Path $g | Out-Null
                foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
            }
            Wait-Until { Test-Path $gate } -TimeoutSeconds 60 -Because 'the doomed task to start'
            $others = 1..3 | Start-AsyncTask -Session $pair { Start-Sleep -Milliseconds 200; $_ }

            Stop-Process -Id $victimPid -Force
            $null = Wait-AsyncGroup -Task (@($doomed) + @($others)) -Timeout 60

            $doomed.State | Should -Be 'Failed'
            $doomed.Output | Should -Be @($victimPid)
            $doomed.Error.CategoryInfo.Category | Should -Be 'ConnectionError'
            $doomed.Error.FullyQualifiedErrorId | Should -Be 'AsyncGroup.SessionFailed'
            $doomed.Error.Exception.Message | Should -BeLike "*'127.0.0.1'*"
            @($others | ForEach-Object State) | Should -Be @('Completed', 'Completed', 'Completed')
            @($others | Receive-AsyncTask) | Should -Be @(1, 2, 3)
            $pair[0].State | Should -Not -Be 'Opened'
        }

        It 'a session whose process dies in a gather fails that item; the rest of the gather completes' {
            if (Skip-WithoutSsh) { return }
            $pair = @(New-SshTestSession $script:endpoint -Count 2)
            $out = 1..5 | Invoke-Gather -Session $pair -ReturnExceptions {
                if ($_ -eq 1) { Stop-Process -Id $PID -Force }
                Start-Sleep -Milliseconds 100
                $_
            }

            $out[0] | Should -BeOfType [System.Management.Automation.ErrorRecord]
            $out[0].CategoryInfo.Category | Should -Be 'ConnectionError'
            $out[1..4] | Should -Be @(2, 3, 4, 5)
        }
    }
}
