using System.Threading;

namespace AsyncGroup.Core;

/// <summary>
/// Whether one pooled item (a worker) has been announced to its <see cref="WarmPool{T}"/> as on its
/// way back, one stretch of service at a time. Each method says whether the caller must tell the
/// pool (<see cref="WarmPool{T}.Returning"/>, or <see cref="WarmPool{T}.Return"/> with null to
/// withdraw), so that every announcement the pool counts is ended exactly once.
/// </summary>
/// <remarks>
/// Announcements come from other threads too (a drained batch announces the workers serving it; a
/// stop announces the worker it stops), and such a notice can arrive late: after the item came
/// back, or after it came back and was rented again. An announcement then would stay counted with
/// nothing on its way back, and renters would wait for it instead of creating an item. So a notice
/// from another thread names the service it was meant for (<see cref="Begin"/> returns it), and one
/// for a service that has ended changes nothing. All transitions are single atomic steps on one
/// integer: the service number in the high bits, the phase in the low two.
/// </remarks>
public sealed class ReturnAnnouncement
{
    private const int Serving = 0;   // serving, and the pool has not been told it is coming back
    private const int Announced = 1; // serving, and the pool counts it as on its way back
    private const int Away = 2;      // not serving: idle in the pool, new, or gone for good
    private const int PhaseMask = 3;

    private int _state = Away;

    /// <summary>The number of the current (or last) service.</summary>
    public int Service => Volatile.Read(ref _state) >> 2;

    /// <summary>
    /// The item starts serving (it was just rented or created for a batch); returns the service's
    /// number. <paramref name="announced"/>: the pool already counts it as on its way back (an
    /// announcement made for it while it was being opened).
    /// </summary>
    public int Begin(bool announced)
    {
        int service = unchecked(Service + 1);
        Volatile.Write(ref _state, Compose(service, announced ? Announced : Serving));
        return service;
    }

    /// <summary>
    /// A notice, from any thread, that the item will come back once its current task ends: true
    /// when the caller must tell the pool — the item still serves <paramref name="service"/> and
    /// was not announced yet.
    /// </summary>
    public bool TryAnnounce(int service)
    {
        int serving = Compose(service, Serving);
        return Interlocked.CompareExchange(ref _state, Compose(service, Announced), serving) == serving;
    }

    /// <summary>The same notice for the current service, from the item's own thread while it serves.</summary>
    public bool TryAnnounce() => TryAnnounce(Service);

    /// <summary>The item keeps serving after all: true when the caller must withdraw the announcement.</summary>
    public bool Withdraw()
    {
        int service = Service;
        int announced = Compose(service, Announced);
        return Interlocked.CompareExchange(ref _state, Compose(service, Serving), announced) == announced;
    }

    /// <summary>
    /// The item is handed back to the pool now: true when the caller must first tell the pool it is
    /// coming (it was not announced), so that the return ends an announcement either way. Later
    /// notices for this service change nothing.
    /// </summary>
    public bool ComeBack() => Leave() != Announced;

    /// <summary>The item will never come back (abandoned or closed): true when the caller must withdraw an announcement.</summary>
    public bool LeaveForGood() => Leave() == Announced;

    // Moves to Away, keeping the service number; returns the phase it left.
    private int Leave()
    {
        while (true)
        {
            int state = Volatile.Read(ref _state);
            if (Interlocked.CompareExchange(ref _state, Compose(state >> 2, Away), state) == state)
            {
                return state & PhaseMask;
            }
        }
    }

    private static int Compose(int service, int phase) => unchecked(service << 2) | phase;
}
