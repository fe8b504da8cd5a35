import Synchronization

/// How a context's timer lists and virtual clock reach the context to wake
/// it, without a weak reference (a weak reference gives the context a side
/// table, and every retain and release of it then takes the slow path).
///
/// The link is cut under its lock as teardown begins, so a notify that went
/// through it has finished before the context's memory goes, and later ones
/// find nothing to wake.
final class ContextLink: @unchecked Sendable {
    // @unchecked Sendable: `context` is only touched under `lock`.
    private let lock = PThreadMutex()
    // SAFETY: cut (under the lock) by the context's teardown before it frees
    // anything; read only under the lock.
    private unowned(unsafe) var context: AioContext?

    init() {}

    /// Set once by the context's init.
    func connect(_ context: AioContext) { lock.withLock { self.context = context } }

    /// Wakes the context if it is still there.
    func notify() { lock.withLock { context?.notify() } }

    /// Whether the calling thread owns the context (false once cut).
    var ownedByCurrentThread: Bool { lock.withLock { context?.isOwnedByCurrentThread ?? false } }

    #if DEBUG
    /// The context's lock-order check before a wait for its callbacks.
    func checkLockOrderBeforeWaiting() { lock.withLock { context?.checkLockOrderBeforeWaiting() } }
    #endif

    /// Cuts the link: teardown.
    func cut() { lock.withLock { context = nil } }
}

/// Armed timers over all of a context's clocks, so a poll with none skips
/// the per-clock walks. Each list adds its changes under its own lock.
final class ArmedTimers: Sendable {
    let count = Atomic<Int>(0)
}
