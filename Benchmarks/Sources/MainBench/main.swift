// main-bench: `await MainActor.run {}` round trips from a background task to
// the main actor on a GLib main loop, and back; one process per way of
// running the main actor there (the main executor is chosen once per
// process):
//
//   main-bench pump       MainQueuePump on the default GMainContext, g_main_loop_run
//   main-bench executor   GLibMainExecutor (AioMainExecutor), installed with
//                         _createExecutors from this synchronous main
//
// Prints RESULT lines like aio-bench; Benchmarks/run.sh runs both each run.

@_spi(ExperimentalCustomExecutors) import AioMainExecutor
@_spi(ExperimentalCustomExecutors) import _Concurrency
import Aio
import CGLibShim
import Glibc

let mode = CommandLine.arguments.dropFirst().first ?? ""
guard mode == "pump" || mode == "executor" else {
    print("usage: main-bench pump|executor")
    exit(2)
}
if mode == "executor" {
    _createExecutors(factory: GLibExecutorFactory.self)
}

func nowNs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Main-actor state each round trip touches, so the hop cannot be elided.
@MainActor enum Counter { static var value = 0 }

/// Quits whichever loop runs the main thread.
struct Quit: @unchecked Sendable {
    // @unchecked Sendable: g_main_loop_quit is thread-safe.
    let loop: OpaquePointer?
    func callAsFunction() {
        if let loop { g_main_loop_quit(loop) } else { GLibMainExecutor.shared.stop() }
    }
}

let n = getenv("BENCH_SMOKE").map { String(cString: $0) } == "1" ? 500 : 20_000
let loop = mode == "pump" ? g_main_loop_new(nil, 0) : nil
let pump = mode == "pump" ? try MainQueuePump.install() : nil
let quit = Quit(loop: loop)

Task.detached {
    for _ in 0..<min(1_000, n) { await MainActor.run { Counter.value += 1 } }
    var rtt = [Int64](repeating: 0, count: n)
    for i in 0..<n {
        let t0 = nowNs()
        await MainActor.run { Counter.value += 1 }
        rtt[i] = nowNs() - t0
    }
    rtt.sort()
    for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
        let us = Double(rtt[min(n - 1, Int(Double(n) * p))]) / 1000
        print("RESULT aio g_mainrun_\(mode)_rtt_\(label)_us \(us) us")
    }
    quit()
}
if let loop {
    g_main_loop_run(loop)
    pump?.drainNow()
} else {
    try GLibMainExecutor.shared.run()
}
