/* ring.c - the pipelined ring: allreduce, and its two halves reduce-scatter and allgather
 * as requests of their own (float32 sums with the scale folded in, or exact int64 sums; in
 * place).
 *
 * Does not: choose between algorithms or own the request queue (requests.c), handle
 * N == 1 (requests.c scales in place without MPI), or allocate (scratch is the group's).
 * Legend: N ranks of the group, i this rank, n elements, chunk j = part j of the request
 * (the even shards of shard.h, or the caller's cut), seg = segment length in elements.
 *
 * THE IDEA. Every rank must end with the sum of N vectors of n elements. Sending whole
 * vectors around costs each rank (N-1) n elements of traffic; the ring costs 2 (N-1)/N n,
 * independent of N for large N, which is optimal for bandwidth. Cut the buffer into N
 * chunks. Rank i only ever sends to its right neighbour (i+1) % N and receives from its left
 * neighbour (i-1+N) % N, so every link carries the same load and all links run at once.
 *
 * Reduce-scatter: N-1 steps. At step t rank i sends chunk (i-t-1) % N and receives chunk
 * (i-t-2) % N, which it adds into its own copy. A chunk therefore starts at one rank and
 * collects one contribution per hop; after N-1 hops chunk i is complete at rank i: the
shard contract (shard.h), so a reduce-scatter leaves each rank its own shard.
 * Allgather: N-1 more steps with the same send/receive pattern, but the received chunk
 * simply overwrites the local one (received straight into the caller's buffer), so every
 * complete chunk travels once around the ring. Example, N = 3 (a,b,c = ranks 0,1,2; a chunk
 * column shows which contributions that rank's copy holds):
 *
 *                  rank 0           rank 1           rank 2
 *   chunk:        0   1   2        0   1   2        0   1   2
 *   start         a0  a1  a2       b0  b1  b2       c0  c1  c2
 *
 *   reduce-scatter step 0: 0 sends a2 -> 1, 1 sends b0 -> 2, 2 sends c1 -> 0
 *                 a0 a1+c1 a2      b0  b1 b2+a2     c0+b0 c1 c2
 *   reduce-scatter step 1: 0 sends a1+c1 -> 1, 1 sends b2+a2 -> 2, 2 sends c0+b0 -> 0
 *             [a0+b0+c0] .. ..    .. [b1+a1+c1] ..    .. .. [c2+b2+a2]
 *     (rank i now owns complete chunk i; it multiplies it by `scale` once, here)
 *   allgather step 0: 0 sends c0 -> 1, 1 sends c1 -> 2, 2 sends c2 -> 0
 *   allgather step 1: each forwards what it just received
 *     -> every rank holds all three complete chunks, as the same bytes.
 *
 *   step t (0 .. 2N-3)      sends chunk       receives chunk     then
 *   t <  N-1  (reduce)      (i-t-1) % N       (i-t-2) % N        buf += recv  (scaled at N-2)
 *   t >= N-1  (gather)      (i-t-1) % N       (i-t-2) % N        buf  = recv  (in place)
 * An allreduce runs steps 0 .. 2N-3, a reduce-scatter 0 .. N-2, an allgather N-1 .. 2N-3.
 *
 * Scale (the averaging) is applied by the one rank that completes a chunk, as a single float
 * multiply of the finished sum, before the chunk is gathered: every rank gets identical bytes
 * and the result equals (float)(sum) * scale exactly when the sum itself is exact.
 *
 * UNEVEN CHUNKS. n need not be divisible by N (or even >= N): chunks are the shards of
 * shard.h (or the caller's cut), and an empty chunk's steps simply carry no messages, on
 * both sides, since sender and receiver compute the same chunk lengths. All offsets are size_t, so
n may exceed 2^31; MPI counts
 * stay small because every message is at most one segment.
 *
 * PIPELINE. Each chunk is cut into ceil(len / seg) segments and every message is one
 * segment, so a segment is reduced while the next one is in flight: the receive of segment
 * k+1 is always posted before segment k is reduced (RT_RING_RWIN = 2 scratch segments,
 * double buffering). Better still, segment k of step t+1 is exactly segment k of the chunk
 * received at step t, so it is forwarded as soon as it is reduced, without waiting for the
 * rest of the step: the ring runs as one pipeline of 2 (N-1) x segments messages, not
 * 2 (N-1) bulk-synchronous steps. Positions are (step, segment) pairs in lexicographic
 * order; the state machine keeps four cursors:
 *   receive posted  (pt,pk)  at most RT_RING_RWIN ahead of  receive completed (rt,rk)
 *   send posted     (st,sk)  at most RT_RING_SWIN ahead of  send completed    (ct,ck)
 * and two dependencies: send (t,k) needs receive (t-1,k) completed (t > 0), and an
 * allgather receive (t,k) into the caller's buffer needs the reduce-scatter send of the same
 * region, (t+1-N, k), completed (MPI forbids writing a buffer an Isend still reads).
 * Receives and sends are both posted in lexicographic order with one tag per phase, so MPI's
 * non-overtaking rule matches them in order.
 *
 * DETERMINISM. Chunk j is summed along the fixed path j+1, j+2, ..., j+N (mod N), one
 * addition per hop, whatever the timing and whatever the segment size: element x of chunk j
 * is always ((x_{j+1} + x_{j+2}) + x_{j+3}) + ... + x_j. The additions depend only on N and
 * the cut, so a reduce-scatter + allgather equals the allreduce bit for bit. */
