/*
 * aio_notify_gen.pml: the notify protocol as the tree implements it since
 * commit 9ee7679 ("Notify generation with per-thread memory instead of a
 * shared notified flag") and commit 7dc0979 ("GSource prepare honours the
 * GLib thread's notify memory"). aio_notify.pml models the earlier protocol
 * with one shared `notified` flag. This file replaces that flag with a
 * generation counter plus per-thread memory, and follows the current Swift
 * code. README.md explains the results; run.sh knows the expected verdicts.
 *
 * By hand (pass the same -D flags to every command):
 *     spin -a [-DVARIANT ...] aio_notify_gen.pml
 *     gcc -O1 -DNFAIR=3 -o pan pan.c && ./pan -a -f -m200000 -w20 -N lost_g
 *     gcc -O0 -DNOCLAIM -DSAFETY -o pan_safety pan.c && ./pan_safety -m200000 -w20
 *     spin -t -p -g [-DVARIANT ...] aio_notify_gen.pml      (replay a trail)
 *
 * The model is sequentially consistent: "full fence" is a comment, and the
 * FAULT_*_ORDER switches write out the reordering a missing fence allows.
 *
 * The generation: every reader only asks "has notifyGeneration moved since
 * my reference value?" (its ThreadNotifyMemory entry, or V's token). So
 * instead of a counter the model keeps that answer, one bit per reader:
 * vNew[i] for V, gNew for G. notify() sets them all in its generation bump
 * (N1); a thread clears its own when it remembers the generation (Q7, C3,
 * D) or takes a token (T1). An unknown memory (current - 1) starts as true.
 * Exact as long as the counter does not wrap; a counter mod 16 plus a copy
 * per thread made the state space three times bigger.
 * Atomicity: an ownership acquire is merged with the step after it (an
 * acquire commutes to the right), a release with the step before it (it
 * commutes to the left), and a branch on a local with its first step.
 * Everything else is one step per shared access, as in the code.
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code
 * ---------------------------------------------------------------------------
 * Sources/Aio/Context/AioContext+Notify.swift: notify(), inline notify()
 *   N1  notifyGeneration.wrappingAdd(1, releasing): every vNew[i], gNew = true
 *   N2  full fence [dekker-notify]
 *   N3  m = notifyMe; m == 0: return
 *   N4  m & 1: wake(): was = glibWakePending.exchange(true) (N4a); if it
 *       was false, write the GLib notifier (glibFd) (N4b). Two steps: the
 *       write is "in progress" between them
 *   N5  m >= 2: wake(): waiters.wakeAll(), under the registry lock, writes
 *       every advertised slot whose wakePending is false and sets it. One
 *       step: the registry lock orders it against takeSlot and withdraw
 *   WRITE_OUTSIDE_LOCK (a proposed change to wakeAll): N5 splits in three.
 *   N5a, under the registry lock: every advertised slot whose wakePending is
 *       false gets it set and its writesInFlight raised (inFlight[i]++); the
 *       slots to write are kept in a local set. Unlock.
 *   N5c the eventfd write of each slot in the set (slotFd[i] = true)
 *   N5d inFlight[i]-- (releasing), after that slot's write
 *   The waiter's drain (dispatchAll's testAndClear, Q9 below) first waits
 *   for inFlight[me] == 0 (acquiring; the code spins with sched_yield), so
 *   the drain consumes the write and no write lands after it.
 *   FAULT_DRAIN_NO_WAIT: the drain does not wait. FAULT_INFLIGHT_AFTER_UNLOCK:
 *   the raise is a step of its own after the unlock (N5b).
 *   FAULT_INFLIGHT_EARLY_DEC: the decrement comes before the write.
 *   Wake-pending flags (commit 5125d99; the Swift comments call this
 *   WAKE_PENDING, and it is the default here): glibPend is glibWakePending
 *   (AioContext.swift), slotPend[i] is WaitSlot.wakePending of V(i)'s slot.
 *   Each V has one slot: a slot that goes back to the pool and is taken again
 *   is the same slotFd[i]/slotPend[i] on the next poll. NO_WAKE_PENDING is
 *   the code before that commit: every notify writes every advertised fd,
 *   and V drains only if its wait saw the slot readable.
 *
 * Sources/Aio/Context/AioContext+Notify.swift: notifyToken (V_TOKEN only)
 *   T1  tok = notifyGeneration (acquiring): vNew[me] = false. Taken by
 *       V's caller BEFORE it checks its condition (T2), then passed to
 *       poll(blocking:unlessNotifiedSince:). FAULT_TOKEN_LATE swaps T1, T2.
 *
 * Sources/Aio/Context/AioContext+Poll.swift: pollOnce(), proctype V
 *   Q1  ownership.acquire()
 *   Q2  seen = the caller's token (V_TOKEN), else
 *       ThreadNotifyMemory.current.generation(for: serial), the generation
 *       this thread remembered when its last poll here returned; unknown
 *       context: current - 1, i.e. "notified", so that poll does not sleep
 *   Q3  timeout = computeTimeoutNs(): 0 if a BH is scheduled
 *   Q4  timeout != 0: waiters.takeSlot(advertise: true) (register),
 *       notifyMe += 2, full fence [dekker-wait], generationNow =
 *       notifyGeneration; generationNow != seen: do not sleep. Otherwise
 *       ownership.releaseAll(), handlers.wait on the slot fd,
 *       ownership.reacquire()
 *   Q5  written = waiters.withdraw(waiter): under the registry lock,
 *       unregister, return slotPend[me] and clear it; notifyMe -= 2
 *       (releasing); written: testAndClear (the slot goes back clean: no
 *       write can follow the withdraw). Also after an advertise that did not
 *       sleep. Merged with the ownership reacquire before it
 *   Q6  bhPoll() (run_bhs)
 *   Q9  WRITE_OUTSIDE_LOCK only: dispatchAll drains the slot where the code
 *       does, after the BHs: written: wait for inFlight[me] == 0, then
 *       testAndClear. Without the switch the drain stays in Q5 (its place
 *       does not matter when no write can follow the withdraw)
 *   Q7  (defer) memory.remember(notifyGeneration) for this thread. With
 *       V_TOKEN, V never reads its memory, so the store is left out.
 *   Q8  (defer) ownership.release()
 *   C   V's caller checks its own condition: needV, "work only V can do".
 *       After the poll returns (plain poll(blocking: true)), or at T2.
 *   By default V takes ownership per call (the home thread's pattern). With
 *   V_HOLDS_OWNERSHIP it holds ownership across calls, as a non-home owner
 *   that called acquire() does; the wait then releases all of it.
 *   proctype N: pollOnce(blocking: false): acquire, no advertising, bhPoll,
 *   release. Its memory is its own, so it is not modelled.
 *
 * Sources/Aio/GLib/GSource.swift: proctype G, the GLib thread, whose caller
 * runs `while true { check needG; g_main_context_iteration(ctx, TRUE) }`
 *   L   G's caller checks its own condition: needG, "work only G can do"
 *       (clearing it = doing that work), before every GLib iteration. In
 *       the model: once before the loop, then at the end of each iteration
 *   P1  gsourcePrepare: ownership.acquire(); current = notifyGeneration
 *       (acquiring); seen = ThreadNotifyMemory.current.generation(for:
 *       serial) ?? current - 1 (in the model: gNew)
 *   P2  notifyMe |= 1; full fence [dekker-wait]
 *   P3  ms = computeTimeoutNs(): 0 if a BH is scheduled. ms == 0:
 *       notifyMe &= ~1 (releasing), return (TRUE, 0)
 *   P4  notifyGeneration != seen: return (FALSE, 0): GLib must not sleep,
 *       but calls check. Otherwise return (FALSE, ms). Release (defer).
 *       FAULT_G_NO_MEMORY: P1's memory and P4's comparison are left out,
 *       as in QEMU's aio_ctx_prepare()
 *   GP  GLib's poll, no ownership held. After prepare returned TRUE: timeout
 *       0 and no check (gmain.c calls check only for sources not yet
 *       G_SOURCE_READY), so bit 0 was cleared in P3. Timeout 0: rev = glibFd
 *       readable now. Otherwise wait until glibFd is readable; rev = true
 *   C1  gsourceCheck: ownership.acquire(); notifyMe &= ~1 (releasing)
 *   C2  notifierReadable (rev): glibNotifier.testAndClear()
 *   C2b glibWakePending.store(false, releasing): after the drain, never
 *       before (FAULT_PENDING_EARLY_CLEAR)
 *   C3  rememberGeneration(): remember notifyGeneration for this thread
 *       (gNew = false)
 *   C4  ready = bhList.hasEntries (|| handlers || timerDue()); release.
 *       GLib dispatches when check returns TRUE, and also when it returns
 *       FALSE but the unix fd (g_source_add_unix_fd) had revents (rev).
 *   D   gsourceDispatch: ownership.acquire(); bhPoll(); runTimers();
 *       rememberGeneration() (gNew = false); release
 *   G holds ownership inside each callback, never across GP.
 *
 * Sources/Aio/BottomHalves/BHList.swift: schedule() and run_bhs(), the same
 * as in aio_notify.pml (S1-S3, R1-R3).
 *
 * Switches that mirror the tree's AIO_FAULT_* fault injections (and must
 * fail): FAULT_NOTIFY_ORDER, FAULT_WAIT_ORDER, FAULT_CLEAR_AFTER,
 * FAULT_SKIP_WRITE, FAULT_STEAL, FAULT_BOOL_FLAG, FAULT_SHARED_FD,
 * FAULT_NO_DRAIN. Model-only faults (must fail): FAULT_UNKNOWN_IS_SEEN (an
 * unknown context counts as "already seen"), FAULT_G_NO_MEMORY (prepare
 * ignores the generation), FAULT_G_WAIT_ORDER (prepare's look for work and
 * generation read before bit 0 is set: the GLib edge of [dekker-wait]),
 * FAULT_TOKEN_LATE (the token is taken after the condition check).
 * Wake-pending faults (must fail): FAULT_PENDING_EARLY_CLEAR (check clears
 * glibWakePending before it drains; needs WOPS=3), FAULT_PENDING_SHARED (one
 * flag for the GLib notifier and every slot), FAULT_PENDING_NO_RESET
 * (withdraw returns the slot's flag but does not clear it).
 * Variations that must pass: V_HOLDS_OWNERSHIP, V_TOKEN, TIMEOUTS, NV=2,
 * NPOLLS=n, WOPS=n, NO_WAKE_PENDING, WRITE_OUTSIDE_LOCK.
 * Write-outside-the-lock faults (with WRITE_OUTSIDE_LOCK; must fail):
 * FAULT_DRAIN_NO_WAIT, FAULT_INFLIGHT_AFTER_UNLOCK, FAULT_INFLIGHT_EARLY_DEC.
 * They turn the clean-slot assertion off; CLEAN_SLOT_ASSERT turns it on.
 * Schedules by the owner (README.md): CB_SCHEDULES (BH 2's callback
 * schedules BH 1 from the dispatching thread, through the shared push, as
 * the code does: must pass), OWNER_LIST (a design tried and not merged: that
 * schedule goes to an owner-only list that the dispatch takes and every look
 * for work reads: must pass), FAULT_OWNER_LIST_UNSEEN (the looks for work
 * miss the owner-only list: must fail lost_bh).
 *
 * GLib's own wake-up fd (README.md, "GLib's wake-up fd"): GLIB_WAKEUP. G
 * polls no fd of ours: a notify that sees bit 0 calls
 * g_main_context_wakeup(), whose fd (glibFd) GLib itself drains in its
 * check phase (GA, gmain.c's g_wakeup_acknowledge) whenever its poll saw it
 * readable: also after a ready prepare, whose check GLib skips, and when
 * GLib bails out of its check phase because the poll set changed (GB: no
 * check, no dispatch, bit 0 left set; at most gBails times). GLib drains
 * behind the wake-pending flag, so prepare clears the flag (P0) before it
 * sets bit 0: every drain of GLib's fd comes before the next prepare.
 * FAULT_G_PEND_CHECK_ONLY (AIO_FAULT_G_PEND_CHECK_ONLY): only the check
 * clears it, as with a fd of our own: must fail (lost_g). G_EARLY_READY: a
 * prepare that finds a BH scheduled before it sets bit 0 returns ready
 * without advertising at all (P1a; the code's fast path): must pass.
 *
 * Written for this project; not derived from QEMU's models.
 */

