/* rd.c - recursive doubling allreduce for small messages (float32 sum, in place).
 *
 * Does not: pick message sizes (algos.c's AUTO does), handle N == 1 (requests.c), or
 * allocate (the received operand lands in the group's scratch).
 * Legend: N ranks, p2 = largest power of two <= N, rem = N - p2, v = rank in the
 * power-of-two group ("new rank").
 *
 * THE IDEA. log2(p2) exchange steps; at step j rank v swaps its whole vector with partner
 * v ^ 2^j and both add. After step j every group of 2^(j+1) consecutive new ranks holds the
 * same partial sum, so after log2(p2) steps everyone holds the total: log2(N) latencies
 * instead of the ring's 2(N-1), at the price of moving the whole vector each step. That is
 * the right trade below a few tens of KiB.
 *
 *   p2 = 4:    step 0: 0<->1  2<->3      step 1: 0<->2  1<->3
 *
 * FOLD FOR N NOT A POWER OF TWO. The first 2*rem ranks pair up: even rank 2m ("extra")
 * sends its vector to odd rank 2m+1 and sits out; 2m+1 adds it and joins the group as
 * v = m. Ranks >= 2*rem join as v = rank - rem. After the exchanges every group member
 * multiplies by `scale` once, and 2m+1 sends the finished vector back to 2m.
 *
 *   N = 6:  p2 = 4, rem = 2.   extras 0, 2  ->  partners 1, 3
 *           group: rank 1 (v0)  rank 3 (v1)  rank 4 (v2)  rank 5 (v3)
 *           fold in, 2 exchange steps, scale, fold out (1 -> 0, 3 -> 2)
 *
 * IDENTICAL BYTES. Both partners of an exchange compute the same sum, written canonically
 * as (operand of the lower new rank) + (operand of the upper): IEEE addition is commutative,
 * so the two results are the same bits, and by induction every group member holds the same
 * bytes after every step. The association (which partial sums meet at which step) depends
 * only on N, so the result is deterministic. The extra ranks receive the finished bytes.
 *
 * LARGE n. The received operand needs scratch space, so a message larger than the scratch
 * (only when rd is forced) runs as consecutive pieces of scratch size, each a complete
 * fold-in / exchange / scale / fold-out. */
#include "comm/comm_impl.h"
#include "ringtrain/trace.h"

/* Each vector travels as up to RD_MAX_FRAGS fragments of at most RD_FRAG_ELEMS floats:
 * small enough for Open MPI's eager protocol (4 KiB with header on shared memory), so they
 * need no rendezvous handshake. */
#define RD_FRAG_ELEMS 1008
#define RD_MAX_FRAGS  32

enum { RD_FOLD_IN, RD_EXCHANGE, RD_FOLD_OUT, RD_NEXT };
enum { TAG_FOLD_IN = 0, TAG_EXCHANGE = 1, TAG_FOLD_OUT = 2 };

struct rd_state {
    int peer;        /* partner of the phase in flight (hang reports) */
    size_t off, len; /* current piece of buf (pieces of scratch size) */
    int phase;       /* RD_* */
    int step;        /* exchange step: partner = new rank ^ (1 << step) */
    int posted;      /* requests of the current phase are in flight */
    int nreq;        /* how many: fragments sent plus received */
    MPI_Request req[2 * RD_MAX_FRAGS];
};
_Static_assert(sizeof(struct rd_state) <= RT_ALGO_STATE_BYTES, "rd state too large");

static struct rd_state *state(const struct rt_comm_req *r)
{
    return (struct rd_state *)(void *)r->state_bytes;
}

/* Real rank of new rank v. */
static int real_rank(const struct rt_group *g, int v)
{
    return v < g->rd_rem ? 2 * v + 1 : v + g->rd_rem;
}

/* This rank's new rank, or -1 for an extra rank. */
static int new_rank(const struct rt_group *g)
{
    if (g->rank < 2 * g->rd_rem) return g->rank % 2 ? g->rank / 2 : -1;
    return g->rank - g->rd_rem;
}

static void piece(struct rt_comm_req *r)
{
    struct rd_state *s = state(r);
    size_t left = r->a.n - s->off;
    s->len = left < r->g->scratch_elems ? left : r->g->scratch_elems;
    s->phase = RD_FOLD_IN;
    s->step = 0;
    s->posted = s->nreq = 0;
}

static void rd_start(struct rt_comm *c, struct rt_comm_req *r)
{
    (void)c;
    state(r)->off = 0;
    piece(r);
}

/* Posts the receive (send = 0) or send (send = 1) of p[0..len) as fragments: up to
 * RD_MAX_FRAGS messages of at most RD_FRAG_ELEMS each (larger only when len needs it).
 * Both sides cut the same len the same way, and MPI matches same-tag messages in order. */
