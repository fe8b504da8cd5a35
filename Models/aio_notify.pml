/*
 * aio_notify.pml: SPIN model of the AioContext notify protocol as first
 * specified for the Swift library: per-waiter wake-up fds (not QEMU's shared
 * eventfd) and one shared `notified` flag. The tree has since replaced that
 * flag with per-thread notify generations: see aio_notify_gen.pml.
 * README.md explains the results; run.sh knows the expected verdict of every
 * variant.
 *
 * By hand:
 *     spin -a [-DVARIANT ...] aio_notify.pml
 *     gcc -O1 -o pan pan.c
 *     ./pan -a -f -m200000 -w20 -N lost_v     (one ltl property per run)
 *     gcc -O1 -DNOCLAIM -o pan pan.c && ./pan -m200000 -w20   (safety only)
 *     spin -t -p -g aio_notify.pml            (replay; pass the same -D flags)
 *
 * The model assumes sequential consistency: each "full fence" below is a
 * comment, and the BUG_*_ORDER variants spell out the reordering that a
 * missing fence allows. It checks the algorithm, not the fence placement.
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code
 * ---------------------------------------------------------------------------
 * Sources/Aio/Context/AioContext+Notify.swift: inline notify() (called by W)
 *   N1  notified = true
 *   N2  full fence
 *   N3  m = notifyMe; m == 0: return, no syscall
 *   N4  m & 1: write glibFd
 *   N5  m >= 2: lock registry, write the slot fd of every registered
 *       waiter, unlock. One atomic step: the registry mutex serialises it
 *       with V1/V5, and nothing else touches the slot fds under it.
 *
 * Sources/Aio/Context/AioContext+Poll.swift: proctype V (native blocking
 * poll; V holds the ownership lock except while it waits) and proctype N
 * (non-blocking poll from a non-home thread)
 *   V0  entry, right after taking ownership: V starts at V6, not V1 (a
 *       dispatch pass before the first advertisement; see
 *       SPEC_V_ENTER_AT_ADVERTISE for why)
 *   V1  register own wait slot in the registry
 *   V2  notifyMe += 2 (atomic RMW)
 *   V3  full fence
 *   V4  notified: do not wait. Otherwise release ownership, wait until the
 *       own slot fd is readable, take ownership back
 *   V5  unregister the slot; notifyMe -= 2 (release)
 *   V6  drain the own slot fd (a read of a readable eventfd; an empty
 *       non-blocking read is the same as not reading). Not progress
 *   V7  accept: notified = false; full fence
 *   V8  dispatch: run pending BHs (run_bhs), then the work only V can do
 *       (needV, e.g. "rebuild your private fd set")
 *   N   take ownership; accept (notified = false; full fence); run pending
 *       BHs; release. N never advertises and never drains an fd.
 *
 * Sources/Aio/GLib/GSource.swift: proctype G (the GLib thread)
 *   P1  prepare: notifyMe |= 1 (atomic RMW); full fence
 *   P2  prepare: ready = a BH on the pending stack is SCHEDULED, or needG.
 *       ready: timeout 0, return TRUE. Else: timeout infinite, FALSE.
 *   GP  GLib's own poll, no ownership held. After prepare returned TRUE,
 *       GLib polls with timeout 0 and does NOT call check: gmain.c only
 *       calls check for sources not yet flagged G_SOURCE_READY. Otherwise
 *       GLib blocks until glibFd is readable.
 *   C1  check: notifyMe &= ~1 (release)
 *   C2  check: drain glibFd
 *   C3  check: accept (notified = false; full fence)
 *   C4  check: ready = a BH on the pending stack is SCHEDULED, or needG
 *   D   dispatch (GLib calls it only if prepare or check returned TRUE):
 *       run pending BHs, then the work only G can do (needG)
 *   G takes ownership inside each callback, never across GP.
 *
 * Sources/Aio/BottomHalves/BHList.swift: inline schedule(), run_bhs()
 *   S1  old = fetch_or(flags, PENDING|SCHEDULED)
 *   S2  PENDING was clear in old: push on the lock-free stack
 *       (load head, link next, CAS head; retry if the CAS fails)
 *   S3  notify()
 *   R1  the dispatcher (it holds ownership) takes the whole stack: exchange
 *       head with nil
 *   R2  per BH: unlink it (advance the local list), THEN
 *   R3  old = fetch_and(flags, ~(PENDING|SCHEDULED)); run the callback if
 *       SCHEDULED was in old. Here "run" is SCHEDULED going false.
 *   linked[] counts the lists a BH is on. Pushing a BH that is still linked
 *   fails an assertion ("a BH is never linked twice").
 *
 * Worker W: at most WOPS operations, each one of: schedule(BH 1),
 * schedule(BH 2), needV = true + notify(), needG = true + notify(). It may
 * stop early. Then wDone = true.
 * ---------------------------------------------------------------------------
 *
 * Switches (run.sh lists the expected verdicts; README.md explains them):
 *  Switches that remove a fix which the default model has and the first
 *  written protocol lacked:
 *   SPEC_G_PREPARE_BH_ONLY   prepare's readiness looks only at BHs (no needG)
 *   SPEC_G_CHECK_BH_ONLY     check's readiness looks only at BHs (no needG)
 *   SPEC_V_ENTER_AT_ADVERTISE V begins at V1 right after taking ownership
 *   SPEC_AS_BRIEFED          all three: the protocol exactly as specified
 *  Re-created historical bugs and other deliberate breakages (comments at
 *  each #ifdef): BUG_CLEAR_AFTER, BUG_SKIP_WRITE, BUG_STEAL, BUG_BOOL_FLAG,
 *   BUG_NOTIFY_ORDER, BUG_WAIT_ORDER, BUG_SHARED_FD, BUG_NO_DRAIN,
 *   BUG_BH_EARLY_CLEAR (with NO_LINK_ASSERT: shows the lost BH instead of
 *   the assertion), BUG_REGISTER_LATE, BUG_V_DROPS_OWNERSHIP
 *  Variations that must still pass:
 *   MOVE_DRAIN_ONLY   V drains its slot after dispatch (accept stays first)
 *   ALT_V_RECHECK     V4 also refuses to wait while needV is set
 *   PLAIN_RMW         notifyMe updated by plain load + store, not atomic RMW
 *   TIMEOUTS          V's wait and GLib's poll may each return early once
 *   NV=2              two native waiters (V and the home thread H)
 *   WOPS=n, NPOLLS=n  more worker operations / non-blocking polls
 *  Exploration only (not in run.sh; see README.md, finding 4):
 *   WFOREVER          the worker never stops
 *   FAIR_LOCK         the ownership lock is a FIFO ticket lock
 *
 * Written for this project. Not derived from QEMU's docs/spin models, which
 * describe QEMU's 2015 protocol.
 */

