import CAioURing
import Glibc
import Synchronization

/// One io_uring instance of a context: the fd monitor's polls, the caller's
/// own submissions and the file I/O share it.
///
/// Threading: the submission queue and the completion queue are each
/// single-producer/single-consumer structures shared with the kernel, so
/// every access goes through `lock` (innermost: the handler table's lock may
/// be held around it, never the other way round). Completions are copied
/// into `backlog` under the lock and interpreted by whoever holds the table
/// lock (`URingMonitor.harvest`), so a full submission queue can always
/// make room without taking any other lock.
final class Ring: @unchecked Sendable {
    // @unchecked Sendable: `raw`, `backlog` and `finished` are touched only
    // under `lock`; `running` only by the context's owner; `fd` is immutable;
    // the counters are atomic.

    let raw: UnsafeMutableRawPointer
    /// The ring's descriptor: readable while completions wait in its queue.
    let fd: Int32
    let lock = PThreadMutex()
    /// Completions taken off the kernel's queue, not yet interpreted.
    @exclusivity(unchecked) private var backlog: [(userData: UInt64, result: Int32, flags: UInt32)] = []
    /// Operations submitted by callers and not completed (any thread reads it
    /// to decide whether a wait must watch the ring). Written under `lock`,
    /// read relaxed: a waiter that reads a stale 0 is the one the queuer's
    /// `notify()` keeps awake (its seq_cst generation RMW comes after the
    /// increment; the waiter's seq_cst generation load [dekker-wait] then
    /// orders the next read of this counter after it).
    let operationsInFlight = Atomic<Int>(0)

    static let submissionEntries: UInt32 = 256
    static let completionEntries: UInt32 = 1024

    /// Makes a ring, or throws why the kernel refused (ENOSYS on an old
    /// kernel, EPERM under `kernel.io_uring_disabled` or seccomp, ENOMEM).
    init() throws(SystemCallError) {
        var error: Int32 = 0
        guard let ring = aio_uring_new(Ring.submissionEntries, Ring.completionEntries, &error) else {
            throw SystemCallError(call: "io_uring_setup", errno: error)
        }
        raw = ring
        fd = aio_uring_fd(ring)
    }

    deinit {
        // The kernel cancels what is still armed (handler polls). Callers'
        // operations are never in flight here: the context's teardown traps
        // if one is (it would never complete, and its buffer would be
        // released under the kernel).
        aio_uring_free(raw)
    }

    @inline(__always) func withLock<R>(_ body: () throws -> R) rethrows -> R {
        try lock.withLock(body)
    }

    /// Under `lock`: a free submission entry, zeroed except for `user_data`.
    /// A full queue is submitted to make room (and completions drained into
    /// the backlog if the kernel refuses new work until they are): nothing
    /// is dropped.
    func entryLocked(userData: UInt64) -> UnsafeMutablePointer<io_uring_sqe> {
        while true {
            if let sqe = aio_uring_get_sqe(raw) {
                sqe.pointee.user_data = userData
                return sqe
            }
            submitLocked()
        }
    }

    /// Under `lock`: hands the queued entries to the kernel. EINTR is
    /// retried; EBUSY/EAGAIN (the kernel holds completions the queue has no
    /// room for, or is short of memory) drain the completion queue and
    /// retry; any other failure is a bug in this library (a malformed entry
    /// fails in its own completion, not here).
    func submitLocked() {
        var busyRounds = 0
        while aio_uring_sq_ready(raw) > 0 {
            let rc = aio_uring_submit(raw)
            if rc > 0 { continue }
            let err = rc == 0 ? EAGAIN : -rc
            if err == EINTR { continue }
            if err == EBUSY || err == EAGAIN {
                drainLocked()
                if backlogCount.load(ordering: .relaxed) > 0 { onBacklog?() }
                busyRounds += 1
                if busyRounds > 100 { sched_yield() }
                continue
            }
            fatalError("io_uring_submit: \(String(cString: strerror(err))) (errno \(err)) on ring fd \(fd): a bug in the Aio library")
        }
    }

    /// Under `lock`: whether entries wait to be handed to the kernel.
    var hasQueuedLocked: Bool { aio_uring_sq_ready(raw) > 0 }

