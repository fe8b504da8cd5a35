#!/usr/bin/env bash
# One command for the whole comparison: builds aio-bench (release) and the C
# peers, runs ours and the peers round-robin RUNS times (default 3) with the
# eventfd counter preloaded, then again pinned to one CPU for the latency rows,
# and turns the RESULT lines into one table, ratios.png and BENCHMARKS.md's
# results section.
#
#   Benchmarks/run.sh                 full run (about 10 minutes on 2 cores)
#   RUNS=5 Benchmarks/run.sh          more runs
#   BENCH_SMOKE=1 RUNS=1 Benchmarks/run.sh
#                                     tiny sizes, for CI: everything runs once,
#                                     the table is printed, nothing is rewritten
#
# Environment: RUNS, BENCH_SMOKE, PEERS_DIR (default ../../shared/peers from
# this directory; without it the C peers are skipped and their rows say so),
# PINNED=0 to skip the pinned pass, PAIRED_RUNS (default 5; 0 skips the
# paired pass). Raw results go to results/raw-<UTC>.txt
# (smoke runs: .build/smoke/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
RUNS=${RUNS:-3}
SMOKE=${BENCH_SMOKE:-0}
PINNED=${PINNED:-1}
PAIRED_RUNS=${PAIRED_RUNS:-5}
PEERS_DIR=${PEERS_DIR:-$here/../../shared/peers}

say() { printf '==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------- packages
need=()
for p in gcc pkg-config libglib2.0-dev libuv1-dev libevent-dev liburing-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
fi
if [ "$SMOKE" != 1 ] && ! python3 -c 'import matplotlib' 2>/dev/null; then
    say "matplotlib missing: trying pip (report.py draws the chart itself if this fails)"
    python3 -m pip install --quiet matplotlib >/dev/null 2>&1 || true
fi

# ------------------------------------------------------------------ builds
bin="$here/.build/peers"
mkdir -p "$bin"
peers=()
if [ -d "$PEERS_DIR" ]; then
    say "building the C peers from $PEERS_DIR into $bin"
    # The flags of the peers' own build scripts, output kept in this package
    # (the peers' tree is shared and stays untouched).
    gcc -O2 -Wall -shared -fPIC -o "$bin/fdcount.so" "$PEERS_DIR/common/fdcount.c" -ldl
    gcc -O2 -Wall -o "$bin/bench_raw" "$PEERS_DIR/raw/bench_raw.c" -lpthread -ldl
    gcc -O2 -Wall -o "$bin/bench_glib" "$PEERS_DIR/glib/bench_glib.c" \
        $(pkg-config --cflags --libs glib-2.0) -lpthread -ldl
    gcc -O2 -Wall -o "$bin/bench_uv" "$PEERS_DIR/libuv/bench_uv.c" \
        $(pkg-config --cflags --libs libuv) -lpthread -ldl
    gcc -O2 -Wall -o "$bin/bench_event" "$PEERS_DIR/libevent/bench_event.c" \
        $(pkg-config --cflags --libs libevent libevent_pthreads) -lpthread -ldl
    # Row (h)'s floor: io_uring and a pread pool in C, on a cached file.
    gcc -O2 -Wall -o "$bin/bench_uring" "$PEERS_DIR/uring/bench_uring.c" -luring -lpthread -ldl
    # Row (b) for libuv with producer threads (1 and 2), in our rows' shape:
    # this package's program, on the peers' helpers and flags.
    gcc -O2 -Wall -I"$PEERS_DIR/common" -o "$bin/bench_uv_producers" "$here/peers/bench_uv_producers.c" \
        $(pkg-config --cflags --libs libuv) -lpthread -ldl
    # Row (a)'s floor for this library's protocol (the same locked
    # instructions per callback as ours, in C).
    gcc -O2 -Wall -I"$PEERS_DIR/common" -o "$bin/bench_floor_protocol" "$here/peers/bench_floor_protocol.c" -lpthread -ldl
    peers=(bench_raw bench_glib bench_uv bench_event bench_uring bench_uv_producers bench_floor_protocol)
else
    say "no peers at $PEERS_DIR: C floor, libuv and libevent rows will be missing"
fi
say "building aio-bench (release)"
swift build -c release --product aio-bench 2>&1 | grep -E 'error|warning: unre|Compiling aio|Build ' >&2 || true
aio="$(swift build -c release --show-bin-path)/aio-bench"
[ -x "$aio" ] || { echo "aio-bench did not build" >&2; exit 1; }
swift build -c release --product main-bench 2>&1 | grep -E 'error|warning: unre|Build ' >&2 || true
mainbench="$(swift build -c release --show-bin-path)/main-bench"
[ -x "$mainbench" ] || { echo "main-bench did not build" >&2; exit 1; }

preload=""
[ -f "$bin/fdcount.so" ] && preload="$bin/fdcount.so"

# -------------------------------------------------------------------- runs
stamp=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$SMOKE" = 1 ]; then
    out="$here/.build/smoke"
    export BENCH_SMOKE=1 BENCH_N_SAME=${BENCH_N_SAME:-20000} BENCH_N_CROSS=${BENCH_N_CROSS:-20000} BENCH_N_PING=${BENCH_N_PING:-200} BENCH_FILE_MB=${BENCH_FILE_MB:-4} BENCH_OPS=${BENCH_OPS:-2000}
else
    out="$here/results"
fi
mkdir -p "$out"
raw="$out/raw-$stamp.txt"
nio_version=$(sed -n '/"identity" : "swift-nio"/,/"version"/s/.*"version" : "\([^"]*\)".*/\1/p' Package.resolved 2>/dev/null | head -1 || true)
{
    echo "# date: $(date -u)"
    echo "# host: $(uname -srm), $(nproc) cpus,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "# load before: $(uptime)"
    echo "# versions: $(swift --version 2>&1 | head -1); glib $(pkg-config --modversion glib-2.0); libuv $(pkg-config --modversion libuv); libevent $(pkg-config --modversion libevent); swift-nio ${nio_version:-?}"
    echo "# library: $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$here/.." diff --quiet HEAD 2>/dev/null || echo ' (modified)')"
    echo "# sizes: N_SAME=${BENCH_N_SAME:-1000000} N_CROSS=${BENCH_N_CROSS:-1000000} N_PING=${BENCH_N_PING:-10000} GAP_US=${BENCH_PING_GAP_US:-50} RUNS=$RUNS smoke=$SMOKE"
    echo "# syscall counter: ${preload:+fdcount.so from the peers (LD_PRELOAD)}"
} > "$raw"

