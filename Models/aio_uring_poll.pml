/*
 * aio_uring_poll.pml: the io_uring fd monitor. Each handler node has one
 * ONE-SHOT poll (IORING_OP_POLL_ADD) in the ring; after its completion
 * (CQE) is reaped, the node is re-armed, so that the handler stays
 * level-triggered. Two pollers share the context: a native blocking poll
 * and the GLib thread (our GSource). Three promises:
 *   1. dispatch once: a readiness that a CQE reported and that another
 *      poller's callback has consumed meanwhile is not dispatched again
 *      (the read callback would find nothing; a blocking read would hang);
 *   2. no lost readiness: every byte written is eventually read while the
 *      handler is registered, even when GLib's dispatch is skipped after
 *      its check reaped the CQE;
 *   3. no callback after removal: once removeHandler has returned on a
 *      thread that does not own the context, no callback of that handler
 *      starts, including for a CQE reaped after the removal.
 * README.md ("io_uring polls: `aio_uring_poll.pml`") explains the results;
 * run.sh knows the expected verdicts.
 *
 * By hand (pass the same -D flags to every command):
 *     spin -a [-DVARIANT ...] aio_uring_poll.pml
 *     gcc -O0 -DNOCLAIM -DSAFETY -o pan_safety pan.c && ./pan_safety -m200000 -w20
 *     gcc -O1 -DNFAIR=3 -o pan pan.c && ./pan -a -f -m200000 -w20 -N lost_byte
 *     spin -t -p -g [-DVARIANT ...] aio_uring_poll.pml      (replay a trail)
 *
 * One fd, one handler node. `bytes` is what can be read from the fd; P
 * writes WBYTES bytes, one at a time. The read callback reads one byte:
 * assert(bytes > 0) before it does (finding nothing is a double dispatch).
 *
 * Threads:
 *   N   a native blocking poll (pollOnce), forever: acquire ownership, read
 *       the epoch, release ownership around the wait; the monitor's wait
 *       re-arms the nodes on the re-arm list, sleeps until a CQE is
 *       posted, and reaps it, all without ownership; take ownership back,
 *       dispatch, release. NN=2 runs two of them.
 *   G   the GLib thread, forever: prepare (reads the epoch, re-arms the
 *       list, without ownership), GLib's poll (returns when the ring has a
 *       CQE), check (tryAcquireOrDefer; reaps under ownership into its
 *       list), dispatch (tryAcquireOrDefer again: if another thread took
 *       ownership in between, the list check collected is dropped).
 *       NO_GLIB leaves it out.
 *   R   may remove the handler (or never does): from a thread that does
 *       not own the context, then waits for running callbacks.
 *   P   the peer that writes the fd.
 *   Watch  when nothing can move, a byte left in the fd of a registered
 *       handler is a lost readiness: the watchdog then blocks outside an
 *       end label (an invalid end state).
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code
 * ---------------------------------------------------------------------------
 * AioContext.handlerEpoch -> epoch; FDHandlerNode.dispatchedAt ->
 * dispatchedAt; FDHandlerNode.state -> state; ReadyList.epoch -> each
 * poller's E (its list epoch) and, per entry, ent. The io_uring monitor
 * (the FDMonitor backend being added under Sources/Aio/Monitor/): per node
 * `armed`, `armedEpoch` and membership of the re-arm list (`rearm`), all
 * under the handler table's lock (`tlock`). The kernel's side: `kpoll` (the
 * poll waits for readiness) and `cqe` (a completion posted and not reaped:
 * POLLIN or -ECANCELED).
 *   A1  re-arm (the monitor's wait, gsourcePrepare; every path that may
 *       sleep and every non-blocking look does it first): lock the table;
 *       for a node on the list, registered and not armed: armedEpoch =
 *       handlerEpoch (acquiring load), read BEFORE the submission
 *   A2  submit IORING_OP_POLL_ADD; armed = true. The kernel looks at the
 *       fd at once: readable -> a CQE now, else the poll waits and the
 *       peer's write posts the CQE. Unlock the table.
 *   C1  reap (the native wait without ownership; gsourceCheck under
 *       ownership): lock the table; for each CQE: armed = false; a node
 *       not deleted goes on the re-arm list and into the reaper's ready
 *       list with ent = min(E, armedEpoch); unlock
 * Sources/Aio/Context/AioContext+Poll.swift, pollOnce (proctype N):
 *   ownership.acquire(); epochBeforeLook = handlerEpoch; releaseAll; the
 *   monitor's wait (A1, A2, sleep, C1); reacquire; dispatchAll; release.
 * Sources/Aio/GLib/GSource.swift (proctype G):
 *   gsourcePrepare: glibPollEpoch = handlerEpoch at its top (no
 *   ownership), then A1, A2. GLib's poll on the ring fd. gsourceCheck:
 *   tryAcquireOrDefer; C1; release. gsourceDispatch: tryAcquireOrDefer;
 *   deferred: the collected list is dropped; else dispatchHandlers.
 * Sources/Aio/Handlers/FDHandler.swift, dispatchHandlers (owner only):
 *   D1  node.isDeleted: skip
 *   D2  node.dispatchedAt > ent: look again now (Posix.pollNow); nothing:
 *       skip
 *   D3  runClaimed: state.wrappingAdd(runningUnit); DELETED in the old
 *       value: skip the callback. Else the callback. finishCallback:
 *       state.wrappingSubtract(runningUnit)
 *   D4  markDispatched: handlerEpoch += 1; node.dispatchedAt =
 *       handlerEpoch, AFTER the callback
 * Sources/Aio/Handlers/HandlerTable.swift + FDHandler.swift (proctype R):
 *   R1  remove under the table lock: state.bitwiseOr(DELETED); an armed
 *       poll gets an IORING_OP_POLL_REMOVE
 *   R2  the kernel: a waiting poll completes with -ECANCELED; a poll that
 *       had completed already has its CQE in the ring
 *   R3  waitForCallbacks: until no callback is running (idleMutex and
 *       WAITED are left out: aio_fd_dispatch.pml checks that protocol)
 * State word: DELETED 1, running count in units of 4.
 *
 * The model is sequentially consistent. Each table-lock section is one
 * step, except the re-arm (A1 and A2 are two steps, the table lock held
 * between them): the owner's dispatch, which takes no table lock, and the
 * peer's write can come between the epoch read and the submission.
 *
 * Switches:
 *   FAULT_REAPER_EPOCH      a reaped entry takes the reaper's list epoch
 *                           (ent = E), not min(E, armedEpoch): fails,
 *                           assertion bytes > 0
 *   FAULT_NO_REARM_LIST     no re-arm list: the poller that dispatches an
 *                           entry re-arms its node after the dispatch; a
 *                           GLib dispatch that is skipped re-arms nothing:
 *                           fails, lost readiness (watchdog, lost_byte)
 *   FAULT_DISPATCH_REMOVED  the CQE of a removed node is reaped into the
 *                           list and dispatched: no isDeleted check, no
 *                           claim: fails, assertion !removed
 *   FAULT_EPOCH_BEFORE_CALLBACK  markDispatched before the callback (the
 *                           order of aio_fd_dispatch.pml's default): fails,
 *                           assertion bytes > 0
 *   FAULT_ARM_EPOCH_LATE    armedEpoch read after the submission: fails,
 *                           assertion bytes > 0
 *   ALT_REARM_AT_REAP       re-arm in the reap's table-lock section, before
 *                           the dispatch (not what the code does): passes,
 *                           with a spurious CQE per dispatch
 *   ALT_ARMED_EPOCH_ONLY    ent = armedEpoch, without the list epoch: passes
 *                           (the min is conservative)
 *   NO_REMOVE               no remover
 *   NO_GLIB, NN=n           no GLib thread; n native pollers (1)
 *   WBYTES=n                bytes written (2)
 *
 * Written for this project; not derived from QEMU's models.
 */

