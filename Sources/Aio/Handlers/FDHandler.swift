import CGLibShim
import Glibc
import Synchronization

/// One registration of a descriptor on a context. Replacing a handler makes a
/// new node; a removed or replaced node is marked deleted and never gets a
/// callback again. Nodes are freed by ARC once the last walker (a dispatch
/// pass holding it in its ready list) lets go: that is QEMU's "freed by the
/// outermost walker" with reference counts instead of a lockcnt.
final class FDHandlerNode: @unchecked Sendable {
    // @unchecked Sendable: immutable fields; `deleted` is atomic; the index
    // and GLib fields are protected by the handler table's lock; the
    // diagnostics counters are owner-only.

    let fd: Int32
    let name: String
    let read: (@Sendable () -> Void)?
    let write: (@Sendable () -> Void)?
    /// Busy-poll hook: returns true if the handler has work, without a syscall.
    let poll: (@Sendable () -> Bool)?
    /// Runs when `poll` found work. QEMU: `io_poll_ready`.
    let pollReady: (@Sendable () -> Void)?
    /// Called when the loop enters poll mode (e.g. to turn the producer's
    /// fd notifications off), and when it leaves it. QEMU: `io_poll_begin`/`io_poll_end`.
    let pollBegin: (@Sendable () -> Void)?
    let pollEnd: (@Sendable () -> Void)?
    /// Distinguishes this node from earlier registrations of the same fd in
    /// epoll's event data.
    let generation: UInt32

    /// `deleted` (set under the table lock when the node is removed or
    /// replaced), `waited` (a remover on another thread sleeps until the
    /// running callbacks end) and, from bit 2 up, how many of its callbacks
    /// are running (nested dispatches count twice).
    ///
    /// A dispatch claims the node (adds `runningUnit`) before each callback
    /// and skips the callback if `deleted` was already set; a remover sets
    /// `deleted` and then, unless it runs the callback itself, waits for the
    /// count to drop to 0. Both are RMWs on this one word, so either the
    /// claim sees `deleted`, or the remover sees the claim and waits: no
    /// callback starts after `removeHandler` returned.
    /// Model: Models/aio_fd_dispatch.pml, FAULT_CALLBACK_AFTER_REMOVE.
    let state = Atomic<UInt32>(0)
    static let deletedBit: UInt32 = 1
    static let waitedBit: UInt32 = 2
    static let runningUnit: UInt32 = 4

    /// The context's dispatch epoch stamped after this node's callbacks last
    /// ran. Owner-only. See `ReadyList.epoch` and `markDispatched`.
    var dispatchedAt: UInt64 = 0

    /// Position in the table's `active` array. Protected by the table lock.
    var index = -1
    /// The GSource unix-fd tag while attached. Protected by the table lock.
    var glibTag: gpointer?
    /// Revents GLib reported in the last check. Protected by the table lock.
    var glibRevents: Int16 = 0
    /// Set after POLLNVAL: the fd is no longer polled. Protected by the table lock.
    var invalid = false

    /// io_uring: a poll of this node is in the ring. Protected by the table lock.
    var uringArmed = false
    /// io_uring: the dispatch epoch read when the poll in flight was armed
    /// (what its completion reports is as of then). Protected by the table lock.
    var armedEpoch: UInt64 = 0

    /// Owner-only: consecutive dispatches that reported POLLHUP/POLLERR.
    var hangupStreak = 0

    /// The handler's busy-polling window in ns (QEMU's per-handler
    /// `AioPolledEvent.ns`). Written by the owner (load + store), readable
    /// from anywhere for diagnostics.
    let pollWindowNs = Atomic<Int64>(0)
    /// Owner-only: the poll hook found work in this poll call; its
    /// `pollReady` is due.
    var pollHit = false
    /// Owner-only: the fd was reported ready in this poll call.
    var fdHit = false
    /// Owner-only: `pollBegin` ran and `pollEnd` has not yet.
    var pollBegun = false
    /// Owner-only: `pollReady` is running (possibly with a nested poll inside,
    /// which must not call this handler's poll hook again).
    var inPollReady = false
    /// Under the table lock: counted in the table's `unpolledCount`.
    var countsAsUnpolled = false

