// swift-tools-version:6.1
// Benchmarks live in their own package so that their dependencies (SwiftNIO,
// the malloc counter) never enter the library's graph. From this directory:
//   ./run.sh                                   # everything, with the C peers; writes BENCHMARKS.md
//   swift run -c release aio-bench             # only this package's rows, 3 runs each
//   swift run -c release aio-bench same cross  # a subset (see `aio-bench --help`)
import Foundation
import PackageDescription

// A path dependency's identity is its directory's name (`main` in CI,
// `swift-aio` in a normal clone), so derive it instead of guessing.
let library = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "swift-aio-benchmarks",
    dependencies: [
        .package(path: ".."),
        // Peer measured in the same process family: SwiftNIO's SelectableEventLoop.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
    ],
    targets: [
        // Counts heap allocations (malloc family) per thread and, while
        // switched on, for the whole process.
        .target(name: "CBenchSupport", path: "Sources/CBenchSupport"),
        .executableTarget(
            name: "aio-bench",
            dependencies: [
                .product(name: "Aio", package: library),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                "CBenchSupport",
            ],
            path: "Sources/AioBench"
        ),
        // `await MainActor.run {}` on a GLib main loop: MainQueuePump, and
        // GLibMainExecutor (one process each: the main executor is chosen
        // once per process).
        .executableTarget(
            name: "main-bench",
            dependencies: [
                .product(name: "Aio", package: library),
                .product(name: "AioMainExecutor", package: library),
            ],
            path: "Sources/MainBench"
        ),
    ]
)
