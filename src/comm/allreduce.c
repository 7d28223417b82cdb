/* allreduce.c - the gradient allreduce front end: options, scratch, algorithm choice, the
 * FIFO of requests, and the MPI_Allreduce / MPI_Iallreduce reference algorithm.
 *
 * The algorithms themselves live in ring.c (bandwidth-optimal, large messages) and rd.c
 * (recursive doubling, small messages). Each is a resumable state machine: start() posts
 * the first receives and sends, progress() advances as far as it can without blocking (or,
 * for blocking calls, until done). That single shape serves both ways the trainer may overlap
 * communication with backward: a communication thread making blocking calls, or the compute
 * thread polling rt_comm_test() between layers.
 *
 * Requests: every rank starts the same requests in the same order (DESIGN: every rank runs
 * the same collectives in the same order), they sit in a FIFO and only the head runs, so
 * the shared scratch has one user and MPI collectives on `ar` are issued in the same order
 * everywhere. A request keeps its slot until the caller has seen it complete (rt_comm_test
 * returned 1 or rt_comm_wait returned); a blocking call first drains the FIFO, then runs
 * its own request. Tags carry (request sequence % RT_TAG_REQS, phase), so messages of two
 * consecutive requests or of two phases can never match each other.
 *
 * Not here: MPI for the trainer's metrics and agreement (comm.c). */
#include "comm/comm_impl.h"
#include "ringtrain/status.h"
#include "ringtrain/trace.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Measured defaults ------------------------------------------------------------------
 * All on the team's 2-core machine, Open MPI 4.1.4 (vader BTL, CMA single copy, eager limit
 * 4 KiB), `ringtrain bench allreduce`, while other jobs shared the machine: figures are noisy
 * (+-20% run to run), so choices rest on repeated runs (best and median of 4-5).
 *
 * Segment size (ring), 2 ranks, busbw GB/s best / median of 4 runs:
 *   segment    16 MiB      32 MiB      64 MiB
 *    64 KiB   3.25/2.72   3.40/2.56   3.16/2.69   per-message overhead dominates
 *   128 KiB   3.73/3.46   3.58/3.24   3.47/2.48
 *   256 KiB   4.83/3.58   4.95/3.60   4.45/3.72
 *   512 KiB   4.42/4.17   4.59/3.83   4.68/3.81   <- default: best medians
 *     1 MiB   4.91/3.60   4.38/3.69   4.36/4.12
 *     2 MiB   4.42/4.26   4.22/3.63   4.48/3.69
 *     4 MiB   3.41/2.98   4.55/3.78   4.51/4.04   too few segments to pipeline at 16 MiB
 * Windows of 2-4 receives x 2-8 sends made no difference beyond the noise.
 *
 * Thresholds, time in us (best of 4 runs; mpi = MPI_Allreduce):
 *             2 ranks                  4 ranks (oversubscribed on 2 cores)
 *   size      rd     mpi    ring       rd      mpi     ring
 *   4 KiB     3.2    3.6    3.6        45      55     104
 *   16 KiB    5.3   16.1   13.4        50     119     164
 *   32 KiB    9.9   15.2   15.0        79     135     174
 *   64 KiB   11.6*  23.1   18.3       121     149     212     (* best of an earlier run)
 *   128 KiB   64     26     30        204     177     223
 *   256 KiB  105     45     45        400     304     340
 *   512 KiB  153     83     91        693     559     531
 *   1 MiB    273    159    176       1273    1006     891
 *   2 MiB    534    353    340       2956    1788    1460
 *   4 MiB   1187    715    732       7047    3603    3834
 *   8 MiB   2568   1807   1612      13207    9131    7624
 *   16 MiB  5752   5087   4336      25364   14613   16527
 *   32 MiB  9722 108334   7047      48765  219437   29342
 *   64 MiB 24096 210858  13755     105408  435583   58974
 * rd wins while its vector fits Open MPI's eager protocol as <= 32 fragments (rd.c); at 2
 * ranks our ring and MPI_Allreduce are within the noise of each other from 64 KiB to 8 MiB
 * (MPI slightly ahead at 128 KiB - 1 MiB in most runs), and MPI_Allreduce collapses from
 * 16-32 MiB on (0.35 GB/s busbw, NOTES.md). At 4 ranks the best-of-4 figures favour the
 * ring from 512 KiB, but a later single run had MPI 35-50% ahead at 1-2 MiB (4 ranks on
 * 2 cores measure time-sharing as much as the network).
 * AUTO nevertheless picks only our own algorithms: rd up to 32 KiB (2 ranks) or 64 KiB
 * (3+ ranks), the ring above. MPI_Allreduce would be 0-20% faster at 128 KiB - 2 MiB on
 * 2 ranks, but a queued request cannot use it (it blocks), Open MPI's MPI_Iallreduce is a
 * different algorithm that is 2x slower here (64 KiB - 8 MiB, measured) and, adding in a
 * different order, gives different bytes: AUTO through MPI would make a polled request and
 * a blocking call with the same inputs disagree in the last bit, breaking the determinism
 * promised in comm.h. rd and the ring give the same bytes in both modes. */
