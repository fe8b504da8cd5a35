import CGLibShim
import Glibc

/// The one errno policy of the library, and the only place that calls libc
/// for descriptors:
/// - `EINTR` is retried;
/// - `EAGAIN` on an eventfd write means "already readable" and is success;
/// - `EBADF`/`EFAULT` on a descriptor we created is a bug in this library and traps;
/// - anything else becomes a ``SystemCallError``.
enum Posix {
    /// Calls `body` until it does not fail with `EINTR`; returns its result or throws.
    @inline(__always)
    static func retryingEINTR<R: BinaryInteger>(
        _ call: StaticString, _ body: () -> R
    ) throws(SystemCallError) -> R {
        while true {
            let result = body()
            if result >= 0 { return result }
            let err = errno
            if err == EINTR { continue }
            throw SystemCallError(call: "\(call)", errno: err)
        }
    }

    /// Traps for errors that can only mean a bug on an internally owned descriptor.
    static func trapOnOwnDescriptorBug(_ error: SystemCallError, fd: Int32) {
        if error.errno == EBADF || error.errno == EFAULT || error.errno == EINVAL {
            fatalError("\(error) on descriptor \(fd) owned by the Aio library: the descriptor was closed behind the library's back or memory is corrupt")
        }
    }

    static func close(fd: Int32) {
        // close(2) must not be retried on EINTR on Linux: the descriptor is gone either way.
        if Glibc.close(fd) != 0 && errno == EBADF {
            fatalError("close(\(fd)): descriptor owned by the Aio library was already closed elsewhere")
        }
    }

    /// A file-status probe used to reject closed descriptors at registration.
    static func isOpen(fd: Int32) -> Bool {
        fd >= 0 && fcntl(fd, F_GETFD) != -1
    }

    /// The fd's readiness right now (poll(2) with a zero timeout): revents,
    /// 0 if none. EINTR is retried; any other failure reads as POLLNVAL.
    static func pollNow(fd: Int32, events: Int16) -> Int16 {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let rc = Glibc.poll(&entry, 1, 0)
            if rc >= 0 { return rc == 0 ? 0 : entry.revents }
            if errno != EINTR { return Int16(POLLNVAL) }
        }
    }
}

/// eventfd(2) wrappers. QEMU: `util/event_notifier-posix.c`.
enum EventFD {
    static func eventfd(initialValue: UInt32, flags: Int32) throws(SystemCallError) -> Int32 {
        try Posix.retryingEINTR("eventfd") { Glibc_eventfd(initialValue, flags) }
    }

    /// Adds `value` to the counter. Returns false if the counter was saturated
    /// (EAGAIN): the descriptor is readable already, which is all a writer wants.
    @discardableResult
    static func eventfd_write(fd: Int32, value: UInt64) -> Bool {
        var value = value
        while true {
            let written = withUnsafeBytes(of: &value) { Glibc.write(fd, $0.baseAddress, 8) }
            if written == 8 { return true }
            let err = errno
            if err == EINTR { continue }
            if err == EAGAIN { return false }
            let error = SystemCallError(call: "write(eventfd)", errno: err)
            Posix.trapOnOwnDescriptorBug(error, fd: fd)
            fatalError("\(error) on eventfd \(fd)")
        }
    }

    /// Reads and resets the counter. Returns 0 if it was already zero (EAGAIN).
    static func eventfd_read(fd: Int32) -> UInt64 {
        var value: UInt64 = 0
        while true {
            let got = withUnsafeMutableBytes(of: &value) { Glibc.read(fd, $0.baseAddress, 8) }
            if got == 8 { return value }
            let err = errno
            if err == EINTR { continue }
            if err == EAGAIN { return 0 }
            let error = SystemCallError(call: "read(eventfd)", errno: err)
            Posix.trapOnOwnDescriptorBug(error, fd: fd)
            fatalError("\(error) on eventfd \(fd)")
        }
    }
}

@inline(__always)
private func Glibc_eventfd(_ initval: UInt32, _ flags: Int32) -> Int32 {
    CGLibShim.eventfd(initval, flags)
}

/// ppoll(2) with a nanosecond timeout; the native wait of every backend.
enum PollSyscall {
    /// Waits on `fds` for at most `timeoutNs` (negative: forever). Returns the
    /// number of ready entries; EINTR counts as a wake-up with nothing ready.
    static func ppoll(
        _ fds: UnsafeMutablePointer<pollfd>, count: Int, timeoutNs: Int64
    ) throws(SystemCallError) -> Int {
        let result: Int32
        if timeoutNs < 0 {
            result = aio_shim_ppoll(fds, nfds_t(count), nil, nil)
        } else {
            var ts = timespec(tv_sec: Int(timeoutNs / 1_000_000_000),
                              tv_nsec: Int(timeoutNs % 1_000_000_000))
            result = aio_shim_ppoll(fds, nfds_t(count), &ts, nil)
        }
        if result >= 0 { return Int(result) }
        let err = errno
        // A signal ends the wait early; the caller treats it like a spurious wake-up
        // and re-checks, so there is nothing to retry here.
        if err == EINTR { return 0 }
        throw SystemCallError(call: "ppoll", errno: err)
    }
}

/// Monotonic time in nanoseconds (CLOCK_MONOTONIC).
@inline(__always)
func monotonicNowNs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
