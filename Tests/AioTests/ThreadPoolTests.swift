@_spi(AioInternals) @testable import Aio
import Glibc
import Synchronization
import Testing

/// test-thread-pool.c's `WorkerTestData`: `n` is claimed 0→1 by the job,
/// 1→3 when it finishes (cancel tests), 0→4 when the test cancels it first.
final class PoolJob: @unchecked Sendable {
    let n = Atomic<Int>(0)
    var ret: Result<Int, any Error>? = nil   // written by the completion (context thread)
    var request: ThreadPoolRequest?
}

@Suite("Thread pool (ported from test-thread-pool.c)")
struct ThreadPoolTests {
    /// Ports /thread-pool/submit (since 2025 /thread-pool/submit-no-complete).
    @Test("submit without a completion", .blockingLane, arguments: Driver.allCases)
    func submit(driver: Driver) throws {
        let h = try Harness(driver)
        let job = PoolJob()
        h.ctx.threadPool.submit { job.n.wrappingAdd(1, ordering: .releasing) }
        #expect(h.iterate(until: { job.n.load(ordering: .acquiring) != 0 }, within: 10, "submit"))
        #expect(job.n.load(ordering: .acquiring) == 1)
        h.ctx.threadPool.shutdown()
        h.finish()
    }

    /// Ports /thread-pool/submit-aio.
    @Test("the completion runs on the context's thread, never inside submit", .blockingLane, arguments: Driver.allCases)
    func submitAio(driver: Driver) throws {
        let h = try Harness(driver)
        let job = PoolJob()
        let completedOnLoop = Counter()
        h.ctx.threadPool.submit({ () -> Int in
            job.n.wrappingAdd(1, ordering: .relaxed)
            return 0
        }, completion: { result in
            if h.isDriver(currentThreadID()) && h.ctx.isOwnedByCurrentThread { completedOnLoop.increment() }
            job.ret = result
        })
        #expect(job.ret == nil, "the result stays 'in progress' until the loop runs")
        #expect(h.iterate(until: { job.ret != nil }, within: 10, "submit-aio"))
        #expect(job.n.load(ordering: .relaxed) == 1)
        #expect((try? job.ret?.get()) == 0)
        #expect(completedOnLoop.count == 1)
        h.ctx.threadPool.shutdown()
        h.finish()
    }

    /// Ports /thread-pool/submit-many: more jobs than threads.
    @Test("100 jobs all complete", .blockingLane, arguments: Driver.allCases)
    func submitMany(driver: Driver) throws {
        let h = try Harness(driver)
        let jobs = (0..<100).map { _ in PoolJob() }
        try submitMany(h, jobs)
        h.ctx.threadPool.shutdown()
        h.finish()
    }

    private func submitMany(_ h: Harness, _ jobs: [PoolJob]) throws {
        for job in jobs {
            job.request = h.ctx.threadPool.submit({ () -> Int in
                job.n.wrappingAdd(1, ordering: .relaxed)
                return 0
            }, completion: { job.ret = $0 })
        }
        #expect(h.iterate(until: { !jobs.contains(where: { $0.ret == nil }) }, within: 20, "submit-many"))
        for job in jobs {
            #expect(job.n.load(ordering: .relaxed) == 1)
            #expect((try? job.ret?.get()) == 0)
        }
    }

    /// Ports /thread-pool/cancel (sync: waits for running jobs) and
    /// /thread-pool/cancel-async, with the exact per-job states.
    @Test("cancel queued jobs; running ones complete", .blockingLane, arguments: Driver.allCases, [true, false])
    func cancel(driver: Driver, sync: Bool) throws {
        let h = try Harness(driver)
        // Warm the pool up, as the QEMU test does.
        try submitMany(h, (0..<100).map { _ in PoolJob() })
        let jobs = (0..<100).map { _ in PoolJob() }
        for job in jobs {
            job.request = h.ctx.threadPool.submit({ () -> Int in
                // Claim the job; if the test cancelled it first, do nothing.
                var expected = 0
                guard job.n.compareExchange(expected: expected, desired: 1, ordering: .acquiringAndReleasing).exchanged else { return 0 }
                usleep(500_000)
                expected = 1
                _ = job.n.compareExchange(expected: expected, desired: 3, ordering: .acquiringAndReleasing)
                return 0
            }, completion: { job.ret = $0 })
        }
        // One notify and one non-blocking poll let the spawn BH run.
        h.ctx.notify()
        h.iterate(blocking: false)
        usleep(250_000)
        let outstanding = jobs.filter { $0.ret == nil }.count
        #expect(outstanding > 50)
        // Cancel the jobs nobody started (0→4), as the test does.
        var cancelled = 0
        for job in jobs where job.n.compareExchange(expected: 0, desired: 4, ordering: .acquiringAndReleasing).exchanged {
            job.request?.cancel()
            cancelled += 1
        }
        #expect(cancelled < 100, "some jobs were already running")
        #expect(cancelled > 0)
        if sync {
            // A synchronous cancel of the rest waits for the running ones.
            for job in jobs { h.ctx.waitWhile { job.ret == nil } }
        }
        #expect(h.iterate(until: { !jobs.contains(where: { $0.ret == nil }) }, within: 20, "cancel"))
        for job in jobs {
            switch job.n.load(ordering: .acquiring) {
            case 3:
                #expect((try? job.ret?.get()) == 0, "a job that ran completes normally")
            case 4:
                #expect(throws: CancellationError.self) { try job.ret?.get() }
            case let other:
                Issue.record("job in unexpected state \(other)")
            }
        }
        h.ctx.threadPool.shutdown()
        h.finish()
    }

