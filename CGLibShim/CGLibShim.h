/*
 * CGLibShim: GLib plus the pieces of Linux that Swift's Glibc module does not
 * expose. Only declarations, constants and static inline helpers live here;
 * every symbol we add is prefixed `aio_shim_`.
 *
 * Never #define a feature macro (_GNU_SOURCE) in this header: it changes the
 * layout of types shared with the Glibc module and breaks the build. GNU-only
 * functions are declared below under our own name with an asm label that binds
 * them to the real glibc symbol.
 */
#ifndef AIO_CGLIBSHIM_H
#define AIO_CGLIBSHIM_H

#include <glib.h>
#include <glib-unix.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>
#include <dlfcn.h>

/* GLib's TRUE and G_SOURCE_CONTINUE are macros Swift cannot import. */
static const gboolean AIO_SHIM_TRUE = 1;
static const gboolean AIO_SHIM_FALSE = 0;

/*
 * The GSource an AioContext attaches to GLib: GLib's struct first, then one
 * pointer back to the Swift owner and the tags of its fds (GSource.swift).
 */
typedef struct {
    GSource source;
    void *owner;           /* Unmanaged<AioContext>, +1 released in finalize */
    gpointer notifier_tag; /* AIO_FAULT_SHARED_FD only: the shared eventfd's tag;
                              GLib is woken through its own wake-up fd */
    gpointer timer_tag;    /* the timerfd's tag (sub-ms timers), once armed */
} AioShimSource;

/*
 * The GSource that runs Swift's main queue (MainQueuePump.swift): GLib's
 * struct, the tag of libdispatch's main-queue eventfd, and whether that fd is
 * currently polled (only while the main thread iterates).
 */
typedef struct {
    GSource source;
    gpointer fd_tag;
    int armed;
} AioShimPumpSource;

/* gettid(2); glibc declares it only under _GNU_SOURCE. */
extern pid_t aio_shim_gettid(void) __asm__("gettid");

/* ppoll(2) with a nanosecond timeout. glibc declares it only under _GNU_SOURCE. */
extern int aio_shim_ppoll(struct pollfd *fds, nfds_t nfds,
                          const struct timespec *timeout,
                          const sigset_t *sigmask) __asm__("ppoll");

/* prctl(2) is variadic, which Swift cannot call: set the calling thread's
 * timer slack (the kernel's default 50 us makes every timed wait late). */
static inline int aio_shim_set_timer_slack_ns(unsigned long ns) {
    return prctl(PR_SET_TIMERSLACK, ns, 0UL, 0UL, 0UL);
}

/* pthread_setname_np(3), also GNU-only. */
extern int aio_shim_pthread_setname_np(pthread_t thread, const char *name)
    __asm__("pthread_setname_np");

#endif
