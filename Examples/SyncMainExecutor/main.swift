// SyncMainExecutor: GLibMainExecutor installed from a synchronous main, with
// no compiler flag: `_createExecutors(factory:)` first, then the executor's
// run() drives GLib's default main context until a main-actor task stops it.
// The same hop check as AsyncMainLoop (an async main).
//
//   swift run SyncMainExecutor

@_spi(ExperimentalCustomExecutors) import AioMainExecutor
@_spi(ExperimentalCustomExecutors) import _Concurrency
import Aio
import Glibc
import MainHopCheck

// SYNC_MAIN_SKIP_INSTALL=1 leaves the installation out, to show run()'s
// self-check: it traps, naming the fix (CI checks the message).
if getenv("SYNC_MAIN_SKIP_INSTALL") == nil {
    _createExecutors(factory: GLibExecutorFactory.self)
}
armExitWatchdog(seconds: 120, "SyncMainExecutor")

let disk = try IOThread(name: "disk")
try disk.start()
let worker = Worker(ctx: disk.context)

@MainActor final class Outcome {
    static var report = HopReport()
    static var startedOnMain = false
}

Task { @MainActor in
    Outcome.startedOnMain = onMainThread
    Outcome.report = await hopBetweenMainAndWorker(worker, rounds: 10_000)
    GLibMainExecutor.shared.stop()
}
try GLibMainExecutor.shared.run()

// stop() from other threads, racing with run(): every run() returns (the
// watchdog fails the program if one does not), including after a stop()
// that came before the run().
for round in 0..<200 {
    if round % 2 == 0 {
        Task.detached { GLibMainExecutor.shared.stop() }
    } else {
        GLibMainExecutor.shared.stop()
    }
    try GLibMainExecutor.shared.run()
}
print("ok   200 run() calls ended by stop() from another thread or before run()")

let report = MainActor.assumeIsolated { Outcome.report }
let startedOnMain = MainActor.assumeIsolated { Outcome.startedOnMain }
disk.stop()
disk.join()
print("\(startedOnMain ? "ok  " : "FAIL") the main-actor task started on the main thread")
print("\(report.ok ? "ok  " : "FAIL") \(report)")
let passed = startedOnMain && report.ok
print(passed ? "SyncMainExecutor: all checks passed" : "SyncMainExecutor: a check failed")
exit(passed ? 0 : 1)
