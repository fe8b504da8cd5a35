import CGLibShim
import Synchronization

/// Runs a `GMainContext` until told to stop, like a `GMainLoop`, and may be
/// shared with (and quit from) any thread or task.
///
/// ```swift
/// let loop = GLibMainLoop()                  // the default GMainContext
/// ctx.attach(to: nil)
/// ctx.scheduleOneshot { loop.quit() }        // any thread, any time
/// loop.run()                                 // returns after quit()
/// ```
///
/// It differs from `g_main_loop_run` in two ways, both on purpose:
/// - **A `quit()` is never lost.** If it comes before `run()` (another thread
///   finished first), the next `run()` returns at once instead of blocking:
///   each `quit()` ends the current run, or the next one. `g_main_loop_quit`
///   before `g_main_loop_run` is forgotten.
/// - **It lets go of the `GMainContext` between iterations**
///   (`g_main_context_iteration`), instead of holding it for the whole run.
///   A thread that owns an ``AioContext`` attached to this `GMainContext` may
///   then take the `GMainContext` between two iterations; under a
///   `GMainLoop` it would wait until the loop quits (see the threading rules).
///
/// GLib's own `GMainLoop` still works with this library; this type is for
/// programs that want a loop value they can pass around in Swift 6 without
/// `nonisolated(unsafe)`.
public final class GLibMainLoop: @unchecked Sendable {
    // @unchecked Sendable: `context` is immutable and GLib's context calls
    // used here (iteration, wakeup, ref/unref) are thread-safe; the rest is atomic.

    /// The `GMainContext` this loop runs (a reference the loop holds).
    public let context: OpaquePointer
    /// Quits asked for and not yet consumed by a run.
    private let pendingQuits = Atomic<Int>(0)
    private let runs = Atomic<Int>(0)

    /// A loop over `context`, or over GLib's default `GMainContext` if nil.
    public init(context: OpaquePointer? = nil) {
        let mainContext = context ?? g_main_context_default()!
        g_main_context_ref(mainContext)
        self.context = mainContext
    }

    deinit {
        g_main_context_unref(context)
    }

    /// Iterates the context, sleeping when it has nothing to do, until
    /// ``quit()`` is called (or returns at once if a quit came since the
    /// last run). Any thread; the thread must be able to acquire the
    /// `GMainContext` (GLib's rule: one thread iterates it at a time).
    public func run() {
        runs.wrappingAdd(1, ordering: .relaxed)
        defer { runs.wrappingSubtract(1, ordering: .relaxed) }
        // [loop-quit] Acquiring, pairs with quit()'s releasing add: what the
        // quitting thread did before quit() is visible after run() returns.
        while pendingQuits.load(ordering: .acquiring) == 0 {
            // A quit between the check and the sleep is not slept through:
            // quit() wakes the context after adding, and a wakeup that comes
            // before the poll makes the poll return at once.
            g_main_context_iteration(context, 1)
        }
        pendingQuits.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Makes the current ``run()`` return after its current iteration, or
    /// the next one if none is running. Thread-safe; never blocks.
    public func quit() {
        pendingQuits.wrappingAdd(1, ordering: .releasing)
        g_main_context_wakeup(context)
    }

    /// Whether some thread is inside ``run()``. Racy by nature.
    public var isRunning: Bool { runs.load(ordering: .relaxed) > 0 }
}
