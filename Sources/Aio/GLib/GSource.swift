import CGLibShim
import Synchronization

/// The GSourceFuncs table shared by every AioContext source. GLib keeps the
/// pointer for each source's whole life, so it is allocated once and never
/// freed.
// SAFETY: written once here, then only read by GLib.
nonisolated(unsafe) private let aioSourceFuncs: UnsafeMutablePointer<GSourceFuncs> = {
    let table = UnsafeMutablePointer<GSourceFuncs>.allocate(capacity: 1)
    table.initialize(to: GSourceFuncs(
        prepare: aioSourcePrepare,
        check: aioSourceCheck,
        dispatch: aioSourceDispatch,
        finalize: aioSourceFinalize,
        closure_callback: nil,
        closure_marshal: nil))
    return table
}()

@inline(__always)
private func shim(_ source: UnsafeMutablePointer<GSource>?) -> UnsafeMutablePointer<AioShimSource> {
    // SAFETY: every source using aioSourceFuncs was allocated by `attach` with
    // the size of AioShimSource, whose first member is the GSource.
    UnsafeMutableRawPointer(source!).assumingMemoryBound(to: AioShimSource.self)
}

/// Runs `body` with the source's context without retaining it: the source
/// holds its context (+1) until finalize.
@inline(__always)
private func withOwner<R>(_ source: UnsafeMutablePointer<GSource>?, _ body: (AioContext) -> R) -> R {
    Unmanaged<AioContext>.fromOpaque(shim(source).pointee.owner!)._withUnsafeGuaranteedRef(body)
}

private func aioSourcePrepare(_ source: UnsafeMutablePointer<GSource>?,
                              _ timeout: UnsafeMutablePointer<gint>?) -> gboolean {
    let (ready, ms) = withOwner(source) { $0.gsourcePrepare(source) }
    timeout?.pointee = ms
    return ready ? AIO_SHIM_TRUE : AIO_SHIM_FALSE
}

private func aioSourceCheck(_ source: UnsafeMutablePointer<GSource>?) -> gboolean {
    withOwner(source) { ctx in
        // GLib's query walks the source's fd list without the context lock, while
        // another thread's g_source_add/remove_unix_fd (under the handler table's
        // lock) may be changing that list: query under the same lock.
        let (revents, timer, shared) = ctx.handlers.withLock {
            (shim(source).pointee.notifier_tag.map { g_source_query_unix_fd(source, $0).rawValue } ?? 0,
             shim(source).pointee.timer_tag.map { g_source_query_unix_fd(source, $0).rawValue } ?? 0,
             // The table's tag belongs to the source attached now; a check of
             // a source detached meanwhile must not query it.
             ctx.handlers.glibSource == source
                && ctx.handlers.glibSharedTagLocked.map { g_source_query_unix_fd(source, $0).rawValue != 0 } == true)
        }
        // GLib dispatches a source any of whose fds has revents, whatever
        // check says: each readable fd is drained here.
        if timer != 0 { ctx.glibTimer.drain() }
        return ctx.gsourceCheck(source, notifierReadable: revents & G_IO_IN.rawValue != 0,
                                sharedReadable: shared)
            ? AIO_SHIM_TRUE : AIO_SHIM_FALSE
    }
}

private func aioSourceDispatch(_ source: UnsafeMutablePointer<GSource>?,
                               _ callback: GSourceFunc?,
                               _ userData: gpointer?) -> gboolean {
    withOwner(source) { $0.gsourceDispatch(source) }
    return AIO_SHIM_TRUE  // G_SOURCE_CONTINUE: the context stays attached.
}

private func aioSourceFinalize(_ source: UnsafeMutablePointer<GSource>?) {
    let shimSource = shim(source)
    guard let raw = shimSource.pointee.owner else { return }
    shimSource.pointee.owner = nil
    // SAFETY: balances the passRetained in `attach`. This may be the last
    // reference, in which case the context is torn down here, on the thread
    // that dropped GLib's last reference.
    let ctx = Unmanaged<AioContext>.fromOpaque(raw).takeRetainedValue()
    ctx.gsourceFinalized()
}

