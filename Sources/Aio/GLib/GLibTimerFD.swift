import CAioSupport
import CGLibShim
import Glibc

/// A timerfd GLib polls with the context's other fds, armed to the earliest
/// real-time deadline: GLib's own timeout is in whole milliseconds, rounded
/// up, so without it a timer 0.3 ms ahead would fire up to 0.7 ms late.
final class GLibTimerFD: @unchecked Sendable {
    // @unchecked Sendable: `fd` is immutable; `armedNs` is owner-only
    // (GSource prepare under ownership); `drain` touches only the fd.
    let fd: Int32
    /// The absolute deadline the timerfd is armed to (-1: none). Owner-only.
    @exclusivity(unchecked) private var armedNs: Int64 = -1

    init() throws(SystemCallError) {
        fd = try Posix.retryingEINTR("timerfd_create") {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        }
    }

    deinit { Posix.close(fd: fd) }

    /// Arms the timer to `deadlineNs` (CLOCK_MONOTONIC; negative: nothing to
    /// arm), unless it is armed there already. Owner-only.
    func arm(atNs deadlineNs: Int64) {
        if deadlineNs < 0 || deadlineNs == armedNs { return }
        armedNs = deadlineNs
        aio_tighten_timer_slack_once()
        var spec = itimerspec(
            it_interval: timespec(tv_sec: 0, tv_nsec: 0),
            it_value: timespec(tv_sec: Int(deadlineNs / 1_000_000_000), tv_nsec: Int(deadlineNs % 1_000_000_000)))
        // A deadline of 0 disarms; a due deadline (0 ns) is not armed (the
        // caller's timeout is 0 then).
        if spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0 { spec.it_value.tv_nsec = 1 }
        if timerfd_settime(fd, Int32(TFD_TIMER_ABSTIME), &spec, nil) != 0 {
            let error = SystemCallError(call: "timerfd_settime", errno: errno)
            Posix.trapOnOwnDescriptorBug(error, fd: fd)
        }
    }

    /// Reads the expiry count so GLib's poll stops reporting the fd. GLib's check.
    func drain() {
        var count: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &count) { Glibc.read(fd, $0.baseAddress, 8) }
    }
}

extension AioContext {
    /// The earliest deadline of the real-time timer list (CLOCK_MONOTONIC
    /// ns), -1 if none.
    func earliestRealtimeDeadlineNs() -> Int64 {
        timerLists[AioClock.realtime.rawValue].firstDeadlineNs()
    }
}