#ifndef WBYTES
#define WBYTES 2
#endif
#ifndef NN
#define NN 1
#endif

#define FREE 0
#define GID  8      /* N's ids are 1..NN */
#define RID  9

#define DELETED 1
#define RUN     4

/* a CQE's result */
#define NOCQE    0
#define POLLIN   1
#define CANCELED 2

byte own = FREE;        /* ownership holder */
byte tlock = FREE;      /* the handler table's lock */
byte bytes = 0;         /* readable bytes in the fd */
byte epoch = 0;         /* handlerEpoch */
byte dispatchedAt = 0;  /* node.dispatchedAt */
byte state = 0;         /* node.state */
bool removed = false;   /* R's removeHandler returned */

/* the node's poll. Registration armed it (the fd was empty then). */
bool armed = true;      /* monitor: a POLL_ADD submitted and not reaped */
byte armedEpoch = 0;    /* monitor: handlerEpoch read when it was armed */
bool rearm = false;     /* monitor: on the re-arm list */
bool kpoll = true;      /* kernel: the poll waits for readiness */
byte cqe = NOCQE;       /* kernel: a posted CQE, not reaped yet */

#define REMOVED ((state & DELETED) != 0)

/* the kernel's look at the fd when a POLL_ADD is submitted */
#define SUBMIT \
    if \
    :: bytes > 0 -> cqe = POLLIN \
    :: else -> kpoll = true \
    fi

