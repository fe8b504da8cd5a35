import CGLibShim
import Glibc
import Synchronization

/// The context's fd handlers: who is registered, which backend watches them,
/// and their GLib tags while the context is attached.
///
/// Writers (any thread) and the readers that snapshot it (waits, GLib check)
/// take `lock`; callbacks always run without it, so a callback may change
/// handlers freely. QEMU uses an RCU list and a lockcnt; a short mutex plus
/// reference-counted nodes give the same guarantees here.
final class HandlerTable: @unchecked Sendable {
    // @unchecked Sendable: everything below is protected by `lock`, except the
    // immutable `owner` reference.

    private let lock = PThreadMutex()

    /// Registered nodes, for O(1) removal by index and O(n) walks.
    var active: [FDHandlerNode] = []
    /// The current node of each fd.
    var byFD: [Int32: FDHandlerNode] = [:]
    private var nextGeneration: UInt32 = 0

    /// The backend (see `init`). Automatic without a ring: poll, upgraded to
    /// epoll at `epollThreshold` registered fds; back to poll for good if
    /// epoll ever fails.
    private(set) var monitor: FDMonitor
    private var epollDisabled: Bool
    /// QEMU upgrades at 64 fds.
    static let epollThreshold = 64

    /// The context's io_uring ring, when the monitor is io_uring (for the
    /// whole life of the context). Immutable.
    let ring: Ring?
    /// The io_uring monitor, when there is one. Immutable.
    let uring: URingMonitor?

    /// Why the automatic choice could not use io_uring, if it could not.
    let fallbackReason: String?

    /// The attached GSource; handlers are added to it as unix fds (one per
    /// handler under poll; the monitor's one fd under epoll and io_uring).
    var glibSource: UnsafeMutablePointer<GSource>?
    /// The GLib tag of the monitor's shared fd while attached, and that fd.
    /// GLib polls the shared fd only once the monitor has been used (see
    /// `monitorUsed`): a context with no handlers and no ring operations
    /// adds no fd to GLib's poll.
    private var glibSharedTag: gpointer?
    private var glibSharedFD: Int32 = -1
    /// `glibSharedTag != nil`, for `glibPrepare`'s look without the lock.
    private let glibSharedPolled = Atomic<Bool>(false)
    /// A source is attached, the monitor has a shared fd, and GLib does not
    /// poll it yet: a ring operation queued inside a dispatch (which does
    /// not otherwise notify) must notify, so that GLib's next prepare adds
    /// the fd. Read without the lock (a stale value costs one notify, or is
    /// covered by `hasWatchedWork` in that prepare).
    let glibAwaitingFirstUse = Atomic<Bool>(false)
    /// A handler was registered, or a GLib prepare found ring operations in
    /// flight, at some point: from then on GLib polls the shared fd (a
    /// completion left over from that use, e.g. of a poll removal, keeps it
    /// readable until taken). Under `lock`.
    private var monitorUsed = false
    /// Handlers the last GLib checks found ready (shared-fd mode), for the
    /// dispatch to walk, and the lowest dispatch epoch they were seen at.
    private var glibReady: [FDHandlerNode] = []
    private var glibReadyEpoch: UInt64 = .max
    /// Epoll's buffers for GLib's harvest. Under `lock`.
    let harvestBuffers = PollBuffers()

