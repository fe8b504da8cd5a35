/*
 * aio_poll.pml: adaptive busy polling in the native poll, on top of the
 * notify generation of aio_notify_gen.pml. Before a native blocking poll
 * sleeps it may spin for a while. While it spins it does NOT advertise in
 * notifyMe, so a notify() costs no eventfd write, and a device's pollBegin
 * hook turns the device's "kicks" (its fd notifications) off, so that the
 * device only queues items. Before the loop may sleep it must leave poll
 * mode: pollEnd (kicks back on), a final look at the poll hooks, then the
 * usual advertise + full fence + generation check. README.md explains the
 * results; run.sh knows the expected verdicts.
 *
 * By hand (pass the same -D flags to every command):
 *     spin -a [-DVARIANT ...] aio_poll.pml
 *     gcc -O1 -DNFAIR=3 -o pan pan.c && ./pan -a -f -m200000 -w20 -N lost_item
 *     gcc -O0 -DNOCLAIM -DSAFETY -o pan_safety pan.c && ./pan_safety -m200000 -w20
 *     spin -t -p -g [-DVARIANT ...] aio_poll.pml      (replay a trail)
 *
 * Threads:
 *   V  a thread in native blocking polls (pollOnce), taking ownership per
 *      call. Without WITH_G it is the only poller and loops forever, and
 *      its caller's condition is needV. With WITH_G its caller may stop
 *      after any call (it is done with the context and releases it).
 *   G  (WITH_G) the GLib thread, on its own thread: prepare, GLib's poll,
 *      check, dispatch, forever; its caller's condition is needG.
 *   W  schedules work: up to WOPS operations, each a BH schedule
 *      (bhSched = true; notify()) or a caller condition (needV, or needG
 *      with WITH_G, = true; notify()). It may stop early.
 *   D  a device with a ring and a kick fd (a virtqueue and its ioeventfd):
 *      up to DOPS items, each pushed into the ring and then, if kicks are
 *      on, a write to the kick fd. It may stop early.
 *
 * The generation: as in aio_notify_gen.pml, a thread only ever asks "has
 * the generation moved since my reference value `seen`?" (its notify
 * memory), so the model keeps that answer as one bit per thread, vNew and
 * gNew. notify() sets them in its generation bump; a thread clears its own
 * when it remembers the generation (or, in FAULT_POLL_SNAPSHOT_AFTER, when
 * it takes `seen` late). An unknown memory is current - 1: the bits start
 * true. A BH is one flag; the lock-free BH list is checked in aio_notify.pml.
 * The adaptive window is a nondeterministic choice per call (0 or not), so
 * every grow/shrink policy is covered. A spin is 1 to ROUNDS rounds.
 *
 * The model is sequentially consistent. "full fence" is a comment, and the
 * *_ORDER switches write out the reordering a missing store->load fence
 * allows. Atomicity: one step per shared access. An ownership acquire is
 * merged with the step after it, a release with the step before it, a
 * branch on a local with its first step, and a poll(2)/epoll wait reports
 * all its fds at one instant. `started` and pollHit are owner-only.
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code (AioContext+Poll.swift pollOnce;
 * AioContext+BusyPoll.swift busyPoll, leavePollMode, pollHandlersOnce,
 * dispatchPollReady; GSource.swift; AioContext+Notify.swift notify)
 * ---------------------------------------------------------------------------
 * notify(), in W
 *   N1  notifyGeneration += 1 (releasing): vNew (and gNew) = true
 *   N2  full fence [dekker-notify]
 *   N3  m = notifyMe
 *   N4  m & 1: write the GLib notifier (glibFd)            (WITH_G only)
 *   N5  m >= 2: write every advertised slot (slotFd, if registered)
 *
 * The device, proctype D (producer side of a virtqueue)
 *   K1  push an item: ring = true (publish the avail index)
 *   K2  full fence (virtio's mb before it reads the suppression flag)
 *   K3  ke = kicksEnabled
 *   K4  ke: write the kick fd (kickFd = true)
 *   FAULT_POLL_DEV_ORDER: K3 before K1 (no K2 fence).
 *
 * Native blocking poll, proctype V (pollOnce)
 *   Q1  ownership.acquire(); Q2 seen = memory (vNew)
 *   Q3  timeout = computeTimeoutNs(): 0 if a BH is scheduled. Timeout 0:
 *       no spin, poll mode unchanged; go to Z.
 *   B0  busyPoll: the window is 0 or positive. 0: go to E.
 *   B1  not started: started = true, pollBegin: kicksEnabled = false
 *   B2  one round of pollHandlersOnce: ev = (generation != seen), then
 *       pf = the device's poll hook (ring non-empty; sets pollHit)
 *   B3  ev || pf: found. Timeout 0, poll mode stays on; go to Z.
 *       Otherwise spin again, or the window expires.
 *   E1  leavePollMode, if started: started = false, pollEnd:
 *       kicksEnabled = true
 *   E2  full fence [poll-end]
 *   E3  final check, pollHandlersOnce: ev, then pf. Found: timeout 0; Z.
 *   A1  waiters.takeSlot(advertise: true): registered = true
 *   A2  notifyMe += 2
 *   A3  full fence [dekker-wait]
 *   A4  generationNow != seen: timeout 0, zero-timeout wait (kr = kickFd)
 *   A5  otherwise releaseAll, handlers.wait on the slot and the kick fd
 *       until one is readable (kr = kickFd), reacquire
 *   A6  withdraw (registered = false); notifyMe -= 2; woken: drain the slot
 *   Z   timeout 0 (Q3, B3, E3): handlers.wait(timeout 0): kr = kickFd
 *   X   (WITH_G) poll mode on and notifyMe != 0 (another thread sleeps on
 *       the context, or is about to): leave poll mode (E1-E3); what the
 *       final check finds is dispatched below. The fix for
 *       FAULT_POLL_LEFT_ON; ALT_BEGIN_IF_ALONE is the other fix.
 *   R1  dispatchAll: bhPoll (bhSched = false)
 *   R2  dispatchPollReady: pf (pollHit): pollReady processes the ring
 *   R3  dispatchHandlers: kr: the kick fd's read handler drains it, then
 *       processes the ring
 *   R4  (defer) remember the generation (vNew = false); Q8 release
 *   C   V's caller checks its condition (needV = false), or with WITH_G
 *       may stop
 *
 * GLib thread, proctype G (WITH_G; GSource.swift)
 *   P1  gsourcePrepare: acquire; seen = G's memory (gNew); if started:
 *       leavePollMode (E1-E3); pollWork = what E3 found
 *   P2  notifyMe |= 1; full fence [dekker-wait]
 *   P3  a BH scheduled, or pollWork: notifyMe &= ~1, return (TRUE, 0);
 *       GLib polls with timeout 0 (kr = kickFd), skips check, dispatches
 *   P4  generation != seen: (FALSE, 0), else (FALSE, -1); release
 *   GP  GLib's poll on glibFd and the kick fd (g_source_add_unix_fd)
 *   C1  gsourceCheck: acquire, notifyMe &= ~1; C2 drain glibFd if readable
 *   C3  remember (gNew = false); C4 ready = BH scheduled || kick revents
 *   GD  gsourceDispatch if ready: R1-R3, remember, release
 *   L   G's caller checks its condition (needG = false)
 *   FAULT_G_KEEPS_POLL_MODE: prepare does not leave poll mode.
 *
 * Switches that must fail: FAULT_POLL_NO_RAISE, FAULT_POLL_RAISE_LATE,
 * FAULT_POLL_SNAPSHOT_AFTER (lost_v); FAULT_POLL_NO_FINAL_CHECK,
 * FAULT_POLL_END_ORDER, FAULT_POLL_DEV_ORDER, FAULT_POLL_STAYS_ON,
 * FAULT_POLL_LEFT_ON, FAULT_G_KEEPS_POLL_MODE (lost_item; the last two
 * imply WITH_G). Variations that must pass: FINAL_CHECK_HOOKS_ONLY,
 * ALT_ONE_FENCE, WITH_G, ALT_BEGIN_IF_ALONE (implies WITH_G), WOPS=n,
 * DOPS=n, ROUNDS=n.
 *
 * Written for this project; not derived from QEMU's models.
 */

