BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

# Nested structured concurrency (issue 10): tasks that gather, start tasks and open task groups.
# Tasks that must be cancelled wait in a cancellable loop (Start-Sleep) that gives up after about a
# minute: a module that fails to cancel makes the test fail, it does not hang the suite.

Describe 'Nesting' {
    AfterEach {
        Clear-AsyncTask
    }

    Context 'the cmdlets exist in every task' {
        It 'lets a task gather when the module was imported by path, without -ImportModule' {
            $out = Invoke-Gather { Invoke-Gather { 1 }, { 2 } }
            $out | Should -Be @(1, 2)
        }

        It 'gives every task the caller''s own loaded module (same path and version)' {
            $mine = Get-Command Invoke-Gather
            $seen = Invoke-Gather {
                $c = Get-Command Invoke-Gather
                "$($c.ModuleName)|$($c.Version)|$($c.Module.Path)"
                @(Get-Command -Module AsyncGroup).Count
            }
            $seen[0] | Should -Be "$($mine.ModuleName)|$($mine.Version)|$($mine.Module.Path)"
            $seen[1] | Should -Be @(Get-Command -Module AsyncGroup).Count
        }

        It 'nests five levels of Start-AsyncTask, Start-TaskGroup and Invoke-Gather' {
            $out = Invoke-Gather {
                Start-TaskGroup {
                    $t = Start-AsyncTask {
                        Invoke-Gather {
                            $inner = Start-AsyncTask { 'deep' }
                            Receive-AsyncTask $inner -Wait
                        }
                    }
                    Receive-AsyncTask $t -Wait
                }
                'group done'
            }
            $out | Should -Be @('deep', 'group done')
        }

        It 'works when the module was imported by name' {
            $folder = Split-Path (Split-Path $script:AsyncGroupManifest -Parent) -Parent
            $r = Invoke-ChildPowerShell -Command "`$env:PSModulePath = '$folder' + [IO.Path]::PathSeparator + `$env:PSModulePath; Import-Module AsyncGroup; Invoke-Gather { Invoke-Gather { 'by-name' } }"
            $r.Output | Should -Be @('by-name') -Because $r.ErrorText
        }

        It 'works when the module is nested in another module' {
            $wrapper = Join-Path $TestDrive 'Wrapper'
            $null = New-Item -ItemType Directory -Path $wrapper -Force
            Set-Content -LiteralPath (Join-Path $wrapper 'Wrapper.psm1') -Value 'function Invoke-Wrapped { Invoke-Gather { Invoke-Gather { "wrapped" } } }'
            Set-Content -LiteralPath (Join-Path $wrapper 'Wrapper.psd1') -Value ("@{ RootModule = 'Wrapper.psm1'; ModuleVersion = '1.0.0'; NestedModules = @('" + $script:AsyncGroupManifest + "'); FunctionsToExport = @('Invoke-Wrapped'); CmdletsToExport = @() }")
            $r = Invoke-ChildPowerShell -Command "Import-Module '$wrapper/Wrapper.psd1'; Invoke-Wrapped"
            $r.Output | Should -Be @('wrapped') -Because $r.ErrorText
        }

        It 'keeps the process''s pools, and every later task its cmdlets, when a task removes the module' {
            Invoke-Gather { 1 } | Should -Be 1
            Invoke-Gather { Remove-Module AsyncGroup; 'removed' } | Should -Be 'removed'
            # Remove-Module in a worker is that runspace's business: the process's idle workers stay.
            [AsyncGroup.WorkerPoolStatus]::IdleWorkers | Should -BeGreaterThan 0
            1..6 | Invoke-Gather -ThrottleLimit 3 { Invoke-Gather { 'still here' } } | Should -Be (@('still here') * 6)
        }
    }

    Context '$using: binds where the script block is handed over' {
        It 'reads the task''s variable in a nested Invoke-Gather (as ForEach-Object -Parallel does)' {
            $g = 'OUTER'
            $out = 'a', 'b' | Invoke-Gather { $g = $_; 1..2 | Invoke-Gather { "$using:g-$_" } }
            $out | Should -Be @('a-1', 'a-2', 'b-1', 'b-2')
            $null = $g
        }

        It 'reads the task''s variable in a nested Start-AsyncTask' {
            $x = 'OUTER'
            Invoke-Gather { $x = 'INNER'; $t = Start-AsyncTask { "sees $using:x" }; Receive-AsyncTask $t -Wait } | Should -Be 'sees INNER'
            $null = $x
        }

        It 'reads the task''s variable in a Start-AsyncTask inside a nested Start-TaskGroup' {
            $x = 'OUTER'
            $out = Invoke-Gather {
                $x = 'INNER'
                Start-TaskGroup { $t = Start-AsyncTask { "group sees $using:x" }; Receive-AsyncTask $t -Wait }
            }
            $out | Should -Be 'group sees INNER'
            $null = $x
        }

        It 'reads the task''s variable under module-qualified names and aliases' {
            $x = 'OUTER'
            $out = Invoke-Gather {
                $x = 'INNER'
                AsyncGroup\Invoke-Gather { "q $using:x" }
                $t = AsyncGroup\Start-AsyncTask -ScriptBlock { "s $using:x" }
                Receive-AsyncTask $t -Wait
            }
            $out | Should -Be @('q INNER', 's INNER')
            $null = $x
        }

        It 'keeps the caller''s value in plain nested script blocks of the task' {
            $n = 2
            $out = Invoke-Gather {
                $n = 0
                (1..3 | Where-Object { $_ -gt $using:n }) -join ','
                & { "call $using:n" }
                1 | ForEach-Object { "foreach $using:n" }
            }
            $out | Should -Be @('3', 'call 2', 'foreach 2')
            $null = $n
        }

        It 'mixes both in one block: the outer $using: is the caller''s, the handed-over one the task''s' {
            $v = 'caller'
            $out = Invoke-Gather { $v = "task of $using:v"; Invoke-Gather { "inner sees $using:v" } }
            $out | Should -Be 'inner sees task of caller'
            $null = $v
        }

        It 'reads the task''s variable in ForEach-Object -Parallel' -Skip:($PSVersionTable.PSVersion.Major -lt 7) {
            $v = 'OUTER'
            $out = Invoke-Gather {
                $v = 'INNER'
                1 | ForEach-Object -Parallel { "p $using:v" }
                1 | Microsoft.PowerShell.Core\ForEach-Object -Parallel { "q $using:v" }
                1 | % -Parallel { "a $using:v" }
            }
            $out | Should -Be @('p INNER', 'q INNER', 'a INNER')
            $null = $v
        }

        It 'reads the task''s variable in Start-ThreadJob' -Skip:($null -eq (Get-Command Start-ThreadJob -ErrorAction SilentlyContinue)) {
            $v = 'OUTER'
            $out = Invoke-Gather { $v = 'INNER'; Start-ThreadJob { "tj $using:v" } | Receive-Job -Wait -AutoRemoveJob }
            $out | Should -Be 'tj INNER'
            $null = $v
        }

        It 'reads the task''s variable in Start-Job' {
            $v = 'OUTER'
            $out = Invoke-Gather { $v = 'INNER'; Start-Job { "job $using:v" } | Receive-Job -Wait -AutoRemoveJob }
            $out | Should -Be 'job INNER'
            $null = $v
        }

        It 'leaves a local Invoke-Command''s $using: to PowerShell, as it does outside a task' {
            $expected = & { $v = 'x'; try { Invoke-Command { $using:v } } catch { $_.FullyQualifiedErrorId } }
            $v = 'OUTER'
            $out = Invoke-Gather { $v = 'INNER'; try { Invoke-Command { $using:v } } catch { $_.FullyQualifiedErrorId } }
            $out | Should -Be $expected
            $null = $v
        }
    }
}