    /// Monitor choice: an explicit `preference` that cannot be had throws;
    /// `nil` reads `AIO_FDMON` (poll, epoll, io_uring; a choice it names
    /// that fails falls back, with the reason), and otherwise takes
    /// io_uring if the kernel gives a ring, else poll with the epoll upgrade.
    init(preference: FDMonitorKind?, simulatedRingErrno: Int32 = 0) throws(AioError) {
        var choice = preference
        let forced = preference != nil
        var reason: String? = nil
        if choice == nil, let env = getenv("AIO_FDMON") {
            let value = String(cString: env)
            if let named = FDMonitorKind(rawValue: value) {
                choice = named
            } else if !value.isEmpty {
                reason = "AIO_FDMON='\(value)' is not poll, epoll or io_uring; choosing automatically"
            }
        }
        func makeRing() throws(SystemCallError) -> Ring {
            if simulatedRingErrno != 0 { throw SystemCallError(call: "io_uring_setup", errno: simulatedRingErrno) }
            return try Ring()
        }
        var ring: Ring? = nil
        var monitor: FDMonitor = PollMonitor()
        var epollDisabled = false
        switch choice {
        case .poll?:
            epollDisabled = true
        case .epoll?:
            do {
                monitor = try EpollMonitor()
            } catch {
                if forced { throw .system(error) }
                reason = "AIO_FDMON=epoll: \(error); using poll"
            }
        case .ioUring?, nil:
            do {
                ring = try makeRing()
            } catch {
                if forced { throw .system(error) }
                reason = (reason.map { $0 + "; " } ?? "") + "io_uring unavailable (\(error)); using poll, and epoll from \(Self.epollThreshold) fds"
            }
        }
        if let ring {
            let uring = URingMonitor(ring: ring)
            monitor = uring
            self.uring = uring
        } else {
            self.uring = nil
        }
        self.ring = ring
        self.monitor = monitor
        self.epollDisabled = epollDisabled
        self.fallbackReason = reason
        self.sweeps.store(monitor.kind != .poll, ordering: .relaxed)
    }

    // SAFETY: set once by the owning context's init; the context owns the table.
    unowned(unsafe) var ownerRef: AioContext?
    var owner: AioContext { ownerRef! }

    /// Number of registered handlers, readable without the lock: a poll that
    /// reads a stale 0 misses a handler added concurrently, whose addition
    /// notifies, so the next poll sees it.
    let registeredCount = Atomic<Int>(0)

    /// Whether a poll must look at the monitor: handlers, or operations of
    /// the caller's in the ring.
    var hasWatchedWork: Bool {
        registeredCount.load(ordering: .relaxed) > 0
            || (ring?.operationsInFlight.load(ordering: .relaxed) ?? 0) > 0
    }

    /// Handlers with busy-poll hooks. Under `lock`; the owner caches a copy
    /// while `polledVersion` stays the same.
    private(set) var polled: [FDHandlerNode] = []
    /// Bumped (under `lock`) whenever `polled` changes.
    let polledVersion = Atomic<UInt64>(0)
    /// Handlers whose fd is polled but that have no poll hook: while there is
    /// one, busy polling would miss its events, so the loop does not
    /// busy-poll (QEMU's `poll_disable_cnt`). Written under `lock`.
    let unpolledCount = Atomic<Int>(0)

    /// A snapshot of the polled handlers. Takes `lock`.
    func polledSnapshot() -> (nodes: [FDHandlerNode], version: UInt64) {
        withLock { (polled, polledVersion.load(ordering: .relaxed)) }
    }

    @inline(__always) func withLock<R>(_ body: () throws -> R) rethrows -> R {
        try lock.withLock(body)
    }

    var count: Int { withLock { active.count } }
    var monitorKind: FDMonitorKind { withLock { monitor.kind } }

    func set(fd: Int32, name: String, read: (@Sendable () -> Void)?, write: (@Sendable () -> Void)?,
             poll: (@Sendable () -> Bool)?, pollReady: (@Sendable () -> Void)?,
             pollBegin: (@Sendable () -> Void)? = nil, pollEnd: (@Sendable () -> Void)? = nil) -> FDHandlerNode? {
        // Warnings go out after unlocking: the warning handler is user code
        // and may call back into the table.
        var replaced: FDHandlerNode? = nil
        let warning: String? = withLock {
            replaced = byFD[fd]
            return setLocked(fd: fd, name: name, read: read, write: write, poll: poll, pollReady: pollReady,
                             pollBegin: pollBegin, pollEnd: pollEnd)
        }
        if let warning { owner.warn(warning) }
        return replaced
    }