extension AioContext {
    /// Attaches the context to a GLib main context, so that iterating it
    /// (`g_main_context_iteration`, a `GMainLoop`) runs the context's work.
    ///
    /// A notify wakes GLib through the main context's own wake-up fd
    /// (`g_main_context_wakeup`); the source polls a fd of its own only for
    /// sub-millisecond timers, once it has one, and for fd handlers and ring
    /// operations, once there has been one. The
    /// source is recursive, so callbacks may iterate the main context or
    /// poll the AioContext again.
    ///
    /// Ownership: the GMainContext holds the source, the source holds the
    /// AioContext, and the AioContext holds the source and a reference to
    /// the GMainContext (to wake it), so an attached context and its main
    /// context stay alive until ``detach()``. A thread that iterates the main
    /// context keeps its own reference while it does (a BH may detach). A
    /// context is attached to at most one main context at a time; attaching
    /// twice traps.
    ///
    /// Thread-safe. `mainContext` nil means the default main context.
    /// GLib: `g_source_new()` + `g_source_attach()`; QEMU: `aio_get_g_source()`.
    @discardableResult
    public func attach(to mainContext: OpaquePointer?,
                       priority: Int32 = G_PRIORITY_DEFAULT) -> UInt32 {
        attachment.withLock { current -> UInt32 in
            if current != nil {
                fatalError("AioContext '\(name)': attach(to:) while already attached; call detach() first (a context is one GSource)")
            }
            let source = g_source_new(aioSourceFuncs, guint(MemoryLayout<AioShimSource>.size))!
            let shimSource = shim(source)
            // SAFETY: released in aioSourceFinalize.
            shimSource.pointee.owner = Unmanaged.passRetained(self).toOpaque()
            g_source_set_name(source, name)
            g_source_set_can_recurse(source, AIO_SHIM_TRUE)
            g_source_set_priority(source, priority)
            #if AIO_FAULT_SHARED_FD
            shimSource.pointee.notifier_tag = g_source_add_unix_fd(source, core.faultSharedNotifier.fd, G_IO_IN)
            #endif
            // The timerfd's tag is added by the first prepare that arms it.
            handlers.attachGLib(source)
            current = source
            attachedSourceAddress.store(UInt(bitPattern: source), ordering: .relaxed)
            core.setGLibContext(mainContext ?? g_main_context_default())
            return g_source_attach(source, mainContext)
        }
    }

    /// Removes the context from its main context. GLib stops calling it; the
    /// source, and the reference it holds on this context, go away once GLib
    /// is done with it. Does nothing if not attached.
    ///
    /// Thread-safe, including from inside a BH the source is dispatching.
    /// GLib: `g_source_destroy()` + `g_source_unref()`.
    public func detach() {
        // Under the attachment lock (then the table lock, as in attach), so a
        // concurrent attach cannot interleave with forgetting the old tags.
        let (source, mainContext) = attachment.withLock { current -> (UnsafeMutablePointer<GSource>?, OpaquePointer?) in
            defer { current = nil }
            guard current != nil else { return (nil, nil) }
            attachedSourceAddress.store(0, ordering: .relaxed)
            handlers.detachGLib()
            return (current, core.takeGLibContext())
        }
        guard let source else { return }
        g_source_destroy(source)
        g_source_unref(source)
        // After the source has left it: this may be the main context's last
        // reference.
        if let mainContext { g_main_context_unref(mainContext) }
    }

    /// Whether the context is attached to a main context. Thread-safe.
    public var isAttached: Bool { attachment.withLock { $0 != nil } }

    /// The attached GSource, for GLib calls this library does not wrap
    /// (e.g. `g_source_get_id`). Borrowed: valid until ``detach()``.
    public var gSource: UnsafeMutablePointer<GSource>? { attachment.withLock { $0 } }

