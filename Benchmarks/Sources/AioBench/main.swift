// aio-bench: the library measured on this machine, next to GLib (its C API
// called from Swift) and SwiftNIO run in the same process family. Each
// selected benchmark runs RUNS times (default 3), round-robin over the
// implementations; every number is printed as a RESULT line (the C peers'
// format) and summarised (median, min-max) at the end. No assertion on speed.
//
//   aio-bench [impl...] [group...]
//     impl:  aio glib nio swift                (default: all; swift = the global executor)
//     group: same cross wake alloc scaling timers files pool iothread executor polling   (default: all)
//   RUNS=n, BENCH_SMOKE=1 (tiny sizes), BENCH_N_SAME, BENCH_N_CROSS,
//   BENCH_N_PING, BENCH_PING_GAP_US, BENCH_N_SCALING (see Support.swift).
// Benchmarks/run.sh runs it together with the C peers and writes BENCHMARKS.md.

import Aio
import Glibc

let impls = ["aio", "glib", "nio", "swift"]
let groups = ["same", "cross", "wake", "alloc", "scaling", "timers", "files", "pool", "iothread", "executor", "polling"]

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print("usage: aio-bench [\(impls.joined(separator: "|"))]... [\(groups.joined(separator: "|"))]...")
    exit(0)
}
for a in arguments where !impls.contains(a) && !groups.contains(a) {
    print("aio-bench: unknown argument '\(a)'; impls: \(impls.joined(separator: " ")); groups: \(groups.joined(separator: " "))")
    exit(2)
}
let selectedImpls = arguments.filter(impls.contains).isEmpty ? impls : arguments.filter(impls.contains)
let selectedGroups = arguments.filter(groups.contains).isEmpty ? groups : arguments.filter(groups.contains)
let runs = max(1, envInt("RUNS", 3))

/// What each (group, impl) pair runs; pairs without an entry have no peer row.
let table: [String: [String: () -> Void]] = [
    "same": [
        "aio": sameThread,
        "glib": glibSameThread,
        "nio": nioSameThread,
    ],
    "cross": [
        "aio": {
            for producers in [1, 2] {
                crossThread(.oneshot, producers: producers, path: .native)
                crossThread(.oneshotBare, producers: producers, path: .native)
                crossThread(.bh, producers: producers, path: .native)
            }
            // The same with the IOThread's default busy polling (32 µs).
            crossThread(.oneshot, producers: 1, path: .native, polling: true)
            crossThread(.bh, producers: 1, path: .native, polling: true)
            crossThread(.oneshot, producers: 1, path: .gsource)
            crossThread(.bh, producers: 1, path: .gsource)
        },
        "glib": { glibCrossThread(producers: 1); glibCrossThread(producers: 2) },
        "nio": { nioCrossThread(producers: 1); nioCrossThread(producers: 2) },
    ],
    "wake": [
        "aio": {
            for path in LoopPath.allCases {
                wakeLatency(.oneshot, path: path)
                wakeLatency(.bh, path: path)
            }
        },
        "glib": glibWakeLatency,
        "nio": nioWakeLatency,
    ],
    "alloc": [
        "aio": allocations,
        "glib": glibAllocations,
        "nio": nioAllocations,
    ],
    "scaling": ["aio": scaling],
    "timers": ["aio": { timerLateness(path: .native); timerLateness(path: .gsource) }],
    "files": ["aio": fileReads],
    "pool": [
        "aio": poolThroughput,
        "glib": { glibPoolThroughput(threads: 4) },
        "nio": { nioPoolThroughput(threads: 4) },
    ],
    "iothread": ["aio": ioThreadRoundTrip],
    "executor": ["aio": executorRows, "nio": nioExecutorRows, "swift": globalExecutorRows],
    "polling": ["aio": {
        for maxNs: Int64 in [0, 32_000, 256_000] { pollingLatency(maxNs: maxNs) }
        pollingIdleCPU()
    }],
]

print("# aio-bench: \(runs) run(s); impls \(selectedImpls.joined(separator: " ")); groups \(selectedGroups.joined(separator: " "))"
      + (Sizes.smoke ? "; smoke sizes" : "")
      + "; N_SAME=\(Sizes.same) N_CROSS=\(Sizes.cross) N_PING=\(Sizes.pings) GAP_US=\(Sizes.gapUs)"
      + "; syscall counter \(SyscallCounts.available ? "preloaded" : "absent")")
for run in 1...runs {
    for group in selectedGroups {
        for impl in selectedImpls {
            guard let body = table[group]?[impl] else { continue }
            print("# pass \(run): \(impl) \(group)")
            fflush(nil)
            body()
        }
    }
}
Results.shared.printSummary(runs: runs)
