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
}
