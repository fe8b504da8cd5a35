// swift-tools-version:6.1
import PackageDescription
import class Foundation.ProcessInfo

let package = Package(
    name: "swift-aio",
    products: [
        .library(name: "Aio", targets: ["Aio"]),
        // GLib's C API (g_main_loop_run, g_main_context_iteration, ...) for
        // programs that drive GLib themselves; Aio re-exports nothing of it.
        .library(name: "CGLibShim", targets: ["CGLibShim"]),
        // Opt-in: @MainActor on GLib's main loop for programs with an async
        // main, through Swift 6.3's experimental custom-executor SPI.
        .library(name: "AioMainExecutor", targets: ["AioMainExecutor"]),
        // GIO's _async/_finish pairs as Swift async calls. Aio itself never depends on GIO.
        .library(name: "AioGIO", targets: ["AioGIO"]),
        // The context's and its pool's statistics as swift-metrics counters and gauges.
        .library(name: "AioMetrics", targets: ["AioMetrics"]),
        // IOThreads and GLib main loops as swift-service-lifecycle services.
        .library(name: "AioServiceLifecycle", targets: ["AioServiceLifecycle"]),
    ],
    // The optional integrations are behind package traits, so that a package
    // using only Aio fetches swift-log and nothing else (SwiftPM fetches every
    // dependency a package declares, used or not, unless a disabled trait
    // guards it). Enable them where you add the package:
    //   .package(url: ..., from: ..., traits: ["Metrics", "ServiceLifecycle"])
    // and build this package itself with --enable-all-traits (scripts/test.sh does).
    traits: [
        .trait(name: "Metrics", description: "The AioMetrics product (swift-metrics)."),
        .trait(name: "ServiceLifecycle", description: "The AioServiceLifecycle product (swift-service-lifecycle)."),
        .default(enabledTraits: []),
    ],
    dependencies: [
        // The library needs 1.6; the tests' LogHandler implements log(event:) (1.16).
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
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
            dependencies: [
                "CGLibShim", "CAioSupport", "CAioURing",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Aio"
        ),
        .target(
            name: "AioMetrics",
            dependencies: ["Aio", .product(name: "CoreMetrics", package: "swift-metrics", condition: .when(traits: ["Metrics"]))],
            path: "Sources/AioMetrics"
        ),
        .target(
            name: "AioServiceLifecycle",
            dependencies: [
                "Aio", "CGLibShim",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle",
                         condition: .when(traits: ["ServiceLifecycle"])),
            ],
            path: "Sources/AioServiceLifecycle"
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
        // A first Swift 6 program: results from an IOThread's pool into
        // main-actor state, on GLib's main loop.
        .executableTarget(
            name: "FirstProgram",
            dependencies: ["Aio"],
            path: "Examples/FirstProgram"
        ),
        // An IOThread and a GLib main loop as services, shut down on SIGTERM.
        .executableTarget(
            name: "ServiceDaemon",
            dependencies: [
                "Aio", "AioServiceLifecycle", "CGLibShim",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle",
                         condition: .when(traits: ["ServiceLifecycle"])),
            ],
            path: "Examples/ServiceDaemon"
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
            dependencies: [
                "Aio", "AioGIO", "AioMetrics", "AioServiceLifecycle", "AioMultithreadStress",
                "CGLibShim", "CGIOShim", "CAioURing", "CAllocCounter",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics", condition: .when(traits: ["Metrics"])),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle",
                         condition: .when(traits: ["ServiceLifecycle"])),
            ],
            path: "Tests/AioTests"
        ),
    ]
)

// The documentation plugin (`swift package generate-documentation`) only when
// asked for, so that packages depending on this one never fetch it:
//   AIO_DOCS=1 swift package generate-documentation --target Aio
if ProcessInfo.processInfo.environment["AIO_DOCS"] != nil {
    package.dependencies.append(
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.4.0"))
}