#ifndef WOPS
#define WOPS 2
#endif
#ifndef DOPS
#define DOPS 2
#endif
#ifndef ROUNDS
#define ROUNDS 2
#endif

#if defined(FAULT_G_KEEPS_POLL_MODE) || defined(FAULT_POLL_LEFT_ON) || defined(ALT_BEGIN_IF_ALONE)
#ifndef WITH_G
#define WITH_G
#endif
#endif

#define FREE  0
#define OWN_V 1
#define OWN_G 2

byte owner = FREE;          /* the ownership lock */
byte notifyMe = 0;          /* bit 0: G between prepare and check; +2: V */
bool vNew = true;           /* generation != V's memory; unknown: current - 1 */
bool registered = false;    /* V's slot is advertised */
bool slotFd = false;        /* V's private wake-up eventfd */
bool kickFd = false;        /* the device's kick fd (ioeventfd) */
bool kicksEnabled = true;   /* the device's notification flag */
bool ring = false;          /* the device's ring is non-empty */
bool bhSched = false;       /* a BH is scheduled and has not run */
bool started = false;       /* PollMode.started (owner-only) */
bool vWaiting = false;      /* V has released ownership to wait */
bool wDone = false;
bool dDone = false;
#ifdef WITH_G
bool gNew = true;           /* generation != G's memory; unknown: current - 1 */
bool glibFd = false;        /* the GLib notifier */
bool needG = false;         /* G's caller condition */
bool gWaiting = false;      /* G is in GLib's poll with an infinite timeout */
bool vStopped = false;      /* V's caller is done with the context */
#define GEN_BUMP        vNew = true; gNew = true
#else
bool needV = false;         /* V's caller condition */
#define GEN_BUMP        vNew = true
#endif