static void post(const struct rt_group *g, struct rd_state *s, int send, float *p, int len,
                 int peer, int tag)
{
    int nf = (len + RD_FRAG_ELEMS - 1) / RD_FRAG_ELEMS;
    if (nf < 1) nf = 1;
    if (nf > RD_MAX_FRAGS) nf = 1; /* too big for eager anyway: one rendezvous */
    int per = (len + nf - 1) / nf;
    for (int f = 0; f < nf; f++) {
        int off = f * per, l = len - off < per ? len - off : per;
        if (l < 0) l = 0, off = len;
        if (send)
            MPI_Isend(p + off, l, MPI_FLOAT, peer, tag, g->comm, &s->req[s->nreq++]);
        else
            MPI_Irecv(p + off, l, MPI_FLOAT, peer, tag, g->comm, &s->req[s->nreq++]);
    }
    s->posted = 1;
    s->peer = peer;
}

/* Tests (block = 0) or waits for (block = 1) the requests of the current phase. */
static int complete(struct rt_comm *c, const struct rt_comm_req *r, struct rd_state *s, int block)
{
    int flag = 1;
    if (block) {
        struct rt_wait_what what = {
            .peer = s->peer,
            .role = "recursive-doubling partner",
            .stage = "recursive-doubling",
            .step = s->step + 1,
            .steps = r->g->rd_p2 > 1 ? 31 - __builtin_clz((unsigned)r->g->rd_p2) : 1};
        rt_wait_(c, s->nreq, s->req, 0, r, &what);
    } else
        MPI_Testall(s->nreq, s->req, &flag, MPI_STATUSES_IGNORE);
    if (flag) s->posted = s->nreq = 0;
    return flag;
}

static int rd_progress(struct rt_comm *c, struct rt_comm_req *r, int block)
{
    struct rd_state *s = state(r);
    const struct rt_group *g = r->g;
    const int v = new_rank(g), extra = v < 0;
    int steps = 0;
    while ((1 << steps) < g->rd_p2)
        steps++;
    while (s->off < r->a.n) {
        float *p = (float *)r->a.buf + s->off;
        const int len = (int)s->len; /* <= scratch, far below INT_MAX */
        switch (s->phase) {
        case RD_FOLD_IN:
            if (g->rank >= 2 * g->rd_rem) {
                s->phase = RD_EXCHANGE;
                break;
            }
            if (!s->posted) {
                if (extra)
                    post(g, s, 1, p, len, g->rank + 1, r->tag + TAG_FOLD_IN);
                else
                    post(g, s, 0, g->scratch, len, g->rank - 1, r->tag + TAG_FOLD_IN);
            }
            if (!complete(c, r, s, block)) return 0;
            if (extra) {
                s->phase = RD_FOLD_OUT;
            } else {
                rt_add_into_(p, g->scratch, len);
                s->phase = RD_EXCHANGE;
            }
            break;
        case RD_EXCHANGE: {
            if (s->step == steps) {
                rt_scale_(p, s->len, r->a.scale);
                s->phase = RD_FOLD_OUT;
                break;
            }
            const int pv = v ^ (1 << s->step), partner = real_rank(g, pv);
            if (!s->posted) {
                post(g, s, 0, g->scratch, len, partner, r->tag + TAG_EXCHANGE);
                post(g, s, 1, p, len, partner, r->tag + TAG_EXCHANGE);
            }
            if (!complete(c, r, s, block)) return 0;
            /* IEEE addition is commutative, so both partners get the same bits. */
            rt_add_into_(p, g->scratch, len);
            s->step++;
            break;
        }
        case RD_FOLD_OUT:
            if (g->rank >= 2 * g->rd_rem) {
                s->phase = RD_NEXT;
                break;
            }
            if (!s->posted) {
                if (extra)
                    post(g, s, 0, p, len, g->rank + 1, r->tag + TAG_FOLD_OUT);
                else
                    post(g, s, 1, p, len, g->rank - 1, r->tag + TAG_FOLD_OUT);
            }
            if (!complete(c, r, s, block)) return 0;
            s->phase = RD_NEXT;
            break;
        default: /* RD_NEXT */
            s->off += s->len;
            piece(r);
            break;
        }
    }
    return 1;
}

static void rd_trace(const struct rt_comm_req *r, double end)
{
    rt_trace_span(RT_TR_RD, r->label, r->t_start, end);
}

const struct rt_coll_algo rt_algo_rd_ = {
    .name = "rd",
    .ops = 1u << RT_OP_ALLREDUCE,
    .types = 1u << RT_TYPE_F32,
    .start = rd_start,
    .progress = rd_progress,
    .trace = rd_trace,
};