#ifndef NV
#define NV 1
#endif
#ifndef WOPS
#define WOPS 3
#endif
#ifndef NPOLLS
#define NPOLLS 1
#endif
#define NBH 2

/* An owner-only list for BHs scheduled by the thread that owns the context
 * (a design tried and not merged; README.md, "Schedules by the owner"). */
#ifdef FAULT_G_PEND_CHECK_ONLY
#ifndef GLIB_WAKEUP
#error "FAULT_G_PEND_CHECK_ONLY is a fault of GLIB_WAKEUP"
#endif
#endif
#ifndef GLIB_WAKEUP
#define G_ACK_FORGET    skip
#endif
#ifdef GLIB_WAKEUP
#if defined(FAULT_SHARED_FD) || defined(FAULT_NO_DRAIN) || defined(FAULT_PENDING_EARLY_CLEAR) || defined(NO_WAKE_PENDING)
#error "GLIB_WAKEUP: GLib drains its own fd; these switches are about a fd of ours"
#endif
/* ghost: GLib drained its fd since the flag's last clear (P0, C2b) or
 * since G last advertised (P2): from P2 on, a claimed flag must mean a
 * readable fd until GLib's next drain */
bool gAcked = false;
#define G_ACK_FORGET    gAcked = false
byte gBails = 1;        /* GB: GLib's check phase bails out (poll set changed) */
#endif
#ifdef FAULT_OWNER_LIST_UNSEEN
#ifndef OWNER_LIST
#define OWNER_LIST
#endif
#endif
#ifdef OWNER_LIST
#ifndef CB_SCHEDULES
#define CB_SCHEDULES
#endif
#endif