#define ACQUIRE_AND(me, extra)  atomic { owner == FREE -> owner = me; extra }
#define RELEASE(me)             assert(owner == me); owner = FREE

inline notify(m)
{
    atomic { GEN_BUMP };                                    /* N1 */
    /* N2: full fence [dekker-notify] */
    m = notifyMe;                                           /* N3 */
#ifdef WITH_G
    atomic { if :: (m & 1) -> glibFd = true :: else -> skip fi };  /* N4 */
#endif
    atomic {                                                /* N5 */
        if
        :: m >= 2 && registered -> slotFd = true
        :: else -> skip
        fi;
        m = 0
    }
}

active proctype W()
{
    byte k, m;

    do
    :: k < WOPS ->
        k++;
        if
        :: bhSched = true                                   /* schedule(): push */
#ifdef WITH_G
        :: needG = true                                     /* G's caller condition */
#else
        :: needV = true                                     /* V's caller condition */
#endif
        fi;
        notify(m)
    :: break
    od;
    wDone = true
}

active proctype D()
{
    byte k;
    bool ke;

    do
    :: k < DOPS ->
        k++;
#ifdef FAULT_POLL_DEV_ORDER
        /* FAULT_POLL_DEV_ORDER: the producer reads the notification flag
         * before its item is visible (no fence between K1 and K3) */
        ke = kicksEnabled;                                  /* K3 */
        ring = true;                                        /* K1 */
#else
        ring = true;                                        /* K1: push */
        /* K2: full fence */
        ke = kicksEnabled;                                  /* K3 */
#endif
        atomic { if :: ke -> kickFd = true :: else -> skip fi; ke = false }  /* K4 */
    :: break
    od;
    dDone = true
}

/* E1-E3: leavePollMode, if poll mode is on. `mine` is the caller's
 * "generation != seen" bit. Work found goes to `found`, with pf (pollHit)
 * set if the device's hook fired. G_ and T_ merge G's ownership acquire
 * into the first step (empty for V, which already holds it). */
#if defined(FAULT_POLL_END_ORDER)
/* FAULT_POLL_END_ORDER: the final check reads before pollEnd's store is
 * visible (no [poll-end] fence between E1 and E3) */