    init(fd: Int32, name: String, read: (@Sendable () -> Void)?, write: (@Sendable () -> Void)?,
         poll: (@Sendable () -> Bool)?, pollReady: (@Sendable () -> Void)?,
         pollBegin: (@Sendable () -> Void)? = nil, pollEnd: (@Sendable () -> Void)? = nil,
         generation: UInt32) {
        self.fd = fd
        self.name = name
        self.read = read
        self.write = write
        self.poll = poll
        self.pollReady = pollReady
        self.pollBegin = pollBegin
        self.pollEnd = pollEnd
        self.generation = generation
    }

    /// Whether the loop can busy-poll this handler.
    var isPolled: Bool { poll != nil && pollReady != nil }

    /// poll(2) events: read ⇒ IN (HUP and ERR are always reported), write ⇒ OUT.
    var pollEvents: Int16 {
        (read != nil ? Int16(POLLIN) : 0) | (write != nil ? Int16(POLLOUT) : 0)
    }

    var isDeleted: Bool { state.load(ordering: .relaxed) & Self.deletedBit != 0 }
}

/// Readiness bits, as QEMU maps them: read runs on IN|HUP|ERR, write on OUT|ERR.
enum Readiness {
    static let forRead = Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)
    static let forWrite = Int16(POLLOUT) | Int16(POLLERR)
    static let hangup = Int16(POLLHUP) | Int16(POLLERR)
    static let invalid = Int16(POLLNVAL)
}

extension AioContext {
    /// Registers, replaces or (all callbacks nil) removes the handler for `fd`.
    ///
    /// - `read` runs when the fd is readable, hung up or in error;
    ///   `write` when it is writable or in error.
    /// - `poll`/`pollReady` are busy-polling hooks: `poll` says whether there
    ///   is work without a syscall; `pollReady` handles it. `poll` is ignored
    ///   without `pollReady`. `pollBegin`/`pollEnd` run when the loop enters
    ///   and leaves poll mode (a producer's fd notifications can be turned
    ///   off in between); after `pollEnd` the loop calls `poll` once more
    ///   before it sleeps. See ``pollMaxNs``.
    /// - The handler is level-triggered: it runs on every iteration while the
    ///   condition holds.
    ///
    /// Thread-safe: may be called from any thread, including from a handler
    /// (removing itself or another one). A loop asleep in a native poll or in
    /// GLib's poll picks up the change. A removed handler never gets another
    /// callback, even within the pass that removed it.
    ///
    /// Throws ``AioError/badDescriptor(fd:reason:)`` for a negative or closed
    /// descriptor (nothing is registered then). If the epoll backend refuses
    /// the fd, the context falls back to ppoll for good and warns.
    /// QEMU: `aio_set_fd_handler()`.
    public func setHandler(
        for fd: Int32,
        name: String? = nil,
        read: (@Sendable () -> Void)? = nil,
        write: (@Sendable () -> Void)? = nil,
        poll: (@Sendable () -> Bool)? = nil,
        pollReady: (@Sendable () -> Void)? = nil,
        pollBegin: (@Sendable () -> Void)? = nil,
        pollEnd: (@Sendable () -> Void)? = nil
    ) throws(AioError) {
        try setHandler(for: fd, name: name, read: read, write: write, poll: poll, pollReady: pollReady,
                       pollBegin: pollBegin, pollEnd: pollEnd, waitingForCallbacks: true)
    }

    /// `waitingForCallbacks: false` is for the library's own handlers whose
    /// callbacks re-check their state under a lock the caller holds (the
    /// async descriptor waits): waiting there would deadlock.
    func setHandler(
        for fd: Int32, name: String?, read: (@Sendable () -> Void)?, write: (@Sendable () -> Void)?,
        poll: (@Sendable () -> Bool)?, pollReady: (@Sendable () -> Void)?,
        pollBegin: (@Sendable () -> Void)?, pollEnd: (@Sendable () -> Void)?,
        waitingForCallbacks: Bool
    ) throws(AioError) {
        if read == nil && write == nil && pollReady == nil {
            removeHandler(for: fd, waitingForCallbacks: waitingForCallbacks)
            return
        }
        if fd < 0 {
            throw .badDescriptor(fd: fd, reason: "negative descriptor")
        }
        if !Posix.isOpen(fd: fd) {
            throw .badDescriptor(fd: fd, reason: "not an open descriptor")
        }
        let polled = poll != nil && pollReady != nil
        let replaced = handlers.set(fd: fd, name: name ?? "fd \(fd)", read: read, write: write,
                                    poll: polled ? poll : nil, pollReady: pollReady,
                                    pollBegin: polled ? pollBegin : nil, pollEnd: polled ? pollEnd : nil)
        notify()
        if let replaced, waitingForCallbacks { waitForCallbacks(of: replaced) }
    }

