/*
 * CGIOShim: GIO (GDBus, GFile, GSubprocess, GCancellable) for AioGIO (the
 * GIO async bridge) and the examples. The core library (Aio) never imports it.
 *
 * As in CGLibShim, this header holds includes, constants and static inline
 * helpers for the macros Swift cannot import, and defines no feature macros.
 * Every symbol we add is prefixed `aio_gio_`.
 */
#ifndef AIO_CGIOSHIM_H
#define AIO_CGIOSHIM_H

#include <gio/gio.h>
#include <signal.h>
#include <sys/prctl.h>

/* G_VARIANT_TYPE("...") is a cast macro; Swift needs a function. The string
 * must be a valid type string and live as long as the result is used (a
 * string literal does). */
static inline const GVariantType *aio_gio_variant_type(const gchar *type_string) {
    return (const GVariantType *)type_string;
}

/* A GSpawnChildSetupFunc for GSubprocessLauncher: runs in the child between
 * fork and exec, and asks the kernel to send it SIGTERM when its parent dies,
 * so a helper process (the demo's private dbus-daemon) never outlives us,
 * even if we crash. Written in C because only async-signal-safe code may run
 * there, and prctl(2) is variadic, which Swift cannot call. */
static inline void aio_gio_die_with_parent(gpointer unused) {
    (void)unused;
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0UL, 0UL, 0UL);
}

#endif