    /// GSource prepare: advertise that GLib may sleep, then say how long.
    /// Returns readiness and the timeout in ms (-1: no limit).
    /// QEMU: `aio_ctx_prepare()`.
    func gsourcePrepare(_ source: UnsafeMutablePointer<GSource>?) -> (ready: Bool, timeoutMs: Int32) {
        #if !AIO_FAULT_G_PEND_CHECK_ONLY
        // GLib drained its wake-up fd, if its last poll saw it readable, in
        // that iteration's check phase, whether or not our check ran (after
        // a ready prepare it does not; nor when GLib bails out because its
        // poll set changed). Every such drain comes before this prepare, and
        // this comes before bit 0 is set: a notify that sees bit 0 then
        // finds the flag clear and wakes GLib, unless a notify after this
        // clear already did. The flag needs no ownership: a deferred prepare
        // clears it too, so the owner's release can wake GLib.
        // Model: Models/aio_notify_gen.pml, GLIB_WAKEUP (P0);
        // FAULT_G_PEND_CHECK_ONLY leaves the clear to the check.
        core.glibWakePending.store(false, ordering: .releasing)
        #endif
        // Before GLib looks at the fds: see `ReadyList.epoch`. GLib-thread
        // only (the thread holding the GMainContext).
        glibPollEpoch.store(handlerEpoch.load(ordering: .acquiring), ordering: .relaxed)
        glibChecked.store(false, ordering: .relaxed)
        // A thread that already owned the context is inside one of its
        // dispatches (or native polls) and iterates GLib from there.
        let nested = ownership.isHeldByCurrentThread
        #if AIO_FAULT_GSOURCE_BLOCKING
        // FAULT: wait for ownership while GLib holds its GMainContext.
        ownership.acquire()
        #else
        // GLib holds the GMainContext: never wait for ownership (lock order:
        // ownership, then GMainContext). Another thread owns the context and
        // dispatches its work; when it lets go, its release sees the
        // deferral and wakes GLib (`OwnershipLock`). Meanwhile GLib runs its
        // other sources. Model: Models/aio_gsource_own.pml.
        //
        // GLib then sleeps at most 1 ms, not until woken: the owner may be
        // waiting for this GMainContext (a BH that iterates it), which GLib
        // hands over only when its iteration ends, and the owner's release
        // (our wake-up) cannot come before that. So while another thread
        // owns the context, GLib wakes about once per millisecond on this
        // context's account; sooner if a handler fd is readable, which GLib
        // also polls: until the owner dispatches it, GLib's iterations do
        // not sleep.
        guard ownership.tryAcquireOrDefer() else { return (ready: false, timeoutMs: 1) }
        #endif
        // One exit that releases, rather than a `defer` the compiler keeps
        // out of line.
        let result = gsourcePrepareOwned(source, nested: nested)
        releaseOwnership()
        return result
    }

    /// The part of prepare that runs under ownership. GLib thread.
    @inline(__always)
    private func gsourcePrepareOwned(_ source: UnsafeMutablePointer<GSource>?,
                                     nested: Bool) -> (ready: Bool, timeoutMs: Int32) {
        // epoll/io_uring: GLib polls the monitor's one fd; arm what must be
        // armed (and submit what is queued) before GLib may sleep on it.
        let backlog = handlers.glibPrepare(source)
        if !backlog && !pollMode.started && bhList.newestIsBusy {
            // Work is visible before advertising: GLib will poll with a zero
            // timeout and dispatch, so it cannot sleep, and bit 0 (with the
            // notify memory) is not needed; a ready prepare would clear it
            // at once anyway. Bit 0 may still be set from an iteration whose
            // check GLib skipped (it bailed out on a changed poll set): clear
            // it, or every notify would wake a GLib that is not asleep. Not
            // if this source was detached meanwhile: the bit may then be a
            // new source's GLib thread's, asleep (which cannot set it now,
            // while this thread owns the context).
            // Model: Models/aio_notify_gen.pml, G_EARLY_READY.
            if core.notifyMe.load(ordering: .relaxed) & 1 != 0
                && attachedSourceAddress.load(ordering: .relaxed) == UInt(bitPattern: source) {
                core.notifyMe.bitwiseAnd(~1, ordering: .releasing)
            }
            return (ready: true, timeoutMs: 0)
        }
        // The GLib thread's notify memory, as in a native poll: a notify since
        // this thread's last iteration returned keeps it awake, so a caller
        // iterating `while !done { g_main_context_iteration(ctx, TRUE) }`
        // cannot sleep through `done = true; notify()` made between its check
        // and this prepare. [accept] acquiring, pairs with [notify-publish].
        // Model: Models/aio_notify_gen.pml, FAULT_G_NO_MEMORY.
        let current = core.notifyGeneration.load(ordering: .acquiring)
        let seen = notifyMemory.generation(forThread: currentThreadID()) ?? (current &- 1)
        // GLib cannot busy-poll: leave a poll mode a native poll left on
        // (end hooks, then a final look at the poll hooks).
        // Also report poll hits not yet dispatched (robust even if GLib were
        // ever to skip a dispatch after a ready prepare).
        let pollWork = (pollMode.started && leavePollMode(seen: seen)) || pollMode.anyHit
        #if AIO_FAULT_BOOL_FLAG
        core.notifyMe.store(1, ordering: .relaxed)
        #else
        core.notifyMe.bitwiseOr(1, ordering: .sequentiallyConsistent)
        #endif
        #if DEBUG
        runDebugHookAfterGLibAdvertise()
        #endif
        // [dekker-wait] (GLib edge) The RMW setting bit 0 and the generation
        // load below are sequentially consistent, as are [dekker-notify]'s RMW
        // and load in `notify()`: either we see a notify's generation and GLib
        // does not sleep, or the notify sees bit 0 and writes the GLib fd.
        // The work scan in between only makes us ready sooner; safety rests on
        // the generation check. Without it GLib can sleep with a BH pending.
        // Model: Models/aio_notify_gen.pml, FAULT_G_WAIT_ORDER.
        let timeoutNs = computeTimeoutNs()
        let ms = GLibTimeout.milliseconds(fromNs: timeoutNs)
        // GLib's timeout is in whole milliseconds, rounded up: the timerfd,
        // armed to the earliest real-time deadline, wakes GLib on time.
        if timeoutNs > 0 { armGLibTimer(source) }
        if backlog {
            // Completions moved off the ring (a full queue made room) that
            // its fd no longer reports: check takes them. Not "ready": GLib
            // would skip check.
            core.notifyMe.bitwiseAnd(~1, ordering: .releasing)
            return (ready: false, timeoutMs: 0)
        }
        if ms == 0 || pollWork {
            // Ready now: GLib will poll with a zero timeout and, seeing us
            // ready, skip our check. Stop advertising at once, or every notify
            // made by the dispatch that follows would write the eventfd for a
            // GLib that is not asleep (and make the next iteration dispatch).
            core.notifyMe.bitwiseAnd(~1, ordering: .releasing)
            return (ready: true, timeoutMs: 0)
        }
        #if !AIO_FAULT_NESTED_SLEEP
        if nested {
            // A nested GLib iteration must not sleep while this thread holds
            // ownership: other threads would wait for the whole sleep, and
            // GLib may never wait for ownership to take it back (lock order).
            // It polls without sleeping and returns to the dispatch, which
            // then lets go. Model: Models/aio_nested_glib.pml (FAULT_NESTED_SLEEP
            // sleeps holding it; FAULT_NESTED_LEND lets go and deadlocks
            // taking it back).
            core.notifyMe.bitwiseAnd(~1, ordering: .releasing)
            return (ready: false, timeoutMs: 0)
        }
        #endif
        if core.notifyGeneration.load(ordering: .sequentiallyConsistent) != seen {
            // Notified since this thread's last iteration: do not let GLib
            // sleep, but do not claim readiness either (a bare notify is not
            // a dispatch). GLib polls with a zero timeout and calls check.
            return (ready: false, timeoutMs: 0)
        }
        // GLib may sleep: what a burst left in the one-shot pool goes now.
        oneshots.trimBeforeSleep()
        return (ready: false, timeoutMs: ms)
    }

