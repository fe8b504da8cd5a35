/*
 * Row (b) for libuv with 1 and 2 producer threads, in the shape of the
 * library's rows: the producers are released together and post N in all
 * (N / P each) to a uv_run() loop on its own thread; time runs from the
 * release to the last callback. libuv has no payload-carrying post, so each
 * post is what a libuv program does: a mutex-protected FIFO of malloc'd
 * nodes plus uv_async_send() (which coalesces while a wake-up is pending);
 * the loop's async callback takes the whole FIFO under the mutex and runs it.
 *
 * Built by Benchmarks/run.sh with the flags of ../shared/peers (-O2) and
 * linked with the same helpers (bench_common.h: clock, sizes, RESULT lines).
 * Prints "RESULT libuv b_async_mp<P>_ops_per_s ...".
 */
#include "bench_common.h"
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

struct job {
    struct job *next;
};

static uv_loop_t loop;
static uv_async_t wake, quit;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct job *head, *tail;
static long ran, target;
static uint64_t finished_ns;
static sem_t finished;

static void on_wake(uv_async_t *h)
{
    (void)h;
    pthread_mutex_lock(&lock);
    struct job *list = head;
    head = tail = NULL;
    pthread_mutex_unlock(&lock);
    while (list) {
        struct job *following = list->next;
        free(list);
        if (++ran == target) {
            finished_ns = now_ns();
            sem_post(&finished);
        }
        list = following;
    }
}

static void on_quit(uv_async_t *h)
{
    (void)h;
    uv_close((uv_handle_t *)&wake, NULL);
    uv_close((uv_handle_t *)&quit, NULL);
}

static void post_one(void)
{
    struct job *j = malloc(sizeof *j);
    j->next = NULL;
    pthread_mutex_lock(&lock);
    if (tail)
        tail->next = j;
    else
        head = j;
    tail = j;
    pthread_mutex_unlock(&lock);
    uv_async_send(&wake);
}

static atomic_int go;
static long per_producer;

static void *producer(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&go, memory_order_acquire))
        ;
    for (long i = 0; i < per_producer; i++)
        post_one();
    return NULL;
}

static void *run_loop(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static void flood(int producers, int report)
{
    long n = N_CROSS / producers * producers;
    pthread_t threads[8];
    struct fdcount_snap s0, s1;
    char name[64];

    per_producer = n / producers;
    ran = 0;
    target = n;
    atomic_store(&go, 0);
    for (int p = 0; p < producers; p++)
        pthread_create(&threads[p], NULL, producer, NULL);
    sleep_us(1000);
    counters(&s0);
    uint64_t t0 = now_ns();
    atomic_store_explicit(&go, 1, memory_order_release);
    sem_wait(&finished);
    counters(&s1);
    for (int p = 0; p < producers; p++)
        pthread_join(threads[p], NULL);
    if (!report)
        return;
    snprintf(name, sizeof name, "b_async_mp%d_ops_per_s", producers);
    result("libuv", name, n / ((finished_ns - t0) / 1e9), "ops/s");
    snprintf(name, sizeof name, "b_async_mp%d", producers);
    result_counts("libuv", name, &s0, &s1, n);
}

int main(void)
{
    pthread_t loop_thread;
    uv_loop_init(&loop);
    uv_async_init(&loop, &wake, on_wake);
    uv_async_init(&loop, &quit, on_quit);
    sem_init(&finished, 0, 0);
    pthread_create(&loop_thread, NULL, run_loop, NULL);
    sleep_us(1000);

    /* Untimed warm-ups first, as the other peers' timed runs follow a
     * warm-up: the first flood of a process pays for growing its heap. */
    for (int producers = 1; producers <= 2; producers++) {
        flood(producers, 0);
        flood(producers, 1);
    }

    uv_async_send(&quit);
    pthread_join(loop_thread, NULL);
    uv_loop_close(&loop);
    return 0;
}
