BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
    $script:Manifest = Import-PowerShellDataFile -LiteralPath $script:AsyncGroupManifest
    $script:Module = Get-Module -Name AsyncGroup
}

Describe 'The staged module' {
    It 'exports exactly the cmdlets the manifest lists, with no wildcards' {
        $script:Manifest.CmdletsToExport | Should -Not -Contain '*'
        $exported = @($script:Module.ExportedCmdlets.Keys | Sort-Object)
        $exported | Should -Be @($script:Manifest.CmdletsToExport | Sort-Object)
    }

    It 'exports the eight cmdlets' {
        @($script:Module.ExportedCmdlets.Keys | Sort-Object) | Should -Be @(
            'Get-AsyncTask', 'Invoke-Gather', 'Receive-AsyncTask', 'Start-AsyncTask',
            'Start-TaskGroup', 'Stop-AsyncTask', 'Wait-AsyncGroup', 'Wait-AsyncTask')
    }

    It 'exports every cmdlet class of the assembly' {
        $classes = @([AsyncGroup.AsyncTask].Assembly.GetExportedTypes() |
                Where-Object { $_.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false).Count -gt 0 } |
                ForEach-Object {
                    $a = $_.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0]
                    "$($a.VerbName)-$($a.NounName)"
                } | Sort-Object)
        $classes | Should -Be @($script:Manifest.CmdletsToExport | Sort-Object)
    }

    It 'exports no functions, variables or aliases' {
        @($script:Manifest.FunctionsToExport) | Should -HaveCount 0
        @($script:Manifest.VariablesToExport) | Should -HaveCount 0
        @($script:Manifest.AliasesToExport) | Should -HaveCount 0
    }

    It 'supports Windows PowerShell 5.1 and PowerShell 7' {
        $script:Manifest.PowerShellVersion | Should -Be '5.1'
        $script:Manifest.CompatiblePSEditions | Should -Contain 'Desktop'
        $script:Manifest.CompatiblePSEditions | Should -Contain 'Core'
        $script:Manifest.PrivateData.PSData.Tags | Should -Contain 'PSEdition_Desktop'
        $script:Manifest.PrivateData.PSData.Tags | Should -Contain 'PSEdition_Core'
    }

    It 'declares an output type on <_>' -ForEach @(
        'Get-AsyncTask', 'Invoke-Gather', 'Receive-AsyncTask', 'Start-AsyncTask',
        'Start-TaskGroup', 'Stop-AsyncTask', 'Wait-AsyncGroup', 'Wait-AsyncTask') {
        (Get-Command -Name $_ -Module AsyncGroup).OutputType | Should -Not -BeNullOrEmpty
    }

    It 'has a table view for <_>' -ForEach @('AsyncGroup.AsyncTask', 'AsyncGroup.WaitResult', 'AsyncGroup.Core.TaskGroupException') {
        $view = Get-FormatData -TypeName $_
        $view | Should -Not -BeNullOrEmpty
        @($view.FormatViewDefinition | Where-Object { $_.Control -is [System.Management.Automation.TableControl] }) | Should -Not -BeNullOrEmpty
    }
}