#ifdef FAULT_TOKEN_LATE
#ifndef V_TOKEN
#define V_TOKEN
#endif
#endif

#define FREE  0
#define OWN_G 1
#define OWN_N 2
#define OWN_V 3

byte owner = FREE;
byte notifyMe = 0;
/* notifyGeneration, kept relative to each reader: vNew[i] / gNew is
 * "notifyGeneration != the value this thread compares against" (its memory,
 * or V's token). notify() sets them all in its generation bump; the thread
 * clears its own when it remembers (or takes a token). No wrap-around. */
bool vNew[NV];
bool gNew = true;       /* G's memory starts unknown: current - 1 */
bool glibFd = false;
bool slotFd[NV];
bool registered[NV];
bool needV[NV];         /* V's caller condition */
bool needG = false;     /* G's caller condition */

byte head = 0;
#ifdef OWNER_LIST
byte ohead = 0;         /* the owner-only list: touched only under ownership */
#endif
#ifdef CB_SCHEDULES
byte cbOps = 1;         /* BH 2's callback schedules BH 1 this many times */
#endif
byte next[NBH + 1];
bool pending[NBH + 1];
bool sched[NBH + 1];
byte linked[NBH + 1];

bool vWaiting[NV];
bool gWaiting = false;
bool wDone = false;

#ifdef FAULT_SKIP_WRITE
bool faultNotified = false;
#endif

/* Wake-pending flags: "a notify wrote this fd (or is writing it) and its
 * sleeper has not drained it yet"; a notify skips the write while set. */
#ifndef NO_WAKE_PENDING
#ifdef FAULT_PENDING_SHARED
/* FAULT_PENDING_SHARED: one flag for every sleeper: a write to one fd
 * suppresses the writes to the others */
bool sharedPend = false;
#define GPEND           sharedPend
#define SPEND(i)        sharedPend
#else
bool glibPend = false;  /* AioContext.glibWakePending */
bool slotPend[NV];      /* WaitSlot.wakePending of V(i)'s slot */
#define GPEND           glibPend
#define SPEND(i)        slotPend[i]
#endif
#ifdef FAULT_PENDING_NO_RESET
/* FAULT_PENDING_NO_RESET: withdraw reports the flag but leaves it set; the
 * slot goes back to the pool with a stale "wake pending" */
#define WITHDRAW(w)     registered[me] = false; w = SPEND(me)
#else
#define WITHDRAW(w)     registered[me] = false; w = SPEND(me); SPEND(me) = false
#endif
#else
/* NO_WAKE_PENDING: withdraw returns nothing; w = "we waited" */
#define WITHDRAW(w)     registered[me] = false
#endif

