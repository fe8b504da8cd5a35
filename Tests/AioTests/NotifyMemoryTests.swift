@testable import Aio
import Testing

/// `NotifyMemory`, the per-context record of the notify generation each
/// polling thread last saw, rewritten from two arrays to fixed storage with a
/// last-found cache: the same contract, checked directly (the protocol's use
/// of it is in Models/aio_notify_gen.pml and aio_thread_identity.pml).
@Suite("Thread notify memory", .blockingLane)
struct NotifyMemoryTests {
    @Test("an unknown thread has no generation; a known one has its last")
    func lookup() {
        let memory = NotifyMemory()
        #expect(memory.generation(forThread: 7) == nil)
        memory.remember(10, forThread: 7)
        memory.remember(20, forThread: 8)
        // Alternate, so each lookup misses the last-found entry once.
        #expect(memory.generation(forThread: 7) == 10)
        #expect(memory.generation(forThread: 8) == 20)
        memory.remember(11, forThread: 7)
        #expect(memory.generation(forThread: 8) == 20)
        #expect(memory.generation(forThread: 7) == 11)
        #expect(memory.generation(forThread: 9) == nil)
    }

    @Test("past 16 threads, the oldest entries are evicted in turn; an update evicts nothing")
    func eviction() {
        let memory = NotifyMemory()
        for thread in UInt(1)...16 { memory.remember(UInt64(thread) * 100, forThread: thread) }
        // Updating a known thread, whichever entry was found last, keeps all 16.
        memory.remember(555, forThread: 5)
        memory.remember(1_600, forThread: 16)
        for thread in UInt(1)...16 {
            #expect(memory.generation(forThread: thread) == (thread == 5 ? 555 : UInt64(thread) * 100))
        }
        memory.remember(1_700, forThread: 17)
        #expect(memory.generation(forThread: 1) == nil, "the 17th thread takes the first entry")
        #expect(memory.generation(forThread: 17) == 1_700)
        memory.remember(1_800, forThread: 18)
        #expect(memory.generation(forThread: 2) == nil, "then the second")
        for thread in UInt(3)...18 { #expect(memory.generation(forThread: thread) != nil) }
        // An evicted thread comes back as a new entry, evicting the next one.
        memory.remember(100, forThread: 1)
        #expect(memory.generation(forThread: 1) == 100)
        #expect(memory.generation(forThread: 3) == nil)
    }
}
