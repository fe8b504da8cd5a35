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
    // The bare idle iteration again, with as many idle fds in GLib's poll set
    // as an attached AioContext adds (its GLib notifier, its timerfd and,
    // under io_uring or epoll, the monitor's fd): each iteration's poll(2)
    // then looks at three descriptors instead of none.
    if selected("a_repeat3fd") {
        let fds = (0..<3).map { _ in eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)) }
        let sources = fds.map { fd -> UnsafeMutablePointer<GSource> in
            let source = g_unix_fd_source_new(fd, G_IO_IN)!
            g_source_attach(source, nil)
            return source
        }
        _ = idleRun(idleRepeat, Sizes.warmup)
        let run = idleRun(idleRepeat, n)
        result(impl, "a_repeat3fd_ops_per_s", opsPerSecond(n, run.ns), "ops/s")
        for source in sources {
            g_source_destroy(source)
            g_source_unref(source)
        }
        for fd in fds { close(fd) }
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

// MARK: Thread pool: GThreadPool, completions handed back to a GMainContext

/// Row (other): empty jobs on a `GThreadPool` of `threads` threads, each
/// completion handed back to the loop thread with `g_main_context_invoke`
/// (what a GLib program does to get a result onto its loop), up to 1,000 in
/// flight, refilled from the completions, as the library's row does.
final class GPoolState: @unchecked Sendable {
    // @unchecked Sendable: `submitted` and `completed` are touched on the loop
    // thread only (the completions run there); the pool pointer is set once.
    var pool: UnsafeMutablePointer<GThreadPool>?
    let context: OpaquePointer
    let jobs: Int
    var submitted = 0
    var completed = 0
    init(context: OpaquePointer, jobs: Int) { self.context = context; self.jobs = jobs }
}

@inline(__always)
private func poolState(_ data: gpointer?) -> GPoolState {
    // SAFETY: the jobs and completions get Unmanaged.passUnretained(state),
    // and the state outlives the pool (freed, waiting for its jobs, first).
    Unmanaged<GPoolState>.fromOpaque(data!).takeUnretainedValue()
}

/// The job: nothing, then its completion goes to the loop thread.
private let gpoolJob: GFunc = { data, _ in
    g_main_context_invoke(poolState(data).context, gpoolCompletion, data)
}

private let gpoolCompletion: GSourceFunc = { data in
    let s = poolState(data)
    s.completed += 1
    if s.submitted < s.jobs {
        s.submitted += 1
        g_thread_pool_push(s.pool, data, nil)
    }
    return 0
}

func glibPoolThroughput(threads: Int) {
    let name = "pool\(threads)"
    guard selected(name) else { return }
    let jobs = Sizes.smoke ? 2_000 : 200_000
    let context = g_main_context_new()!
    // Owned by this thread: an invoke from a worker then queues the
    // completion here instead of running it on the worker.
    g_main_context_acquire(context)
    let s = GPoolState(context: context, jobs: jobs)
    let data = Unmanaged.passUnretained(s).toOpaque()
    s.pool = g_thread_pool_new(gpoolJob, nil, gint(threads), 0, nil)
    let t0 = nowNs()
    while s.submitted < min(1_000, jobs) {
        s.submitted += 1
        g_thread_pool_push(s.pool, data, nil)
    }
    while s.completed < jobs { g_main_context_iteration(context, 1) }
    let ns = nowNs() - t0
    g_thread_pool_free(s.pool, 0, 1)
    while g_main_context_iteration(context, 0) != 0 {}
    g_main_context_release(context)
    g_main_context_unref(context)
    result(impl, name + "_jobs_per_s", opsPerSecond(jobs, ns), "jobs/s")
}
