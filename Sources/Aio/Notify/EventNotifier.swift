import CGLibShim
import Glibc

/// A level-triggered wake-up object backed by an eventfd (non-blocking,
/// close-on-exec): readable from the first ``set()`` until ``testAndClear()``.
///
/// The descriptor is owned by the notifier and closed when it is deallocated.
/// QEMU: `EventNotifier` (`util/event_notifier-posix.c`).
public final class EventNotifier: Sendable {
    /// The eventfd. Poll it for `POLLIN`; never close it yourself.
    public let fd: Int32

    /// Creates a notifier, optionally already set.
    ///
    /// Thread-safe. Throws ``AioError/system(_:)`` carrying `errno` and the call
    /// if the kernel refuses the eventfd (for example at the descriptor limit).
    /// QEMU: `event_notifier_init()`.
    public init(initiallySet: Bool = false) throws(AioError) {
        do {
            fd = try EventFD.eventfd(initialValue: initiallySet ? 1 : 0,
                                     flags: Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        } catch {
            throw .system(error)
        }
    }

    deinit {
        Posix.close(fd: fd)
    }

    /// Makes the notifier readable. EINTR is retried; a saturated counter
    /// (EAGAIN) already means "set".
    ///
    /// Thread-safe: may be called from any thread. QEMU: `event_notifier_set()`.
    @inline(__always)
    public func set() {
        EventFD.eventfd_write(fd: fd, value: 1)
    }

    /// Clears the notifier and reports whether it was set.
    ///
    /// Thread-safe, but a notifier normally has one consumer.
    /// QEMU: `event_notifier_test_and_clear()`.
    @discardableResult
    public func testAndClear() -> Bool {
        EventFD.eventfd_read(fd: fd) != 0
    }

    /// Whether the notifier is readable right now, without clearing it.
    /// Thread-safe; meant for diagnostics.
    public var isSet: Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return Glibc.poll(&entry, 1, 0) == 1 && (entry.revents & Int16(POLLIN)) != 0
    }
}