    @Test("an error thrown by the work reaches the completion", .blockingLane)
    func thrownError() throws {
        struct Boom: Error, Equatable {}
        let ctx = try AioContext(name: "errors")
        final class Box: @unchecked Sendable { var result: Result<Int, any Error>? }
        let box = Box()
        ctx.threadPool.submit({ () -> Int in throw Boom() }, completion: { box.result = $0 })
        let dog = Watchdog(seconds: 10, "a throwing job", state: { ctx.debugState }, kick: { ctx.notify() })
        while box.result == nil && !dog.hasFired { ctx.poll(blocking: true) }
        #expect(!dog.disarm())
        #expect(throws: Boom.self) { try box.result?.get() }
        ctx.threadPool.shutdown()
    }

    @Test("idle workers above the minimum exit after the idle timeout", .blockingLane)
    func shrinks() throws {
        let ctx = try AioContext(name: "shrink")
        let pool = ctx.threadPool
        pool.idleTimeout = .milliseconds(50)
        let done = Counter()
        for _ in 0..<8 {
            pool.submit({ usleep(30_000) }, completion: { _ in done.increment() })
        }
        let dog = Watchdog(seconds: 10, "8 short jobs", state: { ctx.debugState }, kick: { ctx.notify() })
        while done.count < 8 && !dog.hasFired { ctx.poll(blocking: true) }
        #expect(!dog.disarm())
        let peak = pool.workerCount
        #expect(peak >= 1)
        let deadline = nowSeconds() + 30
        while pool.workerCount > 0 && nowSeconds() < deadline { usleep(10_000) }
        #expect(pool.workerCount == 0, "idle workers exit after the timeout (peak \(peak))")
        pool.setThreadLimits(minimum: 2, maximum: 4)
        ctx.poll(blocking: false)   // the spawn BH runs on the context's thread
        let spawnDeadline = nowSeconds() + 30
        while pool.workerCount < 2 && nowSeconds() < spawnDeadline { ctx.poll(blocking: false); usleep(1_000) }
        usleep(200_000)
        #expect(pool.workerCount == 2, "the minimum is kept even when idle")
        pool.shutdown()
        #expect(pool.workerCount == 0)
    }

    @Test("shutdown with work in flight: every request completes or is cancelled", .blockingLane)
    func shutdownWithPendingWork() throws {
        let ctx = try AioContext(name: "shutdown")
        let pool = ctx.threadPool
        pool.setThreadLimits(minimum: 0, maximum: 2)
        final class Outcomes: @unchecked Sendable { var ok = 0; var cancelled = 0; var other = 0 }
        let outcomes = Outcomes()
        // Jobs hold their worker until the gate opens, which the first
        // cancellation's completion does: shutdown() delivers it from its
        // poll, after it cancelled the queue. So at most two jobs run and
        // the rest are still queued when shutdown() cancels them, however
        // the threads are scheduled.
        let started = Counter()
        let gate = Counter()
        for _ in 0..<20 {
            pool.submit({ () -> Int in
                started.increment()
                let deadline = nowSeconds() + 30   // bounded: the watchdog reports a hang
                while gate.count == 0 && nowSeconds() < deadline { usleep(1_000) }
                return 1
            }, completion: { result in
                switch result {
                case .success: outcomes.ok += 1
                case .failure(let error) where error is CancellationError:
                    outcomes.cancelled += 1
                    gate.increment()
                case .failure: outcomes.other += 1
                }
            })
        }
        // Let a worker start and take a job (the spawn is a BH).
        let startDeadline = nowSeconds() + 10
        while started.count == 0 && nowSeconds() < startDeadline { ctx.poll(blocking: false); usleep(1_000) }
        #expect(started.count > 0, "no job started within 10 s")
        let dog = Watchdog(seconds: 40, "shutdown with work in flight", state: { ctx.debugState }, kick: { ctx.notify() })
        pool.shutdown()
        #expect(!dog.disarm())
        #expect(outcomes.ok + outcomes.cancelled == 20, "nothing is lost")
        #expect(outcomes.other == 0)
        #expect(outcomes.cancelled > 0, "queued work is cancelled")
        #expect(outcomes.ok > 0, "running work completes")
        #expect(pool.outstandingCount == 0)
    }