/* the callback: assert(!removed) where it starts, then read one byte */
inline callback()
{
    assert(!removed);
    atomic { assert(bytes > 0); bytes-- }
}

#define MARK_DISPATCHED atomic { epoch++; dispatchedAt = epoch }

/* A1 + A2 for the node, table lock held across both: cond says whether
 * this caller re-arms it (on the list, or FAULT_NO_REARM_LIST's
 * dispatcher) */
inline arm_node(me, cond, e, go)
{
    atomic { tlock == FREE -> tlock = me;
        go = (cond) && !REMOVED && !armed;
        rearm = false;
        if
#ifdef FAULT_ARM_EPOCH_LATE
        /* FAULT_ARM_EPOCH_LATE: submit first, read the epoch after */
        :: go -> armed = true; SUBMIT
#else
        :: go -> e = epoch                                      /* A1 */
#endif
        :: else -> tlock = FREE
        fi };
    if
    :: atomic { go ->
#ifdef FAULT_ARM_EPOCH_LATE
            armedEpoch = epoch;
#else
            armedEpoch = e; armed = true; SUBMIT;               /* A2 */
#endif
            tlock = FREE; go = false; e = 0 }
    :: atomic { !go -> skip }
    fi
}

/* C1 for one CQE, inside a table-lock section. ALT_REARM_AT_REAP re-arms
 * here at once (A1 + A2 in the same section) */
inline reap_cqe(E, rdy, ent)
{
    armed = false;
    if
#ifdef FAULT_DISPATCH_REMOVED
    :: cqe == POLLIN ->
#else
    :: cqe == POLLIN && !REMOVED ->
#endif
        rdy = true;
#if defined(FAULT_REAPER_EPOCH)
        ent = E;
#elif defined(ALT_ARMED_EPOCH_ONLY)
        ent = armedEpoch;
#else
        ent = (E < armedEpoch -> E : armedEpoch);
#endif
#ifdef ALT_REARM_AT_REAP
        if
        :: !REMOVED -> armedEpoch = epoch; armed = true; cqe = NOCQE; SUBMIT
        :: else -> skip
        fi
#else
#ifndef FAULT_NO_REARM_LIST
        rearm = true
#else
        skip
#endif
#endif
    :: else -> skip
    fi;
    if
    :: !armed -> cqe = NOCQE
    :: else -> skip     /* ALT_REARM_AT_REAP: the new arm may have posted one */
    fi
}

/* dispatchHandlers for the node, under ownership. rdy: the poller's list
 * has the node, with epoch ent */
inline dispatch_node(me, rdy, ent, rev, old, e, go)
{
    if
    :: atomic { rdy -> rev = true };
#ifndef FAULT_DISPATCH_REMOVED
        atomic { if :: REMOVED -> rev = false :: else -> skip fi };     /* D1 */
#endif
        /* D2: dispatched since the poll was armed or the list epoch read:
         * look again, now */
        atomic { if :: rev && dispatchedAt > ent -> rev = (bytes > 0) :: else -> skip fi };
        if
        :: atomic { rev -> skip };
#ifdef FAULT_EPOCH_BEFORE_CALLBACK
            MARK_DISPATCHED;
#endif
#ifdef FAULT_DISPATCH_REMOVED
            callback();
#else
            atomic { old = state; state = state + RUN };                /* D3: claim */
            if
            :: atomic { (old & DELETED) -> skip }
            :: atomic { !(old & DELETED) -> skip };
                callback()
            fi;
            atomic { state = state - RUN; old = 0 };                    /* finishCallback */
#endif
#ifndef FAULT_EPOCH_BEFORE_CALLBACK
            MARK_DISPATCHED;                                            /* D4 */
#endif
            skip
        :: atomic { !rev -> skip }
        fi;
#ifdef FAULT_NO_REARM_LIST
        /* FAULT_NO_REARM_LIST: the dispatcher re-arms what it dispatched */
        arm_node(me, true, e, go);
#endif
        atomic { rdy = false; ent = 0; rev = false }
    :: atomic { !rdy -> skip }
    fi
}

