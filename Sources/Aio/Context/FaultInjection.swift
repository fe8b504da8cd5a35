// Fault injection: each AIO_FAULT_<NAME> compile-time condition re-introduces
// one historical lost wake-up (or its translation to this design) so that
// scripts/fault-matrix.sh can show the stress harness catches it. None is
// ever set in a normal build; the names match the FAULT_* variants of
// Models/aio_notify_gen.pml (BH_EARLY_CLEAR: BUG_BH_EARLY_CLEAR of
// Models/aio_notify.pml, which models the BH list).
//
//   AIO_FAULT_CLEAR_AFTER       seed 000: the wake-up indication is taken after looking for work
//   AIO_FAULT_SKIP_WRITE        BUG2 of QEMU's aio_notify_accept.promela: no write while a notification is pending
//   AIO_FAULT_STEAL             seed 004: a poll that does not sleep drains the sleepers' wake-ups
//   AIO_FAULT_BOOL_FLAG         seed 003: one boolean instead of the notifyMe counter and bit
//   AIO_FAULT_NOTIFY_ORDER      notify reads notifyMe before publishing (the missing fence)
//   AIO_FAULT_WAIT_ORDER        a waiter reads the generation before advertising
//   AIO_FAULT_SHARED_FD         QEMU's single eventfd shared by every sleeper
//   AIO_FAULT_NO_DRAIN          nobody drains their wake-up fd: a busy loop
//   AIO_FAULT_BH_EARLY_CLEAR    PENDING cleared before the BH is unlinked
//   AIO_FAULT_POLL_NO_FINAL_CHECK  leaving poll mode without a last look at the poll hooks
//
// The coexistence faults (one context, a GLib thread and a native owner at
// once); each is caught by a test of CoexistenceTests and re-creates a defect
// of the code before the fix, with its race window widened where it has one:
//
//   AIO_FAULT_GSOURCE_BLOCKING         GLib's hooks wait for ownership while GLib holds its GMainContext
//   AIO_FAULT_STALE_READINESS          readiness seen by one poll is dispatched after another consumed it
//   AIO_FAULT_CALLBACK_AFTER_REMOVE    a handler or timer callback starts after removeHandler/cancel returned
//   AIO_FAULT_NOTIFY_AFTER_TEARDOWN    schedule() notifies through a context the owner already tore down
//   AIO_FAULT_NESTED_SLEEP             a GLib iteration nested in a dispatch sleeps holding ownership
//   AIO_FAULT_G_PEND_CHECK_ONLY        only the GSource's check clears the GLib wake-pending flag, although
//                                      GLib also drains its wake-up fd after a ready prepare (whose check
//                                      it skips): the flag stays claimed and the next sleep is deaf
//
// The io_uring monitor's fault (caught by MonitorTests/repeatedReadiness):
//
//   AIO_FAULT_URING_NO_REARM           a completed one-shot poll is never armed again
//
// Writes outside the registry lock (caught by aio-stress: a busy loop):
//
//   AIO_FAULT_OWE_FORGOTTEN            a drain that finds a notify's write still landing does not owe it
import Synchronization

#if AIO_FAULT_SKIP_WRITE
/// QEMU's pre-2020 shared `notified` flag, only for the SKIP_WRITE fault.
let faultNotified = Atomic<Bool>(false)
#endif

#if AIO_FAULT_CALLBACK_AFTER_REMOVE || AIO_FAULT_NOTIFY_ORDER || AIO_FAULT_WAIT_ORDER || AIO_FAULT_CLEAR_AFTER || AIO_FAULT_POLL_NO_FINAL_CHECK || AIO_FAULT_BH_EARLY_CLEAR
/// Widens the race window of a reordering fault so the fault matrix sees it
/// within a minute; in real code the same window is a few instructions wide.
private let faultSpin = Atomic<Int>(0)
@inline(never) func faultWindow() {
    for _ in 0..<2_000 { _ = faultSpin.load(ordering: .relaxed) }
}
#endif

#if AIO_FAULT_STEAL
extension AioContext {
    func faultStealWakeups() {
        // GLib's own wake-up fd is GLib's to drain: this steals only the
        // native sleepers' wake-ups.
        waiters.faultDrainAll()
    }
}
#endif
