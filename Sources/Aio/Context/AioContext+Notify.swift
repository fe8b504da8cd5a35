import Synchronization

extension AioContext {
    /// Wakes every thread that sleeps, or is about to sleep, on this context,
    /// so it looks at the work published before this call.
    ///
    /// Costs a fence and two memory accesses when nobody sleeps; an eventfd
    /// write per sleeper otherwise. Thread-safe: may be called from any thread.
    /// QEMU: `aio_notify()`.
    @inline(__always)
    public func notify() {
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
        glibNotifier.set()
        stats.eventfdWrites.wrappingAdd(1, ordering: .relaxed)
        return
        #endif
        // At most one write per GLib sleep: the flag is set by the notify
        // that writes and cleared by the check after it drains. Acquiring
        // pairs with the check's releasing store of false, which follows its
        // drain: a notify that finds the flag clear writes after that drain,
        // so its write cannot be swallowed. Releasing orders our claim before
        // the write. Model: Models/aio_notify_gen.pml, FAULT_PENDING_EARLY_CLEAR.
        if waiting & 1 != 0 && !glibWakePending.exchange(true, ordering: .acquiringAndReleasing) {
            glibNotifier.set()
            stats.eventfdWrites.wrappingAdd(1, ordering: .relaxed)
        }
        if waiting >= 2 {
            let writes = waiters.wakeAll()
            stats.eventfdWrites.wrappingAdd(writes, ordering: .relaxed)
        }
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
        NotifyToken(generation: notifyGeneration.load(ordering: .acquiring))
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
    var wakePending = false
    init() throws(AioError) { notifier = try EventNotifier() }
    #if AIO_FAULT_SHARED_FD
    // FAULT: every native waiter sleeps on, and drains, one shared eventfd.
    init(shared: EventNotifier) { notifier = shared }
    #endif
}

/// The private wake-up fds of the native polls that are about to block or are
/// blocked on a context, and a pool of slots for polls in flight.
///
/// Each native waiter sleeps on its own eventfd and is the only thread that
/// drains it, while GLib sleeps on the context's GLib notifier. QEMU's single
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
    private var advertised: [WaitSlot] = []
    private var free: [WaitSlot] = []
    #if AIO_FAULT_SHARED_FD
    var sharedNotifier: EventNotifier?
    #endif

    init() throws(AioError) {
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
                fatalError("AioContext: cannot create a wake-up eventfd for another concurrent poll: \(error)")
            }
        }
        if advertise { advertised.append(slot) }
        return slot
    }

    /// Stops waking `slot`. After this no notify writes it. Returns whether
    /// a notify wrote it while advertised (its write is complete: writes
    /// happen under the lock), and clears that flag: the caller drains.
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
    /// many writes it made.
    func wakeAll() -> Int {
        lock.lock()
        defer { lock.unlock() }
        var writes = 0
        for i in advertised.indices where !advertised[i].wakePending {
            advertised[i].wakePending = true
            advertised[i].notifier.set()
            writes += 1
        }
        return writes
    }

    var debugDescription: String {
        lock.withLock {
            "\(advertised.count) (readable: \(advertised.filter { $0.notifier.isSet }.count))"
        }
    }
}