#define RT_DEFAULT_SEGMENT_BYTES ((size_t)512 << 10)
/* Recursive doubling moves whole pieces, so scratch is at least this big; larger rd
 * messages (only when forced) run piece by piece. */
#define RT_RD_PIECE_MIN_BYTES ((size_t)1 << 20)
#define RT_SEGMENT_MAX_BYTES  ((size_t)64 << 20)
/* MPI counts are int: at most 2^30 floats per MPI call. */
#define RT_MPI_MAX_COUNT ((size_t)1 << 30)

static const char *const algo_names[] = {"auto", "ring", "rd", "mpi"};

int rt_allreduce_algo_parse(const char *name, enum rt_allreduce_algo *out)
{
    for (int a = RT_ALLREDUCE_AUTO; a <= RT_ALLREDUCE_MPI; a++)
        if (name && strcmp(name, algo_names[a]) == 0) {
            *out = (enum rt_allreduce_algo)a;
            return 0;
        }
    return -1;
}

const char *rt_allreduce_algo_name(enum rt_allreduce_algo a)
{
    return (unsigned)a <= RT_ALLREDUCE_MPI ? algo_names[a] : "?";
}

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

void rt_scale_(float *buf, size_t n, float scale)
{
    if (scale == 1.0f) return;
    for (size_t i = 0; i < n; i++)
        buf[i] *= scale;
}

/* ---- Scratch ---------------------------------------------------------------------------- */

static int alloc_scratch(struct rt_comm *c, size_t seg_bytes)
{
    size_t seg_elems = seg_bytes / sizeof(float);
    size_t elems = RT_RING_RWIN * seg_elems;
    if (elems < RT_RD_PIECE_MIN_BYTES / sizeof(float))
        elems = RT_RD_PIECE_MIN_BYTES / sizeof(float);
    size_t bytes = (elems * sizeof(float) + 63) / 64 * 64;
    float *s = aligned_alloc(64, bytes);
    if (!s) return rt_errorf(RT_ERR_NOMEM, "allreduce scratch: cannot allocate %zu bytes", bytes);
    free(c->scratch);
    c->scratch = s;
    c->scratch_elems = elems;
    c->seg_elems = seg_elems;
    return RT_OK;
}

int rt_allreduce_init_(struct rt_comm *c)
{
    MPI_Comm_dup(c->world, &c->ar);
    c->opts.algorithm = RT_ALLREDUCE_AUTO;
    c->opts.segment_bytes = 0;
    c->rd_p2 = 1;
    while (c->rd_p2 * 2 <= c->size)
        c->rd_p2 *= 2;
    c->rd_rem = c->size - c->rd_p2;
    return alloc_scratch(c, RT_DEFAULT_SEGMENT_BYTES);
}

void rt_allreduce_free_(struct rt_comm *c)
{
    if (!c) return;
    free(c->scratch);
    c->scratch = NULL;
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
        return rt_errorf(RT_ERR_INVAL, "rt_comm_configure: %d allreduce requests in flight",
                         c->slots_used);
    if (seg / sizeof(float) != c->seg_elems) RT_TRY(alloc_scratch(c, seg));
    c->opts = *o;
    return RT_OK;
}

/* ---- The MPI reference algorithm --------------------------------------------------------- */