    private func setLocked(fd: Int32, name: String, read: (@Sendable () -> Void)?, write: (@Sendable () -> Void)?,
                           poll: (@Sendable () -> Bool)?, pollReady: (@Sendable () -> Void)?,
                           pollBegin: (@Sendable () -> Void)?, pollEnd: (@Sendable () -> Void)?) -> String? {
        var warning: String? = nil
        nextGeneration &+= 1
        let node = FDHandlerNode(fd: fd, name: name, read: read, write: write, poll: poll,
                                 pollReady: pollReady, pollBegin: pollBegin, pollEnd: pollEnd,
                                 generation: nextGeneration)
        if let old = byFD[fd] {
            unlink(old)
        }
        node.index = active.count
        active.append(node)
        if node.isPolled {
            polled.append(node)
            polledVersion.wrappingAdd(1, ordering: .relaxed)
        } else if node.pollEvents != 0 {
            node.countsAsUnpolled = true
            unpolledCount.wrappingAdd(1, ordering: .relaxed)
        }
        registeredCount.store(active.count, ordering: .relaxed)
        byFD[fd] = node
        do {
            try monitor.added(node)
        } catch {
            warning = fallBackToPoll(after: error)
        }
        if let source = glibSource, monitor.sharedFD == nil {
            node.glibTag = g_source_add_unix_fd(source, fd, GIOCondition(UInt32(node.pollEvents)))
        }
        if !monitorUsed {
            // The first handler: GLib starts polling the shared fd
            // (g_source_add_unix_fd wakes GLib to poll it).
            monitorUsed = true
            if monitor.sharedFD != nil { glibUseMonitorFDs() }
        }
        if monitor.kind == .poll && !epollDisabled && active.count >= Self.epollThreshold {
            warning = upgradeToEpoll() ?? warning
        }
        return warning
    }

    /// Unlinks the handler of `fd`; returns its node (for the caller to wait
    /// for its running callbacks outside the lock), nil if there was none.
    func remove(fd: Int32) -> FDHandlerNode? {
        lock.lock()
        defer { lock.unlock() }
        guard let node = byFD[fd] else { return nil }
        unlink(node)
        byFD[fd] = nil
        registeredCount.store(active.count, ordering: .relaxed)
        return node
    }

    /// Where removers wait for a node's running callbacks to end.
    private let idleMutex = PThreadMutex()
    private let idleCondition = PThreadCondition()

    /// Sleeps until no callback of `node` (already marked deleted) runs.
    func waitUntilIdle(_ node: FDHandlerNode) {
        idleMutex.lock()
        defer { idleMutex.unlock() }
        // Set `waited` under the mutex, and read the count in the same RMW:
        // a callback that ends after it sees `waited` and broadcasts under
        // the mutex, so after we sleep.
        while node.state.bitwiseOr(FDHandlerNode.waitedBit, ordering: .acquiringAndReleasing).oldValue
                >= FDHandlerNode.runningUnit {
            idleCondition.wait(idleMutex)
        }
    }

    /// A callback of a node with `waited` set ended with none left running.
    func callbacksEnded() {
        idleMutex.lock()
        idleCondition.broadcast()
        idleMutex.unlock()
    }

    /// Takes `node` out of every structure and marks it deleted. Under `lock`.
    private func unlink(_ node: FDHandlerNode) {
        node.state.bitwiseOr(FDHandlerNode.deletedBit, ordering: .acquiringAndReleasing)
        if node.isPolled, let i = polled.firstIndex(where: { $0 === node }) {
            polled.remove(at: i)
            polledVersion.wrappingAdd(1, ordering: .relaxed)
        }
        if node.countsAsUnpolled {
            node.countsAsUnpolled = false
            unpolledCount.wrappingSubtract(1, ordering: .relaxed)
        }
        let last = active.removeLast()
        if last !== node {
            active[node.index] = last
            last.index = node.index
        }
        node.index = -1
        monitor.removed(node)
        if let source = glibSource, let tag = node.glibTag {
            g_source_remove_unix_fd(source, tag)
        }
        node.glibTag = nil
    }

    /// POLLNVAL: stop polling the node's fd (it stays registered, so the
    /// owner's removeHandler still works).
    /// Returns false if the node was already marked (its POLLNVAL was
    /// dispatched).
    func markInvalid(_ node: FDHandlerNode) -> Bool {
        withLock {
            // Removed meanwhile: its number may already name another
            // registration, which epoll's removal by number would delete.
            if node.invalid || node.index < 0 { return false }
            node.invalid = true
            node.glibRevents = 0
            if node.countsAsUnpolled {
                node.countsAsUnpolled = false
                unpolledCount.wrappingSubtract(1, ordering: .relaxed)
            }
            monitor.removed(node)
            if let source = glibSource, let tag = node.glibTag {
                g_source_remove_unix_fd(source, tag)
                node.glibTag = nil
            }
            return true
        }
    }

