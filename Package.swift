// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "swift-aio",
    products: [
        .library(name: "Aio", targets: ["Aio"]),
    ],
    targets: [
        // GLib plus the Linux headers Swift's Glibc module leaves out (eventfd, epoll, timerfd, ppoll).
        .systemLibrary(
            name: "CGLibShim",
            path: "CGLibShim",
            pkgConfig: "glib-2.0",
            providers: [.apt(["libglib2.0-dev"])]
        ),
        // liburing (Debian: liburing-dev, installed by scripts/deps.sh) behind
        // plain C functions: the io_uring fd monitor, submissions, file I/O.
        // liburing.h defines _GNU_SOURCE, which breaks Swift's Glibc module
        // when imported directly; only uring.c includes it.
        .target(
            name: "CAioURing",
            path: "Sources/CAioURing",
            linkerSettings: [.linkedLibrary("uring")]
        ),
        // The thread token (a C thread-local: one load to read it).
        .target(
            name: "CAioSupport",
            path: "Sources/CAioSupport"
        ),
        .target(
            name: "Aio",
            dependencies: ["CGLibShim", "CAioSupport", "CAioURing"],
            path: "Sources/Aio"
        ),
        // The multithread stress workloads (QEMU's test-aio-multithread), shared
        // by the test suite (short rounds) and aio-stress (a long run).
        .target(
            name: "AioMultithreadStress",
            dependencies: ["Aio"],
            path: "Sources/AioMultithreadStress"
        ),
        // Stress harness: every thread role at once, with per-round watchdogs.
        .executableTarget(
            name: "aio-stress",
            dependencies: ["Aio", "AioMultithreadStress", "CGLibShim"],
            path: "Sources/AioStress"
        ),
        .executableTarget(
            name: "GLibDemo",
            dependencies: ["Aio", "CGLibShim"],
            path: "Examples/GLibDemo"
        ),
        .executableTarget(
            name: "MainActorLoop",
            dependencies: ["Aio", "CGLibShim"],
            path: "Examples/MainActorLoop"
        ),
        // GIO (GDBus, GFile, GSubprocess) for the examples only; Aio never depends on it.
        .systemLibrary(
            name: "CGIOShim",
            path: "Examples/CGIOShim",
            pkgConfig: "gio-2.0",
            providers: [.apt(["libglib2.0-dev"])]
        ),
        .executableTarget(
            name: "GLibDaemon",
            dependencies: ["Aio", "CGLibShim", "CGIOShim"],
            path: "Examples/GLibDaemon"
        ),
        .executableTarget(
            name: "ManualIteration",
            dependencies: ["Aio", "CGLibShim"],
            path: "Examples/ManualIteration"
        ),
        .executableTarget(
            name: "IOThreadOffload",
            dependencies: ["Aio", "CGLibShim"],
            path: "Examples/IOThreadOffload"
        ),
        // Counts this thread's heap allocations by interposing malloc in the test executable.
        .target(
            name: "CAllocCounter",
            path: "Tests/CAllocCounter"
        ),
        .testTarget(
            name: "AioTests",
            dependencies: ["Aio", "AioMultithreadStress", "CGLibShim", "CAioURing", "CAllocCounter"],
            path: "Tests/AioTests"
        ),
    ]
)
