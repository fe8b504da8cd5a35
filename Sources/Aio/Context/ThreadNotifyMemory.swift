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
struct NotifyMemory {
    private var threads: [UInt] = []
    private var generations: [UInt64] = []
    private var nextEviction = 0
    private static let capacity = 16

    func generation(forThread thread: UInt) -> UInt64? {
        var i = 0
        while i < threads.count {
            if threads[i] == thread { return generations[i] }
            i += 1
        }
        return nil
    }

    mutating func remember(_ generation: UInt64, forThread thread: UInt) {
        var i = 0
        while i < threads.count {
            if threads[i] == thread {
                generations[i] = generation
                return
            }
            i += 1
        }
        if threads.count < Self.capacity {
            threads.append(thread)
            generations.append(generation)
        } else {
            threads[nextEviction] = thread
            generations[nextEviction] = generation
            nextEviction = (nextEviction + 1) % Self.capacity
        }
    }
}
