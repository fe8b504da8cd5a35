/// A mutual-exclusion lock for Swift tasks: a task that finds it held
/// suspends (it does not block its thread), and may itself suspend while
/// holding it.
///
/// ```swift
/// let mutex = AsyncMutex(name: "journal")
/// try await mutex.withLock {
///     let entry = try await disk.read(at: head)   // suspends holding the lock
///     head += entry.count
/// }
/// ```
///
/// - **Fair, FIFO.** Waiters acquire in the order they were queued.
///   ``unlock()`` hands ownership straight to the oldest waiter: the mutex
///   never becomes free while someone waits, so neither a ``tryLock()`` nor a
///   new ``lock(isolation:)`` (not even the unlocker's own, at once) can take it ahead
///   of a queued waiter. The price is the one QEMU's `CoMutex` pays: under
///   contention every release wakes the next waiter's executor.
/// - **Any executor.** Tasks on different contexts' actors and on the global
///   executor may share one mutex; a waiter resumes on its own executor.
/// - **Cancellation** only ever ends a wait. A task cancelled while queued
///   leaves the queue and its ``lock(isolation:)`` throws `CancellationError`. A task
///   that finds the mutex free takes it, cancelled or not. When a hand-off
///   races with the cancellation, the first to reach the mutex's state
///   decides: either the waiter had already left the queue (the hand-off
///   goes to the next waiter, or frees the mutex), or it has been given
///   ownership (its ``lock(isolation:)`` returns normally and it must unlock). Ownership
///   is never lost in between.
/// - **The holder unlocks.** The holder is the task that locked (or the
///   thread, for a ``tryLock()`` outside any task). ``unlock()`` from anyone
///   else, or of a mutex that is not locked, traps with a message.
/// - Not recursive: a task that locks a mutex it holds traps (it would wait
///   for itself forever).
///
/// Thread-safe: every method may be called from any thread or task.
/// QEMU: `CoMutex` (`util/qemu-coroutine-lock.c`).
public final class AsyncMutex: Sendable, CustomStringConvertible {
    /// The name given at creation; it appears in traps.
    public let name: String

    /// Lock order: `state`'s lock is a leaf. Nothing is called while it is
    /// held: continuations are resumed, and traps raised, after it is let go.
    private let state = Locked(State())

    /// Creates an unlocked mutex.
    public init(name: String = "mutex") {
        self.name = name
    }

    /// A one-line description for logs and debugging.
    public var description: String { "AsyncMutex('\(name)')" }

    /// Who holds the mutex: a task, or (for a ``tryLock()`` made outside any
    /// task) a thread.
    enum Holder: Equatable {
        /// The task's identity: the hash of its `UnsafeCurrentTask`, which
        /// hashes the task object's address. Only compared, never used to
        /// reach the task. Two live tasks could collide only with
        /// probability 2^-64, and that would only let a misuse pass unseen.
        case task(Int)
        /// `currentThreadID()`: never reused by another thread.
        case thread(UInt)

        static var current: Holder {
            if let task = withUnsafeCurrentTask(body: { $0?.hashValue }) {
                return .task(task)
            }
            return .thread(currentThreadID())
        }
    }

    struct Waiter {
        let id: UInt64
        let holder: Holder
        /// Resumed with true when ownership is handed over, false when the
        /// wait is cancelled.
        let continuation: CheckedContinuation<Bool, Never>
    }

    /// Protected by `state`'s lock.
    /// Invariant: `waiters` is non-empty only while `holder` is non-nil
    /// (an unlock with waiters hands off instead of freeing).
    struct State {
        var holder: Holder?
        /// FIFO: live entries are `waiters[head...]`.
        var waiters: [Waiter] = []
        var head = 0
        var nextWaiterID: UInt64 = 0

        var waiterCount: Int { waiters.count - head }

        mutating func popOldest() -> Waiter? {
            guard head < waiters.count else { return nil }
            let waiter = waiters[head]
            head += 1
            if head == waiters.count {
                waiters.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 64 && head * 2 >= waiters.count {
                waiters.removeFirst(head)
                head = 0
            }
            return waiter
        }

        /// Removes a cancelled waiter; nil if it is no longer queued (it was
        /// handed the mutex, or never queued).
        mutating func remove(_ id: UInt64) -> Waiter? {
            guard let index = waiters[head...].firstIndex(where: { $0.id == id }) else { return nil }
            return waiters.remove(at: index)
        }
    }

    /// Takes the mutex without waiting; returns whether it did. Fails while
    /// the mutex is held, including while waiters are queued (they come
    /// first). Thread-safe. QEMU: no `CoMutex` counterpart (`qemu_mutex_trylock()`).
    public func tryLock() -> Bool {
        let me = Holder.current
        return state.withLock { state in
            if state.holder != nil { return false }
            state.holder = me
            return true
        }
    }

