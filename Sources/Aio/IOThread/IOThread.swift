import CGLibShim
import Glibc
import Logging
import Synchronization

/// A named thread that owns an AioContext and runs `poll(blocking: true)` on
/// it until stopped.
///
/// Create it, set up handlers or BHs on ``context`` if you like, then
/// ``start()``. ``stop()`` asks the loop to finish (pending BHs still run),
/// ``join()`` waits for the thread. QEMU: `IOThread` (`iothread.c`).
public final class IOThread: @unchecked Sendable {
    // @unchecked Sendable: `thread` is written by start() and read by join(),
    // which the owner calls in that order; the rest is immutable or atomic.

    /// The thread's name (also the context's).
    public let name: String
    /// The context the thread runs. Its home thread is the IOThread.
    public let context: AioContext
    private let stopRequested = DoneFlag()
    private var thread: NativeThread?

    /// The busy-polling limit IOThread contexts start with (QEMU's default).
    public static let defaultPollMaxNs: Int64 = 32_000

    /// Creates the IOThread and its context; the thread is not started.
    /// The context busy-polls for up to ``defaultPollMaxNs`` before it sleeps
    /// (``AioContext/pollMaxNs``; set it to 0 to turn that off).
    /// `fdMonitor` and `logger` as in ``AioContext/init(name:fdMonitor:logger:)``.
    /// Throws if the context's eventfds (or the forced monitor) cannot be had.
    public init(name: String, fdMonitor: FDMonitorKind? = nil, logger: Logger? = nil) throws(AioError) {
        self.name = name
        self.context = try AioContext(name: name, fdMonitor: fdMonitor, logger: logger)
        context.pollMaxNs = Self.defaultPollMaxNs
    }

    /// Starts the thread; returns once it is the context's home thread.
    /// Throws if the system refuses the thread. Call once.
    public func start() throws(AioError) {
        precondition(thread == nil, "IOThread '\(name)': start() called twice")
        let started = try EventNotifier()
        let context = self.context
        let stopRequested = self.stopRequested
        thread = try NativeThread(name: name) {
            context.setHomeThread()
            started.set()
            while true {
                let token = context.notifyToken
                if stopRequested.isSet { break }
                context.poll(blocking: true, unlessNotifiedSince: token)
            }
            // Let what was posted before stop() run.
            while context.poll(blocking: false) {}
        }
        var entry = pollfd(fd: started.fd, events: Int16(POLLIN), revents: 0)
        while Glibc.poll(&entry, 1, -1) != 1 {}
    }

    /// Asks the loop to stop after its current iteration. Thread-safe.
    public func stop() {
        stopRequested.set()
        context.notify()
    }

    /// Waits for the thread to finish. Call after ``stop()``, once.
    public func join() {
        guard let thread else { return }
        thread.join()
        self.thread = nil
    }
}
