/*
 * aio_notify.pml: SPIN model of the AioContext notify protocol as implemented
 * by the Swift library (not QEMU's; see README.md for the differences).
 *
 * Run it through ./run.sh, which knows the expected verdict of every variant.
 * By hand:
 *     spin -a [-DVARIANT ...] aio_notify.pml
 *     gcc -O2 -o pan pan.c
 *     ./pan -a -f -m200000 -w20 -N lost_v        (one ltl property at a time)
 *     gcc -O2 -DNOCLAIM -o pan pan.c && ./pan -m200000 -w20   (safety only)
 *     spin -t -p -g -l aio_notify.pml            (replay a trail; pass the same -D flags)
 *
 * The model assumes sequential consistency: every "full fence" below is a
 * no-op here, and the BUG_*_ORDER variants write the reordering a missing
 * fence would allow explicitly.
 *
 * ---------------------------------------------------------------------------
 * Map from model steps to the Swift code
 * ---------------------------------------------------------------------------
 * Sources/Aio/Context/AioContext+Notify.swift   -> inline notify(), W's part
 *   N1 notified = true
 *   N2 full fence
 *   N3 m = notifyMe; m == 0: return without a syscall
 *   N4 m & 1: write glibFd
 *   N5 m >= 2: lock registry; write the slot fd of every registered waiter;
 *      unlock (one atomic step here: the registry mutex serialises it with
 *      register/unregister, and nothing else touches the slot fds under it)
 *
 * Sources/Aio/Context/AioContext+Poll.swift     -> proctype V (native blocking
 *   poll; V holds the ownership lock except while it waits) and proctype N
 *   (non-blocking poll from a non-home thread)
 *   V1 register own wait slot in the registry
 *   V2 notifyMe += 2 (atomic RMW)
 *   V3 full fence
 *   V4 notified ? do not wait : release ownership, wait for own slot fd,
 *      take ownership back
 *   V5 unregister slot; notifyMe -= 2 (release)
 *   V6 own slot readable: drain it (not progress)
 *   V7 accept: notified = false; full fence
 *   V8 dispatch: run pending BHs (run_bhs), then the work only V can do
 *      (needV: "rebuild your private fd set")
 *   V0 (entry) after taking ownership V starts with V6-V8, not V1: see
 *      SPEC_V_ENTER_AT_ADVERTISE for why.
 *   N  take ownership; accept (notified = false; full fence); run pending
 *      BHs; release. Never advertises, never drains an fd.
 *
 * Sources/Aio/GLib/GSource.swift                -> proctype G (GLib thread)
 *   P1 prepare: notifyMe |= 1 (atomic RMW); full fence
 *   P2 prepare: ready = a BH on the pending stack is SCHEDULED, or needG
 *      (timeout 0 and TRUE when ready, infinite and FALSE otherwise)
 *   GP GLib's own poll, no ownership held: when prepare returned TRUE GLib
 *      polls with timeout 0 and does NOT call check (gmain.c skips check for
 *      a source already flagged G_SOURCE_READY); otherwise it blocks until
 *      glibFd is readable
 *   C1 check: notifyMe &= ~1 (release)
 *   C2 check: glibFd readable: drain it
 *   C3 check: accept (notified = false; full fence)
 *   C4 check: ready = a BH on the pending stack is SCHEDULED, or needG
 *   D  dispatch (only when prepare or check returned TRUE): run pending BHs,
 *      then the work only G can do (needG)
 *   The ownership lock is taken inside each callback, never across GP.
 *
 * Sources/Aio/BottomHalves/BHList.swift         -> inline schedule(), run_bhs()
 *   S1 old = fetch_or(flags, PENDING|SCHEDULED)
 *   S2 PENDING was clear: push on the lock-free stack (load head, link, CAS)
 *   S3 notify()
 *   R1 (dispatcher holds ownership) take the whole stack: exchange head, nil
 *   R2 per BH: unlink it (advance the local list), THEN
 *   R3 old = fetch_and(flags, ~(PENDING|SCHEDULED)); SCHEDULED in old: run it
 *      (running = SCHEDULED going false; the callback does nothing else)
 *   linked[] counts the lists a BH is on: pushing a BH that is still linked
 *   is an assertion failure ("a BH is never linked twice").
 *
 * Worker W: up to WOPS operations, each one of schedule(BH 1), schedule(BH 2),
 * needV = true + notify(), needG = true + notify(); then wDone = true.
 * ---------------------------------------------------------------------------
 *
 * Variants (each a -D switch; run.sh lists the expected verdicts):
 *   fixes that are ON in the default model, and switches that remove them
 *   (the protocol exactly as first specified):
 *     SPEC_G_PREPARE_BH_ONLY   prepare's readiness looks only at BHs, not needG
 *     SPEC_G_CHECK_BH_ONLY     check's readiness looks only at BHs, not needG
 *     SPEC_V_ENTER_AT_ADVERTISE V starts at V1 right after taking ownership
 *   historical bugs and other deliberate breakages: see the #ifdef blocks.
 *     BUG_CLEAR_AFTER, BUG_SKIP_WRITE, BUG_STEAL, BUG_BOOL_FLAG,
 *     BUG_NOTIFY_ORDER, BUG_WAIT_ORDER, BUG_SHARED_FD, BUG_NO_DRAIN,
 *     BUG_BH_EARLY_CLEAR (add NO_LINK_ASSERT to see the lost BH instead of
 *     the assertion), BUG_REGISTER_LATE, BUG_V_DROPS_OWNERSHIP
 *   harmless variations that must still pass:
 *     MOVE_DRAIN_ONLY   V drains its slot after dispatch (accept stays before)
 *     ALT_V_RECHECK     V4 also refuses to wait when needV is set
 *     TIMEOUTS          V's wait and GLib's poll may each return early once
 *     NV=2              two native waiters (V and the home thread H)
 *
 * This file is written for this project; it is not derived from QEMU's
 * docs/spin models (which describe QEMU's 2015 protocol).
 */

