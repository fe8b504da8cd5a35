import CGLibShim
import Glibc
import Synchronization

/// What ``AioContext/notify()`` and `BottomHalf.schedule()` touch: the
/// wake-up protocol's shared state and the BH list.
///
/// It lives apart from the context because a scheduler runs after it has
/// published its BH: between the push and the notify, the owner may run the
/// BH, delete it, and drop the last reference to the context. Every BH that
/// can be scheduled (named BHs, the executor's, the pool's) holds the core
/// strongly, and the scheduling thread holds the BH, so the core outlives
/// every `schedule()` in flight: no reference count is taken per schedule.
/// One-shots are scheduled once, by `scheduleOneshot` on a context the
/// caller holds, and do not retain it. Its eventfds close when the last
/// holder lets go.
final class NotifyCore: @unchecked Sendable {
    // @unchecked Sendable: atomics, thread-safe members, and the BH list's
    // own protocol.

    /// `notifyMe` and `notifyGeneration` share a cache line with nothing
    /// else: every notify (each producer's schedule) writes the generation,
    /// and nothing the loop writes per pass may sit beside it.
    let padBeforeWakeState = CacheLinePadding()

    /// Who may sleep, and so who must be woken.
    ///
    /// - Bit 0: the attached GSource is between prepare and check, i.e. GLib may
    ///   be asleep in its poll. Set in prepare, cleared in check or by a
    ///   prepare that returns ready (a bit, not a counter, because GLib may
    ///   prepare without checking).
    /// - Bits 1...31: twice the number of native `poll(blocking: true)` calls
    ///   that are about to block or are blocked (each adds 2).
    ///
    /// Unlike QEMU, two threads may write it at once (the GLib thread's bit 0
    /// and a native waiter's +2; or two native waiters), so every update is an
    /// atomic read-modify-write. Each raise is a sequentially consistent RMW
    /// followed by a sequentially consistent load of the generation, never a
    /// relaxed one (a relaxed load after an RMW is not ordered by it on ARM:
    /// QEMU's 2020 and 2023 lessons): [dekker-wait], paired with
    /// [dekker-notify] in ``notify()``. Lowering uses release ordering: the wait
    /// is over before we stop advertising.
    ///
    /// Checked by Models/aio_notify_gen.pml; variants FAULT_BOOL_FLAG (one
    /// flag for two waiters), FAULT_WAIT_ORDER (reading the generation before
    /// advertising).
    let notifyMe = Atomic<UInt32>(0)

    /// How many times ``notify()`` has been called: QEMU's `notified` flag,
    /// made a generation count so that no thread can clear another's.
    ///
    /// QEMU clears one shared flag in `aio_notify_accept` before it looks for
    /// work, and a blocking poll does not sleep if the flag is set again. With
    /// several threads polling one context (a non-blocking poll on another
    /// thread, GLib's check, a second native waiter), whoever accepts can
    /// erase a notification meant for a thread that has checked its condition
    /// but not yet advertised, which then sleeps through it: seed 004's steal
    /// at the level of the flag. Here each thread keeps its own view
    /// (`NotifyMemory`: the generation when its last poll returned, or
    /// an explicit ``NotifyToken``), and a blocking poll does not sleep if the
    /// generation moved since. Nothing shared is ever cleared.
    /// Models/aio_notify.pml (BUG_STEAL, BUG_V_DROPS_OWNERSHIP) shows how a
    /// shared flag fails; Models/aio_notify_gen.pml checks this design
    /// (FAULT_STEAL, FAULT_UNKNOWN_IS_SEEN, FAULT_G_NO_MEMORY, FAULT_TOKEN_LATE).
    ///
    /// Every notify increments it (one RMW); wrapping takes 2^64 notifies.
    /// A notify never skips a wake-up write because of it (FAULT_SKIP_WRITE).
    let notifyGeneration = Atomic<UInt64>(0)
    let padAfterWakeState = CacheLinePadding()

    /// The address of the GMainContext the source is attached to, 0 when
    /// detached: a notify that sees bit 0 wakes GLib with
    /// `g_main_context_wakeup()`. GLib polls its own wake-up fd in every
    /// iteration and drains it itself, so the source adds no fd of ours for
    /// wake-ups (a poll of one fd fewer per iteration, and no `read(2)` of
    /// ours after a wake). Set by `attach` before the source can prepare,
    /// with a reference that `detach` gives back. The lock is held across
    /// the wake, so `detach` cannot release the context while a notify is
    /// waking it; it is taken only by a wake of GLib (a notify's, or an
    /// ownership release's for a deferred hook), next to a system call, and
    /// by attach, detach and the core's deinit. A leaf lock: the wake takes
    /// no other. (`OpaquePointer` is not `Sendable`: kept as an address.)
    private let glibContext = Locked<UInt>(0)

