// Shared pieces of aio-bench: clock, sizes, the RESULT line format, syscall
// counters (from an LD_PRELOADed counter, when present), allocation counters,
// a semaphore, a start gate for producer threads, percentiles.

import Aio
import CBenchSupport
import Glibc
import Synchronization

// MARK: Clock and environment

@inline(__always)
func nowNs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
}

func sleepUs(_ us: Int) {
    var request = timespec(tv_sec: us / 1_000_000, tv_nsec: (us % 1_000_000) * 1000)
    var left = timespec()
    while nanosleep(&request, &left) == -1 && errno == EINTR { request = left }
}

func env(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    return String(cString: v)
}

func envInt(_ name: String, _ fallback: Int) -> Int {
    env(name).flatMap { Int($0) } ?? fallback
}

/// Sizes, with the same names and defaults as the C peers, so one set of
/// environment variables sizes every program of a run. BENCH_SMOKE=1 shrinks
/// the defaults to a few milliseconds of work each.
enum Sizes {
    static let smoke = env("BENCH_SMOKE") == "1"
    /// (a) callbacks per same-thread chain.
    static let same = envInt("BENCH_N_SAME", smoke ? 20_000 : 1_000_000)
    /// (b) posts per cross-thread flood.
    static let cross = envInt("BENCH_N_CROSS", smoke ? 20_000 : 1_000_000)
    /// (c) pings per latency run, and the idle gap before each.
    static let pings = envInt("BENCH_N_PING", smoke ? 200 : 10_000)
    static let gapUs = envInt("BENCH_PING_GAP_US", 50)
    /// (d) operations per allocation count.
    static let allocOps = smoke ? 1_000 : 100_000
    /// (e) polls per scaling point.
    static let scalingPolls = envInt("BENCH_N_SCALING", smoke ? 2_000 : 200_000)
    /// Warm-up callbacks before each timed chain (as the C peers do).
    static let warmup = smoke ? 1_000 : 10_000
}

/// BENCH_ONLY=prefix[,prefix...] keeps only the rows whose metric name starts
/// with one of the prefixes (for profiling one row under callgrind).
let onlyPrefixes: [String] = (env("BENCH_ONLY") ?? "").split(separator: ",").map(String.init)

func selected(_ row: String) -> Bool {
    onlyPrefixes.isEmpty || onlyPrefixes.contains { row.hasPrefix($0) }
}

// MARK: Results

/// Every measurement is printed as `RESULT <impl> <metric> <value> <unit>`,
/// the C peers' format, and kept for the summary printed at the end.
final class Results: @unchecked Sendable {
    // @unchecked Sendable: only the main thread records (benchmarks hand their
    // numbers back to it before recording).
    static let shared = Results()
    private var order: [String] = []
    private var values: [String: [Double]] = [:]
    private var units: [String: String] = [:]

    func record(_ impl: String, _ metric: String, _ value: Double, _ unit: String) {
        print("RESULT \(impl) \(metric) \(decimal(value, places: 4)) \(unit)")
        fflush(nil)
        let key = impl + " " + metric
        if values[key] == nil { order.append(key) }
        values[key, default: []].append(value)
        units[key] = unit
    }

    /// Median and min-max of every metric over this process's runs.
    func printSummary(runs: Int) {
        guard !order.isEmpty else { return }
        print("\n# aio-bench summary: \(runs) run(s) per metric; median (min-max)")
        let width = order.map(\.count).max() ?? 0
        for key in order {
            let v = values[key]!.sorted()
            let median = v[v.count / 2]
            let text = key.padding(to: width) + "  " + decimal(median, places: 3)
                + " " + units[key]! + "  (" + decimal(v.first!, places: 3) + "-" + decimal(v.last!, places: 3) + ")"
            print("# " + text)
        }
    }
}

func result(_ impl: String, _ metric: String, _ value: Double, _ unit: String) {
    Results.shared.record(impl, metric, value, unit)
}

/// Fixed-point text without Foundation.
func decimal(_ v: Double, places: Int) -> String {
    guard v.isFinite else { return v.isNaN ? "nan" : (v < 0 ? "-inf" : "inf") }
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    let scaled = (abs(v) * scale).rounded()
    guard scaled < 9e18 else { return String(v) }
    let n = Int64(scaled)
    let unit = Int64(scale)
    var frac = String(n % unit)
    while frac.count < places { frac = "0" + frac }
    return (v < 0 && n != 0 ? "-" : "") + String(n / unit) + (places > 0 ? "." + frac : "")
}

extension String {
    func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

// MARK: Syscall counters (LD_PRELOAD counter from ../shared/peers/common)

/// eventfd writes and reads, blocking and non-blocking waits, counted by the
/// preloaded `fdcount.so` if present (the C peers' counter). Without it every
/// snapshot is nil and no count is printed.
struct SyscallCounts {
    var efdWrites: UInt64 = 0, efdReads: UInt64 = 0, blockingWaits: UInt64 = 0, nonblockingPolls: UInt64 = 0

    private typealias Snapshot = @convention(c) (UnsafeMutablePointer<UInt64>) -> Void
    // SAFETY: dlsym's result is the address of `void fdcount_snapshot(struct
    // fdcount_snap *)`, whose struct is four unsigned longs (UInt64 on x86_64
    // and aarch64 Linux).
    private static let snapshotFunction: Snapshot? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fdcount_snapshot") else { return nil }
        return unsafeBitCast(symbol, to: Snapshot.self)
    }()

    static var available: Bool { snapshotFunction != nil }

    static func now() -> SyscallCounts? {
        guard let f = snapshotFunction else { return nil }
        var raw: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutablePointer(to: &raw) {
            $0.withMemoryRebound(to: UInt64.self, capacity: 4) { f($0) }
        }
        return SyscallCounts(efdWrites: raw.0, efdReads: raw.1, blockingWaits: raw.2, nonblockingPolls: raw.3)
    }