/* The claimed invariant, asserted where a notify skips a write: a pending
 * wake means the fd is readable or its write is in progress (written
 * without '|', which would break run.sh's table). W is the only
 * notifier, so "in progress" is never another thread's write. One window is
 * allowed: G's check between its drain (C2) and its clear (C2b), label
 * `drained`; a notify skipped there bumped the generation before C3, so G's
 * memory covers it. The faults that break the invariant (the three
 * FAULT_PENDING_* and FAULT_STEAL, which drains fds behind the flags) turn
 * the assertions off, so that their rows show what the loss leads to;
 * PENDING_ASSERT turns them back on. With CB_SCHEDULES a dispatcher
 * notifies too, so another notifier's write may be in progress: the
 * assertions, which assume W alone, are off, and the liveness rows judge. */
#if (defined(FAULT_PENDING_EARLY_CLEAR) || defined(FAULT_PENDING_SHARED) || \
     defined(FAULT_PENDING_NO_RESET) || defined(FAULT_STEAL) || \
     defined(FAULT_G_PEND_CHECK_ONLY) || defined(CB_SCHEDULES)) && !defined(PENDING_ASSERT)
#define ASSERT_G_SKIP           skip
#define ASSERT_SLOT_SKIP(i)     skip
#else
#ifdef FAULT_PENDING_EARLY_CLEAR
#define ASSERT_G_SKIP           assert(glibFd)      /* no label `drained` */
#elif defined(GLIB_WAKEUP)
/* GLib drains its fd behind the flag; until the next clear (P0 or C2b) a
 * skipped notify is one that G's memory covers (the liveness rows judge) */
#define ASSERT_G_SKIP           assert(!(!glibFd && !gAcked))
#else
#define ASSERT_G_SKIP           assert(!(!glibFd && !(G[0]@drained)))
#endif
#define ASSERT_SLOT_SKIP(i)     assert(!(registered[i] && SPEND(i) && !slotFd[i]))
#endif
/* WRITE_OUTSIDE_LOCK: WaitSlot.writesInFlight of V(i)'s slot, and the
 * clean-slot assertion: a slot taken from the pool (Q4's takeSlot) has no
 * readable eventfd and no write in flight. Only meaningful when writes can
 * follow the withdraw, so only on with WRITE_OUTSIDE_LOCK; its faults turn
 * it off (so that no_busy_wait shows the busy loop) unless
 * CLEAN_SLOT_ASSERT, which asserts only the readable eventfd. */
#ifdef WRITE_OUTSIDE_LOCK
#if defined(NO_WAKE_PENDING) || defined(FAULT_SHARED_FD) || defined(FAULT_PENDING_SHARED)
#error "WRITE_OUTSIDE_LOCK needs the per-slot wake-pending flags"
#endif
byte inFlight[NV];
#if defined(FAULT_DRAIN_NO_WAIT) || defined(FAULT_INFLIGHT_AFTER_UNLOCK) || \
    defined(FAULT_INFLIGHT_EARLY_DEC) || defined(FAULT_OWE_FORGOTTEN)
#ifdef CLEAN_SLOT_ASSERT
/* only the harm itself: a readable eventfd in a slot taken from the pool
 * (a slot reused while a write that already landed and was drained is
 * still counted in flight is harmless) */
#define ASSERT_CLEAN_SLOT(i)    assert(!slotFd[i])
#else
#define ASSERT_CLEAN_SLOT(i)    skip
#endif
#elif defined(ALT_OWE_DRAIN)
/* a slot may come back with a write still landing, or landed and not yet
 * read, only while it owes a drain */
#define ASSERT_CLEAN_SLOT(i)    assert((!slotFd[i] && inFlight[i] == 0) || owed[i])
#else
#define ASSERT_CLEAN_SLOT(i)    assert(!slotFd[i] && inFlight[i] == 0)
#endif
#else
#define ASSERT_CLEAN_SLOT(i)    skip
#endif
#ifdef ALT_OWE_DRAIN
#ifndef WRITE_OUTSIDE_LOCK
#error "ALT_OWE_DRAIN refines WRITE_OUTSIDE_LOCK"
#endif
/* WaitSlot.owesDrain: a drain found a write to the slot still in flight */
bool owed[NV];
#endif
#ifdef TIMEOUTS
byte vTimeouts = 1;
byte gTimeouts = 1;
#endif

#define ACQUIRE_AND(me, extra)  atomic { owner == FREE -> owner = me; extra }
#define ACQUIRE(me)             ACQUIRE_AND(me, skip)
#ifdef V_HOLDS_OWNERSHIP
#define V_ACQUIRE_AND(extra)    atomic { extra }
#else
#define V_ACQUIRE_AND(extra)    ACQUIRE_AND(OWN_V + me, extra)
#endif
#define RELEASE(me)             atomic { assert(owner == me); owner = FREE }

#if defined(OWNER_LIST) && !defined(FAULT_OWNER_LIST_UNSEEN)
/* every look for work (V's Q3, G's P3 and C4) sees the owner-only list too */
#define BH_SCHEDULED \
    ((head != 0 && sched[head]) || \
     (head != 0 && next[head] != 0 && sched[next[head]]) || \
     (ohead != 0 && sched[ohead]))
#else
/* FAULT_OWNER_LIST_UNSEEN: the looks for work read only the shared stack */
#define BH_SCHEDULED \
    ((head != 0 && sched[head]) || \
     (head != 0 && next[head] != 0 && sched[next[head]]))
