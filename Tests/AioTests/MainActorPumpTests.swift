@_spi(AioInternals) @testable import Aio
import CGLibShim
import Dispatch
import Glibc
import XCTest

/// `@MainActor` under a GMainLoop. These are XCTest cases on purpose: XCTest
/// runs them on the process's real main thread, with libdispatch's main
/// queue still bound to it, which is the situation of a GLib daemon's `main`.
/// (Swift Testing runs tests on pool threads, where none of this applies.)
/// `Examples/MainActorLoop` checks the same from a program's own `main`.
final class MainActorPumpTests: XCTestCase {
    /// A GMainLoop pointer that threads may quit (g_main_loop_quit is thread-safe).
    struct LoopRef: @unchecked Sendable { let raw: OpaquePointer }

    func testMainActorWorkRunsOnTheMainThreadUnderGMainLoop() throws {
        XCTAssertTrue(MainQueuePump.isMainThread, "XCTest should run this case on the main thread")
        let pump = try MainQueuePump.install()
        defer { pump.remove() }
        let loop = LoopRef(raw: g_main_loop_new(nil, 0))
        defer { g_main_loop_unref(loop.raw) }

        // An AioContext attached to the same default context, with an actor
        // on it: hops go context → main actor → context.
        let ctx = try AioContext(name: "main-actor-test")
        ctx.attach(to: nil)
        defer { ctx.detach() }
        let actor = ContextActor(ctx: ctx)

        let seen = Recorder<String>()
        Task.detached {
            let viaRun = await MainActor.run { MainQueuePump.isMainThread }
            seen.append("MainActor.run on main: \(viaRun)")
            let viaTask = await Task { @MainActor in MainQueuePump.isMainThread }.value
            seen.append("Task @MainActor on main: \(viaTask)")
            let viaQueue = await withCheckedContinuation { continuation in
                DispatchQueue.main.async { continuation.resume(returning: MainQueuePump.isMainThread) }
            }
            seen.append("DispatchQueue.main on main: \(viaQueue)")
            let (_, owned) = await actor.probe()
            let back = await MainActor.run { MainQueuePump.isMainThread }
            seen.append("context actor owned: \(owned), then main again: \(back)")
            g_main_loop_quit(loop.raw)
        }
        let dog = Watchdog(seconds: 10, "main-actor hops under g_main_loop_run",
                           kick: { g_main_loop_quit(loop.raw) })
        g_main_loop_run(loop.raw)
        XCTAssertFalse(dog.disarm(), "the main actor did not run under the GMainLoop")
        XCTAssertEqual(seen.all, [
            "MainActor.run on main: true",
            "Task @MainActor on main: true",
            "DispatchQueue.main on main: true",
            "context actor owned: true, then main again: true",
        ])
    }

    func testMainActorWorkQueuedAtQuitIsRunByDrainNow() throws {
        let pump = try MainQueuePump.install()
        defer { pump.remove() }
        let ran = Recorder<Int>()
        for i in 0..<5 {
            DispatchQueue.main.async { ran.append(i) }
        }
        // No loop ran: nothing has been drained yet.
        XCTAssertEqual(ran.all, [])
        pump.drainNow()
        XCTAssertEqual(ran.all, [0, 1, 2, 3, 4])
    }

    func testAnotherThreadIteratingTheContextNeitherDrainsNorSpins() throws {
        let pump = try MainQueuePump.install()
        defer { pump.remove() }
        let ran = Recorder<Bool>()
        DispatchQueue.main.async { ran.append(MainQueuePump.isMainThread) }
        // A worker iterates the default context for 100 ms with the main
        // queue's fd readable: it must not drain it (libdispatch would trap)
        // and must sleep rather than spin.
        let iterations = Countdown(0)
        let worker = try NativeThread(name: "default-context-iterator") {
            let deadline = nowSeconds() + 0.1
            g_main_context_acquire(nil)
            let keepAlive = g_timeout_source_new(10)!
            g_source_set_callback(keepAlive, { _ in 1 }, nil, nil)
            g_source_attach(keepAlive, nil)
            while nowSeconds() < deadline {
                g_main_context_iteration(nil, 1)
                _ = iterations.tick()
            }
            g_source_destroy(keepAlive)
            g_source_unref(keepAlive)
            g_main_context_release(nil)
        }
        worker.join()
        XCTAssertEqual(ran.all, [], "the worker must not drain the main queue")
        XCTAssertLessThan(-iterations.left, 1000, "the worker spun instead of sleeping")
        while g_main_context_iteration(nil, 0) != 0 {}
        XCTAssertEqual(ran.all, [true])
    }
}
