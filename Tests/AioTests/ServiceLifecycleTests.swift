#if ServiceLifecycle
@_spi(AioInternals) @testable import Aio
import AioServiceLifecycle
import CGLibShim
import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// Pool jobs submitted on an IOThread, and how each was delivered.
private final class JobLedger: Sendable {
    let submitted = Atomic<Int>(0)
    let completed = Atomic<Int>(0)
    let cancelled = Atomic<Int>(0)
    let other = Atomic<Int>(0)
    var delivered: Int {
        completed.load(ordering: .relaxed) + cancelled.load(ordering: .relaxed) + other.load(ordering: .relaxed)
    }

    /// Keeps `batch` jobs of `jobMicroseconds` in flight on `context`'s pool
    /// (one worker), each completion submitting the next.
    func keepBusy(_ context: AioContext, batch: Int, jobMicroseconds: UInt32) {
        @Sendable func submitOne() {
            submitted.wrappingAdd(1, ordering: .relaxed)
            context.threadPool.submit({ usleep(jobMicroseconds) }) { result in
                switch result {
                case .success:
                    self.completed.wrappingAdd(1, ordering: .relaxed)
                    submitOne()
                case .failure(is CancellationError):
                    self.cancelled.wrappingAdd(1, ordering: .relaxed)
                case .failure:
                    self.other.wrappingAdd(1, ordering: .relaxed)
                }
            }
        }
        context.scheduleOneshot {
            context.threadPool.setThreadLimits(minimum: 0, maximum: 1)
            for _ in 0..<batch { submitOne() }
        }
    }
}

private let quietLogger = Logger(label: "aio-test") { _ in SwiftLogNoOpLogHandler() }

@Suite("AioServiceLifecycle: IOThreads and GLib loops as services", .timeLimit(.minutes(1)))
struct ServiceLifecycleTests {
    @Test("graceful shutdown of an IOThread service with pool work in flight: queued jobs cancelled, running ones finish, every completion delivered once",
          arguments: [false, true])
    func ioThreadGracefulShutdown(cancelInstead: Bool) async throws {
        let service = try IOThreadService(name: cancelInstead ? "svc-cancel" : "svc-graceful")
        let ledger = JobLedger()
        ledger.keepBusy(service.context, batch: 32, jobMicroseconds: 2_000)
        let group = ServiceGroup(services: [service], logger: quietLogger)
        let running = Task { try await group.run() }
        #expect(await eventually(within: 10) { ledger.completed.load(ordering: .relaxed) >= 5 },
                "the IOThread's pool never completed work")
        if cancelInstead {
            running.cancel()
        } else {
            await group.triggerGracefulShutdown()
        }
        try await running.value
        let submitted = ledger.submitted.load(ordering: .relaxed)
        #expect(ledger.delivered == submitted, "submitted \(submitted), delivered \(ledger.delivered)")
        #expect(ledger.other.load(ordering: .relaxed) == 0)
        #expect(ledger.cancelled.load(ordering: .relaxed) >= 31, "the queued jobs (at least 31 behind one worker) were cancelled")
        let pool = service.context.threadPoolStatistics
        #expect(pool.completed == submitted && pool.running == 0 && pool.queued == 0)
        #expect(service.context.threadPool.outstandingCount == 0)
    }

    @Test("a GLib main loop service runs its GMainContext, with a context attached, until graceful shutdown")
    func glibLoopService() async throws {
        let mainContext = g_main_context_new()!
        defer { g_main_context_unref(mainContext) }
        let loop = GLibMainLoop(context: mainContext)
        let ctx = try AioContext(name: "on-glib-service")
        ctx.attach(to: mainContext)
        defer { ctx.detach() }
        let service = GLibMainLoopService(loop: loop, threadName: "svc-glib")
        let group = ServiceGroup(services: [service], logger: quietLogger)
        let running = Task { try await group.run() }
        let ran = Counter()
        for _ in 0..<100 {
            let before = ran.count
            ctx.scheduleOneshot { ran.increment() }
            #expect(await eventually(within: 10) { ran.count > before }, "a BH did not run under the service's loop")
        }
        #expect(loop.isRunning)
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(!loop.isRunning)
        #expect(ran.count == 100)
    }

    @Test("a GLib main loop service returns when someone else quits its loop, and leaves no quit pending")
    func glibLoopQuitElsewhere() async throws {
        let mainContext = g_main_context_new()!
        defer { g_main_context_unref(mainContext) }
        let loop = GLibMainLoop(context: mainContext)
        let service = GLibMainLoopService(loop: loop, threadName: "svc-glib-quit")
        let ended = Task {
            await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                _ = try? await group.next()
            }
        }
        #expect(await eventually(within: 10) { loop.isRunning })
        loop.quit()
        await ended.value
        #expect(!loop.isRunning)
        // The service did not leave a quit of its own behind: a new run
        // blocks until the next quit.
        let quitter = try NativeThread(name: "late-quit") {
            usleep(50_000)
            loop.quit()
        }
        let started = nowSeconds()
        loop.run()
        quitter.join()
        #expect(nowSeconds() - started >= 0.04)
    }
}
#else

#endif
