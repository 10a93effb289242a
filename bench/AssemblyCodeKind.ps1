# Shared by Invoke-CmdletBench.ps1 and New-PrecompiledPowerShell.ps1: dot-source it.

# What code an assembly file holds: 'ReadyToRun' (IL with precompiled native code, as
# crossgen2 writes it), 'IL' (IL only: the JIT compiles each method as it first runs), or $null
# when it cannot tell (not a .NET assembly, or no System.Reflection.PortableExecutable to read it
# with, as in Windows PowerShell 5.1).
function Get-AssemblyCodeKind([string] $Path) {
    try {
        $stream = [IO.File]::OpenRead($Path)
        try {
            $header = [System.Reflection.PortableExecutable.PEReader]::new($stream).PEHeaders.CorHeader
            if ($null -eq $header -or $header.MetadataDirectory.Size -eq 0) { $null }
            elseif ($header.ManagedNativeHeaderDirectory.Size -gt 0) { 'ReadyToRun' }
            else { 'IL' }
        }
        finally { $stream.Dispose() }
    }
    catch {
        $null
    }
}
