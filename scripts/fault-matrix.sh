#!/usr/bin/env bash
# Builds aio-stress once per injected fault (-DAIO_FAULT_<NAME>, see
# Sources/Aio/Context/FaultInjection.swift), runs it for at most
# FAULT_SECONDS (default 60), and prints one row per fault: detected?, and
# seconds to detect. The correct build must pass. Exits non-zero if any
# fault goes undetected or the correct build fails.
#
# Faults in paths the stress harness does not drive (busy polling with
# begin/end hooks) are detected by a test instead: the suite is built with
# the fault and the named test must fail.
#
#   bash scripts/fault-matrix.sh                 # every fault
#   bash scripts/fault-matrix.sh STEAL NO_DRAIN  # a subset
set -uo pipefail
cd "$(dirname "$0")/.."

all=(CLEAR_AFTER SKIP_WRITE STEAL BOOL_FLAG NOTIFY_ORDER WAIT_ORDER SHARED_FD NO_DRAIN BH_EARLY_CLEAR POLL_NO_FINAL_CHECK
     GSOURCE_BLOCKING STALE_READINESS CALLBACK_AFTER_REMOVE NOTIFY_AFTER_TEARDOWN NESTED_SLEEP URING_NO_REARM
     OWE_FORGOTTEN G_PEND_CHECK_ONLY)
# fault -> the test that must catch it (the rest are caught by aio-stress)
declare -A by_test=(
    [POLL_NO_FINAL_CHECK]=noLostEventAtTheEdge
    [GSOURCE_BLOCKING]=CoexistenceTests/ownerBHIteratesGLib
    [STALE_READINESS]=CoexistenceTests/readinessDispatchedOnce
    [CALLBACK_AFTER_REMOVE]="CoexistenceTests/noCallbackAfterRemoval|CoexistenceTests/noTimerCallbackAfterCancel"
    [NOTIFY_AFTER_TEARDOWN]=CoexistenceTests/scheduleRacesTeardown
    [NESTED_SLEEP]=CoexistenceTests/nestedGLibIterationDoesNotSleepOwning
    [URING_NO_REARM]=MonitorTests/repeatedReadiness
    [G_PEND_CHECK_ONLY]=CoexistenceTests/wakeConsumedByReadyPass
)
# what the catching test prints when it catches the fault
declare -A caught_by=(
    [POLL_NO_FINAL_CHECK]='LOST item [0-9]+'
    [GSOURCE_BLOCKING]='did not finish within [0-9.]+ s: deadlock|no step finished within [0-9.]+ s|lock order violation'
    [STALE_READINESS]='read callbacks found nothing to read'
    [CALLBACK_AFTER_REMOVE]='callbacks started after (removeHandler|cancel\(\)) returned'
    [NOTIFY_AFTER_TEARDOWN]='AIO_FAULT_NOTIFY_AFTER_TEARDOWN: notify\(\) reached a context that was torn down'
    [NESTED_SLEEP]='the nested iteration slept [0-9.]+ ms while owning the context'
    [URING_NO_REARM]='the handler fired [0-9]+ of [0-9]+ times'
    [G_PEND_CHECK_ONLY]='GLib slept through a notify after a ready pass'
)
faults=("$@")
[ ${#faults[@]} -eq 0 ] && faults=("${all[@]}")
seconds=${FAULT_SECONDS:-60}
scratch=.build-fault
logs=$(mktemp -d)
status=0

run_one() {  # name, extra swiftc flags...
    local name=$1; shift
    if ! swift build --scratch-path "$scratch" --product aio-stress "$@" >"$logs/$name.build" 2>&1; then
        printf '| %-16s | build failed | - | see %s |\n' "$name" "$logs/$name.build"
        status=1
        return
    fi
    local bin
    bin=$(swift build --scratch-path "$scratch" --product aio-stress "$@" --show-bin-path)/aio-stress
    local start end rc
    start=$(date +%s%N)
    AIO_STRESS_SECONDS=$seconds timeout $((seconds + 30)) "$bin" >"$logs/$name.out" 2>&1
    rc=$?
    end=$(date +%s%N)
    local took how
    took=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    how=$(grep -oE 'LOST WAKE-UP in role [A-Z0-9]+|BUSY LOOP|did not stop|Fatal error[^\n]{0,60}' "$logs/$name.out" | head -1)
    [ -z "$how" ] && [ $rc -ne 0 ] && how="exit status $rc"
    [ -z "$how" ] && how="passed"
    if [ "$name" = none ]; then
        [ $rc -eq 0 ] && verdict="passes (correct)" || { verdict="FAILED"; status=1; }
        printf '| %-16s | %-16s | %6s | %s |\n' "$name" "$verdict" "$took" "$how"
    else
        [ $rc -ne 0 ] && verdict="detected" || { verdict="NOT DETECTED"; status=1; }
        printf '| %-16s | %-16s | %6s | %s |\n' "$name" "$verdict" "$took" "$how"
    fi
}

run_test() {  # name, test filter
    local name=$1 filter=$2 start end rc took how
    start=$(date +%s%N)
    timeout 1500 swift test --scratch-path "$scratch" -Xswiftc "-DAIO_FAULT_$name" \
        --filter "$filter" >"$logs/$name.out" 2>&1
    rc=$?
    end=$(date +%s%N)
    took=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    how=$(grep -oE "${caught_by[$name]}" "$logs/$name.out" | head -1)
    if [ $rc -ne 0 ] && [ -n "$how" ]; then
        verdict="detected"
    else
        verdict="NOT DETECTED"; status=1; how="test $filter: exit status $rc"
    fi
    printf '| %-16s | %-16s | %6s | %s (test %s, incl. build) |\n' "$name" "$verdict" "$took" "$how" "$filter"
}

printf '| fault            | verdict          | seconds | how |\n'
printf '|------------------|------------------|--------:|-----|\n'
for f in "${faults[@]}"; do
    if [ -n "${by_test[$f]:-}" ]; then
        run_test "$f" "${by_test[$f]}"
    else
        run_one "$f" -Xswiftc "-DAIO_FAULT_$f"
    fi
done
FAULT_SECONDS_SAVED=$seconds
seconds=${CORRECT_SECONDS:-20}
run_one none
seconds=$FAULT_SECONDS_SAVED
echo "(logs in $logs)"
exit $status
