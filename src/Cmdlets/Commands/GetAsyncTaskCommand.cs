using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using AsyncGroup.Core;

namespace AsyncGroup.Commands;

/// <summary>
/// <para type="synopsis">Lists the session's tasks started with Start-AsyncTask (asyncio's all_tasks).</para>
/// </summary>
[Cmdlet(VerbsCommon.Get, "AsyncTask", DefaultParameterSetName = NameSet)]
[OutputType(typeof(AsyncTask))]
public sealed class GetAsyncTaskCommand : AsyncGroupCmdlet
{
    private const string NameSet = "Name";
    private const string IdSet = "Id";

    /// <summary>Names to match (wildcards allowed).</summary>
    [Parameter(Position = 0, ParameterSetName = NameSet)]
    [ArgumentCompleter(typeof(TaskNameCompleter))]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>Task ids to get.</summary>
    [Parameter(Mandatory = true, ParameterSetName = IdSet, ValueFromPipelineByPropertyName = true)]
    [ArgumentCompleter(typeof(TaskIdCompleter))]
    public long[] Id { get; set; } = null!;

    /// <summary>Only tasks in these states.</summary>
    [Parameter]
    public WorkTaskState[]? State { get; set; }

    /// <inheritdoc />
    protected override void ProcessRecord()
    {
        IEnumerable<AsyncTask> tasks = ParameterSetName == IdSet
            ? TaskLookup.ById(this, Id)
            : Name is null ? TaskRegistry.Snapshot(CurrentRunspaceId) : TaskLookup.ByName(this, Name);

        foreach (AsyncTask task in tasks)
        {
            if (State is null || State.Contains(task.State))
            {
                WriteObject(task);
            }
        }
    }
}
