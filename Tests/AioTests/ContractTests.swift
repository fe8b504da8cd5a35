@_spi(AioInternals) @testable import Aio
import CGLibShim
import Glibc
import Synchronization
import Testing

/// Counts GLib's CRITICAL and WARNING messages of the "GLib" domain while
/// installed (g_return_if_fail and friends).
final class GLibMessageCounter: @unchecked Sendable {
    // @unchecked Sendable: `handlerID` is touched by the installing thread only.
    let count = Counter()
    private var handlerID: guint = 0

    init() {
        let levels = GLogLevelFlags(rawValue: G_LOG_LEVEL_CRITICAL.rawValue | G_LOG_LEVEL_WARNING.rawValue)
        handlerID = g_log_set_handler("GLib", levels, { _, _, message, data in
            if let message { print("GLib: \(String(cString: message))") }
            Unmanaged<Counter>.fromOpaque(data!).takeUnretainedValue().increment()
        }, Unmanaged.passUnretained(count).toOpaque())
    }

    func remove() { g_log_remove_handler("GLib", handlerID) }
}

/// Whether this test binary runs under ThreadSanitizer (its runtime is linked in).
let underThreadSanitizer = dlsym(nil, "__tsan_init") != nil

/// The smaller rules of the threading contract: what a notify before a
/// non-blocking poll means, re-attaching, deadlines at the end of time,
/// traps that name the object and the rule, the lock order.
@Suite("Threading contract details")
struct ContractTests {
    /// The rule: a poll, blocking or not, sees every notify made before it
    /// started, and a blocking poll sleeps only if no notify came after this
    /// thread's previous poll returned. So notify(), then a non-blocking
    /// poll, then a blocking poll: the blocking one sleeps (the non-blocking
    /// one already saw the notify), as QEMU's aio_notify_accept would.
    @Test("a non-blocking poll sees a notify: the next blocking poll sleeps", .blockingLane, arguments: [Driver.native, Driver.gsource])
    func nonBlockingPollConsumesNotify(driver: Driver) throws {
        let h = try Harness(driver)
        h.drain()
        let timer = h.ctx.makeTimer(name: "bound") { _ in }
        h.ctx.notify()
        h.iterate(blocking: false)
        timer.schedule(after: .milliseconds(50))
        let start = nowSeconds()
        let waitsBefore = h.ctx.statistics.blockingWaits
        let dog = h.watchdog(10, "a blocking poll bounded by a 50 ms timer")
        while timer.isPending && !dog.hasFired { h.iterate(blocking: true) }
        #expect(!dog.disarm())
        let sleptMs = (nowSeconds() - start) * 1000
        #expect(sleptMs >= 40, "the blocking iteration returned after \(sleptMs) ms: it did not sleep")
        if driver == .native {
            #expect(h.ctx.statistics.blockingWaits > waitsBefore)
        }
        // And the other half: a notify after the last poll keeps the next
        // blocking poll awake.
        h.ctx.notify()
        timer.schedule(after: .seconds(30))
        let dog2 = h.watchdog(10, "a blocking poll after a fresh notify")
        h.iterate(blocking: true)
        #expect(!dog2.disarm(), "slept through a notify made after the previous poll")
        timer.cancel()
        h.finish()
    }

    /// Detach, then attach to another GMainContext: no stale fd tags, no GLib
    /// CRITICAL, and the handlers work through the new source.
    @Test("detach and re-attach: handlers move to the new source without GLib warnings", .blockingLane)
    func reattach() throws {
        let messages = GLibMessageCounter()
        defer { messages.remove() }
        let ctx = try AioContext(name: "reattach")
        let pipe = Pipe()
        let calls = Counter()
        try ctx.setHandler(for: pipe.readFD, read: { calls.increment(); pipe.drain() })
        for round in 0..<3 {
            let mc = g_main_context_new()!
            ctx.attach(to: mc)
            pipe.write()
            let deadline = nowSeconds() + 10
            while calls.count <= round && nowSeconds() < deadline { g_main_context_iteration(mc, 1) }
            #expect(calls.count == round + 1, "round \(round): the handler did not run through the new source")
            // A handler added and removed while attached, then the detach.
            let other = Pipe()
            try ctx.setHandler(for: other.readFD, read: {})
            ctx.removeHandler(for: other.readFD)
            ctx.detach()
            while g_main_context_iteration(mc, 0) != 0 {}
            g_main_context_unref(mc)
        }
        ctx.removeHandler(for: pipe.readFD)
        #expect(messages.count.count == 0, "GLib printed \(messages.count.count) warnings or criticals")
    }

