import CAioSupport
import Glibc

/// A pthread mutex at a stable address.
///
/// Used instead of `Synchronization.Mutex`, which on Linux gives false
/// ThreadSanitizer reports (its contended path is invisible to TSan).
final class PThreadMutex: @unchecked Sendable {
    // SAFETY: allocated once, initialised in init, destroyed in deinit; every
    // access goes through pthread_mutex_* which provide the synchronisation.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let rc = pthread_mutex_init(mutex, nil)
        precondition(rc == 0, "pthread_mutex_init failed: \(rc)")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always) func lock() {
        let rc = pthread_mutex_lock(mutex)
        precondition(rc == 0, "pthread_mutex_lock failed: \(rc)")
    }

    @inline(__always) func tryLock() -> Bool {
        pthread_mutex_trylock(mutex) == 0
    }

    @inline(__always) func unlock() {
        let rc = pthread_mutex_unlock(mutex)
        precondition(rc == 0, "pthread_mutex_unlock failed: \(rc)")
    }

    @inline(__always) func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    /// The raw mutex, for pthread_cond_wait. The caller must hold the lock.
    func withRawMutex<R>(_ body: (UnsafeMutablePointer<pthread_mutex_t>) -> R) -> R {
        body(mutex)
    }
}

/// A value protected by a ``PThreadMutex``.
///
/// The library's lock, rather than `Synchronization.Mutex`: ThreadSanitizer
/// sees pthread mutexes, but not `Mutex` (its lock and unlock run in the
/// uninstrumented runtime library, so every value it protects is reported as
/// raced). The sibling products (AioGIO) use it through this SPI.
@_spi(AioInternals)
public final class Locked<Value>: @unchecked Sendable {
    // SAFETY: `value` is only read or written inside `withLock`.
    private var value: Value
    private let mutex = PThreadMutex()

    public init(_ value: Value) { self.value = value }

    @inline(__always) public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        mutex.lock()
        defer { mutex.unlock() }
        return try body(&value)
    }
}

/// The calling thread's identity: a token taken from a process-wide counter
/// the first time the thread asks, and never given to another thread (never
/// 0). Unlike `pthread_self()`, which glibc hands to the next new thread once
/// a thread is joined, a token cannot make a new thread pass a dead thread's
/// home-thread or ownership checks. A C thread-local, so reading it is one
/// load (`CAioSupport`). glibc clears thread-locals only when the thread is
/// gone, so a thread keeps its token for its whole life.
/// Model: Models/aio_thread_identity.pml (RECYCLED_KEYS shows why the notify
/// memory would survive recycled ids; OWNER_CHECK why the ownership and home
/// checks would not).
@inline(__always)
func currentThreadID() -> UInt {
    UInt(aio_thread_token())
}

/// A pthread condition variable on CLOCK_MONOTONIC, used with a
/// ``PThreadMutex`` the caller holds.
final class PThreadCondition: @unchecked Sendable {
    // SAFETY: allocated once, initialised in init, destroyed in deinit.
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        cond = .allocate(capacity: 1)
        cond.initialize(to: pthread_cond_t())
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        let rc = pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
        precondition(rc == 0, "pthread_cond_init failed: \(rc)")
    }

    deinit {
        pthread_cond_destroy(cond)
        cond.deallocate()
    }

    func signal() { pthread_cond_signal(cond) }
    func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits until signalled or until the monotonic clock reaches
    /// `deadlineNs`. Returns false on timeout.
    func wait(_ mutex: PThreadMutex, untilNs deadlineNs: Int64) -> Bool {
        var ts = timespec(tv_sec: Int(deadlineNs / 1_000_000_000), tv_nsec: Int(deadlineNs % 1_000_000_000))
        return mutex.withRawMutex { pthread_cond_timedwait(cond, $0, &ts) } != ETIMEDOUT
    }

    func wait(_ mutex: PThreadMutex) {
        _ = mutex.withRawMutex { pthread_cond_wait(cond, $0) }
    }
}
