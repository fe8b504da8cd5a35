// The main actor on GLib's main loop, for programs with an `async main`.
//
// Swift 6.3's experimental custom-executor SPI lets a program choose its main
// executor. This product's executor runs main-actor jobs on the main thread
// between GLib's sources, and its `run()`, which the runtime calls to drive
// an `async main`, iterates GLib's default main context until stop().

#if compiler(>=6.3)
@_spi(ExperimentalCustomExecutors) import _Concurrency
import Aio
import CGLibShim
import Dispatch
import Glibc
import Synchronization

/// A main executor backed by GLib's default `GMainContext`: `@MainActor` code
/// runs on the main thread, inside GLib's iterations, in one FIFO with
/// `DispatchQueue.main`.
///
/// Opt-in, because it rests on Swift 6.3's experimental custom-executor SPI
/// (`@_spi(ExperimentalCustomExecutors)`), which may change with any
/// toolchain. Two ways in:
///
/// ```swift
/// // 1. An async main (needs -Xfrontend -disable-availability-checking on
/// //    Linux with Swift 6.3, or the typealias is silently ignored):
/// @_spi(ExperimentalCustomExecutors) import AioMainExecutor
/// @main struct App {
///     typealias DefaultExecutorFactory = GLibExecutorFactory
///     static func main() async { ... }       // @MainActor, on the main thread
/// }
///
/// // 2. A synchronous main (no flag): install first, then run.
/// _createExecutors(factory: GLibExecutorFactory.self)
/// Task { @MainActor in ...; GLibMainExecutor.shared.stop() }
/// try GLibMainExecutor.shared.run()
/// ```
///
/// - Jobs go through libdispatch's main queue, which a ``MainQueuePump``
///   drains from a GSource on the main thread: main-actor jobs and
///   `DispatchQueue.main` blocks share one FIFO, and work queued before the
///   executor was installed still runs.
/// - `run()` checks that it really is `MainActor.executor` and traps with
///   the fix if not; ``verifyInstalled()`` makes the same check at the top of
///   an `async main`, where a forgotten flag means `run()` is never called.
/// - Isolation checks pass exactly on the main thread.
/// - Other threads may iterate the default context too (GLib allows it);
///   main-actor work still runs only on the main thread.
@_spi(ExperimentalCustomExecutors)
public final class GLibMainExecutor: MainExecutor, @unchecked Sendable {
    // @unchecked Sendable: `pump` is touched only by run() and runUntil(_:),
    // which trap off the main thread; the rest is atomic.

    /// The one main executor of the process.
    public static let shared = GLibMainExecutor()

    /// The GLib priority of the GSource that runs main-actor work
    /// (`G_PRIORITY_DEFAULT`, as Foundation's run loop services its main
    /// queue on every pass). Takes effect at the first `run()`.
    public var priority: Int32 {
        get { priorityValue.load(ordering: .relaxed) }
        set { priorityValue.store(newValue, ordering: .relaxed) }
    }
    private let priorityValue = Atomic<Int32>(0)

    /// Set by ``stop()``, consumed by the loop in ``run()``. Releasing store,
    /// acquiring exchange: what the stopping thread did before `stop()` is
    /// visible once `run()` returns. The wake-up, not the ordering, is what
    /// keeps a stop from being slept through: `g_main_context_wakeup` after
    /// the store makes the next iteration's poll return.
    private let stopRequested = Atomic<Bool>(false)
    private var pump: MainQueuePump?

    private init() {}

    // MARK: SerialExecutor

    /// Queues `job` on the main queue; the pump runs it on the main thread.
    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        DispatchQueue.main.async {
            unowned.runSynchronously(on: self.asUnownedSerialExecutor())
        }
    }

    /// Traps unless called on the main thread.
    public func checkIsolated() {
        if !MainQueuePump.isMainThread {
            fatalError("GLibMainExecutor: isolation check failed: the calling thread is not the main thread (rule: main-actor code runs only on the main thread)")
        }
    }

    public func isIsolatingCurrentContext() -> Bool? {
        MainQueuePump.isMainThread
    }

    // MARK: RunLoopExecutor

    /// Runs GLib's default main context on the main thread until ``stop()``.
    /// An `async main` calls it through the runtime once `main` first
    /// suspends; a synchronous main calls it itself.
    ///
    /// Throws ``MainQueuePump/Unavailable`` if libdispatch's main queue
    /// cannot be pumped. Traps off the main thread, and when this executor
    /// is not `MainActor.executor`.
    public func run() throws {
        try prepare("run()")
        // The flag is looked at between iterations, and stop() wakes the
        // context after setting it: GLib's wake-up stays pending until the
        // next iteration's poll, so a stop that lands just before the
        // iteration blocks is not slept through.
        while !stopRequested.exchange(false, ordering: .acquiringAndReleasing) {
            g_main_context_iteration(nil, 1)
        }
        // What the last pass queued (an `await MainActor.run` whose caller
        // would otherwise never resume) runs before run() returns.
        pump?.drainNow()
    }

    /// Iterates GLib's default main context on the main thread until
    /// `condition` holds (checked between iterations).
    public func runUntil(_ condition: () -> Bool) throws {
        try prepare("runUntil(_:)")
        while !condition() {
            g_main_context_iteration(nil, 1)
        }
    }

    /// Makes ``run()`` return after its current iteration. Thread-safe; a
    /// stop before `run()` makes the next `run()` return at once.
    public func stop() {
        stopRequested.store(true, ordering: .releasing)
        g_main_context_wakeup(nil)
    }

    /// The checks and set-up both ways of running share.
    private func prepare(_ what: String) throws {
        if !MainQueuePump.isMainThread {
            fatalError("GLibMainExecutor.\(what): called off the main thread (rule: the main executor runs on the main thread)")
        }
        Self.verifyInstalled()
        if pump == nil {
            pump = try MainQueuePump.install(on: nil, priority: priority)
        }
    }

    // MARK: Checks

    /// Traps unless this executor is `MainActor.executor`. Call it first in
    /// an `async main`: when the build lacks
    /// `-Xfrontend -disable-availability-checking`, Swift 6.3 on Linux
    /// ignores `typealias DefaultExecutorFactory` without a word, main-actor
    /// code then runs on a libdispatch worker thread, and `run()` is never
    /// called to say so.
    public static func verifyInstalled() {
        let current = MainActor.executor
        if (current as AnyObject) !== shared {
            fatalError("GLibMainExecutor: MainActor.executor is \(type(of: current)), not GLibMainExecutor (rule: install the executor before any main-actor work). In an async main, `typealias DefaultExecutorFactory = GLibExecutorFactory` is honoured on Linux with Swift 6.3 only when the executable target is built with -Xfrontend -disable-availability-checking; in a synchronous main, call _createExecutors(factory: GLibExecutorFactory.self) as its first statement.")
        }
    }
}

/// The executor factory that makes ``GLibMainExecutor`` the main executor,
/// and keeps the platform's global executor for everything else.
@_spi(ExperimentalCustomExecutors)
public struct GLibExecutorFactory: ExecutorFactory {
    public static var mainExecutor: any MainExecutor { GLibMainExecutor.shared }
    public static var defaultExecutor: any TaskExecutor { PlatformExecutorFactory.defaultExecutor }
}
#endif