/* native blocking polls */
active [NN] proctype N()
{
    byte me = _pid + 1;
    byte E, ent, e, old;
    bool rdy, rev, go;

    do
    :: atomic { own == FREE -> own = me; E = epoch };           /* acquire; epochBeforeLook */
        atomic { assert(own == me); own = FREE };               /* releaseAll */
        arm_node(me, rearm, e, go);                             /* the wait: re-arm the list */
endwait:
        atomic { cqe != NOCQE && tlock == FREE ->               /* sleep until a CQE; reap */
                 reap_cqe(E, rdy, ent) };
        atomic { own == FREE -> own = me; E = 0 };              /* reacquire */
        dispatch_node(me, rdy, ent, rev, old, e, go);
        atomic { assert(own == me); own = FREE }
    od
}

#ifndef NO_GLIB
/* the GLib thread */
active proctype G()
{
    byte E, ent, e, old;
    bool rdy, rev, go;

    do
    :: E = epoch;                                               /* prepare: glibPollEpoch */
        arm_node(GID, rearm, e, go);                            /* prepare: re-arm the list */
endpoll:
        atomic { cqe != NOCQE -> skip };                        /* GLib's poll: the ring fd */
        /* check: tryAcquireOrDefer; reap under ownership */
        if
        :: atomic { own == FREE -> own = GID };
            atomic { tlock == FREE ->
                     if :: cqe != NOCQE -> reap_cqe(E, rdy, ent) :: else -> skip fi };
            atomic { assert(own == GID); own = FREE; E = 0 }
        :: atomic { own != FREE -> E = 0 }                      /* deferred */
        fi;
        /* dispatch (GLib calls it only if check returned TRUE):
         * tryAcquireOrDefer again */
        if
        :: atomic { rdy && own == FREE -> own = GID };
            dispatch_node(GID, rdy, ent, rev, old, e, go);
            atomic { assert(own == GID); own = FREE }
        :: atomic { rdy && own != FREE -> rdy = false; ent = 0 }  /* deferred: dropped */
        :: atomic { !rdy -> skip }
        fi
    od
}
#endif

#ifndef NO_REMOVE
active proctype R()
{
    bool cancel;

    if
    :: atomic { tlock == FREE ->                                /* R1 */
                state = state | DELETED; cancel = armed };
        atomic {                                                /* R2: the kernel */
            if
            :: cancel && kpoll -> kpoll = false; cqe = CANCELED
            :: else -> skip
            fi;
            cancel = false };
        /* R3. FAULT_DISPATCH_REMOVED: nothing claims, nothing to wait for */
        atomic { state < RUN -> skip };
        removed = true
    :: skip                                                     /* never removes */
    fi
}
#endif

active proctype P()
{
    byte k;

    do
    :: k < WBYTES ->
        atomic {
            bytes++; k++;
            if
            :: kpoll -> kpoll = false; cqe = POLLIN             /* the poll completes */
            :: else -> skip
            fi }
    :: else -> break
    od
}

/* When nothing can move (every poller asleep; any other stuck thread is
 * outside an end label), a byte left in the fd of a registered handler is
 * a lost readiness: the watchdog then blocks outside an end label, so
 * `safety` reports an invalid end state, and the liveness run (which does
 * not check end states) finds the stutter as an acceptance cycle. */
active proctype Watch()
{
end_watch:
    timeout ->
        if
        :: atomic { bytes > 0 && !REMOVED -> skip };
lost:       false                                               /* stuck here */
        :: atomic { !(bytes > 0 && !REMOVED) -> skip }
        fi
}

ltl lost_byte { [] (bytes > 0 -> <> (bytes == 0 || REMOVED)) }