#ifndef NV
#define NV 1            /* native blocking pollers: V (and H when 2) */
#endif
#ifndef WOPS
#define WOPS 3          /* operations the worker performs at most */
#endif
#ifndef NPOLLS
#define NPOLLS 1        /* non-blocking polls by the non-home thread N */
#endif
#define NBH 2           /* bottom halves 1..NBH; 0 is nil */

#ifdef SPEC_AS_BRIEFED
#define SPEC_G_PREPARE_BH_ONLY
#define SPEC_G_CHECK_BH_ONLY
#define SPEC_V_ENTER_AT_ADVERTISE
#endif

/* owners of the context ownership lock */
#define FREE  0
#define OWN_G 1
#define OWN_N 2
#define OWN_V 3         /* native waiter i is OWN_V + i */

/* ---- shared state ---- */
byte owner = FREE;      /* context ownership lock */
byte notifyMe = 0;      /* bit 0: G between prepare and check; +2 per native waiter */
bool notified = false;
bool glibFd = false;    /* eventfd polled only by G (readable = true) */
bool slotFd[NV];        /* private eventfd of each native waiter's wait slot */
bool registered[NV];    /* registry: slot i is advertised */

/* work only one thread can do */
bool needV[NV];
bool needG = false;

/* bottom halves */
byte head = 0;          /* lock-free pending stack */
byte next[NBH + 1];
bool pending[NBH + 1];  /* flag PENDING (linked) */
bool sched[NBH + 1];    /* flag SCHEDULED (run it) */
byte linked[NBH + 1];   /* instrumentation: lists the BH is on */

/* instrumentation for the properties */
bool vWaiting[NV];      /* V released ownership to wait (V4) */
bool gWaiting = false;  /* G is in GLib's poll with an infinite timeout */
bool wDone = false;

#ifdef TIMEOUTS
byte vTimeouts = 1;     /* early returns V's wait may take (bounded: an */
byte gTimeouts = 1;     /* unbounded one could hide a lost wake-up)     */
#endif

#define ACQUIRE(me)     atomic { owner == FREE -> owner = me }
#define RELEASE(me)     atomic { assert(owner == me); owner = FREE }

/* "some BH on the pending stack is SCHEDULED" (a scan, taken atomically;
 * with NBH == 2 the stack holds at most two BHs) */
#define BH_SCHEDULED \
    ((head != 0 && sched[head]) || \
     (head != 0 && next[head] != 0 && sched[next[head]]))

#ifdef SPEC_G_PREPARE_BH_ONLY
#define PREPARE_READY   (BH_SCHEDULED)
#else
#define PREPARE_READY   (BH_SCHEDULED || needG)
#endif
#ifdef SPEC_G_CHECK_BH_ONLY
#define CHECK_READY     (BH_SCHEDULED)
#else
#define CHECK_READY     (BH_SCHEDULED || needG)
#endif

