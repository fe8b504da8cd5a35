@testable import Aio
import Glibc
import Synchronization
import Testing

@Suite("Task.sleep on the context, and its clocks", .timeLimit(.minutes(1)))
struct TaskSleepTests {
    @Test("Task.sleep in a task preferring the context sleeps on the context's timers and wakes there, not before its deadline", arguments: Driver.allCases)
    func taskSleepOnContext(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "Task.sleep on the context")
        let held = SharedInt(-1)
        let report = try await Task(executorPreference: ctx.taskExecutor) {
            var earliest = Double.infinity
            var offThread = 0
            for round in 0..<10 {
                let start = ContinuousClock.now
                if round == 0 {
                    // While this sleep is in progress, the context holds its
                    // wake-up job: the sleep is on the context's timer list.
                    let over = SharedInt(0)
                    let watcher = Task.detached {
                        // Until the sleep is over (a slow start under a
                        // sanitizer may miss it: then `held` stays -1).
                        while over.value.load(ordering: .acquiring) == 0 {
                            let count = ctx.delayedJobs.withLock { $0.count }
                            if count > 0 { held.value.store(count, ordering: .relaxed); break }
                            try await Task.sleep(for: .microseconds(100))
                        }
                    }
                    try await Task.sleep(for: .milliseconds(200))
                    over.value.store(1, ordering: .releasing)
                    try await watcher.value
                } else {
                    try await Task.sleep(for: .milliseconds(3))
                }
                let slept = (ContinuousClock.now - start) / .milliseconds(1)
                earliest = min(earliest, slept - (round == 0 ? 200 : 3))
                if !loop.isDriver(currentThreadID()) || !ctx.isOwnedByCurrentThread { offThread += 1 }
            }
            return (earliest, offThread)
        }.value
        #expect(held.value.load(ordering: .relaxed) == 1, "the sleep's wake-up job was not on the context's timers")
        #expect(report.0 >= 0, "woke \(-report.0) ms early")
        #expect(report.1 == 0, "woke off the context's thread")
        #expect(ctx.delayedJobs.withLock { $0.isEmpty })
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("Swift 6.3 does not hand Task.sleep in an actor on the context (no task preference) to the context")
    func actorSleepGoesToTheGlobalExecutor() async throws {
        // What the README says about actors: the runtime asks only the task's
        // preferred executor. A toolchain that starts asking the actor's
        // executor makes this fail, and the README must change with it.
        let loop = try LoopThread(.native)
        let dog = loop.harness.watchdog(60, "Task.sleep in an actor")
        let sleeper = SleepingActor(ctx: loop.ctx)
        let (seenOnContext, samples) = try await sleeper.sleepAndLook()
        #expect(samples > 0, "the watcher never looked during the sleep")
        #expect(seenOnContext == 0, "Task.sleep in an actor on the context now uses the context's timers: update the README")
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("short Task.sleeps on the context all wake: none is lost between its timer and its job", arguments: Driver.allCases)
    func noLostSleepWakeUps(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let done = SharedInt(0)
        let rounds = 200
        // Not awaited: a lost wake-up leaves the task asleep forever, and the
        // test must fail with a message instead of hanging with it.
        Task(executorPreference: ctx.taskExecutor) {
            for round in 0..<rounds {
                try await Task.sleep(for: .microseconds(round % 2 == 0 ? 0 : 100))
                done.value.add(1, ordering: .relaxed)
            }
        }
        let finished = await eventually(within: 20) { done.value.load(ordering: .relaxed) == rounds }
        #expect(finished, "Task.sleep on the context never woke: \(done.value.load(ordering: .relaxed)) of \(rounds) sleeps ended")
        if finished { loop.stop() }
    }

    @Test("a task sleeping on the context wakes at once when cancelled", arguments: Driver.allCases)
    func cancelledTaskSleep(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "cancelled Task.sleep")
        let sleeper = Task(executorPreference: ctx.taskExecutor) { () -> (Bool, UInt) in
            do {
                try await Task.sleep(for: .seconds(3600))
                return (false, currentThreadID())
            } catch {
                return (error is CancellationError, currentThreadID())
            }
        }
        #expect(await eventually(within: 30) { ctx.delayedJobs.withLock { $0.count } == 1 })
        let start = ContinuousClock.now
        sleeper.cancel()
        let (cancelled, thread) = await sleeper.value
        let waited = ContinuousClock.now - start
        #expect(cancelled)
        #expect(loop.isDriver(thread), "resumed off the context's thread")
        #expect(waited < .seconds(5), "a cancelled sleep took \(waited) to wake")
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("a context torn down with a cancelled sleep's wake-up job still armed frees it")
    func teardownWithCancelledSleep() async throws {
        var thread: IOThread? = try IOThread(name: "sleep-teardown")
        try thread!.start()
        let gone = WeakBox<AioContext>()
        do {
            let ctx = thread!.context
            gone.set(ctx)
            let sleeper = Task(executorPreference: ctx.taskExecutor) {
                try await Task.sleep(for: .seconds(3600))
            }
            #expect(await eventually(within: 30) { ctx.delayedJobs.withLock { $0.count } == 1 })
            sleeper.cancel()
            await #expect(throws: CancellationError.self) { try await sleeper.value }
        }
        thread!.stop()
        thread!.join()
        thread = nil
        // The task (and with it the task executor) is gone: the context goes
        // with the thread, and its teardown hands the wake-up job to the
        // global executor, which frees it (LeakSanitizer checks the rest).
        #expect(await eventually(within: 30) { gone.isEmpty })
    }

    @Test("a task preferring the context keeps it alive until the task ends")
    func preferenceKeepsContextAlive() throws {
        // Synchronous on purpose: this thread is the context's home thread
        // and polls it.
        var ctx: AioContext? = try AioContext(name: "kept-alive")
        let gone = WeakBox<AioContext>()
        gone.set(ctx!)
        let ran = TestEvent()
        Task(executorPreference: ctx!.taskExecutor) { ran.signal() }
        // The only reference left is the queued task's preference: the task
        // executor, which holds the context. Were it not held, the context
        // would be torn down here with a job queued, and trap.
        ctx = nil
        #expect(!gone.isEmpty, "the context went away under a task that prefers it")
        let deadline = nowSeconds() + 30
        var signalled = false
        while !signalled && nowSeconds() < deadline {
            _ = gone.object?.poll(blocking: false)
            signalled = ran.wait(seconds: 0.001)
        }
        #expect(signalled, "the task's job never ran")
        // Once the task is gone, so is the context.
        let released = nowSeconds() + 30
        while !gone.isEmpty && nowSeconds() < released { usleep(1_000) }
        #expect(gone.isEmpty, "the context outlived the task that preferred it")
    }

    @Test("the virtual clock makes sleeps deterministic: they end when it is advanced, not before", arguments: Driver.allCases)
    func virtualClockSleeps(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "virtual clock sleeps")
        let clock = ctx.clock(.virtual)
        let start = clock.now
        let woke = SharedInt(0)
        let sleeper = Task(executorPreference: ctx.taskExecutor) {
            try await Task.sleep(for: .seconds(3600), clock: clock)
            woke.value.store(1, ordering: .releasing)
            let afterFirst = clock.now
            try await clock.sleep(until: afterFirst + .seconds(10))
            woke.value.store(2, ordering: .releasing)
            return clock.now
        }
        let virtualTimers = ctx.timerLists[AioClock.virtual.rawValue]
        #expect(await eventually(within: 30) { virtualTimers.armedTimers == 1 })
        ctx.virtualClock.advance(by: .seconds(3599))
        // The timer is still armed: a deadline one virtual second ahead.
        try await Task.sleep(for: .milliseconds(20))
        #expect(woke.value.load(ordering: .acquiring) == 0)
        ctx.virtualClock.advance(by: .seconds(1))
        #expect(await eventually(within: 30) { woke.value.load(ordering: .acquiring) == 1 && virtualTimers.armedTimers == 1 })
        ctx.virtualClock.advance(by: .seconds(10))
        let end = try await sleeper.value
        #expect(end - start == .seconds(3610))
        #expect(clock.minimumResolution == .nanoseconds(1))
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("AioContextClock: now follows the context's clock; a cancelled clock sleep throws at once")
    func contextClock() async throws {
        let ctx = try AioContext(name: "clock")
        let thread = try IOThread(name: "clock-thread")
        try thread.start()
        defer { thread.stop(); thread.join() }
        let clock = thread.context.clock()
        let before = thread.context.now()
        #expect(clock.now >= before)
        #expect(ctx.clock(.virtual).now == AioInstant(nanoseconds: 0))
        let start = clock.now
        try await clock.sleep(for: .milliseconds(2))
        #expect(clock.now - start >= .milliseconds(2))
        let sleeper = Task { try await clock.sleep(for: .seconds(3600)) }
        try await Task.sleep(for: .milliseconds(10))
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        #expect(AioInstant(nanoseconds: 5).advanced(by: .nanoseconds(10)) == AioInstant(nanoseconds: 15))
        #expect(AioInstant(nanoseconds: 5).duration(to: AioInstant(nanoseconds: 2)) == .nanoseconds(-3))
    }
}

/// A weak reference that a test can poll from any task.
final class WeakBox<T: AnyObject>: @unchecked Sendable {
    // @unchecked Sendable: `value` is only touched under `lock`.
    private let lock = Mutex<Void>(())
    private weak var value: T?
    func set(_ object: T) { lock.withLock { _ in value = object } }
    var isEmpty: Bool { lock.withLock { _ in value == nil } }
    var object: T? { lock.withLock { _ in value } }
}

/// An integer any task may read and write.
final class SharedInt: Sendable {
    let value: Atomic<Int>
    init(_ initial: Int) { value = Atomic(initial) }
}

/// An actor on a context that sleeps with `Task.sleep`.
actor SleepingActor {
    let ctx: AioContext
    init(ctx: AioContext) { self.ctx = ctx }
    nonisolated var unownedExecutor: UnownedSerialExecutor { ctx.asUnownedSerialExecutor() }

    /// Sleeps 50 ms while a detached task counts the context's delayed jobs;
    /// returns the most it saw, and how often it looked during the sleep.
    func sleepAndLook() async throws -> (seen: Int, samples: Int) {
        let seen = SharedInt(0)
        let samples = SharedInt(0)
        let over = SharedInt(0)
        let ctx = self.ctx
        let watcher = Task.detached {
            while over.value.load(ordering: .acquiring) == 0 {
                let count = ctx.delayedJobs.withLock { $0.count }
                if count > seen.value.load(ordering: .relaxed) { seen.value.store(count, ordering: .relaxed) }
                if over.value.load(ordering: .acquiring) == 0 { samples.value.add(1, ordering: .relaxed) }
                try await Task.sleep(for: .microseconds(200))
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        over.value.store(1, ordering: .releasing)
        try await watcher.value
        return (seen.value.load(ordering: .relaxed), samples.value.load(ordering: .relaxed))
    }
}
