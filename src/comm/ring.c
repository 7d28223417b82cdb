/* ring.c - the pipelined ring allreduce (float32 sum, in place, scale folded in).
 *
 * Does not: choose between algorithms or own the request queue (allreduce.c), handle
 * N == 1 (allreduce.c scales in place without MPI), or allocate (scratch is the context's).
 * Legend: N ranks, i this rank, n elements, chunk j = the j-th of N nearly equal slices of
 * the buffer, seg = segment length in elements (c->seg_elems).
 *
 * THE IDEA. Every rank must end with the sum of N vectors of n elements. Sending whole
 * vectors around costs each rank (N-1) n elements of traffic; the ring costs 2 (N-1)/N n,
 * independent of N for large N, which is optimal for bandwidth. Cut the buffer into N
 * chunks. Rank i only ever sends to its right neighbour (i+1) % N and receives from its left
 * neighbour (i-1+N) % N, so every link carries the same load and all links run at once.
 *
 * Reduce-scatter: N-1 steps. At step t rank i sends chunk (i-t) % N and receives chunk
 * (i-t-1) % N, which it adds into its own copy. A chunk therefore starts at one rank and
 * collects one contribution per hop; after N-1 hops chunk (i+1) % N is complete at rank i.
 * Allgather: N-1 more steps with the same send/receive pattern, but the received chunk
 * simply overwrites the local one (received straight into the caller's buffer), so every
 * complete chunk travels once around the ring. Example, N = 3 (a,b,c = ranks 0,1,2; a chunk
 * column shows which contributions that rank's copy holds):
 *
 *                  rank 0           rank 1           rank 2
 *   chunk:        0   1   2        0   1   2        0   1   2
 *   start         a0  a1  a2       b0  b1  b2       c0  c1  c2
 *
 *   reduce-scatter step 0: 0 sends c0 -> 1, 1 sends c1 -> 2, 2 sends c2 -> 0
 *                 a0  a1 a2+c2    a0+b0 b1 b2      c0 b1+c1 c2
 *   reduce-scatter step 1: 0 sends c2 -> 1, 1 sends c0 -> 2, 2 sends c1 -> 0
 *             a0 [a1+b1+c1] ..    .. .. [a2+c2+b2]   [a0+b0+c0] .. ..
 *     (rank i now owns complete chunk (i+1) % 3; it multiplies it by `scale` once, here)
 *   allgather step 0: 0 sends c1 -> 1, 1 sends c2 -> 2, 2 sends c0 -> 0
 *   allgather step 1: 0 sends c0 -> 1, 1 sends c1 -> 2, 2 sends c2 -> 0
 *     -> every rank holds all three complete chunks, as the same bytes.
 *
 *   step t (0 .. 2N-3)      sends chunk       receives chunk     then
 *   t <  N-1  (reduce)      (i-t)   % N       (i-t-1) % N        buf += recv  (scaled at N-2)
 *   t >= N-1  (gather)      (i-t)   % N       (i-t-1) % N        buf  = recv  (in place)
 *
 * Scale (the averaging) is applied by the one rank that completes a chunk, as a single float
 * multiply of the finished sum, before the chunk is gathered: every rank gets identical bytes
 * and the result equals (float)(sum) * scale exactly when the sum itself is exact.
 *
 * UNEVEN CHUNKS. n need not be divisible by N (or even >= N). With q = n / N and
 * r = n % N, chunk j has q + 1 elements for j < r and q for j >= r, and starts at
 * j*q + min(j, r): the first r chunks absorb the remainder one element each. Example, n = 10,
 * N = 4: q = 2, r = 2, chunks [0,3) [3,6) [6,8) [8,10). With n < N some chunks are empty
 * (q = 0): their steps simply carry no messages, on both sides, since sender and receiver
 * compute the same chunk lengths. All offsets are size_t, so n may exceed 2^31; MPI counts
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
 * DETERMINISM. Chunk j is summed along the fixed path j, j+1, ..., j+N-1 (mod N), one
 * addition per hop, whatever the timing and whatever the segment size: element x of chunk j
 * is always ((x_j + x_{j+1}) + x_{j+2}) + ... The additions depend only on N and n. */
#include "comm/comm_impl.h"
#include "ringtrain/trace.h"

