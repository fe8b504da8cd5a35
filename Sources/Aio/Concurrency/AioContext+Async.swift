/// Async waits on a context: timers and descriptor readiness.
///
/// Each wait resumes its caller exactly once: with the event, or with
/// `CancellationError` as soon as its task is cancelled (the timer is
/// disarmed, the descriptor's handler dropped). The caller continues on its
/// own executor; these functions may be called from any task.
extension AioContext {
    /// Suspends for `duration` on `clock`, measured by the context's timers.
    /// Throws `CancellationError` when the task is cancelled first.
    /// QEMU: `qemu_co_sleep_ns()`.
    public func sleep(for duration: Duration, clock: AioClock = .realtime) async throws {
        try await sleep(until: now(clock) + duration, clock: clock)
    }

    /// Suspends until `deadline` on `clock` (a deadline in the past fires on
    /// the next pass). Throws `CancellationError` when the task is cancelled
    /// first.
    public func sleep(until deadline: AioInstant, clock: AioClock = .realtime) async throws {
        let once = ResumeOnce<Void>()
        let timer = makeTimer(name: "sleep", clock: clock) { _ in
            once.resolve(.success(()))
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                once.install(continuation)
                timer.schedule(at: deadline)
                // Cancelled between the install and the arming: the handler's
                // cancel found nothing armed, so disarm here.
                if once.isResolved { timer.cancel() }
            }
        } onCancel: {
            if once.cancel() { timer.cancel() }
        }
    }

    /// Suspends until `fd` is readable (or hung up, or in error).
    ///
    /// Several tasks may wait on one descriptor, for reading and writing at
    /// once; they share one fd handler that exists only while someone waits.
    /// The descriptor must not also have a handler from
    /// ``setHandler(for:name:read:write:poll:pollReady:pollBegin:pollEnd:)``.
    ///
    /// Throws ``AioError/badDescriptor(fd:reason:)`` for a negative or closed
    /// descriptor, ``AioError/descriptorInUse(fd:handler:)`` if it has a
    /// handler, and `CancellationError` when the task is cancelled first.
    public func readable(_ fd: Int32) async throws {
        try await waitForDescriptor(fd, direction: .read)
    }

    /// Suspends until `fd` is writable (or in error). Same rules as
    /// ``readable(_:)``.
    public func writable(_ fd: Int32) async throws {
        try await waitForDescriptor(fd, direction: .write)
    }

    private func waitForDescriptor(_ fd: Int32, direction: FDWaiters.Direction) async throws {
        let once = ResumeOnce<Void>()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                once.install(continuation)
                do {
                    try addFDWaiter(once, fd: fd, direction: direction)
                } catch {
                    once.resolve(.failure(error))
                }
            }
        } onCancel: {
            if once.cancel() { removeFDWaiter(once, fd: fd) }
        }
    }

    /// Adds a waiter and updates the fd's handler. A waiter already resolved
    /// (cancelled before it got here) is not added: checking under the lock
    /// orders this against the cancel handler's removal, which takes the
    /// same lock after resolving.
    private func addFDWaiter(_ once: ResumeOnce<Void>, fd: Int32,
                             direction: FDWaiters.Direction) throws(AioError) {
        let failure = fdWaiters.withLock { map -> AioError? in
            if once.isResolved { return nil }
            var entry = map[fd] ?? FDWaiters()
            if map[fd] == nil, let other = handlerName(for: fd) {
                return .descriptorInUse(fd: fd, handler: other)
            }
            entry.append(once, direction)
            do throws(AioError) {
                try registerFDWaiters(fd, entry)
            } catch {
                return error
            }
            map[fd] = entry
            return nil
        }
        if let failure { throw failure }
    }

    private func removeFDWaiter(_ once: ResumeOnce<Void>, fd: Int32) {
        let failed: [ResumeOnce<Void>] = fdWaiters.withLock { map in
            guard var entry = map[fd] else { return [] }
            entry.remove(once)
            return updateRegistration(&map, fd: fd, entry: entry)
        }
        for waiter in failed { waiter.resolve(.failure(AioError.badDescriptor(fd: fd, reason: "closed while waited on"))) }
    }

    /// The fd's handler fired in `direction`: resolve those waiters.
    private func fdReady(_ fd: Int32, _ direction: FDWaiters.Direction) {
        var woken: [ResumeOnce<Void>] = []
        let failed: [ResumeOnce<Void>] = fdWaiters.withLock { map in
            guard var entry = map[fd] else { return [] }
            woken = entry.take(direction)
            return updateRegistration(&map, fd: fd, entry: entry)
        }
        for waiter in woken { waiter.resolve(.success(())) }
        for waiter in failed { waiter.resolve(.failure(AioError.badDescriptor(fd: fd, reason: "closed while waited on"))) }
    }

    /// Re-registers (or removes) the handler after a change; returns the
    /// waiters that can no longer wait because the descriptor was closed.
    /// Under `fdWaiters`' lock.
    private func updateRegistration(_ map: inout [Int32: FDWaiters], fd: Int32,
                                    entry: FDWaiters) -> [ResumeOnce<Void>] {
        if entry.isEmpty {
            map[fd] = nil
            removeHandler(for: fd, waitingForCallbacks: false)
            return []
        }
        do {
            try registerFDWaiters(fd, entry)
            map[fd] = entry
            return []
        } catch {
            map[fd] = nil
            removeHandler(for: fd, waitingForCallbacks: false)
            return entry.readers + entry.writers
        }
    }

    /// One handler per descriptor, with a read and/or write callback as the
    /// waiters need. The callbacks hold the context unowned: the handler table
    /// belongs to the context.
    private func registerFDWaiters(_ fd: Int32, _ entry: FDWaiters) throws(AioError) {
        var read: (@Sendable () -> Void)? = nil
        if !entry.readers.isEmpty {
            read = { [unowned(unsafe) self] in self.fdReady(fd, .read) }
        }
        var write: (@Sendable () -> Void)? = nil
        if !entry.writers.isEmpty {
            write = { [unowned(unsafe) self] in self.fdReady(fd, .write) }
        }
        // Called under `fdWaiters`' lock, which the callbacks take: a wait
        // for a running callback would deadlock, and is not needed (the
        // callback re-checks the map under that lock).
        try setHandler(for: fd, name: "async wait on fd \(fd)", read: read, write: write,
                       poll: nil, pollReady: nil, pollBegin: nil, pollEnd: nil, waitingForCallbacks: false)
    }

    /// The name of a handler registered on `fd`, if any.
    private func handlerName(for fd: Int32) -> String? {
        handlers.withLock { handlers.byFD[fd]?.name }
    }
}

/// The tasks waiting on one descriptor.
struct FDWaiters {
    enum Direction { case read, write }

    var readers: [ResumeOnce<Void>] = []
    var writers: [ResumeOnce<Void>] = []

    var isEmpty: Bool { readers.isEmpty && writers.isEmpty }

    mutating func append(_ waiter: ResumeOnce<Void>, _ direction: Direction) {
        switch direction {
        case .read: readers.append(waiter)
        case .write: writers.append(waiter)
        }
    }

    mutating func remove(_ waiter: ResumeOnce<Void>) {
        readers.removeAll { $0 === waiter }
        writers.removeAll { $0 === waiter }
    }

    mutating func take(_ direction: Direction) -> [ResumeOnce<Void>] {
        switch direction {
        case .read:
            defer { readers = [] }
            return readers
        case .write:
            defer { writers = [] }
            return writers
        }
    }
}
