// MainActorLoop: async/await in a GLib program. The main thread runs a
// GMainLoop on the default main context, with two things attached to it:
//
// - a MainQueuePump, so `@MainActor` code (and `DispatchQueue.main`) runs on
//   the main thread between GLib's sources;
// - nothing else: the work happens on an IOThread, "disk", whose AioContext
//   runs natively on its own thread, with an actor living on it.
//
// A main-actor task hops to the disk actor, hashes a file on the disk
// context's thread pool, waits on a pipe and sleeps on the context's timers,
// and comes back to the main actor after each step, checking every time that
// it runs where it should. It quits the loop when done; the exit status says
// whether every check held.
//
//   swift run MainActorLoop

import Aio
import CGLibShim
import Dispatch
import Glibc

/// The checks made along the way; printed, and the exit status.
@MainActor enum Report {
    static var failures = 0
}

@MainActor func check(_ condition: Bool, _ what: String) {
    print("\(condition ? "ok  " : "FAIL") \(what)")
    if !condition { Report.failures += 1 }
}

/// An actor whose code runs on the disk context's thread.
actor Disk {
    let ctx: AioContext
    private var hashed = 0

    init(ctx: AioContext) { self.ctx = ctx }

    nonisolated var unownedExecutor: UnownedSerialExecutor { ctx.asUnownedSerialExecutor() }

    /// FNV-1a of a file, computed on the context's thread pool (a blocking
    /// read belongs on a worker, not on the loop thread).
    func hash(path: String) async throws -> (UInt64, onLoopThread: Bool) {
        let onLoopThread = ctx.isOwnedByCurrentThread
        let value = try await ctx.threadPool.run { () throws -> UInt64 in
            guard let file = fopen(path, "rb") else { throw POSIXError(errno) }
            defer { fclose(file) }
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = fread(&buffer, 1, buffer.count, file)
                if n == 0 { break }
                for i in 0..<n { hash = (hash ^ UInt64(buffer[i])) &* 0x100_0000_01b3 }
            }
            return hash
        }
        hashed += 1
        return (value, onLoopThread)
    }

    /// Waits for a byte on `fd` without blocking the loop thread.
    func readByte(from fd: Int32) async throws -> UInt8 {
        try await ctx.readable(fd)
        var byte: UInt8 = 0
        guard read(fd, &byte, 1) == 1 else { throw POSIXError(errno) }
        return byte
    }
}

struct POSIXError: Error, CustomStringConvertible {
    let code: Int32
    init(_ code: Int32) { self.code = code }
    var description: String { String(cString: strerror(code)) }
}

func isMainThread() -> Bool { aio_shim_gettid() == getpid() }

struct MainLoop: @unchecked Sendable { let raw: OpaquePointer }  // GMainLoop is thread-safe

// The pump on the default main context, which the loop below runs.
let pump: MainQueuePump
do {
    pump = try MainQueuePump.install()
} catch {
    print("cannot run the main actor under GLib here: \(error)")
    exit(1)
}

// The disk context runs natively on its own thread.
let io = try IOThread(name: "disk")
try io.start()
let disk = Disk(ctx: io.context)
let loop = MainLoop(raw: g_main_loop_new(nil, 0))

@MainActor func tour() async throws {
    check(isMainThread(), "a main-actor task runs on the main thread, inside g_main_loop_run")

    let (hash, onLoopThread) = try await disk.hash(path: "/etc/os-release")
    check(onLoopThread, "the disk actor runs on the disk context's thread")
    check(isMainThread(), "back on the main thread after the pool job (hash \(String(hash, radix: 16)))")

    var fds: [Int32] = [0, 0]
    _ = pipe(&fds)
    let writer = fds[1]
    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(20)) {
        var byte: UInt8 = 42
        _ = write(writer, &byte, 1)
    }
    let byte = try await disk.readByte(from: fds[0])
    check(byte == 42 && isMainThread(), "readable() on the disk context delivered the byte; back on main")
    close(fds[0]); close(fds[1])

    let before = io.context.now()
    try await io.context.sleep(for: .milliseconds(10))
    let sleptUs = (io.context.now().nanoseconds - before.nanoseconds) / 1000
    check(sleptUs >= 10_000 && isMainThread(), "slept \(sleptUs) µs on the disk context's timers; back on main")

    let fromDetached = await Task.detached { await MainActor.run { isMainThread() } }.value
    check(fromDetached, "await MainActor.run {} from a detached task runs on the main thread")

    let viaDispatch = await withCheckedContinuation { continuation in
        DispatchQueue.main.async { continuation.resume(returning: isMainThread()) }
    }
    check(viaDispatch, "DispatchQueue.main.async runs on the main thread too")

    let sleeper = Task { try await io.context.sleep(for: .seconds(3600)) }
    sleeper.cancel()
    let cancelled = await sleeper.result
    check((try? cancelled.get()) == nil, "cancelling a task cancels its sleep")
}

Task { @MainActor in
    do {
        try await tour()
    } catch {
        check(false, "the tour threw: \(error)")
    }
    g_main_loop_quit(loop.raw)
}
// A lost wake-up must fail the program, not hang it.
DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(30)) {
    print("FAIL the tour did not finish within 30 s")
    exit(2)
}

g_main_loop_run(loop.raw)
pump.drainNow()  // anything queued while the loop quit
g_main_loop_unref(loop.raw)
pump.remove()
io.stop()
io.join()

MainActor.assumeIsolated {
    print(Report.failures == 0 ? "all checks passed" : "\(Report.failures) check(s) failed")
    exit(Report.failures == 0 ? 0 : 1)
}
