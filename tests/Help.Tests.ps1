# Get-Help works for the staged module as a user sees it: every cmdlet's synopsis, description,
# parameters and examples come from the shipped MAML (en-US/AsyncGroup.dll-Help.xml), and the
# about topic from en-US/about_AsyncGroup.help.txt. docs/help is the reference for what they say;
# tests/AsyncGroup.Tests/Metadata/GeneratedHelpTests.cs checks the committed files in detail.

BeforeDiscovery {
    # One case per cmdlet page, with its examples' titles and first code lines.
    $script:Pages = foreach ($file in Get-ChildItem -Path (Join-Path $PSScriptRoot '../docs/help') -Filter *.md |
            Where-Object { $_.Name -notlike 'about_*' } | Sort-Object -Property Name) {
        $section = ''
        $examples = New-Object System.Collections.Generic.List[object]
        $inFence = $false
        $wantCode = $false
        foreach ($line in Get-Content -LiteralPath $file.FullName) {
            if ($line -match '^\s*```') {
                $inFence = -not $inFence
                continue
            }
            if ($inFence) {
                if ($wantCode -and $line.Trim()) {
                    $examples[$examples.Count - 1].Code = $line.TrimEnd()
                    $wantCode = $false
                }
                continue
            }
            if ($line -match '^## (.+)$') {
                $section = $Matches[1].Trim()
            }
            elseif ($section -eq 'EXAMPLES' -and $line -match '^### (.+)$') {
                $examples.Add([pscustomobject]@{ Title = $Matches[1].Trim(); Code = $null })
                $wantCode = $true
            }
        }
        @{ Name = $file.BaseName; Examples = $examples.ToArray() }
    }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'common.ps1')

    # Help as text, wide enough that no line is wrapped.
    function Get-HelpText {
        param([string] $Name, [string] $View)
        $arguments = @{ Name = $Name }
        if ($View) { $arguments[$View] = $true }
        Get-Help @arguments | Out-String -Width 4096
    }

    $script:CommonParameters = [System.Management.Automation.PSCmdlet]::CommonParameters +
        [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
}

Describe 'The staged module ships its help files' {
    It 'has en-US/<_>' -ForEach 'AsyncGroup.dll-Help.xml', 'about_AsyncGroup.help.txt' {
        $moduleDir = Split-Path -Parent $script:AsyncGroupManifest
        Join-Path $moduleDir "en-US/$_" | Should -Exist
    }

    It 'documents every exported cmdlet' {
        $documented = @(Get-ChildItem -Path (Join-Path $PSScriptRoot '../docs/help') -Filter *.md | ForEach-Object { $_.BaseName })
        foreach ($name in (Get-Module -Name AsyncGroup).ExportedCmdlets.Keys) {
            $documented | Should -Contain $name
        }
    }
}

Describe 'Get-Help <Name>' -ForEach $Pages {
    BeforeAll {
        $script:Help = Get-Help -Name $Name -Full
    }

    It 'comes from the shipped MAML, with a synopsis and a description' {
        # Without a help file Get-Help makes up a synopsis from the syntax and has no description.
        $script:Help.Synopsis | Should -Not -BeNullOrEmpty
        $script:Help.Synopsis | Should -Not -Match "^\s*$([regex]::Escape($Name))\s+\["
        ($script:Help.description | Out-String).Trim() | Should -Not -BeNullOrEmpty
    }

    It '-Full shows every parameter of the cmdlet with its type' {
        $text = Get-HelpText -Name $Name -View Full
        $command = Get-Command -Name $Name
        $parameters = @($command.Parameters.Values | Where-Object { $script:CommonParameters -notcontains $_.Name })
        $parameters.Count | Should -BeGreaterThan 0
        foreach ($parameter in $parameters) {
            $documented = @($script:Help.parameters.parameter | Where-Object { $_.name -eq $parameter.Name })
            $documented.Count | Should -Be 1 -Because "-$($parameter.Name) must be documented once"
            ($documented[0].description | Out-String).Trim() | Should -Not -BeNullOrEmpty -Because "-$($parameter.Name) needs a description"
            $text | Should -Match "(?m)^\s+-$($parameter.Name)\b" -Because "Get-Help $Name -Full must list -$($parameter.Name)"
            $documented[0].type.name | Should -Be $parameter.ParameterType.Name -Because "-$($parameter.Name)'s type"
            $fromPipeline = @($parameter.ParameterSets.Values |
                    Where-Object { $_.ValueFromPipeline -or $_.ValueFromPipelineByPropertyName }).Count -gt 0
            $documented[0].pipelineInput | Should -Match ('^' + $fromPipeline.ToString().ToLowerInvariant()) -Because "whether -$($parameter.Name) accepts pipeline input"
        }
    }

    It '-Examples shows every example, titled, with its code' {
        $text = Get-HelpText -Name $Name -View Examples
        $Examples.Count | Should -BeGreaterOrEqual 2
        @($script:Help.examples.example).Count | Should -Be $Examples.Count
        foreach ($example in $Examples) {
            $text | Should -BeLike "*$([WildcardPattern]::Escape($example.Title))*"
            $text | Should -BeLike "*$([WildcardPattern]::Escape($example.Code))*"
        }
        # Code is shown as code, not as markdown.
        $text | Should -Not -Match '```'
    }
}

Describe 'Get-Help about_AsyncGroup' {
    It 'shows the about topic' {
        $text = Get-Help -Name about_AsyncGroup | Out-String -Width 4096
        $text | Should -Match '(?m)^TOPIC\s*$'
        $text | Should -Match '(?m)^\s+about_AsyncGroup\s*$'
        $text | Should -Match '(?m)^SHORT DESCRIPTION\s*$'
        $text | Should -Match '(?m)^LONG DESCRIPTION\s*$'
        foreach ($name in (Get-Module -Name AsyncGroup).ExportedCmdlets.Keys) {
            $text | Should -BeLike "*$name*"
        }
    }
}
