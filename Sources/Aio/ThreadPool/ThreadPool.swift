import Synchronization

/// A pool of worker threads whose completions come back to the context's
/// thread, one per context, created on first use (``AioContext/threadPool``).
///
/// - ``submit(_:completion:)`` runs `work` on a worker and `completion` on the
///   context's thread through a bottom half, never inside `submit`.
/// - Workers are spawned from the context's thread, each new one spawning the
///   next while there is a backlog; idle workers above the minimum exit after
///   ``idleTimeout``.
/// - A queued request can be cancelled (its completion gets
///   `CancellationError`); a running one always completes.
/// - ``shutdown()`` cancels what is queued, lets what runs finish, delivers
///   every completion and stops the workers. A context whose pool still has
///   requests in flight at teardown stops the program with a message: no
///   request is ever dropped silently.
///
/// QEMU: `ThreadPoolAio` (`util/thread-pool.c`).
public final class ThreadPool: @unchecked Sendable {
    // @unchecked Sendable: fields under `lock` are marked; the BHs are set
    // once in init.

    // SAFETY: the context owns its pool and outlives it.
    unowned(unsafe) let context: AioContext

    private let lock = PThreadMutex()
    private let workAvailable = PThreadCondition()
    private let workerExited = PThreadCondition()
    /// Under `lock`: requests not yet taken by a worker, oldest first.
    /// Taken slots are set to nil at once: a request holds its pool, so a
    /// taken request left here would keep the pool alive (a cycle).
    private var queue: [ThreadPoolRequest?] = []
    private var queueHead = 0
    /// Under `lock`.
    private var threadCount = 0
    private var idleCount = 0
    private var pendingSpawns = 0
    private var minThreads = 0
    private var maxThreads = 64
    private var idleTimeoutNs: Int64 = 10_000_000_000
    private var stopping = false

    /// Under `lock`: submitted requests whose completion has not run. Under
    /// the lock, not owner-only: the home thread may submit while another
    /// thread owns the context and runs the completion BH.
    private var outstanding: [ThreadPoolRequest] = []
    private var completionBH: BottomHalf!
    private var spawnBH: BottomHalf!
    /// Under `lock`. Set when shutdown() starts: later submissions are
    /// cancelled at once.
    private var isShuttingDown = false
    /// Under `lock`: the counters of ``statistics``.
    private var counts = Statistics()

    init(context: AioContext) {
        self.context = context
        completionBH = context.makeBottomHalf(name: "\(context.name)/thread-pool-completion") { [unowned(unsafe) self] _ in
            self.completionPass()
        }
        spawnBH = context.makeBottomHalf(name: "\(context.name)/thread-pool-spawn") { [unowned(unsafe) self] _ in
            self.spawnPass()
        }
    }

    // MARK: Parameters

    /// Sets how many workers the pool keeps (`minimum`, default 0) and may
    /// have (`maximum`, default 64). Takes effect at once: missing minimum
    /// workers are spawned, extra idle ones exit.
    ///
    /// Thread-safe. Traps unless 0 ≤ minimum ≤ maximum and maximum ≥ 1.
    /// QEMU: `aio_context_set_thread_pool_params()`.
    public func setThreadLimits(minimum: Int, maximum: Int) {
        precondition(minimum >= 0 && maximum >= 1 && minimum <= maximum,
                     "ThreadPool of AioContext '\(context.name)': invalid thread limits \(minimum)...\(maximum) (need 0 <= minimum <= maximum, maximum >= 1)")
        let spawn: Bool = lock.withLock {
            minThreads = minimum
            maxThreads = maximum
            workAvailable.broadcast()  // extra idle workers re-check and exit
            let missing = minimum - threadCount - pendingSpawns
            if missing > 0 { pendingSpawns += missing; return true }
            return false
        }
        if spawn { spawnBH.schedule() }
    }

    /// How long a worker above the minimum waits for work before it exits.
    /// Thread-safe. QEMU uses 10 s.
    public var idleTimeout: Duration {
        get { .nanoseconds(lock.withLock { idleTimeoutNs }) }
        set {
            lock.withLock {
                idleTimeoutNs = max(newValue.nanoseconds, 1)
                workAvailable.broadcast()
            }
        }
    }

