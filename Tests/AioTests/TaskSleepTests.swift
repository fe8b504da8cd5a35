@_spi(AioInternals) @testable import Aio
import Glibc
import Synchronization
import Testing

@Suite("Task.sleep on the context, and its clocks")
struct TaskSleepTests {
    @Test("Task.sleep in a task preferring the context wakes there, not before its deadline", .timeLimit(.minutes(1)), arguments: Driver.allCases)
    func taskSleepOnContext(driver: Driver) async throws {
        // That the sleep is on the context's timers (its wake-up job waits in
        // `delayedJobs`) is checked by the cancellation test below, with a
        // sleep long enough to be seen under any load.
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "Task.sleep on the context")
        let report = try await Task(executorPreference: ctx.taskExecutor) {
            var earliest = Double.infinity
            var offThread = 0
            for _ in 0..<10 {
                let start = ContinuousClock.now
                try await Task.sleep(for: .milliseconds(3))
                earliest = min(earliest, (ContinuousClock.now - start) / .milliseconds(1) - 3)
                if !loop.isDriver(currentThreadID()) || !ctx.isOwnedByCurrentThread { offThread += 1 }
            }
            return (earliest, offThread)
        }.value
        #expect(report.0 >= 0, "woke \(-report.0) ms early")
        #expect(report.1 == 0, "woke off the context's thread")
        #expect(ctx.delayedJobs.withLock { $0.isEmpty })
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("Swift 6.3 does not hand Task.sleep in an actor on the context (no task preference) to the context", .timeLimit(.minutes(1)))
    func actorSleepGoesToTheGlobalExecutor() async throws {
        // What the README says about actors: the runtime asks only the task's
        // preferred executor. A toolchain that starts asking the actor's
        // executor makes this fail, and the README must change with it.
        let loop = try LoopThread(.native)
        let dog = loop.harness.watchdog(60, "Task.sleep in an actor")
        let sleeper = SleepingActor(ctx: loop.ctx)
        let task = Task { try await sleeper.sleepLong() }
        #expect(await eventually(within: 30) { sleeper.started.value.load(ordering: .acquiring) == 1 })
        // Look a few times over at least 50 ms while the hour-long sleep is in
        // progress: its wake-up job is never on the context's timers.
        var samples = 0
        var seenOnContext = 0
        let begin = ContinuousClock.now
        while samples < 5 || ContinuousClock.now - begin < .milliseconds(50) {
            seenOnContext = max(seenOnContext, loop.ctx.delayedJobs.withLock { $0.count })
            samples += 1
            try await Task.sleep(for: .milliseconds(5))
        }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(seenOnContext == 0, "Task.sleep in an actor on the context now uses the context's timers: update the README")
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("short Task.sleeps on the context all wake: none is lost between its timer and its job", .timeLimit(.minutes(1)), arguments: Driver.allCases)
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

    @Test("a task sleeping on the context wakes at once when cancelled", .timeLimit(.minutes(1)), arguments: Driver.allCases)
    func cancelledTaskSleep(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "cancelled Task.sleep")
        // Measured by the sleeper itself, on the context's thread: a test task
        // on the (2-thread, shared) global executor may itself wait seconds
        // for a turn while the rest of the suite runs.
        let sleeper = Task(executorPreference: ctx.taskExecutor) { () -> (Bool, UInt, ContinuousClock.Instant) in
            do {
                try await Task.sleep(for: .seconds(3600))
                return (false, currentThreadID(), .now)
            } catch {
                return (error is CancellationError, currentThreadID(), .now)
            }
        }
        // The sleep's wake-up job waits on the context's timers.
        #expect(await eventually(within: 30) { ctx.delayedJobs.withLock { $0.count } == 1 },
                "the sleep's wake-up job never reached the context's timers")
        let start = ContinuousClock.now
        sleeper.cancel()
        let (cancelled, thread, woke) = await sleeper.value
        #expect(cancelled)
        #expect(loop.isDriver(thread), "resumed off the context's thread")
        #expect(woke - start < .seconds(30), "a cancelled sleep took \(woke - start) to wake")
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("a context torn down with a cancelled sleep's wake-up job still armed frees it", .timeLimit(.minutes(1)))
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

    @Test("a context torn down with a cancelled sleep's wake-up job fired but not run does not trap", .timeLimit(.minutes(1)))
    func teardownWithFiredWakeUp() async {
        await #expect(processExitsWith: .success) {
            // All on this thread, the context's home thread, without awaits.
            var ctx: AioContext? = try! AioContext(name: "fired-wake-up")
            let gone = WeakBox<AioContext>()
            gone.set(ctx!)
            let woke = SharedInt(0)
            var sleeper: Task<Void, Never>? = Task(executorPreference: ctx!.taskExecutor) {
                // Long enough that the cancellation below always comes first,
                // even on a loaded machine: the timer must fire after it.
                try? await Task.sleep(for: .seconds(3))
                woke.value.store(1, ordering: .releasing)
            }
            func pollUntil(_ condition: () -> Bool) {
                let deadline = nowSeconds() + 20
                while !condition() {
                    if nowSeconds() > deadline { exit(2) }  // (a bound, not the check)
                    _ = ctx!.poll(blocking: false)
                    usleep(100)
                }
            }
            pollUntil { ctx!.delayedJobs.withLock { $0.count } == 1 }  // asleep
            sleeper!.cancel()
            pollUntil { woke.value.load(ordering: .acquiring) == 1 }   // cancelled: woke at once
            // Until the timer fires, which queues the wake-up job. Timers run
            // last in a pass, so the job's drain waits for the next poll.
            pollUntil { ctx!.delayedJobs.withLock { $0.isEmpty } }
            if ctx!.jobs.isEmpty { exit(3) }                           // (else nothing was tested)
            sleeper = nil
            ctx = nil                                                  // teardown, with the job queued
            if !gone.isEmpty { exit(4) }                               // (else nothing was tested)
            _ = sleeper
        }
    }

    @Test("a task preferring the context keeps it alive until the task ends", .blockingLane)
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

    @Test("the virtual clock makes sleeps deterministic: they end when it is advanced, not before", .timeLimit(.minutes(1)), arguments: Driver.allCases)
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

    @Test("AioContextClock: now follows the context's clock; a cancelled clock sleep throws at once", .timeLimit(.minutes(1)))
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
    private let lock = Locked<Void>(())
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
    /// 1 once the actor is about to sleep.
    nonisolated let started = SharedInt(0)
    init(ctx: AioContext) { self.ctx = ctx }
    nonisolated var unownedExecutor: UnownedSerialExecutor { ctx.asUnownedSerialExecutor() }

    func sleepLong() async throws {
        started.value.store(1, ordering: .releasing)
        try await Task.sleep(for: .seconds(3600))
    }
}
