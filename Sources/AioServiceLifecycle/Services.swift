#if ServiceLifecycle
@_spi(AioInternals) import Aio
import CGLibShim
import ServiceLifecycle

/// An `IOThread` as a swift-service-lifecycle `Service`.
///
/// `run()` starts the thread and keeps it running until the service group
/// shuts down gracefully (for example on SIGTERM, with
/// `gracefulShutdownSignals: [.sigterm]`) or the task is cancelled. Then,
/// on the IOThread:
/// - the thread pool is shut down: requests still queued are cancelled (their
///   completions get `CancellationError`), running ones finish, and every
///   completion is delivered ( `ThreadPool/shutdown()` );
/// - the BHs already scheduled run, and the thread exits.
///
/// ```swift
/// let io = try IOThreadService(name: "io")
/// let group = ServiceGroup(services: [io], gracefulShutdownSignals: [.sigterm],
///                          logger: logger)
/// try await group.run()
/// ```
///
/// Work can be sent to ``context`` before the group runs (one-shots run once
/// the thread has started). Submit pool work from the context's thread, as
/// always: from a BH or a one-shot on ``context``.
public final class IOThreadService: Service, Sendable {
    /// The IOThread; the service starts, stops and joins it.
    public let ioThread: IOThread
    /// The IOThread's context.
    public var context: AioContext { ioThread.context }

    /// Makes the IOThread (not started); `fdMonitor` as in `IOThread`.
    public init(name: String, fdMonitor: FDMonitorKind? = nil) throws(AioError) {
        ioThread = try IOThread(name: name, fdMonitor: fdMonitor)
    }

    /// Runs the IOThread until graceful shutdown or cancellation, then shuts
    /// its pool down and stops it. Returns when the thread has exited and
    /// every pool completion has been delivered. Call once.
    public func run() async throws {
        try ioThread.start()
        // A cancellation ends the wait as a graceful shutdown does: either
        // way the pool's completions must all be delivered before we return.
        try? await gracefulShutdown()
        let context = ioThread.context
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
/// own until graceful shutdown or cancellation, then quits the loop and
/// returns once the thread is done.
///
/// Contexts attached to the loop's `GMainContext` keep running while it
/// runs; GLib sources (D-Bus, GIO) work as in any GLib program.
public final class GLibMainLoopService: Service, Sendable {
    /// The loop the service runs; any thread may also `GLibMainLoop/quit()` it.
    public let loop: GLibMainLoop
    private let threadName: String

    /// A service running `loop` (by default one over GLib's default
    /// `GMainContext`) on a thread named `threadName`.
    public init(loop: GLibMainLoop = GLibMainLoop(), threadName: String = "glib-main-loop") {
        self.loop = loop
        self.threadName = threadName
    }

    /// Runs the loop until graceful shutdown or cancellation; returns once
    /// its thread has left the loop. If the loop is quit by someone else
    /// first, returns then. Call once.
    public func run() async throws {
        let loop = self.loop
        let ended = LoopEnd()
        let thread = try NativeThread(name: threadName) {
            loop.run()
            ended.signal()
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await gracefulShutdown()
                // Not when the loop already ended (quit by someone else): a
                // quit is kept for the next run, which must not get it.
                if !ended.isSignalled { loop.quit() }
            }
            await ended.wait()
            group.cancelAll()
        }
        thread.join()  // at once: the thread signalled on its way out
    }
}

/// A one-time signal from a thread to a task.
private final class LoopEnd: Sendable {
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

    var isSignalled: Bool { state.withLock { $0.ended } }

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
