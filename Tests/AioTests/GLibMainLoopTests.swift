@_spi(AioInternals) @testable import Aio
import CGLibShim
import Glibc
import Testing

/// No quit is pending on `loop`: a new run blocks until the next quit, made
/// by another thread once the run is under way, rather than returning at
/// once. The run must return after that quit was sent: a run that returned
/// before it was ended by a quit left pending (however the threads were
/// scheduled; a time bound would fail when this thread is descheduled).
func expectNoQuitPending(_ loop: GLibMainLoop, _ comment: Comment? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(loop.pendingQuits.load(ordering: .acquiring) == 0, comment, sourceLocation: sourceLocation)
    let quitSent = Counter()
    let quitter = try NativeThread(name: "late-quit") {
        // Wait until the run is under way (bounded: a run that never
        // starts, or returns at once, fails below), then let it settle.
        let deadline = nowSeconds() + 20
        while !loop.isRunning && nowSeconds() < deadline { usleep(1_000) }
        usleep(50_000)
        quitSent.increment()
        loop.quit()
    }
    // A lost late quit would leave the run asleep: the watchdog quits it.
    let dog = Watchdog(seconds: 40, "a run ended by a quit made while it runs", kick: { loop.quit() })
    loop.run()
    let endedByOurQuit = quitSent.count == 1
    quitter.join()
    #expect(!dog.disarm(), "the late quit did not end the run", sourceLocation: sourceLocation)
    #expect(endedByOurQuit, comment, sourceLocation: sourceLocation)
}

@Suite("GLibMainLoop and main-actor one-shots")
struct GLibMainLoopTests {
    @Test("a quit that comes before run is not lost: the next run returns at once, and only that one", .blockingLane)
    func quitBeforeRun() throws {
        let mainContext = g_main_context_new()!
        defer { g_main_context_unref(mainContext) }
        let loop = GLibMainLoop(context: mainContext)
        loop.quit()
        let dog = Watchdog(seconds: 10, "run after an early quit", kick: { loop.quit() })
        loop.run()
        #expect(!dog.disarm(), "run() slept through a quit made before it")
        #expect(!loop.isRunning)

        // The quit was consumed: a second run blocks until the next quit.
        try expectNoQuitPending(loop, "the early quit ended two runs")
    }

    @Test("with two threads in run, each quit ends exactly one of them, and no quit is left over", .blockingLane)
    func twoRunnersOneQuitEach() throws {
        let mainContext = g_main_context_new()!
        defer { g_main_context_unref(mainContext) }
        let loop = GLibMainLoop(context: mainContext)
        // An idle source keeps both runners iterating (taking turns at the
        // context), which is when both could see the same quit.
        let idle = g_idle_source_new()!
        g_source_set_callback(idle, { _ in 1 }, nil, nil)
        g_source_attach(idle, mainContext)
        defer { g_source_destroy(idle); g_source_unref(idle) }
        let returns = Counter()
        let runners = try (0..<2).map { i in
            try NativeThread(name: "runner-\(i)") {
                loop.run()
                returns.increment()
            }
        }
        let dog = Watchdog(seconds: 20, "two runners", kick: { loop.quit(); loop.quit() })
        while !loop.isRunning && !dog.hasFired { sched_yield() }
        usleep(20_000)
        loop.quit()
        let deadline = nowSeconds() + 10
        while returns.count < 1 && nowSeconds() < deadline { usleep(1_000) }
        usleep(50_000)  // time for a second runner to (wrongly) take the same quit
        #expect(returns.count == 1, "one quit ended \(returns.count) runs")
        loop.quit()
        for runner in runners { runner.join() }
        #expect(!dog.disarm())
        #expect(returns.count == 2)
        // Nothing left over: a new run blocks until the next quit.
        try expectNoQuitPending(loop, "a quit was left over")
    }

    @Test("quit from other threads ends a run in which GLib sources and an attached context keep working", .blockingLane)
    func quitFromAnotherThread() throws {
        let mainContext = g_main_context_new()!
        defer { g_main_context_unref(mainContext) }
        let loop = GLibMainLoop(context: mainContext)
        let ctx = try AioContext(name: "looped")
        let loopThread = try NativeThread(name: "glib-loop") {
            ctx.setHomeThread()
            precondition(g_main_context_acquire(loop.context) != 0, "the loop thread acquires its GMainContext")
            ctx.attach(to: loop.context)
            g_main_context_release(loop.context)
            loop.run()
            ctx.detach()
        }
        let ran = Counter()
        let dog = Watchdog(seconds: 20, "BHs through GLibMainLoop", state: { ctx.debugState }, kick: { loop.quit() })
        for _ in 0..<1_000 {
            let before = ran.count
            ctx.scheduleOneshot { ran.increment() }
            while ran.count == before && !dog.hasFired { sched_yield() }
        }
        #expect(loop.isRunning)
        loop.quit()
        loopThread.join()
        #expect(!dog.disarm())
        #expect(ran.count == 1_000)
    }

    @Test("a main-actor one-shot on a context driven off the main thread traps, naming the context and the rule", .timeLimit(.minutes(1)))
    func mainActorOneshotOffMainTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ready = TestEvent()
            let thread = try! NativeThread(name: "not-main") {
                let ctx = try! AioContext(name: "worker-home")
                ctx.scheduleOneshot(name: "update-ui", onMainActor: { print("must not run") })
                ready.signal()
                while true { ctx.poll(blocking: true) }
            }
            _ = ready.wait(seconds: 10)
            thread.join()
        }
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("AioContext 'worker-home': the main-actor one-shot 'update-ui' ran on a thread that is not the main thread"))
    }
}