    #if AIO_FAULT_SHARED_FD
    /// FAULT: QEMU's one eventfd, polled by GLib and by every native
    /// waiter, drained only by the GSource's check.
    let faultSharedNotifier: EventNotifier
    #endif

    /// A notify woke GLib (or is waking it) and GLib may not have drained
    /// its wake-up fd since: later notifies skip the wake-up. Set by the
    /// notify that wakes. GLib drains the fd in its check phase whenever its
    /// poll saw it readable, with or without our check (after a ready
    /// prepare, or when it bails out because its poll set changed), so the
    /// flag is cleared at the start of every prepare, before bit 0 is set,
    /// and after each such drain, in our check. Not strictly one write per
    /// sleep: a write that lands after GLib's poll leaves the fd readable
    /// with the flag clear, and the next notify writes again (harmless).
    /// Models/aio_notify_gen.pml: GLIB_WAKEUP, FAULT_G_PEND_CHECK_ONLY (only
    /// the check clears it), FAULT_PENDING_EARLY_CLEAR (a clear before the
    /// drain, with a fd of our own).
    let glibWakePending = Atomic<Bool>(false)

    /// Private wake-up fds of native waiters. Thread-safe (own lock).
    let waiters: WaiterRegistry

    /// Pending BHs. Thread-safe push; the queue side is owner-only.
    let bhList = BHList()

    /// Counters for the context's ``AioContext/statistics``.
    let stats = Counters()

    /// Set by the context's teardown before it drains the BH list; see
    /// `BottomHalf.scheduleUnlessTornDown`.
    let closed = Atomic<Bool>(false)

    init(contextName: String) throws(AioError) {
        waiters = try WaiterRegistry(contextName: contextName)
        #if AIO_FAULT_SHARED_FD
        faultSharedNotifier = try EventNotifier()
        waiters.sharedNotifier = faultSharedNotifier
        #endif
    }

    deinit {
        // A context is detached before its core goes (the source holds the
        // context); this only guards against a reference left behind.
        if let left = takeGLibContext() { g_main_context_unref(left) }
    }

    /// Records the GMainContext a source is being attached to, with a
    /// reference kept while attached. Attach calls it before
    /// `g_source_attach`, so no prepare can set bit 0 before a notify can
    /// find the context to wake. The context was detached (nothing to give
    /// back): attach and detach run under the context's attachment lock.
    func setGLibContext(_ mainContext: OpaquePointer) {
        g_main_context_ref(mainContext)
        glibContext.withLock { address in
            precondition(address == 0, "a GMainContext recorded twice")
            address = UInt(bitPattern: mainContext)
        }
    }

    /// Forgets the GMainContext and returns its reference, for the caller to
    /// release once its source has left it. After the lock no notify is
    /// waking it any more.
    func takeGLibContext() -> OpaquePointer? {
        glibContext.withLock { address in
            defer { address = 0 }
            return OpaquePointer(bitPattern: address)
        }
    }

    /// Wakes the GLib thread through its GMainContext's own wake-up fd,
    /// unless a wake-up is already pending there: at most one write per GLib
    /// sleep. The flag is set by the wake that writes and cleared after
    /// GLib's drains (see `glibWakePending`). Acquiring pairs with the
    /// releasing stores of false, which follow the drain: a wake that finds
    /// the flag clear writes after that drain, so its write cannot be
    /// swallowed. Releasing orders the claim before the write (and, for a
    /// deferred hook's wake, pairs with the GLib thread's clear before its
    /// deferral: see `OwnershipLock.tryAcquireOrDefer`). Model:
    /// Models/aio_notify_gen.pml, GLIB_WAKEUP and FAULT_G_PEND_CHECK_ONLY.
    /// Counts the write in the statistics if there was one (none while
    /// detached). Any thread: a notify that sees bit 0, and the release
    /// that ends a stretch of ownership during which GLib was turned away.
    @inline(never)
    func wakeGLibUnlessPending() {
        if glibWakePending.exchange(true, ordering: .acquiringAndReleasing) { return }
        #if AIO_FAULT_SHARED_FD
        faultSharedNotifier.set()
        stats.eventfdWrites.wrappingAdd(1, ordering: .relaxed)
        #else
        let woke = glibContext.withLock { address -> Bool in
            guard let mainContext = OpaquePointer(bitPattern: address) else { return false }
            g_main_context_wakeup(mainContext)
            return true
        }
        if woke { stats.eventfdWrites.wrappingAdd(1, ordering: .relaxed) }
        #endif
    }

