BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')

    # Runs one script block through one of the cmdlets that run script blocks and returns its
    # output: Invoke-Gather directly, Start-AsyncTask + Receive-AsyncTask -Wait, or as the child of
    # a Start-TaskGroup (-With holds the cmdlet's own parameters). Variables the script block reads
    # through $using: are found in the caller's scope, so tests name theirs ag* to avoid the
    # parameter names here.
    function Invoke-Shared {
        [CmdletBinding()]
        param(
            [Parameter(Mandatory)] [string] $Command,
            [Parameter(Mandatory)] [scriptblock] $Body,
            [hashtable] $With = @{}
        )

        switch ($Command) {
            'Invoke-Gather' { Invoke-Gather -ScriptBlock $Body @With }
            'Start-AsyncTask' { Start-AsyncTask -ScriptBlock $Body @With | Receive-AsyncTask -Wait }
            'Start-TaskGroup' { Start-TaskGroup @With { Start-AsyncTask -ScriptBlock $Body } | Receive-AsyncTask -Wait }
        }
    }
}

Describe '$using: in <Command>' -ForEach @(
    @{ Command = 'Invoke-Gather' }
    @{ Command = 'Start-AsyncTask' }
    @{ Command = 'Start-TaskGroup' }
) {
    AfterEach {
        Clear-AsyncTask
    }

    It 'passes a scalar' {
        $agValue = 21
        Invoke-Shared $Command { $using:agValue * 2 } | Should -Be 42
    }

    It 'passes a string with special characters unchanged' {
        $agText = "it's `"quoted`" `$notAVariable"
        Invoke-Shared $Command { $using:agText } | Should -Be "it's `"quoted`" `$notAVariable"
    }

    It 'passes an array' {
        $agArray = 1, 2, 3
        Invoke-Shared $Command { ($using:agArray | Measure-Object -Sum).Sum } | Should -Be 6
    }

    It 'passes an index expression' {
        $agArray = 'a', 'b', 'c'
        Invoke-Shared $Command { $using:agArray[1] } | Should -Be 'b'
    }

    It 'passes a member expression' {
        $agHash = @{ Inner = @{ Value = 'deep' } }
        Invoke-Shared $Command { $using:agHash.Inner.Value } | Should -Be 'deep'
    }

    It 'passes a member of an array (Count)' {
        $agArray = 1, 2, 3, 4
        Invoke-Shared $Command { $using:agArray.Count } | Should -Be 4
    }

    It 'passes a drive-qualified variable ($using:env:NAME)' {
        $env:AG_USING_PROBE = 'from env'
        try {
            Invoke-Shared $Command { $using:env:AG_USING_PROBE } | Should -Be 'from env'
        }
        finally {
            Remove-Item Env:\AG_USING_PROBE -ErrorAction SilentlyContinue
        }
    }

    It 'passes a value used in a nested script block (ForEach-Object inside the task)' {
        $agOffset = 100
        Invoke-Shared $Command { 1..3 | ForEach-Object { $_ + $using:agOffset } } | Should -Be @(101, 102, 103)
    }

    It 'passes the same expression used twice' {
        $agValue = 'x'
        Invoke-Shared $Command { "$using:agValue$using:agValue" } | Should -Be 'xx'
    }

    It 'passes a reference to the same object, so that tasks can coordinate through it' {
        $agFlags = New-SyncHashtable
        $null = Invoke-Shared $Command { $f = $using:agFlags; $f.SetByTask = $true }
        $agFlags.SetByTask | Should -BeTrue
    }

    It 'runs the script block on a worker runspace, never on the caller''s' {
        Invoke-Shared $Command { [runspace]::DefaultRunspace.Name } | Should -BeLike 'AsyncGroup-Worker-*'
    }
}

Describe '$using: errors in <Command>' -ForEach @(
    @{ Command = 'Invoke-Gather'; TypeName = 'InvokeGatherCommand' }
    @{ Command = 'Start-AsyncTask'; TypeName = 'StartAsyncTaskCommand' }
) {
    AfterEach {
        Clear-AsyncTask
    }

    It 'refuses a script block passed with $using:, with AsyncGroup.UsingScriptBlock, before any task runs' {
        $agScript = { 'inner' }
        $agFlags = New-SyncHashtable

        { Invoke-Shared $Command { $f = $using:agFlags; $f.Ran = $true; & $using:agScript } } |
            Should -Throw -ErrorId "AsyncGroup.UsingScriptBlock,AsyncGroup.Commands.$TypeName"
        $agFlags.Ran | Should -BeNullOrEmpty
    }

    It 'refuses a script block inside a $using: array' {
        $agScripts = @({ 'inner' })
        { Invoke-Shared $Command { & $using:agScripts[0] } } | Should -Throw -ErrorId "AsyncGroup.UsingScriptBlock,AsyncGroup.Commands.$TypeName"
    }

    It 'refuses a $using: variable that is not set, with AsyncGroup.InvalidArgument, before any task runs' {
        $agFlags = New-SyncHashtable
        { Invoke-Shared $Command { $f = $using:agFlags; $f.Ran = $true; $using:agNeverSetAnywhere } } |
            Should -Throw -ErrorId "AsyncGroup.InvalidArgument,AsyncGroup.Commands.$TypeName"
        $agFlags.Ran | Should -BeNullOrEmpty
    }
}

