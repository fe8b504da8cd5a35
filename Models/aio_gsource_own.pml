/*
 * aio_gsource_own.pml: the GSource hooks and the ownership lock. GLib runs
 * our prepare, check and dispatch while it holds its GMainContext (M); a
 * thread that owns the context may iterate M from a BH (it then waits for
 * M). So the hooks must never wait for ownership: they take it if it is
 * free and otherwise leave a "deferred" mark that the owner's release turns
 * into a write of GLib's wake-up fd. README.md ("GSource hooks and
 * ownership") explains the results; run.sh knows the expected verdicts.
 *
 * By hand (pass the same -D flags to every command):
 *     spin -a [-DVARIANT ...] aio_gsource_own.pml
 *     gcc -O0 -DNOCLAIM -DSAFETY -o pan_safety pan.c && ./pan_safety -m200000 -w20
 *     gcc -O1 -DNFAIR=3 -o pan pan.c && ./pan -a -f -m200000 -w20 -N lost_work
 *     spin -t -p -g [-DVARIANT ...] aio_gsource_own.pml      (replay a trail)
 *
 * Threads:
 *   G  the GLib thread: `while true { g_main_context_iteration(M, TRUE) }`.
 *      M is ours for one iteration: acquire M, prepare, poll, check,
 *      dispatch, release M. Besides our GSource, M has one other source X
 *      (a timer or an fd of somebody else) that needs no ownership.
 *   O  a native owner: takes ownership with the blocking acquire(), then
 *      does one of: run the scheduled BH; nothing that touches the BH
 *      (`withOwnership { unrelated code }`); run a BH of its own that waits
 *      for the scheduled BH with one g_main_context_iteration(M, TRUE)
 *      (only while that BH is scheduled; see below); or hold ownership
 *      for a long stretch during which X fires K times. Then it releases.
 *   S  schedules a BH: publishes the work, then notifies.
 *
 * The notify protocol is abstracted: `work` is "a BH is scheduled", `gAdv`
 * is bit 0 of notifyMe (G's prepare took ownership, advertised and may
 * sleep), and S writes G's wake-up fd only if it reads gAdv set after its
 * store of `work` (the Dekker pair of aio_notify_gen.pml, sequentially
 * consistent here). The fd write goes through the wake-pending flag, as in
 * the code (AioContext.wakeDeferredGLib and notify()).
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code
 * ---------------------------------------------------------------------------
 * Sources/Aio/Context/Ownership.swift, OwnershipLock
 *   own, deferred   the state word: FREE, or held (own = holder) with the
 *                   glibDeferred bit. The `contended` bit and the parking of
 *                   blocked acquirers are left out: a blocked acquire is a
 *                   guard `own == FREE`.
 *   HOOK_ACQUIRE_AND  tryAcquireOrDefer(): one atomic step: FREE -> held
 *                   by G, or set glibDeferred and return false. Never waits.
 *   O's acquire     acquire(): waits until FREE, then takes it.
 *   release_own     release()/unlock(): owner = 0, then one exchange of the
 *                   state word to 0; the old word's glibDeferred makes the
 *                   caller (AioContext.releaseOwnership, release(), the
 *                   native poll's releaseAll) call wakeDeferredGLib().
 * Sources/Aio/Context/AioContext.swift, wakeDeferredGLib()
 *   wake_glib       glibWakePending.exchange(true); if it was false, write
 *                   the GLib notifier (gfd). Two steps, as in notify().
 * Sources/Aio/GLib/GSource.swift, proctype G
 *   P1  gsourcePrepare: tryAcquireOrDefer(); deferred: return (FALSE, -1)
 *       (SPEC_DEFER_SLEEPS, the code), or with a bounded timeout (default,
 *       see "The fix" below). Taken: notifyMe |= 1 (gAdv)
 *   P2  look for work (after the SC RMW of bit 0); work: clear bit 0,
 *       return (TRUE, 0); else return (FALSE, -1); release (defer)
 *   GP  GLib's poll, holding M: returns at once if a timeout is 0 or X is
 *       ready, else when gfd is written (or the bounded timeout expires)
 *   C1  gsourceCheck: notifyMe &= ~1; drain gfd if GLib saw it readable;
 *       glibWakePending = false. No ownership needed for these
 *   C2  tryAcquireOrDefer(); taken: ready = a BH is scheduled; release.
 *       GLib dispatches when check returns TRUE, and also when it returns
 *       FALSE but the unix fd had revents
 *   D   gsourceDispatch: tryAcquireOrDefer(); taken: bhPoll() runs the BH;
 *       release. Deferred: return at once
 *   X   the other source's check and dispatch: no ownership
 * proctype O: AioContext.acquire() / withOwnership / release(); its nested
 *   iteration of M runs our hooks on O, which owns the context: they take
 *   ownership recursively, and the nested prepare returns timeout 0
 *   (aio_nested_glib.pml), so the whole nested iteration is one step.
 *   GLib's wait for M (g_main_context_iteration from a thread that does not
 *   own M): the thread sleeps on M's condition until the owner's release
 *   signals it, then takes M if it is free and otherwise returns FALSE
 *   without iterating (oWaitsM).
 *
 * Properties:
 *   safety     no invalid end state (deadlock: every thread blocked, one of
 *              them outside an end label), and the watchdog's assertion: in
 *              a state where nothing can move, S and O are done and G sleeps
 *              in its poll, no BH is scheduled (else: a lost wake-up).
 *              O's long stretch doubles as the starvation check: O waits,
 *              holding ownership, until G has dispatched X K times; if G
 *              ever waited for ownership inside a hook, that wait deadlocks.
 *   lost_work  [] (work -> <> !work), with weak fairness.
 *
 * The fix (default). As first designed, and as the code does, a deferred
 * hook lets GLib poll with the timeout it would have used anyway, -1.
 * But GLib holds M during its poll, and that poll now waits for the
 * owner's release: a wait for ownership while holding M, the order the
 * hooks were meant to avoid. If the owner's BH then iterates M, neither
 * moves (SPEC_DEFER_SLEEPS: invalid end state). Default: a hook that
 * deferred makes GLib poll with a bounded timeout (a retry period). The
 * model lets that timeout expire only while another thread still holds
 * ownership: so the rows check that the release's wake-up alone is enough
 * once ownership is free, and that the timeout is needed only to let go of
 * M. RETRY_ANY_TIME lets it expire at any time, as a real timer does
 * (the code: gsourcePrepare's deferred return, 1 ms).
 *
 * Switches:
 *   SPEC_DEFER_SLEEPS       deferred hooks let GLib sleep with no timeout
 *                           (the design as first specified): fails safety
 *   FAULT_GSOURCE_BLOCKING  the hooks use the blocking acquire() while
 *                           GLib holds M (AIO_FAULT_GSOURCE_BLOCKING): fails
 *   FAULT_NO_DEFER_WAKE     the release ignores glibDeferred: fails; with
 *                           RETRY_ANY_TIME (the code: a 1 ms timer) it
 *                           passes, so in the code it costs latency only
 *                           and has no AIO_FAULT_ switch
 *   NO_O_ITERATES_M         O never iterates M
 *   NO_STRETCH              O never holds ownership for the long stretch
 *   RETRY_ANY_TIME          the bounded timeout may expire at any time
 *   ORUNS=n, K=n            O's passes (default 2), X firings per stretch (2)
 *
 * Written for this project; not derived from QEMU's models.
 */

