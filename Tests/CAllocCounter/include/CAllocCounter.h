#ifndef AIO_ALLOC_COUNTER_H
#define AIO_ALLOC_COUNTER_H
/* Number of heap allocations (malloc, calloc, realloc, aligned variants) made by
 * the calling thread since it started. Only meaningful in a binary that links
 * AllocCounter.c, whose malloc family interposes glibc's. */
/* Returns (unsigned long)-1 when built with a sanitizer, which owns malloc. */
unsigned long aio_test_thread_allocations(void);

/* 1 when built with a sanitizer, which owns malloc: no counting then. */
int aio_test_sanitized(void);
#endif