# name -> command; ours and the in-package peers run as separate processes.
failed=()
run_one() { # $1 label, rest: command
    local label=$1 rc=0; shift
    LD_PRELOAD="$preload" timeout 900 "$@" >> "$raw" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        echo "## $label exited $rc" >> "$raw"
        failed+=("$label")
    fi
}

for r in $(seq 1 "$RUNS"); do
    echo "# load run $r: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$raw"
    for impl in aio glib nio swift; do
        say "run $r/$RUNS: aio-bench $impl"
        echo "## run $r aio-bench-$impl" >> "$raw"
        RUNS=1 run_one "aio-bench-$impl" "$aio" "$impl"
    done
    for mode in pump executor; do
        say "run $r/$RUNS: main-bench $mode"
        echo "## run $r main-bench-$mode" >> "$raw"
        run_one "main-bench-$mode" "$mainbench" "$mode"
    done
    for p in "${peers[@]}"; do
        say "run $r/$RUNS: $p"
        echo "## run $r $p" >> "$raw"
        run_one "$p" "$bin/$p"
    done
done

# Latency again with every thread on CPU 0: on this kind of VM a wake across
# vCPUs pays for the hypervisor's IPI and VM entry (5-25 us); pinned, what is
# left is the library's path plus one context switch. Only c_* rows are kept,
# tagged <impl>@cpu0, as the peers' own runner does.
if [ "$PINNED" = 1 ]; then
    for r in $(seq 1 "$RUNS"); do
        say "pinned run $r/$RUNS"
        for cmd in aio-bench "${peers[@]}"; do
            echo "## pinned run $r $cmd" >> "$raw"
            if [ "$cmd" = aio-bench ]; then set -- "$aio" wake polling; else set -- "$bin/$cmd"; fi
            RUNS=1 BENCH_N_SAME=1000 BENCH_N_CROSS=1000 LD_PRELOAD="$preload" taskset -c 0 timeout 900 "$@" 2>&1 \
                | sed -n 's/^RESULT \([^ ]*\) \([cp]_[a-z_0-9]*\) /RESULT \1@cpu0 \2 /p' >> "$raw" || true
        done
    done
fi

# The contested ratio targets again, each side as a process of its own run
# right after the other (ours first in odd runs, the peers first in even
# ones), so that both sides of a ratio see the same host speed. On this kind
# of VM the host's speed drifts by up to 1.7x within minutes; the rounds
# above put minutes between ours and a peer, which turns that drift into
# ratio noise. Rows are tagged <impl>@paired; the report's "paired" targets
# use them, next to the same targets from the rounds.
paired_one() { # the command; env BENCH_ONLY as given
    RUNS=1 LD_PRELOAD="$preload" timeout 900 "$@" 2>&1 \
        | sed -n 's/^RESULT \([^ ]*\) /RESULT \1@paired /p' >> "$raw" || true
}
paired_ours() {
    BENCH_ONLY=a_bh_native,a_bh_gsource paired_one "$aio" aio same
    BENCH_ONLY=b_oneshotbare paired_one "$aio" aio cross
}
paired_peers() {
    BENCH_ONLY=a_repeat paired_one "$aio" glib same
    for p in bench_raw bench_glib bench_uv_producers; do
        if [ -x "$bin/$p" ]; then BENCH_ONLY= paired_one "$bin/$p"; fi
    done
}
for r in $(seq 1 "$PAIRED_RUNS"); do
    say "paired run $r/$PAIRED_RUNS"
    echo "## paired run $r" >> "$raw"
    if [ $((r % 2)) = 1 ]; then paired_ours; paired_peers; else paired_peers; paired_ours; fi
done
echo "# load after: $(uptime)" >> "$raw"

# ------------------------------------------------------------------ report
say "raw results: $raw"
if [ "$SMOKE" = 1 ]; then
    python3 "$here/report.py" "$raw" --no-write
else
    python3 "$here/report.py" "$raw"
fi
# A benchmark that crashed or hung fails the run (speed never does).
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]} (see $raw)" >&2
    exit 1
fi