#include "comm/comm_impl.h"
#include "ringtrain/trace.h"

#include <string.h>

/* Windows: receives in flight (each owns one scratch segment, so RING_RWIN = 2 is the
 * double buffering: segment k+1 is already arriving while segment k is reduced) and sends
 * in flight. */
#define RING_RWIN     2
#define RING_SWIN     4
#define RING_MIN_SEGS 4
enum { TAG_RS = 0, TAG_AG = 1 };

struct ring_state {
    int t0, t1;                  /* the request's steps: [t0, t1) of 0 .. 2N-3 */
    size_t seg;                  /* segment length (elements) of this request */
    int rt, rk;                  /* next receive to complete: (step, segment) */
    int pt, pk;                  /* next receive to post */
    int st, sk;                  /* next send to post */
    int ct, ck;                  /* next send to complete */
    int nr, rhead;               /* receives in flight, oldest window slot */
    int ns, shead;               /* sends in flight, oldest window slot */
    double t_gather;             /* trace clock: the reduce-scatter half ended */
    MPI_Request rreq[RING_RWIN]; /* window slot i receives into scratch segment i */
    MPI_Request sreq[RING_SWIN];
};
_Static_assert(sizeof(struct ring_state) <= RT_ALGO_STATE_BYTES, "ring state too large");

static struct ring_state *state(const struct rt_comm_req *r)
{
    return (struct ring_state *)(void *)r->state_bytes;
}

static int mod(int a, int n)
{
    return ((a % n) + n) % n;
}

/* Chunk received at step t (sent at step t+1). */
static int recv_chunk(const struct rt_comm_req *r, int t)
{
    return mod(r->g->rank - t - 2, r->g->size);
}

static int send_chunk(const struct rt_comm_req *r, int t)
{
    return mod(r->g->rank - t - 1, r->g->size);
}

static int nseg(const struct rt_comm_req *r, int chunk)
{
    size_t len = rt_part_len_(r, chunk), seg = state(r)->seg;
    return (int)((len + seg - 1) / seg);
}

/* Normalises (t,k) to the next position that exists: skips steps whose chunk is empty. */
static void norm(const struct rt_comm_req *r, int *t, int *k, int sending)
{
    int end = state(r)->t1;
    while (*t < end && *k >= nseg(r, sending ? send_chunk(r, *t) : recv_chunk(r, *t))) {
        (*t)++;
        *k = 0;
    }
}

/* (t1,k1) < (t2,k2) lexicographically. */
static int before(int t1, int k1, int t2, int k2)
{
    return t1 < t2 || (t1 == t2 && k1 < k2);
}

/* Segment k of chunk j: pointer and length. */
static void *segment(const struct rt_comm_req *r, int j, int k, int *len)
{
    size_t seg = state(r)->seg;
    size_t off = (size_t)k * seg, clen = rt_part_len_(r, j);
    size_t l = clen - off < seg ? clen - off : seg;
    *len = (int)l;
    return rt_elem_at_(r, rt_part_off_(r, j) + off);
}

/* Receive window slot w's scratch: a float segment holds half as many int64 elements. */
static void *window(const struct rt_comm_req *r, int w)
{
    return r->g->scratch + (size_t)w * r->g->seg_elems;
}

