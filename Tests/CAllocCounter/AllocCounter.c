/*
 * Interposes the malloc family for the test executable so a test can count the
 * allocations its own thread makes. Each wrapper bumps a thread-local counter
 * and forwards to glibc's internal entry points, so behaviour is unchanged.
 */
#include <stddef.h>
#include <errno.h>
#include "CAllocCounter.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#if defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#    define AIO_SANITIZED 1
#  endif
#endif

#ifdef AIO_SANITIZED
int aio_test_sanitized(void) { return 1; }
#else
int aio_test_sanitized(void) { return 0; }
#endif

#ifdef AIO_SANITIZED
/* The sanitizers own malloc; interposing it here would break them. */
unsigned long aio_test_thread_allocations(void) { return (unsigned long)-1; }
#else
static __thread unsigned long thread_allocations;

unsigned long aio_test_thread_allocations(void) { return thread_allocations; }

void *malloc(size_t size) { thread_allocations++; return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { thread_allocations++; return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { thread_allocations++; return __libc_realloc(p, size); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t align, size_t size) { thread_allocations++; return __libc_memalign(align, size); }
void *aligned_alloc(size_t align, size_t size) { thread_allocations++; return __libc_memalign(align, size); }
int posix_memalign(void **out, size_t align, size_t size) {
    thread_allocations++;
    void *p = __libc_memalign(align, size);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}
#endif
