// Peer: GLib's GMainContext, through its C API called from Swift, with the
// same shapes as the library's rows. Printed as "RESULT glibsw <metric> ...",
// next to the C program's "glib" rows, which check that calling from Swift
// costs nothing extra.

import Aio
import CGLibShim
import Glibc

private let impl = "glibsw"

/// The Flood passed through a gpointer.
@inline(__always)
private func flood(_ data: gpointer?) -> Flood {
    // SAFETY: every source below is given Unmanaged.passUnretained(flood), and
    // the flood outlives the loop that runs the source (the caller waits on it).
    Unmanaged<Flood>.fromOpaque(data!).takeUnretainedValue()
}

@inline(__always)
private func pointer(_ f: Flood) -> gpointer {
    Unmanaged.passUnretained(f).toOpaque()
}

// MARK: (a) same thread, on the default GMainContext

/// g_idle_add chain: each callback adds the next idle source.
private let idleChainStep: GSourceFunc = { data in
    let f = flood(data)
    f.count += 1
    if f.count < f.target { g_idle_add(idleChainStep, data) }
    return 0  // G_SOURCE_REMOVE
}

/// One idle source returning G_SOURCE_CONTINUE: an iteration with nothing allocated.
private let idleRepeat: GSourceFunc = { data in
    let f = flood(data)
    f.count += 1
    return f.count < f.target ? 1 : 0
}

private func idleRun(_ step: GSourceFunc, _ n: Int) -> (ns: Int64, allocs: UInt) {
    let f = Flood()
    f.target = n
    let a0 = Allocations.thisThread
    let t0 = nowNs()
    g_idle_add(step, pointer(f))
    while f.count < n { g_main_context_iteration(nil, 1) }
    let ns = nowNs() - t0
    return (ns, Allocations.thisThread - a0)
}

func glibSameThread() {
    let n = Sizes.same
    for (name, step) in [("a_chain", idleChainStep), ("a_repeat", idleRepeat)] where selected(name) {
        _ = idleRun(step, Sizes.warmup)
        let c0 = SyscallCounts.now()
        let run = idleRun(step, n)
        result(impl, name + "_ops_per_s", opsPerSecond(n, run.ns), "ops/s")
        result(impl, name + "_allocs_per_op", Double(run.allocs) / Double(n), "allocs/op")
        SyscallCounts.report(impl, name, from: c0, to: SyscallCounts.now(), ops: n)
    }
}

// MARK: (b), (c), (d) a GMainLoop on another thread, g_main_context_invoke

/// A GMainLoop on its own thread, over a private GMainContext (pushed as the
/// thread's default). Used by the GLib peer and by our GSource rows.
final class GLibLoopThread {
    let context: OpaquePointer
    private let loop: OpaquePointer
    private var thread: NativeThread?

    /// `attaching`: an AioContext to attach to the new GMainContext first.
    init(attaching aio: AioContext? = nil) {
        context = g_main_context_new()!
        loop = g_main_loop_new(context, 0)!
        aio?.attach(to: context)
        let running = Semaphore()
        nonisolated(unsafe) let c = context
        nonisolated(unsafe) let l = loop
        thread = try! NativeThread(name: "glib-loop") {
            g_main_context_push_thread_default(c)
            running.post()
            g_main_loop_run(l)
            g_main_context_pop_thread_default(c)
        }
        running.wait()
    }

    /// Quits and joins the loop; detaches `aio` (if given) before GLib's
    /// last iterations, so its source is finalized here.
    func stop(detaching aio: AioContext? = nil) {
        g_main_loop_quit(loop)
        thread?.join()
        thread = nil
        aio?.detach()
        while g_main_context_iteration(context, 0) != 0 {}
        g_main_loop_unref(loop)
        g_main_context_unref(context)
    }
}

private let invokeHit: GSourceFunc = { data in
    flood(data).hit()
    return 0
}

private let invokePing: GSourceFunc = { data in
    flood(data).ping()
    return 0
}

func glibCrossThread(producers: Int) {
    let n = Sizes.cross / producers * producers
    let perProducer = n / producers
    let loop = GLibLoopThread()
    let f = Flood()
    f.target = n
    nonisolated(unsafe) let gctx = loop.context
    nonisolated(unsafe) let data = pointer(f)
    let name = producers == 1 ? "b_invoke" : "b_invoke\(producers)"
    let c0 = SyscallCounts.now()
    let t0 = withProducers(producers, name: "producer") { _ in
        for _ in 0..<perProducer { g_main_context_invoke(gctx, invokeHit, data) }
    }
    f.done.wait()
    let c1 = SyscallCounts.now()
    result(impl, name + "_ops_per_s", opsPerSecond(n, f.end - t0), "ops/s")
    SyscallCounts.report(impl, name, from: c0, to: c1, ops: n)
    loop.stop()
}

func glibWakeLatency() {
    let loop = GLibLoopThread()
    let f = Flood()
    measurePings(impl, "c_invoke", f) { g_main_context_invoke(loop.context, invokePing, pointer(f)) }
    loop.stop()
}

func glibAllocations() {
    guard Allocations.active else { return }
    let n = Sizes.allocOps
    // g_idle_add + the iteration that runs it, same thread.
    let f = Flood()
    f.target = Int.max
    for _ in 0..<100 { g_idle_add(invokeHit, pointer(f)); g_main_context_iteration(nil, 0) }
    let a0 = Allocations.thisThread
    for _ in 0..<n { g_idle_add(invokeHit, pointer(f)); g_main_context_iteration(nil, 0) }
    result(impl, "d_idle_add_allocs_per_op", Double(Allocations.thisThread - a0) / Double(n), "allocs/op")

    // g_main_context_invoke to another thread's loop: every thread's allocations.
    let loop = GLibLoopThread()
    let g = Flood()
    g.target = n
    let total = Allocations.processWide {
        for _ in 0..<n { g_main_context_invoke(loop.context, invokeHit, pointer(g)) }
        g.done.wait()
    }
    result(impl, "d_invoke_cross_allocs_per_op", Double(total) / Double(n), "allocs/op")
    loop.stop()
}
