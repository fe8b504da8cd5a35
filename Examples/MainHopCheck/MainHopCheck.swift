// The check both main-executor examples run: awaits that hop between the
// main actor and an actor on an IOThread, with every resume on the main
// actor checked to be on the main thread. Shared by AsyncMainLoop (async
// main) and SyncMainExecutor (synchronous main), one per way of installing
// GLibMainExecutor.

import Aio
import CGLibShim
import Glibc

/// An actor whose code runs on an IOThread's context.
public actor Worker {
    let ctx: AioContext
    private var calls = 0

    public init(ctx: AioContext) { self.ctx = ctx }

    public nonisolated var unownedExecutor: UnownedSerialExecutor { ctx.asUnownedSerialExecutor() }

    /// Counts the call; returns whether it ran owning the context.
    public func step() -> Bool {
        calls += 1
        return ctx.isOwnedByCurrentThread
    }

    public var count: Int { calls }
}

/// Whether the calling thread is the process's main thread.
public var onMainThread: Bool { MainQueuePump.isMainThread }

/// What a run of the hop check saw.
public struct HopReport: Sendable, CustomStringConvertible {
    public var rounds = 0
    public var offMainThread = 0
    public var offWorkerThread = 0
    public init() {}
    public var ok: Bool { rounds > 0 && offMainThread == 0 && offWorkerThread == 0 }
    public var description: String {
        "\(rounds) round trips main actor → IOThread actor → main actor; resumed off the main thread: \(offMainThread); worker steps off its thread: \(offWorkerThread)"
    }
}

/// `rounds` awaits from the main actor to `worker` and back, checking the
/// thread after every resume on the main actor.
@MainActor public func hopBetweenMainAndWorker(_ worker: Worker, rounds: Int) async -> HopReport {
    var report = HopReport()
    for _ in 0..<rounds {
        let owned = await worker.step()
        if !owned { report.offWorkerThread += 1 }
        if !onMainThread { report.offMainThread += 1 }
        MainActor.assertIsolated()
        report.rounds += 1
    }
    return report
}

/// Exits the process with status 1 and `message` if it is still running
/// after `seconds`: a hang fails instead of blocking the test run. (The
/// program's normal exit ends the watchdog's thread with it.)
public func armExitWatchdog(seconds: UInt32, _ message: String) {
    final class Context {
        let seconds: UInt32
        let message: String
        init(_ seconds: UInt32, _ message: String) { self.seconds = seconds; self.message = message }
    }
    let context = Unmanaged.passRetained(Context(seconds, message)).toOpaque()
    var handle = pthread_t()
    pthread_create(&handle, nil, { raw in
        let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
        sleep(context.seconds)
        let line = "watchdog: \(context.message): not done after \(context.seconds) s\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
        _exit(1)
    }, context)
    pthread_detach(handle)
}