/* Segment length for a message of n floats: the configured one, but small enough that a
 * chunk has at least RING_MIN_SEGS segments, so that reducing one segment overlaps
 * moving the next for mid-sized messages too (at 1 MiB on 2 ranks, one whole-chunk segment
 * serialised transfer and reduction: 5.4 GB/s busbw against 7.4 for MPI_Allreduce). Never
 * below 128 KiB: measured at 2 ranks, 64 KiB and 32 KiB minimums lost 20-30% at
 * 256-512 KiB to per-message (rendezvous) overhead. */
static size_t ring_segment(const struct rt_group *g, size_t n, enum rt_coll_type type)
{
    const size_t min_seg = 32768 * sizeof(float) / rt_elem_bytes_(type);
    const size_t max_seg = g->seg_elems * sizeof(float) / rt_elem_bytes_(type);
    size_t chunk = (n + (size_t)g->size - 1) / (size_t)g->size;
    size_t seg = (chunk + RING_MIN_SEGS - 1) / RING_MIN_SEGS;
    seg = (seg + 15) / 16 * 16; /* whole cache lines */
    if (seg < min_seg) seg = min_seg;
    return seg < max_seg ? seg : max_seg;
}

static void ring_start(struct rt_comm *c, struct rt_comm_req *r)
{
    (void)c;
    struct ring_state *s = state(r);
    const int N = r->g->size;
    memset(s, 0, sizeof *s);
    s->t0 = r->a.op == RT_OP_ALLGATHER ? N - 1 : 0;
    s->t1 = r->a.op == RT_OP_REDUCE_SCATTER ? N - 1 : 2 * (N - 1);
    s->seg = ring_segment(r->g, r->a.n, r->a.type);
    s->rt = s->pt = s->st = s->ct = s->t0;
    norm(r, &s->rt, &s->rk, 0);
    norm(r, &s->pt, &s->pk, 0);
    norm(r, &s->st, &s->sk, 1);
    norm(r, &s->ct, &s->ck, 1);
}

/* Receives first (Irecv before the matching send can arrive). An allgather receive lands
 * in the caller's buffer, so within an allreduce it waits until the reduce-scatter send of
 * the same region, (t+1-N, k), has completed (MPI forbids writing what an Isend reads). */
static int post_receives(struct rt_comm_req *r)
{
    struct ring_state *s = state(r);
    const struct rt_group *g = r->g;
    const int N = g->size;
    int moved = 0, len;
    while (s->pt < s->t1 && s->nr < RING_RWIN) {
        int gather = s->pt >= N - 1;
        if (gather && s->pt + 1 - N >= s->t0 && !before(s->pt + 1 - N, s->pk, s->ct, s->ck)) break;
        int w = (s->rhead + s->nr) % RING_RWIN;
        void *dst = segment(r, recv_chunk(r, s->pt), s->pk, &len);
        if (!gather) dst = window(r, w);
        MPI_Irecv(dst, len, rt_elem_mpi_(r->a.type), mod(g->rank - 1, N),
                  r->tag + (gather ? TAG_AG : TAG_RS), g->comm, &s->rreq[w]);
        s->nr++;
        s->pk++;
        norm(r, &s->pt, &s->pk, 0);
        moved = 1;
    }
    return moved;
}

/* Sends whose data is final: local data at the request's first step, else received. */
static int post_sends(struct rt_comm_req *r)
{
    struct ring_state *s = state(r);
    const struct rt_group *g = r->g;
    const int N = g->size;
    int moved = 0, len;
    while (s->st < s->t1 && s->ns < RING_SWIN &&
           (s->st == s->t0 || before(s->st - 1, s->sk, s->rt, s->rk))) {
        int w = (s->shead + s->ns) % RING_SWIN;
        void *src = segment(r, send_chunk(r, s->st), s->sk, &len);
        MPI_Isend(src, len, rt_elem_mpi_(r->a.type), mod(g->rank + 1, N),
                  r->tag + (s->st >= N - 1 ? TAG_AG : TAG_RS), g->comm, &s->sreq[w]);
        s->ns++;
        s->sk++;
        norm(r, &s->st, &s->sk, 1);
        moved = 1;
    }
    return moved;
}

