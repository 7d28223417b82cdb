/* requests.c - collective requests: options, scratch, the FIFO, blocking and queued calls,
 * waits with a timeout. The algorithms live in their own files behind the table in
 * algos.c (ring.c, rd.c, mpi_ref.c).
 *
 * Each algorithm is a resumable state machine: start() posts the first receives and sends,
 * progress() advances as far as it can without blocking (or, for blocking calls, until
 * done). That single shape serves both ways the trainer may overlap communication with
 * computation: a communication thread making blocking calls, or the compute thread polling
 * rt_comm_test() between layers.
 *
 * Requests: every rank starts the same requests in the same order (DESIGN: every rank runs
 * the same collectives in the same order), they sit in a FIFO and only the head runs, so
 * a group's scratch has one user and MPI collectives on `ar` are issued in the same order
 * everywhere. A request keeps its slot until the caller has seen it complete (rt_comm_test
 * returned 1 or rt_comm_wait returned); a blocking call first drains the FIFO, then runs
 * its own request. Tags carry (request sequence % RT_TAG_REQS, phase), so messages of two
 * consecutive requests or of two phases can never match each other.
 *
 * Not here: MPI for the trainer's metrics and agreement (comm.c). */
#include "comm/comm_impl.h"
#include "ringtrain/status.h"
#include "ringtrain/trace.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Segment and scratch sizes: the measurements are at the top of algos.c. */
#define RT_DEFAULT_SEGMENT_BYTES ((size_t)512 << 10)
/* Recursive doubling moves whole pieces, so scratch is at least this big; larger rd
 * messages (only when forced) run piece by piece. */
#define RT_RD_PIECE_MIN_BYTES ((size_t)1 << 20)
#define RT_SEGMENT_MAX_BYTES  ((size_t)64 << 20)

void rt_add_into_(float *restrict acc, const float *restrict in, int len)
{
    for (int x = 0; x < len; x++)
        acc[x] += in[x];
}

void rt_add_scaled_(float *restrict acc, const float *restrict in, int len, float scale)
{
    for (int x = 0; x < len; x++)
        acc[x] = (acc[x] + in[x]) * scale;
}

void rt_add_into_i64_(int64_t *restrict acc, const int64_t *restrict in, int len)
{
    for (int x = 0; x < len; x++)
        acc[x] += in[x];
}

void rt_scale_(float *buf, size_t n, float scale)
{
    if (scale == 1.0f) return;
    for (size_t i = 0; i < n; i++)
        buf[i] *= scale;
}

/* ---- Groups and scratch ------------------------------------------------------------------ */

static int alloc_scratch(struct rt_group *g, size_t seg_bytes)
{
    size_t seg_elems = seg_bytes / sizeof(float);
    size_t elems = 2 * seg_elems; /* the ring's double buffering (ring.c) */
    if (elems < RT_RD_PIECE_MIN_BYTES / sizeof(float))
        elems = RT_RD_PIECE_MIN_BYTES / sizeof(float);
    size_t bytes = (elems * sizeof(float) + 63) / 64 * 64;
    float *s = aligned_alloc(64, bytes);
    if (!s) return rt_errorf(RT_ERR_NOMEM, "collective scratch: cannot allocate %zu bytes", bytes);
    free(g->scratch);
    g->scratch = s;
    g->scratch_elems = elems;
    g->seg_elems = seg_elems;
    return RT_OK;
}

static int group_init(struct rt_group *g, MPI_Comm comm, size_t seg_bytes)
{
    g->comm = comm;
    MPI_Comm_rank(comm, &g->rank);
    MPI_Comm_size(comm, &g->size);
    g->rd_p2 = 1;
    while (g->rd_p2 * 2 <= g->size)
        g->rd_p2 *= 2;
    g->rd_rem = g->size - g->rd_p2;
    return alloc_scratch(g, seg_bytes);
}

int rt_requests_init_(struct rt_comm *c)
{
    MPI_Comm_dup(c->world, &c->ar);
    c->opts.algorithm = RT_ALLREDUCE_AUTO;
    c->opts.segment_bytes = 0;
    return group_init(&c->all, c->ar, RT_DEFAULT_SEGMENT_BYTES);
}

void rt_requests_free_(struct rt_comm *c)
{
    if (!c) return;
    free(c->all.scratch);
    c->all.scratch = NULL;
    if (c->ar != MPI_COMM_NULL && c->ar != 0) MPI_Comm_free(&c->ar);
}

int rt_comm_configure(rt_comm_t *c, const struct rt_comm_opts *o)
{
    if ((unsigned)o->algorithm > RT_ALLREDUCE_MPI)
        return rt_errorf(RT_ERR_INVAL, "comm.algorithm: unknown value %d", (int)o->algorithm);
    size_t seg = o->segment_bytes ? o->segment_bytes : RT_DEFAULT_SEGMENT_BYTES;
    if (seg % sizeof(float) || seg > RT_SEGMENT_MAX_BYTES)
        return rt_errorf(RT_ERR_INVAL,
                         "comm.segment_kb: %zu bytes is not a multiple of 4 up to %zu MiB", seg,
                         RT_SEGMENT_MAX_BYTES >> 20);
    if (c->qlen || c->slots_used)
        return rt_errorf(RT_ERR_INVAL, "rt_comm_configure: %d requests in flight", c->slots_used);
    if (seg / sizeof(float) != c->all.seg_elems) RT_TRY(alloc_scratch(&c->all, seg));
    c->opts = *o;
    return RT_OK;
}

