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
                    if once.isResolved { return }  // cancelled before submission
                    let request = submit(body) { result in once.resolve(result) }
                    slot.store(request)
                }
                if context.isOwnedByCurrentThread {
                    submitOnContext()
                } else {
                    context.scheduleOneshot(name: "\(context.name)/pool-run", submitOnContext)
                }
            }
        } onCancel: {
            // Queued: the pool delivers CancellationError through the
            // completion. Not submitted yet: resolve here; the submission
            // then sees it and does nothing (or cancels what it submitted).
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

    /// Stores the submitted request; cancels it if the task was cancelled
    /// in the meantime.
    func store(_ request: ThreadPoolRequest) {
        let cancelNow = lock.withLock {
            self.request = request
            return cancelled
        }
        if cancelNow { request.cancel() }
    }

    /// Marks the slot cancelled and cancels the request if there is one.
    /// Returns whether there was one.
    func cancel() -> Bool {
        let request: ThreadPoolRequest? = lock.withLock {
            cancelled = true
            return self.request
        }
        request?.cancel()
        return request != nil
    }
}
