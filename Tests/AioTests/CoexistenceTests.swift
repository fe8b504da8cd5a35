@_spi(AioInternals) @testable import Aio
import CGLibShim
import Glibc
import Synchronization
import Testing

/// A GLib thread that iterates one GMainContext (blocking) until stopped,
/// and a periodic GLib timeout on the same
/// GMainContext that counts its ticks: GLib's progress, as a user's other
/// sources see it.
final class GLibIterator: @unchecked Sendable {
    // @unchecked Sendable: `thread` is written in init and by `stop` on the
    // test thread only; the rest is immutable or atomic.
    let mc: MainContextRef
    let ticks = Counter()
    let threadID = ThreadIDBox()
    private let stopping = TestEventFlag()
    private var thread: NativeThread?
    private var tickSource: UnsafeMutablePointer<GSource>?

    init(_ mc: MainContextRef, tickMs: UInt32 = 0) throws {
        self.mc = mc
        if tickMs > 0 {
            let source = g_timeout_source_new(tickMs)!
            g_source_set_callback(source, { data in
                Unmanaged<Counter>.fromOpaque(data!).takeUnretainedValue().increment()
                return 1  // G_SOURCE_CONTINUE
            }, Unmanaged.passUnretained(ticks).toOpaque(), nil)
            g_source_attach(source, mc.raw)
            tickSource = source
        }
        let stopping = self.stopping, id = threadID
        let started = TestEvent()
        thread = try NativeThread(name: "glib-iterator") {
            id.value.store(currentThreadID(), ordering: .releasing)
            started.signal()
            while !stopping.isSet {
                g_main_context_iteration(mc.raw, 1)
            }
        }
        precondition(started.wait(seconds: 10), "GLib thread did not start")
    }

    var isCurrentThread: Bool { currentThreadID() == threadID.value.load(ordering: .acquiring) }

    /// Stops and joins the thread; ends the process with a message if it
    /// does not stop within 10 s (it is stuck: a deadlock).
    func stop(_ what: String) {
        stopping.set()
        g_main_context_wakeup(mc.raw)
        let joined = TestEvent()
        let thread = self.thread!
        let joiner = try! NativeThread(name: "glib-iterator-join") { thread.join(); joined.signal() }
        if !joined.wait(seconds: 10) {
            print("\(what): the GLib thread did not stop within 10 s (stuck in a hook?)")
            fflush(nil)
            _exit(1)
        }
        joiner.join()
        self.thread = nil
        if let tickSource {
            g_source_destroy(tickSource)
            g_source_unref(tickSource)
            self.tickSource = nil
        }
    }
}

/// Runs `body` on a new thread and waits for it; ends the process with a
/// message if it does not finish within `seconds` (a deadlock cannot be
/// kicked).
func runBounded(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () -> Void) throws {
    let done = TestEvent()
    let thread = try NativeThread(name: "bounded") { body(); done.signal() }
    if !done.wait(seconds: seconds) {
        print("\(what) did not finish within \(seconds) s: deadlock")
        fflush(nil)
        _exit(1)
    }
    thread.join()
}

/// Runs `body` on its own thread, which counts its steps in `steps`; ends
/// the process with a message if a step takes longer than `seconds`. For
/// work whose steps wait for GLib's acquire, which is not fair: under load a
/// step may take seconds, but a deadlock never finishes one.
func runMakingProgress(_ seconds: Double, _ what: String, steps: Counter,
                       _ body: @escaping @Sendable () -> Void) throws {
    let done = TestEvent()
    let thread = try NativeThread(name: "bounded") { body(); done.signal() }
    var seen = steps.count
    while !done.wait(seconds: seconds) {
        let now = steps.count
        if now == seen {
            print("\(what): no step finished within \(seconds) s (\(now) done): deadlock")
            fflush(nil)
            _exit(1)
        }
        seen = now
    }
    thread.join()
}

/// The configuration this library is built for: one context driven by a GLib
/// thread (its GSource) and natively at the same time. One test per defect
/// found in that configuration; each is bounded and fails with a message.
@Suite("Both drivers at once: GLib thread and native owner")
struct CoexistenceTests {
    private static func attached(_ name: String) throws -> (AioContext, MainContextRef) {
        let ctx = try AioContext(name: name)
        let mc = MainContextRef(raw: g_main_context_new())
        ctx.attach(to: mc.raw)
        return (ctx, mc)
    }

