import Synchronization

/// Owner-only state of adaptive busy polling.
struct PollMode {
    /// Poll mode is on: the polled handlers' `pollBegin` ran (for those in
    /// `begun`), and their `pollEnd` plus a final check are due before the
    /// loop may sleep. It outlasts a poll call that found work, as in QEMU,
    /// so a busy loop does not toggle its producers' notifications each time.
    var started = false
    /// Handlers whose `pollBegin` ran; they get `pollEnd` even if removed since.
    var begun: [FDHandlerNode] = []
    /// The polled handlers, copied from the table when its version changes.
    var nodes: [FDHandlerNode] = []
    var version: UInt64 = .max
    /// Some handler's poll hook found work: a `pollReady` is due.
    var anyHit = false
}

/// How long an event may take to come while the loop still spins for it:
/// QEMU's first window when a handler starts to grow.
let pollWindowStartNs: Int64 = 4_000

extension AioContext {
    // MARK: Parameters

    /// The longest a native poll busy-polls before it sleeps, in ns; 0 (the
    /// default) turns busy polling off. ``IOThread`` contexts start at
    /// 32 µs, as QEMU's IOThreads. QEMU: `poll-max-ns`.
    ///
    /// Before a native poll sleeps, it calls the poll hooks of the handlers
    /// that have them (``setHandler(for:name:read:write:poll:pollReady:pollBegin:pollEnd:)``)
    /// and watches the notify generation (the context's own notifier),
    /// without advertising itself as a sleeper: a ``notify()`` then costs no
    /// syscall, and the loop answers in well under a microsecond instead of
    /// the several it takes to wake a sleeping CPU.
    ///
    /// - Each handler (and the notifier) has its own window, which adapts:
    ///   an event that came after the window but within `pollMaxNs` grows it
    ///   (from 0 to 4 µs, then by ``pollGrow``); an event later than
    ///   `pollMaxNs`, or a wait longer than it with no event at all, shrinks
    ///   it (by ``pollShrink``). A loop polls for the largest window, so an
    ///   idle context soon stops spinning.
    /// - A context with any handler that lacks a poll hook does not busy-poll
    ///   (its events would be missed while spinning), as in QEMU.
    /// - GLib cannot busy-poll: the GSource path never spins, and leaves
    ///   poll mode if a native poll left it on.
    ///
    /// Thread-safe; takes effect at the next poll.
    public var pollMaxNs: Int64 {
        get { pollParameters.maxNs.load(ordering: .relaxed) }
        set {
            precondition(newValue >= 0, "AioContext '\(name)': pollMaxNs must be >= 0 (got \(newValue))")
            pollParameters.maxNs.store(newValue, ordering: .relaxed)
        }
    }

    /// The factor a window grows by; 0 (the default) doubles it. QEMU: `poll-grow`.
    public var pollGrow: Int64 {
        get { pollParameters.grow.load(ordering: .relaxed) }
        set {
            precondition(newValue >= 0, "AioContext '\(name)': pollGrow must be >= 0 (got \(newValue))")
            pollParameters.grow.store(newValue, ordering: .relaxed)
        }
    }

    /// The divisor a window shrinks by; 0 (the default) resets it to 0.
    /// QEMU: `poll-shrink`.
    public var pollShrink: Int64 {
        get { pollParameters.shrink.load(ordering: .relaxed) }
        set {
            precondition(newValue >= 0, "AioContext '\(name)': pollShrink must be >= 0 (got \(newValue))")
            pollParameters.shrink.store(newValue, ordering: .relaxed)
        }
    }

    /// The current busy-polling window of the handler on `fd`, if it has poll
    /// hooks. Thread-safe, racy by nature.
    public func pollWindow(for fd: Int32) -> Duration? {
        guard let node = handlers.withLock({ handlers.byFD[fd] }), node.isPolled else { return nil }
        return .nanoseconds(node.pollWindowNs.load(ordering: .relaxed))
    }

    /// The current busy-polling window of the context's own notifier (the
    /// generation watch that sees BHs and notifies). Thread-safe, racy.
    public var notifierPollWindow: Duration {
        .nanoseconds(pollParameters.notifierWindowNs.load(ordering: .relaxed))
    }

    // MARK: The polling loop (owner-only)

