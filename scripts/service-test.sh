#!/usr/bin/env bash
# Graceful shutdown of Examples/ServiceDaemon (an IOThread and a GLib main
# loop as swift-service-lifecycle services) on SIGTERM and on SIGINT, each
# with pool work in flight: the daemon must exit 0, promptly, having
# delivered every submitted job once; some finished and some queued jobs
# cancelled (so the signal really came with work in flight). Bounded by
# `timeout`: it cannot hang CI.
#
#   bash scripts/service-test.sh           # builds ServiceDaemon first
#   bash scripts/service-test.sh PATH      # tests an already built binary
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-}
if [ -z "$bin" ]; then
    swift build --enable-all-traits --product ServiceDaemon
    bin="$(swift build --enable-all-traits --show-bin-path)/ServiceDaemon"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for signal in TERM INT; do
    timeout 60 "$bin" >"$log" 2>&1 &
    pid=$!
    # Wait (at most 20 s) until the daemon reports work in flight.
    for _ in $(seq 1 200); do
        grep -q "^in flight: " "$log" && break
        sleep 0.1
    done
    if ! grep -q "^in flight: " "$log"; then
        cat "$log"; echo "service-test: no work in flight after 20 s" >&2
        pkill -KILL -P $pid || true   # the daemon (timeout's child), then timeout
        kill -KILL $pid 2>/dev/null || true
        exit 1
    fi
    sent=$(date +%s%N)
    kill -"$signal" $pid   # timeout passes TERM and INT on to the daemon
    status=0
    wait $pid || status=$?
    took_ms=$(( ($(date +%s%N) - sent) / 1000000 ))
    if [ $status -ne 0 ]; then
        cat "$log"; echo "service-test: SIG$signal: exit status $status" >&2; exit 1
    fi
    line=$(grep "^shut down: " "$log") || { cat "$log"; echo "service-test: no summary" >&2; exit 1; }
    summary='^shut down: submitted ([0-9]+), completed ([0-9]+), cancelled ([0-9]+), failed ([0-9]+), delivered ([0-9]+)$'
    [[ $line =~ $summary ]] || { cat "$log"; echo "service-test: unreadable summary: $line" >&2; exit 1; }
    submitted=${BASH_REMATCH[1]} completed=${BASH_REMATCH[2]} cancelled=${BASH_REMATCH[3]}
    failed=${BASH_REMATCH[4]} delivered=${BASH_REMATCH[5]}
    if [ "$delivered" -ne "$submitted" ] || [ "$failed" -ne 0 ] || [ "$completed" -eq 0 ] || [ "$cancelled" -eq 0 ]; then
        cat "$log"; echo "service-test: SIG$signal: the counts do not add up: $line" >&2; exit 1
    fi
    # Queued jobs are cancelled, not run: the running ones (4 workers,
    # 20 ms each) end well within a second.
    if [ $took_ms -gt 5000 ]; then
        echo "service-test: SIG$signal: shutdown took $took_ms ms" >&2; exit 1
    fi
    echo "service-test: SIG$signal with work in flight: $line; exit 0 after $took_ms ms"
done