#endif

#ifdef FAULT_BOOL_FLAG
/* AIO_FAULT_BOOL_FLAG: one "a thread may sleep" flag (seed 003) */
#define ADV_G_SET       notifyMe = 1
#define ADV_G_CLEAR     notifyMe = 0
#define ADV_V_ADD       notifyMe = 1
#define ADV_V_SUB       notifyMe = 0
#else
#define ADV_G_SET       notifyMe = notifyMe | 1
#define ADV_G_CLEAR     notifyMe = notifyMe & 254
#define ADV_V_ADD       notifyMe = notifyMe + 2
#define ADV_V_SUB       notifyMe = notifyMe - 2
#endif

#ifdef FAULT_SHARED_FD
/* AIO_FAULT_SHARED_FD: every native waiter sleeps on the GLib notifier
 * (QEMU's one eventfd). Only G's check drains it: wake() writes it and no
 * slot, so a withdraw never reports a write (with NO_WAKE_PENDING, V drains
 * it when its wait saw it readable, as the code did before 5125d99) */
#define VFD(me)         glibFd
#else
#define VFD(me)         slotFd[me]
#endif

#if NV > 1
#define GEN_BUMP        vNew[0] = true; vNew[1] = true; gNew = true
#else
#define GEN_BUMP        vNew[0] = true; gNew = true
#endif

inline write_registered(m, i)
{
#ifdef WRITE_OUTSIDE_LOCK
    m = 0;
#endif
    i = 0;
    do
    :: i < NV ->
        if
#ifdef NO_WAKE_PENDING
        :: registered[i] -> slotFd[i] = true
        :: else -> skip
#elif defined(WRITE_OUTSIDE_LOCK)
        /* N5a: flag and raise under the lock; the write comes after the
         * unlock. m becomes the set of slots to write (bit i) */
        :: registered[i] && !SPEND(i) -> SPEND(i) = true;
#ifndef FAULT_INFLIGHT_AFTER_UNLOCK
            inFlight[i]++;
#endif
            m = m | (1 << i)
        :: else -> ASSERT_SLOT_SKIP(i)
#else
        :: registered[i] && !SPEND(i) -> SPEND(i) = true; slotFd[i] = true
        :: else -> ASSERT_SLOT_SKIP(i)
#endif
        fi;
        i++
    :: else -> break
    od;
    i = 0
}

/* N5: waiters.wakeAll() under the registry lock */
#ifdef WRITE_OUTSIDE_LOCK
/* N5a; m is left holding the slots to write after the unlock */
#define N5_WAKE_ALL(m, i) \
    if :: m >= 2 -> write_registered(m, i) :: else -> m = 0 fi
#else
#define N5_WAKE_ALL(m, i) \
    if :: m >= 2 -> write_registered(m, i) :: else -> skip fi; m = 0
#endif

#ifdef WRITE_OUTSIDE_LOCK
/* N5b-N5d for slot s, after the registry lock is released */
inline write_one(m, s)
{
    if
    :: atomic { (m & (1 << s)) ->
#if defined(FAULT_INFLIGHT_AFTER_UNLOCK)
           inFlight[s]++ };                     /* N5b: the raise, too late */
       slotFd[s] = true;                        /* N5c: the write */
       atomic { inFlight[s]--; m = m - (1 << s) }   /* N5d */
#elif defined(FAULT_INFLIGHT_EARLY_DEC)
           inFlight[s]--; m = m - (1 << s) };   /* N5d: the decrement, too early */
       slotFd[s] = true                         /* N5c: the write */
#else
           slotFd[s] = true };                  /* N5c: the write */
       atomic { inFlight[s]--; m = m - (1 << s) }   /* N5d: releasing */
#endif
    :: atomic { !(m & (1 << s)) -> skip }
    fi
}

inline write_flagged(m)
{
    write_one(m, 0);
#if NV > 1
    write_one(m, 1);
#endif
    skip
}
#endif

inline notify(m, i, was)
{
#ifdef FAULT_NOTIFY_ORDER
    /* AIO_FAULT_NOTIFY_ORDER: notifyMe is read before the new generation is
     * published */
    m = notifyMe;
    atomic { GEN_BUMP };
#else
    atomic { GEN_BUMP };                                    /* N1 */
    /* N2: full fence */
#ifdef FAULT_BOOL_FLAG
    /* the flag (0 or 1) says "somebody may sleep": wake every fd */
    atomic { m = notifyMe; if :: m != 0 -> m = 3 :: else -> skip fi }   /* N3 */
#else
    m = notifyMe;                                           /* N3 */
#endif
#endif
#ifdef FAULT_SKIP_WRITE
    /* AIO_FAULT_SKIP_WRITE: no write if a notification is already pending
     * (QEMU aio_notify_accept.promela BUG2); V clears the flag after a real
     * wait, like QEMU 2018's accept */
    atomic { was = faultNotified; faultNotified = true };
    atomic { if :: was -> m = 0 :: else -> skip fi; was = false };
#endif
#if defined(FAULT_SHARED_FD)
    /* wake() writes the shared notifier, with no wake-pending flag */
    atomic { if :: m != 0 -> glibFd = true :: else -> skip fi; m = 0 }
#elif defined(NO_WAKE_PENDING)
    atomic { if :: (m & 1) -> glibFd = true :: else -> skip fi };        /* N4 */
    atomic { N5_WAKE_ALL(m, i) }                                         /* N5 */
#else
    if
    :: atomic { (m & 1) -> was = GPEND; GPEND = true;       /* N4a: exchange */
                if :: was -> ASSERT_G_SKIP :: else -> skip fi };
        if
        :: atomic { !was -> glibFd = true };                /* N4b: write */
            atomic { N5_WAKE_ALL(m, i) }                    /* N5 */
        :: atomic { was -> was = false; N5_WAKE_ALL(m, i) } /* N4b skipped; N5 */
        fi
    :: atomic { !(m & 1) -> N5_WAKE_ALL(m, i) }             /* N5 */
    fi
#ifdef WRITE_OUTSIDE_LOCK
    ;
    write_flagged(m)                                        /* N5b-N5d */
#endif
#endif
}