    private static func finish(_ ctx: AioContext, _ mc: MainContextRef) {
        ctx.detach()
        while g_main_context_iteration(mc.raw, 0) != 0 {}
        g_main_context_unref(mc.raw)
    }

    /// Defect 1: the GSource hooks waited for ownership while GLib held its
    /// GMainContext; a BH run by the native owner that waits for that
    /// GMainContext took the two in the reverse order (deadlock within 5
    /// rounds). The hooks now only try; the BH's GLib iteration succeeds.
    @Test("a native owner's BH that iterates the GMainContext does not deadlock with the GLib thread", .blockingLane)
    func ownerBHIteratesGLib() throws {
        let (ctx, mc) = try Self.attached("lock-order")
        let glib = try GLibIterator(mc)
        let iterated = Counter()
        let bh = ctx.makeBottomHalf(name: "iterates-glib") { _ in
            // Blocks until this thread can acquire the GMainContext, then
            // runs one iteration (it must not sleep: see the nested test).
            g_main_context_iteration(mc.raw, 1)
            // And the other waiting form: loop until the acquire succeeds.
            while g_main_context_acquire(mc.raw) == 0 { sched_yield() }
            g_main_context_release(mc.raw)
            iterated.increment()
        }
        // Each round waits for GLib's iteration to let the GMainContext go:
        // deferred, it polls 1 ms at a time and takes the context straight
        // back, and GLib's acquire is not fair, so a round takes up to about
        // a second unloaded (20 rounds: 0.8-27 s measured, before and after
        // GLib's own wake-up fd), and far longer on a loaded machine under
        // AddressSanitizer (20 rounds took over 90 s beside two CPU hogs).
        // A deadlock never finishes a round: each round is bounded, not
        // the 20 together, and generously (a round took over 60 s beside
        // two CPU hogs): the wrong-order wait this test is about traps at
        // once in debug builds (the lock-order check), so the bound is the
        // backstop for a deadlock that check cannot see.
        try runMakingProgress(180, "rounds of an owner BH iterating the GMainContext", steps: iterated) {
            for _ in 0..<20 {
                ctx.withOwnership {
                    bh.schedule()
                    // Owned throughout: this thread, not GLib, runs the BH.
                    while ctx.poll(blocking: false) {}
                }
                usleep(1_000)
            }
        }
        #expect(iterated.count == 20)
        glib.stop("lock order")
        bh.delete()
        ctx.poll(blocking: false)
        Self.finish(ctx, mc)
    }

    /// Defect 2: while a native owner is busy, the GSource's hooks waited for
    /// ownership, so no other source of the GMainContext ran (a 10 ms
    /// timeout ticked 0 times in 1 s). Now they report "not mine now" and the
    /// owner's release wakes GLib to look again.
    @Test("a busy native owner does not starve GLib's other sources, and GLib runs the context after it lets go", .blockingLane)
    func busyOwnerDoesNotStarveGLib() throws {
        let (ctx, mc) = try Self.attached("starvation")
        let glib = try GLibIterator(mc, tickMs: 10)
        let spins = Counter()
        let busy = ctx.makeBottomHalf(name: "busy") { bh in
            spins.increment()
            bh.schedule()
        }
        let start = nowSeconds()
        let ticksBefore = glib.ticks.count
        // Half a second of a whole CPU: short, so as not to starve the
        // timing-sensitive tests the suite runs beside this one.
        try runBounded(20, "a busy owner for 0.5 s") {
            ctx.withOwnership {
                busy.schedule()
                while nowSeconds() - start < 0.5 { ctx.poll(blocking: false) }
                busy.cancel()
            }
        }
        let ticks = glib.ticks.count - ticksBefore
        #expect(ticks >= 10, "GLib's 10 ms timeout ticked \(ticks) times in 0.5 s while a native owner was busy")
        #expect(spins.count > 1000)
        // The owner let go: GLib now runs the context's work on its own.
        let ranOnGLib = Counter()
        ctx.scheduleOneshot {
            if glib.isCurrentThread { ranOnGLib.increment() }
        }
        let deadline = nowSeconds() + 10
        while ranOnGLib.count == 0 && nowSeconds() < deadline { usleep(1_000) }
        #expect(ranOnGLib.count == 1, "after the owner let go, GLib did not run the context's work")
        glib.stop("starvation")
        busy.delete()
        ctx.poll(blocking: false)
        Self.finish(ctx, mc)
    }