/* ---- advertising ---- */
#ifdef BUG_BOOL_FLAG
/* BUG_BOOL_FLAG re-creates QEMU 2014's single ctx->dispatching flag, fixed in
 * 2015 by "AioContext: fix broken ctx->dispatching optimization" (seed 003):
 * one boolean "a thread may sleep" that both G and V set and clear. V
 * clearing it after its wait also clears G's advertisement (and vice versa),
 * so notify() skips the write while the other thread sleeps. */
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

/* the fd native waiter `me` sleeps on */
#ifdef BUG_SHARED_FD
/* BUG_SHARED_FD re-creates QEMU's design since 2020 (section 2.5 of the
 * reference notes): ONE eventfd that both the GLib thread and a native
 * aio_poll thread poll, each draining it when it sees it readable. With work
 * that only one of them can do, one thread drains the write meant for the
 * other before that one has entered poll(), and the other sleeps forever. */
#define VFD(me)         glibFd
#else
#define VFD(me)         slotFd[me]
#endif

/* N5: under the registry lock, write every registered slot */
inline write_registered(i)
{
    d_step {
        i = 0;
        do
        :: i < NV ->
            if
            :: registered[i] -> slotFd[i] = true
            :: else -> skip
            fi;
            i++
        :: else -> break
        od;
        i = 0
    }
}

/* notify(): any thread (here only W) */
inline notify(m, i, was)
{
#if defined(BUG_NOTIFY_ORDER)
    /* BUG_NOTIFY_ORDER: the load of notifyMe is performed before the store to
     * notified, which is what a missing (or release-only) fence between N1
     * and N3 allows on real hardware: store->load is the one reordering
     * x86-TSO allows. The waiter advertises in between, checks notified
     * (still false) and sleeps; notify saw m == 0 and writes nothing. */
    m = notifyMe;
    notified = true;
#elif defined(BUG_SKIP_WRITE)
    /* BUG_SKIP_WRITE re-creates BUG2 of QEMU's aio_notify_accept.promela
     * ("AioContext: optimize clearing the EventNotifier", 2015): skip the fd
     * writes when notified was already set. notified can be a false positive
     * (set by a notify that saw nobody advertised), so a sleeper that does
     * not look at notified (G) misses the write. */
    atomic { was = notified; notified = true };
    if
    :: was -> m = 0           /* "already notified": return */
    :: else -> m = notifyMe
    fi;
    was = false;
#else
    notified = true;          /* N1 */
    /* N2: full fence */
    m = notifyMe;             /* N3 */
#endif
    if
    :: m == 0 -> skip         /* N3: nobody advertised, no syscall */
    :: else ->
#if defined(BUG_SHARED_FD)
        glibFd = true         /* the one shared eventfd */
#elif defined(BUG_BOOL_FLAG)
        /* a bool cannot say who advertised: write every fd */
        glibFd = true;
        write_registered(i)
#else
        if
        :: (m & 1) -> glibFd = true          /* N4 */
        :: else -> skip
        fi;
        if
        :: m >= 2 -> write_registered(i)     /* N5 */
        :: else -> skip
        fi
#endif
    fi;
    m = 0
}

/* schedule(): S1-S3 */
inline schedule(bh, m, i, was, h)
{
    atomic { was = pending[bh]; pending[bh] = true; sched[bh] = true };   /* S1 */
    if
    :: !was ->                                                           /* S2 */
        do
        :: h = head;
           next[bh] = h;
           if
           :: atomic { head == h ->
#ifndef NO_LINK_ASSERT
                  assert(linked[bh] == 0);    /* never linked twice */
#endif
                  head = bh; linked[bh]++ };
              break
           :: atomic { head != h -> skip }    /* CAS failed: retry */
           fi
        od
    :: else -> skip
    fi;
    was = false; h = 0;
    notify(m, i, was)                                                    /* S3 */
}

/* run_bhs(): R1-R3, by the thread that holds ownership */
inline run_bhs(who, list, bh, ran)
{
    assert(owner == who);
    atomic { list = head; head = 0 };                                    /* R1 */
    do
    :: list != 0 ->
        bh = list;
#ifdef BUG_BH_EARLY_CLEAR
        /* BUG_BH_EARLY_CLEAR: PENDING|SCHEDULED cleared BEFORE the BH is
         * unlinked. A concurrent schedule() then sees PENDING clear and pushes
         * the BH (overwriting its next pointer) while it is still on our local
         * list: the BH is linked twice and the rest of our list is lost. The
         * ordering QEMU documents since "util/async: make bh_aio_poll() O(1)"
         * (2020) and section 5 rule 8 of the reference notes. */
        atomic { ran = sched[bh]; pending[bh] = false; sched[bh] = false };  /* R3 */
        atomic { list = next[bh]; linked[bh]-- };                            /* R2 */
#else
        atomic { list = next[bh]; linked[bh]-- };                            /* R2 */
        atomic { ran = sched[bh]; pending[bh] = false; sched[bh] = false };  /* R3 */
#endif
        ran = false; bh = 0
    :: else -> break
    od
}