    /// Removes the handler for `fd`, if any. Same threading rules as
    /// ``setHandler(for:name:read:write:poll:pollReady:pollBegin:pollEnd:)``.
    /// QEMU: `aio_set_fd_handler()` with every callback NULL.
    public func removeHandler(for fd: Int32) {
        removeHandler(for: fd, waitingForCallbacks: true)
    }

    /// See `setHandler(...waitingForCallbacks:)`.
    func removeHandler(for fd: Int32, waitingForCallbacks: Bool) {
        if let removed = handlers.remove(fd: fd) {
            if waitingForCallbacks { waitForCallbacks(of: removed) }
            // If no poll is running, let go of the node now rather than at
            // the next poll (there may be none): its callbacks may capture
            // the context.
            if ownership.tryAcquire() {
                dropStalePolledNodes()
                releaseOwnership()
            }
            notify()
        }
    }

    /// Registers `notifier` as a read handler. Event notifiers are
    /// level-triggered, so the handler must clear it (``EventNotifier/testAndClear()``).
    /// QEMU: `aio_set_event_notifier()`.
    public func setHandler(
        for notifier: EventNotifier,
        name: String? = nil,
        read: @escaping @Sendable (EventNotifier) -> Void,
        poll: (@Sendable (EventNotifier) -> Bool)? = nil,
        pollReady: (@Sendable (EventNotifier) -> Void)? = nil,
        pollBegin: (@Sendable (EventNotifier) -> Void)? = nil,
        pollEnd: (@Sendable (EventNotifier) -> Void)? = nil
    ) throws(AioError) {
        var pollHook: (@Sendable () -> Bool)? = nil
        if let poll { pollHook = { poll(notifier) } }
        var readyHook: (@Sendable () -> Void)? = nil
        if let pollReady { readyHook = { pollReady(notifier) } }
        var beginHook: (@Sendable () -> Void)? = nil
        if let pollBegin { beginHook = { pollBegin(notifier) } }
        var endHook: (@Sendable () -> Void)? = nil
        if let pollEnd { endHook = { pollEnd(notifier) } }
        let readHook: @Sendable () -> Void = { read(notifier) }
        try setHandler(for: notifier.fd, name: name ?? "notifier \(notifier.fd)",
                       read: readHook, write: nil, poll: pollHook, pollReady: readyHook,
                       pollBegin: beginHook, pollEnd: endHook)
    }

    /// Removes the handler of `notifier`. QEMU: `aio_set_event_notifier()` with NULL.
    public func removeHandler(for notifier: EventNotifier) {
        removeHandler(for: notifier.fd)
    }

    /// Number of registered handlers. Thread-safe.
    public var handlerCount: Int { handlers.count }

    /// Which fd monitor the native poll uses now. Thread-safe.
    public var fdMonitorKind: FDMonitorKind { handlers.monitorKind }

    /// Runs the handlers in `ready`: each readiness at most once, and no
    /// callback of a handler removed before it starts. Returns progress.
    /// Owner-only.
    func dispatchHandlers(_ ready: borrowing ReadyList) -> Bool {
        var progress = false
        for i in 0..<ready.count {
            let node = ready.nodes[i]
            var revents = ready.revents[i]
            if node.isDeleted { continue }
            #if !AIO_FAULT_STALE_READINESS
            if node.dispatchedAt > ready.epoch {
                // Dispatched (by another driver, or a nested poll) since this
                // poll looked: what it saw may be consumed. Look again now,
                // under ownership. Model: Models/aio_fd_dispatch.pml,
                // FAULT_STALE_READINESS.
                revents = Posix.pollNow(fd: node.fd, events: node.pollEvents)
                if revents == 0 { continue }
            }
            #endif
            var ran = false
            if revents & Readiness.invalid != 0 {
                dispatchInvalid(node)
                ran = true
            } else {
                noteHangup(node, revents: revents)
                if revents & Readiness.forRead != 0, let read = node.read {
                    if runClaimed(node, read) { ran = true }
                }
                if revents & Readiness.forWrite != 0, let write = node.write {
                    if runClaimed(node, write) { ran = true }
                }
            }
            markDispatched(node)
            if ran {
                progress = true
                Counters.bump(stats.fdDispatches)
            }
        }
        return progress
    }

