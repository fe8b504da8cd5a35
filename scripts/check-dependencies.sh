#!/usr/bin/env bash
# Adding swift-aio to a new package pulls only what the products it uses
# need. Three scratch packages under .build/dependency-check depend on this
# checkout by path, as a user's package would by URL, and each is built:
#   aio-only:   product Aio                       -> fetches exactly swift-log
#   metrics:    AioMetrics, trait Metrics         -> exactly swift-log, swift-metrics
#   lifecycle:  AioServiceLifecycle, its trait    -> exactly swift-log, swift-service-lifecycle
#                                                    and what that needs
# Each is built too, so the products compile for a dependent with their traits.
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
    local name=$1 product=$2 traits=$3 code=$4 expected=$5
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
    if [ ! -d "$dir/.build/checkouts" ]; then
        echo "dependency check: $name: no .build/checkouts after the build (has SwiftPM's layout changed?)" >&2
        exit 1
    fi
    local fetched want
    fetched=$(find "$dir/.build/checkouts" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | xargs)
    want=$(printf '%s\n' $expected | sort | xargs)
    if [ "$fetched" != "$want" ]; then
        echo "dependency check: $name (product $product) fetched [$fetched]; expected exactly [$want]" >&2
        exit 1
    fi
    echo "dependency check: $name (product $product) fetched exactly: $fetched"
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
