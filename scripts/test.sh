#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. the Promela models of the wake-up protocol and their bug variants;
#   2. swift test (debug), then the fd and timer suites again with each
#      other fd monitor forced (AIO_FDMON=epoll, AIO_FDMON=poll);
#   3. the stress harness (60 s; AIO_STRESS=1 for the 10-minute run), then its
#      multithread mode (QEMU's test-aio-multithread workloads, 20 s);
#   4. swift test and the stress harness (both modes) under ThreadSanitizer;
#   5. swift test under AddressSanitizer + LeakSanitizer;
#   6. the fault matrix: every re-injected historical bug must be detected;
#   7. every example, run to completion (the main-actor ones and
#      FirstProgram also under ThreadSanitizer), GLibDaemon's integration test
#      (scripts/daemon-test.sh: gdbus clients on a private session bus) and
#      ServiceDaemon's (scripts/service-test.sh: SIGTERM and SIGINT with work
#      in flight, plainly and under ThreadSanitizer);
#   8. the documentation: DocC with warnings as errors, a summary on every
#      public symbol, every Swift block of the README and the articles
#      compiled, and scratch packages that check what adding the package fetches;
#   9. the benchmark package: built, and a smoke run of ours and the peers with
#      small sizes (Benchmarks/run.sh).
# Installs what it needs first. Each sanitizer gets its own scratch path
# (switching sanitizers otherwise rebuilds everything), and a sanitizer report
# only changes the exit code, so exit codes are what count.
# Every build of this package enables all its traits (the optional products
# AioMetrics and AioServiceLifecycle, and their tests); the same flags
# throughout keep SwiftPM from rebuilding between steps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
traits=--enable-all-traits

step() { printf '\n==> %s\n' "$*"; }

if [ -x Models/run.sh ]; then
    step "Models: SPIN verdicts of the notify protocol and its bug variants"
    bash Models/run.sh
fi

step "swift test"
swift test $traits

step "swift test: the fd and timer suites on the other monitors (io_uring is the default above)"
# Every driver configuration of each suite, with the monitor forced.
monitor_suites="FDHandler|Timer|GSource|Coexistence|EventNotifier|Contract|SeedScenario|Concurrency|MonitorTests"
for monitor in epoll poll; do
    echo "AIO_FDMON=$monitor"
    AIO_FDMON=$monitor swift test $traits --skip-build --filter "$monitor_suites"
done

step "aio-stress (every thread role on one context)"
swift build $traits --product aio-stress
swift run $traits --skip-build aio-stress

step "aio-stress multithread (five IOThreads: cross-context BHs and tasks, a contended AsyncMutex)"
AIO_STRESS_SECONDS=20 swift run $traits --skip-build aio-stress multithread

step "swift test under ThreadSanitizer"
swift test $traits --scratch-path .build-tsan --sanitize=thread

step "aio-stress under ThreadSanitizer"
swift build $traits --scratch-path .build-tsan --sanitize=thread --product aio-stress
AIO_STRESS_SECONDS=30 AIO_STRESS_ROUND_TIMEOUT=5 \
    swift run $traits --scratch-path .build-tsan --sanitize=thread --skip-build aio-stress
AIO_STRESS_SECONDS=20 AIO_STRESS_ROUND_TIMEOUT=10 \
    swift run $traits --scratch-path .build-tsan --sanitize=thread --skip-build aio-stress multithread

step "swift test under AddressSanitizer and LeakSanitizer"
# Slow unwinding at malloc: GLib has no frame pointers, and a leak report (or
# lsan.supp's one GLib entry) needs the frames inside it.
ASAN_OPTIONS=fast_unwind_on_malloc=0 LSAN_OPTIONS="suppressions=$PWD/lsan.supp" \
    swift test $traits --scratch-path .build-asan --sanitize=address -Xswiftc -use-ld=lld

step "fault matrix: each re-injected historical bug must be detected"
bash scripts/fault-matrix.sh

step "examples, each run to completion"
for example in GLibDemo ManualIteration IOThreadOffload GLibDaemon MainActorLoop AsyncMainLoop SyncMainExecutor FirstProgram ServiceDaemon; do
    swift build $traits --product $example
done
example_log=$(mktemp)
for example in GLibDemo ManualIteration IOThreadOffload MainActorLoop AsyncMainLoop SyncMainExecutor FirstProgram "GLibDaemon --demo"; do
    # shellcheck disable=SC2086  # "GLibDaemon --demo" is a command and its argument
    if timeout 120 swift run $traits --skip-build $example >"$example_log" 2>&1; then
        echo "$example ran to completion: $(tail -n 1 "$example_log")"
    else
        cat "$example_log"
        echo "$example FAILED" >&2
        exit 1
    fi
done
# GLibMainExecutor's self-check: run() without the executor installed traps
# and names the fix.
if SYNC_MAIN_SKIP_INSTALL=1 timeout 60 swift run $traits --skip-build SyncMainExecutor >"$example_log" 2>&1; then
    echo "SyncMainExecutor without _createExecutors should have trapped" >&2
    exit 1
fi
grep -q "MainActor.executor is DispatchMainExecutor, not GLibMainExecutor" "$example_log" || {
    cat "$example_log"; echo "run()'s self-check did not name the problem" >&2; exit 1; }
echo "GLibMainExecutor.run() without installation trapped with its message"
rm -f "$example_log"
for example in MainActorLoop AsyncMainLoop SyncMainExecutor FirstProgram ServiceDaemon; do
    swift build $traits --scratch-path .build-tsan --sanitize=thread --product $example
    [ $example = ServiceDaemon ] && continue   # run by service-test.sh below
    timeout 120 swift run $traits --scratch-path .build-tsan --sanitize=thread --skip-build $example >/dev/null
    echo "$example ran to completion under ThreadSanitizer"
done

step "GLibDaemon integration test: gdbus clients on a private session bus"
bash scripts/daemon-test.sh "$(swift build $traits --show-bin-path)/GLibDaemon"

step "ServiceDaemon: SIGTERM and SIGINT with pool work in flight (also under ThreadSanitizer)"
bash scripts/service-test.sh "$(swift build $traits --show-bin-path)/ServiceDaemon"
bash scripts/service-test.sh "$(swift build $traits --scratch-path .build-tsan --sanitize=thread --show-bin-path)/ServiceDaemon"

step "documentation: DocC (warnings are errors), a summary on every public symbol, compiled snippets, what a dependent fetches"
# The docc plugin is a dependency only with AIO_DOCS set (users never fetch
# it); its own scratch path keeps the main build's graph untouched.
rm -rf .build-docs/*/extracted-symbols   # no stale graph counts
AIO_DOCS=1 swift package --scratch-path .build-docs $traits generate-documentation \
    --target Aio --target AioGIO --target AioMetrics --target AioServiceLifecycle --warnings-as-errors
python3 scripts/check-doc-coverage.py .build-docs Aio,AioGIO,AioMetrics,AioServiceLifecycle
python3 scripts/check-snippets.py
bash scripts/check-dependencies.sh

step "benchmarks: build, and a smoke run of ours and every peer (small sizes, no assertions on speed)"
# Builds aio-bench (release, with SwiftNIO) and the C peers of ../shared/peers
# when that directory is there; fails only if a benchmark crashes or hangs.
BENCH_SMOKE=1 RUNS=1 bash Benchmarks/run.sh
