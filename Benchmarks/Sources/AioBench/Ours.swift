// The library's rows: (a) same-thread BH throughput, (b) cross-thread
// throughput, (c) wake latency, (d) allocations, (e) scaling, (f) timer
// lateness, plus the thread pool and the IOThread round trip.
// Every metric is printed as "RESULT aio <metric> <value> <unit>".

import Aio
import CGLibShim
import Glibc
import Synchronization

private let impl = "aio"

// MARK: Loops on another thread

/// Which loop runs the context: its own `poll(blocking:)` (an IOThread) or a
/// GMainLoop on another thread with the context attached as a GSource.
enum LoopPath: String, CaseIterable {
    case native, gsource
}

/// A context run on another thread, by either path.
final class RemoteLoop {
    let context: AioContext
    private var ioThread: IOThread?
    private var glibLoop: GLibLoopThread?

    /// `polling`: keep the IOThread's default busy polling (32 µs); by
    /// default it is off, so the rows measure the plain sleep path.
    init(_ path: LoopPath, polling: Bool = false) {
        switch path {
        case .native:
            let io = try! IOThread(name: "bench-loop")
            if !polling { io.context.pollMaxNs = 0 }
            try! io.start()
            ioThread = io
            context = io.context
        case .gsource:
            context = try! AioContext(name: "bench-gsource")
            glibLoop = GLibLoopThread(attaching: context)
        }
    }

    func stop() {
        if let io = ioThread {
            io.stop()
            io.join()
        }
        glibLoop?.stop(detaching: context)
    }
}

/// State a loop-side callback updates and the measuring thread reads after
/// the semaphore hands it over.
final class Flood: @unchecked Sendable {
    // @unchecked Sendable: `count`, `runs` and the stamps are written only on
    // the loop thread; the measuring thread reads them after `done.wait()`.
    var count = 0
    var runs = 0
    var target = 0
    var end: Int64 = 0
    var stamp: Int64 = 0
    let done = Semaphore()

    @inline(__always) func hit() {
        count += 1
        if count == target {
            end = nowNs()
            done.post()
        }
    }

    @inline(__always) func ping() {
        stamp = nowNs()
        done.post()
    }
}

// MARK: (a) same-thread BH throughput

final class Chain: @unchecked Sendable {
    // @unchecked Sendable: used on the context's home thread only.
    var count = 0
    var target = 0
    var context: AioContext?
}

/// One BH re-scheduling itself `n` times, driven by `drive` until done.
/// Returns the elapsed ns.
private func bhChain(_ ctx: AioContext, _ n: Int, drive: (Chain) -> Void) -> Int64 {
    let chain = Chain()
    let bh = ctx.makeBottomHalf(name: "chain") { bh in
        chain.count += 1
        if chain.count < chain.target { bh.schedule() }
    }
    chain.target = n
    let t0 = nowNs()
    bh.schedule()
    drive(chain)
    let t1 = nowNs()
    bh.delete()
    ctx.poll(blocking: false)
    return t1 - t0
}

private func oneshotStep(_ chain: Chain) {
    chain.context!.scheduleOneshot {
        chain.count += 1
        if chain.count < chain.target { oneshotStep(chain) }
    }
}

/// Times one chain of `n` after a warm-up chain, and prints its rows.
private func timedChain(_ name: String, _ n: Int, _ chain: (Int) -> Int64) {
    _ = chain(Sizes.warmup)
    let c0 = SyscallCounts.now()
    let a0 = Allocations.thisThread
    let ns = chain(n)
    result(impl, name + "_ops_per_s", opsPerSecond(n, ns), "ops/s")
    result(impl, name + "_ns_per_op", Double(ns) / Double(n), "ns/op")
    result(impl, name + "_allocs_per_op", Double(Allocations.thisThread - a0) / Double(n), "allocs/op")
    SyscallCounts.report(impl, name, from: c0, to: SyscallCounts.now(), ops: n)
}

