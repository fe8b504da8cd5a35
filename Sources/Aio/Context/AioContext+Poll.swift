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
        pollOnce(blocking: blocking, since: nil)
    }

    /// A blocking poll that does not sleep if ``notify()`` was called after
    /// `token` was taken. The way to wait for a condition another thread
    /// changes:
    ///
    /// ```swift
    /// while true {
    ///     let token = ctx.notifyToken
    ///     if done.load(ordering: .acquiring) { break }
    ///     ctx.poll(blocking: true, unlessNotifiedSince: token)
    /// }
    /// ```
    ///
    /// A plain `poll(blocking: true)` looks at the context's own work (BHs,
    /// handlers, timers) before it sleeps, but not at the caller's condition,
    /// so a change plus notify between the check and the call could be slept
    /// through. Same threading rules as ``poll(blocking:)``.
    @discardableResult
    public func poll(blocking: Bool, unlessNotifiedSince token: NotifyToken) -> Bool {
        pollOnce(blocking: blocking, since: token.generation)
    }

    private func pollOnce(blocking: Bool, since snapshot: UInt64?) -> Bool {
        if blocking { checkBlockingAllowed() }
        ownership.acquire()
        // Released at the end, after the notify memory's write-back: one
        // exit, and no `defer`, whose bodies the compiler keeps out of line.
        Counters.bump(stats.iterations)
        let thread = currentThreadID()
        // [accept] acquiring, pairs with [notify-publish]: what a notify
        // published before this generation is visible to the look below.
        // Model: Models/aio_notify_gen.pml, FAULT_CLEAR_AFTER (snapshot after
        // the look) and FAULT_UNKNOWN_IS_SEEN (an unknown thread must count
        // as notified).
        let current = core.notifyGeneration.load(ordering: .acquiring)
        // Sleep only if nothing was notified since this thread last came out
        // of a poll here (or since the caller's token). Unknown: do not sleep.
        #if AIO_FAULT_CLEAR_AFTER
        // FAULT: the wake-up indication is taken after looking for work, so a
        // notify between the look and the snapshot is swallowed (seed 000).
        _ = current
        var seen: UInt64 = 0
        #else
        let seen = snapshot ?? notifyMemory.generation(forThread: thread) ?? (current &- 1)
        #endif

        let watchesFDs = handlers.hasWatchedWork
        // Before any look at the fds: see `ReadyList.epoch` (dispatch once).
        let epochBeforeLook = handlerEpoch.load(ordering: .acquiring)
        var timeoutNs: Int64 = blocking ? computeTimeoutNs() : 0
        #if AIO_FAULT_CLEAR_AFTER
        faultWindow()
        seen = core.notifyGeneration.load(ordering: .acquiring)
        #endif
        // Busy polling (when on, or still in poll mode) comes before we
        // advertise: it never raises notifyMe, so notifies stay syscall-free.
        let wouldWait = timeoutNs != 0
        let adaptive = wouldWait && pollParameters.maxNs.load(ordering: .relaxed) > 0
        let entryNs = adaptive ? monotonicNowNs() : 0
        if wouldWait && (adaptive || pollMode.started) && busyPoll(seen: seen, timeoutNs: timeoutNs) {
            timeoutNs = 0
        }
        var slot: WaitSlot? = nil
        var mustDrain = false
        if timeoutNs != 0 {
            let waiter = waiters.takeSlot(advertise: true)
            slot = waiter
            waiter.buffers.ready.epoch = epochBeforeLook
            #if AIO_FAULT_WAIT_ORDER
            // FAULT: the generation is read before advertising.
            let generationBeforeAdvertising = core.notifyGeneration.load(ordering: .relaxed)
            faultWindow()
            #endif
            #if AIO_FAULT_BOOL_FLAG
            // FAULT: one "a thread may sleep" flag for every waiter (seed 003).
            core.notifyMe.store(1, ordering: .relaxed)
            #else
            core.notifyMe.wrappingAdd(2, ordering: .sequentiallyConsistent)
            #endif
            // [dekker-wait] Our advertisement (the sequentially consistent RMW
            // above) is ordered before our read of the generation (the
            // sequentially consistent load below): with [dekker-notify]'s RMW
            // and load in `notify()`, all four are in one total order, so
            // either we see the notifier's new generation and do not sleep,
            // or it sees our +2 and writes our fd. Neither may be relaxed: a
            // relaxed load after an RMW is not ordered by it on ARM (QEMU
            // 2023). Safety rests on this generation check alone; the timeout
            // computed above only lets us skip the sleep sooner.
            // Without it: a lost wake-up. Model: Models/aio_notify_gen.pml, FAULT_WAIT_ORDER.
            #if AIO_FAULT_WAIT_ORDER
            let generationNow = generationBeforeAdvertising
            #else
            let generationNow = core.notifyGeneration.load(ordering: .sequentiallyConsistent)
            #endif
            if generationNow != seen {
                // Work (or a state change) was announced after we looked:
                // do not sleep.
                timeoutNs = 0
            }
            var woken = false
            if timeoutNs != 0 {
                Counters.bumpShared(stats.blockingWaits)
                // Owner-only state of this thread's passes goes with the
                // ownership: another thread may own the context while we
                // sleep, and must not see our dispatch depth as its own.
                let savedDispatchDepth = dispatchDepth
                dispatchDepth = 0
                // Nothing is pending: what a burst left in the one-shot
                // pool goes now, while we own the context.
                oneshots.trimBeforeSleep()
                let (depth, glibDeferred) = ownership.releaseAll()
                // GLib found the context owned while we dispatched: it may
                // look now, while we sleep.
                if glibDeferred { wakeDeferredGLib() }
                woken = handlers.wait(buffers: waiter.buffers, wakeFD: waiter.notifier.fd,
                                      timeoutNs: timeoutNs)
                ownership.reacquire(depth: depth)
                dispatchDepth = savedDispatchDepth
                #if AIO_FAULT_SKIP_WRITE
                // QEMU 2018's accept: only after a real wait.
                faultNotified.store(false, ordering: .relaxed)
                atomicMemoryFence(ordering: .sequentiallyConsistent)
                #endif
            } else if watchesFDs {
                _ = handlers.wait(buffers: waiter.buffers, wakeFD: nil, timeoutNs: 0)
            }
            let written = waiters.withdraw(waiter)
            // [wait-end] releasing: the wait is over before we stop advertising.
            #if AIO_FAULT_BOOL_FLAG
            core.notifyMe.store(0, ordering: .releasing)
            #else
            core.notifyMe.wrappingSubtract(2, ordering: .releasing)
            #endif
            _ = woken
            #if !AIO_FAULT_NO_DRAIN
            // Our own wake-up, which no other thread reads or drains: exactly
            // one write was started since we advertised (the slot's
            // wake-pending flag), none starts after the withdrawal, and the
            // one started may still be landing: `dispatchAll` drains it
            // (`WaitSlot.drain(written:)`, which owes it if it has not
            // landed) before the slot goes back to the pool, after the BHs
            // ran, so the read(2) is not on the wake-up's latency path. Not
            // progress.
            mustDrain = written
            #else
            // FAULT: the wake-up is never drained; every later wait returns
            // at once (a busy loop).
            _ = written
            #endif
        } else if watchesFDs {
            let poller = waiters.takeSlot(advertise: false)
            slot = poller
            poller.buffers.ready.epoch = epochBeforeLook
            _ = handlers.wait(buffers: poller.buffers, wakeFD: nil, timeoutNs: 0)
        }
        #if AIO_FAULT_STEAL
        // FAULT: a poll that did not sleep consumes the wake-ups of the
        // threads that do (seed 004).
        if timeoutNs == 0 && !blocking { faultStealWakeups() }
        #endif
        // Another thread asleep on this context (GLib, a second native
        // poller) went to sleep trusting the kicks that our pollBegin hooks
        // turned off: do not return with them off, or a device item could
        // wait for a poll that never comes. Every raise of notifyMe happens
        // under ownership, which we hold, so a relaxed load sees them all
        // (GLib's check lowers bit 0 without ownership: a stale 1 only makes
        // us leave poll mode once more than needed).
        // Model: Models/aio_poll.pml, FAULT_POLL_LEFT_ON.
        if pollMode.started && core.notifyMe.load(ordering: .relaxed) != 0 {
            _ = leavePollMode(seen: seen)
        }
        if adaptive {
            adjustPollWindows(blockNs: monotonicNowNs() &- entryNs,
                              notified: core.notifyGeneration.load(ordering: .relaxed) != seen,
                              ready: slot?.buffers.ready)
        }
        let progress = dispatchAll(readyIn: slot, drainingWakeup: mustDrain)
        // The caller checks its conditions after we return; a notify after
        // this point keeps its next poll awake.
        notifyMemory.remember(core.notifyGeneration.load(ordering: .acquiring), forThread: thread)
        releaseOwnership()
        return progress
    }

    /// BHs, then the handlers found ready (their slot goes back to the pool),
    /// then timers: QEMU's order. Returns progress. Owner-only.
    /// `drainingWakeup`: the slot's eventfd was written while it was
    /// advertised; read it before the slot goes back to the pool.
    func dispatchAll(readyIn slot: WaitSlot?, drainingWakeup: Bool = false) -> Bool {
        dispatchDepth &+= 1
        defer { dispatchDepth &-= 1 }
        var progress = bhPoll()
        progress = dispatchPollReady() || progress
        if let slot {
            if handlers.glibLeftovers.load(ordering: .relaxed) != 0 {
                // What a GLib check took and GLib did not dispatch (see
                // `collectGLibLeftovers`). Its epoch lowers the list's.
                let extra = waiters.takeSlot(advertise: false)
                extra.buffers.ready.clear()
                extra.buffers.ready.epoch = slot.buffers.ready.epoch
                handlers.collectGLibLeftovers(into: extra.buffers.ready)
                progress = dispatchHandlers(extra.buffers.ready) || progress
                extra.buffers.ready.clear()
                waiters.returnSlot(extra)
            }
            progress = dispatchHandlers(slot.buffers.ready) || progress
            slot.buffers.ready.clear()
            slot.drain(written: drainingWakeup)
            waiters.returnSlot(slot)
        }
        if handlers.ringHasFinished {
            progress = runRingCompletions(handlers.ring!) || progress
        }
        if handlers.sweeps.load(ordering: .relaxed) && handlers.registeredCount.load(ordering: .relaxed) != 0 {
            sweepClosedDescriptors()
        }
        dropStalePolledNodes()
        progress = runTimers() || progress
        // Last: what every callback of the pass (timers included) queued,
        // and the polls whose completions it dispatched.
        if handlers.ring != nil { handlers.afterDispatch() }
        return progress
    }

    /// epoll and io_uring do not report a descriptor closed while
    /// registered (ppoll does, as POLLNVAL): once a second, look at the
    /// registered descriptors and treat a closed one as POLLNVAL. Owner-only.
    @inline(never)
    private func sweepClosedDescriptors() {
        let now = monotonicNowNs()
        if handlers.sweepTimeoutNs(now: now) > 0 { return }
        handlers.sweepDeadline = now + HandlerTable.sweepIntervalNs
        for node in handlers.sweepClosed() where !node.isDeleted {
            dispatchInvalid(node)
        }
    }

    /// Traps unless the calling thread may block in poll (ownership rule).
    @inline(__always)
    private func checkBlockingAllowed() {
        if isHomeThread || ownership.isHeldByCurrentThread { return }
        blockingNotAllowed()
    }

    @inline(never)
    private func blockingNotAllowed() -> Never {
        fatalError("AioContext '\(name)': poll(blocking: true) on a thread that is neither the context's home thread nor its owner. Ownership rule: only the home thread, or a thread that called acquire(), may block in poll; other threads may use poll(blocking: false).")
    }

    /// How long the loop may sleep, in ns (negative: forever): 0 when a
    /// non-idle BH is pending; at most 10 ms when only idle BHs are pending.
    /// Owner-only. QEMU: `aio_compute_timeout()`.
    @inline(__always)
    func computeTimeoutNs() -> Int64 {
        let bhs = bhList.scanScheduled()
        if bhs.busy { return 0 }
        return computeTimeoutNs(idleBHs: bhs.idle)
    }

    @inline(never)
    private func computeTimeoutNs(idleBHs: Bool) -> Int64 {
        if handlers.ringHasFinished { return 0 }
        var timeout: Int64 = idleBHs ? 10_000_000 : -1
        if armedTimers.count.load(ordering: .relaxed) != 0 {
            // Index loops: `for x in array` allocates in unoptimised builds, and
            // this is the hot path the allocation tests watch.
            for i in timerLists.indices {
                let t = timerLists[i].timeoutNs()
                if t >= 0 && (timeout < 0 || t < timeout) { timeout = t }
            }
        }
        if handlers.sweeps.load(ordering: .relaxed) && handlers.registeredCount.load(ordering: .relaxed) > 0 {
            // Wake for the closed-descriptor sweep.
            let sweep = handlers.sweepTimeoutNs(now: monotonicNowNs())
            if timeout < 0 || sweep < timeout { timeout = sweep }
        }
        return timeout
    }

    /// Whether a timer is due now. Owner-only.
    func timerDue() -> Bool {
        if armedTimers.count.load(ordering: .relaxed) == 0 { return false }
        for i in timerLists.indices where timerLists[i].timeoutNs() == 0 { return true }
        return false
    }

    /// Runs every expired timer once. Returns progress. Owner-only.
    /// QEMU: `timerlistgroup_run_timers()`.
    @inline(__always)
    func runTimers() -> Bool {
        if armedTimers.count.load(ordering: .relaxed) == 0 { return false }
        return runArmedTimers()
    }

    @inline(never)
    private func runArmedTimers() -> Bool {
        var progress = false
        for i in timerLists.indices where timerLists[i].runExpired() {
            progress = true
        }
        return progress
    }

    /// Moves the pending stack into the dispatch queue and runs the queue,
    /// including what an outer pass left. Owner-only. QEMU: `aio_bh_poll()`.
    func bhPoll() -> Bool {
        bhList.takeAll()
        var progress = false
        #if AIO_FAULT_BH_EARLY_CLEAR
        // FAULT: PENDING is cleared before the BH is unlinked, so a concurrent
        // schedule links it again while the dispatcher still owns its `next`.
        while let node = bhList.queueHead {
            let bh = node.takeUnretainedValue()
            let old = bh.flags.bitwiseAnd(~(BHFlags.pending | BHFlags.scheduled | BHFlags.idle),
                                          ordering: .acquiringAndReleasing).oldValue
            // Widened so the fault matrix sees the re-link within a minute
            // (it found it at 25 s in some runs and not in 60 s in another).
            faultWindow()
            _ = bhList.popFront()
            if old & BHFlags.scheduled != 0 && old & BHFlags.deleted == 0 {
                if old & BHFlags.idle == 0 { progress = true }
                Counters.bump(stats.bhRuns)
                bh.run()
            }
            if old & (BHFlags.deleted | BHFlags.oneshot) != 0 { free(bh) }
        }
        return progress
        #endif
        // The list's retain of each node is ours from the pop (a registered
        // BH has none: the registry holds it, and lets go of it only when
        // its run, if one is on the stack, returns; see `free`): the node
        // stays alive through its callback (which may delete it) without
        // any reference counting of our own.
        while let node = bhList.popFrontNode() {
            // A one-shot's flags are read, not cleared: no API hands out a
            // one-shot's BH (`scheduleOneshot` returns nothing), so nobody
            // but its scheduler, the list and us ever holds its node, no
            // schedule, cancel or delete can race with this pass, and the
            // push's releasing CAS with `takeAll`'s acquiring exchange
            // [bh-push] already made its fields visible. The flags stay as
            // they are until the next scheduler that takes the node from the
            // pool stores new ones. (Models/aio_bh_pool.pml checks the
            // pool's nodes without flags, as this dispatch treats them.)
            let flags = node._withUnsafeGuaranteedRef { $0.flags.load(ordering: .relaxed) }
            if flags & BHFlags.oneshot != 0 {
                // The closure is moved out of the node, not copied: a copy
                // costs a retain of its context, and the release below was
                // owed anyway. Nobody else reads a one-shot's callback.
                do {
                    let body = node._withUnsafeGuaranteedRef { $0.callback.take() }
                    progress = true
                    Counters.bump(stats.bhRuns)
                    #if DEBUG
                    debugOneshotsRun.wrappingAdd(1, ordering: .relaxed)
                    #endif
                    if case .plain(let run)? = consume body { run() }
                }
                // Back to the pool, with the list's retain.
                oneshots.recycle(node, flags: flags)
                continue
            }
            // [bh-flags] acquiring-and-releasing, after the unlink in popFront:
            // a concurrent schedule that sees PENDING clear re-links the BH
            // only after our unlink (releasing), and the callback sees what the
            // scheduler published before setting SCHEDULED (acquiring).
            // Model: Models/aio_notify.pml, BUG_BH_EARLY_CLEAR.
            let old = node._withUnsafeGuaranteedRef {
                $0.flags.bitwiseAnd(
                    ~(BHFlags.pending | BHFlags.scheduled | BHFlags.idle),
                    ordering: .acquiringAndReleasing).oldValue
            }
            // Read first: once freed, or once its run returns, a registered
            // BH may be gone (the list holds no retain of it; see
            // `BHList.pending`), and nothing below touches it again.
            let registered = node._withUnsafeGuaranteedRef { $0.isRegistered }
            if old & BHFlags.scheduled != 0 && old & BHFlags.deleted == 0 {
                if old & BHFlags.idle == 0 { progress = true }
                Counters.bump(stats.bhRuns)
                node._withUnsafeGuaranteedRef { $0.run() }
            }
            if old & BHFlags.deleted != 0 {
                node._withUnsafeGuaranteedRef { free($0) }
            }
            if !registered { node.release() }
        }
        // The pool's chain is state of the ownership, like the dispatch
        // queue: a callback's nested blocking poll may hand ownership to
        // another thread mid-pass, which then recycles into and flushes the
        // same chain (ordered by the ownership lock's release and acquire).
        // Flushed here, before this pass lets ownership go for good.
        oneshots.flush()
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