    /// Under `lock`: moves every completion the kernel posted into the backlog.
    func drainLocked() {
        withUnsafeTemporaryAllocation(of: aio_uring_cqe.self, capacity: 64) { batch in
            while true {
                let n = aio_uring_take(raw, batch.baseAddress, 64)
                for i in 0..<Int(n) {
                    backlog.append((batch[i].user_data, batch[i].res, batch[i].flags))
                }
                backlogCount.store(backlog.count, ordering: .relaxed)
                if n < 64 { return }
            }
        }
    }

    /// Under `lock`: the completions drained so far (and any still in the
    /// kernel's queue), handed over in order.
    func takeCompletionsLocked(into out: inout [(userData: UInt64, result: Int32, flags: UInt32)]) {
        drainLocked()
        if backlog.isEmpty { return }
        out.append(contentsOf: backlog)
        backlog.removeAll(keepingCapacity: true)
        backlogCount.store(0, ordering: .relaxed)
    }

    // MARK: Callers' operations

    /// Operations whose completion came, with it, for the owner to run in
    /// order. Under `lock`.
    @exclusivity(unchecked) private var finished: [(op: RingOperation, completion: RingCompletion)] = []
    /// `finished.count`, readable without the lock. A stale 0 is harmless:
    /// whoever reaped a completion dispatches next (a native waiter takes
    /// ownership back and dispatches; GLib's check is followed by its
    /// dispatch, or by the owner's pass when that is skipped).
    let finishedCount = Atomic<Int>(0)

    /// Under `lock`: queues `op`'s entry (its `user_data` replaced by the
    /// operation's tag) for the loop to submit, and keeps `op` alive until
    /// its last completion.
    func queueLocked(_ op: RingOperation) {
        _ = Unmanaged.passRetained(op)  // released in completeOperationsLocked
        op.inFlight = true
        operationsInFlight.wrappingAdd(1, ordering: .relaxed)
        enqueueLocked(op)
    }

    /// Under `lock`: puts `op`'s entry in the submission queue, for the
    /// loop to submit.
    private func enqueueLocked(_ op: RingOperation) {
        let sqe = entryLocked(userData: op.userData)
        sqe.pointee = op.entry
        sqe.pointee.user_data = op.userData
        // Links would chain the caller's entry to the library's own (the
        // next entries queued); a drain would hold every later entry (the
        // handlers' polls among them) behind polls that may never complete;
        // skipping the success completion would leave the operation in
        // flight for ever. None is allowed.
        sqe.pointee.flags &= ~UInt8(truncatingIfNeeded: Self.forbiddenFlags)
        deferredSubmissions.store(true, ordering: .relaxed)
    }

