import Glibc
import Synchronization

/// The clocks a context's timers can follow.
public enum AioClock: Int, Sendable, CaseIterable {
    /// Host monotonic time (CLOCK_MONOTONIC): never jumps, runs while the
    /// program runs. QEMU: `QEMU_CLOCK_REALTIME`.
    case realtime
    /// A clock that moves only when the program advances it
    /// (``VirtualClock/advance(by:)``): for simulations and tests.
    /// QEMU: `QEMU_CLOCK_VIRTUAL`, which the guest's execution drives.
    case virtual
}

/// A point in time on one of the context's clocks, in nanoseconds.
public struct AioInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Nanoseconds since the clock's origin.
    public let nanoseconds: Int64

    /// The instant `nanoseconds` after the clock's origin.
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    /// Whether `a` comes before `b` on the clock.
    public static func < (a: AioInstant, b: AioInstant) -> Bool { a.nanoseconds < b.nanoseconds }

    /// Saturates at Int64's range: `now + .seconds(Int64.max)` is the far
    /// future ("until cancelled"), never a wrapped past.
    public static func + (a: AioInstant, d: Duration) -> AioInstant {
        AioInstant(nanoseconds: saturatingAdd(a.nanoseconds, d.nanoseconds))
    }

    /// Saturates at Int64's range.
    public static func - (a: AioInstant, d: Duration) -> AioInstant {
        let ns = d.nanoseconds
        return AioInstant(nanoseconds: ns == .min ? saturatingAdd(saturatingAdd(a.nanoseconds, .max), 1)
                                                  : saturatingAdd(a.nanoseconds, -ns))
    }

    /// Saturates at Int64's range.
    public static func - (a: AioInstant, b: AioInstant) -> Duration {
        let (ns, overflow) = a.nanoseconds.subtractingReportingOverflow(b.nanoseconds)
        if overflow { return .nanoseconds(b.nanoseconds < 0 ? Int64.max : Int64.min) }
        return .nanoseconds(ns)
    }

    /// A one-line description for logs and debugging.
    public var description: String { "\(nanoseconds) ns" }
}

extension Duration {
    /// The duration in whole nanoseconds, saturating at Int64's range.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (ns, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return saturatingAdd(ns, attoseconds / 1_000_000_000)
    }
}

/// `a + b`, clamped to Int64's range instead of wrapping.
@inline(__always)
func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    if !overflow { return sum }
    return b > 0 ? .max : .min
}

/// A context's virtual clock: it starts at 0 and moves only through
/// ``advance(by:)`` or ``set(to:)``, which run the timers that become due on
/// the context's next poll.
///
/// Thread-safe: may be advanced from any thread.
public final class VirtualClock: Sendable {
    private let nowNs = Atomic<Int64>(0)
    private let contextName: String
    /// Reaches the owning context. A caller may keep the clock after the
    /// context is gone; advancing it then wakes nobody (the link is cut).
    let link = ContextLink()

    init(contextName: String) { self.contextName = contextName }

    /// The clock's current time.
    public var now: AioInstant { AioInstant(nanoseconds: nowNs.load(ordering: .acquiring)) }

    /// Moves the clock forward and wakes the context so it runs due timers.
    /// Negative durations trap: the clock never goes back.
    public func advance(by duration: Duration) {
        let ns = duration.nanoseconds
        precondition(ns >= 0, "VirtualClock of AioContext '\(contextName)': advance(by:) with a negative duration; the clock never goes back")
        // Releasing: a poll that reads the new time also sees what the
        // advancing thread wrote before. Saturating: the clock stops at the
        // end of time rather than wrapping into the past.
        var old = nowNs.load(ordering: .relaxed)
        while true {
            let (exchanged, current) = nowNs.compareExchange(
                expected: old, desired: saturatingAdd(old, ns),
                successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { break }
            old = current
        }
        link.notify()
    }

    /// Sets the clock to `instant`, which must not be in its past.
    public func set(to instant: AioInstant) {
        var old = nowNs.load(ordering: .relaxed)
        while true {
            // Checked before the store: a trapping call leaves the clock as it was.
            precondition(instant.nanoseconds >= old, "VirtualClock of AioContext '\(contextName)': set(to:) into the past (\(instant) < \(old) ns); the clock never goes back")
            let (exchanged, current) = nowNs.compareExchange(
                expected: old, desired: instant.nanoseconds,
                successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { break }
            old = current
        }
        link.notify()
    }
}

extension AioContext {
    /// The current time on `clock`. Thread-safe.
    public func now(_ clock: AioClock = .realtime) -> AioInstant {
        switch clock {
        case .realtime: return AioInstant(nanoseconds: monotonicNowNs())
        case .virtual: return virtualClock.now
        }
    }
}
