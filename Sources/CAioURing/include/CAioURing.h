/*
 * CAioURing: the part of liburing (Debian: liburing-dev) that swift-aio uses,
 * behind plain C functions. liburing.h defines _GNU_SOURCE and _XOPEN_SOURCE
 * before it includes the C library's headers, which changes types that
 * Swift's Glibc module also defines (fd_set): imported into Swift it breaks
 * the build. So only uring.c includes it; this header needs nothing but the
 * kernel's ABI (<linux/io_uring.h>: struct io_uring_sqe and the IORING_*
 * constants), and the ring itself is opaque here. Every symbol is prefixed
 * `aio_uring_`.
 */
#ifndef AIO_CAIOURING_H
#define AIO_CAIOURING_H

#include <stdint.h>
#include <linux/io_uring.h>

/* user_data tags (Ring.swift): internal entries (poll removes, cancels) and
 * callers' operations; handler polls leave both bits clear. */
static const uint64_t AIO_URING_INTERNAL_TAG = 1ULL << 62;
static const uint64_t AIO_URING_OPERATION_TAG = 1ULL << 63;

/* One completion, copied out of the ring. */
struct aio_uring_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

/* A ring whose completion queue has `cq_entries` entries
 * (IORING_SETUP_CQSIZE); NULL with *error = errno if the kernel refuses. */
void *aio_uring_new(unsigned entries, unsigned cq_entries, int *error);
void aio_uring_free(void *ring);
int aio_uring_fd(void *ring);

/* A free submission entry (zeroed), or NULL if the queue is full. */
struct io_uring_sqe *aio_uring_get_sqe(void *ring);
/* io_uring_submit: entries handed to the kernel, or -errno. */
int aio_uring_submit(void *ring);
unsigned aio_uring_sq_ready(void *ring);
unsigned aio_uring_cq_ready(void *ring);
/* Copies up to `max` completions into `out` and frees their slots;
 * returns how many (flushes the kernel's overflow list when it has one). */
unsigned aio_uring_take(void *ring, struct aio_uring_cqe *out, unsigned max);

/* Entry preparation (liburing's io_uring_prep_*). */
void aio_uring_prep_nop(struct io_uring_sqe *sqe);
void aio_uring_prep_poll_add(struct io_uring_sqe *sqe, int fd, unsigned poll_mask);
void aio_uring_prep_poll_remove(struct io_uring_sqe *sqe, uint64_t target);
void aio_uring_prep_cancel(struct io_uring_sqe *sqe, uint64_t target);
void aio_uring_prep_read(struct io_uring_sqe *sqe, int fd, void *buf, unsigned len, uint64_t offset);
void aio_uring_prep_write(struct io_uring_sqe *sqe, int fd, const void *buf, unsigned len, uint64_t offset);
void aio_uring_prep_fsync(struct io_uring_sqe *sqe, int fd, unsigned flags);

#endif
