@{
    RootModule           = 'AsyncGroup.dll'
    ModuleVersion        = '0.1.0'
    CompatiblePSEditions = @('Desktop', 'Core')
    GUID                 = '5d0b6c3e-8f53-4a4e-9a55-2b1f3f6d7a41'
    Author               = 'AsyncGroup contributors'
    CompanyName          = 'AsyncGroup'
    Copyright            = '(c) 2026 AsyncGroup contributors. MIT License.'
    Description          = 'Structured concurrency for PowerShell script blocks, after Python asyncio: gather (Invoke-Gather), wait (Wait-AsyncGroup), TaskGroup (Start-TaskGroup), as_completed, wait_for (Wait-AsyncTask) and cancellation (Stop-AsyncTask), with return-exceptions, timeouts, throttling and live streams, on pooled runspaces. Windows PowerShell 5.1 and PowerShell 7.'
    PowerShellVersion    = '5.1'
    DotNetFrameworkVersion = '4.7.2'
    FormatsToProcess     = @('AsyncGroup.format.ps1xml')
    CmdletsToExport      = @(
        'Get-AsyncTask'
        'Invoke-Gather'
        'Receive-AsyncTask'
        'Start-AsyncTask'
        'Start-TaskGroup'
        'Stop-AsyncTask'
        'Wait-AsyncGroup'
        'Wait-AsyncTask'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('asyncio', 'parallel', 'concurrency', 'async', 'gather', 'TaskGroup', 'cancellation', 'timeout', 'runspace', 'PSEdition_Desktop', 'PSEdition_Core', 'Windows', 'Linux', 'MacOS')
            LicenseUri   = 'https://github.com/asyncgroup/AsyncGroup/blob/main/LICENSE'
            ProjectUri   = 'https://github.com/asyncgroup/AsyncGroup'
            ReleaseNotes = 'Release notes: https://github.com/asyncgroup/AsyncGroup/blob/main/CHANGELOG.md'
        }
    }
}