inline schedule(bh, m, i, was, h)
{
    atomic { was = pending[bh]; pending[bh] = true; sched[bh] = true };
    if
    :: atomic { was -> was = false }
    :: atomic { !was -> skip };
        do
        :: h = head;
           next[bh] = h;
           if
           :: atomic { head == h ->
                  assert(linked[bh] == 0);
                  head = bh; linked[bh]++; h = 0 };
              break
           :: atomic { head != h -> skip }
           fi
        od
    fi;
    notify(m, i, was)
}

/* R1: the owner takes the whole stack. Callers merge it with a preceding
 * ownership acquire (an acquire commutes to the right). */
#ifdef OWNER_LIST
/* ... and the owner-only list with it, in front (it holds at most BH 1) */
#define TAKE_BHS(who, list)     assert(owner == who); \
    if :: ohead != 0 -> next[ohead] = head; list = ohead; ohead = 0 \
       :: else -> list = head fi; head = 0
#else
#define TAKE_BHS(who, list)     assert(owner == who); list = head; head = 0
#endif

/* A schedule by the thread that owns the context, from a BH callback.
 * OWNER_LIST: flag OR as in S1; if PENDING was clear, link on the owner-only
 * list with plain writes (no CAS: only the owner touches it, and ownership
 * orders it across threads); then notify() as every schedule does.
 * Otherwise the shared push of schedule(), what the code does today. */
inline owner_schedule(bh, m, i, was, h)
{
    assert(owner != FREE);
#ifdef OWNER_LIST
    atomic { was = pending[bh]; pending[bh] = true; sched[bh] = true };
    if
    :: atomic { was -> was = false }
    :: atomic { !was -> assert(linked[bh] == 0); next[bh] = ohead; ohead = bh; linked[bh]++ }
    fi;
    notify(m, i, was)
#else
    schedule(bh, m, i, was, h)
#endif
}

/* R2, R3. CB_SCHEDULES: BH 2's callback, the first time it runs,
 * schedules BH 1 from the dispatching thread, which owns the context. */
inline run_taken_bhs(list, bh)
{
    do
    :: list != 0 ->
        bh = list;
        atomic { list = next[bh]; linked[bh]-- };
#ifdef CB_SCHEDULES
        atomic { cbRan = sched[bh]; pending[bh] = false; sched[bh] = false };
        if
        :: atomic { cbRan && bh == 2 && cbOps > 0 -> cbOps--; cbRan = false; bh = 0 };
           owner_schedule(1, cbM, cbI, cbWas, cbH)
        :: else -> atomic { cbRan = false; bh = 0 }
        fi
#else
        atomic { pending[bh] = false; sched[bh] = false; bh = 0 }
#endif
    :: else -> break
    od
}

