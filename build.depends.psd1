@{
    # Build and test dependencies, pinned in one place and read by build.ps1.
    #
    # Modules: when a module of the same major version is already importable it is used as
    # is; otherwise build.ps1 installs exactly this version with
    # Install-Module -RequiredVersion -Scope CurrentUser, and only for the task that needs it.
    Pester        = '5.7.1'     # -Task Test
    'Microsoft.PowerShell.PlatyPS' = '1.0.3'  # -Task Docs only, never installed: see Invoke-Docs in build.ps1
    PowerShellGet = '2.2.5'     # -Task Package (Register-PSRepository, Publish-Module); checked, never installed

    # Minimum .NET SDK (the test project targets net10.0).
    DotNetSdk     = '10.0.100'
}
