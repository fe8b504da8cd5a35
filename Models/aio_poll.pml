/*
 * aio_poll.pml: adaptive busy polling in the native poll, on top of the
 * notify generation of aio_notify_gen.pml. A native blocking poll may spin
 * for a while before it sleeps. While it spins it does NOT advertise in
 * notifyMe, so a notify() costs no eventfd write, and a device's pollBegin
 * hook turns the device's "kicks" (its fd notifications) off, so the device
 * only queues items. Before the loop may sleep it must leave poll mode:
 * pollEnd (kicks back on), a final look at the poll hooks, and then the
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
 *   T  the thread that owns and polls the context (an IOThread). By default
 *      it runs native blocking polls only. With WITH_G it may switch, after
 *      any iteration, between a native poll and a GLib iteration (prepare,
 *      GLib's poll, check, dispatch) on the same context, as a main thread
 *      does that waits in a native poll and otherwise runs the GLib loop.
 *      Being one thread, it needs no ownership lock and has one notify
 *      memory for both paths.
 *   W  schedules work: up to WOPS operations, each a BH schedule
 *      (bhSched = true; notify()) or "work only T's caller does"
 *      (needV = true; notify()). It may stop early.
 *   D  a device with a ring and a kick fd (a virtqueue and its ioeventfd):
 *      up to DOPS items, each pushed into the ring; then, if kicks are on,
 *      a write to the kick fd. It may stop early.
 *
 * The generation: as in aio_notify_gen.pml, T only ever asks "has the
 * generation moved since my reference value `seen`?" (its notify memory),
 * so the model keeps that answer as one bit, vNew. notify() sets it in its
 * generation bump; T clears it when it remembers the generation at the end
 * of a poll (or, in FAULT_POLL_SNAPSHOT_AFTER, when it takes `seen` late).
 * The memory starts unknown (current - 1), i.e. vNew = true.
 *
 * The model is sequentially consistent. "full fence" is a comment, and the
 * *_ORDER switches write out the reordering a missing store->load fence
 * allows. Atomicity: one step per shared access, except that a branch on a
 * local is merged with its first step, and a poll(2)/epoll wait returns the
 * readiness of all its fds at one instant (one step).
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code (AioContext+Poll.swift pollOnce,
 * AioContext+BusyPoll.swift busyPoll / leavePollMode / pollHandlersOnce,
 * GSource.swift gsourcePrepare, AioContext+Notify.swift notify)
 * ---------------------------------------------------------------------------
 * notify(), proctype W
 *   N1  notifyGeneration += 1 (releasing): vNew = true
 *   N2  full fence [dekker-notify]
 *   N3  m = notifyMe
 *   N4  m & 1: write the GLib notifier (glibFd)            (WITH_G only)
 *   N5  m >= 2: write every advertised slot (slotFd if registered)
 *   schedule(): bhSched = true (the push), then notify(). The lock-free BH
 *   list itself is checked in aio_notify.pml; here a BH is one flag.
 *
 * The device, proctype D (producer side of a virtqueue)
 *   K1  push an item: ring = true (publish the avail index)
 *   K2  full fence (the producer's virtio_mb before it looks at the
 *       notification-suppression flag)
 *   K3  ke = kicksEnabled
 *   K4  ke: write the kick fd (kickFd = true)
 *   FAULT_POLL_DEV_ORDER: K3 before K1 (no K2 fence).
 *
 * Native blocking poll, proctype T (pollOnce)
 *   Q2  seen = the generation remembered by this thread (vNew)
 *   Q3  timeout = computeTimeoutNs(): 0 if a BH is scheduled. Timeout 0:
 *       no spinning, no leaving poll mode; go to Z.
 *   B0  busyPoll: the window (adaptive; min of the handlers' windows,
 *       pollMaxNs, the timeout) is either 0 or positive: nondeterministic
 *       each call. 0: go to E (leave poll mode if it is on).
 *   B1  not started: started = true, every pollBegin: kicksEnabled = false
 *   B2  one round of pollHandlersOnce: ev = (generation != seen), then
 *       pf = the device's poll hook (ring non-empty; marks pollHit)
 *   B3  ev || pf: found. timeout = 0, poll mode stays on; go to Z.
 *       Otherwise spin again (at most ROUNDS rounds) or the window expires.
 *   E1  leavePollMode, if started: started = false, every pollEnd:
 *       kicksEnabled = true
 *   E2  full fence [poll-end]
 *   E3  final check, pollHandlersOnce again: ev, then pf. ev || pf:
 *       timeout 0; go to Z.
 *   A1  waiters.takeSlot(advertise: true): registered = true
 *   A2  notifyMe += 2
 *   A3  full fence [dekker-wait]
 *   A4  generationNow != seen: timeout 0 (zero-timeout wait: kr = kickFd)
 *   A5  otherwise handlers.wait on the slot fd and the kick fd; returns
 *       when one is readable, with both readinesses (kr = kickFd)
 *   A6  waiters.withdraw: registered = false; notifyMe -= 2; woken: drain
 *       the slot
 *   Z   timeout 0 from Q3, B3, E3: handlers.wait(timeout 0) on the kick fd
 *       (a handler is registered): kr = kickFd
 *   R1  dispatchAll: bhPoll (bhSched = false)
 *   R2  dispatchPollReady: pf (pollHit): the device's pollReady processes
 *       the ring (ring = false)
 *   R3  dispatchHandlers: kr: the kick fd's read handler drains it, then
 *       processes the ring
 *   R4  (defer) remember the generation: vNew = false
 *   C   the caller checks its condition: needV = false
 *
 * GLib iteration, proctype T with WITH_G (gsourcePrepare etc.)
 *   P1  seen = this thread's memory (vNew); if started: leavePollMode
 *       (E1-E3); pollWork = what E3 found
 *   P2  notifyMe |= 1; full fence [dekker-wait]
 *   P3  a BH scheduled, or pollWork: notifyMe &= ~1, return (TRUE, 0);
 *       GLib polls with timeout 0 (kr = kickFd), skips check, dispatches
 *   P4  generation != seen: (FALSE, 0), else (FALSE, -1)
 *   GP  GLib's poll on glibFd and the kick fd (added with
 *       g_source_add_unix_fd): timeout 0, or wait until one is readable
 *   C1  gsourceCheck: notifyMe &= ~1; C2 drain glibFd if readable;
 *   C3  remember (vNew = false); C4 ready = BH scheduled || kick fd revents
 *   GD  gsourceDispatch (if ready): R1-R4 with the revents GLib collected
 *   FAULT_G_KEEPS_POLL_MODE: prepare does not leave poll mode.
 *
 * Switches that must fail: FAULT_POLL_NO_RAISE, FAULT_POLL_RAISE_LATE,
 * FAULT_POLL_NO_FINAL_CHECK, FAULT_POLL_SNAPSHOT_AFTER,
 * FAULT_POLL_END_ORDER, FAULT_POLL_DEV_ORDER, FAULT_POLL_STAYS_ON,
 * FAULT_G_KEEPS_POLL_MODE (with WITH_G). Variations that must pass: WITH_G,
 * FINAL_CHECK_HOOKS_ONLY, ALT_ONE_FENCE, WOPS=n, DOPS=n, ROUNDS=n.
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

#ifdef FAULT_G_KEEPS_POLL_MODE
#ifndef WITH_G
#define WITH_G
#endif
#endif

byte notifyMe = 0;
bool vNew = true;           /* generation != T's memory; unknown: current - 1 */
bool registered = false;    /* T's slot is advertised */
bool slotFd = false;        /* T's private wake-up eventfd */
bool glibFd = false;        /* the GLib notifier */
bool kickFd = false;        /* the device's kick fd (ioeventfd) */
bool kicksEnabled = true;   /* the device's notification flag */
bool ring = false;          /* the device's ring is non-empty */
bool bhSched = false;       /* a BH is scheduled and has not run */
bool needV = false;         /* T's caller condition */

