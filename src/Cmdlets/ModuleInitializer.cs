using System.Management.Automation;
using AsyncGroup.Execution;

namespace AsyncGroup;

/// <summary>
/// Import-Module AsyncGroup: starts opening a worker in the background (<see cref="WorkerPool.WarmUp"/>),
/// so that a cold script's first call does not pay for all of it.
/// </summary>
public sealed class ModuleInitializer : IModuleAssemblyInitializer
{
    /// <inheritdoc />
    public void OnImport() => WorkerPool.WarmUp();
}
