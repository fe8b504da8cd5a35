import Glibc
import Synchronization

/// A bottom half: a cheap callback bound to an ``AioContext`` that any thread
/// can schedule and that runs once per scheduling on the context's thread.
///
/// - Scheduling a BH that is already pending only sets a flag: it is never
///   linked twice and allocates nothing.
/// - A BH scheduled from inside a BH callback runs in the next pass of the
///   loop, not the current one.
/// - ``delete()`` is deferred: the loop frees the BH without running it.
/// - Every BH created with ``AioContext/makeBottomHalf(name:_:)`` must be
///   deleted before its context goes away; a BH still alive at teardown stops
///   the program with its name (QEMU aborts the same way).
///
/// The callback receives the BH itself, so it can re-schedule or delete it.
///
/// A BH does not keep its context alive (so that a context whose BHs were
/// never deleted can still be torn down and report them). Threads that
/// schedule a BH must therefore be done with it before the last reference
/// to its context goes away, as with any object they use.
/// QEMU: `QEMUBH` (`util/async.c`).
public final class BottomHalf: @unchecked Sendable, CustomStringConvertible {
    // @unchecked Sendable: `flags` is atomic; `next` is guarded by the BH list
    // protocol (see BHList.swift); `callback` is touched only by the thread that
    // owns the context while it dispatches, and by init.

    /// The name given at creation; it appears in leak reports and traps.
    ///
    /// Set only at creation, except for a one-shot recycled by the context's
    /// pool: its scheduler writes the new name while the node is its alone,
    /// before the push publishes it. One-shots are never handed out.
    @exclusivity(unchecked) public internal(set) var name: String

    // SAFETY: unowned(unsafe) is sound because the context cannot be torn down
    // while this BH is alive and not deleted (teardown traps naming it), and a
    // deleted BH never touches its context again (every entry point checks
    // DELETED first), except the run of its own callback that its context's
    // dispatch has on the stack: that run gives the freed BH back to the
    // context's registry when it returns (`run()`), inside the dispatch.
    unowned(unsafe) let context: AioContext

    /// PENDING | SCHEDULED | DELETED | ONESHOT | IDLE; see `BHFlags`.
    let flags: Atomic<UInt32>

    /// Link in the context's pending stack or dispatch queue.
    /// Written by the pushing thread before its releasing CAS [bh-push] and by
    /// the dispatcher; read by the dispatcher after its acquiring exchange.
    @exclusivity(unchecked) var next: Unmanaged<BottomHalf>?

    /// Owner-only. Let go of when the BH is freed (`releaseCallback()`),
    /// releasing what it captured.
    @exclusivity(unchecked) var callback: Callback?

    /// What a BH runs: named BHs get themselves (to re-schedule or delete),
    /// one-shots a plain closure, stored as is so a one-shot costs no
    /// allocation of ours (its BH comes from the context's `OneshotPool`)
    /// besides what the caller's closure captures.
    enum Callback {
        case withHandle(HandleCallback)
        case plain(@Sendable () -> Void)
    }

    /// A named BH's closure, boxed once when the BH is made, so that each run
    /// borrows it: calling a closure copied out of `callback` costs a retain
    /// and a release of its context (two locked instructions) per run.
    final class HandleCallback: Sendable {
        let body: @Sendable (BottomHalf) -> Void
        init(_ body: @escaping @Sendable (BottomHalf) -> Void) { self.body = body }
    }

    /// Whether this BH is in the context's registry of named BHs (all BHs made
    /// with `makeBottomHalf`; one-shots are not).
    let isRegistered: Bool

    /// The context's notify state and BH list, retained (except by
    /// one-shots, see `NotifyCore`): `schedule()` touches only this after it
    /// has published the BH, so it never reaches a context the owner freed
    /// meanwhile. Model of the window: AIO_FAULT_NOTIFY_AFTER_TEARDOWN.
    /// Declared last: the dispatch reads `flags`, `next` and `callback`, and
    /// they keep the offsets they had before this field existed.
    private let core: Unmanaged<NotifyCore>

