BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

# How a task's script block runs in its worker: what it writes, how it ends, what it leaves behind.
# (Regression tests for issue 9, items 5, 6, 7, 10, 13, 18 and 19.)

Describe 'Task execution' {
    AfterEach {
        Clear-AsyncTask
    }

    Context 'exit in a task (issue 9, item 6)' {
        It 'keeps what a task wrote before exit, and the other tasks'' output' {
            Invoke-Gather { 'a'; exit 3; 'b' }, { 'c' } | Should -Be @('a', 'c')
        }

        It 'completes a task that calls exit, with its output and its exit code' {
            $t = Start-AsyncTask { 'x'; exit 5 }
            $null = Wait-AsyncGroup $t -Timeout 60

            $t.State | Should -Be 'Completed'
            $t.Output | Should -Be @('x')
            $t.ExitCode | Should -Be 5
        }

        It 'gives a task that calls exit without a code exit code 0, and one that never calls exit none' {
            $exited = Start-AsyncTask { 'x'; exit }
            $plain = Start-AsyncTask { 'y' }
            $null = Wait-AsyncGroup $exited, $plain -Timeout 60

            $exited.Output | Should -Be @('x')
            $exited.ExitCode | Should -Be 0
            $plain.ExitCode | Should -BeNullOrEmpty
        }

        It 'keeps serving the other pipeline items on the worker where a task called exit' {
            1..3 | Invoke-Gather -ThrottleLimit 1 { $_; if ($_ -eq 2) { exit 1 }; "after $_" } |
                Should -Be @(1, 'after 1', 2, 3, 'after 3')
        }

        It 'ends only the task when it uses break or continue outside a loop' {
            1..3 | Invoke-Gather -ThrottleLimit 1 { if ($_ -eq 2) { break }; if ($_ -eq 3) { 'three'; continue }; $_ } |
                Should -Be @(1, 'three')
        }
    }

    Context '-TaskTimeout counts from when the task starts running (issue 9, item 5)' {
        It 'does not count the time an item waited in the queue' {
            # With one worker, item 8 waits about 7 × 0.4 s in the queue: far more than its 1.5 s,
            # while each item's own run (0.4 s) stays well under it.
            $out = 1..8 | Invoke-Gather -ThrottleLimit 1 -TaskTimeout 1.5 -ReturnExceptions { Start-Sleep -Milliseconds 400; $_ }

            $out | Should -Be @(1, 2, 3, 4, 5, 6, 7, 8)
        }

        It 'still fails an item that outlives -TaskTimeout once it runs' {
            $out = 1..3 | Invoke-Gather -ThrottleLimit 1 -TaskTimeout 1 -ReturnExceptions {
                if ($_ -eq 2) { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
                $_
            }

            $out[0] | Should -Be 1
            $out[1].FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout'
            $out[2] | Should -Be 3
        }
    }

    Context 'a stopped task keeps what it wrote (issue 9, item 13)' {
        It 'keeps the output its finally block writes while it is being cancelled' {
            $t = Start-AsyncTask { try { 'started'; foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } } finally { 'cleanup ran' } }
            Wait-Until { @($t.Output) -contains 'started' } -Because 'the task to write its first object'

            Stop-AsyncTask $t
            Wait-Until { $t.IsDone } -Because 'the task to stop'

            $t.State | Should -Be 'Cancelled'
            $t.Output | Should -Be @('started', 'cleanup ran')
        }
    }

    Context '-InitializationScript streams (issue 9, item 10)' {
        It 'delivers the errors and warnings the initialization script writes' {
            $out = Invoke-Gather { 'x' } -InitializationScript { Write-Error 'init error'; Write-Warning 'init warning' } `
                -ErrorAction SilentlyContinue -ErrorVariable ev -WarningAction SilentlyContinue -WarningVariable wv

            $out | Should -Be 'x'
            @($ev | ForEach-Object { "$_" }) | Should -Contain 'init error'
            @($wv | ForEach-Object { "$_" }) | Should -Contain 'init warning'
        }
    }

    Context 'output streams while the task runs (issue 9, item 18)' {
        It 'writes the head task''s first object before the task has finished (script block)' {
            $gate = [System.Threading.ManualResetEventSlim]::new($false)
            $seen = [System.Collections.Generic.List[object]]::new()

            Invoke-Gather {
                'first'
                $g = $using:gate
                if (-not $g.Wait(30000)) { throw 'the first object was held back until the task ended' }
                2..10
            } | ForEach-Object { $seen.Add($_); if ($_ -eq 'first') { $gate.Set() } }

            $seen | Should -Be @('first', 2, 3, 4, 5, 6, 7, 8, 9, 10)
        }

        It 'writes the head item''s first object before it has finished (pipeline input), in input order' {
            $gate = [System.Threading.ManualResetEventSlim]::new($false)
            $seen = [System.Collections.Generic.List[object]]::new()

            1..3 | Invoke-Gather -ThrottleLimit 3 {
                if ($_ -eq 1) {
                    'first'
                    $g = $using:gate
                    if (-not $g.Wait(30000)) { throw 'the first object was held back until the task ended' }
                }
                "item $_"
            } | ForEach-Object { $seen.Add($_); if ($_ -eq 'first') { $gate.Set() } }

            $seen | Should -Be @('first', 'item 1', 'item 2', 'item 3')
        }

        It 'streams every task''s output as it is written with -AsCompleted' {
            $slow = [System.Threading.ManualResetEventSlim]::new($false)
            $more = [System.Threading.ManualResetEventSlim]::new($false)
            $seen = [System.Collections.Generic.List[object]]::new()

            Invoke-Gather -AsCompleted {
                $g = $using:slow
                if (-not $g.Wait(30000)) { throw 'never released' }
                'slow'
            }, {
                'first'
                $g = $using:more
                if (-not $g.Wait(30000)) { throw 'the first object was held back until the task ended' }
                'second'
            } | ForEach-Object {
                $seen.Add($_)
                if ($_ -eq 'first') { $more.Set() }
                if ($_ -eq 'second') { $slow.Set() }
            }

            $seen | Should -Be @('first', 'second', 'slow')
        }

        It 'shows a running task''s output so far in its Output property' {
            $gate = [System.Threading.ManualResetEventSlim]::new($false)
            $t = Start-AsyncTask { 'early'; $g = $using:gate; $null = $g.Wait(30000); 'late' }
            Wait-Until { @($t.Output) -contains 'early' } -Because 'the first object to be visible while the task runs'
            $t.IsDone | Should -BeFalse

            $gate.Set()
            $null = Wait-AsyncGroup $t -Timeout 60
            $t.Output | Should -Be @('early', 'late')
        }
    }

    Context 'named blocks (issue 9, item 7)' {
        It 'runs begin, process and end for each pipeline item, with $_ bound in process' {
            1..2 | Invoke-Gather -ThrottleLimit 1 { begin { 'B' } process { "P$_" } end { 'E' } } |
                Should -Be @('B', 'P1', 'E', 'B', 'P2', 'E')
        }

        It 'runs begin, process and end once for a script block without input' {
            Invoke-Gather { begin { 'B' } process { 'P' } end { 'E' } } | Should -Be @('B', 'P', 'E')
        }

        It 'runs named blocks in Start-AsyncTask' {
            $t = 5 | Start-AsyncTask { begin { 'B' } process { $_ * 2 } end { 'E' } }
            Receive-AsyncTask $t -Wait | Should -Be @('B', 10, 'E')
        }
    }

    Context 'error positions point at the task''s own code (issue 9, item 19)' {
        It 'points a Write-Error record at the statement that wrote it, not at the module''s driver' {
            $errors = @(Invoke-Gather { Write-Error 'disk almost full'; 'x' }, { 'B' } 2>&1 |
                Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })

            $errors | Should -HaveCount 1
            $errors[0].InvocationInfo.PositionMessage | Should -Match ([regex]::Escape("Write-Error 'disk almost full'"))
            $errors[0].InvocationInfo.PositionMessage | Should -Not -Match '__ag'
            $expected = (Select-String -LiteralPath (Join-Path $PSScriptRoot 'TaskExecution.Tests.ps1') -SimpleMatch "Invoke-Gather { Write-Error 'disk almost full'" | Select-Object -First 1).LineNumber
            $errors[0].InvocationInfo.ScriptLineNumber | Should -Be $expected
            @($errors[0].ScriptStackTrace -split '\r?\n') | Should -HaveCount 1
        }

        It 'gives the line where the statement stands in the caller''s script' {
            $errors = @(Invoke-Gather {
                    'x'
                    Write-Error 'on its own line'
                } 2>&1 | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })

            $expected = (Select-String -LiteralPath (Join-Path $PSScriptRoot 'TaskExecution.Tests.ps1') -SimpleMatch "Write-Error 'on its own line'" | Select-Object -First 1).LineNumber
            $errors[0].InvocationInfo.ScriptLineNumber | Should -Be $expected
            $errors[0].InvocationInfo.Line | Should -Match 'on its own line'
        }

        It 'gives the line within a script block created from text' {
            $sb = [scriptblock]::Create("'x'`nWrite-Error 'second line'")
            $errors = @(Invoke-Gather $sb 2>&1 | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })

            $errors[0].InvocationInfo.ScriptLineNumber | Should -Be 2
        }

        It 'keeps only the task''s own frames in a failed task''s script stack trace' {
            $t = Start-AsyncTask { function inner { throw 'boom' }; inner }
            $null = Wait-AsyncGroup $t -Timeout 60

            $t.State | Should -Be 'Failed'
            $frames = @($t.Error.ScriptStackTrace -split '\r?\n')
            $frames | Should -HaveCount 2
            $frames[0] | Should -Match '^at inner'
            $t.Error.InvocationInfo.PositionMessage | Should -Match 'throw'
        }
    }

    Context 'a reused worker carries no session state over (issue 9, item 8)' {
        It 'restores default parameter values, global settings, aliases, drives and modules before the next call' {
            $first = Invoke-Gather {
                $PSDefaultParameterValues['Get-Date:Format'] = 'yyyy'
                $global:FormatEnumerationLimit = 1
                $global:MaximumHistoryCount = 7
                Set-Alias -Name agLeakAlias -Value Get-Date -Scope Global
                $null = New-PSDrive -Name AgLeakDrive -PSProvider FileSystem -Root ([System.IO.Path]::GetTempPath()) -Scope Global
                New-Module -Name AgLeakModule -ScriptBlock { function Get-AgLeak { 'leak' } } | Import-Module
                [runspace]::DefaultRunspace.Name
            }

            Wait-Until { [AsyncGroup.WorkerPoolStatus]::BusyWorkers -notcontains $first } -Because 'the first call''s worker to go back to the pool'

            # Rent every idle worker at once (each item holds its worker until all have started), so
            # the one the first call used is among them.
            $n = [AsyncGroup.WorkerPoolStatus]::IdleWorkers + 1
            $allStarted = [System.Threading.CountdownEvent]::new($n)
            $rows = 1..$n | Invoke-Gather -ThrottleLimit $n {
                $e = $using:allStarted
                $e.Signal()
                if (-not $e.Wait(30000)) { throw 'the items did not all start' }
                [pscustomobject]@{
                    Worker       = [runspace]::DefaultRunspace.Name
                    Defaults     = $PSDefaultParameterValues.Count
                    EnumLimit    = $FormatEnumerationLimit
                    HistoryCount = $MaximumHistoryCount
                    Alias        = [bool](Get-Alias -Name agLeakAlias -ErrorAction SilentlyContinue)
                    Drive        = [bool](Get-PSDrive -Name AgLeakDrive -ErrorAction SilentlyContinue)
                    Module       = [bool](Get-Module -Name AgLeakModule)
                }
            }
            $seen = $rows | Where-Object Worker -EQ $first | Select-Object -First 1

            $seen.Worker | Should -Be $first -Because 'the check must run on the worker the first call used'
            $seen.Defaults | Should -Be 0
            $seen.EnumLimit | Should -Be 4
            $seen.HistoryCount | Should -Be 4096
            $seen.Alias | Should -BeFalse
            $seen.Drive | Should -BeFalse
            $seen.Module | Should -BeFalse
        }

        It 'does not let one pipeline item''s in-place change of $PSDefaultParameterValues reach the next' {
            1..2 | Invoke-Gather -ThrottleLimit 1 {
                if ($_ -eq 1) { $PSDefaultParameterValues['Get-Date:Format'] = 'yyyy' }
                $PSDefaultParameterValues.Count
            } | Should -Be @(1, 0)
        }
    }

    Context 'script blocks given as input or arguments (issue 9, item 15)' {
        It 're-creates a script block piped in, in the worker, rather than running the caller''s' {
            $v = 'caller'
            { "v=$v" } | Invoke-Gather { $v = 'worker'; & $_ } | Should -Be 'v=worker'
        }

        It 're-creates a script block given in -ArgumentList' {
            $v = 'caller'
            Invoke-Gather { param($sb) $v = 'worker'; & $sb } -ArgumentList { "v=$v" } | Should -Be 'v=worker'
        }

        It 're-creates a script block piped to Start-AsyncTask' {
            $v = 'caller'
            $t = { "v=$v" } | Start-AsyncTask { $v = 'worker'; & $_ }
            Receive-AsyncTask $t -Wait | Should -Be 'v=worker'
        }
    }

    Context 'Invoke-Gather -Timeout with slow input (issue 9, item 16)' {
        It 'ends the call, and stops the upstream, when the deadline expires while input still arrives' {
            $produced = [ref]0
            $err = try {
                1..20 | ForEach-Object { Start-Sleep -Milliseconds 500; $produced.Value++; $_ } |
                    Invoke-Gather -Timeout 1 -WarningAction SilentlyContinue { foreach ($i in 1..3000) { Start-Sleep -Milliseconds 20 } }
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            # The upstream would have produced 20 items (10 s) had the call waited for its end.
            $produced.Value | Should -BeLessThan 10
        }

        It 'counts the deadline from the first input, not from when the upstream started' {
            # The upstream takes longer than -Timeout to produce its first object; the tasks are quick.
            & { Start-Sleep -Milliseconds 3000; 1; 2 } | Invoke-Gather -Timeout 2.5 { $_ * 10 } | Should -Be @(10, 20)
        }
    }

    Context 'format data in a task: the default views come with the first formatting command (issue 11)' {
        BeforeAll {
            # A worker of a pool of its own, so it has formatted nothing yet: each -ImportModule
            # set of modules has its own pool, and this module exists for one test only.
            $script:FreshPools = 0
            function Invoke-InFreshWorker([scriptblock] $ScriptBlock, [object[]] $ArgumentList = @()) {
                $script:FreshPools++
                $folder = Join-Path $TestDrive "AgFresh$script:FreshPools"
                $null = New-Item -ItemType Directory -Path $folder -Force
                $module = Join-Path $folder "AgFresh$script:FreshPools.psm1"
                Set-Content -LiteralPath $module -Value '# empty: only gives the call a pool of its own'
                Invoke-Gather $ScriptBlock -ImportModule $module -ArgumentList $ArgumentList -ThrottleLimit 1
            }

            # A file nothing else touches: a folder's time would change as the tests add to it.
            $script:Item = (New-Item -ItemType File -Path (Join-Path $TestDrive 'shown/item.txt') -Value 'x' -Force).FullName
            $script:Expected = Get-Item -LiteralPath $script:Item | Out-String
        }

        It 'gives a new worker the default views only when it first formats' {
            $r = Invoke-InFreshWorker {
                $formats = [runspace]::DefaultRunspace.InitialSessionState.Formats
                $before = $formats.Count
                $null = 1 | Out-String
                "$before $($formats.Count -gt $before)"
            }
            $r | Should -Be "$(Invoke-InFreshWorker { [runspace]::DefaultRunspace.InitialSessionState.Formats.Count }) True"
        }

        It 'formats as the caller does when the first formatting command is <Name>' -ForEach @(
            @{ Name = 'Out-String'; Script = { param($p) Get-Item -LiteralPath $p | Out-String } }
            @{ Name = 'Format-Table, module-qualified'; Script = { param($p) Get-Item -LiteralPath $p | Microsoft.PowerShell.Utility\Format-Table | Out-String } }
            @{ Name = 'an alias of Out-String'; Script = { param($p) Set-Alias agOs Out-String; Get-Item -LiteralPath $p | agOs } }
            @{ Name = 'Out-String found by Get-Command'; Script = { param($p) $c = Get-Command Out-String; Get-Item -LiteralPath $p | & $c } }
        ) {
            Invoke-InFreshWorker $Script -ArgumentList $script:Item | Should -Be $script:Expected
        }

        It 'writes a file as the caller does when the first formatting command is Tee-Object -FilePath' {
            $mine = Join-Path $TestDrive 'caller.txt'
            $theirs = Join-Path $TestDrive 'task.txt'
            $null = Get-Item -LiteralPath $script:Item | Tee-Object -FilePath $mine
            $null = Invoke-InFreshWorker { param($p, $f) Get-Item -LiteralPath $p | Tee-Object -FilePath $f } -ArgumentList $script:Item, $theirs

            Get-Content -LiteralPath $theirs -Raw | Should -Be (Get-Content -LiteralPath $mine -Raw)
        }

        It 'keeps the views of a module with a format file imported before the first formatting command' {
            $folder = Join-Path $TestDrive 'AgViews'
            $null = New-Item -ItemType Directory -Path $folder -Force
            Set-Content -LiteralPath (Join-Path $folder 'AgViews.format.ps1xml') -Value @'
<Configuration><ViewDefinitions><View><Name>AgViews.Thing</Name><ViewSelectedBy><TypeName>AgViews.Thing</TypeName></ViewSelectedBy>
<CustomControl><CustomEntries><CustomEntry><CustomItem><Text>thing view</Text></CustomItem></CustomEntry></CustomEntries></CustomControl>
</View></ViewDefinitions></Configuration>
'@
            New-ModuleManifest -Path (Join-Path $folder 'AgViews.psd1') -FormatsToProcess 'AgViews.format.ps1xml'

            $r = Invoke-InFreshWorker {
                param($m, $p)
                Import-Module $m
                ([pscustomobject]@{ PSTypeName = 'AgViews.Thing'; A = 1 } | Out-String).Trim()
                Get-Item -LiteralPath $p | Out-String
            } -ArgumentList (Join-Path $folder 'AgViews.psd1'), $script:Item

            $r | Should -Be @('thing view', $script:Expected)
        }
    }

    Context 'the per-item loop of a plain script block runs in C# (issue 11)' {
        It 'keeps each item''s variables to itself on one worker' {
            1..3 | Invoke-Gather { $seen = $mine; $mine = $_; "[$seen]" } -ThrottleLimit 1 | Should -Be @('[]', '[]', '[]')
        }

        It 'gives every task an empty $input, with $_ and $PSItem bound to its item' {
            1..2 | Invoke-Gather { "$_ $PSItem $(@($input).Count)" } -ThrottleLimit 1 | Should -Be @('1 1 0', '2 2 0')
        }

        It 'binds -ArgumentList to every item''s param block, with $_ bound' {
            1..3 | Invoke-Gather { param($k) $_ * $k } -ArgumentList 10 -ThrottleLimit 2 | Should -Be @(10, 20, 30)
        }

        It 'fails only the item that throws and keeps serving the others on its worker' {
            $r = 1..3 | Invoke-Gather { if ($_ -eq 2) { throw 'two' }; $_ } -ThrottleLimit 1 -ReturnExceptions
            $r[0] | Should -Be 1
            $r[1].Exception.Message | Should -Be 'two'
            $r[2] | Should -Be 3
        }

        # A script block that can define nothing runs in the loop's scope, not a new one per item
        # (ScriptPlan.NeedsOwnScope): each of these defines something without an assignment or a
        # command, so it must still get a scope of its own, or the second item sees the first's.
        It 'keeps what <What> defines to its own item on one worker' -ForEach @(
            @{ What = '-match ($Matches)'; Body = { if ($_ -eq 1) { $null -ne ('a1' -match '\d') } else { "[$Matches]" } } }
            @{ What = '++ on a new variable'; Body = { if ($_ -eq 1) { $n++; $true } else { "[$n]" } } }
            @{ What = 'a foreach loop variable'; Body = { if ($_ -eq 1) { foreach ($v in 5) { $true } } else { "[$v]" } } }
        ) {
            1..2 | Invoke-Gather $Body -ThrottleLimit 1 | Should -Be @($true, '[]')
        }

        It 'runs a block that can define nothing with the same results, $_ and flow control' {
            1..4 | Invoke-Gather { if ($_ -eq 3) { return 'three'; 'never' }; if ($_ -eq 4) { exit 2 }; $_ * 2 } -ThrottleLimit 1 |
                Should -Be @(2, 4, 'three')
            $r = 1..3 | Invoke-Gather { 6 / ($_ - 2) } -ThrottleLimit 1 -ReturnExceptions
            $r[0] | Should -Be -6
            $r[1].Exception.Message | Should -BeLike '*divide by zero*'
            $r[2] | Should -Be 6
        }

        It 'cleans up after a call that runs commands even when the next call runs none' {
            Invoke-Gather { $global:agFastLeak = 'dirty' } -ThrottleLimit 1
            $null = 1..4 | Invoke-Gather { $_ * 2 } -ThrottleLimit 1
            Invoke-Gather { "[$global:agFastLeak]" } -ThrottleLimit 1 | Should -Be '[]'
        }
    }
}
