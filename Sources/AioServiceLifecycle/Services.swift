#if ServiceLifecycle
@_spi(AioInternals) import Aio
import CGLibShim
import Logging
import ServiceLifecycle
import Synchronization

/// An `IOThread` as a swift-service-lifecycle `Service`.
///
/// `run()` starts the thread and keeps it running until the service group
/// shuts down gracefully (for example on SIGTERM, with
/// `gracefulShutdownSignals: [.sigterm]`) or the task is cancelled. Then,
/// on the IOThread:
/// - the thread pool is shut down: requests still queued are cancelled (their
///   completions get `CancellationError`), running ones finish, and every
///   completion is delivered (`ThreadPool.shutdown()`);
/// - the BHs already scheduled run, and the thread exits.
///
/// ```swift
/// let io = try IOThreadService(name: "io")
/// let group = ServiceGroup(services: [GLibMainLoopService(), io],
///                          gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// - **Order:** a `ServiceGroup` shuts its services down in reverse order.
///   List a ``GLibMainLoopService`` *before* the IOThread services whose
///   completions go back to a context attached to its loop: the IOThreads
///   then drain their pools while the GLib loop still runs to receive what
///   they send home.
/// - **Running work is waited for**, however long it takes: shutdown does not
///   interrupt a job on a worker. A job that waits for something the group
///   has already shut down waits forever; a group with a
///   `maximumCancellationDuration` then ends the program.
///
/// Work can be sent to ``context`` before the group runs (one-shots run once
/// the thread has started). Submit pool work from the context's thread, as
/// always: from a BH or a one-shot on ``context``.
public final class IOThreadService: Service, Sendable {
    /// The IOThread; only the service starts and stops it (a loop stopped
    /// behind its back could not drain the pool at shutdown).
    private let ioThread: IOThread
    private let started = Atomic<Bool>(false)

    /// The IOThread's context.
    public var context: AioContext { ioThread.context }

    /// Makes the IOThread (not started); `fdMonitor` and `logger` as in
    /// `AioContext.init(name:fdMonitor:logger:)`.
    public init(name: String, fdMonitor: FDMonitorKind? = nil, logger: Logger? = nil) throws(AioError) {
        ioThread = try IOThread(name: name, fdMonitor: fdMonitor, logger: logger)
    }

    /// Runs the IOThread until graceful shutdown or cancellation, then shuts
    /// its pool down and stops it. Returns when the thread has exited and
    /// every pool completion has been delivered. Call once: a second call
    /// traps.
    public func run() async throws {
        guard !started.exchange(true, ordering: .relaxed) else {
            fatalError("IOThreadService '\(ioThread.name)': run() called twice; a service runs once")
        }
        try ioThread.start()
        // A cancellation ends the wait as a graceful shutdown does: either
        // way the pool's completions must all be delivered before we return.
        try? await gracefulShutdown()
        let context = ioThread.context
        // Also a pool nobody used yet (creating one costs two BHs, no
        // thread): a submission racing the shutdown is then cancelled and
        // delivered, instead of outliving the context.
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            context.scheduleOneshot(name: "\(context.name)/service-shutdown") {
                context.threadPool.shutdown()
                done.resume()
            }
        }
        ioThread.stop()
        // Brief: the loop runs what is already scheduled and exits.
        ioThread.join()
    }
}

/// A GLib main loop (`GLibMainLoop`) as a swift-service-lifecycle
/// `Service`: `run()` iterates the loop's `GMainContext` on a thread of its
/// own until graceful shutdown or cancellation, then stops and returns once
/// the thread is done. A `quit()` of the loop from elsewhere also ends it.
///
/// Contexts attached to the loop's `GMainContext` keep running while it
/// runs; GLib sources (D-Bus, GIO) work as in any GLib program. List it
/// before the ``IOThreadService``s that send work home to it (see there).
public final class GLibMainLoopService: Service, Sendable {
    /// The loop the service runs; any thread may also `quit()` it.
    public let loop: GLibMainLoop
    private let threadName: String
    private let started = Atomic<Bool>(false)

    /// A service running `loop` (by default one over GLib's default
    /// `GMainContext`) on a thread named `threadName`.
    public init(loop: GLibMainLoop = GLibMainLoop(), threadName: String = "glib-main-loop") {
        self.loop = loop
        self.threadName = threadName
    }

    /// Runs the loop until graceful shutdown or cancellation (which stop it
    /// without leaving a quit behind for the loop's next run), or until the
    /// loop takes a quit; returns once its thread has left the loop. Call
    /// once: a second call traps.
    public func run() async throws {
        guard !started.exchange(true, ordering: .relaxed) else {
            fatalError("GLibMainLoopService '\(threadName)': run() called twice; a service runs once")
        }
        let loop = self.loop
        let ended = LoopEnd()
        let thread = try NativeThread(name: threadName) {
            // [service-stop] Acquiring, pairs with the releasing store below.
            _ = loop.run(until: { ended.stopRequested.load(ordering: .acquiring) })
            ended.signal()
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await gracefulShutdown()
                ended.stopRequested.store(true, ordering: .releasing)
                loop.wakeUp()
            }
            await ended.wait()
            group.cancelAll()
        }
        thread.join()  // at once: the thread signalled on its way out
    }
}

/// A one-time signal from a thread to a task, and the task's request that
/// the thread stop.
private final class LoopEnd: Sendable {
    let stopRequested = Atomic<Bool>(false)
    private let state = Locked(State())
    private struct State {
        var ended = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    func signal() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { state in
            state.ended = true
            let waiter = state.waiter
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ended: Bool = state.withLock {
                if $0.ended { return true }
                $0.waiter = continuation
                return false
            }
            if ended { continuation.resume() }
        }
    }
}
#else
#warning("AioServiceLifecycle is empty: enable the package trait ServiceLifecycle (.package(url: ..., traits: [\"ServiceLifecycle\"]), or --traits ServiceLifecycle)")
#endif
