/*
 * Replaces the malloc family of the aio-bench executable (an executable's own
 * definitions take precedence over libc's for every library in the process,
 * GLib and the Swift runtime included) and forwards to glibc's __libc_*
 * entry points, which never call back into these wrappers.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include "CBenchSupport.h"

#if defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#    define BENCH_NO_COUNTER 1
#  endif
#endif

#ifdef BENCH_NO_COUNTER
unsigned long bench_thread_allocations(void) { return 0; }
unsigned long bench_process_allocations(void) { return 0; }
void bench_count_process(int on) { (void)on; }
int bench_alloc_counter_active(void) { return 0; }
#else

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void __libc_free(void *);

static __thread unsigned long per_thread;
static atomic_ulong process_total;
static atomic_int process_on;

static inline void counted(void)
{
    per_thread++;
    /* Relaxed: a statistic read after the measured threads have been joined
     * or have handed their results over through a semaphore or lock. */
    if (atomic_load_explicit(&process_on, memory_order_relaxed))
        atomic_fetch_add_explicit(&process_total, 1, memory_order_relaxed);
}

unsigned long bench_thread_allocations(void) { return per_thread; }
unsigned long bench_process_allocations(void) { return atomic_load(&process_total); }
void bench_count_process(int on) { atomic_store(&process_on, on); }
int bench_alloc_counter_active(void) { return 1; }

void *malloc(size_t n) { counted(); return __libc_malloc(n); }
void *calloc(size_t k, size_t n) { counted(); return __libc_calloc(k, n); }
void *realloc(void *p, size_t n) { counted(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t a, size_t n) { counted(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { counted(); return __libc_memalign(a, n); }
void *valloc(size_t n) { counted(); return __libc_valloc(n); }

int posix_memalign(void **out, size_t a, size_t n)
{
    counted();
    if (a < sizeof(void *) || (a & (a - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(a, n);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}
#endif
