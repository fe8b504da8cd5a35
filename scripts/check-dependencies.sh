#!/usr/bin/env bash
# Adding swift-aio to a new package pulls only what the products it uses
# need. Three scratch packages under .build/dependency-check depend on this
# checkout by path, as a user's package would by URL, and each is built:
#   aio-only:   product Aio                       -> fetches swift-log only
#   metrics:    AioMetrics, trait Metrics         -> swift-log, swift-metrics
#   lifecycle:  AioServiceLifecycle, its trait    -> swift-log, swift-service-lifecycle
#                                                    and what that needs
# SwiftPM fetches every dependency a package declares unless a disabled trait
# guards it, which is why the optional products sit behind traits.
#
#   bash scripts/check-dependencies.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=.build/dependency-check
rm -rf "$work"

check() {
    local name=$1 product=$2 traits=$3 code=$4 allowed=$5
    local dir="$work/$name"
    mkdir -p "$dir/Sources/App"
    cat >"$dir/Package.swift" <<MANIFEST
// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "$name",
    dependencies: [
        .package(path: "$root"$traits),
    ],
    targets: [
        .executableTarget(name: "App", dependencies: [.product(name: "$product", package: "$(basename "$root" | tr "[:upper:]" "[:lower:]")")]),
    ]
)
MANIFEST
    printf '%s\n' "$code" >"$dir/Sources/App/main.swift"
    swift build --package-path "$dir" >"$dir/build.log" 2>&1 || { cat "$dir/build.log"; echo "dependency check: $name does not build" >&2; exit 1; }
    local fetched
    fetched=$(ls "$dir/.build/checkouts" 2>/dev/null | sort | tr '\n' ' ')
    for package in $fetched; do
        case " $allowed " in
            *" $package "*) ;;
            *) echo "dependency check: $name (product $product) fetched $package; allowed: $allowed" >&2; exit 1 ;;
        esac
    done
    echo "dependency check: $name (product $product) fetched: ${fetched:-nothing}"
}

check aio-only Aio "" \
    'import Aio
let ctx = try AioContext(name: "app")
ctx.scheduleOneshot { print("ran") }
_ = ctx.poll(blocking: false)' \
    "swift-log"

check metrics AioMetrics ', traits: ["Metrics"]' \
    'import Aio
import AioMetrics
let ctx = try AioContext(name: "app")
AioMetricsReporter(context: ctx).report()' \
    "swift-log swift-metrics"

check lifecycle AioServiceLifecycle ', traits: ["ServiceLifecycle"]' \
    'import Aio
import AioServiceLifecycle
let service = try IOThreadService(name: "io")
print(service.context.name)' \
    "swift-log swift-service-lifecycle swift-async-algorithms swift-collections"