bool waiting = false;       /* T is blocked in its wait (native or GLib) */
bool wDone = false;
bool dDone = false;

inline notify(m)
{
    atomic { vNew = true };                                 /* N1 */
    /* N2: full fence */
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
        :: needV = true                                     /* the caller's condition */
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

/* E1-E3: leave poll mode, if on. Found work (ev || pf) goes to `found`;
 * pf stays set for pollReady. */
#ifdef FAULT_POLL_END_ORDER
/* FAULT_POLL_END_ORDER: the final check reads the ring before pollEnd's
 * store is visible (no [poll-end] fence between E1 and E3) */
#define LEAVE_POLL_MODE(found) \
    if \
    :: atomic { started -> ev = vNew }; \
        pf = ring; \
        atomic { started = false; kicksEnabled = true }; \
        if \
        :: atomic { (ev || pf) -> ev = false }; goto found \
        :: atomic { !(ev || pf) -> skip } \
        fi \
    :: atomic { !started -> skip } \
    fi
#elif defined(FAULT_POLL_NO_FINAL_CHECK)
/* FAULT_POLL_NO_FINAL_CHECK: pollEnd, but no final look before sleeping */
#define LEAVE_POLL_MODE(found) \
    if \
    :: atomic { started -> started = false; kicksEnabled = true } \
    :: atomic { !started -> skip } \
    fi
#elif defined(FINAL_CHECK_HOOKS_ONLY)
/* FINAL_CHECK_HOOKS_ONLY: the final check calls the handlers' poll hooks
 * only, not the notifier's (the generation); A4 covers the generation */
#define LEAVE_POLL_MODE(found) \
    if \
    :: atomic { started -> started = false; kicksEnabled = true }; \
        /* E2: full fence */ \
        pf = ring; \
        if \
        :: atomic { pf -> skip }; goto found \
        :: atomic { !pf -> skip } \
        fi \
    :: atomic { !started -> skip } \
    fi
#else
#define LEAVE_POLL_MODE(found) \
    if \
    :: atomic { started -> started = false; kicksEnabled = true };  /* E1 */ \
        /* E2: full fence [poll-end] */ \
        ev = vNew;                                          /* E3 */ \
        pf = ring; \
        if \
        :: atomic { (ev || pf) -> ev = false }; goto found \
        :: atomic { !(ev || pf) -> skip } \
        fi \
    :: atomic { !started -> skip } \
    fi
#endif

/* ---- the thread that polls the context ---- */
active proctype T()
{
    bool ready, ev, pf, ws, kr, started, spun;
    byte r;
#ifdef WITH_G
    bool rev;
#endif

iteration:
#ifdef WITH_G
    if
    :: goto native
    :: goto glib
    fi;
#endif

native:
    /* Q2: seen = memory (vNew). Q3: */
    ready = bhSched;
    if
    :: atomic { ready -> ready = false }; goto zero         /* timeout 0 */
    :: atomic { !ready -> skip }
    fi;
    /* B0: the adaptive window */
    if
    :: atomic { skip -> spun = true };                      /* window > 0 */
        if
        :: atomic { !started -> started = true; kicksEnabled = false }    /* B1 */
        :: atomic { started -> skip }
        fi;
        do
        :: ev = vNew;                                       /* B2 */
            pf = ring;
            if
            :: atomic { (ev || pf) -> ev = false; r = 0; spun = false }; goto zero  /* B3 */
            :: atomic { !(ev || pf) && r + 1 < ROUNDS -> r++ }   /* spin again */
            :: atomic { !(ev || pf) -> r = 0 }; break       /* window expired */
            fi
        od
    :: skip                                                 /* window 0 */
    fi;
#ifdef FAULT_POLL_SNAPSHOT_AFTER
    /* FAULT_POLL_SNAPSHOT_AFTER: seen = the generation read after the spin:
     * a notify during the spin, after its last round, is swallowed */
    vNew = false;
#endif
#ifdef FAULT_POLL_STAYS_ON
    /* FAULT_POLL_STAYS_ON: poll mode is left only when a window expired,
     * not when this call's window is 0: it may sleep with kicks off */
    if
    :: atomic { spun -> skip }; LEAVE_POLL_MODE(zeroEnd)
    :: atomic { !spun -> skip }
    fi;
#elif defined(ALT_ONE_FENCE)
    /* ALT_ONE_FENCE: pollEnd after advertising; one full fence serves both
     * Dekker pairs (notifyMe/generation and kicksEnabled/ring) */
#elif defined(FAULT_POLL_RAISE_LATE)
    /* FAULT_POLL_RAISE_LATE: the final check is the generation check: it
     * runs before notifyMe is raised, and nothing is read after the raise.
     * A call that did not spin takes the normal path. */
    if
    :: atomic { started -> started = false; kicksEnabled = true };
        ev = vNew;
        pf = ring;
        if
        :: atomic { (ev || pf) -> ev = false; spun = false }; goto zeroEnd
        :: atomic { !(ev || pf) -> skip }
        fi;
        atomic { registered = true };
        notifyMe = notifyMe + 2;
        goto decided
    :: atomic { !started -> skip }
    fi;
#else
    LEAVE_POLL_MODE(zeroEnd);
#endif
    atomic { registered = true };                           /* A1 */
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
    :: atomic { pf -> pf = ring }                           /* E3: the ring */
    :: atomic { !pf -> skip }
    fi;
    atomic { ws = ws || pf };
#else
    /* A3: full fence [dekker-wait] */
    ws = vNew;                                              /* A4 */
#endif
#ifdef FAULT_POLL_RAISE_LATE
decided:
#endif
    if
    :: atomic { ws -> ws = false; kr = kickFd }             /* A4: zero-timeout wait */
    :: atomic { !ws -> waiting = true };
endwait:
        atomic { (slotFd || kickFd) -> waiting = false; ws = true; kr = kickFd }  /* A5 */
    fi;
    registered = false;                                     /* A6: withdraw */
#ifdef FAULT_POLL_NO_RAISE
    if
    :: atomic { spun -> spun = false }
    :: atomic { !spun -> notifyMe = notifyMe - 2 }
    fi;
#else
    atomic { notifyMe = notifyMe - 2; spun = false };
#endif
    atomic { if :: ws && slotFd -> slotFd = false :: else -> skip fi; ws = false }  /* A6: drain */
    goto dispatch;

zeroEnd:
    spun = false;
zero:
    kr = kickFd;                                            /* Z */
dispatch:
    bhSched = false;                                        /* R1: bhPoll */
    if
    :: atomic { pf -> pf = false; ring = false }            /* R2: pollReady */
    :: atomic { !pf -> skip }
    fi;
    if
    :: atomic { kr -> kr = false; kickFd = false };         /* R3: read handler drains */
        ring = false                                        /* ... and processes */
    :: atomic { !kr -> skip }
    fi;
    vNew = false;                                           /* R4: remember */
    needV = false;                                          /* C: caller's check */
    goto iteration;

#ifdef WITH_G
glib:
    /* P1: seen = memory (vNew); leave a poll mode a native poll left on */
#ifndef FAULT_G_KEEPS_POLL_MODE
    LEAVE_POLL_MODE(pollWork);
#endif
    goto prepare;
pollWork:
    ready = true;
prepare:
    notifyMe = notifyMe | 1;                                /* P2 */
    /* full fence [dekker-wait] */
    if
    :: atomic { ready -> skip }
    :: atomic { !ready -> ready = bhSched }                   /* P3 */
    fi;
    if
    :: atomic { ready -> ready = false; notifyMe = notifyMe & 254 };  /* (TRUE, 0) */
        kr = kickFd;                                        /* GP: timeout 0; no check */
        goto gdispatch
    :: atomic { !ready -> ws = vNew };                        /* P4 */
        if
        :: atomic { ws -> ws = false; rev = glibFd; kr = kickFd }     /* GP: timeout 0 */
        :: atomic { !ws -> waiting = true };
endgwait:
            atomic { (glibFd || kickFd) -> waiting = false; rev = glibFd; kr = kickFd }
        fi;
        notifyMe = notifyMe & 254;                          /* C1 */
        atomic { if :: rev -> glibFd = false :: else -> skip fi; rev = false }  /* C2 */
        vNew = false;                                       /* C3 */
        ready = bhSched;                                    /* C4 */
        if
        :: atomic { ready || kr -> ready = false }; goto gdispatch
        :: atomic { !(ready || kr) -> skip }
        fi;
        needV = false;                                      /* caller's check */
        goto iteration
    fi;
gdispatch:
    bhSched = false;                                        /* R1 */
    if
    :: atomic { pf -> pf = false; ring = false }            /* R2 */
    :: atomic { !pf -> skip }
    fi;
    if
    :: atomic { kr -> kr = false; kickFd = false };         /* R3 */
        ring = false
    :: atomic { !kr -> skip }
    fi;
    vNew = false;                                           /* R4: remember */
    needV = false;                                          /* caller's check */
    goto iteration
#endif
}

#ifdef WITH_G
#define QUIET   (waiting && !slotFd && !kickFd && !glibFd)
#else
#define QUIET   (waiting && !slotFd && !kickFd)
#endif

ltl lost_v { [] (needV -> <> !needV) }
ltl lost_bh { [] (bhSched -> <> !bhSched) }
ltl lost_item { [] (ring -> <> !ring) }
ltl no_busy_wait { [] ((wDone && dDone) -> <> [] QUIET) }