#ifndef ORUNS
#define ORUNS 2
#endif
#ifndef K
#define K 2
#endif

#define FREE 0
#define TG   1          /* the GLib thread */
#define TO   2          /* the native owner */

byte mOwner = FREE;     /* who holds the GMainContext M */
bool oWaitsM = false;   /* O sleeps in GLib's wait for M */
byte own = FREE;        /* OwnershipLock: the holder, FREE if none */
bool deferred = false;  /* OwnershipLock: the glibDeferred bit */
bool gfd = false;       /* the GLib notifier is readable */
bool gPend = false;     /* glibWakePending */
bool gAdv = false;      /* notifyMe bit 0 */
bool work = false;      /* a BH is scheduled */
bool xPending = false;  /* the other source X is ready */
bool sDone = false;
bool oDone = false;

/* wakeDeferredGLib() and notify()'s GLib write: exchange the wake-pending
 * flag; the thread that set it writes the fd */
inline wake_glib(was)
{
    atomic { was = gPend; gPend = true };
    if
    :: atomic { !was -> gfd = true }
    :: atomic { was -> was = false }
    fi
}

/* OwnershipLock.release() by the holder t, then the caller's
 * wakeDeferredGLib() if the exchange returned glibDeferred */
inline release_own(t, was)
{
#ifdef FAULT_NO_DEFER_WAKE
    /* FAULT_NO_DEFER_WAKE: the hook's mark is lost; nobody wakes GLib */
    atomic { assert(own == t); own = FREE; deferred = false }
#else
    atomic { assert(own == t); was = deferred; own = FREE; deferred = false };
    if
    :: atomic { was -> was = false };
        wake_glib(was)
    :: atomic { !was -> skip }
    fi
#endif
}

/* Guards that open an option are written out (no `else`): an `else` in an
 * `if` that opens an option of another `if` is taken as an `else` of the
 * outer one.
 *
 * A GSource hook on G takes ownership. G never holds it when a hook starts
 * (each hook releases before it returns), so no recursion here. */
#ifdef FAULT_GSOURCE_BLOCKING
/* FAULT_GSOURCE_BLOCKING: acquire() while GLib holds M: wait for the owner */
#define HOOK_ACQUIRE_AND(ok, extra) \
    atomic { own == FREE -> own = TG; ok = true; extra }
#else
/* tryAcquireOrDefer(): never waits */
#define HOOK_ACQUIRE_AND(ok, extra) \
    atomic { if \
             :: own == FREE -> own = TG; ok = true; extra \
             :: own != FREE -> deferred = true; ok = false \
             fi }
#endif

