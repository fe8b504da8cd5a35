// GLibDemo: an AioContext attached to a GMainLoop on the default main context.
// Two worker threads schedule one-shot BHs and poke a shared named BH; the
// loop thread runs them, prints what ran, and quits when all work is done.
//
//   swift run GLibDemo

import Aio
import CGLibShim
import Glibc
import Synchronization

struct MainLoop: @unchecked Sendable {  // GLib's GMainLoop API is thread-safe.
    let raw: OpaquePointer
}

/// State that only the loop thread touches (inside BH callbacks).
final class LoopState: @unchecked Sendable {
    var jobsRun = 0
    var progressRuns = 0
    var lastJobByWorker: [Int] = [-1, -1]
}

let jobsPerWorker = 5
let workerCount = 2

let ctx: AioContext
do {
    ctx = try AioContext(name: "demo")
} catch {
    print("cannot create the AioContext: \(error)")
    exit(1)
}
ctx.attach(to: nil)  // the default GMainContext, which the GMainLoop runs
let loop = MainLoop(raw: g_main_loop_new(nil, 0))
let state = LoopState()

// A named BH that workers re-schedule after each job. Re-scheduling a BH
// that is still pending does nothing, so it runs at most once per loop pass.
let progress = ctx.makeBottomHalf(name: "progress") { _ in
    state.progressRuns += 1
    print("  [loop] progress BH: \(state.jobsRun) of \(jobsPerWorker * workerCount) jobs done")
}

print("GLibDemo: an AioContext attached to a GMainLoop; \(workerCount) worker threads schedule BHs")
let workers = (0..<workerCount).map { w in
    try! NativeThread(name: "demo-worker-\(w)") {
        for job in 0..<jobsPerWorker {
            ctx.scheduleOneshot(name: "worker\(w)-job\(job)") {
                state.jobsRun += 1
                precondition(job == state.lastJobByWorker[w] + 1, "one-shots from one thread run in order")
                state.lastJobByWorker[w] = job
                print("  [loop] ran job \(job) from worker \(w)")
                if state.jobsRun == jobsPerWorker * workerCount {
                    g_main_loop_quit(loop.raw)
                }
            }
            progress.schedule()
            usleep(2_000)
        }
    }
}

// A GLib timeout as a watchdog: the demo must finish in seconds.
let watchdog = g_timeout_source_new_seconds(10)!
g_source_set_callback(watchdog, { _ in
    print("GLibDemo: timed out waiting for the BHs")
    exit(1)
}, nil, nil)
g_source_attach(watchdog, nil)

g_main_loop_run(loop.raw)
for worker in workers { worker.join() }

progress.delete()
while g_main_context_iteration(nil, 0) != 0 {}  // let the loop free the deleted BH
g_source_destroy(watchdog)
g_source_unref(watchdog)
ctx.detach()

let stats = ctx.statistics
print("GLibDemo: \(state.jobsRun) one-shot BHs ran on the loop thread; the progress BH ran \(state.progressRuns) times for \(jobsPerWorker * workerCount) schedules")
print("GLibDemo: \(stats.bottomHalvesRun) BH runs, \(stats.eventfdWrites) eventfd writes to wake the sleeping loop")
g_main_loop_unref(loop.raw)
print("GLibDemo: done")
