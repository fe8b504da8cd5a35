#!/usr/bin/env bash
# Model-check the models (the notify protocol, busy polling, GSource
# ownership, fd dispatch, thread identity, nested GLib iterations, io_uring
# polls) with SPIN and compare every verdict with the expected one.
#
#   Models/run.sh [-j N] [--full] [--keep] [--only SUBSTRING]
#
#   -j N        parallel jobs (default: number of CPUs, at most 4)
#   --full      also run the slow rows (bigger configurations, minutes)
#   --keep      keep the build directory (pan sources and trail files)
#   --only S    run only the rows whose "model variant property" contains S
#
# Each (model, variant) is built once in a temporary directory:
#   spin -a -D<variant flags> model.pml
#   gcc -DNFAIR=3 pan.c      (liveness: ./pan -a -f -m$DEPTH -w20 -N <ltl name>)
#   gcc -DNOCLAIM -DSAFETY pan.c
#                            (property "safety": ./pan -m$DEPTH -w20, i.e.
#                             assertions and invalid end states = deadlocks)
# Verdict: "pass" needs "errors: 0", no "max search depth too small" and a
# reached depth below the limit. A failing liveness row must fail with an
# acceptance cycle, a failing safety row with an assertion violation or an
# invalid end state; any other failure (depth limit, wrong kind of error,
# pan error) counts as a mismatch.
# Exit status: 0 if every verdict matches the expected one, 1 otherwise,
# 2 if spin or gcc is missing.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEPTH=200000
jobs=""
full=0
keep=0
only=""

while [ $# -gt 0 ]; do
    case "$1" in
        -j) jobs="$2"; shift 2 ;;
        --full) full=1; shift ;;
        --keep) keep=1; shift ;;
        --only) only="$2"; shift 2 ;;
        -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

for tool in spin gcc; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run.sh: '$tool' not found in PATH." >&2
        echo "  Install it, e.g. on Debian/Ubuntu: sudo apt-get install -y spin gcc" >&2
        exit 2
    fi
done

if [ -z "$jobs" ]; then
    jobs="$(nproc 2>/dev/null || echo 2)"
    [ "$jobs" -gt 4 ] && jobs=4
fi