    /// `IOSQE_IO_DRAIN`, `IOSQE_IO_LINK`, `IOSQE_IO_HARDLINK`, `IOSQE_CQE_SKIP_SUCCESS`.
    static let forbiddenFlags: UInt32 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6)

    /// Called (under `lock`) when completions were moved to the backlog
    /// outside a reap: a waiter that looked at the ring's fd before may
    /// sleep through them. The context notifies. Set once, before the ring
    /// is shared.
    var onBacklog: (@Sendable () -> Void)? = nil

    /// Entries queued by callers, handed to the kernel by the loop (the end
    /// of a dispatch pass, the next wait, GLib's prepare): io_uring cancels
    /// work a thread submitted when that thread exits, so callers' threads
    /// (a task's, which the runtime may retire) never submit. Set under
    /// `lock`, read relaxed: a stale false outside a pass is covered by the
    /// queuer's notify as `operationsInFlight` is; inside a pass the owner
    /// set it itself.
    let deferredSubmissions = Atomic<Bool>(false)

    /// Under `lock`: submits what was deferred.
    func submitDeferredLocked() {
        if deferredSubmissions.load(ordering: .relaxed) {
            deferredSubmissions.store(false, ordering: .relaxed)
            submitLocked()
        }
    }

    /// Under `lock`: asks the kernel to cancel `op` if it is still in
    /// flight (submitted by the loop, like the operation; an
    /// `ASYNC_CANCEL` runs inline, so it would not depend on the caller's
    /// thread anyway).
    func cancelLocked(_ op: RingOperation) {
        guard op.inFlight else { return }
        op.cancelRequested = true
        let sqe = entryLocked(userData: AIO_URING_INTERNAL_TAG)
        aio_uring_prep_cancel(sqe, op.userData)
        sqe.pointee.user_data = AIO_URING_INTERNAL_TAG
        deferredSubmissions.store(true, ordering: .relaxed)
    }

    /// Under `lock`: takes the callers' completions out of `list` (they go
    /// to `finished`) and the internal ones (poll removes, cancels); leaves
    /// the handler polls.
    func completeOperationsLocked(in list: inout [(userData: UInt64, result: Int32, flags: UInt32)]) {
        var kept = 0
        for i in list.indices {
            let c = list[i]
            if c.userData & AIO_URING_OPERATION_TAG != 0 {
                let raw = UnsafeMutableRawPointer(bitPattern: UInt(c.userData & ~AIO_URING_OPERATION_TAG))!
                let completion = RingCompletion(result: c.result, flags: c.flags)
                if c.flags & Self.moreFlag != 0 {
                    // Not the last completion of this operation (multishot,
                    // zero-copy send): it stays in flight, and retained.
                    finished.append((Unmanaged<RingOperation>.fromOpaque(raw).takeUnretainedValue(), completion))
                } else if c.result == -ECANCELED,
                          !Unmanaged<RingOperation>.fromOpaque(raw).takeUnretainedValue().cancelRequested {
                    // Cancelled without being asked: the kernel cancels a
                    // thread's queued work when the thread exits, and an
                    // entry may have been handed over by a caller's thread
                    // (a full queue, a removal flushing it). Nothing ran:
                    // queue it again, still retained, for the loop.
                    enqueueLocked(Unmanaged<RingOperation>.fromOpaque(raw).takeUnretainedValue())
                    resubmissions.wrappingAdd(1, ordering: .relaxed)
                } else {
                    let op = Unmanaged<RingOperation>.fromOpaque(raw).takeRetainedValue()
                    op.inFlight = false
                    finished.append((op, completion))
                    operationsInFlight.wrappingSubtract(1, ordering: .relaxed)
                }
            } else if c.userData & AIO_URING_INTERNAL_TAG == 0 {
                list[kept] = c
                kept += 1
            }
        }
        list.removeLast(list.count - kept)
        finishedCount.store(finished.count, ordering: .relaxed)
    }

    /// Operations queued again after a cancel nobody asked for (tests).
    let resubmissions = Atomic<Int>(0)

    /// `IORING_CQE_F_MORE`: more completions of the same entry follow.
    static let moreFlag: UInt32 = 1 << 1

    /// The owner's queue of finished operations whose callbacks have not
    /// run: refilled from `finished` in one swap under `lock`, then popped
    /// without it. Owner-only: a callback that polls (nested) pops the next
    /// ones from the same queue, so none waits behind a callback that waits.
    @exclusivity(unchecked) private var running: [(op: RingOperation, completion: RingCompletion)] = []
    @exclusivity(unchecked) private var runningHead = 0

    /// The next finished operation, for its callback, or nil. Owner-only.
    func nextFinished() -> (op: RingOperation, completion: RingCompletion)? {
        if runningHead == running.count {
            // Let go of the operations that ran (their callbacks may hold
            // the context: a cycle through the ring otherwise).
            if runningHead > 0 {
                running.removeAll(keepingCapacity: true)
                runningHead = 0
            }
            // A stale 0 is caught up by whoever reaped: it dispatches next
            // (a native waiter, or GLib's check and dispatch).
            if finishedCount.load(ordering: .relaxed) == 0 { return nil }
            withLock {
                swap(&running, &finished)
                finishedCount.store(0, ordering: .relaxed)
            }
            if running.isEmpty { return nil }
        }
        let next = running[runningHead]
        runningHead += 1
        return next
    }

    /// Callbacks not run yet (teardown's check). Owner-only.
    var pendingCallbacks: Int { running.count - runningHead + finishedCount.load(ordering: .relaxed) }

    /// Whether callbacks wait to run: finished operations, or what is left
    /// in the owner's queue (a callback polled, nested, before the rest ran).
    /// Owner-only.
    var hasFinished: Bool { runningHead < running.count || finishedCount.load(ordering: .relaxed) > 0 }

    /// Under `lock`: whether completions wait, in the kernel's queue or the backlog.
    var hasCompletionsLocked: Bool { !backlog.isEmpty || aio_uring_cq_ready(raw) > 0 }

    /// Completions in the backlog: taken off the kernel's queue (to make
    /// room) but not interpreted. The ring's fd no longer reports them, so a
    /// wait must not sleep while there are any. Written under `lock`, read
    /// relaxed: a drain outside a reap calls `onBacklog` (a notify), which
    /// orders a stale 0 as for `operationsInFlight`.
    let backlogCount = Atomic<Int>(0)
}
