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

    /// The backend. Starts as poll; upgraded to epoll at `epollThreshold`
    /// registered fds; back to poll for good if epoll ever fails.
    private(set) var monitor: FDMonitor = PollMonitor()
    private var epollDisabled = false
    /// QEMU upgrades at 64 fds.
    static let epollThreshold = 64

    /// The attached GSource; handlers are added to it as unix fds.
    var glibSource: UnsafeMutablePointer<GSource>?

    // SAFETY: set once by the owning context's init; the context owns the table.
    unowned(unsafe) var ownerRef: AioContext?
    var owner: AioContext { ownerRef! }

    /// Number of registered handlers, readable without the lock: a poll that
    /// reads a stale 0 misses a handler added concurrently, whose addition
    /// notifies, so the next poll sees it.
    let registeredCount = Atomic<Int>(0)

    /// Handlers with busy-poll hooks. Under `lock`; the owner caches a copy
    /// while `polledVersion` stays the same.
    private(set) var polled: [FDHandlerNode] = []
    /// Bumped (under `lock`) whenever `polled` changes.
    let polledVersion = Atomic<UInt64>(0)
    /// Handlers whose fd is polled but that have no poll hook: while there is
    /// one, busy polling would miss its events, so the loop does not
    /// busy-poll (QEMU's `poll_disable_cnt`). Written under `lock`.
    let unpolledCount = Atomic<Int>(0)

    init() {}

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
        if let source = glibSource {
            node.glibTag = g_source_add_unix_fd(source, fd, GIOCondition(UInt32(node.pollEvents)))
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
            if node.invalid { return false }
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

    /// Adds every handler's fd to a newly attached source.
    func attachGLib(_ source: UnsafeMutablePointer<GSource>) {
        withLock {
            glibSource = source
            for node in active where !node.invalid {
                node.glibTag = g_source_add_unix_fd(source, node.fd, GIOCondition(UInt32(node.pollEvents)))
            }
        }
    }

    /// Forgets the source (its fds go with it).
    func detachGLib() {
        withLock {
            glibSource = nil
            for node in active { node.glibTag = nil; node.glibRevents = 0 }
        }
    }

    /// GSource check: records each handler's revents; returns whether any
    /// handler is ready.
    func glibCheck(_ source: UnsafeMutablePointer<GSource>?) -> Bool {
        withLock {
            // A check of a source detached meanwhile (a detach and attach on
            // another thread while GLib was between poll and check): the
            // nodes' tags belong to the new source. Nothing to report.
            guard source == glibSource else { return false }
            var any = false
            for node in active {
                guard let tag = node.glibTag else { continue }
                let revents = Int16(truncatingIfNeeded: g_source_query_unix_fd(source, tag).rawValue)
                node.glibRevents = revents
                if revents != 0 { any = true }
            }
            return any
        }
    }

    /// GSource dispatch: moves the handlers GLib found ready into `ready`.
    func glibCollect(into ready: ReadyList, for source: UnsafeMutablePointer<GSource>?) {
        ready.clear()
        withLock {
            // As in `glibCheck`: revents recorded for another source.
            guard source == glibSource else { return }
            for node in active where node.glibRevents != 0 && !node.invalid {
                ready.append(node, node.glibRevents)
                node.glibRevents = 0
            }
        }
    }
}