static int mpi_progress(struct rt_comm *c, struct rt_allreduce_req *r, int block)
{
    struct rt_mpi_state *m = &r->u.mpi;
    while (m->off < r->n) {
        size_t len = r->n - m->off < RT_MPI_MAX_COUNT ? r->n - m->off : RT_MPI_MAX_COUNT;
        float *p = r->buf + m->off;
        if (r->blocking) {
            /* Blocking calls use the blocking collective: Open MPI's MPI_Iallreduce (libnbc)
             * is a different, slower algorithm than its tuned MPI_Allreduce. */
            MPI_Allreduce(MPI_IN_PLACE, p, (int)len, MPI_FLOAT, MPI_SUM, c->ar);
        } else {
            if (!m->posted) {
                MPI_Iallreduce(MPI_IN_PLACE, p, (int)len, MPI_FLOAT, MPI_SUM, c->ar, &m->req);
                m->posted = 1;
            }
            int flag = 0;
            if (block)
                MPI_Wait(&m->req, MPI_STATUS_IGNORE), flag = 1;
            else
                MPI_Test(&m->req, &flag, MPI_STATUS_IGNORE);
            if (!flag) return 0;
            m->posted = 0;
        }
        rt_scale_(p, len, r->scale);
        m->off += len;
    }
    return 1;
}

/* ---- Requests ---------------------------------------------------------------------------- */

enum rt_allreduce_algo rt_comm_allreduce_pick(const rt_comm_t *c, enum rt_allreduce_algo a,
                                              size_t n)
{
    if (a != RT_ALLREDUCE_AUTO) return a;
    /* Thresholds from the measurements at the top of this file. */
    size_t bytes = n * sizeof(float);
    size_t rd_max = c->size <= 2 ? (size_t)32 << 10 : (size_t)64 << 10;
    return bytes <= rd_max ? RT_ALLREDUCE_RD : RT_ALLREDUCE_RING;
}

static void req_init(struct rt_comm *c, struct rt_allreduce_req *r, enum rt_allreduce_algo algo,
                     float *buf, size_t n, float scale, int blocking)
{
    memset(r, 0, sizeof *r);
    r->label = c->next_label;
    c->next_label = -1;
    r->buf = buf;
    r->n = n;
    r->scale = scale;
    r->algo = rt_comm_allreduce_pick(c, algo, n);
    r->blocking = blocking;
    r->tag = (int)(c->seq % RT_TAG_REQS) * RT_TAG_PHASES;
    c->seq++;
}

/* The finished request on the timeline: a ring's two halves, or one span. */
static void trace_request(const struct rt_comm *c, const struct rt_allreduce_req *r)
{
    double end = rt_trace_now();
    if (r->algo == RT_ALLREDUCE_RING && c->size > 1) {
        double mid = r->u.ring.t_gather > 0 ? r->u.ring.t_gather : end;
        rt_trace_span(RT_TR_REDUCE_SCATTER, r->label, r->t_start, mid);
        rt_trace_span(RT_TR_ALLGATHER, r->label, mid, end);
        return;
    }
    rt_trace_span(r->algo == RT_ALLREDUCE_RD ? RT_TR_RD : RT_TR_MPI_ALLREDUCE, r->label, r->t_start,
                  end);
}

/* Starts r if needed and advances it; 1 when complete. */
static int req_progress(struct rt_comm *c, struct rt_allreduce_req *r, int block)
{
    if (r->state == RT_REQ_QUEUED) {
        r->state = RT_REQ_ACTIVE;
        r->t_start = rt_trace_on() ? rt_trace_now() : 0;
        if (c->size == 1) {
            rt_scale_(r->buf, r->n, r->scale);
            r->state = RT_REQ_DONE;
            return 1;
        }
        if (r->algo == RT_ALLREDUCE_RING) rt_ring_start_(c, r);
        if (r->algo == RT_ALLREDUCE_RD) rt_rd_start_(c, r);
    }
    int done = 0;
    switch (r->algo) {
    case RT_ALLREDUCE_RING:
        done = rt_ring_progress_(c, r, block);
        break;
    case RT_ALLREDUCE_RD:
        done = rt_rd_progress_(c, r, block);
        break;
    default:
        done = mpi_progress(c, r, block);
        break;
    }
    if (done) {
        r->state = RT_REQ_DONE;
        if (rt_trace_on()) trace_request(c, r);
    }
    return done;
}