Describe '-ArgumentList in <Command>' -ForEach @(
    @{ Command = 'Invoke-Gather' }
    @{ Command = 'Start-AsyncTask' }
) {
    AfterEach {
        Clear-AsyncTask
    }

    It 'passes the arguments to $args' {
        Invoke-Shared $Command { $args[0] * $args[1] } -With @{ ArgumentList = 6, 7 } | Should -Be 42
    }

    It 'passes the arguments to the param block' {
        Invoke-Shared $Command { param($first, $second) "$second-$first" } -With @{ ArgumentList = 'a', 'b' } | Should -Be 'b-a'
    }

    It 'passes an array argument as one argument' {
        Invoke-Shared $Command { param($list) $list.Count } -With @{ ArgumentList = (, @(1, 2, 3)) } | Should -Be 3
    }
}

Describe '-Function, -ImportModule and -InitializationScript of <Command>' -ForEach @(
    @{ Command = 'Invoke-Gather'; TypeName = 'InvokeGatherCommand' }
    @{ Command = 'Start-AsyncTask'; TypeName = 'StartAsyncTaskCommand' }
    @{ Command = 'Start-TaskGroup'; TypeName = 'StartTaskGroupCommand' }
) {
    BeforeAll {
        $moduleDir = Join-Path $TestDrive 'AgTestModule'
        $null = New-Item -ItemType Directory -Path $moduleDir -Force
        Set-Content -LiteralPath (Join-Path $moduleDir 'AgTestModule.psm1') -Value "function Get-AgTestModuleValue { 'from the test module' }"
        $script:TestModulePath = Join-Path $moduleDir 'AgTestModule.psm1'
    }

    AfterEach {
        Clear-AsyncTask
    }

    It 'copies a caller function into the workers with -Function' {
        function Get-AgDouble([int] $n) { $n * 2 }
        Invoke-Shared $Command { Get-AgDouble 21 } -With @{ Function = 'Get-AgDouble' } | Should -Be 42
    }

    It 'copies several functions, which can call each other' {
        function Get-AgInner { 'inner' }
        function Get-AgOuter { "outer+$(Get-AgInner)" }
        Invoke-Shared $Command { Get-AgOuter } -With @{ Function = 'Get-AgOuter', 'Get-AgInner' } | Should -Be 'outer+inner'
    }

    It 'copies a filter with -Function' {
        filter Add-AgOne { $_ + 1 }
        Invoke-Shared $Command { 1, 2 | Add-AgOne } -With @{ Function = 'Add-AgOne' } | Should -Be @(2, 3)
    }

    It 'refuses an unknown function with AsyncGroup.InvalidArgument before any task runs' {
        $agFlags = New-SyncHashtable
        { Invoke-Shared $Command { $f = $using:agFlags; $f.Ran = $true } -With @{ Function = 'Get-AgNoSuchFunction' } } |
            Should -Throw -ErrorId "AsyncGroup.InvalidArgument,AsyncGroup.Commands.$TypeName"
        $agFlags.Ran | Should -BeNullOrEmpty
    }

    It 'imports a module (by path) into the workers with -ImportModule' {
        Invoke-Shared $Command { Get-AgTestModuleValue } -With @{ ImportModule = $script:TestModulePath } | Should -Be 'from the test module'
    }

    It 'imports a module (by name, from PSModulePath) into the workers with -ImportModule' {
        # A module no other test touches, found through PSModulePath; Get-Module does not
        # autoload, so it is listed only if -ImportModule imported it.
        $root = Join-Path $TestDrive "modules-$Command"
        $dir = Join-Path $root 'AgNamedModule'
        $null = New-Item -ItemType Directory -Path $dir -Force
        Set-Content -LiteralPath (Join-Path $dir 'AgNamedModule.psm1') -Value "function Get-AgNamedModuleValue { 'named' }"
        $saved = $env:PSModulePath
        $env:PSModulePath = $root + [System.IO.Path]::PathSeparator + $saved
        try {
            Invoke-Shared $Command { @(Get-Module -Name AgNamedModule).Count } -With @{ ImportModule = 'AgNamedModule' } | Should -Be 1
        }
        finally {
            $env:PSModulePath = $saved
        }
    }

    It 'reports a module that cannot be imported, naming it' {
        $err = $null
        try {
            $null = Invoke-Shared $Command { 'ran without the module' } -With @{ ImportModule = 'AgNoSuchModule' } -ErrorVariable errs -ErrorAction SilentlyContinue
        }
        catch { $err = $_ }

        $messages = @(@($err) + @($errs) | Where-Object { $null -ne $_ } | ForEach-Object { $_.Exception.Message })
        ($messages -join "`n") | Should -Match 'AgNoSuchModule'
    }

    It 'runs -InitializationScript before the task: its functions and variables are visible' {
        Invoke-Shared $Command { "$(Get-AgFromInit)/$agInitVariable" } -With @{ InitializationScript = { function Get-AgFromInit { 'fn' }; $agInitVariable = 'var' } } |
            Should -Be 'fn/var'
    }
}