/* ---- GLib thread ---- */
active proctype G()
{
    byte list, bh;
#ifdef CB_SCHEDULES
    bool cbRan, cbWas; byte cbM, cbI, cbH;
#endif
    bool ready, zero, rev;

    needG = false;                                          /* L: caller's check */
    do
    ::
#if defined(GLIB_WAKEUP) && !defined(FAULT_G_PEND_CHECK_ONLY)
        /* P0: after every drain of GLib's fd (GLib's check phase of the
         * previous iteration), before bit 0; no ownership needed */
        atomic { GPEND = false; gAcked = false };
#endif
#ifdef FAULT_G_WAIT_ORDER
        /* FAULT_G_WAIT_ORDER: prepare looks for work and reads the
         * generation before bit 0 is visible (no [dekker-wait] fence) */
        ACQUIRE_AND(OWN_G, ready = BH_SCHEDULED);           /* P1 + P3 */
        zero = gNew;                                        /* P4's read */
        ADV_G_SET;                                          /* P2 */
#elif defined(G_EARLY_READY)
        /* P1a: a prepare that finds work before advertising returns (TRUE,
         * 0) without setting bit 0; otherwise P2 and P3 as below */
        ACQUIRE_AND(OWN_G, ready = BH_SCHEDULED);
        if
        :: ready -> skip
        :: else -> atomic { ADV_G_SET; G_ACK_FORGET };      /* P2 */
            /* full fence */
            ready = BH_SCHEDULED                            /* P3 */
        fi;
#else
        /* P1 (seen: gNew) + P2; the acquire commutes to the right */
        ACQUIRE_AND(OWN_G, ADV_G_SET; G_ACK_FORGET);
        /* full fence */
        ready = BH_SCHEDULED;                               /* P3 */
#endif
        if
        :: atomic { ready -> ADV_G_CLEAR; zero = false; RELEASE(OWN_G) };  /* P3: (TRUE, 0) */
#ifdef GLIB_WAKEUP
            /* GLib still polls (timeout 0) and acknowledges its own fd;
             * our check is skipped */
            rev = glibFd;                                   /* GP */
            atomic { if :: rev -> glibFd = false; gAcked = true :: else -> skip fi; rev = false }   /* GA */
#else
            skip
#endif
        :: atomic { !ready ->                               /* P4 */
#if !defined(FAULT_G_NO_MEMORY) && !defined(FAULT_G_WAIT_ORDER)
               zero = gNew;                                 /* generation != seen */
#endif
               if
               :: zero -> skip                              /* (FALSE, 0) */
               :: else -> gWaiting = true                   /* (FALSE, -1) */
               fi;
               RELEASE(OWN_G) };
endpoll:
            if
            :: atomic { zero -> rev = glibFd; zero = false }    /* GP: timeout 0 */
            :: atomic { !zero && glibFd -> rev = true }     /* GP: woken */
#ifdef TIMEOUTS
            :: atomic { !zero && gTimeouts > 0 -> gTimeouts--; rev = glibFd }
#endif
            fi;
#ifdef GLIB_WAKEUP
            /* GA: gmain.c's check phase acknowledges GLib's fd first */
            /* not our source's fd: its revents earn us no dispatch (rev = false) */
            atomic { gWaiting = false; if :: rev -> glibFd = false; gAcked = true :: else -> skip fi; rev = false };
            if
            :: atomic { gBails > 0 -> gBails--; rev = false; ready = false }   /* GB */
                goto endcheck
            :: skip
            fi;
#endif
            ACQUIRE_AND(OWN_G, gWaiting = false; ADV_G_CLEAR);  /* C1 */
#ifdef FAULT_PENDING_EARLY_CLEAR
            /* FAULT_PENDING_EARLY_CLEAR: the flag is cleared before the
             * drain: a notify that read bit 0 before C1 writes in between,
             * the drain swallows its write, and the flag stays set */
            GPEND = false;                                  /* C2b, too early */
#endif
#if !defined(FAULT_NO_DRAIN) && !defined(GLIB_WAKEUP)
            atomic { if :: rev -> glibFd = false :: else -> skip fi };    /* C2 */
#endif
#if !defined(NO_WAKE_PENDING) && !defined(FAULT_PENDING_EARLY_CLEAR)
drained:
#ifdef GLIB_WAKEUP
            atomic { GPEND = false; gAcked = false };       /* C2b */
#else
            GPEND = false;                                  /* C2b */
#endif
#endif
#ifndef FAULT_G_NO_MEMORY
            gNew = false;                                   /* C3: remember */
#endif
            atomic { ready = (BH_SCHEDULED || rev); rev = false; RELEASE(OWN_G) } /* C4 */
        fi;
#ifdef GLIB_WAKEUP
endcheck:
#endif
        if
        :: atomic { ready && owner == FREE -> owner = OWN_G; TAKE_BHS(OWN_G, list) };  /* D */
            run_taken_bhs(list, bh);
            atomic {                                        /* D: remember, release */
#ifndef FAULT_G_NO_MEMORY
                gNew = false;
#endif
                ready = false; RELEASE(OWN_G) };
            needG = false                                   /* L: caller's check */
        :: atomic { !ready -> needG = false }               /* L: caller's check */
        fi
    od
}

/* ---- native blocking poller (V; H too when NV == 2) ----
 * (declared after G: a BH callback's schedule reaches G[0]@drained) */
