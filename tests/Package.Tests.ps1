# The package build.ps1 -Task Package makes (build/New-ModulePackage.ps1): a .nupkg that
# PSResourceGet installs into a module path, from which a fresh process imports and uses it.

BeforeDiscovery {
    # PSResourceGet ships with PowerShell 7.4+; Windows PowerShell 5.1 needs it installed.
    $script:HasPSResourceGet = [bool](Get-Command -Name Compress-PSResource -ErrorAction SilentlyContinue)
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')
    $script:Packer = Join-Path $PSScriptRoot '../build/New-ModulePackage.ps1'
    $script:Work = Join-Path ([System.IO.Path]::GetTempPath()) ('AsyncGroupPackage-' + [guid]::NewGuid().ToString('N'))
    $script:StagedDir = Split-Path -Parent $script:AsyncGroupManifest
    $script:Version = (Import-PowerShellDataFile -Path $script:AsyncGroupManifest).ModuleVersion
}

AfterAll {
    if ($script:Repository -and (Get-PSResourceRepository -Name $script:Repository -ErrorAction SilentlyContinue)) {
        Unregister-PSResourceRepository -Name $script:Repository
    }
    if (Test-Path -LiteralPath $script:Work) {
        Remove-Item -LiteralPath $script:Work -Recurse -Force -ErrorAction SilentlyContinue
    }
}

Describe 'The module package' {
    BeforeAll {
        if (-not (Get-Command -Name Compress-PSResource -ErrorAction SilentlyContinue)) { return }
        $script:Package = & $script:Packer -ModulePath $script:StagedDir -DestinationPath (Join-Path $script:Work 'feed')
    }

    It 'is named <Name>.<Version>.nupkg and holds the manifest and both assemblies' -Skip:(-not $script:HasPSResourceGet) {
        $script:Package.Name | Should -Be "AsyncGroup.$($script:Version).nupkg"
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $zip = [System.IO.Compression.ZipFile]::OpenRead($script:Package.FullName)
        try {
            $entries = @($zip.Entries | ForEach-Object { $_.FullName })
        }
        finally {
            $zip.Dispose()
        }
        $entries | Should -Contain 'AsyncGroup.psd1'
        $entries | Should -Contain 'AsyncGroup.dll'
        $entries | Should -Contain 'AsyncGroup.Core.dll'
        $entries | Should -Contain 'AsyncGroup.format.ps1xml'
        $entries | Should -Contain 'AsyncGroup.nuspec'
    }

    It 'installs with PSResourceGet into a module path, and a fresh process imports it by name and gathers' -Skip:(-not $script:HasPSResourceGet) {
        $script:Repository = 'AsyncGroupTest-' + [guid]::NewGuid().ToString('N').Substring(0, 8)
        Register-PSResourceRepository -Name $script:Repository -Uri (Join-Path $script:Work 'feed') -Trusted
        $modules = Join-Path $script:Work 'Modules'
        New-Item -ItemType Directory -Path $modules -Force | Out-Null
        Save-PSResource -Name AsyncGroup -Version $script:Version -Repository $script:Repository -Path $modules -TrustRepository -Quiet

        Test-Path -LiteralPath (Join-Path $modules "AsyncGroup/$($script:Version)/AsyncGroup.psd1") | Should -BeTrue

        $sep = [System.IO.Path]::PathSeparator
        $command = @(
            "`$env:PSModulePath = '$modules' + '$sep' + `$env:PSModulePath"
            'Import-Module AsyncGroup -ErrorAction Stop'
            '(Get-Module AsyncGroup).ModuleBase'
            '1..3 | Invoke-Gather { $_ * 2 }'
        ) -join '; '
        $run = Invoke-ChildPowerShell -Command $command -TimeoutSeconds 120
        $run.TimedOut | Should -BeFalse
        $run.ErrorText | Should -BeNullOrEmpty
        $run.Output[0] | Should -BeLike "$modules*"
        $run.Output[1..3] | Should -Be @('2', '4', '6')
    }
}

Describe 'build/New-ModulePackage.ps1' {
    It 'refuses a folder that is not a staged module, saying what to run' {
        $empty = Join-Path $script:Work 'not-a-module'
        New-Item -ItemType Directory -Path $empty -Force | Out-Null
        { & $script:Packer -ModulePath $empty -DestinationPath (Join-Path $script:Work 'x') } |
            Should -Throw -ExpectedMessage '*has no not-a-module.psd1*build.ps1 -Task Build*'
    }
}