    /// Defect 3: one readiness observed by both polls was dispatched by both
    /// (12 to 264 extra read callbacks that found nothing, in 2,000 bytes).
    /// What a poll observed is now re-checked if another dispatch came first.
    @Test("a readiness seen by the GLib thread and a native poller is dispatched once", .blockingLane)
    func readinessDispatchedOnce() throws {
        let loop = try LoopThread(.both, name: "dispatch-once")
        let pipe = Pipe()
        let bytes = Counter(), empty = Counter()
        try loop.ctx.setHandler(for: pipe.readFD, name: "reader", read: {
            var b: UInt8 = 0
            if Glibc.read(pipe.readFD, &b, 1) == 1 { bytes.increment() } else { empty.increment() }
        })
        let dog = loop.harness.watchdog(60, "2,000 single bytes")
        for i in 0..<2_000 {
            pipe.write()
            while bytes.count <= i && !dog.hasFired { usleep(20) }
            if dog.hasFired { break }
            usleep(100)  // let both drivers go back to sleep
        }
        #expect(!dog.disarm())
        #expect(bytes.count == 2_000)
        #expect(empty.count == 0, "\(empty.count) read callbacks found nothing to read: a readiness was dispatched twice")
        loop.ctx.removeHandler(for: pipe.readFD)
        loop.stop()
    }

    /// Defect 4: a blocking GLib iteration nested in a GSource dispatch slept
    /// while holding ownership; another thread waited the whole sleep
    /// (300 ms). A nested iteration now does not sleep while it owns the
    /// context.
    @Test("a nested blocking GLib iteration inside a dispatch does not sleep holding ownership", .blockingLane)
    func nestedGLibIterationDoesNotSleepOwning() throws {
        let (ctx, mc) = try Self.attached("nested")
        // Something for GLib to wait for: a timeout 1 s away.
        let far = g_timeout_source_new(1_000)!
        g_source_set_callback(far, { _ in 1 }, nil, nil)
        g_source_attach(far, mc.raw)
        let inDispatch = TestEvent()
        let nestedMs = Locked<Double>(-1)
        ctx.scheduleOneshot {
            inDispatch.signal()
            let start = nowSeconds()
            // The first nested iteration sees the notify that scheduled this
            // one-shot and does not sleep anyway; the second would sleep
            // until the 1 s timeout, holding ownership.
            g_main_context_iteration(mc.raw, 1)
            g_main_context_iteration(mc.raw, 1)
            nestedMs.withLock { $0 = (nowSeconds() - start) * 1000 }
        }
        let waitedMs = Locked<Double>(-1)
        let other = try NativeThread(name: "wants-ownership") {
            guard inDispatch.wait(seconds: 10) else { return }
            let start = nowSeconds()
            ctx.acquire()
            waitedMs.withLock { $0 = (nowSeconds() - start) * 1000 }
            ctx.release()
        }
        try runBounded(30, "the dispatch with a nested iteration") {
            // This thread is the GLib thread: the one-shot runs in its dispatch.
            while nestedMs.withLock({ $0 }) < 0 { g_main_context_iteration(mc.raw, 1) }
        }
        other.join()
        let nested = nestedMs.withLock { $0 }, waited = waitedMs.withLock { $0 }
        #expect(nested < 500, "the nested iteration slept \(nested) ms while owning the context")
        #expect(waited >= 0 && waited < 500, "another thread waited \(waited) ms for ownership")
        g_source_destroy(far)
        g_source_unref(far)
        Self.finish(ctx, mc)
    }

