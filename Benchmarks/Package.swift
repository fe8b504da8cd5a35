// swift-tools-version:6.1
// Benchmarks live in their own package so that their dependencies never
// enter the library's graph. Run from this directory:
//   swift run -c release aio-bench            # every benchmark, 3 runs each
//   swift run -c release aio-bench fds timers # a subset
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
    ],
    targets: [
        .executableTarget(
            name: "aio-bench",
            dependencies: [.product(name: "Aio", package: library)],
            path: "Sources/AioBench"
        ),
    ]
)
