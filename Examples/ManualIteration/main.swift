// ManualIteration: a program that drives GLib itself, calling
// g_main_context_iteration in its own loop (no GMainLoop), on a private
// GMainContext with an AioContext attached. Work arrives three ways:
//
//   - worker threads schedule bottom halves: one-shots, plus a named BH that
//     they all poke (scheduling a pending BH again is free and runs it once);
//   - an AioTimer ticks every 20 ms and prints progress;
//   - an fd handler reads the bytes a writer thread sends through a pipe,
//     and removes itself when the writer hangs up.
//
// Each call to g_main_context_iteration(ctx, TRUE) sleeps in GLib's poll
// until one of them needs the loop; the program stops when it has seen all
// of the work.
//
//   swift run ManualIteration

import Aio
import CGLibShim
import Glibc

let workerCount = 3
let jobsPerWorker = 20
let ticksWanted = 10
let messagesWanted = 30

/// What the loop has seen. Only the main thread touches it: every callback
/// below (BHs, the timer, the fd handler) runs inside
/// g_main_context_iteration, on the thread that calls it.
final class Progress: @unchecked Sendable {
    var jobs = 0
    var nextJobByWorker = Array(repeating: 0, count: workerCount)
    var pokes = 0
    var ticks = 0
    var messages = 0
    var pipeClosed = false
    var iterations = 0

    var isDone: Bool {
        jobs == workerCount * jobsPerWorker && ticks == ticksWanted && pipeClosed
    }
    var line: String {
        "\(jobs)/\(workerCount * jobsPerWorker) jobs, \(messages)/\(messagesWanted) pipe messages, "
            + "\(ticks)/\(ticksWanted) ticks, \(iterations) iterations"
    }
}

func run() -> Int32 {
    // A private GMainContext: nothing else in the process iterates it.
    let glibContext = g_main_context_new()!
    let ctx: AioContext
    do {
        ctx = try AioContext(name: "manual")
    } catch {
        print("cannot create the AioContext: \(error)")
        return 1
    }
    ctx.attach(to: glibContext)
    let progress = Progress()
    print("ManualIteration: g_main_context_iteration by hand on a private GMainContext with an AioContext attached")

    // 1. Bottom halves from worker threads. The named BH is the "something
    //    changed" poke: many schedules, far fewer runs.
    let poke = ctx.makeBottomHalf(name: "poke") { _ in progress.pokes += 1 }
    let workers = (0..<workerCount).map { w in
        try! NativeThread(name: "worker-\(w)") {
            for job in 0..<jobsPerWorker {
                ctx.scheduleOneshot(name: "worker\(w)-job\(job)") {
                    // One-shots from one thread run in the order scheduled.
                    precondition(progress.nextJobByWorker[w] == job, "worker \(w)'s jobs out of order")
                    progress.nextJobByWorker[w] += 1
                    progress.jobs += 1
                }
                poke.schedule()
                usleep(1_500)
            }
        }
    }

    // 2. A timer on the context's realtime clock. It fires inside an
    //    iteration, on this thread, and re-arms itself until it has ticked
    //    enough times.
    let tick = ctx.makeTimer(name: "tick") { timer in
        progress.ticks += 1
        print("  tick \(progress.ticks): \(progress.line)")
        if progress.ticks < ticksWanted {
            timer.schedule(after: .milliseconds(20))
        }
    }
    tick.schedule(after: .milliseconds(20))

    // 3. An fd handler on the read end of a pipe. Level-triggered: it runs
    //    while there is something to read, so it reads until EAGAIN.
    //    Hang-up (the writer closed its end) also calls `read`: then read(2)
    //    returns 0, and the handler unregisters and closes the fd.
    var fds: [Int32] = [-1, -1]
    var error: UnsafeMutablePointer<GError>?
    guard g_unix_open_pipe(&fds, FD_CLOEXEC, &error) != 0,
          g_unix_set_fd_nonblocking(fds[0], AIO_SHIM_TRUE, &error) != 0 else {
        print("cannot make a pipe: \(String(cString: error!.pointee.message))")
        return 1
    }
    let (readEnd, writeEnd) = (fds[0], fds[1])
    do {
        try ctx.setHandler(for: readEnd, name: "pipe", read: {
            var buffer = [UInt8](repeating: 0, count: 64)
            while true {
                let n = Glibc.read(readEnd, &buffer, buffer.count)
                if n > 0 {
                    for byte in buffer[..<n] {
                        precondition(Int(byte) == progress.messages, "pipe bytes out of order")
                        progress.messages += 1
                    }
                } else if n == 0 {
                    print("  pipe: the writer hung up after \(progress.messages) messages; removing the handler")
                    ctx.removeHandler(for: readEnd)
                    close(readEnd)
                    progress.pipeClosed = true
                    return
                } else if errno == EAGAIN {
                    return  // drained; the next iteration polls the fd again
                } else if errno != EINTR {
                    fatalError("read from the pipe: errno \(errno)")
                }
            }
        })
    } catch {
        print("cannot watch the pipe: \(error)")
        return 1
    }
    let writer = try! NativeThread(name: "pipe-writer") {
        for message in 0..<messagesWanted {
            var byte = UInt8(message)
            precondition(Glibc.write(writeEnd, &byte, 1) == 1, "write to the pipe")
            usleep(4_000)
        }
        close(writeEnd)
    }

    // A watchdog in the same GMainContext: the run takes well under a
    // second, so 10 s means a lost wake-up.
    let watchdog = g_timeout_source_new_seconds(10)!
    g_source_set_callback(watchdog, { _ in
        print("ManualIteration: timed out")
        exit(1)
    }, nil, nil)
    g_source_attach(watchdog, glibContext)

    // The loop itself. `TRUE`: block in GLib's poll until a source is ready.
    // The AioContext's source is ready when a BH is scheduled (a worker
    // writes its eventfd if GLib sleeps), when the timer is due (its
    // deadline is the poll timeout) or when the pipe is readable.
    while !progress.isDone {
        g_main_context_iteration(glibContext, AIO_SHIM_TRUE)
        progress.iterations += 1
    }
    print("ManualIteration: all work seen: \(progress.line)")

    // Teardown, in order: the threads are done; the named BH is deleted
    // (freed by the next iteration, so run the non-blocking ones that are
    // left); GLib lets go of the context; then the GMainContext goes.
    for thread in workers + [writer] { thread.join() }
    poke.delete()
    while g_main_context_iteration(glibContext, AIO_SHIM_FALSE) != 0 {}
    g_source_destroy(watchdog)
    g_source_unref(watchdog)
    ctx.detach()

    let stats = ctx.statistics
    print("ManualIteration: the poke BH ran \(progress.pokes) times for \(workerCount * jobsPerWorker) schedules")
    print("ManualIteration: \(stats.bottomHalvesRun) BH runs, \(stats.eventfdWrites) eventfd writes to wake GLib's poll, "
          + "\(progress.iterations) iterations")
    g_main_context_unref(glibContext)
    return 0
}

let status = run()  // `ctx` is gone by now: its teardown found no live BH
print("ManualIteration: done")
exit(status)
