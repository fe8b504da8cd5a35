/*
 * aio_fd_dispatch.pml: fd handlers driven by two pollers at once, the GLib
 * thread (our GSource) and a native poll. Two promises of
 * AioContext.dispatchHandlers:
 *   1. dispatch once: a readiness that one poller saw and another one's
 *      callback has consumed meanwhile is not dispatched again (the read
 *      callback would find nothing; a blocking read would hang);
 *   2. no callback after removal: once HandlerTable.remove (via
 *      removeHandler) has returned on a thread that does not own the
 *      context, no callback of that handler starts, so the caller may
 *      close the fd.
 * README.md ("Fd dispatch: `aio_fd_dispatch.pml`") explains the results;
 * run.sh knows the expected verdicts.
 *
 * By hand (pass the same -D flags to every command):
 *     spin -a [-DVARIANT ...] aio_fd_dispatch.pml
 *     gcc -O0 -DNOCLAIM -DSAFETY -o pan_safety pan.c && ./pan_safety -m200000 -w20
 *     spin -t -p -g [-DVARIANT ...] aio_fd_dispatch.pml      (replay a trail)
 *
 * One fd, one handler node. `bytes` is what can be read from the fd; W
 * writes WBYTES bytes, one at a time. The read callback reads one byte:
 * assert(bytes > 0) before it does (finding nothing is the defect).
 *
 * Threads:
 *   PG  the GLib thread, NPASS iterations: prepare (reads the epoch), GLib's
 *       poll (sees the fd readable), then check + dispatch, which take
 *       ownership with tryAcquireOrDefer: if another thread owns the
 *       context the pass is dropped (that owner dispatches; GLib is woken
 *       again later, see aio_gsource_own.pml).
 *   PN  a native blocking poll, NPASS times: acquire ownership, read the
 *       epoch, release it around the wait, wait until the fd is readable,
 *       take ownership back, dispatch, release.
 *   R   removes the handler from a thread that does not own the context,
 *       then closes the fd.
 *   W   the peer that writes the fd.
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code
 * ---------------------------------------------------------------------------
 * AioContext.handlerEpoch -> epoch; FDHandlerNode.dispatchedAt ->
 * dispatchedAt; ReadyList.epoch -> each poller's E.
 * Sources/Aio/Context/AioContext+Poll.swift, pollOnce (proctype PN):
 *   ownership.acquire(); epochBeforeLook = handlerEpoch (under ownership);
 *   releaseAll around handlers.wait; reacquire; dispatchAll ->
 *   dispatchHandlers.
 * Sources/Aio/GLib/GSource.swift (proctype PG):
 *   gsourcePrepare: glibPollEpoch = handlerEpoch, read at its top, BEFORE
 *   tryAcquireOrDefer, so without ownership (SPEC_EPOCH_UNOWNED, the code
 *   today). Default: read after tryAcquireOrDefer succeeded; when it is
 *   deferred, E = 0, "unknown", which re-checks any node ever dispatched.
 *   gsourceCheck + gsourceDispatch: tryAcquireOrDefer; glibCollect; ready
 *   .epoch = glibPollEpoch; dispatchAll -> dispatchHandlers. Merged into
 *   one ownership attempt (check's own look changes nothing here).
 * Sources/Aio/Handlers/FDHandler.swift, dispatchHandlers (inline dispatch):
 *   D1  node.isDeleted: skip (a plain load)
 *   D2  node.dispatchedAt > ready.epoch: revents = Posix.pollNow(fd), i.e.
 *       look again now; nothing: skip. Left out by FAULT_STALE_READINESS
 *   D3  handlerEpoch += 1; node.dispatchedAt = handlerEpoch (before the
 *       callback; ALT_EPOCH_AT_END moves it after the callback)
 *   D4  runClaimed: before = state.wrappingAdd(runningUnit); DELETED in
 *       before: finishCallback and skip. Else the callback, then
 *       finishCallback: before = state.wrappingSubtract(runningUnit); if
 *       WAITED in before and it was the last running callback:
 *       callbacksEnded() broadcasts under idleMutex.
 * Sources/Aio/Handlers/HandlerTable.swift + FDHandler.swift (proctype R):
 *   R1  remove(fd:) -> unlink: state.bitwiseOr(DELETED)
 *   R2  waitForCallbacks: the caller does not own the context; a load of
 *       state: no callback running: done. Else waitUntilIdle: lock
 *       idleMutex; loop { old = state.bitwiseOr(WAITED); old has no
 *       running count: break; idleCondition.wait(idleMutex) }; unlock
 *   R3  the caller closes the fd
 * State word: DELETED 1, WAITED 2, running count in units of 4.
 *
 * The model is sequentially consistent; every shared access is one step,
 * except that the owner-only epoch bump is merged (nobody but an owner
 * writes it, and the readers' view of it is the point: it stays a separate
 * step from the callback).
 *
 * Switches:
 *   SPEC_EPOCH_UNOWNED      GLib's prepare reads the epoch before it has
 *                           ownership (as the code does): fails alone,
 *                           assertion bytes > 0
 *                           (the code ships SPEC_EPOCH_UNOWNED+ALT_EPOCH_AT_END)
 *   ALT_EPOCH_AT_END        bump the epoch and set dispatchedAt after the
 *                           callback instead of before: passes, also with
 *                           SPEC_EPOCH_UNOWNED
 *   FAULT_STALE_READINESS   no dispatchedAt check (AIO_FAULT_STALE_READINESS):
 *                           fails, assertion bytes > 0
 *   FAULT_CALLBACK_AFTER_REMOVE  a plain load of DELETED then the callback,
 *                           no claim; the remover does not wait
 *                           (AIO_FAULT_CALLBACK_AFTER_REMOVE): fails,
 *                           assertion !closed
 *   FAULT_WAITED_UNLOCKED   the remover sets WAITED before it locks
 *                           idleMutex: the broadcast can come before it
 *                           sleeps: fails, invalid end state
 *   NO_REMOVE               no remover (the dispatch-once rows alone)
 *   NPASS=n, WBYTES=n       passes per poller (2), bytes written (2)
 *
 * Written for this project; not derived from QEMU's models.
 */

