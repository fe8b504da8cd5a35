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
 *    and recycles it: into a private chain during the pass, pushed on the
 *    free stack with one CAS at the end of the pass; or, while more than
 *    CAP nodes are alive, it frees the node (allocated - 1).
 *
 * Properties (safety): a node taken from the free stack is free (nobody
 * else holds it, it is on no list); every node the dispatcher pops is
 * pending and holds the callback its producer wrote; every post runs
 * exactly once (a lost post leaves the dispatcher blocked: invalid end
 * state); at the end every node alive is on the free stack and no more
 * than CAP + PRODUCERS... are alive.
 *
 * Variant that must fail:
 *  - BUG_POP_CAS: the textbook Treiber pop (read head, read head.next, CAS
 *    head -> next). With recycling, a node can leave and come back between
 *    the two reads (ABA): two producers then hold one node.
 * Model-only switch:
 *  - CAP=n: recycle while at most n nodes are alive (default 2).
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
byte ran = 0;
byte producersDone = 0;
bool done[TOTAL + 1];     /* post ids start at 1 */

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
            /* Give the rest back: CAS expecting empty; on failure take
             * what was pushed meanwhile, splice our rest behind it. */
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
        :: else -> skip
        fi;
#endif
        if
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
            }
        :: else -> skip
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

proctype Dispatcher() {
    byte list, node, nx, rHead = 0, rTail = 0, cur;
    bool ok;
    do
    :: ran == TOTAL -> break
    :: else ->
        /* Blocks until something is pending: a lost post is a deadlock. */
        atomic { pendHead != 0 -> list = pendHead; pendHead = 0 }
        rHead = 0; rTail = 0;
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
            /* Recycle, or free while more than CAP are alive. */
            if
            :: allocated > CAP ->
                atomic { state[node] = S_UNUSED; next[node] = 0; allocated-- }
            :: else ->
                state[node] = S_FREE;
                next[node] = rHead;
                if
                :: rHead == 0 -> rTail = node
                :: else -> skip
                fi;
                rHead = node
            fi;
            list = nx
        od;
        /* One push of the pass's chain (CAS loop). */
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
        fi
    od;
    /* The end: every post ran; every node alive is on the free stack
     * (none lost, none twice), and no more than CAP + NPROD are alive. */
    (producersDone == NPROD);
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
    assert(allocated <= CAP + NPROD)
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