#define LEAVE_POLL_MODE(G_, T_, mine, found) \
    if \
    :: atomic { G_ started -> T_ ev = mine }; \
        pf = ring; \
        atomic { started = false; kicksEnabled = true }; \
        if \
        :: atomic { (ev || pf) -> ev = false }; goto found \
        :: atomic { !(ev || pf) -> skip } \
        fi \
    :: atomic { G_ !started -> T_ skip } \
    fi
#elif defined(FAULT_POLL_NO_FINAL_CHECK)
/* FAULT_POLL_NO_FINAL_CHECK: pollEnd, but no final look */
#define LEAVE_POLL_MODE(G_, T_, mine, found) \
    if \
    :: atomic { G_ started -> T_ started = false; kicksEnabled = true } \
    :: atomic { G_ !started -> T_ skip } \
    fi
#elif defined(FINAL_CHECK_HOOKS_ONLY)
/* FINAL_CHECK_HOOKS_ONLY: the final check calls the handlers' poll hooks
 * only, not the notifier's (the generation) */
#define LEAVE_POLL_MODE(G_, T_, mine, found) \
    if \
    :: atomic { G_ started -> T_ started = false; kicksEnabled = true }; \
        if \
        :: atomic { ring -> pf = true }; goto found \
        :: atomic { !ring -> skip } \
        fi \
    :: atomic { G_ !started -> T_ skip } \
    fi
#else
#define LEAVE_POLL_MODE(G_, T_, mine, found) \
    if \
    :: atomic { G_ started -> T_ started = false; kicksEnabled = true };  /* E1 */ \
        /* E2: full fence [poll-end] */ \
        ev = mine;                                          /* E3 */ \
        if \
        :: atomic { (ev || ring) -> pf = ring; ev = false }; goto found \
        :: atomic { !(ev || ring) -> skip } \
        fi \
    :: atomic { G_ !started -> T_ skip } \
    fi
#endif

/* R1-R3 (dispatchAll): BHs, pollReady, the kick fd's read handler */
#define DISPATCH_HANDLERS \
    if \
    :: atomic { pf -> pf = false; ring = false }            /* R2: pollReady */ \
    :: atomic { !pf -> skip } \
    fi; \
    if \
    :: atomic { kr -> kr = false; kickFd = false };         /* R3: drain ... */ \
        ring = false                                        /* ... and process */ \
    :: atomic { !kr -> skip } \
    fi

/* B2-B3: spin rounds until found (goto zero) or the window expires */
#define SPIN_ROUNDS \
    do \
    :: ev = vNew;                                           /* B2 */ \
        if \
        :: atomic { (ev || ring) ->                         /* B3: found */ \
               pf = ring; ev = false; r = 0; SPUN(false) }; goto zero \
        :: atomic { !(ev || ring) && r + 1 < ROUNDS -> r++ }    /* spin again */ \
        :: atomic { !(ev || ring) -> r = 0 }; break         /* window expired */ \
        fi \
    od

