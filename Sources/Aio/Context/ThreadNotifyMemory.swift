/// What a context remembers of the threads that poll it: the notify
/// generation each had seen when its last poll (or GLib iteration) on this
/// context returned.
///
/// A blocking poll sleeps only if no notify came since then. That is QEMU's
/// `notified` flag ("a notify since the last accept") kept per thread, so the
/// accept of one thread (a non-blocking poll elsewhere, a second native
/// waiter, GLib's check) can never erase a notification another thread has
/// not seen yet. A thread that checks a condition between two polls thus
/// never sleeps through a change made, and notified, after its previous poll
/// returned.
///
/// Kept in the context, not in the thread: a GLib thread may iterate any
/// number of contexts, but few threads poll one context. Owner-only: every
/// access happens while holding the context's ownership. A thread it does not
/// know (first poll, or evicted after 16 others) counts as notified, which
/// costs one poll that does not sleep (Models/aio_notify_gen.pml,
/// FAULT_UNKNOWN_IS_SEEN). Threads are keyed by tokens that are never reused
/// (`currentThreadID()`); even a reused key would only inherit an older
/// generation, which costs one poll that does not sleep: safe either way
/// (Models/aio_thread_identity.pml, RECYCLED_KEYS; its OWNER_CHECK variant
/// shows why the ownership and home checks need the tokens).
///
/// Fixed storage allocated once, no arrays: every poll looks a thread up and
/// writes its generation back, and an array in the context would cost a
/// uniqueness check (and a retain) per write, a struct of inline storage a
/// copy of itself. The thread found last is tried first: one thread usually
/// polls a context many times in a row.
final class NotifyMemory {
    private static let capacity = 16
    // SAFETY: allocated in init for `capacity` entries, freed in deinit;
    // entries below `used` are initialised.
    private let threads = UnsafeMutablePointer<UInt>.allocate(capacity: NotifyMemory.capacity)
    private let generations = UnsafeMutablePointer<UInt64>.allocate(capacity: NotifyMemory.capacity)
    @exclusivity(unchecked) private var used = 0
    @exclusivity(unchecked) private var nextEviction = 0
    @exclusivity(unchecked) private var lastFound = 0

    deinit {
        threads.deallocate()
        generations.deallocate()
    }

    @inline(__always)
    private func index(ofThread thread: UInt) -> Int? {
        if lastFound < used && threads[lastFound] == thread { return lastFound }
        var i = 0
        while i < used {
            if threads[i] == thread { return i }
            i += 1
        }
        return nil
    }

    @inline(__always)
    func generation(forThread thread: UInt) -> UInt64? {
        guard let i = index(ofThread: thread) else { return nil }
        lastFound = i
        return generations[i]
    }

    @inline(__always)
    func remember(_ generation: UInt64, forThread thread: UInt) {
        if lastFound < used && threads[lastFound] == thread {
            generations[lastFound] = generation
            return
        }
        rememberSlow(generation, forThread: thread)
    }

    @inline(never)
    private func rememberSlow(_ generation: UInt64, forThread thread: UInt) {
        if let i = index(ofThread: thread) {
            generations[i] = generation
            lastFound = i
            return
        }
        let slot: Int
        if used < Self.capacity {
            slot = used
            used += 1
        } else {
            slot = nextEviction
            nextEviction = (nextEviction + 1) % Self.capacity
        }
        threads[slot] = thread
        generations[slot] = generation
        lastFound = slot
    }
}