func sameThread() {
    let ctx = try! AioContext(name: "bench-same")
    let n = Sizes.same

    // Native poll on the home thread.
    if selected("a_bh_native") {
        timedChain("a_bh_native", n) { size in
            bhChain(ctx, size) { chain in
                while chain.count < chain.target { ctx.poll(blocking: true) }
            }
        }
    }

    // g_main_context_iteration with the context attached to the default
    // GMainContext, where GLib's own idle rows run too.
    if selected("a_bh_gsource") {
        ctx.attach(to: nil)
        timedChain("a_bh_gsource", n) { size in
            bhChain(ctx, size) { chain in
                while chain.count < chain.target { g_main_context_iteration(nil, 1) }
            }
        }
        ctx.detach()
        while g_main_context_iteration(nil, 0) != 0 {}
    }

    // A chain of one-shots (one BH allocated per callback), native poll.
    if selected("a_oneshot_native") {
        let chain = Chain()
        chain.context = ctx
        timedChain("a_oneshot_native", n) { size in
            chain.count = 0
            chain.target = size
            let t0 = nowNs()
            oneshotStep(chain)
            while chain.count < chain.target { ctx.poll(blocking: true) }
            return nowNs() - t0
        }
        chain.context = nil
    }
}

// MARK: (b) cross-thread throughput

enum PostKind: String {
    /// `scheduleOneshot` per post, of a closure that captures `flood`.
    case oneshot
    /// `scheduleOneshot` per post, of a closure that captures nothing (it
    /// reaches the flood through a global, as libuv's post carries a
    /// function pointer and a static argument): no reference count shared
    /// between the producer and the loop.
    case oneshotBare = "oneshotbare"
    /// `schedule()` of one existing BH per post (coalesces while pending).
    case bh
}

/// The flood of the `oneshotBare` rows, reached without reference counting
/// (set before the producers start, cleared after the last callback).
nonisolated(unsafe) private var bareFlood: Unmanaged<Flood>?

@inline(never)
private func bareFloodHit() {
    bareFlood.unsafelyUnwrapped._withUnsafeGuaranteedRef { $0.hit() }
}

func crossThread(_ kind: PostKind, producers: Int, path: LoopPath, polling: Bool = false) {
    let name = "b_\(kind.rawValue)\(producers)_\(path.rawValue)" + (polling ? "_polling" : "")
    guard selected(name) else { return }
    let n = Sizes.cross / producers * producers
    let perProducer = n / producers
    let loop = RemoteLoop(path, polling: polling)
    let ctx = loop.context
    let flood = Flood()
    let bh = ctx.makeBottomHalf(name: "flood") { _ in flood.runs += 1 }
    flood.target = n
    bareFlood = Unmanaged.passUnretained(flood)
    defer { bareFlood = nil }

    let stats0 = ctx.statistics
    let c0 = SyscallCounts.now()
    let postedNs = Atomic<Int64>(0)
    let t0 = withProducers(producers, name: "producer") { _ in
        let start = nowNs()
        switch kind {
        case .oneshot:
            for _ in 0..<perProducer { ctx.scheduleOneshot { flood.hit() } }
        case .oneshotBare:
            for _ in 0..<perProducer { ctx.scheduleOneshot { bareFloodHit() } }
        case .bh:
            for _ in 0..<perProducer { bh.schedule() }
        }
        postedNs.wrappingAdd(nowNs() - start, ordering: .relaxed)
    }
    if kind == .bh {
        // Every schedule above has run once this one-shot has (FIFO).
        flood.target = 1
        flood.count = 0
        ctx.scheduleOneshot { flood.hit() }
    }
    flood.done.wait()
    let c1 = SyscallCounts.now()
    result(impl, name + "_ops_per_s", opsPerSecond(n, flood.end - t0), "ops/s")
    result(impl, name + "_post_ns_per_op", Double(postedNs.load(ordering: .relaxed)) / Double(n), "ns/op")
    if kind == .bh {
        result(impl, name + "_runs_per_op", Double(flood.runs) / Double(n), "runs/op")
    }
    reportLibraryWrites(name, ctx, from: stats0, ops: n)
    SyscallCounts.report(impl, name, from: c0, to: c1, ops: n)
    bh.delete()
    loop.stop()
}

// MARK: (c) wake latency of a sleeping loop

func wakeLatency(_ kind: PostKind, path: LoopPath) {
    let name = "c_\(kind.rawValue)_\(path.rawValue)"
    guard selected(name) else { return }
    let loop = RemoteLoop(path)
    let ctx = loop.context
    let flood = Flood()
    let bh = ctx.makeBottomHalf(name: "ping") { _ in flood.ping() }
    let stats0 = ctx.statistics
    measurePings(impl, name, flood) {
        switch kind {
        case .oneshot, .oneshotBare: ctx.scheduleOneshot { flood.ping() }
        case .bh: bh.schedule()
        }
    }
    reportLibraryWrites(name, ctx, from: stats0, ops: Sizes.pings)
    bh.delete()
    loop.stop()
}