    /// Wakes every thread that sleeps, or is about to sleep, on this context,
    /// so it looks at the work published before this call.
    ///
    /// Costs a fence and two memory accesses when nobody sleeps; an eventfd
    /// write per sleeper otherwise. Thread-safe: may be called from any thread.
    /// QEMU: `aio_notify()`.
    @inline(__always)
    func notify() {
        #if AIO_FAULT_NOTIFY_AFTER_TEARDOWN
        if faultTornDown.load(ordering: .relaxed) {
            fatalError("AIO_FAULT_NOTIFY_AFTER_TEARDOWN: notify() reached a context that was torn down")
        }
        #endif
        // [notify-publish] releasing: the work published before notify (a BH
        // link, a timer change, a condition) is visible to a poll that reads
        // the new generation with its acquiring snapshot.
        #if AIO_FAULT_NOTIFY_ORDER
        // FAULT: notifyMe is read before the notification is published.
        let waitingEarly = notifyMe.load(ordering: .relaxed)
        faultWindow()
        notifyGeneration.wrappingAdd(1, ordering: .releasing)
        if waitingEarly != 0 { wake(waitingEarly) }
        return
        #endif
        // [dekker-notify] The new generation must be ordered before our read
        // of `notifyMe`. Pairs with [dekker-wait] in `poll(blocking:)` and in
        // the GSource prepare (GSource.swift): either the waiter sees the new
        // generation and does not sleep, or we see its advertisement and
        // write its wake-up fd. Both sides use sequentially consistent
        // operations on both variables (the RMW here, the load below; the
        // waiter's RMW on notifyMe and its load of the generation), so all
        // four are in one total order that respects program order: Dekker's
        // argument holds by the memory model, on ARM too. A relaxed load after
        // the RMW would not be ordered (QEMU's 2023 ARM bug); an explicit
        // fence would also do, but costs an mfence on x86, where the locked
        // RMW already orders the load. Without it: a lost wake-up.
        // Model: Models/aio_notify_gen.pml, FAULT_NOTIFY_ORDER.
        notifyGeneration.wrappingAdd(1, ordering: .sequentiallyConsistent)
        let waiting = notifyMe.load(ordering: .sequentiallyConsistent)
        #if AIO_FAULT_SKIP_WRITE
        // FAULT: no write if a notification is already pending (BUG2 of
        // QEMU's aio_notify_accept.promela).
        if faultNotified.exchange(true, ordering: .relaxed) { return }
        #endif
        if waiting != 0 {
            wake(waiting)
        }
    }

    /// Writes the wake-up fd of every advertised sleeper. Never skipped
    /// because an earlier notify is still unseen: that says nothing about
    /// who sleeps now (Models/aio_notify_gen.pml, FAULT_SKIP_WRITE).
    @inline(never)
    func wake(_ waiting: UInt32) {
        #if AIO_FAULT_SHARED_FD
        // FAULT: QEMU's single eventfd for every sleeper (see WaitSlot).
        faultSharedNotifier.set()
        stats.eventfdWrites.wrappingAdd(1, ordering: .relaxed)
        return
        #endif
        if waiting & 1 != 0 { wakeGLibUnlessPending() }
        if waiting >= 2 {
            let writes = waiters.wakeAll()
            stats.eventfdWrites.wrappingAdd(writes, ordering: .relaxed)
        }
    }

    #if AIO_FAULT_NOTIFY_AFTER_TEARDOWN
    /// FAULT: the context's notify state is torn down with the context (as
    /// if BHs held it unretained); set by the context's deinit.
    let faultTornDown = Atomic<Bool>(false)
    #endif
}

extension AioContext {
    /// Wakes every thread that sleeps, or is about to sleep, on this context,
    /// so it looks at the work published before this call.
    ///
    /// Costs a fence and two memory accesses when nobody sleeps; an eventfd
    /// write per sleeper otherwise. Thread-safe: may be called from any thread.
    /// QEMU: `aio_notify()`.
    @inline(__always)
    public func notify() {
        core.notify()
    }

    /// A snapshot of the context's notifications. Take it *before* checking
    /// a condition that another thread changes and then calls ``notify()``,
    /// and pass it to ``poll(blocking:unlessNotifiedSince:)``: the poll then
    /// does not sleep if any notify came after the snapshot, so the change
    /// cannot be missed between the check and the sleep.
    ///
    /// Thread-safe. QEMU has no equivalent: only one thread polls there.
    /// Model: Models/aio_notify_gen.pml, FAULT_TOKEN_LATE (a token taken
    /// after the check).
    public var notifyToken: NotifyToken {
        // [accept] acquiring: whatever a notify published before the
        // generation we read is visible to the caller's condition check and
        // to the poll's look for work that follow. Pairs with [notify-publish].
        NotifyToken(generation: core.notifyGeneration.load(ordering: .acquiring))
    }
}

