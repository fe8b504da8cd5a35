#!/usr/bin/env bash
# Instructions per operation of one benchmark row, counted by callgrind:
# a count that does not move with the machine's load, for comparing two
# builds of the same row when the timings are too noisy to.
#
#   bash Benchmarks/instructions.sh ROW MODE [N1 N2]
#   bash Benchmarks/instructions.sh a_bh_native same
#   BIN=/tmp/old-aio-bench bash Benchmarks/instructions.sh a_bh_gsource same 50000 250000
#
# ROW is a BENCH_ONLY prefix and MODE an aio-bench mode (same, cross, ...).
# The row runs twice under callgrind, with N1 and N2 operations (default
# 200,000 and 1,200,000), and the difference of the two totals divided by
# N2 - N1 is printed: set-up, warm-up and exit cancel out. Valgrind cannot
# read Swift 6's debug information, so the binary is run with it stripped.
# Needs valgrind (Debian: valgrind); BIN defaults to the release aio-bench.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
row="${1:?usage: instructions.sh ROW MODE [N1 N2]}"
mode="${2:?usage: instructions.sh ROW MODE [N1 N2]}"
n1="${3:-200000}"
n2="${4:-1200000}"
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
bin="${BIN:-$here/.build/release/aio-bench}"
[ -x "$bin" ] || { echo "instructions.sh: no $bin; build it: cd Benchmarks && swift build -c release --product aio-bench" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
strip --strip-debug -o "$work/aio-bench" "$bin"
total() {
    RUNS=1 BENCH_N_SAME="$1" BENCH_N_CROSS="$1" BENCH_ONLY="$row" \
        valgrind --tool=callgrind --callgrind-out-file="$work/cg.$1" "$work/aio-bench" aio "$mode" \
        >/dev/null 2>"$work/err.$1" || { cat "$work/err.$1" >&2; exit 1; }
    sed -n 's/^summary: //p' "$work/cg.$1"
}
a="$(total "$n1")"
b="$(total "$n2")"
awk -v a="$a" -v b="$b" -v n1="$n1" -v n2="$n2" -v row="$row" \
    'BEGIN { printf "%s: %.0f instructions per operation\n", row, (b - a) / (n2 - n1) }'
