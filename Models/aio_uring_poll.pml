/*
 * aio_uring_poll.pml: the io_uring fd monitor (URingMonitor). Each handler
 * node has one ONE-SHOT poll (IORING_OP_POLL_ADD) in the ring; once its
 * completion (CQE) is taken, the node goes on the `toArm` list and is armed
 * again, so that the handler stays level-triggered. Two pollers share the
 * context: a native blocking poll and the GLib thread (our GSource). Three
 * promises:
 *   1. dispatch once: a readiness that a CQE reported and that another
 *      poller's callback has consumed meanwhile is not dispatched again
 *      (the read callback would find nothing; a blocking read would hang);
 *   2. no lost readiness: every byte written is eventually read while the
 *      handler is registered, also when GLib's dispatch is skipped after
 *      its check took the CQE;
 *   3. no callback after removal: once removeHandler has returned on a
 *      thread that does not own the context, no callback of that handler
 *      starts, also for a CQE taken after the removal.
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
 *       the epoch, release ownership around the wait. The wait arms the
 *       nodes on toArm, sleeps until the ring has a CQE, and takes it
 *       (harvest), all without ownership. Take ownership back; take what
 *       GLib's check collected and GLib could not dispatch (the fix, see
 *       SPEC_GLIB_ONLY_COLLECTS); dispatch; arm toArm again
 *       (afterDispatch); release. NN=2 runs two of them.
 *   G   the GLib thread, forever: prepare (reads the epoch; if
 *       tryAcquireOrDefer succeeds, arms toArm), GLib's poll (returns when
 *       the ring has a CQE), check (tryAcquireOrDefer; harvests into the
 *       table's GLib ready set), dispatch (tryAcquireOrDefer again; if
 *       another thread took ownership in between, the ready set stays for
 *       the next check; GLIB_DROPS drops it). NO_GLIB leaves G out.
 *   R   removes the handler, or never does: from a thread that does not
 *       own the context; then waits until no callback runs.
 *   P   the peer that writes the fd.
 *   Watch  when nothing can move, a byte left in the fd of a registered
 *       handler is a lost readiness: the watchdog then blocks outside an
 *       end label (an invalid end state).
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code
 * ---------------------------------------------------------------------------
 * AioContext.handlerEpoch -> epoch; FDHandlerNode.dispatchedAt ->
 * dispatchedAt; FDHandlerNode.state -> state; FDHandlerNode.uringArmed ->
 * armed; FDHandlerNode.armedEpoch -> armedEpoch; URingMonitor.toArm (and
 * armsPending) -> toArm; the handler table's lock -> tlock. A native
 * poll's ReadyList.epoch -> its E, then ent. HandlerTable.glibReady /
 * glibReadyEpoch -> gRdy / gEnt; glibPollEpoch -> G's E; glibReventsEpoch
 * -> rEnt. The kernel: kpoll (the poll waits for readiness) and cqe (a
 * completion posted and not taken: POLLIN or -ECANCELED; the ring fd is
 * readable while there is one).
 * Sources/Aio/Monitor/URingMonitor.swift:
 *   A1  armPending, under the table lock: epoch =
 *       handlerEpoch.load(acquiring), BEFORE the submission; for a node on
 *       toArm that is registered and not armed: uringArmed = true,
 *       armedEpoch = epoch
 *   A2  ring.submitLocked(): the kernel looks at the fd at once: readable
 *       -> a CQE now, else the poll waits and the peer's write posts the
 *       CQE. Then the table lock is released. A1 and A2 are two steps: the
 *       owner's dispatch (no table lock) and the peer's write can come
 *       between the epoch read and the submission.
 *   C1  harvest, under the table lock: a CQE whose node is no longer in
 *       the table (removed) is dropped. Else uringArmed = false, the node
 *       goes on toArm, and a POLLIN result is reported with the node's
 *       armedEpoch: the reaper's list epoch becomes min(E, armedEpoch)
 *   wait: A1-A2 (armPending), ppoll(wake fd, ring fd), C1 (harvest)
 * Sources/Aio/Context/AioContext+Poll.swift, pollOnce (proctype N):
 *   ownership.acquire(); epochBeforeLook = handlerEpoch; releaseAll;
 *   handlers.wait (above); reacquire; dispatchAll: (the fix, not in
 *   de08c64: under the table lock, move glibReady into the ready list,
 *   ready.epoch = min(ready.epoch, glibReadyEpoch)); dispatchHandlers,
 *   then HandlerTable.afterDispatch: if armsPending (read without the
 *   lock), armPending under the table lock; release.
 * Sources/Aio/GLib/GSource.swift + HandlerTable.swift (proctype G):
 *   gsourcePrepare: glibPollEpoch = handlerEpoch at its top (no
 *   ownership); tryAcquireOrDefer; taken: glibPrepare -> armPending.
 *   GLib's poll on the ring fd (HandlerTable's shared GLib fd).
 *   gsourceCheck: tryAcquireOrDefer; glibCheck: harvest into glibReady,
 *   glibReadyEpoch = min(glibReadyEpoch, armedEpoch, pollEpoch); returns
 *   glibReady non-empty and glibReventsEpoch = min(glibReadyEpoch,
 *   pollEpoch). Deferred: FALSE (GLib does not dispatch).
 *   gsourceDispatch: tryAcquireOrDefer; deferred: return (glibReady
 *   stays). Taken: glibCollect (nodes still registered) with ready.epoch =
 *   glibReventsEpoch; dispatchAll.
 * Sources/Aio/Handlers/FDHandler.swift, dispatchHandlers (owner only):
 *   D1  node.isDeleted: skip
 *   D2  node.dispatchedAt > ready.epoch: look again now (Posix.pollNow);
 *       nothing: skip
 *   D3  runClaimed: state.wrappingAdd(runningUnit); DELETED in the old
 *       value: skip the callback. Else the callback. finishCallback:
 *       state.wrappingSubtract(runningUnit)
 *   D4  markDispatched: handlerEpoch += 1; node.dispatchedAt =
 *       handlerEpoch, AFTER the callback
 * Sources/Aio/Handlers/HandlerTable.swift + URingMonitor.removed (R):
 *   R1  remove under the table lock: state.bitwiseOr(DELETED); an armed
 *       poll: uringArmed = false and an IORING_OP_POLL_REMOVE is submitted
 *   R2  the kernel: a waiting poll completes with -ECANCELED; a poll that
 *       had completed already has its CQE in the ring
 *   R3  waitForCallbacks: until no callback is running (idleMutex and
 *       WAITED are left out: aio_fd_dispatch.pml checks that protocol)
 * State word: DELETED 1, running count in units of 4.
 *
 * The model is sequentially consistent. Each table-lock section is one
 * step, except the arming (A1, A2). The ring lock is inside the table
 * lock everywhere here, so it is left out.
 *
 * Switches:
 *   SPEC_GLIB_ONLY_COLLECTS only GLib's dispatch collects glibReady (the
 *                           code of de08c64): safety passes, lost_byte
 *                           fails: GLib's check takes the CQE that woke N,
 *                           N's ownership defers GLib's dispatch, N arms
 *                           the node again, over and over (a livelock)
 *   FAULT_REAPER_EPOCH      a reported entry takes the reaper's list epoch,
 *                           not min(E, armedEpoch): fails, assertion
 *                           bytes > 0
 *   FAULT_NO_REARM_LIST     harvest does not put the node on toArm; the
 *                           poller that dispatches an entry arms its node
 *                           after the dispatch; GLib's skipped dispatch
 *                           arms nothing: fails, lost readiness (deadlock,
 *                           lost_byte)
 *   FAULT_DISPATCH_REMOVED  a removed node's CQE is reported, collected and
 *                           dispatched: no table match, no isDeleted check,
 *                           no claim: fails, assertion !removed
 *   FAULT_EPOCH_BEFORE_CALLBACK  markDispatched before the callback (the
 *                           order of aio_fd_dispatch.pml's default): fails,
 *                           assertion bytes > 0
 *   FAULT_ARM_EPOCH_LATE    armedEpoch read after the submission: fails,
 *                           assertion bytes > 0
 *   ALT_REARM_AT_REAP       harvest arms the node again at once, before
 *                           the dispatch (not the code): passes, with a
 *                           stale CQE per dispatch; also passes with
 *                           SPEC_GLIB_ONLY_COLLECTS and with GLIB_DROPS
 *   ALT_ARMED_EPOCH_ONLY    the entry's epoch is armedEpoch alone, without
 *                           the list epoch: passes
 *   GLIB_DROPS              a skipped GLib dispatch drops the ready set:
 *                           safety passes, lost_byte fails (the livelock
 *                           above; nothing is kept for N to take)
 *   GLIB_ARMS_UNOWNED       GLib's prepare arms toArm before and without
 *                           tryAcquireOrDefer: passes
 *   TIMEOUTS                N's wait and GLib's poll may each return once
 *                           without a CQE (a timeout or a notify)
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

/* the node's poll: `added` put the node on toArm */
bool armed = false;     /* uringArmed: a POLL_ADD submitted, CQE not taken */
byte armedEpoch = 0;    /* handlerEpoch read when it was armed */
bool toArm = true;      /* on URingMonitor.toArm */
bool kpoll = false;     /* kernel: the poll waits for readiness */
byte cqe = NOCQE;       /* kernel: a posted CQE, not taken yet */