// MARK: (d) allocations

func allocations() {
    guard Allocations.active else {
        print("# allocation counter inactive (sanitizer build): (d) skipped")
        return
    }
    let n = Sizes.allocOps
    let ctx = try! AioContext(name: "bench-alloc")
    let chain = Chain()
    let bh = ctx.makeBottomHalf(name: "counted") { _ in chain.count += 1 }

    // Schedule of a BH that is already pending: one atomic OR and a notify.
    bh.schedule()
    var a0 = Allocations.thisThread
    for _ in 0..<n { bh.schedule() }
    result(impl, "d_schedule_pending_allocs_per_op", Double(Allocations.thisThread - a0) / Double(n), "allocs/op")
    ctx.poll(blocking: false)

    // Schedule + native poll that runs it, on the home thread.
    for _ in 0..<100 { bh.schedule(); ctx.poll(blocking: false) }
    a0 = Allocations.thisThread
    for _ in 0..<n { bh.schedule(); ctx.poll(blocking: false) }
    result(impl, "d_schedule_poll_allocs_per_op", Double(Allocations.thisThread - a0) / Double(n), "allocs/op")

    // Schedule + g_main_context_iteration (GLib's own allocations included).
    ctx.attach(to: nil)
    for _ in 0..<100 { bh.schedule(); g_main_context_iteration(nil, 0) }
    a0 = Allocations.thisThread
    for _ in 0..<n { bh.schedule(); g_main_context_iteration(nil, 0) }
    result(impl, "d_schedule_gsource_allocs_per_op", Double(Allocations.thisThread - a0) / Double(n), "allocs/op")
    ctx.detach()
    while g_main_context_iteration(nil, 0) != 0 {}

    // One-shot + native poll, on the home thread.
    for _ in 0..<100 { ctx.scheduleOneshot { chain.count += 1 }; ctx.poll(blocking: false) }
    a0 = Allocations.thisThread
    for _ in 0..<n { ctx.scheduleOneshot { chain.count += 1 }; ctx.poll(blocking: false) }
    result(impl, "d_oneshot_poll_allocs_per_op", Double(Allocations.thisThread - a0) / Double(n), "allocs/op")
    bh.delete()
    ctx.poll(blocking: false)

    // Cross-thread: every thread's allocations (producer and loop) per post.
    for kind in [PostKind.bh, .oneshot] {
        let loop = RemoteLoop(.native)
        let remote = loop.context
        let flood = Flood()
        let target = remote.makeBottomHalf(name: "counted") { _ in flood.runs += 1 }
        let total = Allocations.processWide {
            for _ in 0..<n {
                switch kind {
                case .bh: target.schedule()
                case .oneshot, .oneshotBare: remote.scheduleOneshot { flood.runs += 1 }
                }
            }
            flood.target = 1
            remote.scheduleOneshot { flood.hit() }
            flood.done.wait()
        }
        // The closing one-shot is one BH: not counted as an op.
        let perOp = (Double(total) - 1) / Double(n)
        result(impl, "d_\(kind.rawValue)_cross_allocs_per_op", max(perOp, 0), "allocs/op")
        target.delete()
        loop.stop()
    }

    // Cross-thread one-shots with the loop keeping up: at most 256 in flight
    // (the producer yields while more are), after a warm-up that fills the
    // pool. The flood above outruns the loop by more one-shots than the pool
    // keeps (1,024), and allocates for the excess.
    let loop = RemoteLoop(.native)
    let pacer = Pacer()
    func post(_ count: Int) {
        for _ in 0..<count {
            while pacer.posted - pacer.ran.load(ordering: .acquiring) >= 256 { sched_yield() }
            pacer.posted += 1
            loop.context.scheduleOneshot { pacer.ran.wrappingAdd(1, ordering: .releasing) }
        }
        while pacer.ran.load(ordering: .acquiring) < pacer.posted { sched_yield() }
    }
    post(20_000)
    let paced = Allocations.processWide { post(n) }
    result(impl, "d_oneshot_cross_paced_allocs_per_op", Double(paced) / Double(n), "allocs/op")
    loop.stop()
}

