// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "swift-aio",
    products: [
        .library(name: "Aio", targets: ["Aio"]),
        // Opt-in: @MainActor on GLib's main loop for programs with an async
        // main, through Swift 6.3's experimental custom-executor SPI.
        .library(name: "AioMainExecutor", targets: ["AioMainExecutor"]),
        // GIO's _async/_finish pairs as Swift async calls. Aio itself never depends on GIO.
        .library(name: "AioGIO", targets: ["AioGIO"]),
        // GLib's C API (and the Linux calls Swift's Glibc module leaves out),
        // for programs that use GLib beside the library: `import CGLibShim`.
        .library(name: "CGLibShim", targets: ["CGLibShim"]),
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
        .target(
            name: "AioMainExecutor",
            dependencies: ["Aio", "CGLibShim"],
            path: "Sources/AioMainExecutor"
        ),
        // GIO (GDBus, GFile, GSubprocess, GCancellable) for AioGIO and the
        // examples; Aio never depends on it.
        .systemLibrary(
            name: "CGIOShim",
            path: "Sources/CGIOShim",
            pkgConfig: "gio-2.0",
            providers: [.apt(["libglib2.0-dev"])]
        ),
        // The GIO async bridge: any _async/_finish pair as an `async throws` call.
        .target(
            name: "AioGIO",
            dependencies: ["Aio", "CGIOShim"],
            path: "Sources/AioGIO"
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
        .executableTarget(
            name: "GLibDaemon",
            dependencies: ["Aio", "AioGIO", "CGLibShim", "CGIOShim"],
            path: "Examples/GLibDaemon"
        ),
        // The main-actor hop check shared by the two main-executor examples.
        .target(
            name: "MainHopCheck",
            dependencies: ["Aio", "CGLibShim"],
            path: "Examples/MainHopCheck"
        ),
        // An async main on GLib's main loop. On Linux, Swift 6.3 honours
        // `typealias DefaultExecutorFactory` only with this frontend flag;
        // without it the typealias is ignored (GLibMainExecutor.verifyInstalled
        // then traps, naming the flag). Not part of any product.
        .executableTarget(
            name: "AsyncMainLoop",
            dependencies: ["Aio", "AioMainExecutor", "CGLibShim", "MainHopCheck"],
            path: "Examples/AsyncMainLoop",
            swiftSettings: [.unsafeFlags(["-Xfrontend", "-disable-availability-checking"])]
        ),
        // The same executor from a synchronous main: no flag needed.
        .executableTarget(
            name: "SyncMainExecutor",
            dependencies: ["Aio", "AioMainExecutor", "MainHopCheck"],
            path: "Examples/SyncMainExecutor"
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
            dependencies: ["Aio", "AioGIO", "AioMultithreadStress", "CGLibShim", "CGIOShim", "CAioURing", "CAllocCounter"],
            path: "Tests/AioTests"
        ),
    ]
)