    /// Arms the timerfd to the earliest real-time deadline, adding it to the
    /// source's fds the first time: a context without real-time timers
    /// never makes GLib poll it. Added in prepare, before GLib's query, so
    /// the poll that follows watches it. GLib thread, under ownership.
    @inline(never)
    private func armGLibTimer(_ source: UnsafeMutablePointer<GSource>?) {
        let deadline = earliestRealtimeDeadlineNs()
        if deadline < 0 { return }
        if shim(source).pointee.timer_tag == nil {
            // Under the table's lock, as every change of the source's fd
            // list is (GLib's query of the list in check takes no lock). Not
            // to a source that a detach on another thread has destroyed
            // (GLib refuses that); a new source arms its own.
            handlers.withLock {
                guard handlers.glibSource == source else { return }
                shim(source).pointee.timer_tag = g_source_add_unix_fd(source, glibTimer.fd, G_IO_IN)
            }
        }
        glibTimer.arm(atNs: deadline)
    }

    #if DEBUG
    /// Tests: runs (once) on the GLib thread inside prepare, right after bit
    /// 0 is set and before the look for work: the window in which a notify
    /// wakes GLib although prepare then finds work and returns ready.
    @_spi(AioInternals) public func setDebugHookAfterGLibAdvertise(_ hook: @escaping @Sendable () -> Void) {
        debugHookAfterGLibAdvertise.withLock { $0 = hook }
    }

    private func runDebugHookAfterGLibAdvertise() {
        if let hook = debugHookAfterGLibAdvertise.withLock({ hook in
            defer { hook = nil }
            return hook
        }) { hook() }
    }
    #endif

    /// Records, for the calling (GLib) thread, the notify generation its
    /// iteration has now seen. End of check and of dispatch.
    private func rememberGeneration() {
        notifyMemory.remember(core.notifyGeneration.load(ordering: .acquiring), forThread: currentThreadID())
    }

