#include <stdatomic.h>
#include "CAioSupport.h"

__thread uintptr_t aio_thread_token_storage;

/* The last token handed out; 2^64 threads before it wraps. */
static _Atomic uintptr_t aio_last_thread_token;

uintptr_t aio_thread_token_assign(void) {
    uintptr_t token = atomic_fetch_add_explicit(&aio_last_thread_token, 1, memory_order_relaxed) + 1;
    aio_thread_token_storage = token;
    return token;
}