/// Row (d), paced: what the producer posted (its own) and what ran (the loop's).
final class Pacer: @unchecked Sendable {
    // @unchecked Sendable: `posted` is the producer's alone; `ran` is atomic.
    var posted = 0
    let ran = Atomic<Int>(0)
}

// MARK: (e) scaling

/// ns per native poll that runs one self-re-scheduling BH while `idle` other
/// BHs exist (created, never scheduled).
func pollCost(idleBHs idle: Int) -> Double {
    let ctx = try! AioContext(name: "bench-bhs")
    let others = (0..<idle).map { _ in ctx.makeBottomHalf(name: "idle") { _ in } }
    let chain = Chain()
    let bh = ctx.makeBottomHalf(name: "busy") { bh in
        chain.count += 1
        bh.schedule()
    }
    bh.schedule()
    for _ in 0..<1_000 { ctx.poll(blocking: true) }
    let polls = Sizes.scalingPolls
    let t0 = nowNs()
    for _ in 0..<polls { ctx.poll(blocking: true) }
    let ns = Double(nowNs() - t0) / Double(polls)
    bh.delete()
    for other in others { other.delete() }
    while ctx.poll(blocking: false) {}
    ctx.poll(blocking: false)
    return ns
}

/// ns per poll with `count` registered eventfds, one ready, on `monitor`:
/// native (`poll(blocking:)`) or through GLib (`g_main_context_iteration`
/// of a private GMainContext). Also reports the time to register and remove
/// them all.
func pollCost(fds count: Int, monitor: FDMonitorKind, path: LoopPath) -> Double {
    let ctx = try! AioContext(name: "bench-fds", fdMonitor: monitor)
    let mainContext = path == .gsource ? g_main_context_new() : nil
    if let mainContext { ctx.attach(to: mainContext) }
    let notifiers = (0..<count).map { _ in try! EventNotifier() }
    let t0 = nowNs()
    for n in notifiers { try! ctx.setHandler(for: n, read: { $0.testAndClear() }) }
    let registerNs = nowNs() - t0
    let ready = notifiers[count / 2]
    // Bounded time per row: ppoll (and GLib's per-fd work) grow with count.
    let budget = Sizes.smoke ? 2_000_000 : 200_000_000
    let iterations = max(20, min(20_000, budget / max(count, 1) / (monitor == .poll ? 10 : 1)))
    func iterate() {
        if let mainContext { g_main_context_iteration(mainContext, 1) } else { ctx.poll(blocking: true) }
    }
    for _ in 0..<20 { ready.set(); iterate() }
    let start = nowNs()
    for _ in 0..<iterations {
        ready.set()
        iterate()
    }
    let ns = Double(nowNs() - start) / Double(iterations)
    let t1 = nowNs()
    for n in notifiers { ctx.removeHandler(for: n) }
    let removeNs = nowNs() - t1
    result(impl, "e_register_\(monitor.rawValue)_\(path.rawValue)_\(count)_ms",
           Double(registerNs + removeNs) / 1e6, "ms")
    if let mainContext {
        ctx.detach()
        while g_main_context_iteration(mainContext, 0) != 0 {}
        g_main_context_unref(mainContext)
    }
    return ns
}

/// Raises the descriptor limit (soft and, as root, hard) for the 100,000-fd rows.
func raiseDescriptorLimit(to wanted: Int) -> Int {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    if Int(limit.rlim_cur) >= wanted { return Int(limit.rlim_cur) }
    var raised = limit
    raised.rlim_cur = rlim_t(wanted)
    if raised.rlim_max < raised.rlim_cur { raised.rlim_max = raised.rlim_cur }
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) != 0 {
        raised.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
    }
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return Int(limit.rlim_cur)
}

func scaling() {
    for idle in [10, 1_000, 100_000] {
        result(impl, "e_bhs_\(idle)_ns_per_poll", pollCost(idleBHs: idle), "ns/poll")
    }
    // 100,000 needs RLIMIT_NOFILE above it; where the hard limit is lower
    // (a container without CAP_SYS_RESOURCE), the largest count it allows
    // stands in (18,000 under a 20,000 hard limit).
    let available = raiseDescriptorLimit(to: 210_000) - 1_000
    let top = available >= 100_000 ? 100_000 : (available / 1_000 - 1) * 1_000
    let counts = Sizes.smoke ? [10, 1_000] : [10, 1_000, 10_000, top]
    for monitor in FDMonitorKind.allCases {
        for path in [LoopPath.native, .gsource] {
            for fds in counts {
                // GLib's own cost per fd makes ppoll through GLib at 10,000+
                // fds take minutes; that is the row this change removes.
                if monitor == .poll && path == .gsource && fds > 1_000 { continue }
                result(impl, "e_fds_\(monitor.rawValue)_\(path.rawValue)_\(fds)_ns_per_poll",
                       pollCost(fds: fds, monitor: monitor, path: path), "ns/poll")
            }
        }
    }
}