    /// Under `lock`. Returns a warning to issue after unlocking.
    private func upgradeToEpoll() -> String? {
        let epoll: EpollMonitor
        do {
            epoll = try EpollMonitor()
            for node in active where !node.invalid {
                try epoll.added(node)
            }
        } catch {
            epollDisabled = true
            return "AioContext '\(owner.name)': cannot switch to epoll (\(error)); staying with poll"
        }
        monitor = epoll
        sweeps.store(true, ordering: .relaxed)
        glibUseMonitorFDs()
        return nil
    }

    /// Any epoll_ctl failure falls back to poll for good (QEMU does the same).
    /// Under `lock`. The old epoll fd stays open until the table goes away, so
    /// a waiter still sleeping on it never polls a reused descriptor number.
    private func fallBackToPoll(after error: SystemCallError) -> String? {
        guard monitor.kind == .epoll else { return nil }
        retired.append(monitor)
        monitor = PollMonitor()
        epollDisabled = true
        sweeps.store(false, ordering: .relaxed)
        glibUseMonitorFDs()
        return "AioContext '\(owner.name)': epoll failed (\(error)); falling back to poll for good"
    }

    /// Monitors given up after a failure, kept open until the table goes. Under `lock`.
    private var retired: [FDMonitor] = []

    /// Waits with the current backend. Not under `lock`.
    func wait(buffers: PollBuffers, wakeFD: Int32?, timeoutNs: Int64) -> Bool {
        let current = withLock { monitor }
        return current.wait(table: self, buffers: buffers, wakeFD: wakeFD, timeoutNs: timeoutNs)
    }

    func ppollOrTrap(_ fds: UnsafeMutablePointer<pollfd>, count: Int, timeoutNs: Int64) -> Int {
        do {
            return try PollSyscall.ppoll(fds, count: count, timeoutNs: timeoutNs)
        } catch {
            fatalError("AioContext '\(owner.name)': \(error) while waiting")
        }
    }

    // MARK: GLib

    /// Adds the handlers' fds (or the monitor's one fd) to a newly attached source.
    func attachGLib(_ source: UnsafeMutablePointer<GSource>) {
        withLock {
            glibSource = source
            glibUseMonitorFDs()
        }
    }

    /// Under `lock`: makes the attached source poll what the current
    /// monitor needs: its one fd, or one fd per handler. Called at attach
    /// and whenever the monitor (or its shared fd) changes.
    private func glibUseMonitorFDs() {
        guard let source = glibSource else { return }
        defer {
            glibSharedPolled.store(glibSharedTag != nil, ordering: .relaxed)
            glibAwaitingFirstUse.store(monitor.sharedFD != nil && glibSharedTag == nil, ordering: .relaxed)
        }
        if let shared = monitor.sharedFD {
            for node in active {
                if let tag = node.glibTag { g_source_remove_unix_fd(source, tag) }
                node.glibTag = nil
            }
            if glibSharedFD != shared && monitorUsed {
                if let tag = glibSharedTag { g_source_remove_unix_fd(source, tag) }
                glibSharedTag = g_source_add_unix_fd(source, shared, G_IO_IN)
                glibSharedFD = shared
            }
        } else {
            if let tag = glibSharedTag { g_source_remove_unix_fd(source, tag) }
            glibSharedTag = nil
            glibSharedFD = -1
            for node in active where !node.invalid && node.glibTag == nil {
                node.glibTag = g_source_add_unix_fd(source, node.fd, GIOCondition(UInt32(node.pollEvents)))
            }
        }
    }

    /// The monitor's shared fd changed (an epoll rebuild). Under `lock`.
    func sharedFDChanged() {
        glibUseMonitorFDs()
    }

    /// The shared fd's GLib tag, if GLib polls one. Under `lock`.
    var glibSharedTagLocked: gpointer? { glibSharedTag }

