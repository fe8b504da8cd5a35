import CGLibShim
import Glibc

/// Which backend watches the handlers' descriptors.
///
/// Chosen when the context is made: io_uring when the kernel gives the
/// process a ring, else ppoll that switches to epoll from 64 registered fds.
/// ``AioContext/init(name:fdMonitor:logger:)`` and the `AIO_FDMON` environment
/// variable (`poll`, `epoll`, `io_uring`) force one.
public enum FDMonitorKind: String, Sendable, CaseIterable {
    /// ppoll(2) over an array rebuilt each wait: O(registered fds) per wait.
    /// Under GLib, one GLib fd per handler.
    case poll
    /// epoll(7): O(ready fds) per wait. Under GLib, GLib polls the epoll fd.
    case epoll
    /// io_uring: a one-shot poll per handler, re-armed after each
    /// completion. Under GLib, GLib polls the ring's fd. Also runs the
    /// context's own submissions and file I/O.
    case ioUring = "io_uring"
}

/// Reusable per-poll buffers: the pollfd array handed to the kernel and the
/// ready list a dispatch walks. One set per poll in flight (a waiter's slot),
/// so concurrent and nested polls never share them.
final class PollBuffers {
    var pollfds: [pollfd] = []
    var polled: [FDHandlerNode] = []
    let ready = ReadyList()
    let epollEvents: UnsafeMutablePointer<epoll_event>
    static let epollBatch = 128

    init() {
        pollfds.reserveCapacity(16)
        polled.reserveCapacity(16)
        epollEvents = .allocate(capacity: Self.epollBatch)
        epollEvents.initialize(repeating: epoll_event(), count: Self.epollBatch)
    }

    deinit {
        epollEvents.deallocate()
    }
}

/// Handlers found ready by one wait, with their revents.
final class ReadyList {
    var nodes: [FDHandlerNode] = []
    var revents: [Int16] = []
    /// The context's handler-dispatch epoch read before the poll that filled
    /// the list looked at the fds: a node dispatched after it (its
    /// `dispatchedAt` is larger) may have consumed what the poll saw, so its
    /// readiness is re-checked before the callback (dispatch once).
    var epoch: UInt64 = 0
    var count: Int { nodes.count }

    init() {
        nodes.reserveCapacity(16)
        revents.reserveCapacity(16)
    }

    @inline(__always) func append(_ node: FDHandlerNode, _ events: Int16) {
        nodes.append(node)
        revents.append(events)
    }

    /// Drops the references, keeping the storage.
    @inline(__always) func clear() {
        nodes.removeAll(keepingCapacity: true)
        revents.removeAll(keepingCapacity: true)
    }
}

/// An fd monitor backend. `added`/`removed`/`harvest` run under the
/// handler table's lock; `wait` runs without it (it takes it briefly to read
/// the table). QEMU: `FDMonOps` (`util/fdmon-poll.c`, `util/fdmon-epoll.c`,
/// `util/fdmon-io_uring.c`).
protocol FDMonitor: AnyObject {
    var kind: FDMonitorKind { get }
    /// The one descriptor GLib polls for every handler (the epoll fd, the
    /// ring fd); nil: GLib polls each handler's fd. Under the table lock.
    var sharedFD: Int32? { get }
    func added(_ node: FDHandlerNode) throws(SystemCallError)
    func removed(_ node: FDHandlerNode)
    /// Waits up to `timeoutNs` (negative: forever) for the handlers' fds and
    /// `wakeFD` (if any), fills `buffers.ready`, and reports whether `wakeFD`
    /// became readable.
    func wait(table: HandlerTable, buffers: PollBuffers, wakeFD: Int32?, timeoutNs: Int64) -> Bool
    /// Under the table lock, before GLib polls `sharedFD`: what the monitor
    /// must do before anyone may sleep on it (io_uring: arm the polls).
    func prepareShared(table: HandlerTable)
    /// Under the table lock: reports each handler ready now, without
    /// sleeping, with its revents and the dispatch epoch before its
    /// readiness was looked at (`UInt64.max`: at this call).
    func harvest(table: HandlerTable, _ found: (FDHandlerNode, Int16, UInt64) -> Void)
}

