/*
 * Row (a)'s floor for this library's protocol, in C: what a BH that
 * re-schedules itself costs when it pays for the same shared-memory
 * operations as ours and nothing else. The peers' C floor (bench_raw) pays
 * one CAS, one fence and one exchange per callback, plus a malloc and a
 * free; a context that two drivers may run at once cannot do with so few:
 *
 *   schedule   fetch_or of the BH's SCHEDULED|PENDING flags (a pending BH is
 *              not pushed twice, so re-scheduling allocates nothing);
 *              a CAS push onto the context's MPSC stack when it was not
 *              pending;
 *              notify: a sequentially consistent fetch_add of the notify
 *              generation (the GLib thread's and the native sleepers'
 *              "notified since" check), then a load of notify_me.
 *   one poll   ownership taken and given back (a mutex here; both drivers
 *              may poll the same context);
 *              the generation loaded (the poller's snapshot);
 *              an exchange taking the whole stack, reversed to FIFO;
 *              per BH, a fetch_and clearing the flags, then the call.
 *
 * That is 7 locked instructions per callback, through a function pointer,
 * with the BH embedded in static storage (no allocation), on one thread.
 * The library adds what Swift adds on top (reference counting of the BH and
 * of its closure context, the closure call) and its bookkeeping (counters,
 * timers, the fd monitor's idle check).
 *
 * Built by Benchmarks/run.sh with the peers' flags (-O2) and helpers
 * (bench_common.h). Prints "RESULT floorproto a_chain_ops_per_s ...".
 */
#include "bench_common.h"
#include <pthread.h>
#include <stdatomic.h>

enum { SCHEDULED = 1, PENDING = 2 };

struct bh {
    struct bh *next;
    atomic_uint flags;
    void (*cb)(struct bh *);
};

struct context {
    _Atomic(struct bh *) head;
    atomic_ulong generation;
    atomic_uint notify_me;
    pthread_mutex_t ownership;
    unsigned long wakes; /* never taken here: nobody sleeps in row (a) */
};

static struct context ctx = { .ownership = PTHREAD_MUTEX_INITIALIZER };

static void notify(struct context *c)
{
    atomic_fetch_add_explicit(&c->generation, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&c->notify_me, memory_order_seq_cst))
        c->wakes++; /* an eventfd write in the library; unreachable here */
}

static void schedule(struct context *c, struct bh *b)
{
    unsigned old = atomic_fetch_or_explicit(&b->flags, SCHEDULED | PENDING, memory_order_acq_rel);
    if (!(old & PENDING)) {
        struct bh *h = atomic_load_explicit(&c->head, memory_order_relaxed);
        do
            b->next = h;
        while (!atomic_compare_exchange_weak_explicit(&c->head, &h, b, memory_order_release,
                                                      memory_order_relaxed));
    }
    notify(c);
}

/* One non-sleeping pass: the chain always has its next BH queued. */
static unsigned long snapshot;
static void poll_once(struct context *c)
{
    pthread_mutex_lock(&c->ownership);
    snapshot = atomic_load_explicit(&c->generation, memory_order_acquire);
    struct bh *p = atomic_exchange_explicit(&c->head, NULL, memory_order_acquire), *rev = NULL;
    while (p) {
        struct bh *nx = p->next;
        p->next = rev;
        rev = p;
        p = nx;
    }
    while (rev) {
        struct bh *nx = rev->next;
        unsigned old = atomic_fetch_and_explicit(&rev->flags, ~(unsigned)(SCHEDULED | PENDING),
                                                 memory_order_acq_rel);
        if (old & SCHEDULED)
            rev->cb(rev);
        rev = nx;
    }
    pthread_mutex_unlock(&c->ownership);
}

static long count, target;

static void step(struct bh *b)
{
    if (++count < target)
        schedule(&ctx, b);
}

static struct bh chain_bh = { .cb = step };

int main(void)
{
    printf("# C floor of this library's BH protocol (7 locked instructions per callback, no allocation)\n");
    long n = N_SAME;
    count = 0;
    target = n;
    uint64_t t0 = now_ns();
    schedule(&ctx, &chain_bh);
    while (count < target)
        poll_once(&ctx);
    uint64_t t1 = now_ns();
    result("floorproto", "a_chain_ops_per_s", n / ((t1 - t0) / 1e9), "ops/s");
    result("floorproto", "a_chain_ns_per_op", (double)(t1 - t0) / n, "ns/op");
    if (ctx.wakes)
        printf("# unexpected: %lu wake-ups\n", ctx.wakes);
    return 0;
}