    /// Forgets the source (its fds go with it).
    func detachGLib() {
        withLock {
            glibSource = nil
            glibSharedTag = nil
            glibSharedFD = -1
            glibSharedPolled.store(false, ordering: .relaxed)
            glibAwaitingFirstUse.store(false, ordering: .relaxed)
            for node in active { node.glibTag = nil; node.glibRevents = 0 }
            glibReady.removeAll()
            glibReadyEpoch = .max
            glibLeftovers.store(0, ordering: .relaxed)
        }
    }

    /// GSource prepare, under ownership: what the monitor must do before
    /// GLib may sleep on its shared fd (io_uring: arm the polls and submit
    /// deferred entries; epoll: a pending rebuild).
    /// Returns whether completions wait that the shared fd no longer
    /// reports (GLib must not sleep then).
    func glibPrepare(_ source: UnsafeMutablePointer<GSource>?) -> Bool {
        // Nothing to arm or submit, and no shared fd for GLib to poll: the
        // monitor has never been used. Without the lock: a handler's
        // registration raises `registeredCount` before it wakes GLib, and a
        // ring submission raises `operationsInFlight` before its notify, so
        // a prepare that reads a stale zero is followed by another.
        if !glibSharedPolled.load(ordering: .relaxed) && !hasWatchedWork { return false }
        return glibPrepareLocked(source)
    }

    @inline(never)
    private func glibPrepareLocked(_ source: UnsafeMutablePointer<GSource>?) -> Bool {
        withLock {
            guard source == glibSource, monitor.sharedFD != nil else { return false }
            if glibSharedTag == nil {
                // Ring operations in flight, the first use: poll the shared
                // fd from this prepare on (added before GLib's query).
                monitorUsed = true
                glibUseMonitorFDs()
            }
            monitor.prepareShared(table: self)
            guard let ring else { return false }
            ring.withLock { ring.submitDeferredLocked() }
            return ring.backlogCount.load(ordering: .relaxed) > 0
        }
    }

    /// Shared-fd entries a GLib check took and whose GLib dispatch has not
    /// run (another thread owned the context). Read without the lock.
    /// Relaxed: written by GLib's check and read by dispatches, all under
    /// ownership, whose hand-over orders them.
    let glibLeftovers = Atomic<Int>(0)

    /// The owner's dispatch takes what a GLib check left: the completion
    /// went to GLib alone (io_uring gives each to one reader), so if GLib's
    /// dispatch was skipped and only the owner dispatched, no one else
    /// would. Without it, re-arming finds the data again, GLib takes it
    /// again, and so on: a livelock (Models/aio_uring_poll.pml,
    /// SPEC_GLIB_ONLY_COLLECTS). Returns the lowest epoch of the entries.
    func collectGLibLeftovers(into ready: ReadyList) {
        withLock {
            for node in glibReady where node.glibRevents != 0 {
                if !node.invalid && node.index >= 0 {
                    ready.append(node, node.glibRevents)
                }
                node.glibRevents = 0
            }
            if glibReadyEpoch < ready.epoch { ready.epoch = glibReadyEpoch }
            glibReady.removeAll(keepingCapacity: true)
            glibReadyEpoch = .max
            glibLeftovers.store(0, ordering: .relaxed)
        }
    }

    /// GSource check: records each ready handler's revents. Returns whether
    /// any handler is ready, and the lowest dispatch epoch its readiness was
    /// seen at (`pollEpoch`, the epoch of GLib's prepare, or earlier when an
    /// io_uring poll was armed before it).
    func glibCheck(_ source: UnsafeMutablePointer<GSource>?, pollEpoch: UInt64) -> (ready: Bool, epoch: UInt64) {
        withLock {
            // A check of a source detached meanwhile (a detach and attach on
            // another thread while GLib was between poll and check): the
            // nodes' tags belong to the new source. Nothing to report.
            guard source == glibSource else { return (false, pollEpoch) }
            if let sharedTag = glibSharedTag {
                // One fd for every handler: take what the monitor has (io_uring
                // completions are in memory; epoll is read only when its fd
                // is readable). Entries from a check whose dispatch was
                // skipped stay, with their epoch.
                let readable = g_source_query_unix_fd(source, sharedTag).rawValue != 0
                if readable || monitor.kind == .ioUring {
                    monitor.harvest(table: self) { node, revents, epoch in
                        if node.glibRevents == 0 { glibReady.append(node) }
                        glibLeftovers.store(1, ordering: .relaxed)
                        node.glibRevents |= revents
                        let seen = min(epoch, pollEpoch)
                        if seen < glibReadyEpoch { glibReadyEpoch = seen }
                    }
                }
                return (!glibReady.isEmpty, min(glibReadyEpoch, pollEpoch))
            }
            var any = false
            for node in active {
                guard let tag = node.glibTag else { continue }
                let revents = Int16(truncatingIfNeeded: g_source_query_unix_fd(source, tag).rawValue)
                node.glibRevents = revents
                if revents != 0 { any = true }
            }
            return (any, pollEpoch)
        }
    }