Describe 'Completion of -Function' {
    BeforeAll {
        # A module installed in two versions, not imported: its functions are not the session's.
        $root = Join-Path $TestDrive 'completion-modules'
        foreach ($version in '1.0.0', '2.0.0') {
            $dir = Join-Path $root "AgCompletionProbe/$version"
            $null = New-Item -ItemType Directory -Path $dir -Force
            Set-Content -LiteralPath (Join-Path $dir 'AgCompletionProbe.psm1') -Value 'function Get-AgCompletionProbeInstalled { 1 }'
            New-ModuleManifest -Path (Join-Path $dir 'AgCompletionProbe.psd1') -RootModule 'AgCompletionProbe.psm1' -ModuleVersion $version -FunctionsToExport 'Get-AgCompletionProbeInstalled'
        }
        $script:SavedModulePath = $env:PSModulePath
        $env:PSModulePath = $root + [System.IO.Path]::PathSeparator + $env:PSModulePath

        function script:Get-FunctionCompletion([string] $Command, [string] $Prefix) {
            $line = "$Command { 1 } -Function $Prefix"
            @((TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText)
        }
    }

    AfterAll {
        $env:PSModulePath = $script:SavedModulePath
        Remove-Module AgCompletionProbe -ErrorAction SilentlyContinue
    }

    It 'completes the session''s own functions, each once, for <Command>' -ForEach @(
        @{ Command = 'Invoke-Gather' }
        @{ Command = 'Start-AsyncTask' }
        @{ Command = 'Start-TaskGroup' }
    ) {
        function global:Get-AgCompletionProbeMine { 1 }
        try {
            Get-FunctionCompletion $Command 'Get-AgCompletionProbe' | Should -Be @('Get-AgCompletionProbeMine')
        }
        finally {
            Remove-Item function:Get-AgCompletionProbeMine
        }
    }

    It 'completes the functions of an imported module once, and of an installed one not at all' {
        Get-FunctionCompletion 'Invoke-Gather' 'Get-AgCompletionProbeI' | Should -BeNullOrEmpty

        Import-Module AgCompletionProbe -RequiredVersion 2.0.0
        try {
            Get-FunctionCompletion 'Invoke-Gather' 'Get-AgCompletionProbeI' | Should -Be @('Get-AgCompletionProbeInstalled')
        }
        finally {
            Remove-Module AgCompletionProbe
        }
    }
}

Describe '-InitializationScript of Invoke-Gather' {
    It 'runs once per worker, not once per task' {
        $ids = 1..4 | Invoke-Gather -ThrottleLimit 1 -InitializationScript { $agInitId = [guid]::NewGuid() } { $agInitId }
        @($ids | Select-Object -Unique) | Should -HaveCount 1
    }

    It 'fails the task with the initialization script''s error' {
        $err = try { Invoke-Gather -InitializationScript { throw 'init boom' } { 'never' } } catch { $_ }
        $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskFailed,AsyncGroup.Commands.InvokeGatherCommand'
        $err.Exception.Message | Should -Be 'init boom'
    }
}

Describe 'Streams' {
    It 'delivers warnings to the warning stream and -WarningVariable' {
        $merged = Invoke-Gather { Write-Warning 'task warning'; 'out' } -WarningVariable agWarnings 3>&1

        $merged | Where-Object { $_ -is [System.Management.Automation.WarningRecord] } | ForEach-Object Message | Should -Be 'task warning'
        $agWarnings.Message | Should -Be 'task warning'
    }

    It 'delivers verbose records with -Verbose' {
        $records = Invoke-Gather { Write-Verbose 'task verbose' } -Verbose 4>&1
        $records.Message | Should -Be 'task verbose'
    }

    It 'does not deliver verbose records without -Verbose' {
        $records = & { $VerbosePreference = 'SilentlyContinue'; Invoke-Gather { Write-Verbose 'task verbose' } 4>&1 }
        $records | Should -BeNullOrEmpty
    }

    It 'delivers verbose records when the caller''s $VerbosePreference is Continue' {
        $records = & { $VerbosePreference = 'Continue'; Invoke-Gather { Write-Verbose 'task verbose' } 4>&1 }
        $records.Message | Should -Be 'task verbose'
    }

    It 'delivers a verbose record a task asked for itself, though the caller''s preference silences verbose' {
        # As a script does: & { Write-Verbose 'x' -Verbose } shows it whatever its caller's preference.
        $records = & {
            $VerbosePreference = 'SilentlyContinue'
            Invoke-Gather { Write-Verbose 'agAsked' -Verbose; Write-Verbose 'agNotAsked'; 'out' } 4>&1
        }

        @($records | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message) | Should -Be @('agAsked')
        @($records | Where-Object { $_ -isnot [System.Management.Automation.VerboseRecord] }) | Should -Be @('out')
    }

    It 'leaves the caller''s $VerbosePreference as it was once such a record is shown' {
        $state = & {
            $VerbosePreference = 'SilentlyContinue'
            $null = Invoke-Gather { Write-Verbose 'agAsked' -Verbose } 4>&1
            "set here: $VerbosePreference"
            & {
                # No variable of this scope's own before the call: none after it either.
                $null = Invoke-Gather { Write-Verbose 'agAsked' -Verbose } 4>&1
                "own variable: $([bool](Get-Variable -Name VerbosePreference -Scope 0 -ErrorAction Ignore))"
            }
        }

        $state | Should -Be @('set here: SilentlyContinue', 'own variable: False')
    }

    It 'delivers such a record with Receive-AsyncTask' {
        $t = Start-AsyncTask { Write-Verbose 'agAsked' -Verbose; 'out' }
        $null = Wait-AsyncGroup $t

        $records = & { $VerbosePreference = 'SilentlyContinue'; Receive-AsyncTask $t 4>&1 }

        @($records | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message) | Should -Be @('agAsked')
    }

    It 'delivers the debug records a task asked for itself, though the caller''s preference silences debug' {
        # PowerShell reads a command's debug preference once, at its first debug record: the
        # second asked-for record must still be shown, and the one not asked for never arrives.
        $records = & {
            $DebugPreference = 'SilentlyContinue'
            Invoke-Gather { Write-Debug 'agAsked1' -Debug; Write-Debug 'agNotAsked'; Write-Debug 'agAsked2' -Debug; 'out' } 5>&1
            "after: $DebugPreference"
        }

        @($records | Where-Object { $_ -is [System.Management.Automation.DebugRecord] } | ForEach-Object Message) | Should -Be @('agAsked1', 'agAsked2')
        @($records | Where-Object { $_ -isnot [System.Management.Automation.DebugRecord] }) | Should -Be @('out', 'after: SilentlyContinue')
    }

    It 'delivers debug records when the caller''s $DebugPreference is Continue' {
        $records = & { $DebugPreference = 'Continue'; Invoke-Gather { Write-Debug 'task debug' } 5>&1 }
        $records | Should -BeOfType ([System.Management.Automation.DebugRecord])
        $records.Message | Should -Be 'task debug'
    }

    It 'delivers information records, with their tags, to -InformationVariable' {
        $null = Invoke-Gather { Write-Information 'task info' -Tags 'agTag' } -InformationVariable agInfos
        $agInfos | Should -HaveCount 1
        $agInfos[0].MessageData | Should -Be 'task info'
        $agInfos[0].Tags | Should -Contain 'agTag'
    }

    It 'delivers Write-Host output to the information stream' {
        $records = Invoke-Gather { Write-Host 'task host' } 6>&1
        $records | Should -BeOfType ([System.Management.Automation.InformationRecord])
        "$($records.MessageData)" | Should -Be 'task host'
        $records.Tags | Should -Contain 'PSHOST'
    }

    It 'delivers non-terminating errors to the error stream and -ErrorVariable without failing the task' {
        $out = Invoke-Gather { Write-Error 'soft error'; 'after the error' } -ErrorVariable agErrors 2>$null

        $out | Should -Be 'after the error'
        $agErrors | Should -HaveCount 1
        $agErrors[0].Exception.Message | Should -Be 'soft error'
    }

    It 'keeps the original error id of a task''s non-terminating error' {
        $null = Invoke-Gather { Get-Item -LiteralPath (Join-Path $using:TestDrive 'missing') } -ErrorVariable agErrors 2>$null

        $agErrors | Should -HaveCount 1
        $agErrors[0].FullyQualifiedErrorId | Should -Be 'PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand'
    }

    It 'hides non-terminating errors with -ErrorAction SilentlyContinue but still records them in -ErrorVariable' {
        $merged = Invoke-Gather { Write-Error 'hidden error'; 'out' } -ErrorAction SilentlyContinue -ErrorVariable agErrors 2>&1

        $merged | Should -Be 'out'
        $agErrors | Should -HaveCount 1
    }

    It 'fails the task on a non-terminating error when the caller''s $ErrorActionPreference is Stop' {
        $err = & {
            $ErrorActionPreference = 'Stop'
            try { Invoke-Gather { Write-Error 'now fatal'; 'not reached' } } catch { $_ }
        }

        $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.TaskFailed,AsyncGroup.Commands.InvokeGatherCommand'
        $err.Exception.Message | Should -Be 'now fatal'
    }

    It 'hides warnings when the caller''s $WarningPreference is SilentlyContinue' {
        $merged = & { $WarningPreference = 'SilentlyContinue'; Invoke-Gather { Write-Warning 'hidden'; 'out' } 3>&1 }
        $merged | Should -Be 'out'
    }

    It 'delivers one task''s records in the order it wrote them, across streams' {
        $merged = Invoke-Gather {
            Write-Warning 'one'
            Write-Verbose 'two'
            Write-Information 'three'
            Write-Error 'four'
            Write-Warning 'five'
        } -Verbose *>&1

        $merged | ForEach-Object {
            if ($_ -is [System.Management.Automation.ErrorRecord]) { $_.Exception.Message }
            elseif ($_ -is [System.Management.Automation.InformationRecord]) { "$($_.MessageData)" }
            else { $_.Message }
        } | Should -Be @('one', 'two', 'three', 'four', 'five')
    }

    It 'keeps each task''s records in order when several tasks write at once' {
        $merged = 1..3 | Invoke-Gather -ThrottleLimit 3 { foreach ($i in 1..20) { Write-Warning "$_/$i" } } 3>&1

        foreach ($task in 1..3) {
            $mine = @($merged | ForEach-Object Message | Where-Object { $_ -like "$task/*" })
            $mine | Should -Be @(1..20 | ForEach-Object { "$task/$_" })
        }
    }

    It 'delivers a task''s warning live, while the task still runs' {
        $agGate = [System.Threading.ManualResetEventSlim]::new($false)
        $seen = [System.Collections.Generic.List[object]]::new()

        Invoke-Gather {
            Write-Warning 'live'
            $g = $using:agGate
            if (-not $g.Wait(30000)) { throw 'the warning was held back until the task ended' }
            'out'
        } 3>&1 | ForEach-Object {
            $seen.Add($_)
            if ($_ -is [System.Management.Automation.WarningRecord]) { $agGate.Set() }
        }

        $seen | Should -HaveCount 2
        $seen[1] | Should -Be 'out'
    }

    It 'delivers a task''s progress records to the caller' {
        $r = Invoke-InNewRunspace -Script 'param($Signal) Invoke-Gather { Write-Progress -Activity "agActivity" -Status "working" }'

        @($r.Progress | Where-Object Activity -eq 'agActivity') | Should -Not -BeNullOrEmpty
    }
}

Describe 'Preferences of tasks and group bodies' {
    # One rule decides the preferences of Invoke-Gather's and Start-AsyncTask's tasks and of a
    # Start-TaskGroup body (whose children read theirs from it): the same common parameters and
    # caller's variables give the same preferences, whichever cmdlet runs the script block.
    BeforeAll {
        # "$<Variable>" as an Invoke-Gather task, a Start-TaskGroup body and that body's child see
        # it, in that order.
        function Get-SeenPreference {
            param([Parameter(Mandatory)] [string] $Variable, [hashtable] $With = @{})

            $agRead = [scriptblock]::Create('"$' + $Variable + '"')
            Invoke-Gather -ScriptBlock $agRead @With
            Start-TaskGroup @With { & $agRead }
            Start-TaskGroup @With { Start-AsyncTask -ScriptBlock $agRead } | Receive-AsyncTask -Wait
        }
    }

    It 'runs tasks with Continue where the caller''s preference, set in a script or function, is Inquire: only the caller prompts' {
        # A preference assigned in a script or function scope holds the name as a string. A group
        # body runs in the caller's session and keeps the caller's preference: the group's own
        # writes read it from the body's scope while the body runs.
        $seen = & { $WarningPreference = 'Inquire'; Get-SeenPreference WarningPreference }

        $seen | Should -Be @('Continue', 'Inquire', 'Continue')
    }

    It 'runs them with Continue for -WarningAction Inquire' {
        $seen = Get-SeenPreference WarningPreference -With @{ WarningAction = 'Inquire' }

        $seen | Should -Be @('Continue', 'Continue', 'Continue')
    }

    It 'runs them with Continue for -ErrorAction Break: only the caller stops in the debugger' -Skip:($PSVersionTable.PSVersion.Major -lt 7) {
        $seen = & { $ErrorActionPreference = 'Continue'; Get-SeenPreference ErrorActionPreference -With @{ ErrorAction = 'Break' } }

        $seen | Should -Be @('Continue', 'Continue', 'Continue')
    }

    It 'ends a task that writes an error under -ErrorAction Break: the caller, not the worker, stops in the debugger' -Skip:($PSVersionTable.PSVersion.Major -lt 7) {
        # A worker has no debugger to stop in: given Break, its task waited forever. The child's
        # input is closed, so the caller's own stop in the debugger resumes at once.
        $command = 'Import-Module $env:ASYNCGROUP_MANIFEST; $ProgressPreference = "SilentlyContinue"; Invoke-Gather -ErrorAction Break { Write-Error "agBreak"; "after the error" } 2>$null'
        $run = Invoke-ChildPowerShell -Command $command -TimeoutSeconds 90

        $run.TimedOut | Should -BeFalse
        # (The line may follow the caller's debugger prompt.)
        ($run.Output -join "`n") | Should -Match 'after the error'
    }

    It 'goes on when the caller''s host cannot ask under Inquire: that record fails with an error, as Write-Warning''s would' {
        # The child runs -NonInteractive: its host refuses to prompt. The relay of the warning
        # used to end Invoke-Gather there, dropping what the other items wrote.
        $command = 'Import-Module $env:ASYNCGROUP_MANIFEST; $WarningPreference = "Inquire"; 1..3 | Invoke-Gather { if ($_ -eq 1) { Write-Warning "agAsk" }; "after $_" } -ThrottleLimit 1 2>$null; "next line"; "error: " + $Error[0].Exception.Message'
        $run = Invoke-ChildPowerShell -Command $command -TimeoutSeconds 90

        $run.TimedOut | Should -BeFalse
        $run.ExitCode | Should -Be 0
        $run.Output | Where-Object { $_ -notmatch 'agAsk' } | Select-Object -First 4 | Should -Be @('after 1', 'after 2', 'after 3', 'next line')
        $run.Output[-1] | Should -Match 'NonInteractive'
    }

    It 'still ends the call at a task''s warning under -WarningAction Stop' {
        $err = try { 1..3 | Invoke-Gather { if ($_ -eq 1) { Write-Warning 'agStop' }; "after $_" } -ThrottleLimit 1 -WarningAction Stop } catch { $_ }

        $err.FullyQualifiedErrorId | Should -Be 'ActionPreferenceStop,AsyncGroup.Commands.InvokeGatherCommand'
    }

    It 'runs them with Ignore for -ErrorAction Ignore' -Skip:($PSVersionTable.PSVersion.Major -lt 7) {
        $seen = & { $ErrorActionPreference = 'Continue'; Get-SeenPreference ErrorActionPreference -With @{ ErrorAction = 'Ignore' } }

        $seen | Should -Be @('Ignore', 'Ignore', 'Ignore')
    }

    It 'keeps the errors out of $Error with -ErrorAction Ignore, the group body''s as the tasks''' -Skip:($PSVersionTable.PSVersion.Major -lt 7) {
        $Error.Clear()
        Invoke-Gather -ErrorAction Ignore { Write-Error 'agIgnored task error' }
        Start-TaskGroup -ErrorAction Ignore { Write-Error 'agIgnored body error' }

        @($Error | Where-Object { "$_" -like 'agIgnored*' }) | Should -BeNullOrEmpty
    }

    It 'runs them with the -ProgressAction given' -Skip:($PSVersionTable.PSVersion -lt [version]'7.4') {
        $seen = & { $ProgressPreference = 'Continue'; Get-SeenPreference ProgressPreference -With @{ ProgressAction = 'SilentlyContinue' } }

        $seen | Should -Be @('SilentlyContinue', 'SilentlyContinue', 'SilentlyContinue')
    }

    It 'collects with -<Collector> the records the caller''s preference, set in a script or function, silences' -ForEach @(
        @{ Collector = 'WarningVariable'; Preference = 'WarningPreference'; Write = 'Write-Warning'; Redirect = '3>&1' }
        @{ Collector = 'ErrorVariable'; Preference = 'ErrorActionPreference'; Write = 'Write-Error'; Redirect = '2>&1' }
        # Information records reach a redirection whatever the preference, as PowerShell has it.
        @{ Collector = 'InformationVariable'; Preference = 'InformationPreference'; Write = 'Write-Information'; Redirect = '6>$null' }
    ) {
        # As for an advanced function: collected, not shown. A preference assigned in a script or
        # function scope holds the name as a string.
        $merged = & ([scriptblock]::Create(
                "`$$Preference = 'SilentlyContinue'
                Invoke-Gather { $Write 'agCollected'; 'out' } -$Collector agCollected $Redirect
                'collected=' + @(`$agCollected).Count"))

        $merged | Should -Be @('out', 'collected=1')
    }
}

Describe 'Progress of Invoke-Gather' {
    It 'shows a progress bar (done / running / queued) for a gather that lasts over a second' {
        # The tasks end only once the caller has received a progress record from Invoke-Gather.
        $r = Invoke-InNewRunspace -Script '
            param($Signal)
            1..2 | Invoke-Gather -ThrottleLimit 1 {
                $s = $using:Signal
                foreach ($i in 1..1500) { if ($s.Streams.Progress.Count -gt 0) { break }; Start-Sleep -Milliseconds 20 }
                $_
            }'

        $r.Output | Should -Be @(1, 2)
        $bars = @($r.Progress | Where-Object Activity -eq 'Invoke-Gather')
        $bars | Should -Not -BeNullOrEmpty
        $bars[0].StatusDescription | Should -Match 'done'
        $bars[0].StatusDescription | Should -Match 'running'
        $bars[0].StatusDescription | Should -Match 'queued'
        $bars[-1].RecordType | Should -Be 'Completed'
    }

    It 'shows no progress bar when $ProgressPreference is SilentlyContinue' {
        $r = Invoke-InNewRunspace -Script '
            param($Signal)
            $ProgressPreference = "SilentlyContinue"
            1..2 | Invoke-Gather { Start-Sleep -Milliseconds 2500; $_ }'

        $r.Output | Should -Be @(1, 2)
        @($r.Progress | Where-Object Activity -eq 'Invoke-Gather') | Should -BeNullOrEmpty
    }
}

Describe 'Session fidelity' {
    It 'starts the workers in the caller''s current file-system location' {
        $dir = Join-Path $TestDrive 'fidelity-location'
        $null = New-Item -ItemType Directory -Path $dir -Force
        Push-Location -LiteralPath $dir
        try {
            Invoke-Gather { $PWD.ProviderPath } | Should -Be (Get-Location).ProviderPath
        }
        finally { Pop-Location }
    }

    It 'follows a drive made again under the same name to another folder' {
        # The caller's provider path is kept per drive between calls: a drive removed and made
        # again is another drive, even at the same path by name.
        $a = Join-Path $TestDrive 'drive-a'
        $b = Join-Path $TestDrive 'drive-b'
        $null = New-Item -ItemType Directory -Path $a, $b -Force
        try {
            $null = New-PSDrive -Name AgSameName -PSProvider FileSystem -Root $a
            Push-Location AgSameName:\
            try { Invoke-Gather { $PWD.ProviderPath } | Should -Be (Get-Item -LiteralPath $a).FullName } finally { Pop-Location }
            Remove-PSDrive -Name AgSameName
            $null = New-PSDrive -Name AgSameName -PSProvider FileSystem -Root $b
            Push-Location AgSameName:\
            try { Invoke-Gather { $PWD.ProviderPath } | Should -Be (Get-Item -LiteralPath $b).FullName } finally { Pop-Location }
        }
        finally { Remove-PSDrive -Name AgSameName -ErrorAction SilentlyContinue }
    }

    It 'starts the workers in the caller''s current location on another provider' {
        Push-Location Env:
        try {
            $expected = $PWD.Path
            Invoke-Gather { $PWD.Path } | Should -Be $expected
        }
        finally { Pop-Location }
    }

    It 'gives the workers the caller''s $ErrorActionPreference' {
        & { $ErrorActionPreference = 'SilentlyContinue'; Invoke-Gather { "$ErrorActionPreference" } } | Should -Be 'SilentlyContinue'
    }

    It 'gives the workers the caller''s $WarningPreference' {
        & { $WarningPreference = 'Ignore'; Invoke-Gather { "$WarningPreference" } } | Should -Be 'Ignore'
    }

    It 'gives the workers the common parameter rather than the caller''s preference (-ErrorAction)' {
        & { $ErrorActionPreference = 'Continue'; Invoke-Gather { "$ErrorActionPreference" } -ErrorAction Ignore } | Should -Be 'Ignore'
    }

    It 'never gives a ConstrainedLanguage caller FullLanguage workers' {
        $r = Invoke-InNewRunspace -Script '
            param($Signal)
            $ExecutionContext.SessionState.LanguageMode = "ConstrainedLanguage"
            Invoke-Gather { $ExecutionContext.SessionState.LanguageMode }'

        "$($r.Output)" | Should -Be 'ConstrainedLanguage'
    }
}

Describe 'Clean reuse of worker runspaces' {
    BeforeAll {
        $script:CallerDir = Join-Path $TestDrive 'reuse-caller'
        $script:OtherDir = Join-Path $TestDrive 'reuse-other'
        $null = New-Item -ItemType Directory -Path $script:CallerDir, $script:OtherDir -Force

        # What a task sees of the state an earlier item may have left behind.
        $script:Observe = {
            [pscustomobject]@{
                Runspace = [runspace]::DefaultRunspace.InstanceId
                Global   = $global:agLeakGlobal
                Script   = $script:agLeakScript
                Function = [bool](Get-Command -Name Get-AgLeak -CommandType Function -ErrorAction Ignore)
                Location = $PWD.ProviderPath
                Errors   = $Error.Count
            }
        }

        # Leaves state behind: global and script variables, a global function, a location change
        # and an $Error entry.
        $script:Dirty = {
            $global:agLeakGlobal = 'dirty'
            $script:agLeakScript = 'dirty'
            function global:Get-AgLeak { 'dirty' }
            Set-Location -LiteralPath $using:OtherDir
            Write-Error 'left in $Error' -ErrorAction SilentlyContinue
        }
    }

    BeforeEach {
        Push-Location -LiteralPath $script:CallerDir
    }

    AfterEach {
        Pop-Location
    }

    Context 'between the items of one call' {
        BeforeAll {
            # Two items on one worker (-ThrottleLimit 1): whichever runs first dirties the worker
            # and outputs its runspace id; the other outputs what it observes.
            $script:ItemObservations = {
                $dirty = $script:Dirty.ToString()
                $observe = $script:Observe.ToString()
                $sb = [scriptblock]::Create(@"
`$f = `$using:agOrder
if (-not `$f.Dirtied) {
    `$f.Dirtied = `$true
    $dirty
    [pscustomobject]@{ First = [runspace]::DefaultRunspace.InstanceId }
}
else { $observe }
"@)
                $agOrder = New-SyncHashtable
                $CallerDir = $script:CallerDir
                $OtherDir = $script:OtherDir
                $out = @(1..2 | Invoke-Gather -ThrottleLimit 1 -ScriptBlock $sb)
                $first = @($out | Where-Object { $_.PSObject.Properties['First'] })[0].First
                @($out | Where-Object { $_.PSObject.Properties['Global'] })[0] | Add-Member -NotePropertyName FirstRunspace -NotePropertyValue $first -PassThru
            }
        }

        It 'runs the two items on the same worker (precondition)' {
            $seen = & $script:ItemObservations
            $seen.Runspace | Should -Be $seen.FirstRunspace
        }

        It 'does not carry a global variable over to the next item' {
            (& $script:ItemObservations).Global | Should -BeNullOrEmpty
        }

        It 'does not carry a script-scope variable over to the next item' {
            (& $script:ItemObservations).Script | Should -BeNullOrEmpty
        }

        It 'does not carry a global function over to the next item' {
            (& $script:ItemObservations).Function | Should -BeFalse
        }

        It 'does not carry a location change over to the next item' {
            (& $script:ItemObservations).Location | Should -Be (Get-Location).ProviderPath
        }

        It 'does not carry $Error entries over to the next item' {
            (& $script:ItemObservations).Errors | Should -Be 0
        }

        It 'does not carry a failed $? over to the next item' {
            $agOrder = New-SyncHashtable
            $result = 1..2 | Invoke-Gather -ThrottleLimit 1 {
                $f = $using:agOrder
                if (-not $f.Failed) { $f.Failed = $true; Write-Error 'fails the last command' -ErrorAction SilentlyContinue }
                else { $? }
            }
            $result | Should -BeTrue
        }
    }

    Context 'between calls' {
        BeforeAll {
            # Dirty every worker one call uses, then observe from the next call; at least one
            # worker must be reused for the test to mean anything.
            $script:CallObservations = {
                $CallerDir = $script:CallerDir
                $OtherDir = $script:OtherDir
                $used = @(1..4 | Invoke-Gather -ThrottleLimit 4 -ScriptBlock ([scriptblock]::Create($script:Dirty.ToString() + "`n[runspace]::DefaultRunspace.InstanceId")))
                # A worker goes back to the pool shortly after the call returns: try a few calls
                # and keep what the reused workers observed.
                $seen = @()
                foreach ($attempt in 1..10) {
                    Wait-NoBusyWorker
                    $seen = @(1..4 | Invoke-Gather -ThrottleLimit 4 -ScriptBlock $script:Observe | Where-Object { $used -contains $_.Runspace })
                    if ($seen.Count -gt 0) { break }
                }
                [pscustomobject]@{ Used = $used; Seen = $seen }
            }
        }

        It 'reuses a worker of the previous call (precondition)' {
            $r = & $script:CallObservations
            $r.Seen | Should -Not -BeNullOrEmpty
        }

        It 'does not carry a global variable over to the next call' {
            $r = & $script:CallObservations
            @($r.Seen | Where-Object { $_.Global }) | Should -HaveCount 0
        }

        It 'does not carry a script-scope variable over to the next call' {
            $r = & $script:CallObservations
            @($r.Seen | Where-Object { $_.Script }) | Should -HaveCount 0
        }

        It 'does not carry a global function over to the next call' {
            $r = & $script:CallObservations
            @($r.Seen | Where-Object { $_.Function }) | Should -HaveCount 0
        }

        It 'does not carry a location change over to the next call' {
            $r = & $script:CallObservations
            $r.Seen | ForEach-Object { $_.Location } | Should -Be @($r.Seen | ForEach-Object { (Get-Location).ProviderPath })
        }

        It 'does not carry $Error entries over to the next call' {
            $r = & $script:CallObservations
            @($r.Seen | Where-Object { $_.Errors -gt 0 }) | Should -HaveCount 0
        }
    }
}

Describe 'Worker pool' {
    It 'leaves no worker busy after repeated calls' {
        foreach ($i in 1..10) { $null = 1..4 | Invoke-Gather -ThrottleLimit 4 { $_ } }
        Wait-NoBusyWorker
        Get-BusyWorker | Should -HaveCount 0
    }

    It 'does not create new workers for each call: the number of workers stays bounded' {
        $null = 1..4 | Invoke-Gather -ThrottleLimit 4 { $_ }
        Wait-NoBusyWorker
        $before = Get-WorkerCreatedCount

        foreach ($i in 1..20) {
            $null = 1..4 | Invoke-Gather -ThrottleLimit 4 { $_ }
            Wait-NoBusyWorker
        }

        # A worker may still be on its way back to the pool when the next call starts; 20 calls
        # without pooling would have created 80.
        (Get-WorkerCreatedCount) - $before | Should -BeLessOrEqual 4
    }
}

Describe 'A task stuck in an uninterruptible .NET call' {
    AfterEach {
        Wait-NoBusyWorker -TimeoutSeconds 30
    }

    It 'is abandoned with a warning after the grace period, and the cmdlet returns while it is still stuck' {
        $agStuck = New-SyncHashtable
        $agStuck.Gate = [System.Threading.ManualResetEventSlim]::new($false)
        try {
            $err = try {
                Invoke-Gather -Timeout 0.5 {
                    $s = $using:agStuck
                    $s.Runspace = [runspace]::DefaultRunspace.InstanceId
                    [void]$s.Gate.Wait(60000)
                    $s.After = $true
                } -WarningVariable agWarnings 3>$null
            }
            catch { $_ }

            $err.FullyQualifiedErrorId | Should -Be 'AsyncGroup.Timeout,AsyncGroup.Commands.InvokeGatherCommand'
            $agStuck.After | Should -BeNullOrEmpty -Because 'the cmdlet must not wait for the stuck call'
            @($agWarnings | Where-Object { $_.Message -match 'abandoned' }) | Should -HaveCount 1
        }
        finally {
            $agStuck.Gate.Set()
        }
    }

    It 'has its runspace disposed, never reused, once the stuck call ends' {
        $agStuck = New-SyncHashtable
        $agStuck.Gate = [System.Threading.ManualResetEventSlim]::new($false)
        try {
            $null = try {
                Invoke-Gather -Timeout 0.5 { $s = $using:agStuck; $s.Runspace = [runspace]::DefaultRunspace.InstanceId; [void]$s.Gate.Wait(60000) } 3>$null
            }
            catch { $_ }
        }
        finally {
            $agStuck.Gate.Set()
        }

        Wait-Until { -not (Get-Runspace | Where-Object InstanceId -eq $agStuck.Runspace) } -Because 'the abandoned runspace to be disposed'
        $again = @(1..4 | Invoke-Gather -ThrottleLimit 4 { [runspace]::DefaultRunspace.InstanceId })
        $again | Should -Not -Contain $agStuck.Runspace
    }

    It 'does not hold up Ctrl+C beyond the grace period' {
        $s = New-SyncHashtable
        $s.Gate = [System.Threading.ManualResetEventSlim]::new($false)
        try {
            $r = Invoke-StopHarness -Signal $s -Script '
                param($Signal)
                Invoke-Gather { $s = $using:Signal; $s.Started.Signal(); [void]$s.Gate.Wait(60000); $s.After = $true }'

            $r.Completed | Should -BeTrue -Because 'the stopped pipeline must return within 5 s'
            $r.State | Should -Be 'Stopped'
            $s.After | Should -BeNullOrEmpty
        }
        finally {
            $s.Gate.Set()
        }
    }
}