/* The oldest receive: reduce it (reduce-scatter) or nothing to do (allgather). */
static int complete_receive(struct rt_comm_req *r)
{
    struct ring_state *s = state(r);
    const int N = r->g->size;
    int flag, len;
    if (s->nr == 0) return 0;
    MPI_Test(&s->rreq[s->rhead], &flag, MPI_STATUS_IGNORE);
    if (!flag) return 0;
    if (s->rt < N - 1) {
        const void *in = window(r, s->rhead);
        void *acc = segment(r, recv_chunk(r, s->rt), s->rk, &len);
        if (r->a.type == RT_TYPE_I64)
            rt_add_into_i64_(acc, in, len);
        else if (s->rt == N - 2 && r->a.scale != 1.0f)
            rt_add_scaled_(acc, in, len, r->a.scale);
        else
            rt_add_into_(acc, in, len);
    }
    s->rhead = (s->rhead + 1) % RING_RWIN;
    s->nr--;
    s->rk++;
    norm(r, &s->rt, &s->rk, 0);
    if (s->rt >= N - 1 && s->t_gather == 0 && rt_trace_on()) s->t_gather = rt_trace_now();
    return 1;
}

/* Retires completed sends, oldest first. */
static int complete_sends(struct rt_comm_req *r)
{
    struct ring_state *s = state(r);
    int moved = 0, flag;
    while (s->ns > 0) {
        MPI_Test(&s->sreq[s->shead], &flag, MPI_STATUS_IGNORE);
        if (!flag) break;
        s->shead = (s->shead + 1) % RING_SWIN;
        s->ns--;
        s->ck++;
        norm(r, &s->ct, &s->ck, 1);
        moved = 1;
    }
    return moved;
}

/* Blocks until the oldest receive or send completes. Blocked on the receive, the left
 * neighbour has not sent; on a send alone, the right one has not taken it. */
static void wait_oldest(struct rt_comm *c, struct rt_comm_req *r)
{
    struct ring_state *s = state(r);
    const int N = r->g->size;
    MPI_Request w[2];
    int nw = 0;
    if (s->nr > 0) w[nw++] = s->rreq[s->rhead];
    if (s->ns > 0) w[nw++] = s->sreq[s->shead];
    if (nw == 0) rt_comm_abort(c, 1, "ring: stalled (internal error)");
    int t = s->nr > 0 ? s->rt : s->ct;
    struct rt_wait_what what = {.peer = mod(r->g->rank + (s->nr > 0 ? -1 : 1), N),
                                .role = s->nr > 0 ? "left neighbour" : "right neighbour",
                                .stage = t < N - 1 ? "reduce-scatter" : "allgather",
                                .step = (t < N - 1 ? t : t - (N - 1)) + 1,
                                .steps = N - 1};
    int idx = rt_wait_(c, nw, w, 1, r, &what);
    /* Put the (now null) handle back so MPI_Test sees it complete at once. */
    if (s->nr > 0 && idx == 0)
        s->rreq[s->rhead] = w[0];
    else
        s->sreq[s->shead] = w[idx];
}

static int ring_progress(struct rt_comm *c, struct rt_comm_req *r, int block)
{
    struct ring_state *s = state(r);
    for (;;) {
        int moved = post_receives(r);
        moved |= post_sends(r);
        moved |= complete_receive(r);
        moved |= complete_sends(r);
        if (s->rt >= s->t1 && s->ct >= s->t1) return 1;
        if (moved) continue;
        if (!block) return 0;
        wait_oldest(c, r);
    }
}

/* An allreduce shows as its two halves; a half as itself. */
static void ring_trace(const struct rt_comm_req *r, double end)
{
    const struct ring_state *s = state(r);
    if (r->a.op == RT_OP_ALLREDUCE) {
        double mid = s->t_gather > 0 ? s->t_gather : end;
        rt_trace_span(RT_TR_REDUCE_SCATTER, r->label, r->t_start, mid);
        rt_trace_span(RT_TR_ALLGATHER, r->label, mid, end);
        return;
    }
    rt_trace_span(r->a.op == RT_OP_REDUCE_SCATTER ? RT_TR_REDUCE_SCATTER : RT_TR_ALLGATHER,
                  r->label, r->t_start, end);
}

const struct rt_coll_algo rt_algo_ring_ = {
    .name = "ring",
    .ops = 1u << RT_OP_ALLREDUCE | 1u << RT_OP_REDUCE_SCATTER | 1u << RT_OP_ALLGATHER,
    .types = 1u << RT_TYPE_F32 | 1u << RT_TYPE_I64,
    .start = ring_start,
    .progress = ring_progress,
    .trace = ring_trace,
};