enum rt_allreduce_algo rt_comm_algorithm(const rt_comm_t *c)
{
    return c->opts.algorithm;
}

/* ---- Requests ---------------------------------------------------------------------------- */

static void req_init(struct rt_comm *c, struct rt_comm_req *r, const struct rt_coll_args *a,
                     int blocking)
{
    memset(r, 0, offsetof(struct rt_comm_req, state_bytes));
    r->a = *a;
    enum rt_allreduce_algo want = a->algo == RT_ALLREDUCE_AUTO ? c->opts.algorithm : a->algo;
    r->a.algo = rt_comm_pick(c, a->op, want, a->n);
    if (!(rt_algo_(r->a.algo)->types & 1u << a->type)) r->a.algo = RT_ALLREDUCE_RING;
    r->alg = rt_algo_(r->a.algo);
    r->g = &c->all;
    r->label = c->next_label;
    c->next_label = -1;
    r->blocking = blocking;
    r->tag = (int)(c->seq % RT_TAG_REQS) * RT_TAG_PHASES;
    c->seq++;
}

/* Starts r if needed and advances it; 1 when complete. One rank has only the scale to
 * apply (an allgather nothing at all). */
static int req_progress(struct rt_comm *c, struct rt_comm_req *r, int block)
{
    if (r->state == RT_REQ_QUEUED) {
        r->state = RT_REQ_ACTIVE;
        r->t_start = rt_trace_on() ? rt_trace_now() : 0;
        if (r->g->size == 1) {
            if (r->a.op != RT_OP_ALLGATHER && r->a.type == RT_TYPE_F32)
                rt_scale_(r->a.buf, r->a.n, r->a.scale);
            r->state = RT_REQ_DONE;
            return 1;
        }
        r->alg->start(c, r);
    }
    if (!r->alg->progress(c, r, block)) return 0;
    r->state = RT_REQ_DONE;
    if (rt_trace_on()) r->alg->trace(r, rt_trace_now());
    return 1;
}

/* Advances the FIFO: the head, then the next once the head is done. With block = 1, returns
 * only when `until` is done (or the FIFO is empty when until == NULL). */
static void queue_progress(struct rt_comm *c, const struct rt_comm_req *until, int block)
{
    while (c->qlen > 0) {
        if (until && until->state == RT_REQ_DONE) return;
        struct rt_comm_req *h = &c->slots[c->queue[c->qhead]];
        if (!req_progress(c, h, block)) return;
        c->qhead = (c->qhead + 1) % RT_MAX_INFLIGHT;
        c->qlen--;
    }
}

static void release(struct rt_comm *c, struct rt_comm_req *r)
{
    r->state = RT_REQ_FREE;
    c->slots_used--;
}

static struct rt_comm_req *slot_of(struct rt_comm *c, rt_comm_req *req)
{
    if (req < c->slots || req >= c->slots + RT_MAX_INFLIGHT || req->state == RT_REQ_FREE)
        rt_comm_abort(c, 1, "collectives: unknown or already completed request %p", (void *)req);
    return req;
}

static void check_part(struct rt_comm *c, const struct rt_coll_args *a)
{
    if (a->part && (a->part[0] != 0 || a->part[c->size] != a->n))
        rt_comm_abort(c, 1, "%s: the cut spans [%zu, %zu) of %zu floats (internal error)",
                      rt_coll_op_name(a->op), a->part[0], a->part[c->size], a->n);
}

rt_comm_req *rt_comm_start(rt_comm_t *c, const struct rt_coll_args *a)
{
    check_part(c, a);
    struct rt_comm_req *r = NULL;
    for (int i = 0; i < RT_MAX_INFLIGHT && !r; i++)
        if (c->slots[i].state == RT_REQ_FREE) r = &c->slots[i];
    if (!r)
        rt_comm_abort(c, 1,
                      "collectives: more than %d requests outstanding (complete each with "
                      "rt_comm_test or rt_comm_wait)",
                      RT_MAX_INFLIGHT);
    req_init(c, r, a, 0);
    r->state = RT_REQ_QUEUED;
    c->slots_used++;
    c->queue[(c->qhead + c->qlen) % RT_MAX_INFLIGHT] = (int)(r - c->slots);
    c->qlen++;
    queue_progress(c, NULL, 0); /* start it now if it is the head */
    return r;
}

int rt_comm_test(rt_comm_t *c, rt_comm_req *req)
{
    struct rt_comm_req *r = slot_of(c, req);
    if (r->state != RT_REQ_DONE) queue_progress(c, r, 0);
    if (r->state != RT_REQ_DONE) return 0;
    release(c, r);
    return 1;
}