// MARK: (h) file I/O

/// 4 KiB random reads of a page-cached file at queue depth 1 and 32,
/// through the ring and through the thread pool (the same API), with ops/s
/// and CPU (user+system, whole process) per op. The floor is
/// ../shared/peers/uring/bench_uring.c.
func fileReads() {
    let fileBlocks = (Sizes.smoke ? 4 : 64) * 256
    let ops = Sizes.smoke ? 2_000 : 200_000
    var path = Array("/tmp/aio_bench_file_XXXXXX".utf8CString)
    let fd = path.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    precondition(fd >= 0)
    unlink(String(cString: path))
    var block = [UInt8](repeating: 7, count: 4096)
    for i in 0..<fileBlocks {
        precondition(block.withUnsafeMutableBytes { pwrite(fd, $0.baseAddress, 4096, off_t(i * 4096)) } == 4096)
    }
    for i in 0..<fileBlocks { _ = block.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4096, off_t(i * 4096)) } }
    // BENCH_FILE_PATHS=uring (or pool) measures one path only (profiling).
    let only = env("BENCH_FILE_PATHS")
    for (monitor, copying, label) in [(FDMonitorKind.ioUring, false, "uring"), (.epoll, false, "pool"),
                                      (.ioUring, true, "uring_copy")] {
        if let only, only != label { continue }
        for depth in [1, 32] {
            let ctx = try! AioContext(name: "bench-file", fdMonitor: monitor)
            let reader = RandomReader(ctx: ctx, fd: fd, blocks: fileBlocks, ops: ops, depth: depth, copying: copying)
            var ru0 = rusage(); getrusage(RUSAGE_SELF.rawValue, &ru0)
            let start = nowNs()
            ctx.acquire()
            for slot in 0..<depth { reader.issue(slot: slot) }
            while reader.done < ops { ctx.poll(blocking: true) }
            ctx.release()
            let ns = nowNs() - start
            var ru1 = rusage(); getrusage(RUSAGE_SELF.rawValue, &ru1)
            func cpu(_ r: rusage) -> Double {
                Double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + Double(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6
            }
            result(impl, "h_\(label)_qd\(depth)_kops", Double(ops) / (Double(ns) / 1e9) / 1000, "kops/s")
            result(impl, "h_\(label)_qd\(depth)_cpu_us", (cpu(ru1) - cpu(ru0)) / Double(ops) * 1e6, "us/op")
            if env("BENCH_FILE_PASSES") != nil {
                print("# \(label) qd\(depth): \(ctx.statistics.iterations) passes, \(ctx.statistics.blockingWaits) sleeps for \(ops) reads")
            }
            if monitor != .ioUring { ctx.threadPool.shutdown() }
        }
    }
    close(fd)
}

/// Keeps `depth` reads in flight: each completion (on the loop) issues the
/// next, into the buffer it just filled (as the C floor does), or, with
/// `copying`, through the `[UInt8]` form (a buffer and an array per read).
final class RandomReader: @unchecked Sendable {
    // @unchecked Sendable: touched only on the context's thread.
    let ctx: AioContext
    let fd: Int32
    let blocks: Int
    let ops: Int
    let copying: Bool
    @exclusivity(unchecked) var issued = 0
    @exclusivity(unchecked) var done = 0
    @exclusivity(unchecked) var seed: UInt64 = 88172645463325252
    let buffers: UnsafeMutableRawBufferPointer

    init(ctx: AioContext, fd: Int32, blocks: Int, ops: Int, depth: Int, copying: Bool) {
        self.ctx = ctx
        self.fd = fd
        self.blocks = blocks
        self.ops = ops
        self.copying = copying
        buffers = .allocate(byteCount: depth * 4096, alignment: 4096)
    }

    deinit { buffers.deallocate() }

