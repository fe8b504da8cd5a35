#ifndef AIO_SUPPORT_H
#define AIO_SUPPORT_H
#include <stdint.h>

/*
 * The calling thread's identity for swift-aio: a token from a process-wide
 * counter, taken the first time the thread asks and never given to another
 * thread (pthread_t values are handed to new threads once one is joined).
 * Kept in a C thread-local so that reading it is one load, not a call.
 */
extern __thread uintptr_t aio_thread_token_storage;

/* Takes the next token for the calling thread and stores it. */
uintptr_t aio_thread_token_assign(void);

static inline uintptr_t aio_thread_token(void) {
    uintptr_t token = aio_thread_token_storage;
    return token != 0 ? token : aio_thread_token_assign();
}

/*
 * Sets the calling thread's timer slack to 1 ns, once per thread: a timerfd
 * armed by a thread expires up to that thread's slack late (50 us by
 * default), and GLib threads arm the context's timerfd.
 */
void aio_tighten_timer_slack_once(void);

#endif
