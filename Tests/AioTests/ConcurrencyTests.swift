@_spi(AioInternals) @testable import Aio
import CGLibShim
import Glibc
import Synchronization
import Testing

/// An actor whose jobs run on an AioContext.
actor ContextActor {
    let ctx: AioContext
    var calls = 0

    init(ctx: AioContext) { self.ctx = ctx }

    nonisolated var unownedExecutor: UnownedSerialExecutor {
        ctx.asUnownedSerialExecutor()
    }

    /// Where the call ran: the thread, and whether it owned the context.
    func probe() -> (thread: UInt, owned: Bool) {
        calls += 1
        return (currentThreadID(), ctx.isOwnedByCurrentThread)
    }
}

/// Per-producer sequence check for the ordering test. Touched only by jobs,
/// which run one at a time on the loop thread.
final class OrderCheck: @unchecked Sendable {
    var last: [Int]
    var outOfOrder = 0
    var offThread = 0
    init(producers: Int) { last = Array(repeating: -1, count: producers) }
}

struct Boom: Error, Equatable {}

/// Counts down from `n`; `tick()` is true for the tick that reaches 0.
final class Countdown: Sendable {
    private let value: Atomic<Int>
    init(_ n: Int) { value = Atomic(n) }
    func tick() -> Bool { value.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 }
    var left: Int { value.load(ordering: .acquiring) }
}

extension LoopThread {
    /// Runs `body` on the loop thread (as a one-shot BH) and returns its result.
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            ctx.scheduleOneshot { continuation.resume(returning: body()) }
        }
    }
}