    /// The box in `callback` for a named BH, unretained (nil for one-shots).
    /// Owner-only, with `activeRuns` and `releaseAfterRun`; see `run()`.
    @exclusivity(unchecked) private var borrowedCallback: Unmanaged<HandleCallback>?
    /// Runs of this BH's callback on the stack: more than one when the
    /// callback re-schedules its BH and polls, nested.
    @exclusivity(unchecked) private var activeRuns = 0
    /// `releaseCallback()` came while a run was on the stack.
    @exclusivity(unchecked) private var releaseAfterRun = false
    /// The context freed this BH while a run was on the stack: the
    /// registry, which may hold the last reference (the BH list holds none
    /// of a registered BH), lets go of it when that run returns.
    @exclusivity(unchecked) private(set) var unregisterAfterRun = false
    #if DEBUG
    /// Tests: the thread whose dispatch freed this BH (0: not freed).
    @exclusivity(unchecked) var debugFreedOnThread: UInt = 0
    #endif

    init(context: AioContext, name: String, flags: UInt32, registered: Bool,
         callback: Callback) {
        self.context = context
        self.core = flags & BHFlags.oneshot != 0
            ? Unmanaged.passUnretained(context.core) : Unmanaged.passRetained(context.core)
        self.name = name
        self.flags = Atomic(flags)
        self.isRegistered = registered
        self.callback = callback
        if case .withHandle(let box) = callback {
            borrowedCallback = Unmanaged.passUnretained(box)
        }
    }

    deinit {
        // SAFETY: balances the passRetained in init (one-shots took none).
        if flags.load(ordering: .relaxed) & BHFlags.oneshot == 0 { core.release() }
    }

    /// A one-line description for logs and debugging.
    public var description: String { "BottomHalf('\(name)')" }

    /// Runs the callback. Owner-only.
    ///
    /// A named BH's closure is borrowed, not retained, for the run: its box
    /// stays alive because `callback` holds it, and `releaseCallback()` lets
    /// go of it only when no run of this BH is on the stack. A callback may
    /// delete its own BH and then poll, nested: the nested pass frees the BH
    /// while this run is still inside the closure; the release then waits for
    /// the run to return (test: "a BH that deletes itself and polls keeps its
    /// closure until it returns").
    @inline(__always)
    func run() {
        if let box = borrowedCallback {
            activeRuns &+= 1
            // SAFETY: see above; `callback` holds the box while `activeRuns` > 0.
            box._withUnsafeGuaranteedRef { $0.body(self) }
            activeRuns &-= 1
            if activeRuns == 0 && releaseAfterRun {
                releaseAfterRun = false
                releaseCallback()
                // Last (`AioContext.free` set both flags): the registry's
                // may be the last reference to us.
                if unregisterAfterRun {
                    unregisterAfterRun = false
                    context.unregister(self)
                }
            }
            return
        }
        if case .plain(let body)? = callback { body() }
    }

    /// Lets go of the callback, and of what it captured, once the BH can
    /// never run again (freed, or its context torn down). Deferred to the
    /// end of the run if the BH's callback is running (see `run()`).
    /// Owner-only.
    func releaseCallback() {
        if activeRuns > 0 {
            releaseAfterRun = true
            return
        }
        borrowedCallback = nil
        callback = nil
    }

    /// Whether a run of this BH is on the stack; if so, the context's
    /// registry lets go of the BH when it returns (see `run()`), instead of
    /// now. Owner-only, called by `AioContext.free` after
    /// `releaseCallback()`.
    func unregisterAfterRunIfRunning() -> Bool {
        if activeRuns == 0 { return false }
        unregisterAfterRun = true
        return true
    }

    /// Schedules the BH to run once on its context's thread.
    ///
    /// Thread-safe: may be called from any thread. Re-scheduling a pending BH
    /// is a single atomic OR. Traps if the BH was deleted.
    /// QEMU: `qemu_bh_schedule()`.
    @inline(__always)
    public func schedule() {
        enqueue(BHFlags.scheduled, operation: "schedule()")
    }

    /// Schedules the BH at idle priority: it caps the loop's sleep at 10 ms
    /// instead of forcing it to 0, and running it is not progress.
    ///
    /// Thread-safe: may be called from any thread. QEMU: `qemu_bh_schedule_idle()`.
    public func scheduleIdle() {
        enqueue(BHFlags.scheduled | BHFlags.idle, operation: "scheduleIdle()")
    }

