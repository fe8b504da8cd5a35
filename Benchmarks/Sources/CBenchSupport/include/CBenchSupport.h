#ifndef AIO_BENCH_SUPPORT_H
#define AIO_BENCH_SUPPORT_H
/*
 * Allocation counting for aio-bench. The executable that links this target
 * replaces the malloc family; every replacement bumps a counter and forwards to
 * glibc's own entry points, so behaviour is unchanged.
 *
 *   bench_thread_allocations()  calls made by the calling thread so far
 *   bench_process_allocations() calls made by any thread while counting is on
 *   bench_count_process(on)     switches the process-wide counter (an atomic
 *                               add per call, so it is off during timed runs)
 *
 * "Allocation" = one call of malloc, calloc, realloc, posix_memalign,
 * aligned_alloc, memalign or valloc. bench_alloc_counter_active() is 0 when a
 * sanitizer owns malloc and nothing is counted.
 */
unsigned long bench_thread_allocations(void);
unsigned long bench_process_allocations(void);
void bench_count_process(int on);
int bench_alloc_counter_active(void);

#endif
