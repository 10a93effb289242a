using System.Management.Automation;
using AsyncGroup.Execution;

namespace AsyncGroup;

/// <summary>Releases the warm worker runspaces when the module is removed.</summary>
public sealed class ModuleCleanup : IModuleAssemblyCleanup
{
    /// <inheritdoc />
    public void OnRemove(PSModuleInfo psModuleInfo) => WorkerPool.CloseAll();
}