# ---------------------------------------------------------------------------
# Rows: model | variant | property | expected
#   variant: "default", or -D switches joined with '+' (NAME or NAME=VALUE)
#   property: an ltl name of the model, or "safety"
#   expected: pass | fail
# ---------------------------------------------------------------------------
rows_quick='
aio_notify | default | safety | pass
aio_notify | default | lost_v | pass
aio_notify | default | lost_g | pass
aio_notify | default | lost_bh | pass
aio_notify | default | no_busy_wait | pass
aio_notify | SPEC_AS_BRIEFED | safety | pass
aio_notify | SPEC_AS_BRIEFED | lost_v | fail
aio_notify | SPEC_AS_BRIEFED | lost_g | fail
aio_notify | SPEC_G_PREPARE_BH_ONLY | safety | pass
aio_notify | SPEC_G_PREPARE_BH_ONLY | lost_g | fail
aio_notify | SPEC_G_CHECK_BH_ONLY+WOPS=2 | lost_g | pass
aio_notify | SPEC_V_ENTER_AT_ADVERTISE | safety | pass
aio_notify | SPEC_V_ENTER_AT_ADVERTISE | lost_v | fail
aio_notify | BUG_CLEAR_AFTER | safety | pass
aio_notify | BUG_CLEAR_AFTER | lost_v | fail
aio_notify | MOVE_DRAIN_ONLY+WOPS=2 | lost_v | pass
aio_notify | MOVE_DRAIN_ONLY+WOPS=2 | no_busy_wait | pass
aio_notify | BUG_SKIP_WRITE | safety | pass
aio_notify | BUG_SKIP_WRITE | lost_g | fail
aio_notify | BUG_STEAL | safety | pass
aio_notify | BUG_STEAL | lost_v | fail
aio_notify | BUG_STEAL | lost_g | fail
aio_notify | BUG_BOOL_FLAG | safety | pass
aio_notify | BUG_BOOL_FLAG | lost_v | fail
aio_notify | BUG_BOOL_FLAG | lost_g | fail
aio_notify | BUG_NOTIFY_ORDER | safety | pass
aio_notify | BUG_NOTIFY_ORDER | lost_v | fail
aio_notify | BUG_WAIT_ORDER | safety | pass
aio_notify | BUG_WAIT_ORDER | lost_v | fail
aio_notify | BUG_SHARED_FD | safety | pass
aio_notify | BUG_SHARED_FD | lost_v | fail
aio_notify | BUG_SHARED_FD | lost_g | fail
aio_notify | BUG_NO_DRAIN | safety | pass
aio_notify | BUG_NO_DRAIN | no_busy_wait | fail
aio_notify | BUG_BH_EARLY_CLEAR | safety | fail
aio_notify | BUG_BH_EARLY_CLEAR+NO_LINK_ASSERT | safety | pass
aio_notify | BUG_BH_EARLY_CLEAR+NO_LINK_ASSERT | lost_bh | fail
aio_notify | BUG_REGISTER_LATE | safety | pass
aio_notify | BUG_REGISTER_LATE | lost_v | fail
aio_notify | BUG_V_DROPS_OWNERSHIP | safety | pass
aio_notify | BUG_V_DROPS_OWNERSHIP | lost_v | fail
aio_notify | ALT_V_RECHECK+BUG_V_DROPS_OWNERSHIP+SPEC_V_ENTER_AT_ADVERTISE+WOPS=2 | safety | pass
aio_notify | ALT_V_RECHECK+BUG_V_DROPS_OWNERSHIP+SPEC_V_ENTER_AT_ADVERTISE+WOPS=2 | lost_v | pass
aio_notify | PLAIN_RMW+WOPS=2 | lost_v | pass
aio_notify | PLAIN_RMW+WOPS=2 | lost_g | pass
aio_notify_gen | WOPS=2 | safety | pass
aio_notify_gen | WOPS=2 | lost_v | pass
aio_notify_gen | WOPS=2 | lost_g | pass
aio_notify_gen | WOPS=2 | lost_bh | pass
aio_notify_gen | WOPS=2 | no_busy_wait | pass
aio_notify_gen | V_HOLDS_OWNERSHIP+WOPS=2 | safety | pass
aio_notify_gen | V_HOLDS_OWNERSHIP+WOPS=2 | lost_v | pass
aio_notify_gen | FAULT_NOTIFY_ORDER+WOPS=2 | safety | pass
aio_notify_gen | FAULT_NOTIFY_ORDER+WOPS=2 | lost_v | fail
aio_notify_gen | FAULT_WAIT_ORDER+WOPS=2 | safety | pass
aio_notify_gen | FAULT_WAIT_ORDER+WOPS=2 | lost_v | fail
aio_notify_gen | FAULT_CLEAR_AFTER+WOPS=2 | safety | pass
aio_notify_gen | FAULT_CLEAR_AFTER+WOPS=2 | lost_v | fail
aio_notify_gen | FAULT_SKIP_WRITE+WOPS=2 | safety | pass
aio_notify_gen | FAULT_SKIP_WRITE+WOPS=2 | lost_g | fail
aio_notify_gen | FAULT_STEAL+WOPS=2 | safety | pass
aio_notify_gen | FAULT_STEAL+WOPS=2 | lost_v | fail
aio_notify_gen | FAULT_BOOL_FLAG+WOPS=2 | safety | pass
aio_notify_gen | FAULT_BOOL_FLAG+WOPS=2 | lost_g | fail
aio_notify_gen | FAULT_SHARED_FD+WOPS=2 | safety | pass
aio_notify_gen | FAULT_SHARED_FD+WOPS=2 | lost_v | fail
aio_notify_gen | FAULT_NO_DRAIN+WOPS=2 | safety | pass
aio_notify_gen | FAULT_NO_DRAIN+WOPS=2 | no_busy_wait | fail
aio_notify_gen | FAULT_UNKNOWN_IS_SEEN+WOPS=2 | safety | pass
aio_notify_gen | FAULT_UNKNOWN_IS_SEEN+WOPS=2 | lost_v | fail
aio_notify_gen | FAULT_G_NO_MEMORY+WOPS=2 | safety | pass
aio_notify_gen | FAULT_G_NO_MEMORY+WOPS=2 | lost_g | fail
aio_notify_gen | FAULT_G_WAIT_ORDER+WOPS=2 | safety | pass
aio_notify_gen | FAULT_G_WAIT_ORDER+WOPS=2 | lost_g | fail
aio_notify_gen | FAULT_TOKEN_LATE+WOPS=2 | safety | pass
aio_notify_gen | FAULT_TOKEN_LATE+WOPS=2 | lost_v | fail
aio_notify_gen | FAULT_PENDING_EARLY_CLEAR+NPOLLS=0 | safety | pass
aio_notify_gen | FAULT_PENDING_EARLY_CLEAR+NPOLLS=0 | lost_g | fail
aio_notify_gen | FAULT_PENDING_EARLY_CLEAR+PENDING_ASSERT+NPOLLS=0 | safety | fail
aio_notify_gen | FAULT_PENDING_SHARED+WOPS=2 | safety | pass
aio_notify_gen | FAULT_PENDING_SHARED+WOPS=2 | lost_v | fail
aio_notify_gen | FAULT_PENDING_SHARED+WOPS=2 | no_busy_wait | fail
aio_notify_gen | FAULT_PENDING_SHARED+PENDING_ASSERT+WOPS=2 | safety | fail
aio_notify_gen | FAULT_PENDING_NO_RESET+WOPS=2 | safety | pass
aio_notify_gen | FAULT_PENDING_NO_RESET+WOPS=2 | lost_v | fail
aio_notify_gen | FAULT_PENDING_NO_RESET+PENDING_ASSERT+WOPS=2 | safety | fail
aio_notify_gen | WRITE_OUTSIDE_LOCK+WOPS=2 | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+WOPS=2 | lost_v | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+WOPS=2 | lost_g | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+WOPS=2 | lost_bh | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+WOPS=2 | no_busy_wait | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+FAULT_DRAIN_NO_WAIT+WOPS=2 | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+FAULT_DRAIN_NO_WAIT+WOPS=2 | no_busy_wait | fail
aio_notify_gen | WRITE_OUTSIDE_LOCK+FAULT_DRAIN_NO_WAIT+CLEAN_SLOT_ASSERT+WOPS=2 | safety | fail
aio_notify_gen | WRITE_OUTSIDE_LOCK+FAULT_INFLIGHT_AFTER_UNLOCK+WOPS=2 | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+FAULT_INFLIGHT_AFTER_UNLOCK+WOPS=2 | no_busy_wait | fail
aio_notify_gen | WRITE_OUTSIDE_LOCK+FAULT_INFLIGHT_AFTER_UNLOCK+CLEAN_SLOT_ASSERT+WOPS=2 | safety | fail
aio_notify_gen | WRITE_OUTSIDE_LOCK+FAULT_INFLIGHT_EARLY_DEC+WOPS=2 | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+FAULT_INFLIGHT_EARLY_DEC+WOPS=2 | no_busy_wait | fail
aio_notify_gen | WRITE_OUTSIDE_LOCK+FAULT_INFLIGHT_EARLY_DEC+CLEAN_SLOT_ASSERT+WOPS=2 | safety | fail
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_v | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_g | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_bh | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | no_busy_wait | pass
aio_notify_gen | CB_SCHEDULES+WOPS=2 | safety | pass
aio_notify_gen | CB_SCHEDULES+WOPS=2 | lost_bh | pass
aio_notify_gen | OWNER_LIST+WOPS=2 | safety | pass
aio_notify_gen | OWNER_LIST+WOPS=2 | lost_v | pass
aio_notify_gen | OWNER_LIST+WOPS=2 | lost_g | pass
aio_notify_gen | OWNER_LIST+WOPS=2 | lost_bh | pass
aio_notify_gen | OWNER_LIST+WOPS=2 | no_busy_wait | pass
aio_notify_gen | OWNER_LIST+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | safety | pass
aio_notify_gen | OWNER_LIST+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_bh | pass
aio_notify_gen | OWNER_LIST+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_v | pass
aio_notify_gen | OWNER_LIST+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_g | pass
aio_notify_gen | FAULT_OWNER_LIST_UNSEEN+WOPS=2 | safety | pass
aio_notify_gen | FAULT_OWNER_LIST_UNSEEN+WOPS=2 | lost_bh | fail
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+FAULT_OWE_FORGOTTEN+WOPS=2 | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+FAULT_OWE_FORGOTTEN+WOPS=2 | no_busy_wait | fail
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+FAULT_OWE_FORGOTTEN+CLEAN_SLOT_ASSERT+WOPS=2 | safety | fail
aio_notify_gen | GLIB_WAKEUP+WOPS=2 | safety | pass
aio_notify_gen | GLIB_WAKEUP+WOPS=2 | lost_g | pass
aio_notify_gen | GLIB_WAKEUP+WOPS=2 | lost_bh | pass
aio_notify_gen | GLIB_WAKEUP+WOPS=2 | no_busy_wait | pass
aio_notify_gen | GLIB_WAKEUP+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | safety | pass
aio_notify_gen | GLIB_WAKEUP+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_v | pass
aio_notify_gen | GLIB_WAKEUP+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_g | pass
aio_notify_gen | GLIB_WAKEUP+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_bh | pass
aio_notify_gen | GLIB_WAKEUP+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | no_busy_wait | pass
aio_notify_gen | GLIB_WAKEUP+CB_SCHEDULES+WOPS=2 | safety | pass
aio_notify_gen | GLIB_WAKEUP+CB_SCHEDULES+WOPS=2 | lost_g | pass
aio_notify_gen | GLIB_WAKEUP+CB_SCHEDULES+WOPS=2 | lost_bh | pass
aio_notify_gen | GLIB_WAKEUP+TIMEOUTS+WOPS=2 | lost_g | pass
aio_notify_gen | GLIB_WAKEUP+G_EARLY_READY+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | safety | pass
aio_notify_gen | GLIB_WAKEUP+G_EARLY_READY+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_v | pass
aio_notify_gen | GLIB_WAKEUP+G_EARLY_READY+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_g | pass
aio_notify_gen | GLIB_WAKEUP+G_EARLY_READY+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | lost_bh | pass
aio_notify_gen | GLIB_WAKEUP+G_EARLY_READY+WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+WOPS=2 | no_busy_wait | pass
aio_notify_gen | GLIB_WAKEUP+G_EARLY_READY+CB_SCHEDULES+WOPS=2 | lost_g | pass
aio_notify_gen | GLIB_WAKEUP+G_EARLY_READY+CB_SCHEDULES+WOPS=2 | lost_bh | pass
aio_notify_gen | GLIB_WAKEUP+FAULT_G_PEND_CHECK_ONLY+WOPS=2 | safety | pass
aio_notify_gen | GLIB_WAKEUP+FAULT_G_PEND_CHECK_ONLY+WOPS=2 | lost_g | fail
aio_notify_gen | GLIB_WAKEUP+FAULT_G_PEND_CHECK_ONLY+PENDING_ASSERT+WOPS=2 | safety | fail
aio_notify_gen | GLIB_WAKEUP+G_EARLY_READY+FAULT_G_PEND_CHECK_ONLY+WOPS=2 | lost_g | fail
aio_notify_gen | GLIB_WAKEUP+FAULT_G_NO_MEMORY+WOPS=2 | lost_g | fail
aio_notify_gen | GLIB_WAKEUP+FAULT_G_WAIT_ORDER+WOPS=2 | lost_g | fail
aio_poll | default | safety | pass
aio_poll | default | lost_v | pass
aio_poll | default | lost_bh | pass
aio_poll | default | lost_item | pass
aio_poll | default | no_busy_wait | pass
aio_poll | FAULT_POLL_NO_RAISE | safety | pass
aio_poll | FAULT_POLL_NO_RAISE | lost_v | fail
aio_poll | FAULT_POLL_RAISE_LATE | safety | pass
aio_poll | FAULT_POLL_RAISE_LATE | lost_v | fail
aio_poll | FAULT_POLL_SNAPSHOT_AFTER | safety | pass
aio_poll | FAULT_POLL_SNAPSHOT_AFTER | lost_v | fail
aio_poll | FAULT_POLL_NO_FINAL_CHECK | safety | pass
aio_poll | FAULT_POLL_NO_FINAL_CHECK | lost_item | fail
aio_poll | FAULT_POLL_END_ORDER | safety | pass
aio_poll | FAULT_POLL_END_ORDER | lost_item | fail
aio_poll | FAULT_POLL_DEV_ORDER | safety | pass
aio_poll | FAULT_POLL_DEV_ORDER | lost_item | fail
aio_poll | FAULT_POLL_STAYS_ON | safety | pass
aio_poll | FAULT_POLL_STAYS_ON | lost_item | fail
aio_poll | FINAL_CHECK_HOOKS_ONLY | lost_v | pass
aio_poll | FINAL_CHECK_HOOKS_ONLY | lost_item | pass
aio_poll | ALT_ONE_FENCE | lost_v | pass
aio_poll | ALT_ONE_FENCE | lost_item | pass
aio_poll | WITH_G+WOPS=1+DOPS=1 | safety | pass
aio_poll | WITH_G+WOPS=1+DOPS=1 | lost_g | pass
aio_poll | WITH_G+WOPS=1+DOPS=1 | lost_bh | pass
aio_poll | WITH_G+WOPS=1+DOPS=1 | lost_item | pass
aio_poll | WITH_G+WOPS=1+DOPS=1 | no_busy_wait | pass
aio_poll | FAULT_POLL_LEFT_ON+WOPS=1+DOPS=1 | safety | pass
aio_poll | FAULT_POLL_LEFT_ON+WOPS=1+DOPS=1 | lost_item | fail
aio_poll | FAULT_G_KEEPS_POLL_MODE+WOPS=1+DOPS=1 | safety | pass
aio_poll | FAULT_G_KEEPS_POLL_MODE+WOPS=1+DOPS=1 | lost_item | fail
aio_poll | ALT_BEGIN_IF_ALONE+WOPS=1+DOPS=1 | lost_item | pass
aio_gsource_own | default | safety | pass
aio_gsource_own | default | lost_work | pass
aio_gsource_own | RETRY_ANY_TIME | safety | pass
aio_gsource_own | ORUNS=3 | safety | pass
aio_gsource_own | SPEC_DEFER_SLEEPS | safety | fail
aio_gsource_own | SPEC_DEFER_SLEEPS | lost_work | fail
aio_gsource_own | SPEC_DEFER_SLEEPS+NO_O_ITERATES_M | safety | pass
aio_gsource_own | FAULT_GSOURCE_BLOCKING | safety | fail
aio_gsource_own | FAULT_GSOURCE_BLOCKING+NO_STRETCH | safety | fail
aio_gsource_own | FAULT_GSOURCE_BLOCKING+NO_O_ITERATES_M | safety | fail
aio_gsource_own | FAULT_NO_DEFER_WAKE | safety | fail
aio_gsource_own | FAULT_NO_DEFER_WAKE+SPEC_DEFER_SLEEPS+NO_O_ITERATES_M | safety | fail
aio_gsource_own | FAULT_NO_DEFER_WAKE+RETRY_ANY_TIME | safety | pass
aio_fd_dispatch | default | safety | pass
aio_fd_dispatch | NPASS=3+WBYTES=3 | safety | pass
aio_fd_dispatch | ALT_EPOCH_AT_END | safety | pass
aio_fd_dispatch | SPEC_EPOCH_UNOWNED | safety | fail
aio_fd_dispatch | SPEC_EPOCH_UNOWNED+ALT_EPOCH_AT_END | safety | pass
aio_fd_dispatch | FAULT_STALE_READINESS | safety | fail
aio_fd_dispatch | FAULT_CALLBACK_AFTER_REMOVE | safety | fail
aio_fd_dispatch | FAULT_WAITED_UNLOCKED | safety | fail
aio_thread_identity | default | safety | pass
aio_thread_identity | RECYCLED_KEYS | safety | pass
aio_thread_identity | CAP=2 | safety | pass
aio_thread_identity | CAP=2+RECYCLED_KEYS | safety | pass
aio_thread_identity | NN=2+T1POLLS=2+CAP=2+RECYCLED_KEYS | safety | pass
aio_thread_identity | FAULT_MEMORY_AT_ENTRY | safety | fail
aio_thread_identity | FAULT_MEMORY_AT_ENTRY+INV_ASSERT | safety | fail
aio_thread_identity | FAULT_UNKNOWN_SLEEPS | safety | fail
aio_thread_identity | FAULT_UNKNOWN_SLEEPS+RECYCLED_KEYS | safety | fail
aio_thread_identity | OWNER_CHECK | safety | pass
aio_thread_identity | OWNER_CHECK+RECYCLED_KEYS | safety | fail
aio_nested_glib | default | safety | pass
aio_nested_glib | default | o_owns | pass
aio_nested_glib | FAULT_NESTED_SLEEP | safety | fail
aio_nested_glib | FAULT_NESTED_SLEEP | o_owns | fail
aio_nested_glib | FAULT_NESTED_LEND | safety | fail
aio_nested_glib | FAULT_NESTED_LEND+NO_O_ITERATES_M | safety | pass
aio_nested_glib | BH_WAITS_FOR_EVENT | safety | pass
aio_nested_glib | BH_WAITS_FOR_EVENT | o_owns | fail
aio_uring_poll | default | safety | pass
aio_uring_poll | default | lost_byte | pass
aio_uring_poll | NN=2 | safety | pass
aio_uring_poll | NN=2 | lost_byte | pass
aio_uring_poll | NN=2+NO_GLIB | safety | pass
aio_uring_poll | NN=2+NO_GLIB | lost_byte | pass
aio_uring_poll | WBYTES=3 | safety | pass
aio_uring_poll | WBYTES=3 | lost_byte | pass
aio_uring_poll | TIMEOUTS | safety | pass
aio_uring_poll | TIMEOUTS | lost_byte | pass
aio_uring_poll | GLIB_ARMS_UNOWNED | safety | pass
aio_uring_poll | GLIB_ARMS_UNOWNED | lost_byte | pass
aio_uring_poll | ALT_ARMED_EPOCH_ONLY | safety | pass
aio_uring_poll | ALT_REARM_AT_REAP | safety | pass
aio_uring_poll | ALT_REARM_AT_REAP | lost_byte | pass
aio_uring_poll | SPEC_GLIB_ONLY_COLLECTS | safety | pass
aio_uring_poll | SPEC_GLIB_ONLY_COLLECTS | lost_byte | fail
aio_uring_poll | SPEC_GLIB_ONLY_COLLECTS+ALT_REARM_AT_REAP | lost_byte | pass
aio_uring_poll | GLIB_DROPS | safety | pass
aio_uring_poll | GLIB_DROPS | lost_byte | fail
aio_uring_poll | GLIB_DROPS+ALT_REARM_AT_REAP | lost_byte | pass
aio_uring_poll | FAULT_REAPER_EPOCH | safety | fail
aio_uring_poll | FAULT_REAPER_EPOCH+NN=2+NO_GLIB | safety | fail
aio_uring_poll | FAULT_NO_REARM_LIST | safety | fail
aio_uring_poll | FAULT_NO_REARM_LIST | lost_byte | fail
aio_uring_poll | FAULT_NO_REARM_LIST+NN=2+NO_GLIB | safety | pass
aio_uring_poll | FAULT_NO_REARM_LIST+NN=2+NO_GLIB | lost_byte | pass
aio_uring_poll | FAULT_DISPATCH_REMOVED | safety | fail
aio_uring_poll | FAULT_EPOCH_BEFORE_CALLBACK | safety | fail
aio_uring_poll | FAULT_ARM_EPOCH_LATE | safety | fail
aio_bh_pool | default | safety | pass
aio_bh_pool | CAP=1 | safety | pass
aio_bh_pool | BUG_POP_CAS | safety | fail
aio_bh_pool | BUG_MARK_FRESH | safety | fail
aio_bh_pool | BUG_NO_TRIM | safety | fail
aio_bh_pool | DF=4 | safety | pass
aio_bh_pool | NPROD=1+K=4 | safety | pass
'
# slow rows (--full): minutes, and up to ~2 GB of memory. Some WOPS=2 rows
# above at the default WOPS=3, and the bigger configurations.
rows_full='
aio_bh_pool | K=3 | safety | pass
aio_notify | SPEC_G_CHECK_BH_ONLY | lost_g | pass
aio_notify | MOVE_DRAIN_ONLY | lost_v | pass
aio_notify | MOVE_DRAIN_ONLY | no_busy_wait | pass
aio_notify | ALT_V_RECHECK+BUG_V_DROPS_OWNERSHIP+SPEC_V_ENTER_AT_ADVERTISE | safety | pass
aio_notify | ALT_V_RECHECK+BUG_V_DROPS_OWNERSHIP+SPEC_V_ENTER_AT_ADVERTISE | lost_v | pass
aio_notify | ALT_V_RECHECK+BUG_V_DROPS_OWNERSHIP+SPEC_V_ENTER_AT_ADVERTISE | lost_g | pass
aio_notify | ALT_V_RECHECK+BUG_V_DROPS_OWNERSHIP+SPEC_V_ENTER_AT_ADVERTISE | lost_bh | pass
aio_notify | ALT_V_RECHECK+BUG_V_DROPS_OWNERSHIP+SPEC_V_ENTER_AT_ADVERTISE | no_busy_wait | pass
aio_notify | PLAIN_RMW | lost_v | pass
aio_notify | PLAIN_RMW | lost_g | pass
aio_notify | PLAIN_RMW | no_busy_wait | pass
aio_notify | TIMEOUTS+WOPS=2 | lost_v | pass
aio_notify | TIMEOUTS+WOPS=2 | lost_g | pass
aio_notify | TIMEOUTS+WOPS=2 | no_busy_wait | pass
aio_notify | NV=2+WOPS=2 | safety | pass
aio_notify | NV=2+WOPS=2 | lost_v | pass
aio_notify | NV=2+WOPS=2 | no_busy_wait | pass
aio_notify | TIMEOUTS | safety | pass
aio_notify | TIMEOUTS | lost_v | pass
aio_notify | TIMEOUTS | lost_g | pass
aio_notify | TIMEOUTS | lost_bh | pass
aio_notify | TIMEOUTS | no_busy_wait | pass
aio_notify | NV=2 | safety | pass
aio_notify | NV=2 | lost_v | pass
aio_notify | NV=2 | lost_g | pass
aio_notify | NV=2 | lost_bh | pass
aio_notify | NV=2 | no_busy_wait | pass
aio_notify | NPOLLS=2 | lost_v | pass
aio_notify | NPOLLS=2 | lost_g | pass
aio_notify | NPOLLS=2 | lost_bh | pass
aio_notify | NPOLLS=2 | no_busy_wait | pass
aio_notify_gen | default | safety | pass
aio_notify_gen | default | lost_v | pass
aio_notify_gen | default | lost_g | pass
aio_notify_gen | default | lost_bh | pass
aio_notify_gen | default | no_busy_wait | pass
aio_notify_gen | V_HOLDS_OWNERSHIP | lost_v | pass
aio_notify_gen | V_HOLDS_OWNERSHIP | lost_g | pass
aio_notify_gen | V_HOLDS_OWNERSHIP | lost_bh | pass
aio_notify_gen | V_HOLDS_OWNERSHIP | no_busy_wait | pass
aio_notify_gen | V_TOKEN | safety | pass
aio_notify_gen | V_TOKEN | lost_v | pass
aio_notify_gen | V_TOKEN | lost_g | pass
aio_notify_gen | V_TOKEN | lost_bh | pass
aio_notify_gen | V_TOKEN | no_busy_wait | pass
aio_notify_gen | TIMEOUTS+WOPS=2 | lost_v | pass
aio_notify_gen | TIMEOUTS+WOPS=2 | lost_g | pass
aio_notify_gen | TIMEOUTS+WOPS=2 | no_busy_wait | pass
aio_notify_gen | NPOLLS=2+WOPS=2 | lost_v | pass
aio_notify_gen | NPOLLS=2+WOPS=2 | lost_g | pass
aio_notify_gen | NV=2+WOPS=2 | safety | pass
aio_notify_gen | NV=2+WOPS=2 | lost_v | pass
aio_notify_gen | NV=2+WOPS=2 | no_busy_wait | pass
aio_notify_gen | NO_WAKE_PENDING+WOPS=2 | safety | pass
aio_notify_gen | NO_WAKE_PENDING+WOPS=2 | lost_v | pass
aio_notify_gen | NO_WAKE_PENDING+WOPS=2 | lost_g | pass
aio_notify_gen | NO_WAKE_PENDING+WOPS=2 | no_busy_wait | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK | lost_v | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK | lost_g | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK | lost_bh | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK | no_busy_wait | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN | lost_v | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN | no_busy_wait | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+NV=2+WOPS=2 | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+ALT_OWE_DRAIN+NV=2+WOPS=2 | no_busy_wait | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+TIMEOUTS+WOPS=2 | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+TIMEOUTS+WOPS=2 | lost_v | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+TIMEOUTS+WOPS=2 | no_busy_wait | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+NV=2+WOPS=2 | safety | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+NV=2+WOPS=2 | lost_v | pass
aio_notify_gen | WRITE_OUTSIDE_LOCK+NV=2+WOPS=2 | no_busy_wait | pass
aio_poll | WOPS=3+DOPS=3 | safety | pass
aio_poll | WOPS=3+DOPS=3 | lost_v | pass
aio_poll | WOPS=3+DOPS=3 | lost_bh | pass
aio_poll | WOPS=3+DOPS=3 | lost_item | pass
aio_poll | WOPS=3+DOPS=3 | no_busy_wait | pass
aio_poll | WITH_G | safety | pass
aio_poll | WITH_G | lost_g | pass
aio_poll | WITH_G | lost_item | pass
aio_poll | ALT_BEGIN_IF_ALONE | lost_item | pass
aio_uring_poll | TIMEOUTS+WBYTES=3 | safety | pass
aio_uring_poll | TIMEOUTS+WBYTES=3 | lost_byte | pass
aio_uring_poll | NN=2+ALT_REARM_AT_REAP | safety | pass
aio_uring_poll | NN=2+ALT_REARM_AT_REAP | lost_byte | pass
aio_uring_poll | NN=2+WBYTES=3 | safety | pass
aio_uring_poll | NN=2+WBYTES=3 | lost_byte | pass
aio_uring_poll | NN=2+TIMEOUTS | safety | pass
aio_uring_poll | NN=2+TIMEOUTS | lost_byte | pass
'

