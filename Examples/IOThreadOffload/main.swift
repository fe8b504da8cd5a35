// IOThreadOffload: the main thread runs GLib (a GMainLoop on the default
// GMainContext, with an AioContext "main" attached); an IOThread runs its own
// AioContext natively, in poll(blocking: true). The GLib side sends requests
// to the IOThread; completions come back to the main context.
//
// The requests are QEMU's bread and butter: read block N of a file and
// checksum it. As in QEMU, the IOThread does not block on the disk itself:
// it hands each read to its own context's thread pool, and the pool's
// completion (on the IOThread) sends the result home. The main thread checks
// each block against what it wrote, keeping 8 requests in flight.
//
//   swift run IOThreadOffload

import Aio
import CGLibShim
import Glibc

let blockSize = 64 * 1024
let blockCount = 64
let queueDepth = 8

/// Block `index`'s contents: a pattern that differs per block and per byte.
func blockContents(_ index: Int) -> [UInt8] {
    (0..<blockSize).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0 &* 7 &+ ($0 >> 9)) }
}

func sha256(_ bytes: [UInt8]) -> String {
    let digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, bytes, gsize(bytes.count))!
    defer { g_free(digest) }
    return String(cString: digest)
}

/// Reads one block with pread(2): blocking I/O, so it runs on a pool worker.
func readBlock(fd: Int32, index: Int) throws(AioError) -> [UInt8] {
    var block = [UInt8](repeating: 0, count: blockSize)
    var done = 0
    while done < blockSize {
        let n = block.withUnsafeMutableBytes { buffer in
            pread(fd, buffer.baseAddress! + done, blockSize - done, off_t(index * blockSize + done))
        }
        if n > 0 {
            done += n
        } else if n == 0 {
            throw .system(SystemCallError(call: "pread (unexpected end of file)", errno: 0))
        } else if errno != EINTR {
            throw .system(SystemCallError(call: "pread", errno: errno))
        }
    }
    return block
}

/// The main side's bookkeeping. Touched only on the main thread: by the
/// GLib idle callback and by completions, which run as BHs of `mainCtx`
/// inside the GMainLoop.
final class MainSide: @unchecked Sendable {
    var nextBlock = 0
    var inFlight = 0
    var verified = 0
    var failed = 0
}

/// A GMainLoop, which GLib lets any thread quit.
struct MainLoop: @unchecked Sendable {
    let raw = g_main_loop_new(nil, AIO_SHIM_FALSE)!
}

func run() -> Int32 {
    // The file: written by the main thread, read back by the pool.
    var error: UnsafeMutablePointer<GError>?
    var rawPath: UnsafeMutablePointer<gchar>?
    let fd = g_file_open_tmp("iothread-offload-XXXXXX", &rawPath, &error)
    guard fd >= 0, let rawPath else {
        print("cannot create a temporary file: \(String(cString: error!.pointee.message))")
        return 1
    }
    let path = String(cString: rawPath)
    g_free(rawPath)
    defer { close(fd); unlink(path) }
    for index in 0..<blockCount {
        let block = blockContents(index)
        guard write(fd, block, block.count) == block.count else {
            print("cannot write \(path): errno \(errno)")
            return 1
        }
    }

    let mainCtx: AioContext
    let io: IOThread
    do {
        mainCtx = try AioContext(name: "main")
        io = try IOThread(name: "io0")
        try io.start()  // from here on, io0 sits in io.context.poll(blocking: true)
    } catch {
        print("cannot set up the contexts: \(error)")
        return 1
    }
    mainCtx.attach(to: nil)  // completions run inside the GMainLoop, on this thread
    mainCtx.makeMain()       // this thread is "the main thread" for waitWhile/runAndWait
    io.context.threadPool.setThreadLimits(minimum: 0, maximum: 4)
    let loop = MainLoop()
    let side = MainSide()
    print("IOThreadOffload: \(blockCount) blocks of \(blockSize / 1024) KiB; main thread runs GLib, io0 runs its AioContext; \(queueDepth) requests in flight")

    /// Main thread: what to do with a finished request.
    @Sendable func complete(_ index: Int, _ result: Result<String, any Error>) {
        precondition(mainCtx.isHomeThread, "completions run on the main thread")
        side.inFlight -= 1
        switch result {
        case .success(let digest) where digest == sha256(blockContents(index)):
            side.verified += 1
        case .success:
            side.failed += 1
            print("  [main] block \(index): WRONG checksum")
        case .failure(let error):
            side.failed += 1
            print("  [main] block \(index): \(error)")
        }
        if (side.verified + side.failed) % 16 == 0 {
            print("  [main] \(side.verified + side.failed)/\(blockCount) blocks back, \(side.verified) verified")
        }
        submitMore()
    }

    /// Main thread: keep `queueDepth` requests in flight.
    @Sendable func submitMore() {
        while side.inFlight < queueDepth && side.nextBlock < blockCount {
            let index = side.nextBlock
            side.nextBlock += 1
            side.inFlight += 1
            // Hop 1, main -> io0: a one-shot BH on the IOThread's context.
            // scheduleOneshot is thread-safe and wakes io0 if it sleeps.
            io.context.scheduleOneshot(name: "read-block") {
                precondition(io.context.isHomeThread, "requests run on io0")
                // Hop 2, io0 -> a pool worker, and back to io0 for the
                // completion. submit() must be called on the context's
                // thread, which is why the request goes through io0.
                io.context.threadPool.submit({ sha256(try readBlock(fd: fd, index: index)) }) { result in
                    // Hop 3, io0 -> main: a one-shot on the main context,
                    // which GLib runs inside the GMainLoop.
                    mainCtx.scheduleOneshot(name: "block-done") { complete(index, result) }
                }
            }
        }
        if side.inFlight == 0 {
            g_main_loop_quit(loop.raw)
        }
    }

    // The GLib side starts the work from a GLib idle callback, as a GLib
    // program would; everything after that is driven by completions.
    let start = Unmanaged.passRetained(Box(submitMore)).toOpaque()
    g_idle_add({ box in
        Unmanaged<Box>.fromOpaque(box!).takeRetainedValue().body()
        return G_SOURCE_REMOVE
    }, start)
    let watchdog = g_timeout_add_seconds(30, { _ in
        print("IOThreadOffload: timed out")
        exit(1)
    }, nil)

    g_main_loop_run(loop.raw)
    g_source_remove(watchdog)
    print("IOThreadOffload: \(side.verified) blocks verified, \(side.failed) failed")

    // Teardown, in order: io0's pool has nothing in flight (every completion
    // came home), so shutting it down just stops its workers; it must run on
    // io0, and runAndWait polls the main context meanwhile. Then io0 stops,
    // and GLib lets go of the main context.
    io.context.runAndWait { io.context.threadPool.shutdown() }
    io.stop()
    io.join()
    mainCtx.detach()
    g_main_loop_unref(loop.raw)

    let m = mainCtx.statistics, i = io.context.statistics
    print("IOThreadOffload: main context: \(m.bottomHalvesRun) BH runs, \(m.eventfdWrites) eventfd writes to wake GLib")
    print("IOThreadOffload: io0 context: \(i.bottomHalvesRun) BH runs, \(i.blockingWaits) blocking waits, \(i.eventfdWrites) eventfd writes to wake it")
    return side.failed == 0 && side.verified == blockCount ? 0 : 1
}

/// Carries a Swift closure through a C `gpointer`.
final class Box: @unchecked Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

let status = run()  // both contexts are gone by now; teardown found nothing left over
print("IOThreadOffload: \(status == 0 ? "done" : "FAILED")")
exit(status)