/// Waits (on the global executor) until `condition` holds; false after `seconds`.
func eventually(within seconds: Double, _ condition: @Sendable () -> Bool) async -> Bool {
    let deadline = nowSeconds() + seconds
    while !condition() {
        if nowSeconds() > deadline { return false }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return true
}

@Suite("Swift concurrency: the context as an executor, async waits")
struct ConcurrencyTests {
    @Test("an actor on a context runs on the context's thread, owning it", arguments: Driver.allCases)
    func actorRunsOnContextThread(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let dog = loop.harness.watchdog(60, "actor hops")
        let actor = ContextActor(ctx: loop.ctx)
        for _ in 0..<100 {
            let (thread, owned) = await actor.probe()
            #expect(loop.isDriver(thread))
            #expect(owned)
        }
        #expect(await actor.calls == 100)

        // A task that prefers the context as its task executor runs there too.
        let ctx = loop.ctx
        let taskThread = await Task(executorPreference: ctx.taskExecutor) { currentThreadID() }.value
        #expect(loop.isDriver(taskThread))

        // Outside any job, on the loop thread (a BH), the isolation check
        // passes: assumeIsolated asks the context, which is owned there.
        let calls = await loop.onLoop { actor.assumeIsolated { $0.calls } }
        #expect(calls == 100)
        #expect(ctx.isIsolatingCurrentContext() == false)
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("10^5 jobs from 4 threads run on the loop thread, in order per producer", .blockingLane, arguments: Driver.allCases)
    func jobsRunInOrderPerProducer(driver: Driver) throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let producers = 4
        let perProducer = 25_000
        let check = OrderCheck(producers: producers)
        let remaining = Countdown(producers * perProducer)
        let done = TestEvent()
        let dog = loop.harness.watchdog(60, "10^5 jobs")
        var threads: [NativeThread] = []
        for p in 0..<producers {
            threads.append(try NativeThread(name: "producer \(p)") {
                for i in 0..<perProducer {
                    Task(executorPreference: ctx.taskExecutor) {
                        if !loop.isDriver(currentThreadID()) || !ctx.isOwnedByCurrentThread {
                            check.offThread += 1
                        }
                        if check.last[p] != i - 1 { check.outOfOrder += 1 }
                        check.last[p] = i
                        if remaining.tick() { done.signal() }
                    }
                }
            })
        }
        for t in threads { t.join() }
        #expect(done.wait(seconds: 60), "jobs still queued: \(remaining.left)")
        #expect(!dog.disarm())
        loop.stop()
        #expect(check.outOfOrder == 0)
        #expect(check.offThread == 0)
        #expect(check.last == Array(repeating: perProducer - 1, count: producers))
        #expect(ctx.jobs.isEmpty)
    }

    @Test("a job's nested poll does not run the jobs queued meanwhile", arguments: Driver.allCases)
    func noJobsInsideJobs(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "nested poll in a job")
        let order = Recorder<String>()
        await Task(executorPreference: ctx.taskExecutor) {
            order.append("outer begins")
            Task(executorPreference: ctx.taskExecutor) { order.append("inner") }
            // A nested non-blocking poll inside the job: the inner job must
            // not run here, in the middle of the outer one.
            for _ in 0..<3 { _ = ctx.poll(blocking: false) }
            order.append("outer ends")
        }.value
        #expect(await eventually(within: 60) { order.all.count == 3 })
        #expect(order.all == ["outer begins", "outer ends", "inner"])
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("sleep(for:) and sleep(until:) wake at their deadline, not before", arguments: Driver.allCases)
    func sleepLateness(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "async sleeps")
        // Measured by a task on the context, so that its continuation runs on
        // the loop thread: a task on the global executor would also measure
        // how long the (2-thread) cooperative pool took to run it.
        let (earliest, worst) = try await Task(executorPreference: ctx.taskExecutor) {
            var earliest = Double.infinity
            var worst = 0.0
            for _ in 0..<10 {
                let start = ctx.now()
                try await ctx.sleep(for: .milliseconds(5))
                let slept = Double((ctx.now() - start).nanoseconds) / 1e6
                earliest = min(earliest, slept)
                worst = max(worst, slept - 5)
            }
            return (earliest, worst)
        }.value
        #expect(earliest >= 5, "woke early: \(earliest) ms")
        // A sanity bound only (the machine is shared): late by less than 1 s.
        #expect(worst < 1000, "worst lateness \(worst) ms")

        // From a task on the global executor too.
        let start = ctx.now()
        try await ctx.sleep(for: .milliseconds(5))
        #expect(Double((ctx.now() - start).nanoseconds) / 1e6 >= 5)

        // From a task on the context itself.
        let onContext = try await Task(executorPreference: ctx.taskExecutor) {
            try await ctx.sleep(for: .milliseconds(2))
            return currentThreadID()
        }.value
        #expect(loop.isDriver(onContext))

        // A deadline in the past returns on the next pass.
        try await ctx.sleep(until: AioInstant(nanoseconds: ctx.now().nanoseconds - 1_000_000_000))

        // The virtual clock: the sleep ends when the clock is advanced.
        let sleeper = Task { try await ctx.sleep(until: ctx.now(.virtual) + .seconds(5), clock: .virtual) }
        #expect(await eventually(within: 60) { ctx.timerLists[AioClock.virtual.rawValue].armedTimers == 1 })
        ctx.virtualClock.advance(by: .seconds(5))
        try await sleeper.value
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("cancelling a sleep disarms its timer and throws CancellationError", arguments: Driver.allCases)
    func cancelSleep(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "cancelled sleep")
        let timers = ctx.timerLists[AioClock.realtime.rawValue]
        let sleeper = Task { try await ctx.sleep(for: .seconds(3600)) }
        #expect(await eventually(within: 60) { timers.armedTimers == 1 })
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        #expect(timers.armedTimers == 0)

        // Already cancelled when it starts: throws at once, arms nothing.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await ctx.sleep(for: .seconds(3600))
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        #expect(timers.armedTimers == 0)
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("readable/writable on a pipe, through a handler that exists only while waited on", arguments: Driver.allCases)
    func readableWritable(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "readable/writable")
        let pipe = Pipe()
        let reader = Task { () async throws -> Int in
            try await ctx.readable(pipe.readFD)
            return pipe.drain()
        }
        #expect(await eventually(within: 60) { ctx.handlerCount == 1 })
        pipe.write(7)
        #expect(try await reader.value == 1)
        #expect(ctx.handlerCount == 0)

        try await ctx.writable(pipe.writeFD)  // an empty pipe is writable
        #expect(ctx.handlerCount == 0)

        // A reader and a writer on one socket at once share one handler.
        let pair = SocketPair()
        let r = Task { try await ctx.readable(pair.a) }
        #expect(await eventually(within: 60) { ctx.handlerCount == 1 })
        try await ctx.writable(pair.a)
        #expect(ctx.handlerCount == 1)  // the reader still waits
        var byte: UInt8 = 1
        #expect(Glibc.write(pair.b, &byte, 1) == 1)
        try await r.value
        #expect(ctx.handlerCount == 0)
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("readable: bad descriptors, a descriptor with a handler, cancellation", arguments: Driver.allCases)
    func readableErrors(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let dog = loop.harness.watchdog(60, "readable errors")
        await #expect(throws: AioError.badDescriptor(fd: -1, reason: "negative descriptor")) {
            try await ctx.readable(-1)
        }
        let pipe = Pipe()
        try ctx.setHandler(for: pipe.readFD, name: "mine", read: {})
        await #expect(throws: AioError.descriptorInUse(fd: pipe.readFD, handler: "mine")) {
            try await ctx.readable(pipe.readFD)
        }
        ctx.removeHandler(for: pipe.readFD)

        let waiter = Task { try await ctx.readable(pipe.readFD) }
        #expect(await eventually(within: 60) { ctx.handlerCount == 1 })
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(ctx.handlerCount == 0)
        #expect(ctx.fdWaiters.withLock { $0.isEmpty })
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("pool.run returns the result and delivers thrown errors, from any task", arguments: Driver.allCases)
    func poolRun(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let pool = ctx.threadPool
        let dog = loop.harness.watchdog(60, "pool.run")
        // From a task on the global executor: submitted through a BH.
        #expect(try await pool.run { 6 * 7 } == 42)
        await #expect(throws: Boom.self) { try await pool.run { () throws -> Int in throw Boom() } }
        // From a task on the context: submitted directly.
        let onContext = try await Task(executorPreference: ctx.taskExecutor) {
            let worker = try await pool.run { currentThreadID() }
            return (worker, currentThreadID())
        }.value
        #expect(!loop.isDriver(onContext.0))
        #expect(loop.isDriver(onContext.1))
        // Many at once.
        let sum = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 1...100 { group.addTask { try await pool.run { i } } }
            return try await group.reduce(0, +)
        }
        #expect(sum == 5050)
        await loop.onLoop { pool.shutdown() }
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("cancelling pool.run cancels a queued request", arguments: Driver.allCases)
    func cancelPoolRun(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let pool = ctx.threadPool
        pool.setThreadLimits(minimum: 0, maximum: 1)
        let dog = loop.harness.watchdog(60, "pool.run cancel")
        let release = TestEvent()
        let started = TestEventFlag()
        let blocker = Task {
            try await pool.run { () -> Int in
                started.set()
                _ = release.wait(seconds: 15)
                return 1
            }
        }
        #expect(await eventually(within: 60) { started.isSet })
        let ran = TestEventFlag()
        let queued = Task { try await pool.run { ran.set() } }
        #expect(await eventually(within: 60) {
            // Both submitted: one running, one queued behind it.
            pool.outstandingCountForTests(loop) == 2
        })
        queued.cancel()
        await #expect(throws: CancellationError.self) { try await queued.value }
        release.signal()
        #expect(try await blocker.value == 1)
        #expect(!ran.isSet)
        // Cancelled before it reaches the pool: throws at once.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await pool.run { 1 }
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        await loop.onLoop { pool.shutdown() }
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("checkIsolated traps off the context's thread, naming the context and the rule")
    func checkIsolatedTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ctx = try! AioContext(name: "isolated")
            ctx.checkIsolated()
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("AioContext 'isolated': isolation check failed"))
    }
}

