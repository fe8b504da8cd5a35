// AsyncMainLoop: a program whose `main` is async, with `@MainActor` on GLib's
// main loop. GLibMainExecutor (product AioMainExecutor) is the main executor:
// main's code after each `await` comes back to the main thread, where the
// runtime's call to the executor's run() keeps a GMainLoop going on GLib's
// default context, so GLib sources (here a timeout) run on the same thread
// between main-actor jobs.
//
// The target is built with -Xfrontend -disable-availability-checking: on
// Linux with Swift 6.3 the compiler honours `DefaultExecutorFactory` only
// with it (see Package.swift), and verifyInstalled() says so if it is missing.
//
//   swift run AsyncMainLoop

@_spi(ExperimentalCustomExecutors) import AioMainExecutor
import Aio
import CGLibShim
import Dispatch
import Glibc
import MainHopCheck

@main
struct AsyncMainLoop {
    typealias DefaultExecutorFactory = GLibExecutorFactory

    static func main() async throws {
        GLibMainExecutor.verifyInstalled()
        armExitWatchdog(seconds: 120, "AsyncMainLoop")
        var failures = 0
        func check(_ condition: Bool, _ what: String) {
            print("\(condition ? "ok  " : "FAIL") \(what)")
            if !condition { failures += 1 }
        }

        let disk = try IOThread(name: "disk")
        try disk.start()
        let worker = Worker(ctx: disk.context)

        // A GLib source on the default context: it runs on the main thread,
        // inside the loop that GLibMainExecutor.run() drives.
        let ticks = TickCounter()
        let source = g_timeout_add(1, { data in
            let ticks = Unmanaged<TickCounter>.fromOpaque(data!).takeUnretainedValue()
            ticks.count += 1
            ticks.onMain = ticks.onMain && onMainThread
            return ticks.count < 5 ? 1 : 0
        }, Unmanaged.passUnretained(ticks).toOpaque())
        _ = source

        check(onMainThread, "main begins on the main thread")
        try await Task.sleep(for: .milliseconds(1))
        check(onMainThread, "after the first await, main is still on the main thread")

        let report = await hopBetweenMainAndWorker(worker, rounds: 10_000)
        check(report.ok, report.description)

        let fromQueue = await withCheckedContinuation { continuation in
            DispatchQueue.main.async { continuation.resume(returning: onMainThread) }
        }
        check(fromQueue, "DispatchQueue.main shares the main thread")

        while ticks.count < 5 { try await Task.sleep(for: .milliseconds(2)) }
        check(ticks.onMain, "a GLib timeout on the default context ran on the main thread, \(ticks.count) times")

        disk.stop()
        disk.join()
        print(failures == 0 ? "AsyncMainLoop: all checks passed" : "AsyncMainLoop: \(failures) check(s) failed")
        exit(failures == 0 ? 0 : 1)
    }
}

/// Counts a GLib timeout's runs (touched on the main thread only).
final class TickCounter: @unchecked Sendable {
    var count = 0
    var onMain = true
}