/* ---- the native blocking poller ---- */
active proctype V()
{
    bool ev, pf, ws, kr;
    byte r;
#if defined(FAULT_POLL_NO_RAISE) || defined(FAULT_POLL_STAYS_ON)
    bool spun;
#define SPUN(x) spun = x
#else
#define SPUN(x) skip
#endif

poll:
    /* Q1 ownership.acquire() + Q2 seen = memory (vNew) + Q3 computeTimeoutNs */
    if
    :: atomic { owner == FREE && bhSched -> owner = OWN_V }; goto zero  /* timeout 0 */
    :: atomic { owner == FREE && !bhSched -> owner = OWN_V }
    fi;
    /* B0: the adaptive window, merged with B1 */
    if
#ifdef ALT_BEGIN_IF_ALONE
    /* ALT_BEGIN_IF_ALONE: poll mode begins only if nobody else advertises
     * (sleeps or is about to); otherwise spin with kicks on */
    :: atomic { !started && notifyMe == 0 ->                /* B1: pollBegin */
           SPUN(true); started = true; kicksEnabled = false }; SPIN_ROUNDS
    :: atomic { started || notifyMe != 0 -> SPUN(true) }; SPIN_ROUNDS
#else
    :: atomic { !started ->                                 /* B1: pollBegin */
           SPUN(true); started = true; kicksEnabled = false }; SPIN_ROUNDS
    :: atomic { started -> SPUN(true) }; SPIN_ROUNDS       /* already on */
#endif
    :: skip                                                 /* window 0 */
    fi;
#ifdef FAULT_POLL_SNAPSHOT_AFTER
    /* FAULT_POLL_SNAPSHOT_AFTER: seen = the generation read after the spin:
     * a notify during the spin, after its last round, is swallowed */
    vNew = false;
#endif
#if defined(FAULT_POLL_STAYS_ON)
    /* FAULT_POLL_STAYS_ON: poll mode is left only when a window expired,
     * not when this call's window is 0: it may sleep with kicks off */
    if
    :: atomic { spun -> skip }; LEAVE_POLL_MODE(, , vNew, zeroEnd)
    :: atomic { !spun -> skip }
    fi;
#elif defined(ALT_ONE_FENCE)
    /* ALT_ONE_FENCE: pollEnd after advertising; A3 serves both Dekker pairs
     * (notifyMe/generation and kicksEnabled/ring) */
#elif defined(FAULT_POLL_RAISE_LATE)
    /* FAULT_POLL_RAISE_LATE: leaving poll mode, the final check is also the
     * generation check: it runs before notifyMe is raised, and nothing is
     * read after the raise */
    if
    :: atomic { started -> started = false; kicksEnabled = true };
        ev = vNew;
        if
        :: atomic { (ev || ring) -> pf = ring; ev = false }; goto zero
        :: atomic { !(ev || ring) -> skip }
        fi;
        atomic { registered = true };
        notifyMe = notifyMe + 2;
        goto decided
    :: atomic { !started -> skip }
    fi;
#else
    LEAVE_POLL_MODE(, , vNew, zeroEnd);
#endif
    atomic { registered = true };                           /* A1: takeSlot */
#ifdef FAULT_POLL_NO_RAISE
    /* FAULT_POLL_NO_RAISE: a call that spun sleeps without raising
     * notifyMe: its spin and final check "already looked" */
    if
    :: atomic { spun -> skip }
    :: atomic { !spun -> notifyMe = notifyMe + 2 }
    fi;
#else
    notifyMe = notifyMe + 2;                                /* A2 */
#endif
#ifdef ALT_ONE_FENCE
    if
    :: atomic { started -> started = false; kicksEnabled = true; pf = true }  /* E1 */
    :: atomic { !started -> skip }
    fi;
    /* A3: the one full fence */
    ws = vNew;                                              /* A4 */
    if
    :: atomic { pf -> pf = ring; ws = ws || pf }            /* E3: the ring */
    :: atomic { !pf -> skip }
    fi;
#else
    /* A3: full fence [dekker-wait] */
    ws = vNew;                                              /* A4 */
#endif
#ifdef FAULT_POLL_RAISE_LATE
decided:
#endif
    if
    :: atomic { ws -> ws = false; kr = kickFd };            /* A4: zero-timeout wait */
        registered = false                                  /* A6: withdraw */
    :: atomic { !ws -> vWaiting = true; RELEASE(OWN_V) };   /* releaseAll */
endwait:
        atomic { (slotFd || kickFd) -> kr = kickFd };       /* A5: handlers.wait */
        ACQUIRE_AND(OWN_V, vWaiting = false; ws = true; registered = false)  /* reacquire; A6 */
    fi;
#ifdef FAULT_POLL_NO_RAISE
    if
    :: atomic { spun -> spun = false }
    :: atomic { !spun -> notifyMe = notifyMe - 2 }
    fi;
#else
    atomic { notifyMe = notifyMe - 2; SPUN(false) };        /* A6 */
#endif
    atomic { if :: ws && slotFd -> slotFd = false :: else -> skip fi; ws = false }  /* A6: drain */
    goto dispatch;

zeroEnd:
    SPUN(false);
zero:
    kr = kickFd;                                            /* Z */
dispatch:
#if defined(WITH_G) && !defined(FAULT_POLL_LEFT_ON) && !defined(ALT_BEGIN_IF_ALONE)
    /* X: about to return with poll mode on while another thread sleeps on
     * the context (advertises in notifyMe): leave poll mode, and dispatch
     * what the final check finds. Only the owner writes notifyMe, so its
     * read here and in ALT_BEGIN_IF_ALONE's B1 can share a step. */
    if
    :: atomic { started && notifyMe != 0 -> started = false; kicksEnabled = true };
        /* full fence [poll-end] */
        atomic { pf = pf || ring }
    :: atomic { !(started && notifyMe != 0) -> skip }
    fi;
#endif
    bhSched = false;                                        /* R1: bhPoll */
    DISPATCH_HANDLERS;
    atomic { vNew = false; RELEASE(OWN_V) };                /* R4 remember; Q8 */
#ifdef WITH_G
    if
    :: goto poll
    :: vStopped = true                                      /* V's caller is done */
    fi
#else
    needV = false;                                          /* C: caller's check */
    goto poll
#endif
}

