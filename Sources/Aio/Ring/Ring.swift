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
/// lock (`URingMonitor.reap`), so a full submission queue can always make
/// room without taking any other lock.
final class Ring: @unchecked Sendable {
    // @unchecked Sendable: `raw` and `backlog` are touched only
    // under `lock`; `fd` and `entries` are immutable.

    let raw: UnsafeMutableRawPointer
    /// The ring's descriptor: readable while completions wait in its queue.
    let fd: Int32
    let lock = PThreadMutex()
    /// Completions taken off the kernel's queue, not yet interpreted.
    private var backlog: [(userData: UInt64, result: Int32, flags: UInt32)] = []
    /// Operations submitted by callers and not completed (any thread reads it
    /// to decide whether a wait must watch the ring).
    let operationsInFlight = Atomic<Int>(0)

    static let submissionEntries: UInt32 = 256
    static let completionEntries: UInt32 = 8192

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
        // The kernel cancels what is still armed (handler polls); callers'
        // operations are never in flight here: each holds its context.
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

    /// Operations whose completion came, for the owner to run. Under `lock`.
    private var finished: [RingOperation] = []
    /// `finished.count`, readable without the lock (a stale 0 is caught by
    /// the notify that follows every completion reaped off the loop).
    let finishedCount = Atomic<Int>(0)

    /// Under `lock`: queues `op` with `entry` (its `user_data` replaced by
    /// the operation's tag) and keeps `op` alive until its completion.
    /// `submitNow` false leaves it for the next wait or dispatch end.
    func queueLocked(_ op: RingOperation, entry: io_uring_sqe, submitNow: Bool) {
        let sqe = entryLocked(userData: op.userData)
        sqe.pointee = entry
        sqe.pointee.user_data = op.userData
        _ = Unmanaged.passRetained(op)  // released in completeOperationsLocked
        op.inFlight = true
        operationsInFlight.wrappingAdd(1, ordering: .relaxed)
        if submitNow { submitLocked() } else { deferredSubmissions.store(true, ordering: .relaxed) }
    }

    /// Entries queued by the owner thread during a dispatch, submitted at
    /// the end of the pass or by the next wait.
    let deferredSubmissions = Atomic<Bool>(false)

    /// Under `lock`: submits what was deferred.
    func submitDeferredLocked() {
        if deferredSubmissions.load(ordering: .relaxed) {
            deferredSubmissions.store(false, ordering: .relaxed)
            submitLocked()
        }
    }

    /// Under `lock`: asks the kernel to cancel `op` if it is still in flight.
    func cancelLocked(_ op: RingOperation) {
        guard op.inFlight else { return }
        let sqe = entryLocked(userData: AIO_URING_INTERNAL_TAG)
        aio_uring_prep_cancel(sqe, op.userData)
        sqe.pointee.user_data = AIO_URING_INTERNAL_TAG
        submitLocked()
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
                let op = Unmanaged<RingOperation>.fromOpaque(raw).takeRetainedValue()
                op.inFlight = false
                op.completion = RingCompletion(result: c.result, flags: c.flags)
                finished.append(op)
                operationsInFlight.wrappingSubtract(1, ordering: .relaxed)
            } else if c.userData & AIO_URING_INTERNAL_TAG == 0 {
                list[kept] = c
                kept += 1
            }
        }
        list.removeLast(list.count - kept)
        finishedCount.store(finished.count, ordering: .relaxed)
    }

    /// The finished operations, handed over for their callbacks. Takes `lock`.
    func takeFinished() -> [RingOperation] {
        withLock {
            defer {
                finished.removeAll(keepingCapacity: true)
                finishedCount.store(0, ordering: .relaxed)
            }
            return finished
        }
    }

    /// Completions in the backlog: taken off the kernel's queue (to make
    /// room) but not interpreted. The ring's fd no longer reports them, so a
    /// wait must not sleep while there are any. Written under `lock`.
    let backlogCount = Atomic<Int>(0)
}