/* the bounded timeout of a poll after a deferred hook */
#if defined(SPEC_DEFER_SLEEPS)
#define RETRY_EXPIRES   false
#elif defined(RETRY_ANY_TIME)
#define RETRY_EXPIRES   deferredPoll
#else
#define RETRY_EXPIRES   (deferredPoll && own != FREE)
#endif

/* G's release of ownership at the end of a hook: nobody defers while G
 * holds ownership (only G's hooks defer), so there is nothing to wake */
#define G_RELEASE       assert(own == TG && !deferred); own = FREE

active proctype G()
{
    bool ok, ready, zero, rev, deferredPoll;

    do
    ::
        atomic { mOwner == FREE -> mOwner = TG };           /* acquire M */
        /* P1 + P2: our prepare. The acquire commutes to the right, so it is
         * merged with setting bit 0 */
        HOOK_ACQUIRE_AND(ok, gAdv = true);
        if
        :: atomic { ok -> ready = work;                     /* P2 */
               if
               :: ready -> gAdv = false; zero = true        /* (TRUE, 0) */
               :: else -> zero = false                      /* (FALSE, -1) */
               fi;
               G_RELEASE }
        :: atomic { !ok -> ready = false; zero = false; deferredPoll = true }
        fi;
        /* GP: GLib's poll, holding M. X's prepare asks for timeout 0 when
         * X is ready. Not an end state only while some case is enabled */
endpoll:
        if
        :: atomic { zero || xPending -> rev = gfd }         /* no sleep */
        :: atomic { gfd -> rev = true }                     /* woken */
        :: atomic { RETRY_EXPIRES -> rev = gfd }            /* the retry timeout */
        fi;
        deferredPoll = false;
        /* our check; GLib skips it after a ready prepare */
        if
        :: atomic { ready -> rev = false }
        :: atomic { !ready -> gAdv = false };               /* C1 */
            atomic { if :: rev -> gfd = false :: else -> skip fi };
            gPend = false;                                  /* C1 */
            HOOK_ACQUIRE_AND(ok, ready = work);             /* C2 */
            atomic {
                if
                :: ok -> G_RELEASE
                :: else -> skip
                fi;
                /* GLib dispatches on check TRUE, or on unix-fd revents */
                ready = ready || rev; rev = false; ok = false }
        fi;
        /* D: our dispatch */
        if
        :: atomic { ready -> ready = false };
            HOOK_ACQUIRE_AND(ok, work = false);             /* D: bhPoll() */
            atomic { if :: ok -> G_RELEASE; ok = false :: else -> skip fi }
        :: atomic { !ready -> skip }
        fi;
        /* X's check and dispatch, then release M (signals O's wait) */
        atomic { xPending = false; mOwner = FREE; oWaitsM = false }
    od
}

active proctype O()
{
    byte r, k;
    bool got, was;

    do
    :: r < ORUNS ->
        r++;
        atomic { own == FREE -> own = TO };                 /* acquire() */
        if
        :: atomic { work -> work = false }                  /* runs the BH */
        :: skip                                             /* withOwnership { } */
#ifndef NO_O_ITERATES_M
        :: /* a BH of O waits for the scheduled BH with one
            * g_main_context_iteration(M, TRUE). Only while that BH is
            * scheduled: with nothing to wait for, a blocking iteration
            * from a second thread hangs in plain GLib too (it sleeps until
            * the thread in M's poll wakes up) */
            atomic {
                work ->
                if
                :: mOwner == FREE -> mOwner = TO; got = true
                :: mOwner != FREE -> oWaitsM = true         /* g_cond_wait */
                fi };
            if
            :: atomic { got -> skip }
            :: atomic { !got && !oWaitsM ->                 /* signalled */
                   if
                   :: mOwner == FREE -> mOwner = TO; got = true
                   :: else -> skip                          /* returns FALSE */
                   fi }
            fi;
            /* the nested iteration: our hooks take ownership recursively,
             * prepare returns timeout 0, dispatch runs what is scheduled;
             * X too. Then release M */
            atomic {
                if
                :: got -> work = false; xPending = false; mOwner = FREE; got = false
                :: else -> skip
                fi }
#endif
#ifndef NO_STRETCH
        :: /* a long stretch under ownership: X fires K times, and each
            * time O waits until G has dispatched it */
            k = 0;
            do
            :: k < K -> xPending = true;
                (!xPending);
                k++
            :: else -> k = 0; break
            od
#endif
        fi;
        release_own(TO, was)
    :: else -> break
    od;
    oDone = true
}

active proctype S()
{
    bool m, was;

    work = true;                                            /* schedule() */
    m = gAdv;                                               /* notify(): bit 0 */
    if
    :: atomic { m -> m = false };
        wake_glib(was)
    :: atomic { !m -> skip }
    fi;
    sDone = true
}

/* When nothing can move: S and O done and G asleep in its poll must mean
 * that nothing is left to do. Any other stuck state is an invalid end state
 * (the watchdog ends, the stuck thread is outside an end label). */
active proctype Watch()
{
end_watch:
    timeout ->
        assert(!(work && sDone && oDone && G[0]@endpoll))
}

ltl lost_work { [] (work -> <> !work) }