/* ---- native blocking poller: V (and H when NV == 2) ---- */
proctype V(byte me)
{
    bool ws;                  /* saw notified at V4 */
    byte list, bh;
    bool ran;

    ACQUIRE(OWN_V + me);
#ifndef SPEC_V_ENTER_AT_ADVERTISE
    /* V0: V's first pass runs V6-V8 before it advertises. V relies on
     * `notified` at V4, but notified is one flag that any accepting thread
     * (G's check, N) may clear; only a notify posted after V's own accept,
     * while V held ownership without a break, is guaranteed to still be in
     * `notified` at V4. Work posted before V took ownership must be picked up
     * by a dispatch pass (in the Swift code: by building the fd set / running
     * the needV work before the first advertisement). */
    goto dispatch;
#endif

advertise:
#ifdef BUG_V_DROPS_OWNERSHIP
    /* BUG_V_DROPS_OWNERSHIP: V releases ownership at the end of each pass
     * (e.g. a caller that takes the lock around every poll call) and takes it
     * again here. G's check or N can accept, i.e. clear notified, in the gap,
     * and V's V4 check then misses a notify that only V can serve. */
    ACQUIRE(OWN_V + me);
#endif
#ifndef BUG_REGISTER_LATE
    registered[me] = true;                                    /* V1 */
#endif
#ifdef BUG_WAIT_ORDER
    /* BUG_WAIT_ORDER: the waiter reads notified before advertising (the load
     * moved above the RMW, as a missing fence after V2 allows on ARM, 2023
     * "qatomic: add smp_mb__before/after_rmw()"; QEMU 2020 "async: use
     * explicit memory barriers"). notify() sees nobody advertised and the
     * waiter has already decided to sleep. */
    ws = notified;
    ADV_V_ADD;                                                /* V2 */
#else
    ADV_V_ADD;                                                /* V2 */
    /* V3: full fence */
    ws = notified;                                            /* V4 */
#endif
#ifdef ALT_V_RECHECK
    ws = ws || needV[me];     /* also look at V's own work after the fence */
#endif
#ifdef BUG_REGISTER_LATE
    /* BUG_REGISTER_LATE: the slot is registered after notifyMe += 2 and the
     * notified check. A notify that runs between them sees notifyMe >= 2,
     * takes the registry lock, finds no slot and writes nothing. */
    registered[me] = true;
#endif
    if
    :: ws -> skip                                             /* V4: do not wait */
    :: else ->
        atomic { vWaiting[me] = true; RELEASE(OWN_V + me) };
endwait:
        if
        :: VFD(me) -> skip                                    /* own fd readable */
#ifdef TIMEOUTS
        :: vTimeouts > 0 -> vTimeouts--                       /* timeout */
#endif
        fi;
        atomic { owner == FREE -> owner = OWN_V + me; vWaiting[me] = false }
    fi;
    ws = false;
    registered[me] = false;                                   /* V5 */
    ADV_V_SUB;                                                /* V5 (release) */

dispatch:
#if !defined(BUG_CLEAR_AFTER) && !defined(MOVE_DRAIN_ONLY) && !defined(BUG_NO_DRAIN)
    if                                                        /* V6 */
    :: VFD(me) -> VFD(me) = false
    :: else -> skip
    fi;
#endif
#ifndef BUG_CLEAR_AFTER
    notified = false;                                         /* V7 (+ fence) */
#endif
    run_bhs(OWN_V + me, list, bh, ran);                       /* V8 */
    needV[me] = false;                                        /* V8: V-only work */
#ifdef BUG_CLEAR_AFTER
    /* BUG_CLEAR_AFTER re-creates QEMU 2015 "AioContext: fix broken placement
     * of event_notifier_test_and_clear" (seed 000, aio_notify_bug.promela):
     * the wake-up indication is cleared after the events were processed. A
     * notify that lands between V8 and this point is thrown away: notified is
     * cleared and V4 then lets V sleep with needV set. (With per-waiter fds,
     * moving only the fd drain is harmless: see MOVE_DRAIN_ONLY.) */
    if
    :: VFD(me) -> VFD(me) = false
    :: else -> skip
    fi;
    notified = false;
#endif
#ifdef MOVE_DRAIN_ONLY
    if
    :: VFD(me) -> VFD(me) = false
    :: else -> skip
    fi;
#endif
    /* BUG_NO_DRAIN: V never drains its slot; once written it stays readable
     * and every later wait returns at once (busy loop). */
#ifdef BUG_V_DROPS_OWNERSHIP
    RELEASE(OWN_V + me);
#endif
    goto advertise
}

