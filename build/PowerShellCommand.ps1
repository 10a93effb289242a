# Shared by build.ps1 and the Pester suite (tests/common.ps1): dot-source it.
# Windows PowerShell 5.1-safe syntax only.

function Get-PowerShellCommand {
    <#
    .SYNOPSIS
    How to start a child process of this same PowerShell: @{ FilePath; Arguments } where Arguments
    go before the child's own arguments. Covers the three ways PowerShell runs:
    - a .NET tool (dotnet tool install PowerShell): the process is 'dotnet' and $PSHOME holds
      pwsh.dll, so the child is 'dotnet <PSHOME>/pwsh.dll';
    - a native install: $PSHOME/pwsh (pwsh.exe on Windows);
    - Windows PowerShell 5.1: $PSHOME/powershell.exe.
    #>
    $candidates = @('pwsh.exe', 'pwsh', 'powershell.exe')
    $processPath = (Get-Process -Id $PID).Path
    $processName = [System.IO.Path]::GetFileNameWithoutExtension($processPath)
    if ($processName -eq 'dotnet') {
        $dll = Join-Path $PSHOME 'pwsh.dll'
        if (Test-Path -LiteralPath $dll -PathType Leaf) {
            return @{ FilePath = $processPath; Arguments = @($dll) }
        }
    }
    elseif ($candidates -contains [System.IO.Path]::GetFileName($processPath)) {
        return @{ FilePath = $processPath; Arguments = @() }
    }
    foreach ($name in $candidates) {
        $path = Join-Path $PSHOME $name
        if (Test-Path -LiteralPath $path -PathType Leaf) {
            return @{ FilePath = $path; Arguments = @() }
        }
    }
    throw "Cannot tell how to start a child PowerShell: the process is '$processPath' and `$PSHOME ('$PSHOME') holds none of pwsh.dll, $($candidates -join ', ')."
}