    @Test("tearing down a context with pool work in flight traps")
    func teardownWithWorkInFlight() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            do {
                let ctx = try! AioContext(name: "busy-pool")
                ctx.threadPool.submit { usleep(100_000) }
                withExtendedLifetime(ctx) {}
            }
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("AioContext 'busy-pool' torn down with 1 thread-pool request(s) in flight"))
    }
}

@Suite("waitWhile, kick and IOThreads")
struct WaitAndIOThreadTests {
    @Test("waitWhile on the context's thread returns once a worker changes the condition and kicks", .blockingLane)
    func waitWhileKick() throws {
        let ctx = try AioContext(name: "wait")
        let flag = DoneFlag()
        let worker = try NativeThread(name: "setter") {
            usleep(30_000)
            flag.set()
            AioWait.kick()
        }
        let dog = Watchdog(seconds: 30, "waitWhile", state: { ctx.debugState }, kick: { ctx.notify() })
        ctx.waitWhile { !flag.isSet }
        worker.join()
        #expect(!dog.disarm())
        #expect(flag.isSet)
    }

    @Test("waitWhile from a thread that is neither the context's nor the main one traps")
    func waitWhileWrongThread() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ctx = try! AioContext(name: "elsewhere")
            let t = try! NativeThread(name: "stranger") { ctx.waitWhile { true } }
            t.join()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("AioContext 'elsewhere': waitWhile on a thread that is neither"))
    }

    @Test("an IOThread runs 100,000 one-shots posted from 2 threads, on its own thread", .blockingLane)
    func ioThreadOneshots() throws {
        let io = try IOThread(name: "io-test")
        try io.start()
        let ran = Counter()
        let offThread = Counter()
        let ioThreadID = Atomic<UInt>(0)
        io.context.runAndWaitFromAnywhere { ioThreadID.store(UInt(pthread_self()), ordering: .releasing) }
        let producers = try (0..<2).map { p in
            try NativeThread(name: "post-\(p)") {
                for _ in 0..<50_000 {
                    io.context.scheduleOneshot {
                        if UInt(pthread_self()) != ioThreadID.load(ordering: .acquiring) { offThread.increment() }
                        ran.increment()
                    }
                }
            }
        }
        for p in producers { p.join() }
        let deadline = nowSeconds() + 30
        while ran.count < 100_000 && nowSeconds() < deadline { usleep(1_000) }
        io.stop()
        io.join()
        #expect(ran.count == 100_000)
        #expect(offThread.count == 0)
    }

    @Test("runAndWait from the main thread runs the closure on an IOThread", .blockingLane)
    func runAndWait() throws {
        let main = try AioContext(name: "main")
        main.makeMain()
        let io = try IOThread(name: "io-run")
        try io.start()
        let ranOn = Atomic<UInt>(0)
        let dog = Watchdog(seconds: 10, "runAndWait on an IOThread", state: { io.context.debugState },
                           kick: { main.notify() })
        io.context.runAndWait { ranOn.store(UInt(pthread_self()), ordering: .releasing) }
        #expect(!dog.disarm())
        #expect(ranOn.load(ordering: .acquiring) != 0)
        #expect(ranOn.load(ordering: .acquiring) != UInt(pthread_self()))
        io.stop()
        io.join()
        withExtendedLifetime(main) {}
    }
}

extension AioContext {
    /// Test helper: posts `body` and blocks on an event (not a poll) until it ran.
    func runAndWaitFromAnywhere(_ body: @escaping @Sendable () -> Void) {
        let done = TestEvent()
        scheduleOneshot { body(); done.signal() }
        _ = done.wait(seconds: 10)
    }
}