#define RT_RING_MIN_SEGS 4

static int mod(int a, int n)
{
    return ((a % n) + n) % n;
}

static size_t chunk_off(size_t n, int N, int j)
{
    size_t q = n / (size_t)N, r = n % (size_t)N, uj = (size_t)j;
    return uj * q + (uj < r ? uj : r);
}

static size_t chunk_len(size_t n, int N, int j)
{
    return n / (size_t)N + ((size_t)j < n % (size_t)N);
}

/* Chunk received at step t (sent at step t+1). */
static int recv_chunk(const struct rt_comm *c, int t)
{
    return mod(c->rank - t - 1, c->size);
}

static int send_chunk(const struct rt_comm *c, int t)
{
    return mod(c->rank - t, c->size);
}

static int nseg(const struct rt_comm *c, const struct rt_allreduce_req *r, int chunk)
{
    size_t len = chunk_len(r->n, c->size, chunk);
    size_t seg = r->u.ring.seg;
    return (int)((len + seg - 1) / seg);
}

/* Normalises (t,k) to the next position that exists: skips steps whose chunk is empty. */
static void norm(const struct rt_comm *c, const struct rt_allreduce_req *r, int *t, int *k,
                 int sending)
{
    int steps = r->u.ring.steps;
    while (*t < steps && *k >= nseg(c, r, sending ? send_chunk(c, *t) : recv_chunk(c, *t))) {
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
static float *segment(const struct rt_comm *c, const struct rt_allreduce_req *r, int j, int k,
                      int *len)
{
    size_t seg = r->u.ring.seg;
    size_t off = (size_t)k * seg, clen = chunk_len(r->n, c->size, j);
    size_t l = clen - off < seg ? clen - off : seg;
    *len = (int)l;
    return r->buf + chunk_off(r->n, c->size, j) + off;
}

/* Segment length for a message of n floats: the configured one, but small enough that a
 * chunk has at least RT_RING_MIN_SEGS segments, so that reducing one segment overlaps
 * moving the next for mid-sized messages too (at 1 MiB on 2 ranks, one whole-chunk segment
 * serialised transfer and reduction: 5.4 GB/s busbw against 7.4 for MPI_Allreduce). Never
 * below 128 KiB: measured at 2 ranks, 64 KiB and 32 KiB minimums lost 20-30% at
 * 256-512 KiB to per-message (rendezvous) overhead. */
static size_t ring_segment(const struct rt_comm *c, size_t n)
{
    const size_t min_seg = 32768; /* floats */
    size_t chunk = (n + (size_t)c->size - 1) / (size_t)c->size;
    size_t seg = (chunk + RT_RING_MIN_SEGS - 1) / RT_RING_MIN_SEGS;
    seg = (seg + 15) / 16 * 16; /* whole cache lines */
    if (seg < min_seg) seg = min_seg;
    return seg < c->seg_elems ? seg : c->seg_elems;
}

void rt_ring_start_(struct rt_comm *c, struct rt_allreduce_req *r)
{
    struct rt_ring_state *s = &r->u.ring;
    s->steps = 2 * (c->size - 1);
    s->seg = ring_segment(c, r->n);
    s->rt = s->rk = s->pt = s->pk = s->st = s->sk = s->ct = s->ck = 0;
    norm(c, r, &s->rt, &s->rk, 0);
    norm(c, r, &s->pt, &s->pk, 0);
    norm(c, r, &s->st, &s->sk, 1);
    norm(c, r, &s->ct, &s->ck, 1);
    s->nr = s->ns = s->rhead = s->shead = 0;
    s->t_gather = 0;
}

/* One pass: posts what it may, completes what has arrived. Returns 1 if anything moved. */
static int step_once(struct rt_comm *c, struct rt_allreduce_req *r)
{
    struct rt_ring_state *s = &r->u.ring;
    const int N = c->size, left = mod(c->rank - 1, N), right = mod(c->rank + 1, N);
    int moved = 0, flag, len;

    /* Receives first (Irecv before the matching send can arrive). */
    while (s->pt < s->steps && s->nr < RT_RING_RWIN) {
        int gather = s->pt >= N - 1;
        if (gather && !before(s->pt + 1 - N, s->pk, s->ct, s->ck)) break;
        int w = (s->rhead + s->nr) % RT_RING_RWIN;
        float *dst = segment(c, r, recv_chunk(c, s->pt), s->pk, &len);
        if (!gather) dst = c->scratch + (size_t)w * c->seg_elems;
        MPI_Irecv(dst, len, MPI_FLOAT, left, r->tag + (gather ? RT_TAG_AG : RT_TAG_RS), c->ar,
                  &s->rreq[w]);
        s->nr++;
        s->pk++;
        norm(c, r, &s->pt, &s->pk, 0);
        moved = 1;
    }
    /* Sends whose data is final for this step: local data at step 0, else received. */
    while (s->st < s->steps && s->ns < RT_RING_SWIN &&
           (s->st == 0 || before(s->st - 1, s->sk, s->rt, s->rk))) {
        int w = (s->shead + s->ns) % RT_RING_SWIN;
        float *src = segment(c, r, send_chunk(c, s->st), s->sk, &len);
        MPI_Isend(src, len, MPI_FLOAT, right, r->tag + (s->st >= N - 1 ? RT_TAG_AG : RT_TAG_RS),
                  c->ar, &s->sreq[w]);
        s->ns++;
        s->sk++;
        norm(c, r, &s->st, &s->sk, 1);
        moved = 1;
    }
    /* The oldest receive: reduce it (reduce-scatter) or nothing to do (allgather). */
    if (s->nr > 0) {
        MPI_Test(&s->rreq[s->rhead], &flag, MPI_STATUS_IGNORE);
        if (flag) {
            if (s->rt < N - 1) {
                const float *in = c->scratch + (size_t)s->rhead * c->seg_elems;
                float *acc = segment(c, r, recv_chunk(c, s->rt), s->rk, &len);
                if (s->rt == N - 2 && r->scale != 1.0f)
                    rt_add_scaled_(acc, in, len, r->scale);
                else
                    rt_add_into_(acc, in, len);
            }
            s->rhead = (s->rhead + 1) % RT_RING_RWIN;
            s->nr--;
            s->rk++;
            norm(c, r, &s->rt, &s->rk, 0);
            if (s->rt >= N - 1 && s->t_gather == 0 && rt_trace_on()) s->t_gather = rt_trace_now();
            moved = 1;
        }
    }
    /* Retire completed sends, oldest first. */
    while (s->ns > 0) {
        MPI_Test(&s->sreq[s->shead], &flag, MPI_STATUS_IGNORE);
        if (!flag) break;
        s->shead = (s->shead + 1) % RT_RING_SWIN;
        s->ns--;
        s->ck++;
        norm(c, r, &s->ct, &s->ck, 1);
        moved = 1;
    }
    return moved;
}

int rt_ring_progress_(struct rt_comm *c, struct rt_allreduce_req *r, int block)
{
    struct rt_ring_state *s = &r->u.ring;
    for (;;) {
        int moved = step_once(c, r);
        if (s->rt >= s->steps && s->ct >= s->steps) return 1;
        if (moved) continue;
        if (!block) return 0;
        /* Nothing to do until the oldest receive or send completes. */
        MPI_Request w[2];
        int nw = 0, N = c->size;
        if (s->nr > 0) w[nw++] = s->rreq[s->rhead];
        if (s->ns > 0) w[nw++] = s->sreq[s->shead];
        if (nw == 0) rt_comm_abort(c, 1, "ring allreduce: stalled (internal error)");
        /* Blocked on the oldest receive, the left neighbour has not sent; on a send alone,
         * the right one has not taken it. */
        int t = s->nr > 0 ? s->rt : s->ct;
        struct rt_wait_what what = {.peer = s->nr > 0 ? mod(c->rank - 1, N) : mod(c->rank + 1, N),
                                    .role = s->nr > 0 ? "left neighbour" : "right neighbour",
                                    .stage = t < N - 1 ? "reduce-scatter" : "allgather",
                                    .step = (t < N - 1 ? t : t - (N - 1)) + 1,
                                    .steps = N - 1};
        int idx = rt_wait_(c, nw, w, 1, r, &what);
        /* Put the (now null) handle back so MPI_Test above sees it complete at once. */
        if (s->nr > 0 && idx == 0)
            s->rreq[s->rhead] = w[0];
        else
            s->sreq[s->shead] = w[idx];
    }
}