#ifndef NPASS
#define NPASS 2
#endif
#ifndef WBYTES
#define WBYTES 2
#endif

#define FREE 0
#define PGID 1
#define PNID 2
#define RID  3

#define DELETED 1
#define WAITED  2
#define RUN     4

byte own = FREE;        /* ownership holder */
byte bytes = 0;         /* readable bytes in the fd */
byte epoch = 0;         /* handlerEpoch */
byte dispatchedAt = 0;  /* node.dispatchedAt */
byte state = 0;         /* node.state */
bool closed = false;    /* the remover closed the fd */
byte idleMutex = FREE;
bool rSleeps = false;   /* the remover waits on idleCondition */

/* the callback: assert(!closed) where it starts, then read one byte */
inline callback()
{
    assert(!closed);
    atomic { assert(bytes > 0); bytes-- }
}

#define BUMP_EPOCH  atomic { epoch++; dispatchedAt = epoch }

/* finishCallback: the last running callback of a waited-for node wakes the
 * remover, under idleMutex */
inline finish_callback(me, old)
{
    atomic { old = state; state = state - RUN };
    if
    :: atomic { (old & WAITED) && old < 2 * RUN && idleMutex == FREE ->
                idleMutex = me };                               /* lock */
        atomic { rSleeps = false; idleMutex = FREE }            /* broadcast, unlock */
    :: atomic { !((old & WAITED) && old < 2 * RUN) -> skip }
    fi;
    old = 0
}

/* dispatchHandlers for the one node; rev: this poll saw the fd readable
 * (always true here: a poll that saw nothing dispatches nothing) */
inline dispatch_node(me, E, rev, old)
{
    if
    :: atomic { (state & DELETED) -> skip }                     /* D1 */
    :: atomic { !(state & DELETED) -> skip };
#ifndef FAULT_STALE_READINESS
        /* D2: dispatched since this poll read E: look again, now */
        atomic { if :: dispatchedAt > E -> rev = (bytes > 0) :: else -> skip fi };
#endif
        if
        :: atomic { rev -> skip };
#ifndef ALT_EPOCH_AT_END
            BUMP_EPOCH;                                         /* D3 */
#endif
#ifdef FAULT_CALLBACK_AFTER_REMOVE
            /* FAULT_CALLBACK_AFTER_REMOVE: a plain check, then the
             * callback; nothing the remover could see */
            if
            :: atomic { !(state & DELETED) -> skip };
                callback()
            :: atomic { (state & DELETED) -> skip }
            fi;
#else
            atomic { old = state; state = state + RUN };        /* D4: claim */
            if
            :: atomic { (old & DELETED) -> skip }
            :: atomic { !(old & DELETED) -> skip };
                callback()
            fi;
            finish_callback(me, old);
#endif
#ifdef ALT_EPOCH_AT_END
            BUMP_EPOCH;
#endif
            skip
        :: atomic { !rev -> skip }
        fi
    fi;
    rev = false
}

