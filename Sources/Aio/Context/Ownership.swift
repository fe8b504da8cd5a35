import Synchronization

/// The context's ownership: a recursive lock held while preparing, checking,
/// dispatching and polling, and released around the actual wait, so another
/// thread may run the loop while this one sleeps.
///
/// One atomic word says who may dispatch: free (0), or held, plus two bits
/// that only a holder's release reads:
/// - `contended`: a thread sleeps in ``acquire()``; the release wakes one.
/// - `glibDeferred`: a GSource hook found the context owned and returned at
///   once instead of waiting (``tryAcquireOrDefer()``); the release reports
///   it so the context wakes GLib, which then looks again.
///
/// Because the release is a single exchange of that word, a hook that set
/// `glibDeferred` while the lock was held is seen by exactly that release:
/// there is no window in which the hook gives up and the owner has already
/// looked. The wake is GLib's fast path back to the context; its safety net
/// is that a deferred prepare lets GLib sleep at most 1 ms (see
/// `AioContext.gsourcePrepare`). Model: Models/aio_gsource_own.pml.
///
/// Lock order: ownership before any GMainContext. GLib's hooks run while GLib
/// holds its GMainContext, so they never wait for ownership; a thread that
/// owns the context may wait for a GMainContext (a BH that iterates GLib).
/// Model: Models/aio_gsource_own.pml, FAULT_GSOURCE_BLOCKING (the reverse
/// order deadlocks).
///
/// QEMU: `aio_context_acquire()` / `aio_context_release()` (2014-2023), and the
/// big lock for the main context.
final class OwnershipLock: @unchecked Sendable {
    // @unchecked Sendable: `depth` is touched only by the holder; `state` and
    // `owner` are atomic; `parked` is used under `parkMutex`.

    static let held: UInt32 = 1
    static let contended: UInt32 = 2
    static let glibDeferred: UInt32 = 4

    /// 0 when free; `held` plus the bits above otherwise.
    private let state = Atomic<UInt32>(0)

    /// The holder's thread token (``currentThreadID()``), 0 when free.
    /// Written only by the holder. Any thread may read it, but only to
    /// compare with its own token: a thread always sees its own last write,
    /// and no other thread can store its token, so `isHeldByCurrentThread`
    /// is exact. Relaxed is enough.
    private let owner = Atomic<UInt>(0)

    /// Recursion depth of the holder. Holder-only.
    @exclusivity(unchecked) private var depth = 0

    /// Where blocked acquirers sleep.
    private let parkMutex = PThreadMutex()
    private let parked = PThreadCondition()

    /// Called, in debug builds, before an acquirer that has to wait goes to
    /// sleep; it traps if the wait breaks the lock order. Set once.
    var beforeWaiting: (() -> Void)?

    var isHeldByCurrentThread: Bool {
        owner.load(ordering: .relaxed) == currentThreadID()
    }

    @inline(__always)
    func acquire() {
        let me = currentThreadID()
        if owner.load(ordering: .relaxed) == me {
            depth += 1
            return
        }
        // [own-acquire] acquiring: what the previous holder did under the
        // lock is visible to us. Pairs with [own-release].
        if !state.compareExchange(expected: 0, desired: Self.held, successOrdering: .acquiring,
                                  failureOrdering: .relaxed).exchanged {
            acquireSlow()
        }
        owner.store(me, ordering: .relaxed)
        depth = 1
    }

    @inline(never)
    private func acquireSlow() {
        beforeWaiting?()
        parkMutex.lock()
        defer { parkMutex.unlock() }
        while true {
            let s = state.load(ordering: .relaxed)
            if s == 0 {
                // Others may still sleep: keep `contended` so the next
                // release wakes one (at worst one useless signal).
                if state.compareExchange(expected: 0, desired: Self.held | Self.contended,
                                         successOrdering: .acquiring, failureOrdering: .relaxed).exchanged {
                    return
                }
                continue
            }
            if s & Self.contended == 0 {
                // Set under `parkMutex`: the release that sees the bit signals
                // under the same mutex, so after we start waiting.
                if !state.compareExchange(expected: s, desired: s | Self.contended,
                                          ordering: .relaxed).exchanged {
                    continue
                }
            }
            parked.wait(parkMutex)
        }
    }

    /// Takes the lock if that needs no waiting.
    func tryAcquire() -> Bool {
        let me = currentThreadID()
        if owner.load(ordering: .relaxed) == me {
            depth += 1
            return true
        }
        guard state.compareExchange(expected: 0, desired: Self.held, successOrdering: .acquiring,
                                    failureOrdering: .relaxed).exchanged else { return false }
        owner.store(me, ordering: .relaxed)
        depth = 1
        return true
    }

    /// For GLib's hooks: takes the lock if that needs no waiting; otherwise
    /// marks it `glibDeferred`, in the same atomic step that found it held,
    /// so the holder's release reports it. Never waits.
    func tryAcquireOrDefer() -> Bool {
        let me = currentThreadID()
        if owner.load(ordering: .relaxed) == me {
            depth += 1
            return true
        }
        var s = state.load(ordering: .relaxed)
        while true {
            if s == 0 {
                let (done, now) = state.compareExchange(expected: 0, desired: Self.held,
                                                        successOrdering: .acquiring,
                                                        failureOrdering: .relaxed)
                if done {
                    owner.store(me, ordering: .relaxed)
                    depth = 1
                    return true
                }
                s = now
                continue
            }
            if s & Self.glibDeferred != 0 { return false }
            // Acquiring-and-releasing, with the release's exchange: the
            // releaser that sees the bit also sees what this GLib thread did
            // before (its prepare's or check's clear of the wake-pending
            // flag), so its wake is not skipped for a stale flag.
            let (done, now) = state.compareExchange(expected: s, desired: s | Self.glibDeferred,
                                                    ordering: .acquiringAndReleasing)
            if done { return false }
            s = now
        }
    }

    /// Releases one level. Returns nil (and changes nothing) if the calling
    /// thread does not hold the lock, so the caller can trap with its own
    /// name; otherwise whether the final release found `glibDeferred`.
    @inline(__always)
    func release() -> Bool? {
        guard isHeldByCurrentThread else { return nil }
        depth -= 1
        if depth > 0 { return false }
        return unlock()
    }

    /// Releases every level held by the calling thread, around a wait.
    /// Returns the depth to restore and whether GLib was deferred.
    func releaseAll() -> (depth: Int, glibDeferred: Bool) {
        let saved = depth
        depth = 0
        return (saved, unlock())
    }

    /// Takes the lock back after `releaseAll`, restoring the depth.
    func reacquire(depth saved: Int) {
        acquire()
        depth = saved
    }

    @inline(__always)
    private func unlock() -> Bool {
        owner.store(0, ordering: .relaxed)
        // [own-release] releasing: our work under the lock is visible to the
        // next holder's acquiring CAS. Acquiring too: see `tryAcquireOrDefer`.
        let old = state.exchange(0, ordering: .acquiringAndReleasing)
        if old & Self.contended != 0 { wakeOneAcquirer() }
        return old & Self.glibDeferred != 0
    }

    @inline(never)
    private func wakeOneAcquirer() {
        parkMutex.lock()
        parked.signal()
        parkMutex.unlock()
    }
}
