// Swift concurrency on executors: actor-hop round trips and job throughput
// for an actor on an AioContext (native IOThread, and GSource), an actor on
// a SwiftNIO event loop (its SerialExecutor), and a default actor on Swift's
// global executor ("swift"). Plus adaptive busy polling: wake latency and
// CPU per wake at a steady request rate with polling off and on.

import Aio
import CGLibShim
import Glibc
import NIOCore
import NIOPosix
import Synchronization

/// What every measured actor does: count, and say so; and call another
/// actor `n` times (the pair rows).
protocol Bumping: Actor {
    func bump() -> Int
    func callPartner(_ partner: some Bumping, _ n: Int) async
}

extension Bumping {
    func callPartner(_ partner: some Bumping, _ n: Int) async {
        for _ in 0..<n { _ = await partner.bump() }
    }
}

/// An actor on a given serial executor (an AioContext or a NIO event loop).
actor ExecutorActor: Bumping {
    nonisolated let executor: UnownedSerialExecutor
    let keepAlive: AnyObject  // the context or the event loop group
    var count = 0
    init(_ executor: UnownedSerialExecutor, keepAlive: AnyObject) {
        self.executor = executor
        self.keepAlive = keepAlive
    }
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor }
    func bump() -> Int { count += 1; return count }
}

/// A default actor: its jobs run on the global executor.
actor DefaultActor: Bumping {
    var count = 0
    func bump() -> Int { count += 1; return count }
}

/// Runs `body` in a detached task and blocks this (non-pool) thread until it
/// is done.
func blockOn(_ body: @escaping @Sendable () async -> Void) {
    let done = Semaphore()
    Task.detached {
        await body()
        done.post()
    }
    done.wait()
}

/// Round trips `await actor.bump()` from a task on the global executor
/// (hop to the actor's executor and back), then the same calls from 4 tasks
/// at once (throughput of the actor's executor under contention).
func actorRows(_ impl: String, _ tag: String, _ actor: some Bumping) {
    let n = Sizes.pings
    let flood = Sizes.smoke ? 4_000 : 2_000_000
    blockOn {
        for _ in 0..<min(1_000, n) { _ = await actor.bump() }
        var rtt = [Int64](repeating: 0, count: n)
        for i in 0..<n {
            let t0 = nowNs()
            _ = await actor.bump()
            rtt[i] = nowNs() - t0
        }
        rtt.sort()
        result(impl, "g_hop\(tag)_rtt_p50_us", percentileUs(rtt, 0.5), "us")
        result(impl, "g_hop\(tag)_rtt_p99_us", percentileUs(rtt, 0.99), "us")

        let t0 = nowNs()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    for _ in 0..<(flood / 4) { _ = await actor.bump() }
                }
            }
        }
        result(impl, "g_calls\(tag)_ops_per_s", opsPerSecond(flood, nowNs() - t0), "ops/s")
    }
}

/// Hop round trips to actors on several executors, measured in one process
/// and interleaved: blocks of 500 round trips to each in turn, so that every
/// executor sees the same machine state (which CPU the pool threads sit on,
/// how deeply idle the other CPU is). Separate processes (`actorRows`) swing
/// between about 12 and 40 µs from one process to the next on a 2-vCPU VM,
/// for any executor; this is the like-for-like comparison.
func interleavedHops(_ actors: [(tag: String, actor: any Bumping)]) {
    let blocks = Sizes.smoke ? 4 : 40
    let perBlock = 500
    blockOn {
        var samples = [[Int64]](repeating: [], count: actors.count)
        for (i, entry) in actors.enumerated() {
            for _ in 0..<200 { _ = await entry.actor.bump() }  // warm-up
            samples[i].reserveCapacity(blocks * perBlock)
        }
        for _ in 0..<blocks {
            for (i, entry) in actors.enumerated() {
                for _ in 0..<perBlock {
                    let t0 = nowNs()
                    _ = await entry.actor.bump()
                    samples[i].append(nowNs() - t0)
                }
            }
        }
        for (i, entry) in actors.enumerated() {
            let sorted = samples[i].sorted()
            result("aio", "g_hopmix_\(entry.tag)_rtt_p50_us", percentileUs(sorted, 0.5), "us")
            result("aio", "g_hopmix_\(entry.tag)_rtt_p99_us", percentileUs(sorted, 0.99), "us")
        }
    }
}