    /// GLib drains its own wake-up fd in its check phase whenever its poll
    /// saw it readable, also after a ready prepare, whose check it skips. A
    /// schedule whose notify woke GLib in the window between prepare's bit 0
    /// and its look for work (a debug hook on the GLib thread makes the
    /// schedule there) claimed the wake-pending flag, and prepare then finds
    /// the one-shot and returns ready. If only our check cleared the flag, it
    /// would stay claimed with the fd drained, and the next sleep would skip
    /// every notify's wake-up (AIO_FAULT_G_PEND_CHECK_ONLY; model:
    /// Models/aio_notify_gen.pml GLIB_WAKEUP, FAULT_G_PEND_CHECK_ONLY).
    /// Natively there is no GLib prepare: the test thread schedules the
    /// first one-shot, and the same steps must hold.
    @Test("a wake-up consumed by a ready GLib pass does not deafen the next sleep", .blockingLane,
          arguments: Driver.allCases)
    func wakeConsumedByReadyPass(_ driver: Driver) throws {
        let h = try Harness(driver, name: "ready-pass-wake", holdsOwnership: false)
        let ctx = h.ctx
        let hookRan = TestEventFlag()
        for round in 0..<3 {
            // A schedule from inside prepare, after bit 0 (no work before
            // it, so prepare does not take its early ready path): its notify
            // wakes GLib, and prepare then finds the one-shot and returns
            // ready.
            let first = Counter()
            let hookRounds = Counter()
            if driver == .native {
                ctx.scheduleOneshot { first.increment() }
            } else {
                ctx.setDebugHookAfterGLibAdvertise {
                    hookRounds.increment()
                    ctx.scheduleOneshot { first.increment() }
                }
                // The test thread iterates (gsource) or polls natively (both)
                // until the GLib thread's prepare has run the hook and its
                // one-shot has run.
                if driver == .both { ctx.notify() }
            }
            #expect(h.iterate(until: { first.count == 1 }, within: 30, "round \(round): the first one-shot"))
            if driver == .gsource {
                #expect(hookRounds.count == 1, "round \(round): the GLib prepare never reached the window the test widens")
            }
            if hookRounds.count > 0 { hookRan.set() }
            // Let the driver go to sleep, then schedule from another thread.
            let second = Counter()
            let scheduler = try NativeThread(name: "late-scheduler") {
                waitForSleeper(ctx, driver == .native ? .native : .gsource)
                ctx.scheduleOneshot { second.increment() }
            }
            let slept = h.iterate(until: { second.count == 1 }, within: 30,
                                  "round \(round): GLib slept through a notify after a ready pass consumed its wake-up")
            scheduler.join()
            #expect(slept, "round \(round): GLib slept through a notify after a ready pass consumed its wake-up")
        }
        if driver != .native {
            #expect(hookRan.isSet, "the GLib thread never reached the window the test widens")
        }
        ctx.setDebugHookAfterGLibAdvertise {}
        h.finish()
    }

    /// Defect 5 (handlers): a callback could start after `removeHandler`
    /// returned on another thread (1 to 6 of 300). A running callback is now
    /// waited for, and none starts afterwards.
    @Test("no handler callback starts after removeHandler returned on another thread", .blockingLane)
    func noCallbackAfterRemoval() throws {
        let loop = try LoopThread(.both, name: "removal")
        let pipe = Pipe()
        pipe.write()  // stays readable: the handler runs on every pass
        let late = Counter()
        let dog = loop.harness.watchdog(120, "300 removals")
        for _ in 0..<300 {
            let removed = TestEventFlag()
            let ran = Counter()
            try loop.ctx.setHandler(for: pipe.readFD, name: "level", read: {
                if removed.isSet { late.increment() }
                ran.increment()
            })
            while ran.count == 0 && !dog.hasFired { usleep(10) }
            loop.ctx.removeHandler(for: pipe.readFD)
            removed.set()
            usleep(200)
            if dog.hasFired { break }
        }
        #expect(!dog.disarm())
        #expect(late.count == 0, "\(late.count) callbacks started after removeHandler returned")
        loop.stop()
    }

