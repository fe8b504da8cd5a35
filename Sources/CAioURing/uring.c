#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include "CAioURing.h"

void *aio_uring_new(unsigned entries, unsigned cq_entries, int *error) {
    struct io_uring *ring = calloc(1, sizeof *ring);
    if (!ring) { *error = ENOMEM; return NULL; }
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = cq_entries;
    int rc = io_uring_queue_init_params(entries, ring, &params);
    if (rc < 0) { free(ring); *error = -rc; return NULL; }
    return ring;
}

void aio_uring_free(void *ring) {
    io_uring_queue_exit(ring);
    free(ring);
}

int aio_uring_fd(void *ring) { return ((struct io_uring *)ring)->ring_fd; }

struct io_uring_sqe *aio_uring_get_sqe(void *ring) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (sqe) memset(sqe, 0, sizeof *sqe);
    return sqe;
}

int aio_uring_submit(void *ring) { return io_uring_submit(ring); }
unsigned aio_uring_sq_ready(void *ring) { return io_uring_sq_ready(ring); }
unsigned aio_uring_cq_ready(void *ring) { return io_uring_cq_ready(ring); }

unsigned aio_uring_take(void *ring, struct aio_uring_cqe *out, unsigned max) {
    struct io_uring_cqe *batch[64];
    if (max > 64) max = 64;
    unsigned n = io_uring_peek_batch_cqe(ring, batch, max);
    for (unsigned i = 0; i < n; i++) {
        out[i].user_data = batch[i]->user_data;
        out[i].res = batch[i]->res;
        out[i].flags = batch[i]->flags;
    }
    io_uring_cq_advance(ring, n);
    return n;
}

void aio_uring_prep_nop(struct io_uring_sqe *sqe) { io_uring_prep_nop(sqe); }
void aio_uring_prep_poll_add(struct io_uring_sqe *sqe, int fd, unsigned mask) { io_uring_prep_poll_add(sqe, fd, mask); }
void aio_uring_prep_poll_remove(struct io_uring_sqe *sqe, uint64_t target) { io_uring_prep_poll_remove(sqe, target); }
void aio_uring_prep_cancel(struct io_uring_sqe *sqe, uint64_t target) { io_uring_prep_cancel64(sqe, target, 0); }
void aio_uring_prep_read(struct io_uring_sqe *sqe, int fd, void *buf, unsigned len, uint64_t offset) {
    io_uring_prep_read(sqe, fd, buf, len, offset);
}
void aio_uring_prep_write(struct io_uring_sqe *sqe, int fd, const void *buf, unsigned len, uint64_t offset) {
    io_uring_prep_write(sqe, fd, buf, len, offset);
}
void aio_uring_prep_fsync(struct io_uring_sqe *sqe, int fd, unsigned flags) { io_uring_prep_fsync(sqe, fd, flags); }

