import Synchronization

/// A timer bound to one clock of one context. Its callback runs on the
/// context's thread, inside a poll or a GSource dispatch, once per arming.
///
/// Arm it with ``schedule(at:)`` or ``schedule(after:)``; a timer can re-arm
/// itself from its own callback. Arming a timer so that it becomes the
/// earliest on its clock wakes the sleeping loop, native or GLib.
///
/// Thread-safe: every method may be called from any thread.
/// QEMU: `QEMUTimer` (`timer_mod`, `timer_del`, `timer_pending`).
public final class AioTimer: @unchecked Sendable, CustomStringConvertible {
    // @unchecked Sendable: `expireNs` and `heapIndex` are protected by the
    // timer list's lock; everything else is immutable.

    /// The name given at creation.
    public let name: String
    /// The clock this timer follows.
    public let clock: AioClock
    let list: TimerList
    let callback: @Sendable (AioTimer) -> Void

    /// Deadline in ns on `clock`, or -1 when not armed. Under `list`'s lock.
    var expireNs: Int64 = -1
    /// Position in the list's heap, -1 when not armed. Under `list`'s lock.
    var heapIndex = -1
    /// The list's arming serial when last armed. Under `list`'s lock.
    var armSerial: UInt64 = 0
    /// How many runs of the callback are in progress (nested runs count
    /// twice). Under `list`'s lock.
    var runningCount = 0
    /// Cancels waiting for the callback to end. Under `list`'s lock.
    var cancelWaiters = 0

    init(name: String, clock: AioClock, list: TimerList, callback: @escaping @Sendable (AioTimer) -> Void) {
        self.name = name
        self.clock = clock
        self.list = list
        self.callback = callback
    }

    /// A one-line description for logs and debugging.
    public var description: String { "AioTimer('\(name)', \(clock))" }

    /// Arms the timer for `instant` on its clock (re-arming if armed). A
    /// deadline in the past fires on the next poll.
    /// QEMU: `timer_mod_ns()`.
    public func schedule(at instant: AioInstant) {
        list.arm(self, atNs: instant.nanoseconds)
    }

    /// Arms the timer `duration` from now on its clock. QEMU: `timer_mod()`.
    public func schedule(after duration: Duration) {
        list.arm(self, afterNs: duration.nanoseconds)
    }

    /// Disarms the timer; does nothing if it is not armed.
    ///
    /// After it returns no callback starts (until the timer is armed again):
    /// called from another thread while the callback runs, it waits for the
    /// callback to end and disarms again, so a callback that re-arms itself
    /// cannot outlive the cancel. Called from the callback itself, it only
    /// disarms. QEMU: `timer_del()`.
    public func cancel() {
        list.cancel(self)
    }

    /// Whether the timer is armed and has not fired yet. QEMU: `timer_pending()`.
    public var isPending: Bool {
        list.withLock { expireNs >= 0 }
    }

    /// The armed deadline, if any. QEMU: `timer_expire_time_ns()`.
    public var deadline: AioInstant? {
        list.withLock { expireNs >= 0 ? AioInstant(nanoseconds: expireNs) : nil }
    }
}

extension AioContext {
    /// Creates a timer on `clock`, not armed. It needs no deletion: an armed
    /// timer whose context goes away never fires.
    ///
    /// Thread-safe. QEMU: `aio_timer_new()`.
    public func makeTimer(name: String, clock: AioClock = .realtime,
                          _ callback: @escaping @Sendable (AioTimer) -> Void) -> AioTimer {
        AioTimer(name: name, clock: clock, list: timerLists[clock.rawValue], callback: callback)
    }
}