#ifdef WITH_G
/* ---- the GLib thread ---- */
active proctype G()
{
    bool ready, ev, pf, ws, kr, rev;

    needG = false;                                          /* L: caller's check */
iteration:
#ifdef FAULT_G_KEEPS_POLL_MODE
    /* FAULT_G_KEEPS_POLL_MODE: prepare does not leave poll mode */
    ACQUIRE_AND(OWN_G, notifyMe = notifyMe | 1);            /* P1 + P2 */
#else
    /* P1: acquire (merged), seen = gNew, leave poll mode */
    LEAVE_POLL_MODE(owner == FREE &&, owner = OWN_G;, gNew, pollWork);
    goto prepare;
pollWork:
    ready = true;
prepare:
    notifyMe = notifyMe | 1;                                /* P2 */
#endif
    /* full fence [dekker-wait] */
    if
    :: atomic { (ready || bhSched) ->                       /* P3: (TRUE, 0) */
           ready = false; notifyMe = notifyMe & 254; RELEASE(OWN_G) };
        kr = kickFd;                                        /* GP: timeout 0; no check */
        goto gdispatch
    :: atomic { !(ready || bhSched) -> skip }
    fi;
    atomic {                                                /* P4 */
        ws = gNew;
        if :: !ws -> gWaiting = true :: else -> skip fi;
        RELEASE(OWN_G)
    };
endgwait:
    if
    :: atomic { ws -> ws = false; rev = glibFd; kr = kickFd }    /* GP: timeout 0 */
    :: atomic { !ws && (glibFd || kickFd) -> rev = glibFd; kr = kickFd }  /* GP: woken */
    fi;
    ACQUIRE_AND(OWN_G, gWaiting = false; notifyMe = notifyMe & 254);  /* C1 */
    atomic { if :: rev -> glibFd = false :: else -> skip fi; rev = false }  /* C2 */
    gNew = false;                                           /* C3: remember */
    atomic { ready = (bhSched || kr); RELEASE(OWN_G) };     /* C4 */
    if
    :: atomic { ready -> ready = false }                    /* dispatch */
    :: atomic { !ready -> needG = false }; goto iteration   /* L */
    fi;
gdispatch:
    ACQUIRE_AND(OWN_G, bhSched = false);                    /* GD: R1 */
    DISPATCH_HANDLERS;
    atomic { gNew = false; RELEASE(OWN_G) };                /* R4 */
    needG = false;                                          /* L */
    goto iteration
}
#endif

#ifdef WITH_G
#define QUIET   (gWaiting && !glibFd && !kickFd && (vStopped || (vWaiting && !slotFd)))
ltl lost_g { [] (needG -> <> !needG) }
#else
#define QUIET   (vWaiting && !slotFd && !kickFd)
ltl lost_v { [] (needV -> <> !needV) }
#endif
ltl lost_bh { [] (bhSched -> <> !bhSched) }
ltl lost_item { [] (ring -> <> !ring) }
ltl no_busy_wait { [] ((wDone && dDone) -> <> [] QUIET) }