    /// Prints the per-op counts between two snapshots, with the peers' metric names.
    static func report(_ impl: String, _ prefix: String, from a: SyscallCounts?, to b: SyscallCounts?, ops: Int) {
        guard let a, let b else { return }
        let n = Double(ops)
        result(impl, prefix + "_efd_writes_per_op", Double(b.efdWrites &- a.efdWrites) / n, "writes/op")
        result(impl, prefix + "_efd_reads_per_op", Double(b.efdReads &- a.efdReads) / n, "reads/op")
        result(impl, prefix + "_blocking_waits_per_op", Double(b.blockingWaits &- a.blockingWaits) / n, "waits/op")
        result(impl, prefix + "_nonblocking_polls_per_op", Double(b.nonblockingPolls &- a.nonblockingPolls) / n, "polls/op")
    }
}

/// The library's own counter of eventfd writes, per op, next to the
/// preloaded counter's (they must agree: only notify() writes eventfds).
func reportLibraryWrites(_ prefix: String, _ ctx: AioContext, from before: AioContext.Statistics, ops: Int) {
    let after = ctx.statistics
    result("aio", prefix + "_lib_efd_writes_per_op",
           Double(after.eventfdWrites - before.eventfdWrites) / Double(ops), "writes/op")
    result("aio", prefix + "_lib_blocking_waits_per_op",
           Double(after.blockingWaits - before.blockingWaits) / Double(ops), "waits/op")
}

// MARK: Allocation counters

enum Allocations {
    static var active: Bool { bench_alloc_counter_active() != 0 }
    /// Allocation calls made by the calling thread so far.
    static var thisThread: UInt { UInt(bench_thread_allocations()) }

    /// Allocation calls made by every thread while `body` runs. Only for
    /// untimed runs: the process-wide count is an atomic add per allocation.
    static func processWide(_ body: () -> Void) -> UInt {
        bench_count_process(1)
        let before = bench_process_allocations()
        body()
        let after = bench_process_allocations()
        bench_count_process(0)
        return UInt(after - before)
    }
}

// MARK: Threads

/// A POSIX semaphore at a stable address: the hand-back the C peers use.
final class Semaphore: @unchecked Sendable {
    // SAFETY: allocated and initialised once; sem_* synchronise every access.
    private let sem: UnsafeMutablePointer<sem_t>
    init() {
        sem = .allocate(capacity: 1)
        sem_init(sem, 0, 0)
    }
    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }
    @inline(__always) func post() { sem_post(sem) }
    func wait() { while sem_wait(sem) != 0 && errno == EINTR {} }
}

/// Releases producer threads at once, so several start together.
final class StartGate: Sendable {
    private let open = Atomic<Bool>(false)
    private let arrived = Atomic<Int>(0)

    /// Producer side: announce, then spin until opened.
    func pass() {
        arrived.wrappingAdd(1, ordering: .relaxed)
        // Acquiring pairs with the releasing store in `release`.
        while !open.load(ordering: .acquiring) { sched_yield() }
    }

    /// Waits until `count` producers arrived, opens, returns the start time.
    func release(after count: Int) -> Int64 {
        while arrived.load(ordering: .relaxed) < count { sched_yield() }
        let t0 = nowNs()
        open.store(true, ordering: .releasing)
        return t0
    }
}

/// Runs `body(i)` on `count` new threads, released together; returns the
/// release time. Joins them before returning.
func withProducers(_ count: Int, name: String, _ body: @escaping @Sendable (Int) -> Void) -> Int64 {
    let gate = StartGate()
    let threads = (0..<count).map { i in
        try! NativeThread(name: "\(name)\(i)") {
            gate.pass()
            body(i)
        }
    }
    let t0 = gate.release(after: count)
    for t in threads { t.join() }
    return t0
}

// MARK: Statistics

/// p-th percentile (0...1) of `samples` in ns, returned in µs; the C peers'
/// convention (index n*p of the sorted samples).
func percentileUs(_ sorted: [Int64], _ p: Double) -> Double {
    Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000
}

/// Row (c) for every implementation: `Sizes.pings` times, sleep the idle gap
/// (the loop falls asleep), take the time, `post` one callback that calls
/// `flood.ping()`, wait for it; wake = callback start − post time, rtt =
/// back on this thread − post time. Reports p50/p99 of both and the
/// syscall counts as `<metric>_*`.
func measurePings(_ impl: String, _ metric: String, _ flood: Flood, post: () -> Void) {
    let n = Sizes.pings
    var wake = [Int64](repeating: 0, count: n)
    var rtt = [Int64](repeating: 0, count: n)
    let c0 = SyscallCounts.now()
    for i in 0..<n {
        sleepUs(Sizes.gapUs)
        let t0 = nowNs()
        post()
        flood.done.wait()
        let t2 = nowNs()
        wake[i] = flood.stamp - t0
        rtt[i] = t2 - t0
    }
    let c1 = SyscallCounts.now()
    wake.sort()
    rtt.sort()
    result(impl, metric + "_wake_p50_us", percentileUs(wake, 0.5), "us")
    result(impl, metric + "_wake_p99_us", percentileUs(wake, 0.99), "us")
    result(impl, metric + "_rtt_p50_us", percentileUs(rtt, 0.5), "us")
    result(impl, metric + "_rtt_p99_us", percentileUs(rtt, 0.99), "us")
    SyscallCounts.report(impl, metric, from: c0, to: c1, ops: n)
}

func opsPerSecond(_ ops: Int, _ ns: Int64) -> Double {
    Double(ops) / (Double(max(ns, 1)) / 1e9)
}