    /// Busy-polls before a blocking wait. Returns true if work was found, in
    /// which case the caller must not sleep. `seen` is the generation this
    /// poll will compare against before sleeping; `timeoutNs` the sleep it
    /// would otherwise take (negative: forever).
    ///
    /// Nothing here advertises in `notifyMe`: a notify during the spin costs
    /// no syscall and is seen through the generation. Work announced that
    /// way is never lost even if the spin misses it, because the blocking
    /// path compares the generation with `seen` after advertising. Producers
    /// that a `pollBegin` hook silenced are covered by the final check after
    /// `pollEnd`. Model: Models/aio_poll.pml (FAULT_POLL_NO_RAISE,
    /// FAULT_POLL_RAISE_LATE, FAULT_POLL_NO_FINAL_CHECK).
    func busyPoll(seen: UInt64, timeoutNs: Int64) -> Bool {
        let maxNs = pollParameters.maxNs.load(ordering: .relaxed)
        if maxNs == 0 || handlers.unpolledCount.load(ordering: .relaxed) > 0 {
            return leavePollMode(seen: seen)
        }
        refreshPolledNodes()
        let nodes = pollMode.nodes
        var window = pollParameters.notifierWindowNs.load(ordering: .relaxed)
        for i in nodes.indices {
            window = max(window, nodes[i].pollWindowNs.load(ordering: .relaxed))
        }
        window = min(window, maxNs)
        if timeoutNs >= 0 { window = min(window, timeoutNs) }
        if window == 0 {
            return leavePollMode(seen: seen)
        }
        if !pollMode.started {
            pollMode.started = true
            for i in nodes.indices where !nodes[i].pollBegun && !nodes[i].isDeleted {
                // Claimed: a handler removed from another thread meanwhile
                // gets no pollBegin (and so needs no pollEnd).
                guard let begin = nodes[i].pollBegin else {
                    nodes[i].pollBegun = true
                    pollMode.begun.append(nodes[i])
                    continue
                }
                if runClaimed(nodes[i], begin) {
                    nodes[i].pollBegun = true
                    pollMode.begun.append(nodes[i])
                }
            }
        }
        let start = monotonicNowNs()
        let deadline = start &+ window
        var found = false
        while true {
            if pollHandlersOnce(nodes, seen: seen) {
                found = true
                break
            }
            if monotonicNowNs() >= deadline { break }
        }
        stats.busyPollNs.wrappingAdd(Int(monotonicNowNs() &- start), ordering: .relaxed)
        if found {
            Counters.bumpShared(stats.busyPollHits)
            return true
        }
        return leavePollMode(seen: seen)
    }

    /// Leaves poll mode if it is on: `pollEnd` for every handler that began,
    /// then one more look at the poll hooks and the generation, so that
    /// nothing a silenced producer queued before `pollEnd` is slept through.
    /// Returns whether that look found work. Owner-only.
    func leavePollMode(seen: UInt64) -> Bool {
        guard pollMode.started else { return false }
        pollMode.started = false
        let begun = pollMode.begun
        pollMode.begun.removeAll(keepingCapacity: true)
        #if AIO_FAULT_POLL_NO_FINAL_CHECK
        faultWindow()  // between the spin's last look and pollEnd
        #endif
        for i in begun.indices {
            begun[i].pollBegun = false
            begun[i].pollEnd?()
        }
        // [poll-end] The end hooks' stores (notifications back on) come
        // before the final look at the producers' state; pairs with the
        // producer's own fence between queueing and checking whether
        // notifications are on. Model: Models/aio_poll.pml.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        #if AIO_FAULT_POLL_NO_FINAL_CHECK
        return false
        #else
        refreshPolledNodes()
        return pollHandlersOnce(pollMode.nodes, seen: seen)
        #endif
    }

    /// One round of the poll hooks, plus the notifier's (the generation).
    /// Marks each handler whose hook found work. Owner-only.
    @inline(__always)
    private func pollHandlersOnce(_ nodes: [FDHandlerNode], seen: UInt64) -> Bool {
        // Acquiring, as [accept]: pairs with notify's RMW, so the work
        // published before that notify (a BH link) is visible to the
        // dispatch that follows a hit.
        var found = core.notifyGeneration.load(ordering: .acquiring) != seen
        for i in nodes.indices {
            let node = nodes[i]
            // A handler whose pollReady is running (a nested poll inside it)
            // is not polled again until it returns.
            if node.inPollReady || node.isDeleted { continue }
            // Claimed like any callback: none starts after removeHandler
            // returned on another thread.
            var hit = false
            _ = runClaimed(node) { hit = node.poll!() }
            if hit {
                node.pollHit = true
                pollMode.anyHit = true
                found = true
            }
        }
        return found
    }

