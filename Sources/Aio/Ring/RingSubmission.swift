import CAioURing
import Glibc
import Synchronization

/// What the kernel answered for one submitted entry: `res` and `flags` of
/// its completion (`struct io_uring_cqe`).
public struct RingCompletion: Sendable, Equatable {
    /// The operation's result: a count or value on success, `-errno` on failure.
    public var result: Int32
    /// The completion's flags (`IORING_CQE_F_*`).
    public var flags: UInt32

    /// A completion with the given result and flags (for tests and adapters).
    public init(result: Int32, flags: UInt32) {
        self.result = result
        self.flags = flags
    }
}

/// One of the caller's operations in the ring. Its address (tagged) is the
/// entry's `user_data`; the ring holds it (+1) from submission to completion.
class RingOperation: @unchecked Sendable {
    // @unchecked Sendable: `inFlight` and `cancelRequested` are touched
    // under the ring's lock; `callback` and `entry` are immutable.
    let callback: (@Sendable (RingCompletion) -> Void)?
    /// The entry as submitted, to submit again if the kernel cancels it
    /// without being asked (see `Ring.completeOperationsLocked`).
    let entry: io_uring_sqe
    @exclusivity(unchecked) var inFlight = false
    @exclusivity(unchecked) var cancelRequested = false

    init(_ callback: (@Sendable (RingCompletion) -> Void)?, entry: io_uring_sqe) {
        self.callback = callback
        self.entry = entry
    }

    /// Runs the completion on the loop. The file I/O operations override it
    /// (one object per read instead of an object and a wrapping closure).
    func complete(_ completion: RingCompletion) {
        callback?(completion)
    }

    var userData: UInt64 {
        AIO_URING_OPERATION_TAG | UInt64(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque()))
    }
}

/// A submitted operation, to cancel it. Holding it keeps the operation's
/// identity unique, so a late ``cancel()`` can never reach another one.
public final class RingRequest: Sendable {
    let op: RingOperation
    /// Weak: a request kept after its context went must not keep the ring
    /// (and the handler polls armed in it, which hold their files) alive.
    private let context: WeakContext

    init(op: RingOperation, context: AioContext) {
        self.op = op
        self.context = WeakContext(context)
    }

    /// Asks the kernel to cancel the operation (`IORING_OP_ASYNC_CANCEL`).
    /// Its completion still comes, once: with `-ECANCELED` if the cancel won,
    /// with its own result if it had finished or could not be stopped.
    /// Thread-safe; does nothing once the completion is in.
    public func cancel() {
        guard let ctx = context.value, let ring = ctx.handlers.ring else { return }
        ring.withLock { ring.cancelLocked(op) }
        ctx.notify()
    }
}

/// A weak reference that is Sendable (the context is).
final class WeakContext: @unchecked Sendable {
    // @unchecked Sendable: a weak reference is read atomically by the runtime.
    weak var value: AioContext?
    init(_ value: AioContext) { self.value = value }
}

extension AioContext {
    /// Whether the context has an io_uring ring: its fd monitor is
    /// ``FDMonitorKind/ioUring``. Submissions need one; the file I/O calls
    /// use the thread pool without one.
    public var hasRing: Bool { handlers.ring != nil }

    /// Submits one io_uring operation and runs `completion` with its result
    /// on the context's thread, at a safe point of the loop (like a BH), in
    /// a native poll or a GLib dispatch. QEMU: `aio_add_sqe()`.
    ///
    /// `prepare` fills the entry (start from the zeroed one it gets, e.g.
    /// `aio_uring_prep_read(&sqe, ...)`); the library sets `user_data`. Every
    /// buffer and structure the entry points to must stay valid until the
    /// completion has run: that part is the caller's to keep, which is why
    /// the file I/O calls (``read(from:into:at:)`` and the others) are the
    /// safe way to do I/O.
    ///
    /// Any thread. The loop hands the entry to the kernel: at the end of the
    /// current dispatch pass from its own thread (batched with others), at
    /// its next iteration otherwise (it is woken). io_uring cancels work a
    /// thread submitted when that thread exits, which the threads of Swift's
    /// executors may do at any time, so they never submit. A full submission
    /// queue is submitted and retried: nothing is dropped.
    ///
    /// The entry's `IOSQE_IO_LINK`, `IOSQE_IO_HARDLINK` and
    /// `IOSQE_CQE_SKIP_SUCCESS` flags are cleared. An operation that posts
    /// several completions (multishot, zero-copy send) gets `completion`
    /// once per completion; the last has `IORING_CQE_F_MORE` clear.
    ///
    /// Throws ``AioError/noRing(context:)`` if the context has no ring.
    @discardableResult
    public func submit(
        _ prepare: (inout io_uring_sqe) -> Void,
        completion: @escaping @Sendable (RingCompletion) -> Void
    ) throws(AioError) -> RingRequest {
        var entry = io_uring_sqe()
        prepare(&entry)
        return RingRequest(op: try queue(entry, completion), context: self)
    }