    /// Cancels a pending run. A BH already queued is popped later and skipped.
    ///
    /// Thread-safe, but it races with the loop unless the caller is serialised
    /// with it (for example, it runs on the context's thread).
    /// QEMU: `qemu_bh_cancel()`.
    public func cancel() {
        // Acquiring-and-releasing, as QEMU's sequentially consistent
        // qatomic_and: a caller that cancels and then re-checks the state the
        // BH would have handled (the thread pool's completion BH rescans
        // after cancelling itself) must see what a concurrent schedule()
        // published before setting SCHEDULED again.
        flags.bitwiseAnd(~BHFlags.scheduled, ordering: .acquiringAndReleasing)
    }

    /// Deletes the BH. The loop frees it on its next pass without running the
    /// callback; deleting is not progress. Calling any method afterwards traps.
    ///
    /// Thread-safe: may be called from any thread, including from the BH's own
    /// callback. QEMU: `qemu_bh_delete()`.
    public func delete() {
        enqueue(BHFlags.deleted, operation: "delete()")
    }

    /// Whether the BH is scheduled and has not run yet. Thread-safe, racy by nature.
    public var isScheduled: Bool {
        let f = flags.load(ordering: .relaxed)
        return f & BHFlags.scheduled != 0 && f & BHFlags.deleted == 0
    }

    /// The executor's schedule: does nothing once the context is torn down.
    /// A thread may push a job, be preempted, and find that the owner ran
    /// the job, the task ended and dropped the context meanwhile; its
    /// schedule then must neither trap (the BH is deleted) nor strand the BH
    /// on the dead context's list (the BH and the core would keep each other
    /// alive). Teardown sets `closed` and then drains; we push and then look
    /// at `closed`; the fences make sure one of us sees the other.
    func scheduleUnlessTornDown() {
        let old = flags.bitwiseOr(BHFlags.pending | BHFlags.scheduled,
                                  ordering: .acquiringAndReleasing).oldValue
        if old & BHFlags.deleted != 0 { return }
        core._withUnsafeGuaranteedRef { core in
            if old & BHFlags.pending == 0 {
                core.bhList.push(self)
                atomicMemoryFence(ordering: .sequentiallyConsistent)
                if core.closed.load(ordering: .relaxed) {
                    core.bhList.discardPending()
                    return
                }
            }
            core.notify()
        }
    }

    @inline(__always)
    private func enqueue(_ newFlags: UInt32, operation: StaticString) {
        // [bh-flags] acquiring-and-releasing: releasing publishes what the caller
        // wrote before scheduling to the dispatcher's AND in `AioContext.bhPoll`
        // when the BH is already linked; acquiring orders our write of `next`
        // in `push` after the dispatcher's unlink, which it did before clearing
        // PENDING. Model: Models/aio_notify.pml, variant BUG_BH_EARLY_CLEAR.
        let old = flags.bitwiseOr(BHFlags.pending | newFlags,
                                  ordering: .acquiringAndReleasing).oldValue
        if old & BHFlags.deleted != 0 {
            fatalError("BottomHalf '\(name)': \(operation) after delete(); a deleted bottom half must not be used again")
        }
        // No reference counting on this path: this BH is alive (we are in
        // it) and holds the core. Once the BH is published the owner may run
        // it, delete it and drop the context, so only the core is touched.
        core._withUnsafeGuaranteedRef { core in
            if old & BHFlags.pending == 0 {
                core.bhList.push(self)
            }
            #if AIO_FAULT_NOTIFY_AFTER_TEARDOWN
            // Wide enough for the owner to run the BH, delete it and tear
            // the whole context down in between.
            usleep(2_000)
            #endif
            core.notify()
        }
    }
}

/// BH flag bits. QEMU: `BH_PENDING`, `BH_SCHEDULED`, ... in `util/async.c`.
enum BHFlags {
    /// Linked in the pending stack or the dispatch queue.
    static let pending: UInt32 = 1 << 0
    /// Run the callback when dequeued.
    static let scheduled: UInt32 = 1 << 1
    /// Free without running when dequeued.
    static let deleted: UInt32 = 1 << 2
    /// Free after running once.
    static let oneshot: UInt32 = 1 << 3
    /// Low priority: not progress, caps the sleep at 10 ms.
    static let idle: UInt32 = 1 << 4
    /// A one-shot whose node its scheduler took from the context's pool
    /// (`OneshotPool`), not a node it made: the owner counted it when it
    /// recycled it, and does not count it again.
    static let pooled: UInt32 = 1 << 5
}