    /// Current number of worker threads (running, idle, or starting). Thread-safe.
    public var workerCount: Int { lock.withLock { threadCount + pendingSpawns } }

    /// Requests submitted whose completion has not run yet. Thread-safe.
    public var outstandingCount: Int { lock.withLock { outstanding.count } }

    /// A snapshot of the pool's counters.
    public struct Statistics: Sendable, Equatable {
        /// Requests submitted.
        public var submitted = 0
        /// Requests waiting for a worker now.
        public var queued = 0
        /// Requests running on a worker now.
        public var running = 0
        /// Completions delivered: results, errors and cancellations.
        public var completed = 0
        /// Of the completions delivered, requests cancelled before they ran.
        public var cancelled = 0
        /// Worker threads (running, idle, or starting).
        public var workers = 0

        /// All zero.
        public init() {}
    }

    /// The pool's counters, read together under its lock. A request that
    /// has just finished may still count as running (its worker has not
    /// taken the lock again) while its completion is delivered. Thread-safe.
    public var statistics: Statistics {
        lock.withLock {
            var snapshot = counts
            snapshot.queued = queue.count - queueHead
            snapshot.workers = threadCount + pendingSpawns
            return snapshot
        }
    }

    // MARK: Submitting

    /// Runs `work` on a worker thread and then `completion`, with its result
    /// or thrown error, on the context's thread.
    ///
    /// Must be called on the context's thread (its home thread or the thread
    /// that owns it); traps otherwise. QEMU: `thread_pool_submit_aio()`.
    @discardableResult
    public func submit<T: Sendable>(
        _ work: @escaping @Sendable () throws -> T,
        completion: @escaping @Sendable (Result<T, any Error>) -> Void
    ) -> ThreadPoolRequest {
        context.checkOnContextThread("ThreadPool.submit")
        let request = TypedRequest(pool: self, work: work, completion: completion)
        let (spawn, shuttingDown): (Bool, Bool) = lock.withLock {
            outstanding.append(request)
            counts.submitted += 1
            if isShuttingDown {
                // During or after shutdown (e.g. from a completion that
                // shutdown delivers): cancelled, and delivered like any other.
                request.state.store(RequestState.cancelled.rawValue, ordering: .releasing)
                return (false, true)
            }
            queue.append(request)
            workAvailable.signal()
            if idleCount == 0 && threadCount + pendingSpawns < maxThreads {
                pendingSpawns += 1
                return (true, false)
            }
            return (false, false)
        }
        if shuttingDown { completionBH.schedule() }
        if spawn { spawnBH.schedule() }
        return request
    }

    /// Runs `work` on a worker with no completion callback.
    /// Same rules as ``submit(_:completion:)``. QEMU: `thread_pool_submit()`.
    @discardableResult
    public func submit(_ work: @escaping @Sendable () -> Void) -> ThreadPoolRequest {
        submit(work, completion: { (_: Result<Void, any Error>) in })
    }

    // MARK: Shutdown

    /// Cancels every queued request, waits for the running ones by polling
    /// the context, delivers every completion (results or
    /// `CancellationError`), and stops the workers. Work submitted from then
    /// on (even by a completion that shutdown delivers) is cancelled at once.
    /// Context thread only.
    public func shutdown() {
        context.checkOnContextThread("ThreadPool.shutdown")
        let cancelled: Bool? = lock.withLock {
            if isShuttingDown { return nil }
            isShuttingDown = true
            stopping = true
            var any = false
            while let request = popLocked() {
                request.state.store(RequestState.cancelled.rawValue, ordering: .releasing)
                any = true
            }
            workAvailable.broadcast()
            return any
        }
        guard let cancelled else { return }
        if cancelled { completionBH.schedule() }
        while lock.withLock({ !outstanding.isEmpty }) {
            context.poll(blocking: true)
        }
        lock.withLock {
            while threadCount + pendingSpawns > 0 {
                if pendingSpawns > 0 && threadCount == 0 { pendingSpawns = 0; break }
                workerExited.wait(lock)
            }
        }
    }

