/*
 * aio_thread_identity.pml: the context's bounded notify memory and the
 * identity of the threads it remembers. A blocking poll sleeps only if no
 * notify came since the generation remembered for the calling thread; the
 * memory holds CAP threads and evicts the oldest entry (FIFO). Threads come
 * and go: with RECYCLED_KEYS a new thread gets the key of a thread that
 * has exited (a pthread_t that glibc hands out again), by default every
 * thread gets a key never used before (its token). README.md ("Thread
 * identity: `aio_thread_identity.pml`") explains the results; run.sh knows
 * the expected verdicts.
 *
 * By hand (pass the same -D flags to every command):
 *     spin -a [-DVARIANT ...] aio_thread_identity.pml
 *     gcc -O0 -DNOCLAIM -DSAFETY -o pan_safety pan.c && ./pan_safety -m200000 -w20
 *     spin -t -p -g [-DVARIANT ...] aio_thread_identity.pml  (replay a trail)
 *
 * Threads:
 *   T1  key 1: `while !done { poll(blocking: true) }`, at most T1POLLS
 *       polls; then it exits (whether or not it saw `done`), and a new
 *       thread T2 starts: key 1 with RECYCLED_KEYS, else key 3.
 *   T2  `while !done { poll(blocking: true) }` until it sees `done`.
 *   T3  key 2, the same loop, alive from the start: its entries evict
 *       others' when CAP is small.
 *   N   NN notifies for other reasons, then `done = true; notify()`.
 * Every poller must see `done` in the end: a poller asleep when nothing
 * else can move is outside an end label, so a lost wake-up is an invalid
 * end state.
 *
 * ---------------------------------------------------------------------------
 * Model step -> Swift code
 * ---------------------------------------------------------------------------
 * Sources/Aio/Context/ThreadNotifyMemory.swift, NotifyMemory: the tables
 *   mkey[]/mgen[], `used` and `nextEv` (threads, generations,
 *   nextEviction). generation(forThread:) -> lookup; remember(_:forThread:)
 *   -> remember. Capacity 16 in the code, CAP (1 or 2) here.
 * Sources/Aio/System/Lock.swift, currentThreadID() (a C thread-local from CAioSupport): a key is
 *   a token from a process-wide counter, never given to another thread.
 *   RECYCLED_KEYS models the earlier key, pthread_self().
 * Sources/Aio/Context/AioContext+Poll.swift, pollOnce (inline poll):
 *   Q1  under ownership: current = notifyGeneration; seen = the memory's
 *       value for this thread, or current - 1 if unknown (then the poll
 *       does not sleep). All memory accesses are under ownership, so each
 *       lookup and each remember is one step.
 *   Q2  advertise (notifyMe += 2), then (SC) generationNow =
 *       notifyGeneration; generationNow != seen: do not sleep. Else sleep
 *       until the slot is written
 *   Q3  withdraw; drain
 *   Q4  (defer) notifyMemory.remember(notifyGeneration, forThread:)
 *   C   the caller checks `done` after poll returns
 * Sources/Aio/Context/AioContext+Notify.swift, notify(): gen += 1, then
 *   (SC) read the advertisements and write every advertised slot. The
 *   wake-pending flags are left out (aio_notify_gen.pml checks them).
 *
 * The invariant behind it, asserted at Q1 (INV): the generation a poll
 * compares against is never newer than the generation at the caller's
 * last look at its condition. Then a notify that the look missed moved
 * the generation past it, so the poll does not sleep (or the notify sees
 * the advertisement and writes the slot). A recycled key inherits the
 * generation its dead thread remembered, which is older than anything the
 * new thread has looked at: the poll does not sleep once, which is safe.
 *
 * Switches:
 *   RECYCLED_KEYS          T2 gets T1's key: passes
 *   CAP=n                  memory capacity (default 1: every other poll of
 *                          another thread evicts)
 *   FAULT_MEMORY_AT_ENTRY  the memory is refreshed at poll entry: the poll
 *                          compares against the generation current at its
 *                          start, which is newer than the one at the
 *                          caller's check: fails, invalid end state
 *   FAULT_UNKNOWN_SLEEPS   an unknown or evicted key counts as "seen"
 *                          (seen = current): fails, invalid end state
 *   INV_ASSERT             with a FAULT_*: keep the INV assertion (then the
 *                          fault fails on it, before the lost wake-up)
 *   OWNER_CHECK            T1 exits holding ownership (a leaked acquire);
 *                          T2's tryAcquire must not find itself the
 *                          holder: passes with tokens, fails with
 *                          RECYCLED_KEYS (assertion)
 *   NN=n                   unrelated notifies before `done` (default 1)
 *   T1POLLS=n              T1's polls before it exits (default 1)
 *
 * Written for this project; not derived from QEMU's models.
 */

#ifndef CAP
#define CAP 1
#endif
#ifndef NN
#define NN 1
#endif
#ifndef T1POLLS
#define T1POLLS 1
#endif

#define NT 3            /* poller slots: 0 = T1, 1 = T2, 2 = T3 */

#ifdef RECYCLED_KEYS
#define T2KEY 1
#else
#define T2KEY 3
#endif

