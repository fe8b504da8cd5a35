import Synchronization

/// The context's ownership: a recursive lock held while preparing, checking,
/// dispatching and polling, and released around the actual wait, so another
/// thread may run the loop while this one sleeps.
///
/// QEMU: `aio_context_acquire()` / `aio_context_release()` (2014-2023), and the
/// big lock for the main context.
final class OwnershipLock: @unchecked Sendable {
    // @unchecked Sendable: `depth` is touched only by the thread holding `mutex`;
    // `owner` is atomic.

    private let mutex = PThreadMutex()

    /// The holder's thread id, 0 when free. Written only by the holder while it
    /// holds `mutex`. Any thread may read it, but only to compare with its own
    /// id: a thread always sees its own last write, and no other thread can
    /// store its id, so `isHeldByCurrentThread` is exact. Relaxed is enough.
    private let owner = Atomic<UInt>(0)

    /// Recursion depth of the holder. Holder-only.
    @exclusivity(unchecked) private var depth = 0

    var isHeldByCurrentThread: Bool {
        owner.load(ordering: .relaxed) == currentThreadID()
    }

    func acquire() {
        let me = currentThreadID()
        if owner.load(ordering: .relaxed) == me {
            depth += 1
            return
        }
        mutex.lock()
        owner.store(me, ordering: .relaxed)
        depth = 1
    }

    /// Takes the lock if that needs no waiting.
    func tryAcquire() -> Bool {
        let me = currentThreadID()
        if owner.load(ordering: .relaxed) == me {
            depth += 1
            return true
        }
        guard mutex.tryLock() else { return false }
        owner.store(me, ordering: .relaxed)
        depth = 1
        return true
    }

    /// Releases one level. Returns false (and changes nothing) if the calling
    /// thread does not hold the lock, so the caller can trap with its own name.
    func release() -> Bool {
        guard isHeldByCurrentThread else { return false }
        depth -= 1
        if depth == 0 {
            owner.store(0, ordering: .relaxed)
            mutex.unlock()
        }
        return true
    }

    /// Releases every level held by the calling thread, around a wait.
    func releaseAll() -> Int {
        let saved = depth
        depth = 0
        owner.store(0, ordering: .relaxed)
        mutex.unlock()
        return saved
    }

    /// Takes the lock back after `releaseAll`, restoring the depth.
    func reacquire(depth saved: Int) {
        mutex.lock()
        owner.store(currentThreadID(), ordering: .relaxed)
        depth = saved
    }
}