    /// GSource dispatch: moves the handlers GLib found ready into `ready`.
    func glibCollect(into ready: ReadyList, for source: UnsafeMutablePointer<GSource>?) {
        ready.clear()
        withLock {
            // As in `glibCheck`: revents recorded for another source.
            guard source == glibSource else { return }
            if glibSharedTag != nil {
                // Only the ready ones: the cost does not grow with the handlers.
                for node in glibReady where node.glibRevents != 0 {
                    if !node.invalid && node.index >= 0 { ready.append(node, node.glibRevents) }
                    node.glibRevents = 0
                }
                glibReady.removeAll(keepingCapacity: true)
                glibReadyEpoch = .max
                glibLeftovers.store(0, ordering: .relaxed)
                return
            }
            for node in active where node.glibRevents != 0 && !node.invalid {
                ready.append(node, node.glibRevents)
                node.glibRevents = 0
            }
        }
    }

    // MARK: io_uring

    /// End of a dispatch pass (owner): arm the polls whose completions were
    /// just dispatched, and submit the entries queued during the pass.
    /// The test is inline and binds no strong reference (a binding costs a
    /// retain and a release per pass); the work is out of line.
    @inline(__always)
    func afterDispatch() {
        if uring?.hasWorkAfterDispatch == true { afterDispatchSlow() }
    }

    @inline(never)
    private func afterDispatchSlow() {
        guard let uring else { return }
        withLock {
            uring.armPending(table: self)
            uring.ring.withLock { uring.ring.submitDeferredLocked() }
        }
    }

    /// Whether the ring has callbacks to run (`Ring.hasFinished`). Owner-only.
    /// Binds no strong reference to the ring, which is immutable.
    @inline(__always)
    var ringHasFinished: Bool { ring?.hasFinished == true }

    // MARK: Descriptors closed while registered

    /// Whether the monitor needs the sweep: epoll and io_uring do not report
    /// a closed descriptor (ppoll does: POLLNVAL). Set under `lock` when the
    /// monitor changes; relaxed: a stale value costs one sweep too many or
    /// too late, never a callback.
    let sweeps = Atomic<Bool>(false)
    /// When the next sweep is due (monotonic ns; 0: not scheduled). Owner-only.
    @exclusivity(unchecked) var sweepDeadline: Int64 = 0
    /// Where the next sweep starts in `active`. Under `lock`.
    private var sweepCursor = 0
    static let sweepIntervalNs: Int64 = 1_000_000_000
    static let sweepBatch = 8_192

    /// Whether a sweep is due now; schedules the first one. Owner-only.
    func sweepTimeoutNs(now: Int64) -> Int64 {
        if sweepDeadline == 0 { sweepDeadline = now + Self.sweepIntervalNs }
        return max(sweepDeadline - now, 0)
    }

    /// Checks up to `sweepBatch` registered descriptors (round robin) and
    /// returns the handlers whose descriptor is no longer open. Takes `lock`.
    func sweepClosed() -> [FDHandlerNode] {
        withLock {
            var closed: [FDHandlerNode] = []
            let n = active.count
            if n == 0 { return closed }
            if sweepCursor >= n { sweepCursor = 0 }
            for _ in 0..<min(n, Self.sweepBatch) {
                let node = active[sweepCursor]
                if !node.invalid && fcntl(node.fd, F_GETFD) == -1 && errno == EBADF { closed.append(node) }
                sweepCursor += 1
                if sweepCursor >= n { sweepCursor = 0 }
            }
            return closed
        }
    }
}
