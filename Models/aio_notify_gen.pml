/*
 * aio_notify_gen.pml: the notify protocol as the tree implements it since
 * commit 9ee7679 ("Notify generation with per-thread memory instead of a
 * shared notified flag"). aio_notify.pml models the earlier protocol with one
 * shared `notified` flag. This file replaces that flag with a generation
 * counter plus per-thread memory, and follows the current Swift code:
 *
 * Sources/Aio/Context/AioContext+Notify.swift: notify()
 *   N1  notifyGeneration += 1 (releasing)
 *   N2  full fence
 *   N3  m = notifyMe; m == 0: return
 *   N4  m & 1: write the GLib notifier (glibFd)
 *   N5  m >= 2: registry lock, write every advertised slot (waiters.wakeAll)
 *
 * Sources/Aio/Context/AioContext+Poll.swift: pollOnce(), proctype V
 *   Q1  ownership.acquire()
 *   Q2  seen = the generation this thread remembered when its last poll here
 *       returned (ThreadNotifyMemory); unknown context: current - 1, i.e.
 *       "notified", so the first poll does not sleep
 *   Q3  timeout = computeTimeoutNs(): 0 if a BH is scheduled
 *   Q4  timeout != 0: takeSlot(advertise) (register), notifyMe += 2, full
 *       fence, generationNow = notifyGeneration; generationNow != seen: do
 *       not sleep. Otherwise ownership.releaseAll(), wait on the slot fd,
 *       ownership.reacquire()
 *   Q5  withdraw the slot; notifyMe -= 2 (releasing); woken: drain the slot
 *   Q6  bhPoll() (run_bhs)
 *   Q7  (defer) remember notifyGeneration for this thread
 *   Q8  (defer) ownership.release()
 *   C   the caller checks its own condition after the poll returns: needV,
 *       "work only V can do"
 *   By default V takes ownership per call (the home thread's pattern). With
 *   V_HOLDS_OWNERSHIP it holds ownership across calls, as a non-home owner
 *   that called acquire() does; the wait then releases all of it.
 *   proctype N: pollOnce(blocking: false): acquire, no advertising, bhPoll,
 *   release. Its memory is its own, so it is not modelled.
 *
 * Sources/Aio/GLib/GSource.swift: proctype G
 *   P1  prepare: acquire; notifyMe |= 1; full fence
 *   P2  ready = computeTimeoutNs() == 0 (a BH) or needG (G's own pending
 *       work); ready: notifyMe &= ~1 at once (GLib will skip check); release
 *   GP  GLib's poll: ready: timeout 0 and no check. Otherwise wait until
 *       glibFd is readable; rev = its revents
 *   C1  check: acquire; notifyMe &= ~1 (releasing); rev: drain glibFd;
 *       ready = a BH or needG; release. GLib also dispatches when check says
 *       FALSE but the unix fd (g_source_add_unix_fd) had revents.
 *   D   dispatch: acquire; bhPoll; G's own work (needG); release
 *
 * Sources/Aio/BottomHalves/BHList.swift: schedule() and run_bhs(), the same
 * as in aio_notify.pml (S1-S3, R1-R3).
 *
 * Switches that mirror the tree's AIO_FAULT_* fault injections (and must
 * fail): FAULT_NOTIFY_ORDER, FAULT_WAIT_ORDER, FAULT_CLEAR_AFTER,
 * FAULT_SKIP_WRITE, FAULT_STEAL, FAULT_BOOL_FLAG, FAULT_SHARED_FD,
 * FAULT_NO_DRAIN. Plus FAULT_UNKNOWN_IS_SEEN (an unknown context counts as
 * "already seen"). Variations that must pass: V_HOLDS_OWNERSHIP, TIMEOUTS,
 * NV=2, NPOLLS=n, WOPS=n.
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
#define GENMOD 16       /* generation modulo; > the notifies in any run */

#define FREE  0
#define OWN_G 1
#define OWN_N 2
#define OWN_V 3

