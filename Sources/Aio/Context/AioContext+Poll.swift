import CGLibShim
import Glibc
import Synchronization

extension AioContext {
    /// Runs one iteration of the loop: waits for work if `blocking` and there
    /// is none, then runs the pending bottom halves.
    ///
    /// Returns whether progress was made: a scheduled, non-idle BH ran.
    /// Notifications alone, deletions, cancelled and idle BHs are not progress,
    /// so a blocking poll may return `false` after a bare ``notify()``; callers
    /// loop on their own condition.
    ///
    /// - A blocking poll is allowed on the home thread or on a thread that owns
    ///   the context (``acquire()``); anywhere else it traps. It releases
    ///   ownership (all levels) around the wait only.
    /// - A non-blocking poll is allowed on any thread; it takes ownership for
    ///   its duration and never consumes another thread's wake-up.
    /// - Polls nest: a BH may poll, and the nested poll first finishes the
    ///   outer pass's remaining BHs.
    ///
    /// QEMU: `aio_poll()`.
    @discardableResult
    public func poll(blocking: Bool) -> Bool {
        if blocking { checkBlockingAllowed() }
        ownership.acquire()
        defer { _ = ownership.release() }
        Counters.bump(stats.iterations)

        var timeoutNs: Int64 = blocking ? computeTimeoutNs() : 0
        if timeoutNs != 0 {
            let slot = waiters.register()
            notifyMe.wrappingAdd(2, ordering: .relaxed)
            // [dekker-wait] Our advertisement must be visible before we read
            // `notified` and, through the timeout computed above, the work.
            // Pairs with [dekker-notify] in `notify()`. An explicit fence, not
            // the RMW's ordering: relaxed loads after an RMW are not ordered by
            // it on ARM (QEMU 2023). Without it: a lost wake-up.
            // Model: Models/aio_notify.pml, BUG_WAIT_ORDER.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            if notified.load(ordering: .relaxed) {
                // Work (or a state change) was announced after the timeout was
                // computed: do not sleep.
                timeoutNs = 0
            }
            var woken = false
            if timeoutNs != 0 {
                Counters.bumpShared(stats.blockingWaits)
                let depth = ownership.releaseAll()
                woken = wait(on: slot, timeoutNs: timeoutNs)
                ownership.reacquire(depth: depth)
            }
            waiters.unregister(slot)
            // [wait-end] releasing: the wait is over before we stop advertising.
            notifyMe.wrappingSubtract(2, ordering: .releasing)
            if woken {
                // Drain our own wake-up before looking for work (seed 000: a
                // drain after the scan can eat a wake-up for work the scan did
                // not see). Model: BUG_CLEAR_AFTER. Draining is not progress.
                slot.notifier.testAndClear()
            }
        }
        accept()
        return dispatch()
    }

    /// Traps unless the calling thread may block in poll (ownership rule).
    private func checkBlockingAllowed() {
        if isHomeThread || ownership.isHeldByCurrentThread { return }
        fatalError("AioContext '\(name)': poll(blocking: true) on a thread that is neither the context's home thread nor its owner. Ownership rule: only the home thread, or a thread that called acquire(), may block in poll; other threads may use poll(blocking: false).")
    }

    /// Sleeps on the waiter's private eventfd for at most `timeoutNs`
    /// (negative: forever). Returns whether the eventfd became readable.
    private func wait(on slot: WaitSlot, timeoutNs: Int64) -> Bool {
        var entry = pollfd(fd: slot.notifier.fd, events: Int16(POLLIN), revents: 0)
        do {
            let ready = try PollSyscall.ppoll(&entry, count: 1, timeoutNs: timeoutNs)
            return ready > 0 && entry.revents & Int16(POLLIN) != 0
        } catch {
            fatalError("AioContext '\(name)': \(error) while waiting")
        }
    }

    /// How long the loop may sleep, in ns (negative: forever): 0 when a
    /// non-idle BH is pending; at most 10 ms when only idle BHs are pending.
    /// Owner-only. QEMU: `aio_compute_timeout()`.
    func computeTimeoutNs() -> Int64 {
        let bhs = bhList.scanScheduled()
        if bhs.busy { return 0 }
        if bhs.idle { return 10_000_000 }
        return -1
    }

    /// Runs every pending BH once. Returns progress. Owner-only.
    /// QEMU: `aio_dispatch()`, currently BHs only.
    func dispatch() -> Bool {
        bhPoll()
    }

    /// Moves the pending stack into the dispatch queue and runs the queue,
    /// including what an outer pass left. Owner-only. QEMU: `aio_bh_poll()`.
    func bhPoll() -> Bool {
        bhList.takeAll()
        var progress = false
        while let bh = bhList.popFront() {
            // [bh-flags] acquiring-and-releasing, after the unlink in popFront:
            // a concurrent schedule that sees PENDING clear re-links the BH
            // only after our unlink (releasing), and the callback sees what the
            // scheduler published before setting SCHEDULED (acquiring).
            // Model: BUG_BH_EARLY_CLEAR.
            let old = bh.flags.bitwiseAnd(
                ~(BHFlags.pending | BHFlags.scheduled | BHFlags.idle),
                ordering: .acquiringAndReleasing).oldValue
            if old & BHFlags.scheduled != 0 && old & BHFlags.deleted == 0 {
                if old & BHFlags.idle == 0 { progress = true }
                Counters.bump(stats.bhRuns)
                bh.run()
            }
            if old & (BHFlags.deleted | BHFlags.oneshot) != 0 {
                free(bh)
            }
        }
        return progress
    }
}

extension Counters {
    /// For counters more than one thread writes.
    @inline(__always)
    static func bumpShared(_ counter: borrowing Atomic<Int>) {
        counter.wrappingAdd(1, ordering: .relaxed)
    }
}