    /// Takes the mutex, suspending the task until its turn comes (FIFO).
    ///
    /// Throws `CancellationError` if the task is cancelled while it waits;
    /// it then does not hold the mutex. A task that finds the mutex free
    /// takes it even if it is cancelled, and a waiter that was handed the
    /// mutex before its cancellation arrived returns normally. Either way,
    /// a normal return means the task holds the mutex and must ``unlock()``.
    ///
    /// `isolation` is the caller's (leave the default): the call runs on
    /// the caller's executor and, after a wait, resumes there.
    /// QEMU: `qemu_co_mutex_lock()`.
    public func lock(isolation: isolated (any Actor)? = #isolation) async throws(CancellationError) {
        let me = Holder.current
        let id: UInt64? = state.withLock { state in
            if state.holder == nil {
                state.holder = me
                return nil
            }
            if state.holder == me { return 0 }  // recursive: trapped below
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        guard let id else { return }
        if id == 0 {
            fatalError("AsyncMutex '\(name)': lock() by the task (or thread) that already holds it (mutex rule: not recursive; the holder would wait for itself forever)")
        }

        let state = self.state
        let granted = await withTaskCancellationHandler {
            await withCheckedContinuation(isolation: isolation) { (continuation: CheckedContinuation<Bool, Never>) in
                let now: Bool? = state.withLock { state in
                    // Freed since the first look (the queue is empty then, by
                    // the invariant): take it, as the fast path would.
                    if state.holder == nil {
                        state.holder = me
                        return true
                    }
                    // The cancellation handler may have run already and found
                    // nothing queued; the task's cancelled flag is set before
                    // the handler runs, so it is visible here under the lock
                    // the handler took.
                    if Task.isCancelled { return false }
                    state.waiters.append(Waiter(id: id, holder: me, continuation: continuation))
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            // Still queued: leave the queue. Not queued: either the hand-off
            // came first (the waiter owns the mutex) or the waiter is not
            // queued yet and will see the cancelled flag.
            let waiter = state.withLock { $0.remove(id) }
            waiter?.continuation.resume(returning: false)
        }
        if !granted { throw CancellationError() }
        // Handed the mutex: order what the previous holder did before its
        // unlock() (which popped us under this lock) before what we do now,
        // through the lock itself. The runtime's continuation already orders
        // it, but when the resume lands before the waiter has finished
        // suspending, the waiter continues on its own thread through atomics
        // inside the runtime that ThreadSanitizer does not see.
        state.withLock { _ in }
    }

    /// Gives the mutex up: to the oldest waiter if there is one (it now holds
    /// it), otherwise it becomes free.
    ///
    /// Must be called by the holder (the task that locked it, or the thread
    /// of a ``tryLock()`` outside any task); traps otherwise, and on a mutex
    /// that is not locked. QEMU: `qemu_co_mutex_unlock()`.
    public func unlock() {
        let me = Holder.current
        enum Outcome {
            case handedOff(CheckedContinuation<Bool, Never>)
            case freed
            case notLocked
            case notHolder
        }
        let outcome: Outcome = state.withLock { state in
            guard let holder = state.holder else { return .notLocked }
            guard holder == me else { return .notHolder }
            if let next = state.popOldest() {
                state.holder = next.holder
                return .handedOff(next.continuation)
            }
            state.holder = nil
            return .freed
        }
        switch outcome {
        case .handedOff(let continuation):
            continuation.resume(returning: true)
        case .freed:
            break
        case .notLocked:
            fatalError("AsyncMutex '\(name)': unlock() of a mutex that is not locked (mutex rule: one unlock() per successful lock(), by the holder)")
        case .notHolder:
            fatalError("AsyncMutex '\(name)': unlock() by a task or thread that does not hold the mutex (mutex rule: only the holder unlocks: the task that locked it, or the thread of a tryLock() outside any task)")
        }
    }

    /// Runs `body` holding the mutex, and unlocks when it returns or throws.
    /// `body` may suspend; it runs in the caller's isolation.
    ///
    /// Throws `CancellationError` if the task is cancelled while waiting
    /// for the mutex (`body` does not run then), and whatever `body` throws.
    /// QEMU: `WITH_QEMU_LOCK_GUARD()` on a `CoMutex`.
    public func withLock<R>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> R
    ) async throws -> R {
        try await lock(isolation: isolation)
        defer { unlock() }
        return try await body()
    }

    /// A one-line dump for watchdogs and bug reports: the holder and how many
    /// wait. Thread-safe, racy by nature.
    public var debugState: String {
        let (holder, waiting) = state.withLock { ($0.holder, $0.waiterCount) }
        let held = switch holder {
        case nil: "free"
        case .task?: "held by a task"
        case .thread(let id)?: "held by thread \(id)"
        }
        return "AsyncMutex '\(name)': \(held), \(waiting) waiting"
    }

    /// Tasks queued for the mutex. Racy by nature; for tests and diagnostics.
    var waiterCount: Int { state.withLock { $0.waiterCount } }

    /// Whether someone holds the mutex. Racy by nature; for tests and diagnostics.
    var isLocked: Bool { state.withLock { $0.holder != nil } }
}