    /// Detach and re-attach while a GLib thread iterates the GMainContext
    /// with a handler ready: the old source's check must never query the new
    /// source's fd tags (GLib: "g_source_query_unix_fd: assertion failed").
    @Test("re-attach while a GLib thread iterates: no stale fd tags", .blockingLane,
          .disabled(if: underThreadSanitizer,
                    "attaching hands a new GSource to a GLib thread under GLib's own mutex, a futex ThreadSanitizer cannot see"))
    func reattachWhileIterating() throws {
        let messages = GLibMessageCounter()
        defer { messages.remove() }
        let ctx = try AioContext(name: "reattach-live")
        let mc = MainContextRef(raw: g_main_context_new())
        ctx.attach(to: mc.raw)
        let glib = try GLibIterator(mc)
        let pipe = Pipe()
        pipe.write()  // stays readable: every check queries the handler's tag
        try ctx.setHandler(for: pipe.readFD, read: {})
        for _ in 0..<20_000 {
            ctx.detach()
            ctx.attach(to: mc.raw)
            sched_yield()
        }
        glib.stop("re-attach")
        ctx.removeHandler(for: pipe.readFD)
        ctx.detach()
        while g_main_context_iteration(mc.raw, 0) != 0 {}
        g_main_context_unref(mc.raw)
        #expect(messages.count.count == 0, "GLib printed \(messages.count.count) warnings or criticals")
    }

    /// Deadlines saturate instead of wrapping: `sleep(for: .seconds(Int64.max))`
    /// is "until cancelled", a far deadline never fires at once, and the
    /// virtual clock never moves backwards.
    @Test("deadlines at the end of time saturate instead of wrapping")
    func deadlinesSaturate() async throws {
        #expect((AioInstant(nanoseconds: 5) + .seconds(Int64.max)).nanoseconds == Int64.max)
        #expect((AioInstant(nanoseconds: -5) + .seconds(Int64.min)).nanoseconds == Int64.min)
        #expect((AioInstant(nanoseconds: Int64.max) - AioInstant(nanoseconds: -1)) == .nanoseconds(Int64.max))
        #expect(Duration.seconds(Int64.max).nanoseconds == Int64.max)

        let loop = try LoopThread(.native, name: "far")
        let ctx = loop.ctx
        let fired = Counter()
        let timer = ctx.makeTimer(name: "far") { _ in fired.increment() }
        timer.schedule(at: ctx.now() + .seconds(Int64.max))
        timer.schedule(after: .seconds(Int64.max))
        let sleeper = Task { try await ctx.sleep(for: .seconds(Int64.max)) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(fired.count == 0, "a deadline at the end of time fired")
        #expect(timer.isPending)
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        timer.cancel()

        let clock = ctx.virtualClock
        clock.advance(by: .seconds(Int64.max))
        clock.advance(by: .seconds(Int64.max))
        #expect(clock.now.nanoseconds == Int64.max, "the virtual clock wrapped to \(clock.now)")
        loop.stop()
    }

    @Test("arming a timer after its context was torn down traps, naming both")
    func timerAfterTeardownTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var ctx: AioContext? = try! AioContext(name: "gone")
            let timer = ctx!.makeTimer(name: "orphan") { _ in }
            ctx = nil
            timer.schedule(after: .milliseconds(1))
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("AioTimer 'orphan': schedule(...) after its AioContext 'gone' was torn down"))
    }

    #if DEBUG
    /// The lock order is ownership, then GMainContext. Debug builds trap when
    /// a thread that holds the GMainContext the context is attached to has to
    /// wait for the context's ownership (GLib's own hooks never do).
    @Test("debug builds trap on a wait for ownership while holding the attached GMainContext")
    func lockOrderViolationTraps() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ctx = try! AioContext(name: "ordered")
            let mc = g_main_context_new()!
            ctx.attach(to: mc)
            let owning = TestEvent()
            let release = TestEvent()
            let owner = try! NativeThread(name: "owner") {
                ctx.withOwnership {
                    owning.signal()
                    _ = release.wait(seconds: 30)
                }
            }
            _ = owning.wait(seconds: 10)
            _ = g_main_context_acquire(mc)
            ctx.acquire()  // traps: the owner may be about to wait for `mc`
            release.signal()
            owner.join()
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("lock order"))
        #expect(text.contains("AioContext 'ordered'"))
        #expect(text.contains("GMainContext"))
    }
    #endif
}