/* Advances the FIFO: the head, then the next once the head is done. With block = 1, returns
 * only when `until` is done (or the FIFO is empty when until == NULL). */
static void queue_progress(struct rt_comm *c, const struct rt_allreduce_req *until, int block)
{
    while (c->qlen > 0) {
        if (until && until->state == RT_REQ_DONE) return;
        struct rt_allreduce_req *h = &c->slots[c->queue[c->qhead]];
        if (!req_progress(c, h, block)) return;
        c->qhead = (c->qhead + 1) % RT_MAX_INFLIGHT;
        c->qlen--;
    }
}

static void release(struct rt_comm *c, struct rt_allreduce_req *r)
{
    r->state = RT_REQ_FREE;
    c->slots_used--;
}

static struct rt_allreduce_req *slot_of(struct rt_comm *c, rt_allreduce_req *req)
{
    if (req < c->slots || req >= c->slots + RT_MAX_INFLIGHT || req->state == RT_REQ_FREE)
        rt_comm_abort(c, 1, "allreduce: unknown or already completed request %p", (void *)req);
    return req;
}

rt_allreduce_req *rt_comm_iallreduce_with(rt_comm_t *c, enum rt_allreduce_algo algo, float *buf,
                                          size_t n, float scale)
{
    struct rt_allreduce_req *r = NULL;
    for (int i = 0; i < RT_MAX_INFLIGHT && !r; i++)
        if (c->slots[i].state == RT_REQ_FREE) r = &c->slots[i];
    if (r) {
        req_init(c, r, algo, buf, n, scale, 0);
        r->state = RT_REQ_QUEUED;
        c->slots_used++;
        c->queue[(c->qhead + c->qlen) % RT_MAX_INFLIGHT] = (int)(r - c->slots);
        c->qlen++;
        queue_progress(c, NULL, 0); /* start it now if it is the head */
        return r;
    }
    rt_comm_abort(c, 1,
                  "allreduce: more than %d requests outstanding (complete each with "
                  "rt_comm_test or rt_comm_wait)",
                  RT_MAX_INFLIGHT);
}

rt_allreduce_req *rt_comm_iallreduce(rt_comm_t *c, float *buf, size_t n, float scale)
{
    return rt_comm_iallreduce_with(c, c->opts.algorithm, buf, n, scale);
}

int rt_comm_test(rt_comm_t *c, rt_allreduce_req *req)
{
    struct rt_allreduce_req *r = slot_of(c, req);
    if (r->state != RT_REQ_DONE) queue_progress(c, r, 0);
    if (r->state != RT_REQ_DONE) return 0;
    release(c, r);
    return 1;
}

void rt_comm_wait(rt_comm_t *c, rt_allreduce_req *req)
{
    struct rt_allreduce_req *r = slot_of(c, req);
    queue_progress(c, r, 1);
    release(c, r);
}

void rt_comm_allreduce_with(rt_comm_t *c, enum rt_allreduce_algo algo, float *buf, size_t n,
                            float scale)
{
    queue_progress(c, NULL, 1); /* earlier requests first: same order on every rank */
    struct rt_allreduce_req *r = &c->breq;
    req_init(c, r, algo, buf, n, scale, 1);
    r->state = RT_REQ_QUEUED;
    req_progress(c, r, 1);
    r->state = RT_REQ_FREE;
}

void rt_comm_allreduce(rt_comm_t *c, float *buf, size_t n, float scale)
{
    rt_comm_allreduce_with(c, c->opts.algorithm, buf, n, scale);
}

/* ---- Blocking waits with a timeout ------------------------------------------------------- */

static _Noreturn void report_hang(struct rt_comm *c, double waited,
                                  const struct rt_allreduce_req *r, const struct rt_wait_what *w)
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
                  "hang: waited %.1f s for %s in the allreduce%s (%s step %d of %d, %zu floats); "
                  "ending the job ([comm] timeout_s = %g)",
                  waited, peer, bucket, w->stage, w->step, w->steps, r ? r->n : (size_t)0,
                  c->timeout_s);
}

int rt_wait_(struct rt_comm *c, int n, MPI_Request *reqs, int any, const struct rt_allreduce_req *r,
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
