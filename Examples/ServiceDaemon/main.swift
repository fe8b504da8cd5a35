// ServiceDaemon: an IOThread and a GLib main loop run as swift-service-lifecycle
// services, shut down gracefully on SIGTERM (or SIGINT).
//
// A producer keeps the IOThread's pool busy: jobs of 20 ms on 4 workers,
// 64 submitted at a time, with a GLib timeout on the main loop printing
// progress. On SIGTERM the service group shuts down: the pool's queued jobs
// are cancelled (their completions get CancellationError), the running ones
// finish, and every completion is delivered before the program exits. It
// exits 0 only if each submitted job was delivered exactly once.
//
//   swift run ServiceDaemon          # then: kill -TERM <pid>, or Ctrl-C
//
// It prints "in flight: N" once work is queued and running, which is what
// scripts/service-test.sh waits for before it sends SIGTERM.

#if ServiceLifecycle
import Aio
import AioServiceLifecycle
import CGLibShim
import Glibc
import Logging
import ServiceLifecycle
import Synchronization

/// Job bookkeeping, shared by the producer and the completions (atomics).
final class Ledger: Sendable {
    let submitted = Atomic<Int>(0)
    let completed = Atomic<Int>(0)
    let cancelled = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    var delivered: Int { completed.load(ordering: .relaxed) + cancelled.load(ordering: .relaxed) + failed.load(ordering: .relaxed) }
}

/// Keeps `batch` jobs submitted on the IOThread: each completion submits
/// one more, until the pool shuts down (then submissions are cancelled at
/// once, and the producer stops).
func produce(on context: AioContext, ledger: Ledger, batch: Int) {
    @Sendable func submitOne() {
        ledger.submitted.wrappingAdd(1, ordering: .relaxed)
        context.threadPool.submit({ usleep(20_000); return 1 }) { result in
            switch result {
            case .success:
                ledger.completed.wrappingAdd(1, ordering: .relaxed)
                submitOne()  // refill; cancelled at once after shutdown began
            case .failure(is CancellationError):
                ledger.cancelled.wrappingAdd(1, ordering: .relaxed)
            case .failure:
                ledger.failed.wrappingAdd(1, ordering: .relaxed)
            }
        }
    }
    context.scheduleOneshot(name: "producer") {
        context.threadPool.setThreadLimits(minimum: 0, maximum: 4)
        for _ in 0..<batch { submitOne() }
    }
}

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .info
    return handler
}
let logger = Logger(label: "service-daemon")

let io = try IOThreadService(name: "io")
let glib = GLibMainLoopService()
let ledger = Ledger()

// Progress from the GLib side: a plain GLib timeout on the default context.
// A function, not a closure: top-level closures of main.swift are main-actor
// isolated, and this runs on the GLib loop's thread.
nonisolated func printProgress(_ data: gpointer?) -> gboolean {
    let ledger = Unmanaged<Ledger>.fromOpaque(data!).takeUnretainedValue()
    let inFlight = ledger.submitted.load(ordering: .relaxed) - ledger.delivered
    if inFlight > 0 {
        print("in flight: \(inFlight) (completed \(ledger.completed.load(ordering: .relaxed)))")
        fflush(nil)
    }
    return 1  // G_SOURCE_CONTINUE
}
// The timeout lives as long as the process, and the retain keeps the ledger for it.
g_timeout_add(200, printProgress, Unmanaged.passRetained(ledger).toOpaque())

produce(on: io.context, ledger: ledger, batch: 64)

// Reverse order at shutdown: the IOThread drains its pool first, while the
// GLib loop (listed first, stopped last) still runs.
let group = ServiceGroup(
    services: [glib, io],
    gracefulShutdownSignals: [.sigterm, .sigint],
    logger: logger)
try await group.run()

let submitted = ledger.submitted.load(ordering: .relaxed)
print("shut down: submitted \(submitted), completed \(ledger.completed.load(ordering: .relaxed)), cancelled \(ledger.cancelled.load(ordering: .relaxed)), failed \(ledger.failed.load(ordering: .relaxed)), delivered \(ledger.delivered)")
guard ledger.delivered == submitted, ledger.failed.load(ordering: .relaxed) == 0 else {
    print("ServiceDaemon: a completion was lost or failed")
    exit(1)
}
print("ServiceDaemon: every submitted job was delivered once")
#else
print("ServiceDaemon needs the package trait ServiceLifecycle: swift run --traits ServiceLifecycle ServiceDaemon")
#endif