    /// Stamps `node` with a new dispatch epoch, after its callbacks ran: a
    /// poll that read the epoch before this (even while the callbacks ran,
    /// as GLib's prepare may without ownership) re-checks what it saw.
    /// [epoch] releasing, pairs with the acquiring loads before a poll looks:
    /// a poll that reads this epoch looks after what the callbacks consumed.
    @inline(__always)
    func markDispatched(_ node: FDHandlerNode) {
        let epoch = handlerEpoch.load(ordering: .relaxed) &+ 1
        node.dispatchedAt = epoch
        handlerEpoch.store(epoch, ordering: .releasing)
    }

    /// Runs one callback of `node` unless the node was removed; returns
    /// whether it ran. See `FDHandlerNode.state`. Owner-only.
    @inline(__always)
    func runClaimed(_ node: FDHandlerNode, _ callback: () -> Void) -> Bool {
        #if AIO_FAULT_CALLBACK_AFTER_REMOVE
        // FAULT: a plain check, then the callback, with no claim a remover
        // could see; the window is widened.
        if node.isDeleted { return false }
        faultWindow()
        callback()
        return true
        #else
        let before = node.state.wrappingAdd(FDHandlerNode.runningUnit, ordering: .acquiringAndReleasing).oldValue
        if before & FDHandlerNode.deletedBit != 0 {
            finishCallback(of: node)
            return false
        }
        callback()
        finishCallback(of: node)
        return true
        #endif
    }

    @inline(__always)
    private func finishCallback(of node: FDHandlerNode) {
        let before = node.state.wrappingSubtract(FDHandlerNode.runningUnit, ordering: .acquiringAndReleasing).oldValue
        if before & FDHandlerNode.waitedBit != 0 && before < 2 * FDHandlerNode.runningUnit {
            handlers.callbacksEnded()
        }
    }

    /// After `node` was unlinked: unless the calling thread owns the context,
    /// wait until no callback of the node runs. No new one can start:
    /// `deleted` is set. A caller that owns the context does not wait: a
    /// running callback is then on its own stack, or on a thread parked in a
    /// nested blocking poll that needs our ownership to go on.
    func waitForCallbacks(of node: FDHandlerNode) {
        if ownership.isHeldByCurrentThread { return }
        #if AIO_FAULT_CALLBACK_AFTER_REMOVE
        return
        #else
        if node.state.load(ordering: .acquiring) < FDHandlerNode.runningUnit { return }
        #if DEBUG
        // The callback runs under ownership: waiting for it is waiting for
        // ownership (see `checkLockOrderBeforeWaiting`).
        checkLockOrderBeforeWaiting()
        #endif
        handlers.waitUntilIdle(node)
        #endif
    }

    /// POLLNVAL: the fd was closed behind our back. The callbacks run once, as
    /// for POLLERR, so the owner's error path sees EBADF; then the handler is
    /// no longer polled (no spinning) and a warning names it.
    func dispatchInvalid(_ node: FDHandlerNode) {
        // Once: both drivers may report POLLNVAL (it is permanent, so a
        // re-check cannot tell); the first marks the node.
        guard handlers.markInvalid(node) else { return }
        warn("AioContext '\(name)': handler '\(node.name)' on fd \(node.fd) reports POLLNVAL (the descriptor was closed while registered); its callbacks run once as for an error and it is no longer polled. Remove the handler before closing its descriptor.")
        if let read = node.read { _ = runClaimed(node, read) }
        if let write = node.write { _ = runClaimed(node, write) }
    }

    /// A handler that sees POLLHUP/POLLERR on every pass and keeps its fd
    /// registered makes the loop spin; say so once per streak.
    private func noteHangup(_ node: FDHandlerNode, revents: Int16) {
        if revents & Readiness.hangup == 0 {
            node.hangupStreak = 0
            return
        }
        node.hangupStreak += 1
        if node.hangupStreak == AioContext.hangupSpinWarningThreshold {
            warn("AioContext '\(name)': handler '\(node.name)' on fd \(node.fd) has reported hang-up/error \(node.hangupStreak) times in a row and is still registered; the loop is spinning on it. Remove the handler (or close the peer properly) on end-of-file.")
        }
    }

    /// Consecutive hang-up/error dispatches after which a warning is issued.
    static let hangupSpinWarningThreshold = 1_000
}