/// The callee of the inline-switch tests: checks, from inside a call that
/// the runtime switched to inline, that every isolation assertion still
/// gives the exact answer.
actor Callee {
    let ctx: AioContext
    let elsewhere: AioContext
    init(ctx: AioContext, elsewhere: AioContext) {
        self.ctx = ctx
        self.elsewhere = elsewhere
    }
    nonisolated var unownedExecutor: UnownedSerialExecutor { ctx.asUnownedSerialExecutor() }

    /// The thread, and whether every assertion held: isolated to this
    /// context (through the runtime and through the context itself), and not
    /// to another context.
    func probe(caller: Caller) -> (thread: UInt, exact: Bool) {
        preconditionIsolated()            // the runtime's check for this actor
        caller.preconditionIsolated()     // the caller shares the executor
        ctx.preconditionIsolated()
        let exact = ctx.isIsolatingCurrentContext() == true
            && ctx.isOwnedByCurrentThread
            && elsewhere.isIsolatingCurrentContext() == false
        return (currentThreadID(), exact)
    }
}

/// The caller of the inline-switch tests: a second actor on the same context.
actor Caller {
    let ctx: AioContext
    init(ctx: AioContext) { self.ctx = ctx }
    nonisolated var unownedExecutor: UnownedSerialExecutor { ctx.asUnownedSerialExecutor() }

    /// Calls `callee` `n` times. Returns how many jobs the context's drain
    /// started meanwhile (0 when every call switched inline, at least `n`
    /// when each went through the queue), and whether every call ran on this
    /// thread with exact isolation answers.
    func callMany(_ callee: Callee, _ n: Int) async -> (jobs: Int, sameThread: Bool, exact: Bool) {
        let before = ctx.jobs.jobsRun
        let me = currentThreadID()
        var sameThread = true
        var exact = true
        for _ in 0..<n {
            let (thread, ok) = await callee.probe(caller: self)
            if thread != me { sameThread = false }
            if !ok { exact = false }
        }
        return (ctx.jobs.jobsRun - before, sameThread, exact)
    }
}