rows="$rows_quick"
[ "$full" -eq 1 ] && rows="$rows$rows_full"

# normalise: strip blanks around fields, drop empty lines, apply --only
rows="$(printf '%s\n' "$rows" | sed -e 's/[[:space:]]*|[[:space:]]*/|/g' \
        -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' | grep -v '^$' || true)"
if [ -n "$only" ]; then
    rows="$(printf '%s\n' "$rows" | awk -F'|' -v s="$only" \
        'index($1" "$2" "$3, s) > 0' || true)"
fi
if [ -z "$rows" ]; then
    echo "run.sh: no rows selected" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/aio-models.XXXXXX")"
cleanup() {
    if [ "$keep" -eq 1 ]; then
        echo "build directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# One job = one (model, variant): build, then run each of its properties.
# Writes one result line per property to $work/<job>/results:
#   model|variant|property|expected|got|reason|states|seconds
# ---------------------------------------------------------------------------
run_job() {
    local model="$1" variant="$2" dir="$3"
    shift 3
    local -a flags=()
    if [ "$variant" != "default" ]; then
        local v
        IFS='+' read -r -a parts <<<"$variant"
        for v in "${parts[@]}"; do flags+=("-D$v"); done
    fi
    mkdir -p "$dir"
    cp "$here/$model.pml" "$dir/"
    cd "$dir"
    : >results

    # Compile time dominates the fast rows: -O0 compiles 3x faster and runs
    # 2x slower, so use -O1 only for liveness rows expected to pass (they
    # explore the whole state space) and -O0 everywhere else.
    local build_ok=1 need_safety=0 need_ltl=0 ltl_opt="-O0" spec
    for spec in "$@"; do
        case "${spec%%:*}" in
            safety) need_safety=1 ;;
            *) need_ltl=1; [ "${spec#*:}" = "pass" ] && ltl_opt="-O1" ;;
        esac
    done
    if ! spin -a "${flags[@]}" "$model.pml" >spin.log 2>&1; then
        build_ok=0
    fi
    if [ "$build_ok" -eq 1 ] && [ "$need_ltl" -eq 1 ]; then
        gcc -w "$ltl_opt" -DNFAIR=3 -o pan pan.c >gcc.log 2>&1 || build_ok=0
    fi
    if [ "$build_ok" -eq 1 ] && [ "$need_safety" -eq 1 ]; then
        gcc -w -O0 -DNOCLAIM -DSAFETY -o pan_safety pan.c >gcc_safety.log 2>&1 || build_ok=0
    fi

    local prop expected out got reason states depth t0 t1 secs
    for spec in "$@"; do
        prop="${spec%%:*}"
        expected="${spec#*:}"
        if [ "$build_ok" -ne 1 ]; then
            echo "$model|$variant|$prop|$expected|ERROR|build failed (see $dir)|-|-" >>results
            continue
        fi
        t0="$(date +%s.%N)"
        if [ "$prop" = "safety" ]; then
            out="$(./pan_safety -m"$DEPTH" -w20 2>&1 || true)"
        else
            out="$(./pan -a -f -m"$DEPTH" -w20 -N "$prop" 2>&1 || true)"
        fi
        t1="$(date +%s.%N)"
        secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
        printf '%s\n' "$out" >"$prop.out"
        [ -f "$model.pml.trail" ] && mv "$model.pml.trail" "$prop.trail"

        # Here-strings and pattern matches, not `printf | grep -q`: a reader
        # that exits at its first match can kill the writer with SIGPIPE,
        # which pipefail turns into a false verdict or an exit code of 141.
        states="$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p;T;q' <<<"$out")"
        [ -z "$states" ] && states="-"
        depth="$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p;T;q' <<<"$out")"
        if ! grep -q 'errors: [0-9]' <<<"$out"; then
            got="ERROR"; reason="pan did not finish: $(grep -m1 -i 'error' <<<"$out" || true)"
        elif [[ $out == *'max search depth too small'* ]] ||
             { [ -n "$depth" ] && [ "$depth" -ge $((DEPTH - 1)) ]; }; then
            got="INCONCLUSIVE"; reason="depth limit $DEPTH reached"
        elif [[ $out == *'errors: 0'* ]]; then
            got="pass"; reason=""
        else
            got="fail"
            if [[ $out == *'acceptance cycle'* ]]; then
                reason="acceptance cycle"
            elif [[ $out == *'assertion violated'* ]]; then
                reason="assertion: $(sed -n 's/.*assertion violated \(.*\) (at depth.*/\1/p;T;q' <<<"$out")"
            elif [[ $out == *'invalid end state'* ]]; then
                reason="invalid end state (deadlock)"
            else
                reason="other error"
            fi
            # a failure only counts if it is of the kind the property checks
            if [ "$prop" = "safety" ]; then
                case "$reason" in assertion*|invalid*) ;; *) got="fail?";; esac
            else
                case "$reason" in "acceptance cycle") ;; *) got="fail?";; esac
            fi
        fi
        echo "$model|$variant|$prop|$expected|$got|$reason|$states|$secs" >>results
    done
}
export -f run_job
export here DEPTH