#ifndef NV
#define NV 1            /* native blocking pollers: V, and H when 2 */
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

/* holders of the context ownership lock */
#define FREE  0
#define OWN_G 1
#define OWN_N 2
#define OWN_V 3         /* native waiter i is OWN_V + i */

/* ---- shared state ---- */
byte owner = FREE;      /* the context's ownership lock */
byte notifyMe = 0;      /* bit 0: G is between prepare and check; +2 per native waiter */
bool notified = false;
bool glibFd = false;    /* eventfd polled only by G; true = readable */
bool slotFd[NV];        /* private eventfd of native waiter i's wait slot */
bool registered[NV];    /* the registry: slot i is advertised */

/* work that only one thread can do */
bool needV[NV];
bool needG = false;

/* bottom halves */
byte head = 0;          /* the lock-free pending stack */
byte next[NBH + 1];
bool pending[NBH + 1];  /* flag PENDING: linked */
bool sched[NBH + 1];    /* flag SCHEDULED: run it */
byte linked[NBH + 1];   /* instrumentation: how many lists hold the BH */

/* instrumentation for the properties */
bool vWaiting[NV];      /* V released ownership to wait (V4) */
bool gWaiting = false;  /* G is in GLib's poll with an infinite timeout */
bool wDone = false;

#ifdef TIMEOUTS
/* Early returns are bounded: an unbounded timeout would let a waiter with
 * lost work wake up forever and hide the lost wake-up. */