extension FDMonitor {
    var sharedFD: Int32? { nil }
    func prepareShared(table: HandlerTable) {}
    func harvest(table: HandlerTable, _ found: (FDHandlerNode, Int16, UInt64) -> Void) {}
}

/// ppoll(2) over every registered fd.
final class PollMonitor: FDMonitor {
    var kind: FDMonitorKind { .poll }
    func added(_ node: FDHandlerNode) {}
    func removed(_ node: FDHandlerNode) {}

    func wait(table: HandlerTable, buffers: PollBuffers, wakeFD: Int32?, timeoutNs: Int64) -> Bool {
        buffers.pollfds.removeAll(keepingCapacity: true)
        buffers.polled.removeAll(keepingCapacity: true)
        buffers.ready.clear()
        if let wakeFD {
            buffers.pollfds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
        }
        table.withLock {
            for node in table.active where !node.invalid {
                buffers.pollfds.append(pollfd(fd: node.fd, events: node.pollEvents, revents: 0))
                buffers.polled.append(node)
            }
        }
        let first = wakeFD == nil ? 0 : 1
        if buffers.pollfds.isEmpty {
            // Nothing to watch: a zero timeout is a no-op, anything else a sleep.
            if timeoutNs != 0 { Self.sleep(ns: timeoutNs) }
            return false
        }
        let ready = buffers.pollfds.withUnsafeMutableBufferPointer { fds in
            table.ppollOrTrap(fds.baseAddress!, count: fds.count, timeoutNs: timeoutNs)
        }
        if ready > 0 {
            for i in first..<buffers.pollfds.count where buffers.pollfds[i].revents != 0 {
                buffers.ready.append(buffers.polled[i - first], buffers.pollfds[i].revents)
            }
        }
        // Let go of the nodes: a slot outlives this poll, and a node it kept
        // would keep its callbacks (and what they capture) alive.
        buffers.polled.removeAll(keepingCapacity: true)
        return ready > 0 && wakeFD != nil && buffers.pollfds[0].revents & Int16(POLLIN) != 0
    }

    static func sleep(ns: Int64) {
        var ts = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        _ = nanosleep(&ts, nil)
    }
}

