// aio-stress multithread: QEMU's test-aio-multithread workloads for a
// bounded time (the test suite runs them briefly, MultithreadStressTests).
//
//   swift run -c release aio-stress multithread        # 60 s (AIO_STRESS_SECONDS overrides)
//   AIO_STRESS_MODE=multithread swift run aio-stress   # the same
//
// Each cycle starts five IOThreads (their lifecycle is part of the test),
// runs one round of every workload on them (random cross-context BH hops,
// tasks hopping between actors on random contexts, a contended AsyncMutex
// on five contexts and on two), then stops and joins them. Every round's
// counts must add up exactly. A round that does not finish within the round
// timeout (AIO_STRESS_ROUND_TIMEOUT, 2 s) is a stall: its watchdog prints
// each context's wake-up state and the run exits 1.

import AioMultithreadStress
import Glibc
import Synchronization

/// The exit status the rounds' task leaves for the main thread.
final class ExitStatus: Sendable {
    private let value = Atomic<Int32>(1)
    func set(_ status: Int32) { value.store(status, ordering: .releasing) }
    /// Acquiring: pairs with `set`, read after the task signalled its end.
    var status: Int32 { value.load(ordering: .acquiring) }
}

func runMultithreadMode(seconds: Double, roundTimeout: Double) -> Never {
    let contextCount = 5
    print("aio-stress multithread: \(contextCount) IOThreads, cycles of every workload for \(seconds) s (round timeout \(roundTimeout) s)")
    fflush(nil)
    let finished = Event()
    let exitStatus = ExitStatus()
    Task.detached {
        let start = now()
        var cycles = 0
        var totals: [(workload: String, operations: Int, seconds: Double)] = []
        while cycles == 0 || now() - start < seconds {
            let stage: StressContexts
            do {
                stage = try StressContexts(count: contextCount, name: "mt")
            } catch {
                print("aio-stress multithread: cannot start the IOThreads: \(error)")
                break
            }
            let stress = MultithreadStress(stage: stage, roundTimeout: roundTimeout)
            let reports = await stress.runAll(.standard)
            if let failed = reports.first(where: { !$0.passed }) {
                print("aio-stress multithread: FAILED in cycle \(cycles): \(failed)")
                print("aio-stress multithread: contexts after the round:\n\(stage.debugState)")
                fflush(nil)
                _exit(1)
            }
            stage.stop()
            for (i, report) in reports.enumerated() {
                if totals.count <= i { totals.append((report.workload, 0, 0)) }
                totals[i].operations += report.operations
                totals[i].seconds += report.seconds
            }
            cycles += 1
        }
        for total in totals {
            let rate = total.seconds > 0 ? Int(Double(total.operations) / total.seconds) : 0
            print("aio-stress multithread: \(total.workload): \(total.operations) in \(Int(total.seconds * 1000)) ms of rounds (\(rate)/s)")
        }
        print("aio-stress multithread: \(cycles) cycles")
        if cycles > 0 {
            print("aio-stress multithread: PASS")
            exitStatus.set(0)
        }
        fflush(nil)
        finished.signal()
    }
    while !finished.wait(1) {}
    exit(exitStatus.status)
}