byte vTimeouts = 1;
byte gTimeouts = 1;
#endif

#ifdef FAIR_LOCK
/* FAIR_LOCK: the ownership lock is a ticket lock (FIFO). Needed only with
 * WFOREVER: with a never-ending worker, a plain lock under weak fairness lets
 * one thread re-take the lock forever while another, woken, waits for it. */
#define NT 8            /* tickets, modulo: more than the contenders */
byte ticket = 0;
byte serving = 0;
#define ACQUIRE_AND(me, extra) \
    atomic { tk = ticket; ticket = (ticket + 1) % NT }; \
    atomic { serving == tk -> owner = me; tk = 0; extra }
#define ACQUIRE_IF(cond, me) \
    atomic { cond -> tk = ticket; ticket = (ticket + 1) % NT }; \
    atomic { serving == tk -> owner = me; tk = 0 }
#define RELEASE(me) \
    atomic { assert(owner == me); owner = FREE; serving = (serving + 1) % NT }
#else
#define ACQUIRE_AND(me, extra)  atomic { owner == FREE -> owner = me; extra }
#define ACQUIRE_IF(cond, me)    atomic { (cond) && owner == FREE -> owner = me }
#define RELEASE(me)     atomic { assert(owner == me); owner = FREE }
#endif
#define ACQUIRE(me)     ACQUIRE_AND(me, skip)

/* "some BH on the pending stack is SCHEDULED": a scan, taken as one step.
 * With NBH == 2 the stack holds at most two BHs. */
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
/* BUG_BOOL_FLAG re-creates the single ctx->dispatching flag of QEMU 2014,
 * replaced in 2015 by "AioContext: fix broken ctx->dispatching optimization"
 * (seed 003): one boolean "a thread may sleep" that both G and V set and
 * clear. V clearing it after its wait also wipes G's advertisement (and the
 * other way round), so notify() skips the write while the other one sleeps. */
#define ADV_G_SET       notifyMe = 1
#define ADV_G_CLEAR     notifyMe = 0
#define ADV_V_ADD       notifyMe = 1
#define ADV_V_SUB       notifyMe = 0
#elif defined(PLAIN_RMW)
/* PLAIN_RMW: each update of notifyMe is a plain load and a separate store
 * instead of an atomic RMW. It must still pass, because every writer of
 * notifyMe (P1, C1, V2, V5) holds the ownership lock: the RMWs never race.
 * The atomic RMW matters only if some writer ever runs without ownership. */
#define ADV_G_SET       tmp = notifyMe; atomic { notifyMe = tmp | 1; tmp = 0 }
#define ADV_G_CLEAR     tmp = notifyMe; atomic { notifyMe = tmp & 254; tmp = 0 }
#define ADV_V_ADD       tmp = notifyMe; atomic { notifyMe = tmp + 2; tmp = 0 }
#define ADV_V_SUB       tmp = notifyMe; atomic { notifyMe = tmp - 2; tmp = 0 }
#else
#define ADV_G_SET       notifyMe = notifyMe | 1
#define ADV_G_CLEAR     notifyMe = notifyMe & 254
#define ADV_V_ADD       notifyMe = notifyMe + 2
#define ADV_V_SUB       notifyMe = notifyMe - 2
#endif

/* the fd native waiter `me` sleeps on and drains */
#ifdef BUG_SHARED_FD
/* BUG_SHARED_FD re-creates QEMU's design since 2020 (section 2.5 of the
 * reference notes): ONE eventfd, polled by the GLib thread and by a native
 * aio_poll thread, drained by whichever sees it readable. When a wake-up is
 * for work only one of them can do, the other can drain it before the first
 * has entered poll(); the first then sleeps forever. This is what the
 * per-waiter slot fds prevent. */
