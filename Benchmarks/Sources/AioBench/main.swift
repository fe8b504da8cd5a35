// aio-bench: measurements of the Aio library on this machine. Each benchmark
// runs RUNS times (default 3) and reports the median and the min-max range.
// No assertion on speed: the numbers are for BENCHMARKS.md and issue notes.

import Aio
import CGLibShim
import Glibc

func nowNs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

func env(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    return String(cString: v)
}

let runs = Int(env("RUNS") ?? "") ?? 3
let smoke = env("BENCH_SMOKE") == "1"

struct Row {
    let name: String
    let unit: String
    let values: [Double]
    var median: Double { values.sorted()[values.count / 2] }
    var range: String {
        let s = values.sorted()
        return "\(fixed(s.first!))-\(fixed(s.last!))"
    }
}

var rows: [Row] = []

/// Two decimals, without Foundation.
func fixed(_ v: Double) -> String {
    let hundredths = Int((v * 100).rounded())
    let frac = abs(hundredths % 100)
    return "\(hundredths / 100).\(frac < 10 ? "0" : "")\(frac)"
}

func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return left ? fill + s : s + fill
}

@MainActor func record(_ name: String, _ unit: String, _ body: () -> Double) {
    var values: [Double] = []
    for _ in 0..<runs { values.append(body()) }
    let row = Row(name: name, unit: unit, values: values)
    rows.append(row)
    print(pad(name, 58) + " " + pad(fixed(row.median), 12, left: true) + " " + pad(unit, 8) + " (" + row.range + ")")
}

/// (e) fd scaling: one native poll with `count` registered eventfds, one ready.
func pollCost(fds count: Int) -> Double {
    let ctx = try! AioContext(name: "bench-fds")
    let notifiers = (0..<count).map { _ in try! EventNotifier() }
    for n in notifiers { try! ctx.setHandler(for: n, read: { $0.testAndClear() }) }
    let ready = notifiers[count / 2]
    let iterations = smoke ? 200 : 20_000
    for _ in 0..<100 { ready.set(); ctx.poll(blocking: true) }
    let start = nowNs()
    for _ in 0..<iterations {
        ready.set()
        ctx.poll(blocking: true)
    }
    let ns = Double(nowNs() - start) / Double(iterations)
    for n in notifiers { ctx.removeHandler(for: n) }
    return ns
}

/// (f) timer lateness in µs, p50 or p99 of 500 timers: natively, or through
/// g_main_context_iteration with the context attached to a private GMainContext.
func timerLateness(percentile: Double, gsource: Bool = false) -> Double {
    let ctx = try! AioContext(name: "bench-timers")
    let mainContext = gsource ? g_main_context_new() : nil
    if let mainContext { ctx.attach(to: mainContext) }
    defer {
        if let mainContext {
            ctx.detach()
            while g_main_context_iteration(mainContext, 0) != 0 {}
            g_main_context_unref(mainContext)
        }
    }
    final class Box: @unchecked Sendable { var target: Int64 = 0; var late: [Int64] = [] }
    let box = Box()
    let timer = ctx.makeTimer(name: "lateness") { _ in box.late.append(nowNs() - box.target) }
    let count = smoke ? 50 : 500
    for i in 0..<count {
        box.target = nowNs() + Int64(200_000 + (i % 9) * 100_000)
        timer.schedule(at: AioInstant(nanoseconds: box.target))
        while box.late.count == i {
            if let mainContext { g_main_context_iteration(mainContext, 1) } else { ctx.poll(blocking: true) }
        }
    }
    let sorted = box.late.sorted()
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * percentile))]) / 1000
}

/// Thread pool: submit→completion throughput for empty jobs, in jobs/s.
func poolThroughput() -> Double {
    let ctx = try! AioContext(name: "bench-pool")
    final class Box: @unchecked Sendable { var done = 0 }
    let box = Box()
    let jobs = smoke ? 2_000 : 200_000
    let batch = 1_000
    let start = nowNs()
    var submitted = 0
    while box.done < jobs {
        // Keep up to `batch` jobs in flight, as a real submitter would.
        while submitted < jobs && submitted - box.done < batch {
            ctx.threadPool.submit({ 0 }, completion: { _ in box.done += 1 })
            submitted += 1
        }
        ctx.poll(blocking: true)
    }
    let seconds = Double(nowNs() - start) / 1e9
    ctx.threadPool.shutdown()
    return Double(jobs) / seconds
}

/// One-shot round trip to an IOThread, in µs (p50 or p99): post a one-shot
/// that writes an eventfd back, and wait for it.
func ioThreadRoundTrip(percentile: Double) -> Double {
    let io = try! IOThread(name: "bench-io")
    try! io.start()
    let back = try! EventNotifier()
    var samples: [Int64] = []
    let rounds = smoke ? 200 : 20_000
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
    return Double(samples[min(samples.count - 1, Int(Double(samples.count) * percentile))]) / 1000
}

let selected = Set(CommandLine.arguments.dropFirst())
func wants(_ name: String) -> Bool { selected.isEmpty || selected.contains(name) }

print("aio-bench: \(runs) runs per row; median (min-max)")
if wants("fds") {
    for count in [10, 1_000, 10_000] {
        record("(e) native poll, \(count) fds registered, 1 ready", "ns/poll") { pollCost(fds: count) }
    }
}
if wants("timers") {
    record("(f) timer lateness, native, p50", "µs") { timerLateness(percentile: 0.5) }
    record("(f) timer lateness, native, p99", "µs") { timerLateness(percentile: 0.99) }
    record("(f) timer lateness, GSource, p50", "µs") { timerLateness(percentile: 0.5, gsource: true) }
    record("(f) timer lateness, GSource, p99", "µs") { timerLateness(percentile: 0.99, gsource: true) }
}
if wants("pool") {
    record("thread pool, empty jobs, submit to completion", "jobs/s") { poolThroughput() }
}
if wants("iothread") {
    record("one-shot round trip to an IOThread, p50", "µs") { ioThreadRoundTrip(percentile: 0.5) }
    record("one-shot round trip to an IOThread, p99", "µs") { ioThreadRoundTrip(percentile: 0.99) }
}