/// Non-isolated async code: where it runs is up to the task's preference.
nonisolated func whereAmI(_ ctx: AioContext) async -> (thread: UInt, owned: Bool) {
    (currentThreadID(), ctx.isOwnedByCurrentThread)
}

@Suite("Swift concurrency: inline switches between actors on one context", .timeLimit(.minutes(1)))
struct InlineSwitchTests {
    @Test("calls between two actors on one context switch inline; isolation checks stay exact", arguments: Driver.allCases)
    func inlineBetweenActors(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let elsewhere = try AioContext(name: "elsewhere")
        let dog = loop.harness.watchdog(60, "inline actor calls")
        let callee = Callee(ctx: loop.ctx, elsewhere: elsewhere)
        let caller = Caller(ctx: loop.ctx)
        // From a task without an executor preference (the common case).
        let (jobs, sameThread, exact) = await caller.callMany(callee, 1_000)
        #expect(jobs == 0, "\(jobs) jobs ran for 1,000 calls between actors on one context: the calls were enqueued, not switched inline")
        #expect(sameThread)
        #expect(exact)
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("a task preferring the context runs its non-isolated code there, and calls its actors on the same thread", arguments: Driver.allCases)
    func preferringTask(driver: Driver) async throws {
        let loop = try LoopThread(driver)
        let ctx = loop.ctx
        let elsewhere = try AioContext(name: "elsewhere")
        let dog = loop.harness.watchdog(60, "task preferring the context")
        let callee = Callee(ctx: ctx, elsewhere: elsewhere)
        let caller = Caller(ctx: ctx)
        let other = DefaultCounter()
        #expect(ctx.taskExecutor === ctx.taskExecutor, "one task executor per context while it is held")
        let report = await Task(executorPreference: ctx.taskExecutor) {
            var offContext = 0
            for _ in 0..<100 {
                // Out to a default actor (the global executor) and back: the
                // non-isolated code resumes on the context.
                await other.bump()
                let (thread, owned) = await whereAmI(ctx)
                if !loop.isDriver(thread) || !owned { offContext += 1 }
                if !loop.isDriver(currentThreadID()) { offContext += 1 }
            }
            let (_, sameThread, exact) = await caller.callMany(callee, 100)
            return (offContext, sameThread, exact)
        }.value
        #expect(report.0 == 0, "non-isolated code of a task preferring the context ran elsewhere \(report.0) times")
        #expect(report.1)
        #expect(report.2)
        #expect(await other.count == 100)
        #expect(!dog.disarm())
        loop.stop()
    }

    @Test("inside an inline call, asserting another context's actor traps")
    func inlineAssertionTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let home = try! IOThread(name: "home")
            try! home.start()
            let other = try! AioContext(name: "other-context")
            let callee = ContextActor(ctx: home.context)
            let stranger = ContextActor(ctx: other)
            let caller = Caller(ctx: home.context)
            // Caller → callee switches inline; the assertion runs there.
            await caller.relayTrap(callee, stranger)
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        // The runtime asks `isIsolatingCurrentContext()` (false: the thread
        // does not own that context) and traps with its own message.
        #expect(stderr.contains("Incorrect actor executor assumption"))
    }
}

/// A default actor (its jobs run on the global executor).
actor DefaultCounter {
    var count = 0
    func bump() { count += 1 }
}

extension Caller {
    func relayTrap(_ callee: ContextActor, _ stranger: ContextActor) async {
        await callee.trapOn(stranger)
    }
}

extension ContextActor {
    /// Asserts isolation to `stranger`, an actor on another context: traps.
    func trapOn(_ stranger: ContextActor) {
        stranger.preconditionIsolated()
    }
}

extension ThreadPool {
    /// `outstandingCount` read on the loop thread (it is context-thread state).
    func outstandingCountForTests(_ loop: LoopThread) -> Int {
        let box = Atomic<Int>(-1)
        let done = TestEvent()
        loop.ctx.scheduleOneshot {
            box.store(self.outstandingCount, ordering: .releasing)
            done.signal()
        }
        _ = done.wait(seconds: 10)
        return box.load(ordering: .acquiring)
    }
}