    /// Lets go of handlers removed since the polled set was copied, so that
    /// a removed handler's callbacks (and whatever they capture, possibly
    /// the context itself) are freed even if the loop never spins again; a
    /// removed handler still in poll mode gets its `pollEnd` first. Called
    /// after each dispatch. Owner-only; one or two loads when nothing changed.
    @inline(__always)
    func dropStalePolledNodes() {
        if pollMode.nodes.isEmpty && pollMode.begun.isEmpty { return }
        dropStalePolledNodesSlow()
    }

    @inline(never)
    private func dropStalePolledNodesSlow() {
        if pollMode.version == handlers.polledVersion.load(ordering: .relaxed) { return }
        pollMode.nodes = []
        pollMode.version = .max
        endRemovedHandlers()
    }

    private func refreshPolledNodes() {
        let version = handlers.polledVersion.load(ordering: .relaxed)
        if version != pollMode.version {
            let snapshot = handlers.polledSnapshot()
            pollMode.nodes = snapshot.nodes
            pollMode.version = snapshot.version
            endRemovedHandlers()
        }
    }

    /// A handler removed while in poll mode gets its `pollEnd` now (its
    /// producer's notifications back on) and is no longer held.
    private func endRemovedHandlers() {
        var i = 0
        while i < pollMode.begun.count {
            let node = pollMode.begun[i]
            if node.isDeleted {
                pollMode.begun.remove(at: i)
                node.pollBegun = false
                node.pollEnd?()
            } else {
                i += 1
            }
        }
    }

    /// Runs `pollReady` for each handler whose poll hook found work.
    /// Returns progress. Owner-only.
    @inline(__always)
    func dispatchPollReady() -> Bool {
        if !pollMode.anyHit { return false }
        return dispatchPollHits()
    }

    @inline(never)
    private func dispatchPollHits() -> Bool {
        pollMode.anyHit = false
        let nodes = pollMode.nodes
        var progress = false
        for i in nodes.indices {
            let node = nodes[i]
            guard node.pollHit else { continue }
            node.pollHit = false
            if node.isDeleted || node.inPollReady { continue }
            node.inPollReady = true
            if runClaimed(node, node.pollReady!) { progress = true }
            // What pollReady consumed may be what a poll saw on the fd.
            markDispatched(node)
            node.inPollReady = false
        }
        return progress
    }

    /// Adapts the windows after a poll call that would have slept:
    /// `blockNs` is the time from the start of the call to the end of its
    /// wait (or of the spin that found work). Owner-only.
    ///
    /// QEMU's rule, per handler that had an event: within its window, keep;
    /// later than `pollMaxNs`, shrink; in between, grow. Handlers with no
    /// event shrink too once a wait outlasted `pollMaxNs` (they are idle),
    /// which is what lets an idle context stop spinning.
    func adjustPollWindows(blockNs: Int64, notified: Bool, ready: ReadyList?) {
        let maxNs = pollParameters.maxNs.load(ordering: .relaxed)
        guard maxNs > 0 else { return }
        if let ready {
            for i in 0..<ready.count where ready.nodes[i].isPolled {
                ready.nodes[i].fdHit = true
            }
        }
        let grow = pollParameters.grow.load(ordering: .relaxed)
        let shrink = pollParameters.shrink.load(ordering: .relaxed)
        adjust(pollParameters.notifierWindowNs, event: notified, blockNs: blockNs,
               maxNs: maxNs, grow: grow, shrink: shrink)
        let nodes = pollMode.nodes
        for i in nodes.indices {
            let node = nodes[i]
            adjust(node.pollWindowNs, event: node.pollHit || node.fdHit, blockNs: blockNs,
                   maxNs: maxNs, grow: grow, shrink: shrink)
            node.fdHit = false
        }
    }

    @inline(__always)
    private func adjust(_ window: borrowing Atomic<Int64>, event: Bool, blockNs: Int64,
                        maxNs: Int64, grow: Int64, shrink: Int64) {
        let current = window.load(ordering: .relaxed)
        var next = current
        if blockNs > maxNs {
            next = shrink > 0 ? current / shrink : 0
        } else if event && blockNs > current {
            next = current == 0 ? pollWindowStartNs : current &* (grow > 0 ? grow : 2)
            next = min(next, maxNs)
        }
        if next != current { window.store(next, ordering: .relaxed) }
    }
}

/// Busy-polling parameters and the notifier's window. Relaxed atomics: each
/// is read on its own by the owner at the start of a poll.
final class PollParameters: Sendable {
    let maxNs = Atomic<Int64>(0)
    let grow = Atomic<Int64>(0)
    let shrink = Atomic<Int64>(0)
    /// Written by the owner only.
    let notifierWindowNs = Atomic<Int64>(0)
}
