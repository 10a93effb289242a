BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

Describe 'Start-TaskGroup' {
    AfterEach {
        Clear-AsyncTask
    }

    Context 'the body' {
        It 'writes the body''s output as its own output' {
            Start-TaskGroup { 'a'; 'b' } | Should -Be @('a', 'b')
        }

        It 'runs the body in the caller''s session: it sees the caller''s variables' {
            $callerValue = 'from the caller'
            Start-TaskGroup { $callerValue } | Should -Be 'from the caller'
        }

        It 'runs the body on the caller''s runspace, not on a worker' {
            Start-TaskGroup { [runspace]::DefaultRunspace.InstanceId } | Should -Be ([runspace]::DefaultRunspace.InstanceId)
        }

        It 'forwards the body''s warnings' {
            $null = Start-TaskGroup { Write-Warning 'body warning' } -WarningVariable warnings 3>$null
            $warnings.Message | Should -Be 'body warning'
        }

        It 'keeps the original error id of the body''s non-terminating errors' {
            $null = Start-TaskGroup { Get-Item -LiteralPath (Join-Path $TestDrive 'missing') } -ErrorVariable errs 2>$null

            $errs | Should -HaveCount 1
            $errs[0].FullyQualifiedErrorId | Should -Be 'PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand'
        }

        It 'keeps an error record the body outputs (Invoke-Gather -ReturnExceptions) as output, not as an error' {
            $out = Start-TaskGroup { Invoke-Gather -ReturnExceptions { throw 'agBoom' }, { 'agOk' } } -ErrorVariable errs

            $out | Should -HaveCount 2
            $out[0] | Should -BeOfType ([System.Management.Automation.ErrorRecord])
            $out[0].Exception.Message | Should -Be 'agBoom'
            $out[1] | Should -Be 'agOk'
            $errs | Should -HaveCount 0
        }
    }

    Context 'children' {
        It 'makes every Start-AsyncTask in the body a child and joins them all before returning' {
            $s = New-SyncHashtable
            $tasks = Start-TaskGroup {
                1..3 | Start-AsyncTask {
                    $s = $using:s
                    # A child can only finish after the body has finished.
                    foreach ($i in 1..1500) { if ($s.BodyDone) { break }; Start-Sleep -Milliseconds 20 }
                    Start-Sleep -Milliseconds 200
                    $_ * 2
                }
                $s.BodyDone = $true
            }

            $tasks | Should -HaveCount 3
            ($tasks | Where-Object State -eq 'Completed') | Should -HaveCount 3
            $tasks | Receive-AsyncTask | Should -Be @(2, 4, 6)
        }

        It 'delivers the children''s warnings' {
            $null = Start-TaskGroup { $null = Start-AsyncTask { Write-Warning 'child warning' } } -WarningVariable warnings 3>$null
            $warnings.Message | Should -Be 'child warning'
        }

        # Known limitation: the body runs on the pipeline thread, the only thread allowed to write, and
        # PowerShell offers no hook into a nested pipeline that is only sleeping. Children's records
        # come out whenever the body writes something, calls an AsyncGroup cmdlet, or ends. Kept as
        # the contract to meet; see about_AsyncGroup (Streams).
        It 'delivers the children''s warnings live, while the body still runs' -Skip {
            $s = New-SyncHashtable
            $null = Start-TaskGroup {
                $null = Start-AsyncTask { Write-Warning 'child warning' }
                foreach ($i in 1..500) { if ($s.WarningSeen) { break }; Start-Sleep -Milliseconds 20 }
                $s.BodySawIt = [bool]$s.WarningSeen
            } 3>&1 | ForEach-Object { if ($_ -is [System.Management.Automation.WarningRecord]) { $s.WarningSeen = $true } }

            $s.WarningSeen | Should -BeTrue
            $s.BodySawIt | Should -BeTrue -Because 'the warning must reach the caller while the body runs, not when it ends'
        }

        It 'runs at most -ThrottleLimit children at once' {
            $c = New-SyncHashtable
            $c.Running = 0; $c.Max = 0; $c.Started = 0

            $tasks = Start-TaskGroup -ThrottleLimit 2 {
                1..5 | Start-AsyncTask {
                    $c = $using:c
                    [System.Threading.Monitor]::Enter($c.SyncRoot)
                    try { $c.Running++; $c.Started++; if ($c.Running -gt $c.Max) { $c.Max = $c.Running } }
                    finally { [System.Threading.Monitor]::Exit($c.SyncRoot) }
                    try { foreach ($i in 1..1500) { if ($c.Running -ge 2 -or $c.Started -ge 5) { break }; Start-Sleep -Milliseconds 20 } }
                    finally {
                        [System.Threading.Monitor]::Enter($c.SyncRoot)
                        try { $c.Running-- } finally { [System.Threading.Monitor]::Exit($c.SyncRoot) }
                    }
                }
            }

            ($tasks | Where-Object State -eq 'Completed') | Should -HaveCount 5
            $c.Max | Should -Be 2
        }

        It 'does not fail when a child is cancelled with Stop-AsyncTask' {
            $h = @{}
            $err = $null
            try {
                Start-TaskGroup {
                    $h.Task = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
                    Stop-AsyncTask $h.Task
                    'body done'
                } | Should -Be 'body done'
            }
            catch { $err = $_ }

            $err | Should -BeNullOrEmpty
            $h.Task.State | Should -Be 'Cancelled'
        }
    }

    Context 'failure' {
        It 'throws one AsyncGroup.TaskGroupFailed error whose InnerExceptions hold the child''s exception' {
            $err = try { Start-TaskGroup { $null = Start-AsyncTask { throw 'child boom' } } } catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand'
            $err.Exception | Should -BeOfType ([System.AggregateException])
            $err.Exception | Should -BeOfType ([AsyncGroup.Core.TaskGroupException])
            $err.Exception.InnerExceptions | Should -HaveCount 1
            $err.Exception.InnerExceptions[0].Message | Should -Be 'child boom'
        }

        It 'keeps the type of the child''s exception' {
            $err = try { Start-TaskGroup { $null = Start-AsyncTask { throw [System.IO.FileNotFoundException]::new('no such file') } } } catch { $_ }

            $err.Exception.InnerExceptions[0] | Should -BeOfType ([System.IO.FileNotFoundException])
        }

        It 'cancels the other children and the body when a child fails' {
            $s = New-SyncHashtable
            $s.SiblingExited = [System.Threading.ManualResetEventSlim]::new($false)

            $err = try {
                Start-TaskGroup {
                    $s.Sibling = Start-AsyncTask {
                        $s = $using:s
                        $s.SiblingStarted = $true
                        try { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }; $s.SiblingFinished = $true }
                        finally { $s.SiblingExited.Set() }
                    }
                    $null = Start-AsyncTask {
                        $s = $using:s
                        foreach ($i in 1..1500) { if ($s.SiblingStarted) { break }; Start-Sleep -Milliseconds 20 }
                        throw 'child boom'
                    }
                    foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                    $s.BodyFinished = $true
                }
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand'
            $s.BodyFinished | Should -BeNullOrEmpty
            $s.SiblingFinished | Should -BeNullOrEmpty
            $s.Sibling.State | Should -Be 'Cancelled'
            $s.SiblingExited.IsSet | Should -BeTrue -Because 'the sibling must have ended before the group returned'
        }

        It 'throws AsyncGroup.TaskGroupFailed with the body''s own error and cancels the children' {
            $h = @{}
            $err = try {
                Start-TaskGroup {
                    $h.Child = Start-AsyncTask { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
                    throw 'body boom'
                }
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand'
            $err.Exception.InnerExceptions | Should -HaveCount 1
            $err.Exception.InnerExceptions[0].Message | Should -Be 'body boom'
            $h.Child.State | Should -Be 'Cancelled'
        }

        It 'puts both the body''s error and a child''s error in InnerExceptions' {
            # Not reachable deterministically from PowerShell: the first failure stops the body (a
            # throw in its finally block is then dropped by PowerShell itself), and a child that
            # fails after the group aborted counts as cancelled by design. Core's xunit tests cover it.
            Set-ItResult -Skipped -Because 'a body error and a child error cannot both be produced without a race from script; covered by the Core tests'
        }

        It 'names the group from -Name in its error message' {
            $err = try { Start-TaskGroup -Name 'downloads' { $null = Start-AsyncTask { throw 'child boom' } } } catch { $_ }
            $err.Exception.Message | Should -Match 'downloads'
        }

        It 'nests the aggregate of a failed inner group in the outer group''s error' {
            $err = try {
                Start-TaskGroup -Name 'outer' {
                    Start-TaskGroup -Name 'inner' { $null = Start-AsyncTask { throw 'child boom' } }
                }
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand'
            $err.Exception.GroupName | Should -Be 'outer'
            $err.Exception.InnerExceptions[0] | Should -BeOfType ([AsyncGroup.Core.TaskGroupException])
            $err.Exception.InnerExceptions[0].GroupName | Should -Be 'inner'
            $err.Exception.InnerExceptions[0].InnerExceptions[0].Message | Should -Be 'child boom'
        }

        It 'refuses Start-AsyncTask in a group that is shutting down, with AsyncGroup.GroupClosed' {
            $err = try {
                Start-TaskGroup {
                    try {
                        $null = Start-AsyncTask { throw 'child boom' }
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                    }
                    finally {
                        # The group has aborted and stopped the body: no child can join it now.
                        $null = Start-AsyncTask { 'too late' }
                    }
                } -ErrorVariable errs 2>$null
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand'
            $closed = @($errs | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] -and $_.FullyQualifiedErrorId -like 'AsyncGroup.GroupClosed*' })
            $closed | Should -HaveCount 1
            $closed[0].FullyQualifiedErrorId | Should -Be 'AsyncGroup.GroupClosed,AsyncGroup.Commands.StartAsyncTaskCommand'
            $closed[0].Exception | Should -BeOfType ([System.InvalidOperationException])
        }
    }

    Context '-Timeout' {
        It 'throws AsyncGroup.Timeout with a TimeoutException and cancels the children and the body' {
            $s = New-SyncHashtable
            $s.ChildExited = [System.Threading.ManualResetEventSlim]::new($false)

            $err = try {
                Start-TaskGroup -Timeout 0.5 {
                    $s.Child = Start-AsyncTask {
                        $s = $using:s
                        try { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }; $s.ChildFinished = $true }
                        finally { $s.ChildExited.Set() }
                    }
                    foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                    $s.BodyFinished = $true
                }
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.StartTaskGroupCommand'
            $err.Exception | Should -BeOfType ([System.TimeoutException])
            $s.BodyFinished | Should -BeNullOrEmpty
            $s.ChildFinished | Should -BeNullOrEmpty
            $s.Child.State | Should -Be 'Cancelled'
            $s.ChildExited.IsSet | Should -BeTrue
        }

        It 'throws AsyncGroup.Timeout with -Timeout 0' {
            { Start-TaskGroup -Timeout 0 { Start-Sleep -Milliseconds 100 } } |
                Should -Throw -ErrorId 'AsyncGroup.Timeout,AsyncGroup.Commands.StartTaskGroupCommand'
        }

        It 'throws AsyncGroup.Timeout, with the body stopped, whenever the deadline passes as the body starts (-Timeout <Timeout>, 10 times)' -ForEach @(
            @{ Timeout = 0 }
            @{ Timeout = 0.001 }
            @{ Timeout = 0.01 }
        ) {
            $s = New-SyncHashtable
            foreach ($round in 1..10) {
                $err = try {
                    Start-TaskGroup -Timeout $Timeout {
                        foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                        $s.BodyFinished = $true
                    }
                }
                catch { $_ }

                $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.StartTaskGroupCommand' -Because "round $round"
                $err.Exception | Should -BeOfType ([System.TimeoutException])
                $s.BodyFinished | Should -BeNullOrEmpty -Because "the body is stopped (round $round)"
            }
        }
    }

    Context 'common parameters' {
        # Like an advanced function's, the group's common parameters set the preferences of its
        # body, so that they reach everything the body runs, its children included.
        It 'passes -Verbose to its children' {
            $records = & {
                $VerbosePreference = 'SilentlyContinue'
                Start-TaskGroup -Verbose { $null = Start-AsyncTask { Write-Verbose 'child verbose' } } 4>&1
            }
            @($records | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object { $_.Message }) |
                Should -Be @('child verbose')
        }

        It 'passes -Verbose to its body and to an Invoke-Gather in it' {
            $records = & {
                $VerbosePreference = 'SilentlyContinue'
                Start-TaskGroup -Verbose { Write-Verbose 'body verbose'; Invoke-Gather { Write-Verbose 'gather verbose' } } 4>&1
            }
            @($records | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object { $_.Message }) |
                Should -Be @('body verbose', 'gather verbose')
        }

        It 'shows a <Stream> record its body or a child asked for itself, though the caller''s preference silences <Stream>' -ForEach @(
            @{ Stream = 'verbose'; Preference = 'VerbosePreference'; Write = 'Write-Verbose'; Switch = '-Verbose'; Redirect = '4>&1'; Type = [System.Management.Automation.VerboseRecord] }
            @{ Stream = 'debug'; Preference = 'DebugPreference'; Write = 'Write-Debug'; Switch = '-Debug'; Redirect = '5>&1'; Type = [System.Management.Automation.DebugRecord] }
        ) {
            $records = & ([scriptblock]::Create(
                    "`$$Preference = 'SilentlyContinue'
                    Start-TaskGroup {
                        $Write 'body asked' $Switch
                        $Write 'body not asked'
                        `$null = Start-AsyncTask { $Write 'child asked' $Switch; $Write 'child not asked' }
                    } $Redirect"))

            @($records | Where-Object { $_ -is $Type } | ForEach-Object { $_.Message }) | Should -Be @('body asked', 'child asked')
        }

        It 'passes -Debug to its children' {
            $records = & {
                $DebugPreference = 'SilentlyContinue'
                Start-TaskGroup -Debug { $null = Start-AsyncTask { Write-Debug 'child debug' } } 5>&1
            }
            @($records | Where-Object { $_ -is [System.Management.Automation.DebugRecord] } | ForEach-Object { $_.Message }) |
                Should -Be @('child debug')
        }

        It 'passes -ErrorAction Stop to its children: a non-terminating error fails the child, as with Invoke-Gather' {
            $s = New-SyncHashtable
            $err = try {
                & {
                    $ErrorActionPreference = 'Continue'
                    Start-TaskGroup -ErrorAction Stop { $s.Child = Start-AsyncTask { Write-Error 'child error'; 'after the error' } }
                }
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskGroupFailed,AsyncGroup.Commands.StartTaskGroupCommand'
            $s.Child.State | Should -Be 'Failed'
            $s.Child.Output | Should -BeNullOrEmpty
        }

        It 'keeps the caller''s preferences when no common parameter is given' {
            $records = & {
                $VerbosePreference = 'Continue'
                Start-TaskGroup { $null = Start-AsyncTask { Write-Verbose 'child verbose' } } 4>&1
            }
            @($records | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object { $_.Message }) |
                Should -Be @('child verbose')
        }
    }

    Context 'the body''s records under an Inquire preference' {
        # The body runs in the caller's session with the caller's preferences, so its own
        # Write-Warning (Write-Verbose, ...) asks under Inquire as it would in a script; the group
        # relays the record it wrote. The relay used to ask a second time, and, where the host
        # cannot ask (-NonInteractive, console input at its end), its failure ended the group.
        BeforeAll {
            function Invoke-AnsweredChild {
                # A child that can ask (not -NonInteractive) and reads the -Answer lines, then the
                # end of its input, when it does. Text is the whole standard output: an answer is
                # not echoed, so what follows a prompt shares its line.
                param(
                    [Parameter(Mandatory)] [string] $Command,
                    [string[]] $Answer = @(),
                    [double] $TimeoutSeconds = 90
                )

                $child = Invoke-ChildPowerShell -Command ('Import-Module $env:ASYNCGROUP_MANIFEST; ' + $Command) -Answer $Answer -TimeoutSeconds $TimeoutSeconds
                [pscustomobject]@{
                    Text     = $child.Text
                    Prompts  = [regex]::Matches($child.Text, 'Continue with this operation\?').Count
                    TimedOut = $child.TimedOut
                }
            }
        }

        It 'asks once for a body''s <Write> record under $<Variable> = Inquire, and goes on when answered Yes' -ForEach @(
            @{ Variable = 'WarningPreference'; Write = 'Write-Warning' }
            @{ Variable = 'VerbosePreference'; Write = 'Write-Verbose' }
            @{ Variable = 'DebugPreference'; Write = 'Write-Debug' }
            @{ Variable = 'InformationPreference'; Write = 'Write-Information' }
        ) {
            # Two answers: a second prompt, if any, is answered too and counted, rather than failing on end of input.
            $run = Invoke-AnsweredChild -Command ('$' + $Variable + ' = "Inquire"; Start-TaskGroup { ' + $Write + ' "agRecord"; "agAfter" }; "agEnd"') -Answer 'Y', 'Y'

            $run.TimedOut | Should -BeFalse
            $run.Prompts | Should -Be 1 -Because $run.Text
            $run.Text | Should -Match '(?s)agAfter.*agEnd'
        }

        It 'ends the group when the one prompt for a body''s warning is answered Halt' {
            $run = Invoke-AnsweredChild -Command '$WarningPreference = "Inquire"; try { Start-TaskGroup { Write-Warning "agRecord"; "agAfter" } } catch { "agCaught " + $_.Exception.Message }; "agEnd"' -Answer 'H'

            $run.TimedOut | Should -BeFalse
            $run.Prompts | Should -Be 1 -Because $run.Text
            $run.Text | Should -Not -Match 'agAfter'
            $run.Text | Should -Match '(?s)agCaught [^\r\n]*the Stop option.*agEnd'
        }

        It 'asks once for <What>' -ForEach @(
            # Invoke-Gather asks (its task runs with Continue); the group passes the record on.
            @{ What = 'a warning that an Invoke-Gather in the body relays'; Expected = '(?s)agAfter.*agEnd'
               Command = '$WarningPreference = "Inquire"; Start-TaskGroup { Invoke-Gather { Write-Warning "agRecord" }; "agAfter" }; "agEnd"' }
            @{ What = 'a child''s warning, as before'; Expected = 'agEnd'
               Command = '$WarningPreference = "Inquire"; Start-TaskGroup { $null = Start-AsyncTask { Write-Warning "agRecord" } }; "agEnd"' }
            @{ What = 'a body''s warning under -WarningAction Inquire, as before'; Expected = '(?s)agAfter.*agEnd'
               Command = 'Start-TaskGroup -WarningAction Inquire { Write-Warning "agRecord"; "agAfter" }; "agEnd"' }
        ) {
            $run = Invoke-AnsweredChild -Command $Command -Answer 'Y', 'Y'

            $run.TimedOut | Should -BeFalse
            $run.Prompts | Should -Be 1 -Because $run.Text
            $run.Text | Should -Match $Expected
        }

        It 'asks once for a body''s Write-Error under $ErrorActionPreference = Inquire, and goes on when answered Yes' {
            # An error's prompt shows the error's message, not "Continue with this operation?".
            $run = Invoke-AnsweredChild -Command '$ErrorActionPreference = "Inquire"; Start-TaskGroup { Write-Error "agRecord"; "agAfter" } 2>$null; "agEnd"' -Answer 'Y', 'Y'

            $run.TimedOut | Should -BeFalse
            [regex]::Matches($run.Text, '\[H\] Halt Command').Count | Should -Be 1 -Because $run.Text
            $run.Text | Should -Match '(?s)agAfter.*agEnd'
        }

        It 'does not ask for a body''s error whose own command does not ask (Write-Error -ErrorAction Continue), as in a script' {
            # Under $ErrorActionPreference = Inquire the relay used to ask for the error the body's
            # command had already let through: the prompt the -NonInteractive host cannot show
            # failed the group and ended the child's top level. A script goes on.
            $command = 'Import-Module $env:ASYNCGROUP_MANIFEST; $ErrorActionPreference = "Inquire"; & { Write-Error "agRecord" -ErrorAction Continue; "agScript" } 2>$null; Start-TaskGroup { Write-Error "agRecord" -ErrorAction Continue; "agGroup" } 2>$null; "agEnd"'
            $run = Invoke-ChildPowerShell -Command $command -TimeoutSeconds 90

            $run.TimedOut | Should -BeFalse
            $run.ExitCode | Should -Be 0 -Because $run.ErrorText
            $run.Output | Should -Be @('agScript', 'agGroup', 'agEnd')
        }

        It 'ends the body where a script ends when the host cannot ask for a body''s Write-Error under $ErrorActionPreference = Inquire' {
            # In a script the failed prompt ends every scope whose preference is Inquire; the
            # group's body is one of them, and its failure ends the group there.
            $command = 'Import-Module $env:ASYNCGROUP_MANIFEST; & { $ErrorActionPreference = "Inquire"; & { Write-Error "agRecord"; "agAfter" }; "agMid" } 2>$null; "agScriptEnd"; & { $ErrorActionPreference = "Inquire"; Start-TaskGroup { Write-Error "agRecord"; "agAfter" }; "agMid" } 2>$null; "agGroupEnd"'
            $run = Invoke-ChildPowerShell -Command $command -TimeoutSeconds 90

            $run.TimedOut | Should -BeFalse
            $run.ExitCode | Should -Be 0 -Because $run.ErrorText
            $run.Output | Should -Be @('agScriptEnd', 'agGroupEnd')
        }

        It 'still asks once for a body''s error under -ErrorAction Inquire' {
            $run = Invoke-AnsweredChild -Command 'Start-TaskGroup -ErrorAction Inquire { Write-Error "agRecord"; "agAfter" } 2>$null; "agEnd"' -Answer 'Y', 'Y'

            $run.TimedOut | Should -BeFalse
            [regex]::Matches($run.Text, '\[H\] Halt Command').Count | Should -Be 1 -Because $run.Text
            $run.Text | Should -Match '(?s)agAfter.*agEnd'
        }

        It 'goes on when the host cannot ask for a body''s <What>: that record fails with an error, as in a script' -ForEach @(
            @{ What = 'Write-Warning record under $WarningPreference = Inquire'; Prefix = '$WarningPreference = "Inquire"; '; Parameters = ''; Write = 'Write-Warning' }
            @{ What = 'Write-Verbose record under $VerbosePreference = Inquire'; Prefix = '$VerbosePreference = "Inquire"; '; Parameters = ''; Write = 'Write-Verbose' }
            @{ What = 'Write-Debug record under $DebugPreference = Inquire'; Prefix = '$DebugPreference = "Inquire"; '; Parameters = ''; Write = 'Write-Debug' }
            @{ What = 'Write-Information record under $InformationPreference = Inquire'; Prefix = '$InformationPreference = "Inquire"; '; Parameters = ''; Write = 'Write-Information' }
            # Here the group's own relay asks (the body runs with Continue).
            @{ What = 'warning under -WarningAction Inquire'; Prefix = ''; Parameters = '-WarningAction Inquire '; Write = 'Write-Warning' }
        ) {
            # The child runs -NonInteractive: its host refuses to prompt.
            $command = 'Import-Module $env:ASYNCGROUP_MANIFEST; ' + $Prefix + 'Start-TaskGroup ' + $Parameters + '{ ' + $Write + ' "agRecord"; "agAfter" } 2>$null; "agEnd"; "error: " + $Error[0].Exception.Message'
            $run = Invoke-ChildPowerShell -Command $command -TimeoutSeconds 90

            $run.TimedOut | Should -BeFalse
            $run.ExitCode | Should -Be 0
            $run.Output | Where-Object { $_ -notmatch 'agRecord' } | Select-Object -First 2 | Should -Be @('agAfter', 'agEnd')
            $run.Output[-1] | Should -Match 'NonInteractive'
        }

        It 'goes on when the console input has ended before a body''s warning asks' {
            $run = Invoke-AnsweredChild -Command '$WarningPreference = "Inquire"; Start-TaskGroup { Write-Warning "agRecord"; "agAfter" } 2>$null; "agEnd"'

            $run.TimedOut | Should -BeFalse
            $run.Text | Should -Match '(?s)agAfter.*agEnd'
        }

        It 'still ends the group at a body''s warning under -WarningAction Stop' {
            $out = [System.Collections.Generic.List[object]]::new()
            $err = try { Start-TaskGroup -WarningAction Stop { Write-Warning 'agStop'; 'agAfter' } 3>$null | ForEach-Object { $out.Add($_) } } catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'ActionPreferenceStop,AsyncGroup.Commands.StartTaskGroupCommand'
            $out | Should -HaveCount 0
        }
    }

    Context 'early stop downstream' {
        It 'stops the body, cancels the children and lets the caller go on once Select-Object -First 1 has its object' {
            # Run in a runspace of its own: a module that mishandles the downstream stop could end
            # the calling script.
            $r = Invoke-InNewRunspace -Script '
                param($Signal)
                $first = Start-TaskGroup {
                    $Signal.Child = Start-AsyncTask { $s = $using:Signal; foreach ($i in 1..500) { Start-Sleep -Milliseconds 20 }; $s.ChildFinished = $true }
                    "first"
                    foreach ($i in 1..500) { Start-Sleep -Milliseconds 20 }
                    $Signal.BodyFinished = $true
                } | Select-Object -First 1
                $Signal.First = $first
                $Signal.ChildDoneOnReturn = $Signal.Child.IsDone
                $Signal.After = $true'
            $s = $r.Signal

            $s.After | Should -BeTrue -Because 'the statement after the pipeline must run'
            $s.First | Should -Be 'first'
            $s.BodyFinished | Should -BeNullOrEmpty
            $s.ChildFinished | Should -BeNullOrEmpty
            $s.ChildDoneOnReturn | Should -BeTrue
            $s.Child.State | Should -Be 'Cancelled'
        }
    }

    Context 'bad input' {
        It 'refuses a null body' {
            { Start-TaskGroup -ScriptBlock $null } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.StartTaskGroupCommand'
        }

        It 'refuses an empty body' {
            { Start-TaskGroup { } } | Should -Throw -ErrorId 'AsyncGroup.InvalidArgument,AsyncGroup.Commands.StartTaskGroupCommand'
        }

        It 'refuses a negative -Timeout' {
            { Start-TaskGroup { 1 } -Timeout -1 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.StartTaskGroupCommand'
        }

        It 'refuses -ThrottleLimit 0' {
            { Start-TaskGroup { 1 } -ThrottleLimit 0 } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.StartTaskGroupCommand'
        }

        It 'refuses an empty -Name' {
            { Start-TaskGroup { 1 } -Name '' } | Should -Throw -ErrorId 'ParameterArgumentValidationError,AsyncGroup.Commands.StartTaskGroupCommand'
        }
    }

    Context 'Ctrl+C' {
        It 'returns promptly when stopped, with every child cancelled and the body stopped' {
            $s = New-SyncHashtable
            $r = Invoke-StopHarness -StartedCount 2 -Signal $s -Script '
                param($Signal)
                Start-TaskGroup {
                    $Signal.Tasks = @(1..2 | Start-AsyncTask { $s = $using:Signal; $s.Started.Signal(); foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } })
                    foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 }
                    $Signal.BodyFinished = $true
                }'

            $r.Completed | Should -BeTrue -Because 'the stopped pipeline must return within 5 s'
            $r.State | Should -Be 'Stopped'
            $s.BodyFinished | Should -BeNullOrEmpty
            @($s.Tasks | Where-Object State -eq 'Cancelled') | Should -HaveCount 2
        }

        It 'surfaces a stop as a plain stop, not as a group failure' {
            $s = New-SyncHashtable
            $r = Invoke-StopHarness -Signal $s -Script '
                param($Signal)
                Start-TaskGroup { $null = Start-AsyncTask { $s = $using:Signal; $s.Started.Signal(); foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } } }'

            $r.Reason | Should -BeOfType ([System.Management.Automation.PipelineStoppedException])
            @($r.Errors | Where-Object { $_.FullyQualifiedErrorId -like 'AsyncGroup.TaskGroupFailed*' }) | Should -HaveCount 0
        }
    }
}