/* HandlerTable.glibReady (the node is in it) and glibReadyEpoch */
bool gRdy = false;
byte gEnt = 0;

#define REMOVED ((state & DELETED) != 0)

/* the kernel's look at the fd when a POLL_ADD is submitted */
#define SUBMIT \
    if \
    :: bytes > 0 -> cqe = POLLIN \
    :: else -> kpoll = true \
    fi

/* the epoch a harvested POLLIN is reported with, for a list epoch E */
#if defined(FAULT_REAPER_EPOCH)
#define SEEN(E) (E)
#elif defined(ALT_ARMED_EPOCH_ONLY)
#define SEEN(E) (armedEpoch)
#else
#define SEEN(E) (E < armedEpoch -> E : armedEpoch)
#endif

/* the callback: assert(!removed) where it starts, then read one byte */
inline callback()
{
    assert(!removed);
    atomic { assert(bytes > 0); bytes-- }
}

#define MARK_DISPATCHED atomic { epoch++; dispatchedAt = epoch }

/* armPending for the node (A1 + A2), the table lock held across both.
 * cond: the node is on toArm (or FAULT_NO_REARM_LIST's dispatcher arms
 * it) */
inline arm_node(me, cond, e, go)
{
    atomic { tlock == FREE -> tlock = me;
        go = (cond) && !REMOVED && !armed;
        toArm = false;
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

/* harvest (C1) of the posted CQE, inside a table-lock section: into the
 * list rdy/ent of the caller (a list that already holds the node keeps the
 * lower epoch) */
inline reap_cqe(E, rdy, ent)
{
    if
#ifndef FAULT_DISPATCH_REMOVED
    :: REMOVED -> cqe = NOCQE                   /* no match in the table: dropped */
#endif
    :: else ->
        armed = false;
        if
        :: cqe == POLLIN ->
            ent = (rdy && ent < SEEN(E) -> ent : SEEN(E));
            rdy = true
        :: else -> skip                         /* -ECANCELED */
        fi;
        cqe = NOCQE;
#if defined(ALT_REARM_AT_REAP)
        /* ALT_REARM_AT_REAP: armPending now, in this section */
        if
        :: !REMOVED -> armedEpoch = epoch; armed = true; SUBMIT
        :: else -> skip
        fi
#elif defined(FAULT_NO_REARM_LIST)
        skip
#else
        toArm = true
#endif
    fi
}

/* afterDispatch: armsPending (read without the lock), then armPending */
inline after_dispatch(me, e, go)
{
    if
    :: atomic { toArm -> skip };
        arm_node(me, toArm, e, go)
    :: atomic { !toArm -> skip }
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
        /* FAULT_NO_REARM_LIST: the dispatcher arms what it dispatched */
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
#ifdef TIMEOUTS
    byte early = 1;
#endif

    do
    :: atomic { own == FREE -> own = me; E = epoch };           /* acquire; epochBeforeLook */
        atomic { assert(own == me); own = FREE };               /* releaseAll */
        arm_node(me, toArm, e, go);                             /* wait: armPending */
endwait:
        if
        :: atomic { cqe != NOCQE -> skip }                      /* ppoll: the ring fd */
#ifdef TIMEOUTS
        :: atomic { early > 0 -> early-- }                      /* timeout, notify */
#endif
        fi;
        atomic { tlock == FREE ->                               /* harvest */
                 if :: cqe != NOCQE -> reap_cqe(E, rdy, ent) :: else -> skip fi };
        atomic { own == FREE -> own = me; E = 0 };              /* reacquire */
#ifndef SPEC_GLIB_ONLY_COLLECTS
        /* dispatchAll also takes what GLib's check found and GLib could
         * not dispatch (glibReady, with its epoch) */
        atomic { tlock == FREE ->
            if
            :: gRdy && !REMOVED -> ent = (rdy && ent < gEnt -> ent : gEnt); rdy = true
            :: else -> skip
            fi;
            gRdy = false; gEnt = 0 };
#endif
        dispatch_node(me, rdy, ent, rev, old, e, go);           /* dispatchAll */
        after_dispatch(me, e, go);
        atomic { assert(own == me); own = FREE }
    od
}

#ifndef NO_GLIB
/* the GLib thread */
active proctype G()
{
    byte E, ent, rEnt, e, old;
    bool rdy, rev, go, chk;
#ifdef TIMEOUTS
    byte early = 1;
#endif

    do
    :: E = epoch;                                               /* prepare: glibPollEpoch */
#ifdef GLIB_ARMS_UNOWNED
        arm_node(GID, toArm, e, go);
#else
        if
        :: atomic { own == FREE -> own = GID };                 /* tryAcquireOrDefer */
            arm_node(GID, toArm, e, go);                        /* glibPrepare */
            atomic { assert(own == GID); own = FREE }
        :: atomic { own != FREE -> skip }                       /* deferred (1 ms) */
        fi;
#endif
endpoll:
        if
        :: atomic { cqe != NOCQE -> skip }                      /* GLib's poll: the ring fd */
#ifdef TIMEOUTS
        :: atomic { early > 0 -> early-- }
#endif
        fi;
        /* gsourceCheck */
        if
        :: atomic { own == FREE -> own = GID };
            atomic { tlock == FREE ->                           /* glibCheck */
                if :: cqe != NOCQE -> reap_cqe(E, gRdy, gEnt) :: else -> skip fi;
                chk = gRdy;
                rEnt = (gRdy && gEnt < E -> gEnt : E) };
            atomic { assert(own == GID); own = FREE; E = 0 }
        :: atomic { own != FREE -> E = 0 }                      /* deferred: FALSE */
        fi;
        /* gsourceDispatch, only after a TRUE check */
        if
        :: atomic { chk && own == FREE -> own = GID };
            atomic { tlock == FREE ->                           /* glibCollect */
#ifdef FAULT_DISPATCH_REMOVED
                rdy = gRdy;
#else
                rdy = gRdy && !REMOVED;
#endif
                ent = rEnt; gRdy = false; gEnt = 0; chk = false; rEnt = 0 };
            dispatch_node(GID, rdy, ent, rev, old, e, go);      /* dispatchAll */
            after_dispatch(GID, e, go);
            atomic { assert(own == GID); own = FREE }
        :: atomic { chk && own != FREE -> chk = false; rEnt = 0  /* deferred */
#ifdef GLIB_DROPS
                    ; gRdy = false; gEnt = 0                    /* GLIB_DROPS */
#endif
                  }
        :: atomic { !chk -> skip }
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
                state = state | DELETED; cancel = armed; armed = false };
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
