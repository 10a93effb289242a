# A throwaway OpenSSH endpoint on 127.0.0.1 for the remoting tests and the remote benchmark:
# dot-source it, then
#
#   $endpoint = Start-SshTestEndpoint        # $null when no SSH server can be started here
#   $sessions = New-SshTestSession $endpoint -Count 2
#   ...
#   Stop-SshTestEndpoint $endpoint           # removes its sessions, stops sshd, deletes its files
#
# Everything lives in a temporary folder: a host key, a user key, authorized_keys, known_hosts
# and an sshd_config whose 'powershell' subsystem starts this same PowerShell (pwsh.dll under
# dotnet when PowerShell is the .NET tool). Nothing system-wide is changed except that /run/sshd
# (sshd's privilege-separation directory) is created when missing. When no server can be started
# (no sshd or ssh binary, not on Linux/macOS, not root), $script:SshSkipReason says why.
# Windows PowerShell 5.1-safe syntax.

$script:SshSkipReason = $null

function Get-SshToolPath {
    param([string] $Name)
    $command = Get-Command -Name $Name -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($null -ne $command) { return $command.Source }
    foreach ($dir in @('/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin')) {
        $path = Join-Path $dir $Name
        if (Test-Path -LiteralPath $path -PathType Leaf) { return $path }
    }
    $null
}

function Get-FreeLoopbackPort {
    $listener = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Loopback, 0)
    $listener.Start()
    try { $listener.LocalEndpoint.Port } finally { $listener.Stop() }
}