# group rows by (model, variant), keeping first-appearance order
groups="$(printf '%s\n' "$rows" | awk -F'|' '!seen[$1"|"$2]++ { print $1"|"$2 }')"
n=0
joblist="$work/jobs"
: >"$joblist"
while IFS='|' read -r model variant; do
    n=$((n + 1))
    specs="$(printf '%s\n' "$rows" | awk -F'|' -v m="$model" -v v="$variant" \
        '$1 == m && $2 == v { printf "%s:%s ", $3, $4 }')"
    # rough cost, to start the long jobs first: passing liveness rows
    # explore everything; bigger configurations cost more
    cost="$(printf '%s\n' "$specs" | tr ' ' '\n' | grep -c -v -e '^safety:' -e ':fail$' -e '^$' || true)"
    case "$variant" in *WOPS=2*) ;; *) cost=$((cost * 3)) ;; esac
    case "$variant" in *NV=2*|*TIMEOUTS*) cost=$((cost * 4)) ;; esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$cost" "$model" "$variant" "$work/job$(printf '%03d' "$n")" "$specs" >>"$joblist"
done <<<"$groups"
sort -t "$(printf '\t')" -k1,1nr -s -o "$joblist" "$joblist"

start="$(date +%s)"
echo "run.sh: $(printf '%s\n' "$rows" | wc -l) rows in $n builds, $jobs parallel jobs, depth limit $DEPTH"
# shellcheck disable=SC2016
tr '\n' '\0' <"$joblist" | xargs -0 -P "$jobs" -n 1 bash -c '
    IFS=$'"'"'\t'"'"' read -r _ model variant dir specs <<<"$1"
    # shellcheck disable=SC2086
    run_job "$model" "$variant" "$dir" $specs
