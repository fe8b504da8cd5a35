import CAioURing
import Glibc
import Synchronization

/// io_uring as the fd monitor: one one-shot `IORING_OP_POLL_ADD` per
/// handler, re-armed once its completion was taken, so handlers stay
/// level-triggered (QEMU dropped multishot polls for that reason). The
/// ring's fd is readable while completions wait: a native wait ppolls it
/// with its own wake-up fd (a nanosecond timeout), and GLib polls it as the
/// context's one descriptor.
///
/// Rules (Models/aio_uring_poll.pml):
/// - A completion ends its poll: the node goes on `toArm`, and every path
///   that may sleep on the ring (a native wait, GLib's prepare) first arms
///   what is there; so does the end of each dispatch pass. Whoever took a
///   completion either dispatches it or leaves the node there: readiness is
///   never lost, even when GLib's dispatch is skipped. A poll the kernel
///   cancelled (its arming thread exited) completes with ECANCELED and is
///   armed again the same way.
/// - A completion goes to one reader only: what GLib's check took and
///   GLib's dispatch did not run (another thread owned the context) is
///   dispatched by the owner's next pass (`collectGLibLeftovers`), or GLib
///   and the owner could hand the same readiness back and forth for ever
///   (the model's SPEC_GLIB_ONLY_COLLECTS).
/// - A completion reports readiness as of its arming: its ready entry
///   carries the dispatch epoch read then (`armedEpoch`), so a poll armed
///   before another thread's dispatch consumed the data is re-checked
///   (dispatch once).
/// - Removal submits a poll remove at once (the kernel keeps a reference to
///   the file while the poll is armed; a caller that closes the fd next
///   expects the file to go). A completion for a removed or replaced node
///   no longer matches the table (fd and generation in `user_data`) and is
///   dropped: no callback after removal.
///
/// QEMU: `util/fdmon-io_uring.c`.
final class URingMonitor: FDMonitor {
    let ring: Ring
    var kind: FDMonitorKind { .ioUring }
    var sharedFD: Int32? { ring.fd }

    /// Registered nodes whose poll is not armed. Under the table lock.
    @exclusivity(unchecked) private var toArm: [FDHandlerNode] = []
    /// `toArm` is not empty: read without the lock by the end of a dispatch.
    /// Relaxed: a stale false only leaves the arming to the next wait or
    /// GLib prepare, which read `toArm` itself under the table lock.
    let armsPending = Atomic<Bool>(false)

    /// Whether `HandlerTable.afterDispatch` has polls to arm or entries to
    /// submit. Relaxed, for the reasons each flag's comment gives.
    @inline(__always)
    var hasWorkAfterDispatch: Bool {
        armsPending.load(ordering: .relaxed) || ring.deferredSubmissions.load(ordering: .relaxed)
    }
    /// Scratch for the handler completions of one reap. Under the table lock.
    @exclusivity(unchecked) private var completions: [(userData: UInt64, result: Int32, flags: UInt32)] = []

    init(ring: Ring) {
        self.ring = ring
        completions.reserveCapacity(64)
    }

    private static let generationMask: UInt64 = 0x3FFF_FFFF

    /// A handler poll's `user_data`: the node's generation (30 bits) and fd;
    /// the two top bits stay clear (they tag internal entries and callers'
    /// operations).
    @inline(__always)
    static func key(_ node: FDHandlerNode) -> UInt64 {
        (UInt64(node.generation) & generationMask) << 32 | UInt64(UInt32(bitPattern: node.fd))
    }

    func added(_ node: FDHandlerNode) {
        node.uringArmed = false
        toArm.append(node)
        armsPending.store(true, ordering: .relaxed)
    }

    func removed(_ node: FDHandlerNode) {
        guard node.uringArmed else { return }
        node.uringArmed = false
        ring.withLock {
            let sqe = ring.entryLocked(userData: AIO_URING_INTERNAL_TAG)
            aio_uring_prep_poll_remove(sqe, Self.key(node))
            sqe.pointee.user_data = AIO_URING_INTERNAL_TAG
            ring.submitLocked()
        }
    }