/* ---- GLib thread ---- */
active proctype G()
{
    bool ready;
    byte list, bh;
    bool ran;

    do
    ::
        /* prepare */
        ACQUIRE(OWN_G);
        ADV_G_SET;                                            /* P1 */
        /* P1: full fence */
        ready = PREPARE_READY;                                /* P2 */
        if
        :: ready -> RELEASE(OWN_G)
        :: else -> atomic { gWaiting = true; RELEASE(OWN_G) }
        fi;

        if
        :: ready -> skip      /* GP: poll(timeout 0); check not called */
        :: else ->
endpoll:
            if
            :: glibFd -> skip                                 /* GP */
#ifdef TIMEOUTS
            :: gTimeouts > 0 -> gTimeouts--    /* GLib's poll returns for another source */
#endif
            fi;
            /* check */
            atomic { owner == FREE -> owner = OWN_G; gWaiting = false };
            ADV_G_CLEAR;                                      /* C1 */
            if                                                /* C2 */
            :: glibFd -> glibFd = false
            :: else -> skip
            fi;
            notified = false;                                 /* C3 (+ fence) */
            ready = CHECK_READY;                              /* C4 */
            RELEASE(OWN_G)
        fi;

        /* dispatch */
        if
        :: ready ->
            ACQUIRE(OWN_G);
            run_bhs(OWN_G, list, bh, ran);                    /* D */
            needG = false;                                    /* D: G-only work */
            RELEASE(OWN_G);
            ready = false
        :: else -> skip
        fi
    od
}

/* ---- non-home thread doing non-blocking polls ---- */
active proctype N()
{
    byte k, j, list, bh;
    bool ran, was;

    do
    :: k < NPOLLS ->
        ACQUIRE(OWN_N);
#ifdef BUG_STEAL
        /* BUG_STEAL re-creates QEMU 2018 "aio: Do aio_notify_accept only
         * during blocking aio_poll" (seed 004): the non-home non-blocking
         * poller's accept also drains the wake-up fds
         * (if xchg(notified, false) then drain). It eats the write meant for
         * a waiter that released ownership but has not entered poll() yet. */
        atomic { was = notified; notified = false };
        if
        :: was ->
            d_step {
                glibFd = false;
                j = 0;
                do
                :: j < NV -> slotFd[j] = false; j++
                :: else -> break
                od;
                j = 0
            }
        :: else -> skip
        fi;
        was = false;
#else
        notified = false;     /* accept (+ fence); fds untouched */
#endif
        run_bhs(OWN_N, list, bh, ran);
        RELEASE(OWN_N);
        k++
    :: else -> break
    od
}

/* ---- worker ---- */
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
        run V(0);
#if NV > 1
        run V(1);
#endif
    }
}

/* ---- properties ---- */
#if NV > 1
#define V_LIVE   ((needV[0] -> <> !needV[0]) && (needV[1] -> <> !needV[1]))
#define V_QUIET  (!slotFd[0] && vWaiting[0] && !slotFd[1] && vWaiting[1])
#else
#define V_LIVE   (needV[0] -> <> !needV[0])
#define V_QUIET  (!slotFd[0] && vWaiting[0])
#endif
#define QUIET    (V_QUIET && !glibFd && gWaiting)

/* no lost wake-up: work only V can do is eventually done */
ltl lost_v { [] V_LIVE }
/* no lost wake-up: work only G can do is eventually done */
ltl lost_g { [] (needG -> <> !needG) }
/* no lost wake-up: every SCHEDULED BH eventually runs */
ltl lost_bh { [] ((sched[1] -> <> !sched[1]) && (sched[2] -> <> !sched[2])) }
/* no busy wait: once W is done, all fds end up drained and stay drained, and
 * every waiter ends up asleep in its wait for good */
ltl no_busy_wait { [] (wDone -> <> [] QUIET) }