' _

# ---------------------------------------------------------------------------
# Table, in row order
# ---------------------------------------------------------------------------
all="$(cat "$work"/job*/results)"
mismatch=0
table="$work/table"
{
    echo "model|variant|property|expected|got|states|time(s)|note"
    echo "-----|-------|--------|--------|---|------|-------|----"
} >"$table"
while IFS='|' read -r model variant prop expected; do
    # a here-string: awk exits at its first match, and a writer still
    # piping into it would die of SIGPIPE (exit 141 under pipefail)
    line="$(awk -F'|' -v m="$model" -v v="$variant" -v p="$prop" \
        '$1 == m && $2 == v && $3 == p { print; exit }' <<<"$all")"
    if [ -z "$line" ]; then
        got="ERROR"; reason="no result"; states="-"; secs="-"
    else
        IFS='|' read -r _ _ _ _ got reason states secs <<<"$line"
    fi
    flag=""
    if [ "$got" != "$expected" ]; then
        flag="  <-- MISMATCH"
        mismatch=$((mismatch + 1))
    fi
    echo "$model|$variant|$prop|$expected|$got|$states|$secs|$reason$flag" >>"$table"
done <<<"$rows"
column -t -s '|' -o ' | ' "$table"

elapsed=$(( $(date +%s) - start ))
if [ "$mismatch" -ne 0 ]; then
    echo "run.sh: $mismatch verdict(s) differ from the expected ones (${elapsed}s)." >&2
    echo "  Re-run with --keep to inspect <build dir>/jobNNN/<property>.out and .trail;" >&2
    echo "  replay a trail with: spin -t -k <property>.trail -p -g <the same -D flags> <model>.pml" >&2
    exit 1
fi
echo "run.sh: all verdicts as expected (${elapsed}s)."