    /// Queues `entry` for the loop to submit; returns its operation.
    @inline(__always)
    func queue(_ entry: io_uring_sqe, _ completion: @escaping @Sendable (RingCompletion) -> Void) throws(AioError) -> RingOperation {
        try queue(RingOperation(completion, entry: entry))
    }

    /// Queues `op` (its entry) for the loop to submit.
    @inline(__always)
    func queue(_ op: RingOperation) throws(AioError) -> RingOperation {
        guard let ring = handlers.ring else { throw .noRing(context: name) }
        ring.withLock { ring.queueLocked(op) }
        // The entry is submitted by the end of the dispatch pass that queued
        // it (`afterDispatch`), or by the next wait or GLib prepare. Outside
        // a dispatch, make sure there is one: a waiter asleep now does not
        // even watch the ring if nothing was in flight.
        // Ownership first: `dispatchDepth` is the owner's to read. Inside a
        // dispatch, GLib may be asleep without the ring's fd in its poll
        // (the monitor's first use): notify, so its next prepare adds it.
        if !(ownership.isHeldByCurrentThread && dispatchDepth > 0)
            || handlers.glibAwaitingFirstUse.load(ordering: .relaxed) {
            notify()
        }
        return op
    }

    /// Submits one io_uring operation and returns its completion. Same rules
    /// as ``submit(_:completion:)``.
    ///
    /// Cancelling the task cancels the operation (`IORING_OP_ASYNC_CANCEL`)
    /// and still waits for its completion, so nothing it points to is used
    /// after the call returns: then `CancellationError` is thrown if the
    /// cancel won (`-ECANCELED`), and the completion is returned otherwise.
    public func submit(_ prepare: (inout io_uring_sqe) -> Void) async throws -> RingCompletion {
        guard handlers.ring != nil else { throw AioError.noRing(context: name) }
        var entry = io_uring_sqe()
        prepare(&entry)
        let request = try await submitEntry(entry)
        return request
    }

    /// The async submission of a prepared entry, with cancellation.
    func submitEntry(_ entry: io_uring_sqe) async throws -> RingCompletion {
        try Task.checkCancellation()
        let once = ResumeOnce<RingCompletion>()
        let slot = Locked<(request: RingRequest?, cancelled: Bool)>((nil, false))
        let completion: RingCompletion = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                once.install(continuation)
                slot.withLock { state in
                    // Decided under the slot's lock: a cancel before this
                    // point finds no request and then nothing is submitted.
                    if state.cancelled {
                        once.resolve(.failure(CancellationError()))
                        return
                    }
                    do {
                        state.request = try submit({ $0 = entry }) { completion in
                            once.resolve(.success(completion))
                        }
                    } catch {
                        once.resolve(.failure(error))
                    }
                }
            }
        } onCancel: {
            let request: RingRequest? = slot.withLock { state in
                state.cancelled = true
                return state.request
            }
            request?.cancel()
        }
        if completion.result == -ECANCELED && Task.isCancelled { throw CancellationError() }
        return completion
    }

    /// Runs the callbacks of the callers' operations that completed. Owner-only.
    func runRingCompletions(_ ring: Ring) -> Bool {
        var progress = false
        while let (op, completion) = ring.nextFinished() {
            op.complete(completion)
            progress = true
        }
        return progress
    }
}