function Start-SshTestEndpoint {
    <#
    .SYNOPSIS
    Starts sshd on a free 127.0.0.1 port; returns the endpoint, or $null (see $script:SshSkipReason).
    #>
    param([double] $TimeoutSeconds = 30)

    $script:SshSkipReason = $null
    if (-not [string]::IsNullOrEmpty($env:ASYNCGROUP_NO_SSH)) {
        $script:SshSkipReason = 'ASYNCGROUP_NO_SSH is set'
        return $null
    }
    if ($PSVersionTable.PSVersion.Major -lt 7 -or $IsWindows) {
        $script:SshSkipReason = 'the SSH test endpoint needs PowerShell 7 on Linux or macOS'
        return $null
    }
    $sshd = Get-SshToolPath 'sshd'
    $ssh = Get-SshToolPath 'ssh'
    $keygen = Get-SshToolPath 'ssh-keygen'
    if ($null -eq $sshd -or $null -eq $ssh -or $null -eq $keygen) {
        $script:SshSkipReason = 'no OpenSSH server/client here (install openssh-server and openssh-client; .ci/run does when root)'
        return $null
    }
    $uid = (& id -u) 2>$null
    if ("$uid" -ne '0') {
        $script:SshSkipReason = "sshd must run as root to accept a login (uid is $uid)"
        return $null
    }

    $dir = Join-Path ([System.IO.Path]::GetTempPath()) ('ag-ssh-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $dir | Out-Null
    & chmod 700 $dir
    if (-not (Test-Path -LiteralPath '/run/sshd')) {
        New-Item -ItemType Directory -Path '/run/sshd' -Force | Out-Null
        & chmod 755 '/run/sshd'
    }

    $hostKey = Join-Path $dir 'host_ed25519'
    $userKey = Join-Path $dir 'user_ed25519'
    & $keygen -q -t ed25519 -N '' -f $hostKey | Out-Null
    & $keygen -q -t ed25519 -N '' -f $userKey | Out-Null
    Copy-Item -LiteralPath "$userKey.pub" -Destination (Join-Path $dir 'authorized_keys')

    # The subsystem is this same PowerShell, started by a wrapper (Subsystem takes one command line).
    $pwsh = Get-PowerShellCommand
    $commandLine = (@($pwsh.FilePath) + @($pwsh.Arguments) + @('-sshs', '-NoLogo', '-NoProfile') | ForEach-Object { "'" + ($_ -replace "'", "'\''") + "'" }) -join ' '
    $wrapper = Join-Path $dir 'pwsh-subsystem.sh'
    $exports = ''
    foreach ($name in @('DOTNET_ROOT', 'PSModulePath', 'DOTNET_CLI_TELEMETRY_OPTOUT')) {
        $value = [Environment]::GetEnvironmentVariable($name)
        if (-not [string]::IsNullOrEmpty($value) -and $name -ne 'PSModulePath') {
            $exports += "export $name='" + ($value -replace "'", "'\''") + "'`n"
        }
    }
    Set-Content -LiteralPath $wrapper -Value ("#!/bin/sh`nexport POWERSHELL_TELEMETRY_OPTOUT=1 POWERSHELL_UPDATECHECK=Off`n" + $exports + "exec $commandLine`n") -NoNewline
    & chmod 755 $wrapper

    $port = Get-FreeLoopbackPort
    $config = Join-Path $dir 'sshd_config'
    $pidFile = Join-Path $dir 'sshd.pid'
    @(
        "Port $port"
        'ListenAddress 127.0.0.1'
        "HostKey $hostKey"
        "PidFile $pidFile"
        "AuthorizedKeysFile $(Join-Path $dir 'authorized_keys')"
        'PermitRootLogin prohibit-password'
        'PubkeyAuthentication yes'
        'PasswordAuthentication no'
        'KbdInteractiveAuthentication no'
        'UsePAM no'
        'StrictModes no'
        'MaxSessions 100'
        'MaxStartups 100:30:200'
        'LogLevel ERROR'
        "Subsystem powershell $wrapper"
    ) | Set-Content -LiteralPath $config

    $knownHosts = Join-Path $dir 'known_hosts'
    $hostPublic = (Get-Content -LiteralPath "$hostKey.pub" -Raw).Trim()
    Set-Content -LiteralPath $knownHosts -Value "[127.0.0.1]:$port $hostPublic"

    # A client config of our own: New-PSSession runs 'ssh' with -F only through -Options on 7.3+,
    # so the options (known_hosts, no agent) are passed that way.
    $log = Join-Path $dir 'sshd.log'
    $process = Start-Process -FilePath $sshd -ArgumentList @('-D', '-e', '-f', $config) -RedirectStandardError $log -PassThru
    $endpoint = [pscustomobject]@{
        HostName    = '127.0.0.1'
        Port        = $port
        UserName    = 'root'
        KeyFilePath = $userKey
        KnownHosts  = $knownHosts
        Directory   = $dir
        Process     = $process
        Sessions    = [System.Collections.Generic.List[object]]::new()
    }

    # Ready when the port accepts a connection (and sshd has not died).
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while ($true) {
        if ($process.HasExited) {
            $script:SshSkipReason = "sshd exited at start: $((Get-Content -LiteralPath $log -Raw -ErrorAction SilentlyContinue))"
            Stop-SshTestEndpoint $endpoint
            return $null
        }
        $client = [System.Net.Sockets.TcpClient]::new()
        try {
            $client.Connect('127.0.0.1', $port)
            break
        }
        catch {
            if ([DateTime]::UtcNow -gt $deadline) {
                $script:SshSkipReason = "sshd did not listen on 127.0.0.1:$port within $TimeoutSeconds s"
                Stop-SshTestEndpoint $endpoint
                return $null
            }
            Start-Sleep -Milliseconds 50
        }
        finally {
            $client.Dispose()
        }
    }

    # A first session proves the subsystem works; without one the endpoint is useless.
    try {
        $probe = New-SshTestSession $endpoint -Count 1
        $null = Invoke-Command -Session $probe -ScriptBlock { $PID } -ErrorAction Stop
    }
    catch {
        $script:SshSkipReason = "an SSH session to the test endpoint could not be opened: $($_.Exception.Message)"
        Stop-SshTestEndpoint $endpoint
        return $null
    }

    $endpoint
}

function Get-SshTestOption {
    <# The ssh options every session to the endpoint uses: its own known_hosts, its key only, no prompts. #>
    param([Parameter(Mandatory, Position = 0)] $Endpoint)
    @{
        StrictHostKeyChecking = 'yes'
        UserKnownHostsFile    = $Endpoint.KnownHosts
        IdentitiesOnly        = 'yes'
        BatchMode             = 'yes'
    }
}

function Get-SshTestSessionScript {
    <#
    .SYNOPSIS
    The text of one line for a child process's script that opens a session to the endpoint into
    $<Variable> with the same options as New-SshTestSession.
    #>
    param(
        [Parameter(Mandatory, Position = 0)] $Endpoint,
        [Parameter(Mandatory)] [string] $Variable
    )
    $options = Get-SshTestOption $Endpoint
    $pairs = foreach ($name in @($options.Keys | Sort-Object)) { "$name = '$($options[$name])'" }
    "`$$Variable = New-PSSession -HostName $($Endpoint.HostName) -Port $($Endpoint.Port) -UserName $($Endpoint.UserName) " +
        "-KeyFilePath '$($Endpoint.KeyFilePath)' -SSHTransport -Options @{ $($pairs -join '; ') }"
}

function New-SshTestSession {
    <#
    .SYNOPSIS
    Opens -Count PSSessions to the endpoint (each a separate SSH connection and remote pwsh process).
    #>
    param(
        [Parameter(Mandatory, Position = 0)] $Endpoint,
        [int] $Count = 1
    )
    $options = Get-SshTestOption $Endpoint
    $new = for ($i = 0; $i -lt $Count; $i++) {
        New-PSSession -HostName $Endpoint.HostName -Port $Endpoint.Port -UserName $Endpoint.UserName `
            -KeyFilePath $Endpoint.KeyFilePath -SSHTransport -Options $options -ErrorAction Stop
    }
    foreach ($session in @($new)) { $Endpoint.Sessions.Add($session) }
    @($new)
}

function Get-SshSessionProcessId {
    <# The process id of the remote pwsh serving each session. #>
    param([Parameter(Mandatory, Position = 0)] $Session)
    foreach ($s in @($Session)) { Invoke-Command -Session $s -ScriptBlock { $PID } }
}

function Stop-SshTestEndpoint {
    param([Parameter(Position = 0)] $Endpoint)
    if ($null -eq $Endpoint) { return }
    foreach ($session in @($Endpoint.Sessions)) {
        Remove-PSSession -Session $session -ErrorAction SilentlyContinue
    }
    $Endpoint.Sessions.Clear()
    if ($null -ne $Endpoint.Process -and -not $Endpoint.Process.HasExited) {
        try { $Endpoint.Process.Kill() } catch { }
        $null = $Endpoint.Process.WaitForExit(10000)
    }
    Remove-Item -LiteralPath $Endpoint.Directory -Recurse -Force -ErrorAction SilentlyContinue
}
