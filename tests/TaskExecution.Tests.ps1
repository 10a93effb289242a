BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
}

# How a task's script block runs in its worker: what it writes, how it ends, what it leaves behind.
# (Regression tests for issue 9, items 5, 6, 7, 10, 13, 18 and 19.)

Describe 'Task execution' {
    AfterEach {
        Clear-AsyncTask
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
}