byte owner = FREE;
byte notifyMe = 0;
byte gen = 0;           /* notifyGeneration */
bool glibFd = false;
bool slotFd[NV];
bool registered[NV];
bool needV[NV];         /* V's caller condition */
bool needG = false;     /* G's own pending work, seen by prepare */

byte head = 0;
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
#ifdef TIMEOUTS
byte vTimeouts = 1;
byte gTimeouts = 1;
#endif

#define ACQUIRE_AND(me, extra)  atomic { owner == FREE -> owner = me; extra }
#define ACQUIRE(me)             ACQUIRE_AND(me, skip)
#define RELEASE(me)             atomic { assert(owner == me); owner = FREE }

#define BH_SCHEDULED \
    ((head != 0 && sched[head]) || \
     (head != 0 && next[head] != 0 && sched[next[head]]))
#define G_READY         (BH_SCHEDULED || needG)

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
/* AIO_FAULT_SHARED_FD: every native waiter sleeps on, and drains, the GLib
 * notifier (QEMU's one eventfd) */
#define VFD(me)         glibFd
#else
#define VFD(me)         slotFd[me]
#endif

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

inline notify(m, i, was)
{
#ifdef FAULT_NOTIFY_ORDER
    /* AIO_FAULT_NOTIFY_ORDER: notifyMe is read before the new generation is
     * published */
    m = notifyMe;
    gen = (gen + 1) % GENMOD;
#else
    gen = (gen + 1) % GENMOD;                               /* N1 */
    /* N2: full fence */
    m = notifyMe;                                           /* N3 */
#endif
#ifdef FAULT_SKIP_WRITE
    /* AIO_FAULT_SKIP_WRITE: no write if a notification is already pending
     * (QEMU aio_notify_accept.promela BUG2); V clears the flag after a real
     * wait, like QEMU 2018's accept */
    atomic { was = faultNotified; faultNotified = true };
    atomic { if :: was -> m = 0 :: else -> skip fi; was = false };
#endif
#if defined(FAULT_SHARED_FD)
    atomic { if :: m != 0 -> glibFd = true :: else -> skip fi; m = 0 }
#elif defined(FAULT_BOOL_FLAG)
    atomic {
        if
        :: m != 0 -> glibFd = true; write_registered(i)
        :: else -> skip
        fi;
        m = 0
    }
#else
    atomic { if :: (m & 1) -> glibFd = true :: else -> skip fi };        /* N4 */
    atomic { if :: m >= 2 -> write_registered(i) :: else -> skip fi; m = 0 } /* N5 */
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

inline run_bhs(who, list, bh)
{
    assert(owner == who);
    atomic { list = head; head = 0 };
    do
    :: list != 0 ->
        bh = list;
        atomic { list = next[bh]; linked[bh]-- };
        atomic { pending[bh] = false; sched[bh] = false; bh = 0 }
    :: else -> break
    od
}

/* ---- native blocking poller (V; H too when NV == 2) ---- */
proctype V(byte me)
{
    byte seen, mem, list, bh;
    bool known, ready, ws;

#ifdef V_HOLDS_OWNERSHIP
    ACQUIRE(OWN_V + me);      /* acquire() before polling; pollOnce nests */
#endif
poll:
#ifndef V_HOLDS_OWNERSHIP
    ACQUIRE(OWN_V + me);                                    /* Q1 */
#endif
#ifdef FAULT_CLEAR_AFTER
    /* AIO_FAULT_CLEAR_AFTER: the indication is taken after looking for work
     * (seed 000): a notify between the look and the snapshot is swallowed */
    ready = BH_SCHEDULED;                                   /* Q3 */
    seen = gen;                                             /* Q2 */
#else
    atomic {                                                /* Q2 */
        if
#ifdef FAULT_UNKNOWN_IS_SEEN
        /* FAULT_UNKNOWN_IS_SEEN: an unknown context counts as "nothing new":
         * a notify before this thread's first poll is slept through */
        :: !known -> seen = gen
#else
        :: !known -> seen = (gen + GENMOD - 1) % GENMOD
#endif
        :: known -> seen = mem
        fi
    };
    ready = BH_SCHEDULED;                                   /* Q3 */
#endif
    if
    :: atomic { ready -> ready = false; seen = 0 }          /* timeout 0 */
    :: atomic { !ready -> registered[me] = true };          /* Q4: takeSlot */
#ifdef FAULT_WAIT_ORDER
        /* AIO_FAULT_WAIT_ORDER: the generation is read before advertising */
        atomic { ws = (gen != seen); seen = 0 };
        ADV_V_ADD;
#else
        ADV_V_ADD;
        /* full fence */
        atomic { ws = (gen != seen); seen = 0 };
#endif
        if
        :: atomic { ws -> ws = false }                      /* notified: no sleep */
        :: atomic { !ws -> vWaiting[me] = true; RELEASE(OWN_V + me) };
endwait:
            if
            :: VFD(me)
#ifdef TIMEOUTS
            :: atomic { vTimeouts > 0 -> vTimeouts-- }
#endif
            fi;
            ACQUIRE_AND(OWN_V + me, vWaiting[me] = false; ws = true);
#ifdef FAULT_SKIP_WRITE
            faultNotified = false;
#endif
        fi;
        registered[me] = false;                             /* Q5: withdraw */
        ADV_V_SUB;
#ifndef FAULT_NO_DRAIN
        /* woken (we waited and our fd was readable): drain it */
        atomic { if :: ws && VFD(me) -> VFD(me) = false :: else -> skip fi; ws = false }
#else
        ws = false
#endif
    fi;
    run_bhs(OWN_V + me, list, bh);                          /* Q6 */
    atomic { mem = gen; known = true };                     /* Q7: remember */
#ifndef V_HOLDS_OWNERSHIP
    RELEASE(OWN_V + me);                                    /* Q8 */
#endif
    needV[me] = false;                                      /* C: caller's check */
    goto poll
}

/* ---- GLib thread ---- */
active proctype G()
{
    bool ready, rev;
    byte list, bh;

    do
    ::
        ACQUIRE(OWN_G);
        ADV_G_SET;                                          /* P1 */
        /* full fence */
        if
        :: atomic { G_READY -> ready = true; ADV_G_CLEAR; RELEASE(OWN_G) }    /* P2 */
        :: atomic { !G_READY -> gWaiting = true; RELEASE(OWN_G) };
endpoll:
            if
            :: atomic { glibFd -> rev = true }              /* GP */
#ifdef TIMEOUTS
            :: atomic { gTimeouts > 0 -> gTimeouts--; rev = glibFd }
#endif
            fi;
            ACQUIRE_AND(OWN_G, gWaiting = false);           /* C1 */
            ADV_G_CLEAR;
#ifndef FAULT_NO_DRAIN
            if
            :: rev -> glibFd = false
            :: else -> skip
            fi;
#endif
            atomic { ready = (G_READY || rev); rev = false; RELEASE(OWN_G) }
        fi;
        if
        :: atomic { ready && owner == FREE -> owner = OWN_G };  /* D */
            run_bhs(OWN_G, list, bh);
            atomic { needG = false; ready = false; RELEASE(OWN_G) }
        :: atomic { !ready -> skip }
        fi
    od
}

/* ---- non-home thread: poll(blocking: false) ---- */
active proctype N()
{
    byte k, j, list, bh;

    do
    :: k < NPOLLS ->
        ACQUIRE(OWN_N);
#ifdef FAULT_STEAL
        /* AIO_FAULT_STEAL: a poll that did not sleep drains the wake-ups of
         * the threads that do (seed 004) */
        atomic {
            glibFd = false;
            j = 0;
            do
            :: j < NV -> slotFd[j] = false; j++
            :: else -> break
            od;
            j = 0
        };
#endif
        run_bhs(OWN_N, list, bh);
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
        run V(0);
#if NV > 1
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