/* the GLib thread */
active proctype PG()
{
    byte k, E, old;
    bool rev;

    do
    :: k < NPASS ->
        k++;
        /* gsourcePrepare */
#ifdef SPEC_EPOCH_UNOWNED
        /* the epoch is read first, without ownership: another thread may
         * be between its D3 and its callback */
        E = epoch;
        atomic { if :: own == FREE -> own = PGID :: own != FREE -> skip fi };
        atomic { if :: own == PGID -> own = FREE :: own != PGID -> skip fi };
#else
        /* tryAcquireOrDefer; taken: read the epoch, release. Deferred:
         * E = 0, unknown */
        atomic {
            if
            :: own == FREE -> own = PGID; E = epoch
            :: own != FREE -> E = 0
            fi };
        atomic { if :: own == PGID -> own = FREE :: own != PGID -> skip fi };
#endif
        /* GLib's poll: returns when the fd is readable */
endpoll:
        atomic { bytes > 0 -> rev = true };
        /* check + dispatch: tryAcquireOrDefer */
        if
        :: atomic { own == FREE -> own = PGID };
            dispatch_node(PGID, E, rev, old);
            atomic { assert(own == PGID); own = FREE }
        :: atomic { own != FREE -> rev = false }                /* deferred */
        fi
    :: else -> break
    od
}

/* a native blocking poll */
active proctype PN()
{
    byte k, E, old;
    bool rev;

    do
    :: k < NPASS ->
        k++;
        atomic { own == FREE -> own = PNID; E = epoch };        /* acquire; epochBeforeLook */
        atomic { assert(own == PNID); own = FREE };             /* releaseAll */
endpoll:
        atomic { bytes > 0 -> rev = true };                     /* handlers.wait */
        atomic { own == FREE -> own = PNID };                   /* reacquire */
        dispatch_node(PNID, E, rev, old);
        atomic { assert(own == PNID); own = FREE }
    :: else -> break
    od
}

#ifndef NO_REMOVE
active proctype R()
{
    byte old;

    atomic { state = state | DELETED };                         /* R1 */
#ifndef FAULT_CALLBACK_AFTER_REMOVE
    if
    :: atomic { state < RUN -> skip }                           /* R2: none running */
    :: atomic { state >= RUN -> skip };
#ifdef FAULT_WAITED_UNLOCKED
        /* FAULT_WAITED_UNLOCKED: the bit (and the count) before the lock:
         * the last callback can end and broadcast before we sleep */
        atomic { old = state; state = state | WAITED };
        atomic { idleMutex == FREE -> idleMutex = RID };
        do
        :: atomic { old >= RUN -> rSleeps = true; idleMutex = FREE };
            atomic { !rSleeps && idleMutex == FREE -> idleMutex = RID };
            atomic { old = state; state = state | WAITED }
        :: atomic { old < RUN -> break }
        od;
#else
        atomic { idleMutex == FREE -> idleMutex = RID };        /* waitUntilIdle */
        do
        :: atomic { old = state; state = state | WAITED };
            if
            :: atomic { old >= RUN -> rSleeps = true; idleMutex = FREE };  /* wait */
                /* woken: take the mutex back */
                atomic { !rSleeps && idleMutex == FREE -> idleMutex = RID }
            :: atomic { old < RUN -> break }
            fi
        od;
#endif
        atomic { assert(idleMutex == RID); idleMutex = FREE }
    fi;
#endif
    closed = true                                               /* R3 */
}
#endif

active proctype W()
{
    byte k;

    do
    :: k < WBYTES -> atomic { bytes++; k++ }
    :: else -> break
    od
}