/// Calls between two actors on one executor: 4 tasks each ask `first` to
/// call `second` many times. On one serial executor (a context, a NIO event
/// loop) the runtime can switch between the two inline; this is the row that
/// shows whether it does.
func pairRows(_ impl: String, _ tag: String, _ first: some Bumping, _ second: some Bumping) {
    let flood = Sizes.smoke ? 4_000 : 4_000_000
    blockOn {
        await first.callPartner(second, min(1_000, flood))
        let t0 = nowNs()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { await first.callPartner(second, flood / 4) }
            }
        }
        result(impl, "g_pair\(tag)_ops_per_s", opsPerSecond(flood, nowNs() - t0), "ops/s")
    }
}

/// `Task.sleep(for: .milliseconds(1))` lateness in a task that prefers
/// `executor` (nil: the global executor), measured by the task itself once it
/// runs again, so a wake that has to hop back to the task's executor counts.
func sleepLateness(_ impl: String, _ metric: String, _ executor: (any TaskExecutor)?) {
    let n = Sizes.smoke ? 50 : 500
    let done = Semaphore()
    let box = LatenessBox()
    Task(executorPreference: executor) {
        var late = [Int64](repeating: 0, count: n)
        for i in 0..<n {
            let t0 = nowNs()
            try? await Task.sleep(for: .milliseconds(1))
            late[i] = nowNs() - t0 - 1_000_000
        }
        late.sort()
        box.sorted = late
        done.post()
    }
    done.wait()
    result(impl, metric + "_p50_us", percentileUs(box.sorted, 0.5), "us")
    result(impl, metric + "_p99_us", percentileUs(box.sorted, 0.99), "us")
}

/// Hands the sorted samples from the measuring task to the waiting thread.
final class LatenessBox: @unchecked Sendable {
    // @unchecked Sendable: written by the task before `done.post()`, read
    // after `done.wait()`.
    var sorted: [Int64] = []
}

final class JobCounter: @unchecked Sendable {
    let count = Atomic<Int>(0)
    let done = Semaphore()
    let target: Int
    init(target: Int) { self.target = target }
    @inline(__always) func hit() {
        if count.wrappingAdd(1, ordering: .relaxed).newValue == target { done.post() }
    }
}

/// Enqueue → run throughput: one thread creates `n` tasks that prefer
/// `executor` (nil: the global executor); time until the last one ran.
func taskFlood(_ impl: String, _ metric: String, _ executor: (any TaskExecutor)?) {
    let n = Sizes.smoke ? 4_000 : 200_000
    let counter = JobCounter(target: n)
    let t0 = nowNs()
    for _ in 0..<n {
        Task(executorPreference: executor) { counter.hit() }
    }
    counter.done.wait()
    result(impl, metric + "_ops_per_s", opsPerSecond(n, nowNs() - t0), "ops/s")
}

func executorRows() {
    guard selected("g_") else { return }
    for path in LoopPath.allCases {
        let loop = RemoteLoop(path)
        let tag = "_" + path.rawValue
        let executor = loop.context.asUnownedSerialExecutor()
        actorRows("aio", tag, ExecutorActor(executor, keepAlive: loop.context))
        pairRows("aio", tag, ExecutorActor(executor, keepAlive: loop.context),
                 ExecutorActor(executor, keepAlive: loop.context))
        taskFlood("aio", "g_tasks" + tag, loop.context.taskExecutor)
        sleepLateness("aio", "g_sleep" + tag, loop.context.taskExecutor)
        loop.stop()
    }
    // An IOThread as it comes: busy polling on (32 µs, QEMU's default).
    let loop = RemoteLoop(.native, polling: true)
    actorRows("aio", "_native_polling", ExecutorActor(loop.context.asUnownedSerialExecutor(), keepAlive: loop.context))
    loop.stop()

    // All of them and a NIO event loop, interleaved in this process.
    let native = RemoteLoop(.native)
    let polling = RemoteLoop(.native, polling: true)
    let gsource = RemoteLoop(.gsource)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    interleavedHops([
        ("native", ExecutorActor(native.context.asUnownedSerialExecutor(), keepAlive: native.context)),
        ("native_polling", ExecutorActor(polling.context.asUnownedSerialExecutor(), keepAlive: polling.context)),
        ("gsource", ExecutorActor(gsource.context.asUnownedSerialExecutor(), keepAlive: gsource.context)),
        ("nio", ExecutorActor(group.next().executor.asUnownedSerialExecutor(), keepAlive: group)),
    ])
    try! group.syncShutdownGracefully()
    native.stop()
    polling.stop()
    gsource.stop()
}