    /// GSource check: stop advertising, clear the wake-up claim, report readiness.
    /// QEMU: `aio_ctx_check()`.
    func gsourceCheck(_ source: UnsafeMutablePointer<GSource>?, notifierReadable: Bool,
                      sharedReadable: Bool = false) -> Bool {
        // Stopping the advertisement and clearing the wake-pending flag need
        // no ownership (GLib drained its wake-up fd before this check), so
        // they happen even when another thread owns the context: a deferred
        // check cannot spin GLib (a readable handler fd still wakes GLib
        // until the owner dispatches it).
        // [wait-end] releasing: GLib's poll is over before we stop advertising.
        #if AIO_FAULT_BOOL_FLAG
        core.notifyMe.store(0, ordering: .releasing)
        #else
        core.notifyMe.bitwiseAnd(~1, ordering: .releasing)
        #endif
        #if AIO_FAULT_SHARED_FD && !AIO_FAULT_NO_DRAIN
        // FAULT: the shared eventfd is drained here, as QEMU's check does.
        if notifierReadable { core.faultSharedNotifier.testAndClear() }
        #else
        _ = notifierReadable
        #endif
        // GLib's check phase drained its wake-up fd before calling this
        // check, if its poll saw it readable. After that drain, never
        // before: a wake pending means "the fd is readable or about to be".
        // Cleared before a drain, a notify could write, the drain swallow
        // it, and the flag stay set with the fd empty: every later notify
        // would skip its write (Models/aio_notify_gen.pml,
        // FAULT_PENDING_EARLY_CLEAR).
        core.glibWakePending.store(false, ordering: .releasing)
        #if AIO_FAULT_GSOURCE_BLOCKING
        ownership.acquire()
        #else
        // Never wait (see `gsourcePrepare`); the owner dispatches, and its
        // release wakes GLib.
        guard ownership.tryAcquireOrDefer() else { return false }
        #endif
        defer { releaseOwnership() }
        // A check that finds nothing is not followed by a dispatch: let go of
        // removed handlers here too (see `dropStalePolledNodes`).
        dropStalePolledNodes()
        // Anything on the lists, even a deleted BH that only needs freeing,
        // earns a dispatch; so does a ready handler or a due timer.
        var handlersReady = false
        let pollEpoch = glibPollEpoch.load(ordering: .relaxed)
        // The monitor's shared fd is read even with no handler left: a
        // completion of a poll remove, or a stale epoll registration, keeps
        // it readable until taken.
        if handlers.hasWatchedWork || sharedReadable
            || (handlers.ring?.backlogCount.load(ordering: .relaxed) ?? 0) > 0 {
            let checked = handlers.glibCheck(source, pollEpoch: pollEpoch)
            handlersReady = checked.ready
            glibReventsEpoch = checked.epoch
        } else {
            glibReventsEpoch = pollEpoch
        }
        glibChecked.store(true, ordering: .relaxed)
        rememberGeneration()
        let ringDone = handlers.ringHasFinished
        return bhList.hasEntries || handlersReady || ringDone || timerDue()
    }

    /// GSource dispatch: run the work. QEMU: `aio_ctx_dispatch()`.
    func gsourceDispatch(_ source: UnsafeMutablePointer<GSource>?) {
        #if AIO_FAULT_GSOURCE_BLOCKING
        ownership.acquire()
        #else
        // Another thread took the context between check and dispatch: it
        // dispatches; its release wakes GLib (see `gsourcePrepare`).
        guard ownership.tryAcquireOrDefer() else { return }
        #endif
        // One exit (the release at the end) rather than a `defer`, which
        // the compiler keeps out of line: nothing below returns early.
        Counters.bump(stats.iterations)
        // A slot only for its ready list: nested iterations get their own.
        let slot = handlers.hasWatchedWork ? waiters.takeSlot(advertise: false) : nil
        if let slot {
            if !glibChecked.load(ordering: .relaxed) {
                // GLib skips check after a ready prepare (a BH kept the
                // context busy), but it did poll the fds: read them here, or
                // handlers would starve while BHs keep coming.
                glibReventsEpoch = handlers.glibCheck(source, pollEpoch: glibPollEpoch.load(ordering: .relaxed)).epoch
            }
            handlers.glibCollect(into: slot.buffers.ready, for: source)
            slot.buffers.ready.epoch = glibReventsEpoch
        }
        glibChecked.store(false, ordering: .relaxed)
        _ = dispatchAll(readyIn: slot)
        rememberGeneration()
        releaseOwnership()
    }

    /// Called from finalize: if no newer source has been attached, clear a bit
    /// 0 that a prepare without check may have left set (it would only cost
    /// a wake-pending exchange per notify). The attachment lock orders this against a new
    /// `attach`, whose prepare can only run after the source is recorded.
    func gsourceFinalized() {
        attachment.withLock { current in
            if current == nil {
                core.notifyMe.bitwiseAnd(~1, ordering: .relaxed)
            }
        }
    }
}