    /// Context teardown: trap if work is in flight, else stop idle workers
    /// and delete the pool's BHs.
    func tearDown() {
        let inFlight = lock.withLock { outstanding.count }
        if inFlight > 0 {
            fatalError("AioContext '\(context.name)' torn down with \(inFlight) thread-pool request(s) in flight; call threadPool.shutdown() first, which completes or cancels each one")
        }
        lock.withLock {
            stopping = true
            pendingSpawns = 0
            workAvailable.broadcast()
            while threadCount > 0 { workerExited.wait(lock) }
        }
        completionBH.delete()
        spawnBH.delete()
    }

    // MARK: Internals

    /// Under `lock`.
    private func popLocked() -> ThreadPoolRequest? {
        guard queueHead < queue.count else { return nil }
        let request = queue[queueHead]
        queue[queueHead] = nil
        queueHead += 1
        if queueHead > 64 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        return request!
    }

    /// Cancels `request` if no worker has taken it. Any thread.
    func cancel(_ request: ThreadPoolRequest) {
        let cancelled: Bool = lock.withLock {
            guard request.state.load(ordering: .relaxed) == RequestState.queued.rawValue,
                  let index = queue[queueHead...].firstIndex(where: { $0 === request }) else { return false }
            queue.remove(at: index)
            request.state.store(RequestState.cancelled.rawValue, ordering: .releasing)
            return true
        }
        if cancelled { completionBH.schedule() }
    }

    /// Spawn BH, on the context's thread: start one worker.
    private func spawnPass() {
        let go: Bool = lock.withLock {
            guard pendingSpawns > 0, !stopping else { return false }
            pendingSpawns -= 1
            threadCount += 1
            return true
        }
        guard go else { return }
        do {
            try NativeThread.detached(name: "\(context.name)-worker") { [self] in workerLoop() }
        } catch {
            let none: Bool = lock.withLock { threadCount -= 1; return threadCount == 0 }
            context.warn("ThreadPool of AioContext '\(context.name)': cannot start a worker: \(error)")
            if none {
                // Nobody can run the queue: fail it rather than lose it.
                lock.withLock {
                    while let request = popLocked() {
                        request.failure = error
                        request.state.store(RequestState.done.rawValue, ordering: .releasing)
                    }
                }
                completionBH.schedule()
            }
        }
        if lock.withLock({ pendingSpawns > 0 }) {
            spawnBH.schedule()
        }
    }

    private func workerLoop() {
        lock.lock()
        while true {
            if let request = popLocked() {
                request.state.store(RequestState.active.rawValue, ordering: .relaxed)
                counts.running += 1
                // Chain spawning: a busy pool grows one worker at a time, each
                // started from the context's thread.
                if queueHead < queue.count && idleCount == 0 && threadCount + pendingSpawns < maxThreads && !stopping {
                    pendingSpawns += 1
                    spawnBH.schedule()
                }
                lock.unlock()
                request.execute()
                // [pool-done] releasing: the result written by execute() is
                // visible to the completion BH's acquiring load of the state.
                // Without it the completion could read a result not yet
                // written. QEMU: smp_wmb() before `req->state = THREAD_DONE`.
                request.state.store(RequestState.done.rawValue, ordering: .releasing)
                completionBH.schedule()
                lock.lock()
                counts.running -= 1
                continue
            }
            if stopping || threadCount > maxThreads { break }
            idleCount += 1
            let signalled = workAvailable.wait(lock, untilNs: monotonicNowNs() + idleTimeoutNs)
            idleCount -= 1
            if !signalled && queueHead == queue.count && threadCount > minThreads { break }
        }
        threadCount -= 1
        workerExited.broadcast()
        lock.unlock()
    }

    /// Completion BH, on the context's thread: deliver every finished request.
    /// It re-schedules itself before each callback, so a callback that runs a
    /// nested poll still lets the others complete, and restarts its scan after
    /// each one. QEMU: `thread_pool_completion_bh()`.
    private func completionPass() {
        while let (request, state) = takeFinished() {
            completionBH.schedule()
            request.deliver(cancelled: state == RequestState.cancelled.rawValue)
            completionBH.cancel()
        }
    }