/// An epoll descriptor, closed when the last user lets go: a rebuild swaps
/// in a new one while a waiter may still sleep on the old one.
final class EpollFD {
    let fd: Int32
    init() throws(SystemCallError) {
        fd = try Posix.retryingEINTR("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }
    deinit { Posix.close(fd: fd) }
}

/// epoll(7), with ns timeouts through ppoll on the epoll fd (QEMU does the same).
///
/// A descriptor closed while registered: if its file is closed too, the
/// kernel drops the registration silently (the validity sweep finds the
/// handler, see `HandlerTable.sweepClosed`); if the file is still open
/// elsewhere (a dup, a child), the registration outlives the number, keeps
/// reporting events, and `EPOLL_CTL_DEL` by the number fails. Either way a
/// failed removal, an event no live handler claims, or an `EEXIST` on add
/// rebuilds the set from the live handlers: no registration is left that
/// cannot be removed.
final class EpollMonitor: FDMonitor {
    /// The current set. Under the table lock.
    private(set) var current: EpollFD
    var kind: FDMonitorKind { .epoll }
    var sharedFD: Int32? { current.fd }
    /// A removal failed or a stale event came: rebuild before the next look.
    /// Under the table lock.
    private var needsRebuild = false

    init() throws(SystemCallError) {
        current = try EpollFD()
    }

    /// epoll's event data: the fd and the node's generation, so a stale event
    /// for a replaced or removed node is recognised and dropped.
    static func key(_ node: FDHandlerNode) -> UInt64 {
        UInt64(node.generation) << 32 | UInt64(UInt32(bitPattern: node.fd))
    }

    private func add(_ node: FDHandlerNode, to set: EpollFD) throws(SystemCallError) {
        var event = epoll_event()
        event.events = (node.read != nil ? EPOLLIN.rawValue : 0) | (node.write != nil ? EPOLLOUT.rawValue : 0)
        event.data.u64 = Self.key(node)
        _ = try Posix.retryingEINTR("epoll_ctl(ADD)") { epoll_ctl(set.fd, EPOLL_CTL_ADD, node.fd, &event) }
    }

    func added(_ node: FDHandlerNode) throws(SystemCallError) {
        do {
            try add(node, to: current)
        } catch where error.errno == EEXIST {
            // The same file is still registered under this number from a
            // registration whose descriptor was closed: start afresh. The
            // rebuild (before the next look; the caller notifies) adds this
            // node with the others.
            needsRebuild = true
        }
    }

    /// Under the table lock, with `node` already out of the table.
    func removed(_ node: FDHandlerNode) {
        if epoll_ctl(current.fd, EPOLL_CTL_DEL, node.fd, nil) != 0 {
            // EBADF: the number was closed, and the file may still be in the
            // set (open elsewhere). ENOENT: the number now names another
            // file, or the kernel already dropped it. The set may hold a
            // registration no number reaches any more.
            needsRebuild = true
        }
    }

    /// Under the table lock: a new set with every live handler. A handler
    /// whose fd is no longer open is left out (the sweep reports it).
    func rebuildIfNeeded(table: HandlerTable) {
        guard needsRebuild else { return }
        guard let fresh = try? EpollFD() else { return }  // out of fds: try again next time
        needsRebuild = false
        for node in table.active where !node.invalid {
            _ = try? add(node, to: fresh)
        }
        current = fresh
        table.sharedFDChanged()
    }

    func prepareShared(table: HandlerTable) {
        rebuildIfNeeded(table: table)
    }

    func wait(table: HandlerTable, buffers: PollBuffers, wakeFD: Int32?, timeoutNs: Int64) -> Bool {
        buffers.ready.clear()
        // Hold the set for the wait: a rebuild meanwhile closes the old one
        // only after we let go.
        let set: EpollFD = table.withLock {
            rebuildIfNeeded(table: table)
            return current
        }
        var wakeReadable = false
        if timeoutNs != 0 {
            buffers.pollfds.removeAll(keepingCapacity: true)
            if let wakeFD {
                buffers.pollfds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            }
            buffers.pollfds.append(pollfd(fd: set.fd, events: Int16(POLLIN), revents: 0))
            _ = buffers.pollfds.withUnsafeMutableBufferPointer { fds in
                table.ppollOrTrap(fds.baseAddress!, count: fds.count, timeoutNs: timeoutNs)
            }
            if wakeFD != nil {
                wakeReadable = buffers.pollfds[0].revents & Int16(POLLIN) != 0
            }
            if buffers.pollfds[buffers.pollfds.count - 1].revents == 0 { return wakeReadable }
        }
        table.withLock {
            // A rebuild while we slept: the new set is the one to read.
            harvestLocked(table: table, buffers: buffers) { node, revents, _ in
                buffers.ready.append(node, revents)
            }
        }
        return wakeReadable
    }

    func harvest(table: HandlerTable, _ found: (FDHandlerNode, Int16, UInt64) -> Void) {
        harvestLocked(table: table, buffers: table.harvestBuffers, found)
    }

    private func harvestLocked(table: HandlerTable, buffers: PollBuffers,
                               _ found: (FDHandlerNode, Int16, UInt64) -> Void) {
        let n = epoll_wait(current.fd, buffers.epollEvents, Int32(PollBuffers.epollBatch), 0)
        if n <= 0 { return }
        for i in 0..<Int(n) {
            let event = buffers.epollEvents[i]
            let key = event.data.u64
            let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: key))
            guard let node = table.byFD[fd], UInt64(node.generation) == key >> 32, !node.invalid else {
                // Under the table lock every removal has left the set, so
                // this is a registration that outlived its descriptor. It
                // would be reported on every wait: rebuild.
                needsRebuild = true
                continue
            }
            found(node, Int16(truncatingIfNeeded: event.events), UInt64.max)
        }
    }
}
