@_spi(AioInternals) @testable import Aio
import Glibc
import Synchronization
import Testing

/// A plain counter guarded only by the mutex under test (ThreadSanitizer
/// reports any access the mutex failed to order).
final class MutexGuarded: @unchecked Sendable {
    // @unchecked Sendable: touched only while holding the test's mutex, or
    // after every task that touched it has been awaited.
    var value = 0
}

/// Counts the tasks inside a critical section, and the times one entered
/// while another was inside. Relaxed: only the counts matter, not what they
/// order.
final class Occupancy: Sendable {
    private let inside = Atomic<Int>(0)
    private let overlapCount = Atomic<Int>(0)

    func enter() {
        if inside.wrappingAdd(1, ordering: .relaxed).newValue != 1 {
            overlapCount.wrappingAdd(1, ordering: .relaxed)
        }
    }

    func leave() { inside.wrappingSubtract(1, ordering: .relaxed) }

    var overlaps: Int { overlapCount.load(ordering: .relaxed) }
}

/// A gate tasks wait at until the test opens it.
final class AsyncGate: Sendable {
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() { (stream, continuation) = AsyncStream.makeStream() }

    func open() { continuation.finish() }

    func wait() async {
        for await _ in stream {}
    }
}

@Suite("AsyncMutex: exclusion, FIFO hand-off, cancellation", .timeLimit(.minutes(1)))
struct AsyncMutexTests {
    @Test("tasks that suspend while holding it never overlap, and no increment is lost")
    func exclusion() async throws {
        let mutex = AsyncMutex(name: "exclusion")
        let counter = MutexGuarded()
        let occupancy = Occupancy()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<200 {
                        try await mutex.withLock {
                            occupancy.enter()
                            let value = counter.value
                            await Task.yield()
                            counter.value = value + 1
                            occupancy.leave()
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(counter.value == 8 * 200)
        #expect(occupancy.overlaps == 0)
        #expect(!mutex.isLocked)
    }

    @Test("waiters acquire in the order they began waiting")
    func fifoOrder() async throws {
        let mutex = AsyncMutex(name: "fifo")
        try await mutex.lock()
        let order = Recorder<Int>()
        var waiters: [Task<Void, any Error>] = []
        for i in 0..<8 {
            waiters.append(Task { try await mutex.withLock { order.append(i) } })
            #expect(await eventually(within: 10) { mutex.waiterCount == i + 1 })
        }
        mutex.unlock()
        for waiter in waiters { try await waiter.value }
        #expect(order.all == Array(0..<8))
        #expect(!mutex.isLocked)
    }

    @Test("unlock hands the mutex to the oldest waiter: the unlocker cannot take it back ahead of it")
    func handOffCannotBeBarged() async throws {
        let mutex = AsyncMutex(name: "hand-off")
        try await mutex.lock()
        let order = Recorder<String>()
        let gate = AsyncGate()
        let waiter = Task {
            try await mutex.withLock {
                order.append("waiter")
                await gate.wait()   // holds the mutex until the test opens the gate
            }
        }
        #expect(await eventually(within: 10) { mutex.waiterCount == 1 })
        mutex.unlock()
        // Handed off: held by the waiter, though it may not have run yet.
        #expect(!mutex.tryLock())
        #expect(mutex.isLocked)
        // The unlocker's own lock() queues behind it.
        let relock = Task {
            try await mutex.withLock { order.append("unlocker again") }
        }
        #expect(await eventually(within: 10) { mutex.waiterCount == 1 })
        gate.open()
        try await waiter.value
        try await relock.value
        #expect(order.all == ["waiter", "unlocker again"])
        #expect(!mutex.isLocked)
    }

    @Test("a fast re-locker cannot starve a waiter: each unlock serves the queue first")
    func reLockerCannotStarve() async throws {
        let mutex = AsyncMutex(name: "re-locker")
        try await mutex.lock()
        let served = Counter()
        let waiter = Task {
            for _ in 0..<50 {
                try await mutex.lock()
                served.increment()
                mutex.unlock()
            }
        }
        // The test task unlocks and at once locks again, 50 times. Each time
        // the waiter is queued, the unlock must go to it.
        var rounds = 0
        while served.count < 50 {
            #expect(await eventually(within: 10) { mutex.waiterCount == 1 || served.count == 50 })
            if served.count == 50 { break }
            let before = served.count
            mutex.unlock()
            try await mutex.lock()   // queues behind the waiter
            // The waiter was queued at the unlock, so it was served before
            // this lock returned. It may have been served more than once: if
            // this task was descheduled between the unlock and the lock, the
            // waiter found the mutex free on its next rounds, which is fair.
            #expect(served.count > before, "the unlocker took the mutex back ahead of a queued waiter (served \(served.count), before \(before))")
            rounds += 1
            if rounds > 100 { break }
        }
        mutex.unlock()
        try await waiter.value
        #expect(served.count == 50)
        #expect(!mutex.isLocked)
    }

    @Test("a waiter cancelled in the middle of the queue leaves it and throws; the others keep their order")
    func cancelWhileWaiting() async throws {
        let mutex = AsyncMutex(name: "cancel")
        try await mutex.lock()
        let order = Recorder<String>()
        var waiters: [Task<Void, any Error>] = []
        for name in ["a", "b", "c"] {
            waiters.append(Task { try await mutex.withLock { order.append(name) } })
            let queued = waiters.count
            #expect(await eventually(within: 10) { mutex.waiterCount == queued })
        }
        waiters[1].cancel()
        await #expect(throws: CancellationError.self) { try await waiters[1].value }
        #expect(mutex.waiterCount == 2)
        mutex.unlock()
        try await waiters[0].value
        try await waiters[2].value
        #expect(order.all == ["a", "c"])
        #expect(mutex.tryLock())
        mutex.unlock()
    }

    @Test("a cancelled task takes a free mutex, and throws at once on a held one")
    func alreadyCancelled() async throws {
        let mutex = AsyncMutex(name: "cancelled")
        let gate = AsyncGate()
        let free = Task {
            await gate.wait()
            try await mutex.lock()   // free: taken, cancelled or not
            mutex.unlock()
        }
        free.cancel()
        gate.open()
        try await free.value

        try await mutex.lock()
        let gate2 = AsyncGate()
        let held = Task {
            await gate2.wait()
            try await mutex.lock()
        }
        held.cancel()
        gate2.open()
        await #expect(throws: CancellationError.self) { try await held.value }
        #expect(mutex.waiterCount == 0)
        mutex.unlock()
        #expect(!mutex.isLocked)
    }

    @Test("a cancellation racing with the hand-off never loses ownership")
    func cancelRacingHandOff() async throws {
        var granted = 0
        var cancelled = 0
        for _ in 0..<300 {
            let mutex = AsyncMutex(name: "race")
            try await mutex.lock()
            let waiter = Task { () async -> Bool in
                do { try await mutex.lock() } catch { return false }
                mutex.unlock()
                return true
            }
            #expect(await eventually(within: 10) { mutex.waiterCount == 1 })
            let canceller = Task.detached { waiter.cancel() }
            mutex.unlock()
            if await waiter.value { granted += 1 } else { cancelled += 1 }
            await canceller.value
            // Whoever won, the mutex ends up free and unawaited.
            #expect(mutex.waiterCount == 0)
            #expect(mutex.tryLock(), "\(mutex.debugState)")
            mutex.unlock()
        }
        #expect(granted + cancelled == 300)
        print("AsyncMutex cancel/hand-off race: \(granted) handed off, \(cancelled) cancelled first")
    }

    @Test("a thread holding it through tryLock keeps tasks waiting until that thread unlocks")
    func threadHolder() async throws {
        let mutex = AsyncMutex(name: "thread")
        let locked = TestEvent()
        let release = TestEvent()
        let thread = try NativeThread(name: "holder") {
            precondition(mutex.tryLock())
            locked.signal()
            _ = release.wait(seconds: 30)
            mutex.unlock()
        }
        #expect(locked.wait(seconds: 10))
        let waiter = Task { try await mutex.withLock { 42 } }
        #expect(await eventually(within: 10) { mutex.waiterCount == 1 })
        release.signal()
        #expect(try await waiter.value == 42)
        thread.join()
        #expect(!mutex.isLocked)
    }
}