    /// Removes and returns the oldest finished request, if any.
    private func takeFinished() -> (ThreadPoolRequest, UInt8)? {
        lock.withLock {
            for i in outstanding.indices {
                // [pool-done] acquiring: pairs with the releasing store of the
                // state; the result is read only after the state says done.
                let state = outstanding[i].state.load(ordering: .acquiring)
                if state == RequestState.done.rawValue || state == RequestState.cancelled.rawValue {
                    counts.completed += 1
                    if state == RequestState.cancelled.rawValue { counts.cancelled += 1 }
                    return (outstanding.remove(at: i), state)
                }
            }
            return nil
        }
    }
}

/// Where a request is. QEMU: `THREAD_QUEUED`, `THREAD_ACTIVE`, `THREAD_DONE`.
public enum RequestState: UInt8, Sendable {
    /// Waiting for a worker; ``ThreadPoolRequest/cancel()`` still cancels it.
    case queued
    /// Running on a worker; it will complete.
    case active
    /// Finished; its completion runs (or ran) on the context's thread.
    case done
    /// Cancelled before a worker took it; its completion gets `CancellationError`.
    case cancelled
}

/// A submitted piece of work; cancel it while it is still queued.
public class ThreadPoolRequest: @unchecked Sendable {
    // @unchecked Sendable: `state` is atomic; the result is written by the
    // worker before `state` becomes done (release) and read by the context
    // thread after it sees done (acquire).

    /// Held strongly, so that `cancel()` is safe after the context and its
    /// pool are gone (it then finds the request finished and does nothing).
    let pool: ThreadPool
    let state = Atomic<UInt8>(RequestState.queued.rawValue)
    /// Set instead of running when no worker could be started.
    var failure: (any Error)?

    init(pool: ThreadPool) { self.pool = pool }

    /// The request's state right now. Thread-safe, racy by nature.
    public var currentState: RequestState {
        RequestState(rawValue: state.load(ordering: .acquiring))!
    }

    /// Cancels the request if no worker has started it; its completion then
    /// gets `CancellationError`. Does nothing once it runs or has run.
    /// Thread-safe. QEMU: `thread_pool_cancel()` (async since 2023).
    public func cancel() {
        guard state.load(ordering: .relaxed) == RequestState.queued.rawValue else { return }
        pool.cancel(self)
    }

    func execute() {}
    func deliver(cancelled: Bool) {}
}

final class TypedRequest<T: Sendable>: ThreadPoolRequest, @unchecked Sendable {
    /// Dropped once run, so what it captured goes away with it. Worker only.
    private var work: (@Sendable () throws -> T)?
    /// Dropped once called: a caller that keeps the request (for cancel)
    /// while the completion captures the caller makes no cycle. Context
    /// thread only.
    private var completion: (@Sendable (Result<T, any Error>) -> Void)?
    /// Written by the worker before `state` becomes done [pool-done].
    private var result: Result<T, any Error>?

    init(pool: ThreadPool, work: @escaping @Sendable () throws -> T,
         completion: @escaping @Sendable (Result<T, any Error>) -> Void) {
        self.work = work
        self.completion = completion
        super.init(pool: pool)
    }

    override func execute() {
        guard let work else { return }
        result = Result { try work() }
        self.work = nil
    }

    override func deliver(cancelled: Bool) {
        guard let completion else { return }
        self.completion = nil
        work = nil
        if cancelled {
            completion(.failure(CancellationError()))
        } else if let failure {
            completion(.failure(failure))
        } else {
            completion(result!)
        }
        result = nil
    }
}

extension AioContext {
    /// The context's thread pool, created on first use. Thread-safe.
    /// QEMU: `aio_get_thread_pool()`.
    public var threadPool: ThreadPool {
        poolStorage.withLock { pool in
            if let pool { return pool }
            let created = ThreadPool(context: self)
            pool = created
            return created
        }
    }

    /// Traps unless the calling thread is the context's home thread or owns it.
    func checkOnContextThread(_ operation: String) {
        if isHomeThread || isOwnedByCurrentThread { return }
        fatalError("\(operation) on AioContext '\(name)' from a thread that is neither its home thread nor its owner; it must run on the context's thread")
    }
}
