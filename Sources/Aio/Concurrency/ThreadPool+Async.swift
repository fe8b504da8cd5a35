extension ThreadPool {
    /// Runs `body` on a worker thread and returns its result (or throws its
    /// error). QEMU: `thread_pool_submit_co()`.
    ///
    /// May be called from any task: the request is submitted on the
    /// context's thread (directly when the caller is already there, through a
    /// one-shot BH otherwise), and the result comes back through the pool's
    /// completion on the context's thread.
    ///
    /// Cancelling the task cancels the request if no worker has started it,
    /// and the call throws `CancellationError`. Work already running cannot
    /// be interrupted; its result is returned.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let once = ResumeOnce<T>()
        let slot = RequestSlot()
        let context = self.context
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                once.install(continuation)
                let submitOnContext: @Sendable () -> Void = { [self] in
                    // Decided under the slot's lock: either the cancellation
                    // comes first and nothing is submitted, or the request
                    // exists and its state decides the outcome.
                    slot.submitUnlessCancelled {
                        submit(body) { result in once.resolve(result) }
                    }
                }
                if context.isOwnedByCurrentThread {
                    submitOnContext()
                } else {
                    context.scheduleOneshot(name: "\(context.name)/pool-run", submitOnContext)
                }
            }
        } onCancel: {
            // Submitted: the request's state decides (queued: the pool
            // delivers CancellationError; running or done: the result).
            // Not submitted: it never will be; resolve here.
            if !slot.cancel() { once.cancel() }
        }
    }
}

/// Where `run` keeps its request for the cancellation handler.
final class RequestSlot: @unchecked Sendable {
    // @unchecked Sendable: both fields are touched only under `lock`.
    private var request: ThreadPoolRequest?
    private var cancelled = false
    private let lock = PThreadMutex()

    /// Submits (through `make`) unless the task was cancelled first, under
    /// the lock `cancel` takes, so the two cannot interleave.
    func submitUnlessCancelled(_ make: () -> ThreadPoolRequest) {
        lock.withLock {
            if cancelled { return }
            request = make()
        }
    }

    /// Marks the slot cancelled and cancels the request if there is one.
    /// Returns whether there was one (if not, none will be submitted).
    func cancel() -> Bool {
        let request: ThreadPoolRequest? = lock.withLock {
            cancelled = true
            return self.request
        }
        request?.cancel()
        return request != nil
    }
}