/// A point in a context's sequence of notifications; see
/// ``AioContext/notifyToken``.
public struct NotifyToken: Sendable, Equatable {
    let generation: UInt64
}

/// A poll's private resources: the wake-up eventfd it sleeps on (when it
/// advertises in `notifyMe`) and the buffers its fd wait fills.
final class WaitSlot: @unchecked Sendable {
    // @unchecked Sendable: a slot is used by one poll at a time (taken from
    // and returned to the registry under its lock).
    let notifier: EventNotifier
    let buffers = PollBuffers()
    /// Wake pending: a notify wrote `notifier` since the slot was advertised.
    /// Under the registry's lock. Later notifies skip the write (the sleeper
    /// is already woken), so a sleep costs at most one eventfd write however
    /// many notifies arrive before its poll withdraws (libuv's and SwiftNIO's
    /// wake-pending flag). Model: Models/aio_notify_gen.pml (the flags are its
    /// default; NO_WAKE_PENDING is the old code, FAULT_PENDING_* must fail).
    /// Unchecked exclusivity: the lock orders every access.
    @exclusivity(unchecked) var wakePending = false
    /// Notifies that set `wakePending` and have not yet finished writing
    /// `notifier`: they write after letting the registry's lock go, so the
    /// thread they wake does not find the lock held by its waker. One per
    /// advertisement (the flag goes from false to true once per
    /// advertisement), and 2 when a slot whose drain owes a write still
    /// landing is advertised again and written: the drain tests for
    /// nonzero, so either is fine. Model: Models/aio_notify_gen.pml,
    /// WRITE_OUTSIDE_LOCK.
    let writesInFlight = Atomic<Int>(0)
    /// Owner of the slot only: a drain found a write still in flight, so the
    /// fd may become readable after that drain; the slot's next drain reads
    /// it whether or not that poll was written. Model: ALT_OWE_DRAIN.
    @exclusivity(unchecked) var owesDrain = false
    init() throws(AioError) { notifier = try EventNotifier() }

    /// Reads (drains) the wake-up that a notify wrote while the slot was
    /// advertised (`written`), and any the slot still owes. Never waits: a
    /// write still landing (its notifier between its unlock and its write)
    /// leaves the debt for the slot's next drain. Until then the write can
    /// cost one wait that returns at once, never a loop: that wait's drain
    /// reads it. Owner of the slot only.
    @inline(__always)
    func drain(written: Bool) {
        guard written || owesDrain else { return }
        // Acquiring, and before the read: a count of 0 means the write
        // landed before this load (releasing decrement after the write), so
        // the read below consumes it.
        let stillLanding = writesInFlight.load(ordering: .acquiring) != 0
        notifier.testAndClear()
        #if AIO_FAULT_OWE_FORGOTTEN
        // FAULT: the debt is not kept: a write that lands after this read
        // leaves the fd readable for the slot's next sleep, whose poll was
        // not written and so does not drain: every later wait returns at
        // once (Models/aio_notify_gen.pml, FAULT_OWE_FORGOTTEN).
        _ = stillLanding
        owesDrain = false
        #else
        owesDrain = stillLanding
        #endif
        #if DEBUG
        if stillLanding { Self.drainsOwed.wrappingAdd(1, ordering: .relaxed) }
        #endif
    }

    #if DEBUG
    /// Tests: drains that found a write in flight and owed it.
    static let drainsOwed = Atomic<Int>(0)
    #endif
    #if AIO_FAULT_SHARED_FD
    // FAULT: every native waiter sleeps on, and drains, one shared eventfd.
    init(shared: EventNotifier) { notifier = shared }
    #endif
}

/// The private wake-up fds of the native polls that are about to block or are
/// blocked on a context, and a pool of slots for polls in flight.
///
/// Each native waiter sleeps on its own eventfd and is the only thread that
/// drains it, while GLib sleeps on its main context's own wake-up fd. QEMU's single
/// shared eventfd lets one sleeper drain the wake-up another needed (the
/// GLib thread and an owner thread in a native poll at the same time, seed
/// 000/003); private fds make that impossible by construction
/// (Models/aio_notify.pml BUG_SHARED_FD, Models/aio_notify_gen.pml FAULT_SHARED_FD). The registry lock is only taken on
/// the slow path (a poll that sleeps or watches fds, and a notify that must
/// wake a sleeper, next to a syscall); scheduling and notifying with nobody
/// asleep never touch it.
final class WaiterRegistry: @unchecked Sendable {
    // @unchecked Sendable: `advertised` and `free` are protected by `lock`.
    private let lock = PThreadMutex()
    // Unchecked exclusivity: the lock orders every access, and a checked
    // access costs a runtime call per notify that wakes a sleeper.
    @exclusivity(unchecked) private var advertised: [WaitSlot] = []
    @exclusivity(unchecked) private var free: [WaitSlot] = []
    #if AIO_FAULT_SHARED_FD
    var sharedNotifier: EventNotifier?
    #endif