    /// Under the table lock: arms every registered node on `toArm`, with the
    /// dispatch epoch read now (before the kernel looks), and submits.
    func armPending(table: HandlerTable) {
        if toArm.isEmpty {
            // Callers' entries the loop has not handed over yet.
            if ring.deferredSubmissions.load(ordering: .relaxed) {
                ring.withLock { ring.submitDeferredLocked() }
            }
            return
        }
        let epoch = table.owner.handlerEpoch.load(ordering: .acquiring)
        ring.withLock {
            for node in toArm where node.index >= 0 && !node.invalid && !node.uringArmed {
                let sqe = ring.entryLocked(userData: Self.key(node))
                aio_uring_prep_poll_add(sqe, node.fd, UInt32(UInt16(bitPattern: node.pollEvents)))
                sqe.pointee.user_data = Self.key(node)
                node.uringArmed = true
                node.armedEpoch = epoch
            }
            ring.deferredSubmissions.store(false, ordering: .relaxed)
            ring.submitLocked()
        }
        toArm.removeAll(keepingCapacity: true)
        armsPending.store(false, ordering: .relaxed)
    }

    func prepareShared(table: HandlerTable) {
        armPending(table: table)
    }

    func harvest(table: HandlerTable, _ found: (FDHandlerNode, Int16, UInt64) -> Void) {
        ring.withLock {
            ring.takeCompletionsLocked(into: &completions)
            ring.completeOperationsLocked(in: &completions)
        }
        for c in completions {
            let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: c.userData))
            let generation = (c.userData >> 32) & Self.generationMask
            guard let node = table.byFD[fd],
                  UInt64(node.generation) & Self.generationMask == generation,
                  !node.invalid else { continue }  // removed, replaced or invalid: dropped
            // This completion ends the node's one-shot poll: the node goes on
            // the list every path that may sleep arms first.
            node.uringArmed = false
            #if !AIO_FAULT_URING_NO_REARM
            toArm.append(node)
            armsPending.store(true, ordering: .relaxed)
            #else
            // FAULT: a completed poll is never armed again; the handler's
            // next readiness is lost (Models/aio_uring_poll.pml, FAULT_NO_REARM_LIST).
            #endif
            if c.result == -ECANCELED { continue }
            let revents: Int16
            if c.result >= 0 {
                revents = Int16(truncatingIfNeeded: c.result)
            } else {
                // The poll could not be armed: EBADF is a closed descriptor
                // (POLLNVAL, as ppoll reports it); anything else an error.
                revents = c.result == -EBADF ? Readiness.invalid : Int16(POLLERR)
            }
            if revents != 0 { found(node, revents, node.armedEpoch) }
        }
        completions.removeAll(keepingCapacity: true)
    }

    func wait(table: HandlerTable, buffers: PollBuffers, wakeFD: Int32?, timeoutNs: Int64) -> Bool {
        buffers.ready.clear()
        let (watchRing, completed): (Bool, Bool) = table.withLock {
            armPending(table: table)
            let watch = !table.active.isEmpty || ring.operationsInFlight.load(ordering: .relaxed) > 0
                || ring.backlogCount.load(ordering: .relaxed) > 0
            // Completions already there (a submission that completed inline,
            // like a read from the page cache), or moved to the backlog (a
            // full queue made room; the fd no longer reports those): take
            // them instead of sleeping, and save the ppoll.
            return (watch, watch && timeoutNs != 0 && ring.withLock { ring.hasCompletionsLocked })
        }
        var wakeReadable = false
        if timeoutNs != 0 && !completed {
            buffers.pollfds.removeAll(keepingCapacity: true)
            if let wakeFD {
                buffers.pollfds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            }
            if watchRing {
                buffers.pollfds.append(pollfd(fd: ring.fd, events: Int16(POLLIN), revents: 0))
            }
            if buffers.pollfds.isEmpty {
                PollMonitor.sleep(ns: timeoutNs)
                return false
            }
            _ = buffers.pollfds.withUnsafeMutableBufferPointer { fds in
                table.ppollOrTrap(fds.baseAddress!, count: fds.count, timeoutNs: timeoutNs)
            }
            if wakeFD != nil {
                wakeReadable = buffers.pollfds[0].revents & Int16(POLLIN) != 0
            }
            if !watchRing { return wakeReadable }
        }
        let ready = buffers.ready
        table.withLock {
            harvest(table: table) { node, revents, epoch in
                ready.append(node, revents)
                if epoch < ready.epoch { ready.epoch = epoch }
            }
        }
        return wakeReadable
    }
}