void rt_comm_wait(rt_comm_t *c, rt_comm_req *req)
{
    struct rt_comm_req *r = slot_of(c, req);
    queue_progress(c, r, 1);
    release(c, r);
}

void rt_comm_poke(rt_comm_t *c)
{
    queue_progress(c, NULL, 0);
}

void rt_comm_run(rt_comm_t *c, const struct rt_coll_args *a)
{
    check_part(c, a);
    queue_progress(c, NULL, 1); /* earlier requests first: same order on every rank */
    struct rt_comm_req *r = &c->breq;
    req_init(c, r, a, 1);
    r->state = RT_REQ_QUEUED;
    req_progress(c, r, 1);
    r->state = RT_REQ_FREE;
}

static struct rt_coll_args allreduce_args(enum rt_allreduce_algo algo, float *buf, size_t n,
                                          float scale)
{
    return (struct rt_coll_args){RT_OP_ALLREDUCE, algo, buf, n, scale, NULL, RT_TYPE_F32};
}

void rt_comm_allreduce_with(rt_comm_t *c, enum rt_allreduce_algo algo, float *buf, size_t n,
                            float scale)
{
    struct rt_coll_args a = allreduce_args(algo, buf, n, scale);
    rt_comm_run(c, &a);
}

void rt_comm_allreduce(rt_comm_t *c, float *buf, size_t n, float scale)
{
    rt_comm_allreduce_with(c, RT_ALLREDUCE_AUTO, buf, n, scale);
}

rt_comm_req *rt_comm_iallreduce_with(rt_comm_t *c, enum rt_allreduce_algo algo, float *buf,
                                     size_t n, float scale)
{
    struct rt_coll_args a = allreduce_args(algo, buf, n, scale);
    return rt_comm_start(c, &a);
}

rt_comm_req *rt_comm_iallreduce(rt_comm_t *c, float *buf, size_t n, float scale)
{
    return rt_comm_iallreduce_with(c, RT_ALLREDUCE_AUTO, buf, n, scale);
}

/* ---- Blocking waits with a timeout ------------------------------------------------------- */

static _Noreturn void report_hang(struct rt_comm *c, double waited, const struct rt_comm_req *r,
                                  const struct rt_wait_what *w)
{
    if (!r)
        rt_comm_abort(c, 1,
                      "hang: waited %.1f s at an agreement point (a step boundary or a set-up "
                      "check) for ranks that have not arrived; ending the job ([comm] timeout_s "
                      "= %g)",
                      waited, c->timeout_s);
    char bucket[48] = "";
    if (r && r->label >= 0) snprintf(bucket, sizeof bucket, " of bucket %d", r->label);
    char peer[64] = "another rank";
    if (w->peer >= 0) snprintf(peer, sizeof peer, "rank %d (%s)", w->peer, w->role);
    rt_comm_abort(c, 1,
                  "hang: waited %.1f s for %s in the %s%s (%s step %d of %d, %zu floats); "
                  "ending the job ([comm] timeout_s = %g)",
                  waited, peer, rt_coll_op_name(r->a.op), bucket, w->stage, w->step, w->steps,
                  r->a.n, c->timeout_s);
}

int rt_wait_(struct rt_comm *c, int n, MPI_Request *reqs, int any, const struct rt_comm_req *r,
             const struct rt_wait_what *w)
{
    double t0 = MPI_Wtime();
    int idx = 0, flag = 0;
    if (c->timeout_s <= 0) {
        if (any)
            MPI_Waitany(n, reqs, &idx, MPI_STATUS_IGNORE);
        else
            MPI_Waitall(n, reqs, MPI_STATUSES_IGNORE);
    } else {
        for (long spin = 0; !flag; spin++) {
            if (any)
                MPI_Testany(n, reqs, &idx, &flag, MPI_STATUS_IGNORE);
            else
                MPI_Testall(n, reqs, &flag, MPI_STATUSES_IGNORE);
            if (!flag && (spin & 1023) == 1023 && MPI_Wtime() - t0 > c->timeout_s)
                report_hang(c, MPI_Wtime() - t0, r, w);
        }
    }
    double dt = MPI_Wtime() - t0;
    c->blocked_s += dt;
    /* Waiting for data: from the left neighbour in the ring, from the partner in recursive
     * doubling (whose sends and receives complete together). */
    if (w->peer >= 0 && strcmp(w->role, "right neighbour") != 0) c->wait_left_s += dt;
    return idx;
}

void rt_comm_set_timeout(rt_comm_t *c, double seconds)
{
    c->timeout_s = seconds > 0 ? seconds : 0;
}

double rt_comm_timeout(const rt_comm_t *c)
{
    return c->timeout_s;
}

void rt_comm_label_next(rt_comm_t *c, int label)
{
    c->next_label = label;
}

void rt_comm_times(const rt_comm_t *c, struct rt_comm_times *t)
{
    t->blocked_s = c->blocked_s;
    t->wait_left_s = c->wait_left_s;
}
