import Aio
import CGLibShim
import Testing

@Suite("The context as a GSource", .blockingLane)
struct GSourceTests {
    @Test("an attached context is kept alive by GLib until detach")
    func attachKeepsAlive() throws {
        let mc = g_main_context_new()!
        weak var weakCtx: AioContext?
        do {
            let ctx = try AioContext(name: "kept")
            weakCtx = ctx
            ctx.attach(to: mc)
            #expect(ctx.isAttached)
        }
        #expect(weakCtx != nil, "GLib's source holds the context")
        weakCtx?.detach()
        while g_main_context_iteration(mc, 0) != 0 {}
        #expect(weakCtx == nil, "finalize released the context")
        g_main_context_unref(mc)
    }

    @Test("detach from inside a BH the source is dispatching")
    func detachInsideDispatch() throws {
        let mc = MainContextRef(raw: g_main_context_new())
        let ctx = try AioContext(name: "self-detaching")
        ctx.attach(to: mc.raw)
        let ran = Counter()
        ctx.scheduleOneshot {
            ran.increment()
            ctx.detach()
        }
        #expect(g_main_context_iteration(mc.raw, 0) != 0)
        #expect(ran.count == 1)
        #expect(!ctx.isAttached)
        // GLib no longer calls us: a schedule runs only through native polls now.
        ctx.scheduleOneshot { ran.increment() }
        while g_main_context_iteration(mc.raw, 0) != 0 {}
        #expect(ran.count == 1)
        ctx.poll(blocking: false)
        #expect(ran.count == 2)
        g_main_context_unref(mc.raw)
    }

    @Test("a BH may iterate the main context recursively")
    func nestedIteration() throws {
        let mc = MainContextRef(raw: g_main_context_new())
        let ctx = try AioContext(name: "recursive")
        ctx.attach(to: mc.raw)
        let inner = Counter()
        let innerBH = ctx.makeBottomHalf(name: "inner") { _ in inner.increment() }
        let outer = ctx.makeBottomHalf(name: "outer") { _ in
            innerBH.schedule()
            // Nested GLib iteration: the source is recursive, so GLib
            // dispatches it again from inside its own dispatch.
            g_main_context_iteration(mc.raw, 0)
        }
        outer.schedule()
        #expect(g_main_context_iteration(mc.raw, 0) != 0)
        #expect(inner.count == 1)
        outer.delete()
        innerBH.delete()
        ctx.detach()
        while g_main_context_iteration(mc.raw, 0) != 0 {}
        g_main_context_unref(mc.raw)
    }

    @Test("native polls and GLib iterations can alternate on one context")
    func alternate() throws {
        let h = try Harness(.gsource)
        let runs = Counter()
        let bh = h.ctx.makeBottomHalf(name: "alternating") { _ in runs.increment() }
        for i in 0..<200 {
            bh.schedule()
            if i % 2 == 0 {
                #expect(h.ctx.poll(blocking: true))
            } else {
                #expect(h.iterate(blocking: true))
            }
        }
        #expect(runs.count == 200)
        bh.delete()
        h.drain()
        h.finish()
    }

    @Test("a context attached to the default main context runs under a GMainLoop")
    func defaultContextMainLoop() throws {
        let ctx = try AioContext(name: "default")
        ctx.attach(to: nil)
        let loop = MainLoopRef(raw: g_main_loop_new(nil, 0))
        let ran = Counter()
        let worker = try NativeThread(name: "worker") {
            for _ in 0..<10 { ctx.scheduleOneshot { ran.increment() } }
            ctx.scheduleOneshot { g_main_loop_quit(loop.raw) }
        }
        let dog = Watchdog(seconds: 10, "GMainLoop on the default context",
                           state: { ctx.debugState }, kick: { g_main_loop_quit(loop.raw) })
        g_main_loop_run(loop.raw)
        worker.join()
        #expect(!dog.disarm())
        #expect(ran.count == 10)
        ctx.detach()
        while g_main_context_iteration(nil, 0) != 0 {}
        g_main_loop_unref(loop.raw)
    }
}

extension GSourceTests {
    @Test("a GLib thread iterating 20 attached contexts sleeps when idle")
    func manyContextsSleep() throws {
        let mc = g_main_context_new()!
        let contexts = try (0..<20).map { try AioContext(name: "many-\($0)") }
        for ctx in contexts { ctx.attach(to: mc) }
        // Let every context learn this thread, then count iterations until a
        // 100 ms GLib timeout fires: an idle loop sleeps through them.
        while g_main_context_iteration(mc, 0) != 0 {}
        let fired = g_timeout_source_new(100)!
        final class Flag: @unchecked Sendable { var set = false }
        let flag = Flag()
        g_source_set_callback(fired, { data in
            Unmanaged<Flag>.fromOpaque(data!).takeUnretainedValue().set = true
            return 0
        }, Unmanaged.passUnretained(flag).toOpaque(), nil)
        g_source_attach(fired, mc)
        var iterations = 0
        while !flag.set {
            g_main_context_iteration(mc, 1)
            iterations += 1
        }
        #expect(iterations <= 5, "\(iterations) iterations in 100 ms: the GLib loop does not sleep")
        g_source_unref(fired)
        for ctx in contexts { ctx.detach() }
        while g_main_context_iteration(mc, 0) != 0 {}
        g_main_context_unref(mc)
    }
}

struct MainLoopRef: @unchecked Sendable {
    let raw: OpaquePointer
}
