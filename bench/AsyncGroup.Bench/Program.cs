using System.Diagnostics;
using System.Globalization;
using AsyncGroup.Core;

// Core overhead against raw Task.WhenAll. A plain Stopwatch harness: for each case every variant
// is warmed up twice, then the variants run interleaved (rotating which goes first) for the timed
// runs, each after a full GC, and the median is reported. Interleaving matters on a shared box:
// load from other processes then drifts over all variants alike instead of landing on one.
// Run in Release:  dotnet run -c Release --project bench/AsyncGroup.Bench [-- runs]
// Wall time is what a caller waits; CPU time (all threads of this process) is what the work cost,
// and is the steadier figure when other processes compete for the cores.

int runs = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 5;
var rows = new List<Row>();

Console.WriteLine($"AsyncGroup Core bench: {Environment.ProcessorCount} logical CPUs, .NET {Environment.Version}, " +
    $"{(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")} GC, median of {runs} interleaved runs after 2 warm-ups");
Console.WriteLine();

foreach (int n in new[] { 10_000, 100_000 })
{
    Func<CancellationToken, Task<int>>[] works = Enumerable.Range(0, n)
        .Select(i => (Func<CancellationToken, Task<int>>)(_ => Task.FromResult(i)))
        .ToArray();
    long expected = (long)n * (n - 1) / 2;

    Stats[] s = await InterleavedAsync(runs,
        async () => Check(await Gather.RunAsync(works), expected),
        async () => Check(await Task.WhenAll(works.Select(w => Task.Run(() => w(CancellationToken.None)))), expected),
        async () => Check(await Task.WhenAll(works.Select(w => w(CancellationToken.None))), expected));
    rows.Add(new Row($"gather {n:N0} no-op tasks", "Core Gather.RunAsync", n, s[0], s[1], s[2]));
    rows.Add(new Row(string.Empty, "Task.WhenAll(Task.Run(work))", n, s[1], s[1], s[2]));
    rows.Add(new Row(string.Empty, "Task.WhenAll(work())", n, s[2], s[1], s[2]));
}

{
    const int n = 10_000;
    var coreWait = new List<double>();
    var rawWait = new List<double>();
    Stats[] s = await InterleavedAsync(runs,
        async () => coreWait.Add(await CoreFirstCompletedAsync(n)),
        async () => rawWait.Add(await RawFirstCompletedAsync(n)));
    var coreCall = new Stats(Median(coreWait.Skip(2)), double.NaN);
    var rawCall = new Stats(Median(rawWait.Skip(2)), double.NaN);
    rows.Add(new Row($"wait FirstCompleted, {n:N0}", "Core: 10k WorkTask.Run, WaitAsync, release", n, s[0], s[1], null));
    rows.Add(new Row(string.Empty, "raw: 10k Task.Run, Task.WhenAny, release", n, s[1], s[1], null));
    rows.Add(new Row(string.Empty, "Core AsyncOps.WaitAsync call alone", n, coreCall, rawCall, null));
    rows.Add(new Row(string.Empty, "raw Task.WhenAny call alone", n, rawCall, rawCall, null));
}

Console.WriteLine($"| {"case",-27} | {"variant",-42} | {"wall ms",8} | {"wall ns/task",12} | {"CPU ns/task",11} | {"wall vs Task.Run",16} | {"wall vs direct",14} |");
Console.WriteLine($"|{new string('-', 29)}|{new string('-', 44)}|{new string('-', 9)}:|{new string('-', 13)}:|{new string('-', 12)}:|{new string('-', 17)}:|{new string('-', 15)}:|");
foreach (Row r in rows)
{
    string cpu = double.IsNaN(r.Own.CpuMs) ? "-" : (r.Own.CpuMs * 1e6 / r.N).ToString("0", CultureInfo.InvariantCulture);
    Console.WriteLine($"| {r.Case,-27} | {r.Variant,-42} | {r.Own.WallMs,8:0.00} | {r.Own.WallMs * 1e6 / r.N,12:0} | {cpu,11} | {Ratio(r.Own.WallMs, r.RunBase.WallMs),16} | {Ratio(r.Own.WallMs, r.DirectBase?.WallMs),14} |");
}

static string Ratio(double ms, double? baseMs) => baseMs is { } b ? (ms / b).ToString("0.00", CultureInfo.InvariantCulture) + "x" : "-";

static void Check(int[] results, long expected)
{
    long sum = 0;
    foreach (int r in results)
    {
        sum += r;
    }

    if (sum != expected)
    {
        throw new InvalidOperationException($"wrong results: {sum} != {expected}");
    }
}

// asyncio.wait(FIRST_COMPLETED) over n tasks: the first completes at once, the others wait on a
// gate that opens once the wait has returned; then everything is drained. Returns the time of the
// wait call alone (registering on every task, returning on the first, unregistering the rest).
static async Task<double> CoreFirstCompletedAsync(int n)
{
    var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    var tasks = new WorkTask[n];
    tasks[0] = WorkTask<int>.Run(_ => Task.FromResult(0));
    for (int i = 1; i < n; i++)
    {
        tasks[i] = WorkTask<int>.Run(async _ =>
        {
            await gate.Task.ConfigureAwait(false);
            return 1;
        });
    }

    long start = Stopwatch.GetTimestamp();
    WaitOutcome outcome = await AsyncOps.WaitAsync(tasks, ReturnWhen.FirstCompleted);
    double waitMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    if (outcome.Done.Count < 1 || outcome.Done.Count + outcome.Pending.Count != n)
    {
        throw new InvalidOperationException("FirstCompleted returned a wrong split");
    }

    gate.SetResult();
    await Task.WhenAll(tasks.Select(t => t.Completion));
    return waitMs;
}

static async Task<double> RawFirstCompletedAsync(int n)
{
    var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    var tasks = new Task<int>[n];
    tasks[0] = Task.Run(() => Task.FromResult(0));
    for (int i = 1; i < n; i++)
    {
        tasks[i] = Task.Run(async () =>
        {
            await gate.Task.ConfigureAwait(false);
            return 1;
        });
    }

    long start = Stopwatch.GetTimestamp();
    await Task.WhenAny(tasks);
    double waitMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    gate.SetResult();
    await Task.WhenAll(tasks);
    return waitMs;
}

static async Task<Stats[]> InterleavedAsync(int runs, params Func<Task>[] variants)
{
    // Warm-up: JIT and tiering, thread-pool growth.
    for (int w = 0; w < 2; w++)
    {
        foreach (Func<Task> v in variants)
        {
            await v();
        }
    }

    var wall = variants.Select(_ => new List<double>()).ToArray();
    var cpu = variants.Select(_ => new List<double>()).ToArray();
    for (int r = 0; r < runs; r++)
    {
        for (int k = 0; k < variants.Length; k++)
        {
            int v = (r + k) % variants.Length;
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            TimeSpan cpu0 = Environment.CpuUsage.TotalTime;
            long start = Stopwatch.GetTimestamp();
            await variants[v]();
            wall[v].Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            cpu[v].Add((Environment.CpuUsage.TotalTime - cpu0).TotalMilliseconds);
        }
    }

    return variants.Select((_, v) => new Stats(Median(wall[v]), Median(cpu[v]))).ToArray();
}

static double Median(IEnumerable<double> values)
{
    double[] sorted = values.OrderBy(v => v).ToArray();
    return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
}

internal sealed record Stats(double WallMs, double CpuMs);

internal sealed record Row(string Case, string Variant, int N, Stats Own, Stats RunBase, Stats? DirectBase);