#define VFD(me)         glibFd
#else
#define VFD(me)         slotFd[me]
#endif

/* N5 body: write every registered slot (caller holds it atomic) */
inline write_registered(i)
{
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

/* notify(): any thread; here the worker W */
inline notify(m, i, was)
{
#if defined(BUG_NOTIFY_ORDER)
    /* BUG_NOTIFY_ORDER: the load of notifyMe happens before the store to
     * notified. This is what a missing full fence between N1 and N3 allows;
     * store->load is the reordering even x86 performs. The waiter advertises
     * in between, still reads notified == false and sleeps, while notify saw
     * m == 0 and writes nothing. */
    m = notifyMe;
    notified = true;
#elif defined(BUG_SKIP_WRITE)
    /* BUG_SKIP_WRITE re-creates BUG2 of QEMU's aio_notify_accept.promela
     * ("AioContext: optimize clearing the EventNotifier", 2015): skip the fd
     * writes when notified was already set. notified can be a false positive
     * (left by a notify that saw nobody advertised, not yet accepted), and a
     * sleeper that decided without looking at notified (G) is never woken. */
    atomic { was = notified; notified = true };
    atomic {
        if
        :: was -> m = 0       /* "already notified": return */
        :: else -> m = notifyMe
        fi;
        was = false
    };
#else
    notified = true;                                        /* N1 */
    /* N2: full fence */
    m = notifyMe;                                           /* N3 */
#endif
#if defined(BUG_SHARED_FD)
    atomic {
        if
        :: m != 0 -> glibFd = true    /* the one shared eventfd */
        :: else -> skip
        fi;
        m = 0
    }
#elif defined(BUG_BOOL_FLAG)
    atomic {
        if
        :: m != 0 ->                  /* a bool cannot say who: write all */
            glibFd = true;
            write_registered(i)
        :: else -> skip
        fi;
        m = 0
    }
#else
    atomic {                                                /* N4 */
        if
        :: (m & 1) -> glibFd = true
        :: else -> skip
        fi
    };
    atomic {                                                /* N5 */
        if
        :: m >= 2 -> write_registered(i)
        :: else -> skip
        fi;
        m = 0
    }
#endif
}

/* schedule(): S1-S3 */
inline schedule(bh, m, i, was, h)
{
    atomic { was = pending[bh]; pending[bh] = true; sched[bh] = true };  /* S1 */
    if
    :: atomic { was -> was = false }        /* already linked: no push */
    :: atomic { !was -> skip };                                         /* S2 */
        do
        :: h = head;
           next[bh] = h;
           if
           :: atomic { head == h ->
#ifndef NO_LINK_ASSERT
                  assert(linked[bh] == 0);  /* never linked twice */
#endif
                  head = bh; linked[bh]++; h = 0 };
              break
           :: atomic { head != h -> skip }  /* CAS failed: retry */
           fi
        od
    fi;
    notify(m, i, was)                                                   /* S3 */
}

/* run_bhs(): R1-R3, by the thread that holds ownership */
inline run_bhs(who, list, bh)
{
    assert(owner == who);
    atomic { list = head; head = 0 };                                   /* R1 */
    do
    :: list != 0 ->
        bh = list;
#ifdef BUG_BH_EARLY_CLEAR
        /* BUG_BH_EARLY_CLEAR: PENDING|SCHEDULED is cleared BEFORE the BH is
         * unlinked. A concurrent schedule() sees PENDING clear and pushes the
         * BH again, overwriting its next pointer, while it is still on our
         * local list: it is linked twice, and the BHs after it on our list
         * are dropped with PENDING set, so nobody ever pushes or runs them.
         * QEMU has cleared the flags after unlinking since "util/async: make
         * bh_aio_poll() O(1)" (2020); section 5 rule 8 of the notes. */
        atomic { pending[bh] = false; sched[bh] = false };              /* R3 */
        atomic { list = next[bh]; linked[bh]--; bh = 0 }                /* R2 */
#else
        atomic { list = next[bh]; linked[bh]-- };                       /* R2 */
        atomic { pending[bh] = false; sched[bh] = false; bh = 0 }       /* R3 */
#endif
    :: else -> break
    od
}

/* V6: drain own fd */
#define DRAIN_V(me)     VFD(me) = false

/* ---- native blocking poller: V (and H when NV == 2) ---- */
proctype V(byte me)
{
    bool ws;                  /* V4: do not wait */
    byte list, bh, tmp, tk;

#if !defined(BUG_V_DROPS_OWNERSHIP) || !defined(SPEC_V_ENTER_AT_ADVERTISE)
    ACQUIRE(OWN_V + me);
#endif
#ifndef SPEC_V_ENTER_AT_ADVERTISE
    /* V0: the first pass runs V6-V8 before advertising. V4 trusts
     * `notified`, but any accepting thread (G's check, N) may clear that one
     * flag. Only a notify that came after V's own accept, while V held
     * ownership without a break, is sure to be still in `notified` at V4.
     * Work posted before V took ownership needs a dispatch pass first. */
    goto dispatch;
#endif

advertise:
#ifdef BUG_V_DROPS_OWNERSHIP
    /* BUG_V_DROPS_OWNERSHIP: V releases ownership at the end of each pass
     * (e.g. a caller that takes the lock around every poll call) and takes
     * it again here. G's check or N can accept, i.e. clear notified, in the
     * gap, and V4 then misses a notify that only V can serve. */
    ACQUIRE(OWN_V + me);
#endif
#ifndef BUG_REGISTER_LATE
    registered[me] = true;                                  /* V1 */
#endif
#ifdef BUG_WAIT_ORDER
    /* BUG_WAIT_ORDER: the waiter reads notified before advertising: the
     * load moved above the RMW, as a missing fence after V2 allows (QEMU
     * 2020 "async: use explicit memory barriers"; 2023 "qatomic: add
     * smp_mb__before/after_rmw()"). notify() then sees nobody advertised
     * while the waiter has already decided to sleep. */
    ws = notified;
    ADV_V_ADD;                                              /* V2 */
#else
    ADV_V_ADD;                                              /* V2 */
    /* V3: full fence */
    ws = notified;                                          /* V4 */
#endif
#ifdef ALT_V_RECHECK
    ws = ws || needV[me];     /* also look at V's own work after the fence */
#endif
#ifdef BUG_REGISTER_LATE
    /* BUG_REGISTER_LATE: the slot is registered after notifyMe += 2 and
     * after the notified check. A notify in between sees notifyMe >= 2,
     * takes the registry lock, finds no slot and writes nothing. */
    registered[me] = true;
#endif
    if
    :: atomic { ws -> ws = false }                          /* V4: no wait */
    :: atomic { !ws -> vWaiting[me] = true; RELEASE(OWN_V + me) };
endwait:
        if
        :: VFD(me)                                          /* readable */
#ifdef TIMEOUTS
        :: atomic { vTimeouts > 0 -> vTimeouts-- }          /* timed out */
#endif
        fi;
        ACQUIRE_AND(OWN_V + me, vWaiting[me] = false)
    fi;
    registered[me] = false;                                 /* V5 */
    ADV_V_SUB;                                              /* V5 (release) */

dispatch:
#if !defined(BUG_CLEAR_AFTER) && !defined(MOVE_DRAIN_ONLY) && !defined(BUG_NO_DRAIN)
    DRAIN_V(me);                                            /* V6 */
#endif
    /* BUG_NO_DRAIN: V never drains its slot. Once written it stays readable,
     * and every later wait returns at once: a busy loop. */
#ifndef BUG_CLEAR_AFTER
    notified = false;                                       /* V7 (+ fence) */
#endif
    run_bhs(OWN_V + me, list, bh);                          /* V8 */
    needV[me] = false;                                      /* V8: V's own work */
#ifdef BUG_CLEAR_AFTER
    /* BUG_CLEAR_AFTER re-creates QEMU 2015 "AioContext: fix broken placement
     * of event_notifier_test_and_clear" (seed 000, aio_notify_bug.promela):
     * the wake-up indication is cleared after the events were processed. A
     * notify that lands between V8 and here is thrown away: notified is
     * cleared, and V4 then lets V sleep with needV set. With per-waiter fds,
     * moving only the fd drain is harmless; see MOVE_DRAIN_ONLY. */
    DRAIN_V(me);
    notified = false;
#endif
#ifdef MOVE_DRAIN_ONLY
    DRAIN_V(me);
#endif
#ifdef BUG_V_DROPS_OWNERSHIP
    RELEASE(OWN_V + me);
#endif
    goto advertise
}

/* ---- the GLib thread ---- */
active proctype G()
{
    bool ready;
    byte list, bh, tmp, tk;

    do
    ::
        /* prepare */
        ACQUIRE(OWN_G);
        ADV_G_SET;                                          /* P1 */
        /* P1: full fence */
        if
        :: atomic { PREPARE_READY -> ready = true; RELEASE(OWN_G) }    /* P2 */
           /* GP: poll with timeout 0; GLib skips check */
        :: atomic { !PREPARE_READY -> gWaiting = true; RELEASE(OWN_G) };
endpoll:
            if
            :: glibFd                                       /* GP */
#ifdef TIMEOUTS
            :: atomic { gTimeouts > 0 -> gTimeouts-- }      /* another source woke GLib */
#endif
            fi;
            /* check */
            ACQUIRE_AND(OWN_G, gWaiting = false);
            ADV_G_CLEAR;                                    /* C1 */
            glibFd = false;                                 /* C2 */
            notified = false;                               /* C3 (+ fence) */
            atomic { ready = CHECK_READY; RELEASE(OWN_G) }  /* C4 */
        fi;

        /* dispatch */
        if
        :: ACQUIRE_IF(ready, OWN_G);
            run_bhs(OWN_G, list, bh);                       /* D */
            atomic { needG = false; ready = false; RELEASE(OWN_G) }   /* D: G's own work */
        :: atomic { !ready -> skip }
        fi
    od
}

/* ---- a non-home thread doing non-blocking polls ---- */
active proctype N()
{
    byte k, j, list, bh, tk;
    bool was;

    do
    :: k < NPOLLS ->
        ACQUIRE(OWN_N);
#ifdef BUG_STEAL
        /* BUG_STEAL re-creates QEMU 2018 "aio: Do aio_notify_accept only
         * during blocking aio_poll" (seed 004): the non-home, non-blocking
         * poller's accept also drains the wake-up fds (if xchg(notified,
         * false) then drain). It eats the write meant for a waiter that has
         * released ownership but not yet entered poll(). */
        atomic { was = notified; notified = false };
        atomic {
            if
            :: was ->
                glibFd = false;
                j = 0;
                do
                :: j < NV -> slotFd[j] = false; j++
                :: else -> break
                od;
                j = 0
            :: else -> skip
            fi;
            was = false
        };
#else
        notified = false;     /* accept (+ fence); fds untouched */
#endif
        run_bhs(OWN_N, list, bh);
        atomic { RELEASE(OWN_N); k++ }
    :: else -> break
    od
}

/* ---- the worker ---- */
active proctype W()
{
    byte k, m, i, h;
    bool was;

    do
    :: k < WOPS ->
#ifndef WFOREVER
        k++;
#endif
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

/* no lost wake-up: work only V (or H) can do is eventually done */
ltl lost_v { [] V_LIVE }
/* no lost wake-up: work only G can do is eventually done */
ltl lost_g { [] (needG -> <> !needG) }
/* no lost wake-up: every SCHEDULED BH eventually runs */
ltl lost_bh { [] ((sched[1] -> <> !sched[1]) && (sched[2] -> <> !sched[2])) }
/* no busy wait: once W is done, every wake-up fd ends up drained for good
 * and every waiter ends up asleep in its wait for good */
ltl no_busy_wait { [] (wDone -> <> [] QUIET) }
