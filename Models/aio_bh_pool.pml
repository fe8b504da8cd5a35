/*
 * aio_bh_pool.pml: the context's pool of one-shot BH nodes.
 *
 * A one-shot used to cost one heap allocation: its BH. The pool recycles
 * them. What the model checks is the pool's own protocol, next to the BH
 * list it feeds (BHList.swift, OneshotPool.swift):
 *
 *  - Producers (any thread) take a node: one acquiring EXCHANGE takes the
 *    whole free stack; the producer keeps its first node and gives the rest
 *    back with a CAS that expects the stack empty. If a recycle landed in
 *    between, it takes that chain too (EXCHANGE), walks it to its tail,
 *    splices the rest behind it and tries again. A producer never reads the
 *    `next` of a node it does not own, so there is no ABA. An empty stack
 *    means: allocate (`allocated` counts the pool's nodes alive).
 *  - The producer fills the node and pushes it on the pending stack (the BH
 *    list's releasing CAS).
 *  - The dispatcher (the owner) takes the pending stack, runs each node,
 *    and recycles it into a private chain, pushed on the free stack with
 *    one CAS at the end of the pass. Only the owner counts (`pooled`): +1
 *    per node made for a post that it recycles, -1 per node it frees. A
 *    node a producer took from the free stack (the producer marks it:
 *    BHFlags.pooled in the code) stays counted while in flight. The pool
 *    has no fixed size (a flood that outruns the loop takes every node
 *    back); at the end of a pass that recycled posts, if `pooled` is over
 *    `keep` (CAP, or DF times the posts the pass recycled if more) and
 *    every post of the pass found a node in the pool (none was made for
 *    it), the dispatcher trims: it takes the free stack as any taker does
 *    (EXCHANGE), frees nodes while over `keep` and gives the rest back as
 *    producers do; the pass's chain is kept. On its way to a sleep
 *    (nothing pending) it trims the same way to CAP. (The code
 *    used to free while more than CAP nodes were alive, a count every
 *    producer and the owner wrote.) The dispatch does no flag operation on
 *    a one-shot: nobody but its producer, the lists and the dispatcher
 *    ever holds its node.
 *
 * Properties (safety): a node taken from the free stack is free (nobody
 * else holds it, it is on no list); every node the dispatcher pops is
 * pending and holds the callback its producer wrote; every post runs
 * exactly once (a lost post leaves the dispatcher blocked: invalid end
 * state); at the end every node alive is on the free stack, the owner's
 * count is exact, and once the loop has gone to sleep (which trims) no
 * more than CAP nodes are alive.
 *
 * Variant that must fail:
 *  - BUG_POP_CAS: the textbook Treiber pop (read head, read head.next, CAS
 *    head -> next). With recycling, a node can leave and come back between
 *    the two reads (ABA): two producers then hold one node.
 *  - BUG_MARK_FRESH: a producer marks a node it allocated as taken from
 *    the pool, so the owner's count goes down for a node it never
 *    counted: its count ends below the nodes it holds.
 *  - BUG_NO_TRIM: no trim; the flood's nodes stay (more than CAP alive).
 * Model-only switch:
 *  - CAP=n: the nodes the pool keeps after a trim (default 2).
 *  - DF=n: the demand factor (default 1, so that trims happen mid-run;
 *    the code's 4 only moves the threshold).
 */

#ifndef NPROD
#define NPROD 2
#endif
#ifndef K
#define K 2            /* posts per producer */
#endif
#ifndef CAP
#define CAP 2
#endif
#ifndef DF
#define DF 1           /* the code keeps 4 passes' demand; see flush() */
#endif
#define TOTAL (NPROD * K)
#define NNODES (TOTAL + 1)   /* index 0 is nil */

#define S_UNUSED 0   /* never allocated, or freed */
#define S_FREE   1   /* on the free stack, or in the dispatcher's recycle chain */
#define S_HELD   2   /* a producer fills it */
#define S_PEND   3   /* on the pending stack or in the dispatch queue */
#define S_RUN    4   /* the dispatcher runs it */

byte state[NNODES];
byte next[NNODES];
byte payload[NNODES];     /* "the callback": which post it carries */
byte freeHead = 0;
byte pendHead = 0;
byte allocated = 0;
byte pooled = 0;          /* the owner's count; see above */
bool fromPool[NNODES];    /* BHFlags.pooled */
byte ran = 0;
byte producersDone = 0;
bool done[TOTAL + 1];     /* post ids start at 1 */

/* Give a chain the caller owns back: CAS expecting empty; on failure take
 * what was pushed meanwhile, splice the chain behind it. Producers after a
 * take, and the dispatcher after a trim. */
inline give_back(rest, more, tail, ok)
{
    do
    :: rest == 0 -> break
    :: rest != 0 ->
        atomic {
            if
            :: freeHead == 0 -> freeHead = rest; ok = true
            :: else -> ok = false
            fi
        }
        if
        :: ok -> break
        :: else ->
            atomic { more = freeHead; freeHead = 0 }
            if
            :: more != 0 ->
                tail = more;
                do
                :: next[tail] != 0 -> tail = next[tail]
                :: else -> break
                od;
                next[tail] = rest;
                rest = more
            :: else -> skip
            fi
        fi
    od
}

