import Glibc
import Synchronization

/// What one thread remembers of the contexts it polls: the notify generation
/// each had when this thread's last poll on it returned.
///
/// A blocking poll sleeps only if no notify came since then. That is QEMU's
/// `notified` flag ("a notify since the last accept") kept per thread, so the
/// accept of one thread (a non-blocking poll elsewhere, a second native
/// waiter) can never erase a notification another thread has not seen yet.
/// A thread that checks a condition between two polls thus never sleeps
/// through a change made, and notified, after its previous poll returned.
final class ThreadNotifyMemory {
    /// Context serials and generations, most recently used last. Small and
    /// bounded: an evicted or unknown context counts as "notified", which
    /// costs at most one poll that does not sleep.
    private var serials: [UInt64] = []
    private var generations: [UInt64] = []
    private static let capacity = 8

    init() {
        serials.reserveCapacity(Self.capacity)
        generations.reserveCapacity(Self.capacity)
    }

    func generation(for serial: UInt64) -> UInt64? {
        var i = serials.count - 1
        while i >= 0 {
            if serials[i] == serial { return generations[i] }
            i -= 1
        }
        return nil
    }

    func remember(_ generation: UInt64, for serial: UInt64) {
        var i = serials.count - 1
        while i >= 0 {
            if serials[i] == serial {
                generations[i] = generation
                return
            }
            i -= 1
        }
        if serials.count == Self.capacity {
            serials.removeFirst()
            generations.removeFirst()
        }
        serials.append(serial)
        generations.append(generation)
    }

    /// The calling thread's memory, created on first use and released when
    /// the thread exits.
    static var current: ThreadNotifyMemory {
        if let raw = pthread_getspecific(key) {
            // SAFETY: the value is the +1 reference stored below, released by
            // the key's destructor at thread exit.
            return Unmanaged<ThreadNotifyMemory>.fromOpaque(raw).takeUnretainedValue()
        }
        let memory = ThreadNotifyMemory()
        pthread_setspecific(key, Unmanaged.passRetained(memory).toOpaque())
        return memory
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { raw in
            // SAFETY: balances the passRetained in `current`.
            if let raw { Unmanaged<ThreadNotifyMemory>.fromOpaque(raw).release() }
        }
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        return key
    }()
}

/// Serial numbers that tell contexts apart in thread memories (addresses
/// get reused; serials do not).
private let contextSerials = Atomic<UInt64>(0)

func nextContextSerial() -> UInt64 {
    contextSerials.wrappingAdd(1, ordering: .relaxed).newValue
}
