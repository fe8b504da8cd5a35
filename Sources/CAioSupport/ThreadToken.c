#include <stdatomic.h>
#include <sys/prctl.h>
#include "CAioSupport.h"

__thread uintptr_t aio_thread_token_storage;

/* The last token handed out; 2^64 threads before it wraps. */
static _Atomic uintptr_t aio_last_thread_token;

uintptr_t aio_thread_token_assign(void) {
    uintptr_t token = atomic_fetch_add_explicit(&aio_last_thread_token, 1, memory_order_relaxed) + 1;
    aio_thread_token_storage = token;
    return token;
}

static __thread int aio_timer_slack_tightened;

void aio_tighten_timer_slack_once(void) {
    if (aio_timer_slack_tightened) return;
    aio_timer_slack_tightened = 1;
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
}
