#if Metrics
@_spi(AioInternals) @testable import Aio
import AioMetrics
import Glibc
import MetricsTestKit
import Testing

@Suite("AioMetrics: the context's statistics as swift-metrics", .blockingLane)
struct MetricsTests {
    @Test("counters equal the context's and the pool's statistics; gauges record the pool's state", arguments: Driver.allCases)
    func countersMatchStatistics(driver: Driver) throws {
        // Synchronous on purpose: its waits block the calling thread, which in
        // an async test would be one of the few cooperative threads that the
        // other suites' continuations need (a starved resume stalled it).
        let metrics = TestMetrics()
        let loop = try LoopThread(driver, name: "metered-\(driver)")
        let ctx = loop.ctx
        let reporter = AioMetricsReporter(context: ctx, dimensions: [("service", "test")], factory: metrics)
        let dims = [("context", ctx.name), ("service", "test")]

        // 100 BHs, 10 timers, 20 fd dispatches, 16 pool jobs (8 of them
        // cancelled while queued behind a single worker).
        let ran = Counter()
        for _ in 0..<100 {
            ctx.scheduleOneshot { ran.increment() }
        }
        let fired = Counter()
        let timers = (0..<10).map { i in ctx.makeTimer(name: "t\(i)") { _ in fired.increment() } }
        for timer in timers { timer.schedule(after: .microseconds(100)) }
        let pipe = Pipe()
        let reads = Counter()
        let delivered = Counter()
        try ctx.setHandler(for: pipe.readFD, name: "reader", read: {
            pipe.drain()
            reads.increment()
        })
        // Which wait is in progress, for the watchdog's message.
        let stage = Locked("BHs, timers")
        let dog = Watchdog(seconds: 25, "metrics workload", state: {
            "stage: \(stage.withLock { $0 }); BHs run \(ran.count)/100, timers fired \(fired.count)/10, reads \(reads.count), pool delivered \(delivered.count), pool \(ctx.threadPoolStatistics); \(ctx.debugState)"
        }, kick: { loop.harness.unblock() })
        stage.withLock { $0 = "fd dispatches" }
        for _ in 0..<20 {
            let before = reads.count
            pipe.write()
            while reads.count == before && !dog.hasFired { usleep(100) }
        }
        let gate = TestEvent()
        stage.withLock { $0 = "pool submissions (a BH)" }
        let submitted = TestEvent()
        ctx.scheduleOneshot {
            let pool = ctx.threadPool
            pool.setThreadLimits(minimum: 0, maximum: 1)
            var requests: [ThreadPoolRequest] = []
            for i in 0..<16 {
                requests.append(pool.submit({ if i == 0 { _ = gate.wait(seconds: 30) } }, completion: { _ in delivered.increment() }))
            }
            for request in requests[8...] { request.cancel() }
            submitted.signal()
        }
        #expect(submitted.wait(seconds: 20), "the submitting BH did not run")
        stage.withLock { $0 = "BHs, timers, cancellations delivered, worker blocked" }
        // Until the worker holds job 0 and jobs 1-7 wait behind it.
        func blocked() -> Bool {
            let pool = ctx.threadPoolStatistics
            return pool.running == 1 && pool.queued == 7
        }
        while ran.count < 100 || fired.count < 10 || delivered.count < 8 || !blocked(), !dog.hasFired { usleep(1_000) }
        reporter.report()
        // One job blocks the only worker: queued and running gauges see it.
        let queuedWhileBlocked = try metrics.expectGauge("aio_pool_jobs_queued", dims).lastValue
        let runningWhileBlocked = try metrics.expectGauge("aio_pool_jobs_running", dims).lastValue
        #expect(runningWhileBlocked == 1)
        #expect(queuedWhileBlocked == 7)
        gate.signal()
        stage.withLock { $0 = "every pool job delivered" }
        while (delivered.count < 16 || ctx.threadPoolStatistics.running > 0) && !dog.hasFired { usleep(1_000) }
        #expect(!dog.disarm())
        ctx.removeHandler(for: pipe.readFD)
        let shutDown = TestEvent()
        ctx.scheduleOneshot {
            ctx.threadPool.shutdown()
            shutDown.signal()
        }
        #expect(shutDown.wait(seconds: 20), "the pool did not shut down")
        // Stopped: the counters hold still while they are compared.
        loop.stop()
        reporter.report()
        reporter.report()  // nothing new: no counter grows twice

        let stats = ctx.statistics
        let pool = ctx.threadPoolStatistics
        func total(_ name: String) throws -> Int { Int(try metrics.expectCounter("aio_\(name)", dims).totalValue) }
        #expect(try total("bottom_halves_run") == stats.bottomHalvesRun)
        #expect(stats.bottomHalvesRun >= 100)
        #expect(try total("timers_fired") == stats.timersFired)
        #expect(stats.timersFired == 10)
        #expect(try total("fd_dispatches") == stats.fdDispatches)
        #expect(stats.fdDispatches >= 20)
        #expect(try total("iterations") == stats.iterations)
        #expect(try total("blocking_waits") == stats.blockingWaits)
        #expect(try total("eventfd_writes") == stats.eventfdWrites)
        #expect(try total("pool_jobs_submitted") == 16)
        #expect(try total("pool_jobs_completed") == 16)
        #expect(try total("pool_jobs_cancelled") == 8)
        #expect(pool.submitted == 16 && pool.completed == 16 && pool.cancelled == 8)
        #expect(try metrics.expectGauge("aio_pool_jobs_queued", dims).lastValue == 0)
        #expect(try metrics.expectGauge("aio_pool_jobs_running", dims).lastValue == 0)
    }

    @Test("start(every:) reports from a timer on the context while it runs; stop() reports the final counts")
    func periodicReports() throws {
        let metrics = TestMetrics()
        let loop = try LoopThread(.native, name: "metered-periodic")
        let ctx = loop.ctx
        let reporter = AioMetricsReporter(context: ctx, prefix: "svc", factory: metrics)
        reporter.start(every: .milliseconds(10))
        let ran = Counter()
        let dog = loop.harness.watchdog(20, "periodic reports")
        // Wait for a report that came from the timer, not from start().
        let counter = try metrics.expectCounter("svc_bottom_halves_run", [("context", ctx.name)])
        var scheduled = 0
        while counter.totalValue < 50 && !dog.hasFired {
            ctx.scheduleOneshot { ran.increment() }
            scheduled += 1
            usleep(500)
        }
        // Every one-shot ran before stop(): one still queued would run after
        // the final report, however briefly this thread was descheduled.
        while ran.count < scheduled && !dog.hasFired { usleep(500) }
        #expect(!dog.disarm(), "no periodic report counted 50 BHs, or the \(scheduled) one-shots did not all run (\(ran.count) ran)")
        reporter.stop()
        let afterStop = counter.totalValue
        #expect(afterStop == Int64(ctx.statistics.bottomHalvesRun))
        ctx.scheduleOneshot { ran.increment() }
        usleep(50_000)
        #expect(counter.totalValue == afterStop, "a report came after stop()")
        loop.stop()
    }
}
#else

#endif