func nioExecutorRows() {
    guard selected("g_") else { return }
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let loop = group.next()
    let executor = loop.executor.asUnownedSerialExecutor()
    actorRows("nio", "", ExecutorActor(executor, keepAlive: group))
    pairRows("nio", "", ExecutorActor(executor, keepAlive: group), ExecutorActor(executor, keepAlive: group))
    try! group.syncShutdownGracefully()
}

func globalExecutorRows() {
    guard selected("g_") else { return }
    actorRows("swift", "", DefaultActor())
    pairRows("swift", "", DefaultActor(), DefaultActor())
    taskFlood("swift", "g_tasks", nil)
    sleepLateness("swift", "g_sleep", nil)
}

// MARK: Adaptive busy polling

/// Wake latency at a steady request rate (one BH schedule every 100 µs, i.e.
/// 10k requests/s) to an IOThread with busy polling at `maxNs` (0: off), and
/// what the loop thread's CPU pays per wake (thread CPU time, measured on the
/// loop thread, divided by the requests).
func pollingLatency(maxNs: Int64) {
    let name = "p_poll\(maxNs / 1000)"
    guard selected(name) else { return }
    let io = try! IOThread(name: "bench-poll")
    io.context.pollMaxNs = maxNs
    try! io.start()
    let ctx = io.context
    let flood = Flood()
    let bh = ctx.makeBottomHalf(name: "request") { _ in flood.ping() }
    let n = Sizes.pings
    let periodNs: Int64 = 100_000
    var wake = [Int64](repeating: 0, count: n)
    let cpu = LoopCPU()
    func request(_ record: Int?) {
        let t0 = nowNs()
        bh.schedule()
        flood.done.wait()
        if let i = record { wake[i] = flood.stamp - t0 }
        while nowNs() < t0 + periodNs {}
    }
    for _ in 0..<min(2_000, n) { request(nil) }  // let the windows settle
    let stats0 = ctx.statistics
    cpu.mark(ctx)
    for i in 0..<n { request(i) }
    cpu.mark(ctx)
    let stats1 = ctx.statistics
    wake.sort()
    result(impl, name + "_wake_p50_us", percentileUs(wake, 0.5), "us")
    result(impl, name + "_wake_p99_us", percentileUs(wake, 0.99), "us")
    result(impl, name + "_cpu_us_per_wake", Double(cpu.elapsedNs) / Double(n) / 1000, "us")
    result(impl, name + "_spin_hits_per_wake", Double(stats1.busyPollHits - stats0.busyPollHits) / Double(n), "perop")
    result(impl, name + "_sleeps_per_wake", Double(stats1.blockingWaits - stats0.blockingWaits) / Double(n), "perop")
    bh.delete()
    io.stop()
    io.join()
}

/// CPU the loop thread of an IOThread with polling on (32 µs) uses over 1 s
/// of idleness after a busy spell, with a 10 ms periodic timer waking it.
func pollingIdleCPU() {
    guard selected("p_idle") else { return }
    let io = try! IOThread(name: "bench-idle")
    try! io.start()
    let ctx = io.context
    let flood = Flood()
    let bh = ctx.makeBottomHalf(name: "burst") { _ in flood.ping() }
    for _ in 0..<2_000 {
        bh.schedule()
        flood.done.wait()
        let t = nowNs()
        while nowNs() < t + 10_000 {}
    }
    let ticks = Atomic<Int>(0)
    let seconds = Sizes.smoke ? 0.1 : 1.0
    let wakes = Int(seconds * 100)
    let finished = Semaphore()
    let timer = ctx.makeTimer(name: "10ms") { t in
        if ticks.wrappingAdd(1, ordering: .relaxed).newValue < wakes {
            t.schedule(after: .milliseconds(10))
        } else {
            finished.post()
        }
    }
    let cpu = LoopCPU()
    cpu.mark(ctx)
    timer.schedule(after: .milliseconds(10))
    finished.wait()
    cpu.mark(ctx)
    result(impl, "p_idle_cpu_percent", Double(cpu.elapsedNs) / (seconds * 1e9) * 100, "percent")
    bh.delete()
    io.stop()
    io.join()
}

/// Loop-thread CPU time, sampled on the loop thread by a one-shot.
final class LoopCPU: @unchecked Sendable {
    // @unchecked Sendable: `samples` is written on the loop thread and read
    // by the caller after the semaphore hands it over.
    private var samples: [Int64] = []
    private let done = Semaphore()
    func mark(_ ctx: AioContext) {
        ctx.scheduleOneshot {
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            self.samples.append(Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
            self.done.post()
        }
        done.wait()
    }
    var elapsedNs: Int64 { samples[samples.count - 1] - samples[0] }
}

private let impl = "aio"