    /// Defect 5 (timers): a cross-thread `cancel()` could return before a
    /// dequeued callback started, and a periodic timer could re-arm itself
    /// past a cancel. Now a running callback is waited for and the timer is
    /// disarmed again after it.
    @Test("no timer callback starts after cancel returned on another thread", .blockingLane)
    func noTimerCallbackAfterCancel() throws {
        let loop = try LoopThread(.both, name: "timer-cancel")
        let late = Counter()
        let dog = loop.harness.watchdog(120, "300 cancels")
        for _ in 0..<300 {
            let cancelled = TestEventFlag()
            let ran = Counter()
            let timer = loop.ctx.makeTimer(name: "periodic") { timer in
                if cancelled.isSet { late.increment() }
                ran.increment()
                timer.schedule(after: .microseconds(10))
            }
            timer.schedule(after: .zero)
            while ran.count == 0 && !dog.hasFired { usleep(10) }
            timer.cancel()
            cancelled.set()
            #expect(!timer.isPending, "a periodic timer re-armed itself past cancel()")
            usleep(200)
            if dog.hasFired { break }
        }
        #expect(!dog.disarm())
        #expect(late.count == 0, "\(late.count) timer callbacks started after cancel() returned")
        loop.stop()
    }

    /// Defect 6: `schedule()` published the BH and then notified through an
    /// unowned context; the owner could run the BH, delete it and drop the
    /// context in between (AddressSanitizer: heap-use-after-free in
    /// `AioContext.wake`). The notify now goes through the core the BH holds.
    @Test("schedule() racing with the owner running, deleting and dropping the context", .blockingLane)
    func scheduleRacesTeardown() throws {
        for _ in 0..<200 {
            let handoff = Locked<BottomHalf?>(nil)
            let scheduled = TestEvent()
            let owner = try NativeThread(name: "owner") {
                let ctx = try! AioContext(name: "short-lived")
                let ran = Counter()
                let bh = ctx.makeBottomHalf(name: "self-deleting") { bh in
                    ran.increment()
                    bh.delete()
                }
                handoff.withLock { $0 = bh }
                _ = scheduled.wait(seconds: 10)
                // Spinning, not sleeping: the BH runs as soon as it is
                // published, before the scheduler's notify (which a sleeping
                // owner would wait for).
                let deadline = nowSeconds() + 10
                while ran.count == 0 && nowSeconds() < deadline { ctx.poll(blocking: false) }
                ctx.poll(blocking: false)  // frees the deleted BH
                // The context goes away here, maybe while the scheduler is
                // still inside schedule().
            }
            var bh: BottomHalf? = nil
            while bh == nil { bh = handoff.withLock { $0 }; if bh == nil { sched_yield() } }
            handoff.withLock { $0 = nil }
            let scheduler = try NativeThread(name: "scheduler") { [bh] in
                scheduled.signal()
                bh!.schedule()
            }
            scheduler.join()
            owner.join()
        }
    }

    /// Defect 7: the home thread submitted to the pool while another thread
    /// owned the context and ran the completion BH: a data race on the
    /// pool's bookkeeping (ThreadSanitizer), crashes in debug builds, a lost
    /// completion in release.
    @Test("pool submissions from the home thread while another thread owns the context all complete", .blockingLane)
    func homeSubmitsWhileOtherOwns() throws {
        let ctx = try AioContext(name: "pool-home")
        let stop = TestEventFlag()
        let owning = TestEvent()
        let owner = try NativeThread(name: "owner") {
            ctx.withOwnership {
                owning.signal()
                while !stop.isSet { ctx.poll(blocking: true) }
            }
        }
        #expect(owning.wait(seconds: 10))
        let completed = Counter()
        let total = 3_000
        for _ in 0..<total {
            ctx.threadPool.submit({ 1 }, completion: { _ in completed.increment() })
        }
        let deadline = nowSeconds() + 60
        while completed.count < total && nowSeconds() < deadline { usleep(1_000) }
        #expect(completed.count == total, "\(completed.count) of \(total) completions delivered")
        stop.set()
        ctx.notify()
        owner.join()
        ctx.threadPool.shutdown()
    }

