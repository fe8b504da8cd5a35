// Peer: SwiftNIO's SelectableEventLoop (a MultiThreadedEventLoopGroup of one
// thread), with the same shapes as the library's rows. Printed as
// "RESULT nio <metric> ...".
//
// Every closure captures a single class reference, which Swift passes as the
// closure's context without allocating: NIO's best case (its own allocation
// gates count `execute` of such a closure as allocation-free).

import Aio
import Glibc
import NIOCore
import NIOPosix

private let impl = "nio"

private final class NIOChain: @unchecked Sendable {
    // @unchecked Sendable: `count` is touched on the event loop only; the
    // measuring thread reads it after `done.wait()`.
    let loop: any EventLoop
    var count = 0
    var target = 0
    let done = Semaphore()
    init(_ loop: any EventLoop) { self.loop = loop }
}

/// Each closure executes the next, from inside the loop.
private func executeStep(_ chain: NIOChain) {
    chain.count += 1
    if chain.count < chain.target {
        chain.loop.execute { executeStep(chain) }
    } else {
        chain.done.post()
    }
}

private func executeChain(_ loop: any EventLoop, _ n: Int) -> Int64 {
    let chain = NIOChain(loop)
    chain.target = n
    let t0 = nowNs()
    loop.execute { executeStep(chain) }
    chain.done.wait()
    return nowNs() - t0
}

private func withGroup(_ body: (any EventLoop) -> Void) {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    body(group.next())
    try! group.syncShutdownGracefully()
}

func nioSameThread() {
    withGroup { loop in
        let n = Sizes.same
        _ = executeChain(loop, Sizes.warmup)
        let c0 = SyscallCounts.now()
        let ns = executeChain(loop, n)
        result(impl, "a_execute_ops_per_s", opsPerSecond(n, ns), "ops/s")
        result(impl, "a_execute_ns_per_op", Double(ns) / Double(n), "ns/op")
        SyscallCounts.report(impl, "a_execute", from: c0, to: SyscallCounts.now(), ops: n)
    }
}

func nioCrossThread(producers: Int) {
    withGroup { loop in
        let n = Sizes.cross / producers * producers
        let perProducer = n / producers
        let f = Flood()
        f.target = n
        let name = producers == 1 ? "b_execute" : "b_execute\(producers)"
        let c0 = SyscallCounts.now()
        let t0 = withProducers(producers, name: "producer") { _ in
            for _ in 0..<perProducer { loop.execute { f.hit() } }
        }
        f.done.wait()
        let c1 = SyscallCounts.now()
        result(impl, name + "_ops_per_s", opsPerSecond(n, f.end - t0), "ops/s")
        SyscallCounts.report(impl, name, from: c0, to: c1, ops: n)
    }
}

func nioWakeLatency() {
    withGroup { loop in
        let f = Flood()
        measurePings(impl, "c_execute", f) { loop.execute { f.ping() } }
    }
}

func nioAllocations() {
    guard Allocations.active else { return }
    withGroup { loop in
        let n = Sizes.allocOps
        _ = executeChain(loop, 1_000)
        // In-loop chain: every thread's allocations per execute.
        var total = Allocations.processWide { _ = executeChain(loop, n) }
        result(impl, "d_execute_inloop_allocs_per_op", Double(total) / Double(n), "allocs/op")
        // From another thread.
        let f = Flood()
        f.target = n
        total = Allocations.processWide {
            for _ in 0..<n { loop.execute { f.hit() } }
            f.done.wait()
        }
        result(impl, "d_execute_cross_allocs_per_op", Double(total) / Double(n), "allocs/op")
    }
}

// MARK: Thread pool: NIOThreadPool, completions on the event loop

/// Row (other): empty jobs on an `NIOThreadPool` of `threads` threads through
/// `runIfActive(eventLoop:)`, whose future completes on the event loop; up
/// to 1,000 in flight, refilled from the completions, as the library's row.
private final class NIOPoolState: @unchecked Sendable {
    // @unchecked Sendable: `submitted`, `completed` and `end` are touched on
    // the event loop only; the measuring thread reads `end` after `done.wait()`.
    let loop: any EventLoop
    let pool: NIOThreadPool
    let jobs: Int
    var submitted = 0
    var completed = 0
    var end: Int64 = 0
    let done = Semaphore()
    init(loop: any EventLoop, pool: NIOThreadPool, jobs: Int) {
        self.loop = loop
        self.pool = pool
        self.jobs = jobs
    }

    func submit() {
        submitted += 1
        pool.runIfActive(eventLoop: loop) { 0 }.whenComplete { _ in self.completedOne() }
    }

    private func completedOne() {
        completed += 1
        if completed == jobs {
            end = nowNs()
            done.post()
        } else if submitted < jobs {
            submit()
        }
    }
}

func nioPoolThroughput(threads: Int) {
    let name = "pool\(threads)"
    guard selected(name) else { return }
    let pool = NIOThreadPool(numberOfThreads: threads)
    pool.start()
    withGroup { loop in
        let jobs = Sizes.smoke ? 2_000 : 200_000
        let s = NIOPoolState(loop: loop, pool: pool, jobs: jobs)
        let t0 = nowNs()
        loop.execute { for _ in 0..<min(1_000, jobs) { s.submit() } }
        s.done.wait()
        result(impl, name + "_jobs_per_s", opsPerSecond(jobs, s.end - t0), "jobs/s")
    }
    try! pool.syncShutdownGracefully()
}