    /// For traps.
    let contextName: String

    init(contextName: String) throws(AioError) {
        self.contextName = contextName
        // One slot up front covers the usual single poller without a syscall
        // in the poll path.
        free.append(try WaitSlot())
        advertised.reserveCapacity(4)
        free.reserveCapacity(4)
    }

    /// Takes a slot for a poll in flight. With `advertise`, the slot is also
    /// registered as a sleeper's: this must precede the caller's raise of
    /// `notifyMe`, so a notify that sees the raise finds the slot (the lock
    /// orders the two).
    func takeSlot(advertise: Bool) -> WaitSlot {
        lock.lock()
        defer { lock.unlock() }
        let slot: WaitSlot
        #if AIO_FAULT_SHARED_FD
        if let shared = sharedNotifier { slot = WaitSlot(shared: shared); if advertise { advertised.append(slot) }; return slot }
        #endif
        if let reused = free.popLast() {
            slot = reused
        } else {
            do {
                slot = try WaitSlot()
            } catch {
                fatalError("AioContext '\(contextName)': cannot create a wake-up eventfd for another thread polling it at the same time (\(error)). Each thread that polls a context concurrently needs its own eventfd; raise the descriptor limit (ulimit -n) or poll the context from fewer threads at once.")
            }
        }
        if advertise { advertised.append(slot) }
        return slot
    }

    /// Stops waking `slot`. After this no notify starts a write to it.
    /// Returns whether a notify wrote it while advertised (that write may
    /// still be in flight: `WaitSlot.drain(written:)` owes it then), and
    /// clears that flag: the caller drains.
    func withdraw(_ slot: WaitSlot) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if let index = advertised.firstIndex(where: { $0 === slot }) {
            advertised.remove(at: index)
        }
        let written = slot.wakePending
        slot.wakePending = false
        return written
    }

    #if DEBUG
    /// Tests: sleep 200 µs between the unlock and the writes in `wakeAll`.
    static let widenWriteWindow = Atomic<Bool>(false)
    #endif

    /// Gives a slot back to the pool, after its poll has dispatched.
    func returnSlot(_ slot: WaitSlot) {
        lock.lock()
        defer { lock.unlock() }
        free.append(slot)
    }

    #if AIO_FAULT_STEAL
    func faultDrainAll() {
        lock.withLock { for slot in advertised { slot.notifier.testAndClear() } }
    }
    #endif

    /// Writes every advertised slot that has no wake pending; returns how
    /// many writes it made. The slots are chosen, and counted in flight,
    /// under the lock; the writes happen after it is let go, so that a woken
    /// thread that withdraws at once does not block on its waker.
    func wakeAll() -> Int {
        lock.lock()
        let count = advertised.count
        if count == 0 {
            lock.unlock()
            return 0
        }
        return withUnsafeTemporaryAllocation(of: WaitSlot.self, capacity: count) { chosen in
            var writes = 0
            for slot in advertised where !slot.wakePending {
                slot.wakePending = true
                slot.writesInFlight.wrappingAdd(1, ordering: .relaxed)
                (chosen.baseAddress! + writes).initialize(to: slot)
                writes += 1
            }
            lock.unlock()
            #if AIO_FAULT_OWE_FORGOTTEN
            // Widens the window between the unlock and the write, so the
            // fault matrix sees the drain overtake it within seconds.
            usleep(200)
            #elseif DEBUG
            // Tests widen it the same way to make drains find writes in flight.
            if Self.widenWriteWindow.load(ordering: .relaxed) { usleep(200) }
            #endif
            for i in 0..<writes {
                let slot = (chosen.baseAddress! + i).move()
                slot.notifier.set()
                // Releasing: the drain that sees 0 also sees the write.
                slot.writesInFlight.wrappingSubtract(1, ordering: .releasing)
            }
            return writes
        }
    }

    var debugDescription: String {
        lock.withLock {
            "\(advertised.count) (readable: \(advertised.filter { $0.notifier.isSet }.count))"
        }
    }
}
