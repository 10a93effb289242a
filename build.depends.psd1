@{
    # Build and test dependencies, pinned in one place and read by build.ps1. None comes from the
    # PowerShell Gallery.
    #
    # PowerShell itself is pinned as a local .NET tool in .config/dotnet-tools.json (7.6.9):
    # 'dotnet tool restore', then 'dotnet pwsh'. An installed pwsh (or Windows PowerShell 5.1)
    # runs build.ps1 just as well.
    #
    # Modules: an importable module of the same major version, not older than the pin, is used
    # as is. Otherwise Pester is restored from NuGet (package Pester, exactly this version) into
    # the ignored .tools/packages folder (build/Tools.proj), only for the task that needs it.
    # platyPS is never installed by the build: -Task Docs says how to get it (Invoke-Docs).
    Pester        = '5.9.1'     # -Task Test
    'Microsoft.PowerShell.PlatyPS' = '1.0.3'  # -Task Docs only

    # Minimum .NET SDK (the test project targets net10.0).
    DotNetSdk     = '10.0.100'
}
