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
    /// Quits asked for and not yet consumed by a run. Internal: tests check
    /// that none is left over.
    let pendingQuits = Atomic<Int>(0)
    /// Threads inside `run()`, for `isRunning` only. Relaxed: it orders
    /// nothing, and a stale read only makes `isRunning` late.
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

    /// Iterates the context, sleeping when it has nothing to do, until it
    /// takes a ``quit()`` (at once if one is pending). Any thread; the
    /// thread must be able to acquire the `GMainContext` (GLib's rule: one
    /// thread iterates it at a time; while another thread holds it, GLib
    /// waits for it, and a quit cannot end that wait).
    public func run() {
        _ = run(until: { false })
    }

    /// ``run()``, which also returns when `stopped` is true; it is checked
    /// after each iteration, so whoever makes it true calls ``wakeUp()``
    /// afterwards. Returns whether it took a quit (false: `stopped`). For
    /// drivers that stop a loop without leaving a quit behind.
    @_spi(AioInternals) public func run(until stopped: () -> Bool) -> Bool {
        runs.wrappingAdd(1, ordering: .relaxed)
        defer { runs.wrappingSubtract(1, ordering: .relaxed) }
        while true {
            if takeQuit() { return true }
            if stopped() { return false }
            // A quit between the check and the sleep is not slept through:
            // quit() wakes the context after adding, and a wakeup that comes
            // before the poll makes the poll return at once.
            g_main_context_iteration(context, 1)
        }
    }

    /// Takes one pending quit, if any. Each quit ends exactly one run: with
    /// two threads in `run()` (or a nested run), one quit ends one of them.
    private func takeQuit() -> Bool {
        // [loop-quit] Acquiring, pairs with quit()'s releasing add: what the
        // quitting thread did before quit() is visible after run() returns.
        var pending = pendingQuits.load(ordering: .acquiring)
        while pending > 0 {
            let (taken, current) = pendingQuits.compareExchange(
                expected: pending, desired: pending - 1, ordering: .acquiring)
            if taken { return true }
            pending = current
        }
        return false
    }

    /// Wakes the thread in ``run()`` so that it re-checks its conditions.
    /// Thread-safe; never blocks.
    @_spi(AioInternals) public func wakeUp() {
        g_main_context_wakeup(context)
    }

    /// Makes one ``run()`` return after its current iteration: the current
    /// one, or the next if none is running. With several runs at once
    /// (threads, or a run nested in a callback), each quit ends one of them
    /// (`g_main_loop_quit` ends them all). Thread-safe; never blocks.
    public func quit() {
        pendingQuits.wrappingAdd(1, ordering: .releasing)
        g_main_context_wakeup(context)
    }

    /// Whether some thread is inside ``run()``. Racy by nature.
    public var isRunning: Bool { runs.load(ordering: .relaxed) > 0 }
}
