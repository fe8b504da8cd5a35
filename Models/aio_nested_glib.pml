/*
 * aio_nested_glib.pml: a GLib iteration nested inside our GSource
 * dispatch. The GLib thread G holds the GMainContext M and, inside
 * gsourceDispatch, ownership of the context (depth 1). A BH that runs
 * there calls g_main_context_iteration(M, TRUE); GLib's ownership of M is
 * recursive, so the nested iteration runs our hooks again on G. Another
 * thread O waits for ownership (the blocking acquire()), and once it has
 * it, writes an fd that the nested iteration polls (an event only O
 * produces). README.md ("Nested GLib iterations") explains the results;
 * run.sh knows the expected verdicts.
 *
 * By hand (pass the same -D flags to every command):
 *     spin -a [-DVARIANT ...] aio_nested_glib.pml
 *     gcc -O0 -DNOCLAIM -DSAFETY -o pan_safety pan.c && ./pan_safety -m200000 -w20
 *     gcc -O1 -DNFAIR=3 -o pan pan.c && ./pan -a -f -m200000 -w20 -N o_owns
 *     spin -t -p -g [-DVARIANT ...] aio_nested_glib.pml      (replay a trail)
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code
 * ---------------------------------------------------------------------------
 * Sources/Aio/Context/Ownership.swift, OwnershipLock: `own` (holder) and
 *   `depth`; acquire() waits until free (a guard); tryAcquireOrDefer()
 *   by the holder is a recursive acquire (depth + 1).
 * Sources/Aio/GLib/GSource.swift, proctype G (the steps of the nested
 * iteration):
 *   N0  g_main_context_iteration(M, TRUE) from the BH: GLib's acquire of M
 *       by its owner is recursive (mDepth + 1)
 *   N1  gsourcePrepare: nested = ownership.isHeldByCurrentThread, read
 *       before tryAcquireOrDefer (a recursive take); release (defer)
 *   N2  nested: clear bit 0, return (FALSE, 0): GLib polls without
 *       sleeping. FAULT_NESTED_SLEEP: return the real timeout (-1);
 *       FAULT_NESTED_LEND: release every level (releaseAll) and return -1
 *   N3  GLib's poll: timeout 0 returns at once, else it waits for the fd
 *       that O writes (event)
 *   N4  gsourceCheck/gsourceDispatch: recursive takes (no effect here).
 *       FAULT_NESTED_LEND: check takes ownership back with the blocking
 *       acquire(), while G holds M
 *   N5  the nested iteration ends: mDepth - 1; the BH returns
 *   D   gsourceDispatch ends: release() of depth 1 frees ownership; the
 *       outer iteration ends: M released (signals O if it waits for M)
 * proctype O: AioContext.acquire() (blocking); then it writes the fd;
 *   then, in some runs, a BH of O iterates M with
 *   g_main_context_iteration(M, TRUE): it waits for M (GLib's waiter: it
 *   sleeps until M's owner releases, then takes M if free, else returns
 *   FALSE). Allowed by the lock order "ownership before GMainContext".
 *   Then O releases ownership.
 *
 * Properties:
 *   safety  no invalid end state (deadlock)
 *   o_owns  <> oHas: O eventually gets ownership (weak fairness)
 *
 * Switches:
 *   FAULT_NESTED_SLEEP   the nested prepare returns -1: G sleeps in the
 *                        nested poll holding ownership, waiting for an fd
 *                        only O writes, and O waits for ownership
 *                        (AIO_FAULT_NESTED_SLEEP): fails
 *   FAULT_NESTED_LEND    the nested prepare lends ownership for the sleep
 *                        and check takes it back with acquire() while G
 *                        holds M; O, which got it meanwhile, iterates M:
 *                        fails (deadlock), the reason lending is rejected
 *   NO_O_ITERATES_M      O never iterates M (with FAULT_NESTED_LEND: passes,
 *                        so it is the lock order that rules lending out)
 *   BH_WAITS_FOR_EVENT   the BH loops `while !event { iteration(M, TRUE) }`:
 *                        a wait for something that needs the ownership it
 *                        holds. No deadlock (safety passes) but O never
 *                        gets ownership: o_owns fails
 *
 * Written for this project; not derived from QEMU's models.
 */

#define FREE 0
#define TG   1
#define TO   2

/* start: G is inside gsourceDispatch of an iteration of M */
byte mOwner = TG;
byte mDepth = 1;
bool oWaitsM = false;   /* O sleeps in GLib's wait for M */
byte own = TG;          /* OwnershipLock holder */
byte depth = 1;         /* its depth */
bool event = false;     /* the fd O writes */
bool oHas = false;      /* O got ownership */

active proctype G()
{
    bool nested, zero;
    byte saved;

#ifdef BH_WAITS_FOR_EVENT
    do
    :: atomic { event -> break }
    :: atomic { !event -> skip };
#endif
    atomic { assert(mOwner == TG); mDepth++ };                  /* N0 */
    /* N1: nested is read first, then the recursive take */
    atomic { nested = (own == TG && depth >= 1); assert(own == TG); depth++ };
#if defined(FAULT_NESTED_SLEEP)
    /* FAULT_NESTED_SLEEP: a real timeout; prepare releases its level */
    atomic { zero = false; depth-- };
#elif defined(FAULT_NESTED_LEND)
    /* FAULT_NESTED_LEND: let go of every level around the sleep */
    atomic { zero = false; depth--; saved = depth; depth = 0; own = FREE };
#else
    atomic { zero = nested; depth-- };                          /* N2 */
#endif
    /* N3: GLib's nested poll; not an end label */
    if
    :: atomic { zero -> zero = false }
    :: atomic { event -> skip }
    fi;
#ifdef FAULT_NESTED_LEND
    /* N4: check takes it back, waiting, while G holds M */
    atomic { own == FREE -> own = TG; depth = saved; saved = 0 };
#endif
    atomic { mDepth--; nested = false };                        /* N5 */
#ifdef BH_WAITS_FOR_EVENT
    od;
#endif
    /* D: the dispatch ends, then the outer iteration */
    atomic { assert(own == TG && depth == 1); depth = 0; own = FREE };
    atomic { assert(mDepth == 1); mDepth = 0; mOwner = FREE; oWaitsM = false }
}

active proctype O()
{
    bool got;

    atomic { own == FREE -> own = TO; depth = 1; oHas = true }  /* acquire() */
    event = true;                                               /* writes the fd */
#ifndef NO_O_ITERATES_M
    if
    :: skip
    :: /* a BH of O: g_main_context_iteration(M, TRUE) */
        atomic {
            if
            :: mOwner == FREE -> mOwner = TO; got = true
            :: mOwner != FREE -> oWaitsM = true                 /* g_cond_wait */
            fi };
        if
        :: atomic { got -> skip }
        :: atomic { !got && !oWaitsM ->                         /* signalled */
               if
               :: mOwner == FREE -> mOwner = TO; got = true
               :: else -> skip                                  /* returns FALSE */
               fi }
        fi;
        /* its iteration: our hooks take ownership recursively; the nested
         * prepare returns 0. Then it releases M */
        atomic { if :: got -> mOwner = FREE; got = false :: else -> skip fi }
    fi;
#endif
    atomic { assert(own == TO); depth = 0; own = FREE }         /* release() */
}

ltl o_owns { <> oHas }