    func issue(slot: Int) {
        issued += 1
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
        let offset = Int64(seed % UInt64(blocks)) * 4096
        if copying {
            try! ctx.read(from: fd, count: 4096, at: offset) { [self] r in
                precondition((try? r.get().count) == 4096, "short or failed read")
                completed(slot: slot)
            }
        } else {
            let buffer = UnsafeMutableRawBufferPointer(rebasing: buffers[slot * 4096..<(slot + 1) * 4096])
            try! ctx.unsafeRead(from: fd, into: buffer, at: offset) { [self] r in
                precondition((try? r.get()) == 4096, "short or failed read")
                completed(slot: slot)
            }
        }
    }

    private func completed(slot: Int) {
        done += 1
        if issued < ops { issue(slot: slot) }
    }
}

// MARK: (f) timer lateness

/// Lateness of 500 timers (200 µs to 1 ms ahead), natively or through
/// g_main_context_iteration with the context attached to a private GMainContext.
func timerLateness(path: LoopPath) {
    let ctx = try! AioContext(name: "bench-timers")
    let mainContext = path == .gsource ? g_main_context_new() : nil
    if let mainContext { ctx.attach(to: mainContext) }
    final class Box: @unchecked Sendable { var target: Int64 = 0; var late: [Int64] = [] }
    let box = Box()
    let timer = ctx.makeTimer(name: "lateness") { _ in box.late.append(nowNs() - box.target) }
    let count = Sizes.smoke ? 50 : 500
    box.late.reserveCapacity(count)
    for i in 0..<count {
        box.target = nowNs() + Int64(200_000 + (i % 9) * 100_000)
        timer.schedule(at: AioInstant(nanoseconds: box.target))
        while box.late.count == i {
            if let mainContext { g_main_context_iteration(mainContext, 1) } else { ctx.poll(blocking: true) }
        }
    }
    if let mainContext {
        ctx.detach()
        while g_main_context_iteration(mainContext, 0) != 0 {}
        g_main_context_unref(mainContext)
    }
    let sorted = box.late.sorted()
    result(impl, "f_timer_\(path.rawValue)_p50_us", percentileUs(sorted, 0.5), "us")
    result(impl, "f_timer_\(path.rawValue)_p99_us", percentileUs(sorted, 0.99), "us")
}

// MARK: Thread pool and IOThread

/// Submit-to-completion throughput for empty jobs, up to 1,000 in flight:
/// with the pool's default limits (up to 64 workers), and with at most
/// `threads` workers, the size the peers' pools get.
func poolThroughput() {
    poolThroughput(threads: nil)
    poolThroughput(threads: 4)
}

private func poolThroughput(threads: Int?) {
    let name = threads.map { "pool\($0)" } ?? "pool"
    guard selected(name + "_") else { return }
    let ctx = try! AioContext(name: "bench-pool")
    if let threads { ctx.threadPool.setThreadLimits(minimum: 0, maximum: threads) }
    final class Box: @unchecked Sendable { var done = 0 }
    let box = Box()
    let jobs = Sizes.smoke ? 2_000 : 200_000
    let batch = 1_000
    let start = nowNs()
    var submitted = 0
    while box.done < jobs {
        while submitted < jobs && submitted - box.done < batch {
            ctx.threadPool.submit({ 0 }, completion: { _ in box.done += 1 })
            submitted += 1
        }
        ctx.poll(blocking: true)
    }
    let ns = nowNs() - start
    ctx.threadPool.shutdown()
    result(impl, name + "_jobs_per_s", opsPerSecond(jobs, ns), "jobs/s")
}

/// One-shot to an IOThread that writes an eventfd back, waited for with poll(2).
func ioThreadRoundTrip() {
    let io = try! IOThread(name: "bench-io")
    try! io.start()
    let back = try! EventNotifier()
    let rounds = Sizes.smoke ? 200 : 20_000
    var samples: [Int64] = []
    samples.reserveCapacity(rounds)
    var entry = pollfd(fd: back.fd, events: Int16(POLLIN), revents: 0)
    for _ in 0..<rounds {
        let start = nowNs()
        io.context.scheduleOneshot { back.set() }
        while Glibc.poll(&entry, 1, -1) != 1 {}
        back.testAndClear()
        samples.append(nowNs() - start)
    }
    io.stop()
    io.join()
    samples.sort()
    result(impl, "iothread_rtt_p50_us", percentileUs(samples, 0.5), "us")
    result(impl, "iothread_rtt_p99_us", percentileUs(samples, 0.99), "us")
}