proctype V(byte me)
{
    byte list, bh;
#ifdef CB_SCHEDULES
    bool cbRan, cbWas; byte cbM, cbI, cbH;
#endif
#ifdef FAULT_UNKNOWN_IS_SEEN
    bool known;
#endif
    bool ready, ws;

#ifdef V_HOLDS_OWNERSHIP
    ACQUIRE(OWN_V + me);      /* acquire() before polling; pollOnce nests */
#endif
poll:
#ifdef V_TOKEN
#ifdef FAULT_TOKEN_LATE
    /* FAULT_TOKEN_LATE: the caller checks its condition, then takes the
     * token: a change plus notify in between is slept through */
    needV[me] = false;                                      /* T2 */
    vNew[me] = false;                                       /* T1 */
#else
    vNew[me] = false;                                       /* T1: notifyToken */
    needV[me] = false;                                      /* T2: C */
#endif
#endif
    /* Q1 (merged with the next step); Q2: seen = token, or memory, or
     * current - 1 if unknown, all kept in vNew[me] */
#ifdef FAULT_UNKNOWN_IS_SEEN
    /* FAULT_UNKNOWN_IS_SEEN: an unknown context counts as "nothing new"
     * (seen = current): a notify before this thread's first poll is slept
     * through */
    V_ACQUIRE_AND(if :: !known -> vNew[me] = false; known = true :: else -> skip fi);
    ready = BH_SCHEDULED;                                   /* Q3 */
#else
    V_ACQUIRE_AND(ready = BH_SCHEDULED);                    /* Q1 + Q3 */
#endif
#ifdef FAULT_CLEAR_AFTER
    /* AIO_FAULT_CLEAR_AFTER: seen = current, taken after looking for work
     * (seed 000): a notify between the look and the snapshot is swallowed */
    vNew[me] = false;
#endif
    if
    :: atomic { ready -> ready = false }                    /* timeout 0 */
    :: atomic { !ready -> registered[me] = true; ASSERT_CLEAN_SLOT(me) };  /* Q4: takeSlot */
#ifdef FAULT_WAIT_ORDER
        /* AIO_FAULT_WAIT_ORDER: the generation is read before advertising */
        ws = vNew[me];
        ADV_V_ADD;
#else
        ADV_V_ADD;
        /* full fence */
        ws = vNew[me];                                      /* generationNow != seen */
#endif
        if
        :: atomic { ws -> ws = false; WITHDRAW(ws) }        /* no sleep; Q5: withdraw */
        :: atomic { !ws -> vWaiting[me] = true; RELEASE(OWN_V + me) };
endwait:
            if
            :: VFD(me)
#ifdef TIMEOUTS
            :: atomic { vTimeouts > 0 -> vTimeouts-- }
#endif
            fi;
#ifdef FAULT_SKIP_WRITE
            ACQUIRE_AND(OWN_V + me, vWaiting[me] = false; ws = true; faultNotified = false);
            atomic { WITHDRAW(ws) }                         /* Q5: withdraw */
#else
            ACQUIRE_AND(OWN_V + me, vWaiting[me] = false; ws = true; WITHDRAW(ws))  /* Q5 */
#endif
        fi;
        ADV_V_SUB;                                          /* Q5 */
#if defined(FAULT_NO_DRAIN)
        ws = false
#elif defined(WRITE_OUTSIDE_LOCK)
        skip            /* written (ws): drained in Q9, after the BHs */
#elif defined(NO_WAKE_PENDING)
        /* woken (we waited and our fd was readable): drain it */
        atomic { if :: ws && VFD(me) -> VFD(me) = false :: else -> skip fi; ws = false }
#else
        /* written (withdraw returned the slot's wake pending): drain it.
         * FAULT_SHARED_FD: no slot is ever written, so V never drains the
         * shared notifier, as in the code since commit 5125d99 */
        atomic { if :: ws -> VFD(me) = false :: else -> skip fi; ws = false }
#endif
    fi;
    atomic { TAKE_BHS(OWN_V + me, list) };                  /* Q6: bhPoll() */
    run_taken_bhs(list, bh);
#if defined(WRITE_OUTSIDE_LOCK) && !defined(FAULT_NO_DRAIN)
    /* Q9: dispatchAll: written: wait until no write to the slot is in
     * flight (blocks here), then testAndClear; then the slot goes back */
#ifdef ALT_OWE_DRAIN
    /* Q9 (ALT_OWE_DRAIN, what the code ships): written or owed: load
     * inFlight (acquiring), then read the fd whatever it was; a write still
     * in flight leaves the debt for the slot's next drain instead of a wait.
     * FAULT_OWE_FORGOTTEN: the debt is not recorded. */
    if
    :: atomic { (ws || owed[me]) -> ws = (inFlight[me] != 0) };
       atomic {
           VFD(me) = false;
#ifdef FAULT_OWE_FORGOTTEN
           owed[me] = false;
#else
           owed[me] = ws;
#endif
           ws = false
       }
    :: atomic { !(ws || owed[me]) -> skip }
    fi;
#else
    atomic {
        if
#ifdef FAULT_DRAIN_NO_WAIT
        :: ws -> VFD(me) = false
#else
        :: ws && inFlight[me] == 0 -> VFD(me) = false
#endif
        :: !ws -> skip
        fi;
        ws = false
    };
#endif
#endif
    atomic {
#ifndef V_TOKEN
        vNew[me] = false;                                   /* Q7: remember */
#endif
#ifndef V_HOLDS_OWNERSHIP
        RELEASE(OWN_V + me);                                /* Q8 */
#endif
        skip
    };
#ifndef V_TOKEN
    needV[me] = false;                                      /* C: caller's check */
#endif
    goto poll
}

/* ---- non-home thread: poll(blocking: false) ---- */
active proctype N()
{
    byte k, j, list, bh;
#ifdef CB_SCHEDULES
    bool cbRan, cbWas; byte cbM, cbI, cbH;
#endif

    do
    :: k < NPOLLS ->
#ifdef FAULT_STEAL
        /* AIO_FAULT_STEAL: a poll that did not sleep drains the wake-ups of
         * the threads that do (seed 004) */
        atomic {
            owner == FREE -> owner = OWN_N;
            glibFd = false;
            j = 0;
            do
            :: j < NV -> slotFd[j] = false; j++
            :: else -> break
            od;
            j = 0
        };
        atomic { TAKE_BHS(OWN_N, list) };
#else
        ACQUIRE_AND(OWN_N, TAKE_BHS(OWN_N, list));
#endif
        run_taken_bhs(list, bh);
        atomic { RELEASE(OWN_N); k++ }
    :: else -> break
    od
}

active proctype W()
{
    byte k, m, i, h;
    bool was;

    do
    :: k < WOPS ->
        k++;
        if
        :: schedule(1, m, i, was, h)
        :: schedule(2, m, i, was, h)
        :: needV[0] = true; notify(m, i, was)
#if NV > 1
        :: needV[1] = true; notify(m, i, was)
#endif
        :: needG = true; notify(m, i, was)
        fi
    :: break
    od;
    wDone = true
}

init
{
    atomic {
        vNew[0] = true;         /* V's memory starts unknown: current - 1 */
        run V(0);
#if NV > 1
        vNew[1] = true;
        run V(1);
#endif
    }
}

#if NV > 1
#define V_LIVE   ((needV[0] -> <> !needV[0]) && (needV[1] -> <> !needV[1]))
#define V_QUIET  (!slotFd[0] && vWaiting[0] && !slotFd[1] && vWaiting[1])
#else
#define V_LIVE   (needV[0] -> <> !needV[0])
#define V_QUIET  (!slotFd[0] && vWaiting[0])
#endif
#define QUIET    (V_QUIET && !glibFd && gWaiting)

ltl lost_v { [] V_LIVE }
ltl lost_g { [] (needG -> <> !needG) }
ltl lost_bh { [] ((sched[1] -> <> !sched[1]) && (sched[2] -> <> !sched[2])) }
ltl no_busy_wait { [] (wDone -> <> [] QUIET) }
