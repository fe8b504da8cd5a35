import CGLibShim
import Glibc

/// Which backend watches the handlers' descriptors in a native poll.
public enum FDMonitorKind: String, Sendable {
    /// ppoll(2) over an array rebuilt each wait: O(registered fds) per wait.
    case poll
    /// epoll(7): O(ready fds) per wait. Used from 64 registered fds on.
    case epoll
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

/// An fd monitor backend. `added`/`removed` run under the handler table's
/// lock; `wait` runs without it (it takes it briefly to read the table).
/// QEMU: `FDMonOps` (`util/fdmon-poll.c`, `util/fdmon-epoll.c`).
protocol FDMonitor: AnyObject {
    var kind: FDMonitorKind { get }
    func added(_ node: FDHandlerNode) throws(SystemCallError)
    func removed(_ node: FDHandlerNode)
    /// Waits up to `timeoutNs` (negative: forever) for the handlers' fds and
    /// `wakeFD` (if any), fills `buffers.ready`, and reports whether `wakeFD`
    /// became readable.
    func wait(table: HandlerTable, buffers: PollBuffers, wakeFD: Int32?, timeoutNs: Int64) -> Bool
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
            if timeoutNs != 0 { sleepFor(ns: timeoutNs) }
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

    private func sleepFor(ns: Int64) {
        var ts = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        _ = nanosleep(&ts, nil)
    }
}

/// epoll(7), with ns timeouts through ppoll on the epoll fd (QEMU does the same).
final class EpollMonitor: FDMonitor {
    let epfd: Int32
    var kind: FDMonitorKind { .epoll }

    init() throws(SystemCallError) {
        epfd = try Posix.retryingEINTR("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
    }

    deinit {
        Posix.close(fd: epfd)
    }

    /// epoll's event data: the fd and the node's generation, so a stale event
    /// for a replaced or removed node is recognised and dropped.
    static func key(_ node: FDHandlerNode) -> UInt64 {
        UInt64(node.generation) << 32 | UInt64(UInt32(bitPattern: node.fd))
    }

    func added(_ node: FDHandlerNode) throws(SystemCallError) {
        var event = epoll_event()
        event.events = (node.read != nil ? EPOLLIN.rawValue : 0) | (node.write != nil ? EPOLLOUT.rawValue : 0)
        event.data.u64 = Self.key(node)
        _ = try Posix.retryingEINTR("epoll_ctl(ADD)") { epoll_ctl(epfd, EPOLL_CTL_ADD, node.fd, &event) }
    }

    func removed(_ node: FDHandlerNode) {
        // ENOENT/EBADF: the fd was closed (the kernel already dropped it) or
        // never added; nothing to undo.
        _ = epoll_ctl(epfd, EPOLL_CTL_DEL, node.fd, nil)
    }

    func wait(table: HandlerTable, buffers: PollBuffers, wakeFD: Int32?, timeoutNs: Int64) -> Bool {
        buffers.ready.clear()
        var wakeReadable = false
        var harvest = true
        if timeoutNs != 0 {
            buffers.pollfds.removeAll(keepingCapacity: true)
            if let wakeFD {
                buffers.pollfds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            }
            buffers.pollfds.append(pollfd(fd: epfd, events: Int16(POLLIN), revents: 0))
            _ = buffers.pollfds.withUnsafeMutableBufferPointer { fds in
                table.ppollOrTrap(fds.baseAddress!, count: fds.count, timeoutNs: timeoutNs)
            }
            if let _ = wakeFD {
                wakeReadable = buffers.pollfds[0].revents & Int16(POLLIN) != 0
            }
            harvest = buffers.pollfds[buffers.pollfds.count - 1].revents != 0
        }
        if !harvest { return wakeReadable }
        let n = epoll_wait(epfd, buffers.epollEvents, Int32(PollBuffers.epollBatch), 0)
        if n <= 0 { return wakeReadable }
        table.withLock {
            for i in 0..<Int(n) {
                let event = buffers.epollEvents[i]
                let key = event.data.u64
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: key))
                guard let node = table.byFD[fd], UInt64(node.generation) == key >> 32 else { continue }
                buffers.ready.append(node, Int16(truncatingIfNeeded: event.events))
            }
        }
        return wakeReadable
    }
}
