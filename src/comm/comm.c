/* comm.c - the MPI world: init, agreement on errors, reductions, broadcast, abort.
 *
 * Deliberately not here: the gradient allreduce itself (allreduce.c, ring.c, rd.c) and
 * the buckets that drive it during backprop (buckets.c). */
#include "comm/comm_impl.h"
#include "ringtrain/status.h"

#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int rt_comm_init(rt_comm_t **out, int *argc, char ***argv)
{
    int provided;
    /* SERIALIZED: the gradient communication thread and the main thread both call MPI,
     * never at the same time (src/comm/buckets.c keeps them apart). */
    MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    struct rt_comm *c = calloc(1, sizeof *c);
    if (!c) rt_comm_abort(NULL, 1, "cannot allocate the communicator context");
    c->thread_level = provided;
    c->next_label = -1;
    MPI_Comm_dup(MPI_COMM_WORLD, &c->world);
    MPI_Comm_rank(c->world, &c->rank);
    MPI_Comm_size(c->world, &c->size);
    MPI_Comm node;
    MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    *out = c;
    return rt_requests_init_(c);
}

void rt_comm_finalize(rt_comm_t *c)
{
    if (c) {
        rt_requests_free_(c);
        MPI_Comm_free(&c->world);
        free(c);
    }
    MPI_Finalize();
}

int rt_comm_rank(const rt_comm_t *c)
{
    return c->rank;
}

int rt_comm_size(const rt_comm_t *c)
{
    return c->size;
}

int rt_comm_threads_ok(const rt_comm_t *c)
{
    return c->thread_level >= MPI_THREAD_SERIALIZED;
}

int rt_comm_local_size(const rt_comm_t *c)
{
    return c->local_size;
}

int rt_comm_agree_max(rt_comm_t *c, int st, int *vals, int n)
{
    /* Success costs one small integer allreduce; the message travels only on failure.
     * Slot 0 is size - (lowest failing rank), so MAX finds the lowest failing rank. */
    int buf[1 + RT_AGREE_MAX_VALS] = {0};
    if (n < 0 || n > RT_AGREE_MAX_VALS) rt_comm_abort(c, 1, "rt_comm_agree_max: too many values");
    buf[0] = st < 0 ? c->size - c->rank : 0;
    for (int i = 0; i < n; i++)
        buf[1 + i] = vals[i];
    if (c->timeout_s > 0) {
        /* A rank stuck outside every allreduce (in I/O, in a stall) shows here first. */
        MPI_Request req;
        MPI_Iallreduce(MPI_IN_PLACE, buf, 1 + n, MPI_INT, MPI_MAX, c->world, &req);
        struct rt_wait_what what = {-1, "", "agreement (step boundary or set-up check)", 1, 1};
        rt_wait_(c, 1, &req, 0, NULL, &what);
    } else {
        MPI_Allreduce(MPI_IN_PLACE, buf, 1 + n, MPI_INT, MPI_MAX, c->world);
    }
    for (int i = 0; i < n; i++)
        vals[i] = buf[1 + i];
    if (buf[0] == 0) return RT_OK;
    int first = c->size - buf[0];
    struct {
        int code;
        char msg[RT_ERROR_MAX];
    } verdict = {0};
    if (c->rank == first) {
        verdict.code = st;
        snprintf(verdict.msg, sizeof verdict.msg, "%s", rt_error_message(st));
    }
    MPI_Bcast(&verdict, sizeof verdict, MPI_BYTE, first, c->world);
    if (c->rank != first) rt_error_set_message(verdict.msg);
    return verdict.code;
}

int rt_comm_agree(rt_comm_t *c, int st)
{
    return rt_comm_agree_max(c, st, NULL, 0);
}

void rt_comm_sum_f64(rt_comm_t *c, double *vals, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_DOUBLE, MPI_SUM, c->world);
}

void rt_comm_max_f64(rt_comm_t *c, double *vals, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_DOUBLE, MPI_MAX, c->world);
}

/* Integers add exactly in any order, so MPI's own algorithm is as good as ours here: the
 * result is the same bytes whatever it does. In pieces of 4 MiB: Open MPI's MPI_Allreduce
 * falls off a cliff from 16-32 MiB on these machines (algos.c's table: 108 ms at 32 MiB
 * against 7 ms for the ring). */
void rt_comm_max_f32(rt_comm_t *c, float *vals, size_t n)
{
    const size_t piece = (size_t)1 << 30;
    for (size_t off = 0; off < n; off += piece) {
        size_t len = n - off < piece ? n - off : piece;
        MPI_Allreduce(MPI_IN_PLACE, vals + off, (int)len, MPI_FLOAT, MPI_MAX, c->ar);
    }
}

void rt_comm_allgather_f64(rt_comm_t *c, const double *mine, int n, double *all)
{
    MPI_Allgather(mine, n, MPI_DOUBLE, all, n, MPI_DOUBLE, c->world);
}

void rt_comm_allgather_u64(rt_comm_t *c, uint64_t mine, uint64_t *all)
{
    MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, c->world);
}

void rt_comm_bcast(rt_comm_t *c, void *buf, size_t bytes, int root)
{
    const size_t max_chunk = (size_t)1 << 30;
    for (size_t off = 0; off < bytes; off += max_chunk) {
        size_t len = bytes - off < max_chunk ? bytes - off : max_chunk;
        MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, root, c->world);
    }
}

#define BYTES_TAG 77

void rt_comm_send_bytes(rt_comm_t *c, const void *buf, size_t bytes, int dest)
{
    const size_t max_chunk = (size_t)1 << 30;
    for (size_t off = 0; off < bytes; off += max_chunk) {
        size_t len = bytes - off < max_chunk ? bytes - off : max_chunk;
        MPI_Send((const char *)buf + off, (int)len, MPI_BYTE, dest, BYTES_TAG, c->world);
    }
}

void rt_comm_recv_bytes(rt_comm_t *c, void *buf, size_t bytes, int src)
{
    const size_t max_chunk = (size_t)1 << 30;
    for (size_t off = 0; off < bytes; off += max_chunk) {
        size_t len = bytes - off < max_chunk ? bytes - off : max_chunk;
        MPI_Recv((char *)buf + off, (int)len, MPI_BYTE, src, BYTES_TAG, c->world,
                 MPI_STATUS_IGNORE);
    }
}

void rt_comm_barrier(rt_comm_t *c)
{
    MPI_Barrier(c->world);
}

double rt_comm_wtime(void)
{
    return MPI_Wtime();
}

_Noreturn void rt_comm_abort(rt_comm_t *c, int exit_code, const char *fmt, ...)
{
    int rank = 0, size = 1;
    if (c) {
        rank = c->rank;
        size = c->size;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ringtrain: error: [rank %d/%d] ", rank, size);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    abort(); /* MPI_Abort does not return; this tells the compiler so */
}