#if (defined(FAULT_MEMORY_AT_ENTRY) || defined(FAULT_UNKNOWN_SLEEPS)) && !defined(INV_ASSERT)
#define INV(c)  skip
#else
#define INV(c)  assert(c)
#endif

byte gen = 0;           /* notifyGeneration */
bool done = false;      /* the pollers' condition */
bool adv[NT];           /* advertised in notifyMe, registered slot */
bool fd[NT];            /* the slot's eventfd is readable */

byte mkey[CAP];         /* NotifyMemory.threads (0: empty) */
byte mgen[CAP];         /* NotifyMemory.generations */
byte used = 0;
byte nextEv = 0;

#ifdef OWNER_CHECK
byte ownKey = 0;        /* OwnershipLock.owner: the holder's key, 0 if free */
#endif

/* generation(forThread:): known and seen */
inline lookup(k, known, seen, j)
{
    j = 0;
    known = false;
    do
    :: j < CAP && mkey[j] == k -> known = true; seen = mgen[j]; break
    :: j < CAP && mkey[j] != k -> j++
    :: j >= CAP -> break
    od;
    j = 0
}

/* remember(_:forThread:): update, append, or replace the oldest entry */
inline remember(k, g, j)
{
    j = 0;
    do
    :: j < CAP && mkey[j] == k -> mgen[j] = g; break
    :: j < CAP && mkey[j] != k -> j++
    :: j >= CAP ->
        if
        :: used < CAP -> mkey[used] = k; mgen[used] = g; used++
        :: used >= CAP -> mkey[nextEv] = k; mgen[nextEv] = g;
            nextEv = (nextEv + 1) % CAP
        fi;
        break
    od;
    j = 0
}

/* poll(blocking: true) by the thread in slot i with key k. chk: the
 * generation when its caller last looked at `done` (ghost, for INV) */
inline poll(i, k, chk, known, seen, g, j)
{
#ifdef FAULT_MEMORY_AT_ENTRY
    /* FAULT_MEMORY_AT_ENTRY: the thread's entry is written when a poll
     * starts, with the generation current then; the caller looked at its
     * condition before that, so a notify in between is taken as seen */
    d_step { remember(k, gen, j); lookup(k, known, seen, j); g = gen };
#else
    d_step { lookup(k, known, seen, j); g = gen };              /* Q1 */
#endif
#ifdef FAULT_UNKNOWN_SLEEPS
    /* FAULT_UNKNOWN_SLEEPS: unknown (never seen, or evicted) counts as
     * seen = current */
    d_step { if :: !known -> known = true; seen = g :: else -> skip fi };
#endif
    /* unknown: seen = current - 1, never equal to a later generation */
    INV(!(known && seen > chk));
    adv[i] = true;                                              /* Q2 */
    g = gen;
    if
    :: atomic { !known || g != seen -> skip }                   /* no sleep */
    :: atomic { known && g == seen -> skip };
        fd[i]                                                   /* sleep */
    fi;
    atomic { adv[i] = false; fd[i] = false };                   /* Q3 */
    d_step { remember(k, gen, j); known = false; seen = 0; g = 0 }  /* Q4 */
}

proctype T2()
{
    byte chk, seen, g, j;
    bool known;

#ifdef OWNER_CHECK
    /* tryAcquire(): owner == me would mean "I hold it already" (a
     * recursive take), but T2 never acquired: with a recycled key it would
     * enter a hold that a dead thread left behind */
    atomic {
        assert(ownKey != T2KEY);
        if
        :: ownKey == 0 -> ownKey = T2KEY; ownKey = 0            /* took it; released */
        :: ownKey != 0 -> skip                                  /* held: false */
        fi };
#endif
    do
    :: atomic { done -> break }                                 /* C */
    :: atomic { !done -> chk = gen };
        poll(1, T2KEY, chk, known, seen, g, j)
    od
}

active proctype T1()
{
    byte n, chk, seen, g, j;
    bool known;

#ifdef OWNER_CHECK
    ownKey = 1;                 /* acquire(), never released */
#endif
    do
    :: atomic { done || n >= T1POLLS -> break }                 /* C, or exits */
    :: atomic { !done && n < T1POLLS -> chk = gen; n++ };
        poll(0, 1, chk, known, seen, g, j)
    od;
    /* the thread exits; a new one starts */
    run T2()
}

active proctype T3()
{
    byte chk, seen, g, j;
    bool known;

    do
    :: atomic { done -> break }                                 /* C */
    :: atomic { !done -> chk = gen };
        poll(2, 2, chk, known, seen, g, j)
    od
}

inline notify()
{
    gen++;                                                      /* N1 */
    /* N2: write every advertised slot (one step per slot) */
    if :: atomic { adv[0] -> fd[0] = true } :: atomic { !adv[0] -> skip } fi;
    if :: atomic { adv[1] -> fd[1] = true } :: atomic { !adv[1] -> skip } fi;
    if :: atomic { adv[2] -> fd[2] = true } :: atomic { !adv[2] -> skip } fi
}

active proctype N()
{
    byte k;

    do
    :: k < NN -> k++; notify()
    :: k >= NN -> break
    od;
    done = true;
    notify()
}