    /// A descriptor closed while registered reports POLLNVAL to both
    /// drivers, permanently, so a re-check cannot tell it was dispatched: the
    /// first dispatch marks the handler, and its callbacks run once.
    @Test("a descriptor closed behind both drivers' backs: callbacks once, one warning")
    func closedDescriptorBothDrivers() async {
        await #expect(processExitsWith: .success) {
            let loop = try! LoopThread(.both, name: "nval-both")
            let log = WarningLog()
            log.capture(loop.ctx)
            let pipe = Pipe()
            // A high number, so that no descriptor made after the close (a
            // poller's eventfd) reuses it while the handler is registered.
            let victim = fcntl(pipe.readFD, F_DUPFD_CLOEXEC, 1000)
            precondition(victim >= 1000)
            let reads = Counter()
            try! loop.ctx.setHandler(for: victim, name: "victim", read: { reads.increment() })
            close(victim)
            // A poll already asleep keeps the closed file and is not woken
            // by the close: POLLNVAL shows at each driver's next poll.
            loop.ctx.notify()
            let deadline = nowSeconds() + 10
            while reads.count == 0 && nowSeconds() < deadline { usleep(1_000) }
            usleep(100_000)  // time for a second dispatch, if there were one
            precondition(reads.count == 1, "the read callback ran \(reads.count) times")
            precondition(log.all.count == 1, "\(log.all.count) warnings")
            loop.ctx.removeHandler(for: victim)
            loop.stop()
        }
    }

    /// A timer callback parked in a nested blocking poll (which lets go of
    /// ownership around its sleep) while the GLib thread owns the context and
    /// cancels the timer: the cancel must not wait for the parked callback,
    /// which needs that ownership back to finish.
    @Test("cancel from the owner while the timer's callback sleeps in a nested poll elsewhere", .blockingLane)
    func cancelFromOwnerWhileCallbackNested() throws {
        let loop = try LoopThread(.both, name: "nested-timer")
        let ctx = loop.ctx
        let inNested = TestEvent()
        let cancelled = Counter(), nestedDone = Counter()
        try runBounded(60, "20 cancels while the callback sleeps in a nested poll") {
            for _ in 0..<20 {
                let timer = ctx.makeTimer(name: "nests") { timer in
                    // Only the native loop thread may sleep in a nested poll
                    // (inside a GSource dispatch that would break the lock
                    // order): on the GLib thread, try again.
                    guard loop.isLoopThread else {
                        timer.schedule(after: .zero)
                        return
                    }
                    inNested.signal()
                    // Nested: wait until the cancel happened, sleeping in
                    // blocking polls that let go of ownership.
                    let before = cancelled.count
                    while cancelled.count == before { ctx.poll(blocking: true) }
                    nestedDone.increment()
                }
                timer.schedule(after: .zero)
                _ = inNested.wait(seconds: 10)
                let round = cancelled.count
                // Whoever owns the context now (the GLib thread, or the loop
                // thread's nested poll) cancels it from a BH.
                ctx.scheduleOneshot {
                    timer.cancel()
                    cancelled.increment()
                }
                while cancelled.count == round { usleep(100) }
                ctx.notify()
                while nestedDone.count == round { usleep(100); ctx.notify() }
            }
        }
        #expect(nestedDone.count == 20)
        loop.stop()
    }

    /// Defect 7, second half: a request may be cancelled after its pool and
    /// context are gone (AddressSanitizer checks the memory).
    @Test("cancelling a request after its context and pool are gone is safe", .blockingLane)
    func cancelAfterPoolGone() throws {
        var ctx: AioContext? = try AioContext(name: "pool-gone")
        let done = Counter()
        let request = ctx!.threadPool.submit({ 1 }, completion: { _ in done.increment() })
        let deadline = nowSeconds() + 10
        while done.count == 0 && nowSeconds() < deadline { ctx!.poll(blocking: false); usleep(100) }
        #expect(done.count == 1)
        ctx!.threadPool.shutdown()
        ctx = nil
        request.cancel()
        #expect(request.currentState == .done)
    }

    /// Defect 8: thread identity was `pthread_self()`, which glibc gives to
    /// the next new thread once one is joined: a new thread passed the home
    /// check of a dead IOThread's context (5 of 5 runs).
    @Test("a new thread never inherits a dead thread's identity", .blockingLane)
    func threadIdentityIsNotRecycled() throws {
        for _ in 0..<5 {
            let made = Locked<AioContext?>(nil)
            let home = try NativeThread(name: "home") { made.withLock { $0 = try! AioContext(name: "orphan") } }
            home.join()
            let ctx = made.withLock { $0 }!
            let isHome = Locked<Bool>(true)
            let next = try NativeThread(name: "next") { isHome.withLock { $0 = ctx.isHomeThread } }
            next.join()
            #expect(!isHome.withLock { $0 }, "a new thread passed the home-thread check of a context made by a joined thread")
        }
    }
}