/* Producer p posts K one-shots, ids p*K+1 .. p*K+K. */
proctype Producer(byte p) {
    byte k = 0, node, rest, more, tail, cur, id;
    bool ok;
    do
    :: k == K -> break
    :: k < K ->
        id = p * K + k + 1;
#ifdef BUG_POP_CAS
        /* Treiber pop: read head, its next, CAS. */
retry_pop:
        node = freeHead;
        if
        :: node != 0 ->
            rest = next[node];
            atomic {
                if
                :: freeHead == node -> freeHead = rest; ok = true
                :: else -> ok = false
                fi
            }
            if
            :: !ok -> goto retry_pop
            :: else -> skip
            fi
        :: else -> skip
        fi;
#else
        /* Take everything (acquiring EXCHANGE), keep the first node. */
        atomic { node = freeHead; freeHead = 0 }
        if
        :: node != 0 ->
            rest = next[node];
            give_back(rest, more, tail, ok)
        :: else -> skip
        fi;
#endif
        if
        :: node != 0 -> fromPool[node] = true
        :: node == 0 ->
            /* Allocate a fresh node. */
            atomic {
                cur = 1;
                do
                :: state[cur] == S_UNUSED -> break
                :: else -> cur++; assert(cur < NNODES)
                od;
                node = cur;
                state[node] = S_FREE;
                allocated++
            };
#ifdef BUG_MARK_FRESH
            fromPool[node] = true
#else
            fromPool[node] = false
#endif
        fi;
        /* The node must be ours alone. */
        assert(state[node] == S_FREE);
        state[node] = S_HELD;
        next[node] = 0;
        payload[node] = id;
        /* Push on the pending stack (releasing CAS loop). */
        do
        :: atomic {
               cur = pendHead;
               next[node] = cur;
           }
           atomic {
               if
               :: pendHead == cur -> pendHead = node; state[node] = S_PEND; ok = true
               :: else -> ok = false
               fi
           }
           if
           :: ok -> break
           :: else -> skip
           fi
        od;
        k++
    od;
    producersDone++
}

/* OneshotPool.trim: take the free stack as any taker does, free nodes
 * while over `keep`, give the rest back as producers do. */
inline trim()
{
    atomic { node = freeHead; freeHead = 0 };
    do
    :: node != 0 && pooled > keep ->
        assert(state[node] == S_FREE);
        nx = next[node];
        atomic { state[node] = S_UNUSED; next[node] = 0; allocated--; pooled-- };
        node = nx
    :: else -> break
    od;
    give_back(node, more, tail, ok)
}

/* The end of a pass (OneshotPool.flush): if the pass recycled posts, all
 * served by the pool, and `pooled` is over `keep`, trim the free stack;
 * then push the pass's chain with one CAS. */
inline flush()
{
#ifndef BUG_NO_TRIM
    keep = DF * recycled;
    if
    :: keep < CAP -> keep = CAP
    :: else -> skip
    fi;
    if
    :: recycled > 0 && pooled > keep && !madeThisPass -> trim()
    :: else -> skip
    fi;
#endif
    madeThisPass = false;
    recycled = 0;
    if
    :: rHead != 0 ->
        do
        :: atomic {
               cur = freeHead;
               next[rTail] = cur
           }
           atomic {
               if
               :: freeHead == cur -> freeHead = rHead; ok = true
               :: else -> ok = false
               fi
           }
           if
           :: ok -> break
           :: else -> skip
           fi
        od
    :: else -> skip
    fi;
    rHead = 0; rTail = 0
}

proctype Dispatcher() {
    byte list, node, nx, rHead = 0, rTail = 0, cur, more, tail;
    byte keep, recycled = 0;
    bool ok, madeThisPass = false;
    do
    :: ran == TOTAL -> break
    :: else ->
        /* On the way to a sleep (nothing pending), the loop trims to CAP
         * (OneshotPool.trimBeforeSleep); then it blocks until something
         * is pending: a lost post is a deadlock. */
        if
        :: pendHead == 0 ->
#ifndef BUG_NO_TRIM
            keep = CAP;
            if
            :: pooled > keep -> trim()
            :: else -> skip
            fi
#else
            skip
#endif
        :: else -> skip
        fi;
        atomic { pendHead != 0 -> list = pendHead; pendHead = 0 }
        do
        :: list == 0 -> break
        :: else ->
            node = list;
            assert(state[node] == S_PEND);
            nx = next[node];
            state[node] = S_RUN;
            /* Run: each post exactly once. */
            assert(payload[node] != 0 && !done[payload[node]]);
            done[payload[node]] = true;
            ran++;
            payload[node] = 0;
            /* Recycle: a node made for this post joins the pool. */
            if
            :: fromPool[node] -> skip
            :: else -> pooled++; madeThisPass = true
            fi;
            state[node] = S_FREE;
            next[node] = rHead;
            if
            :: rHead == 0 -> rTail = node
            :: else -> skip
            fi;
            rHead = node;
            recycled++;
            list = nx
        od;
        flush()
    od;
    /* The loop goes to sleep (nothing pending): it trims what the flood
     * left. */
    (producersDone == NPROD);
#ifndef BUG_NO_TRIM
    keep = CAP;
    if
    :: pooled > keep -> trim()
    :: else -> skip
    fi;
#endif
    /* The end: every post ran; every node alive is on the free stack
     * (none lost, none twice); the owner's count is exact, and no more than
     * CAP nodes are alive. */
    byte onFree = 0;
    cur = freeHead;
    do
    :: cur == 0 -> break
    :: else ->
        assert(state[cur] == S_FREE);
        onFree++;
        assert(onFree <= allocated);
        cur = next[cur]
    od;
    assert(onFree == allocated);
    assert(onFree == pooled);
    assert(allocated <= CAP)
}

init {
    atomic {
        byte i = 0;
        do
        :: i < NPROD -> run Producer(i); i++
        :: else -> break
        od;
        run Dispatcher()
    }
}
