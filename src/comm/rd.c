/* rd.c - recursive doubling allreduce for small messages (float32 sum, in place).
 *
 * Does not: pick message sizes (allreduce.c's AUTO does), handle N == 1 (allreduce.c), or
 * allocate (the received operand lands in the context's scratch).
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

enum { RD_FOLD_IN, RD_EXCHANGE, RD_FOLD_OUT, RD_NEXT };

/* Real rank of new rank v. */
static int real_rank(const struct rt_comm *c, int v)
{
    return v < c->rd_rem ? 2 * v + 1 : v + c->rd_rem;
}

/* This rank's new rank, or -1 for an extra rank. */
static int new_rank(const struct rt_comm *c)
{
    if (c->rank < 2 * c->rd_rem) return c->rank % 2 ? c->rank / 2 : -1;
    return c->rank - c->rd_rem;
}

static void piece(const struct rt_comm *c, struct rt_allreduce_req *r)
{
    struct rt_rd_state *s = &r->u.rd;
    size_t left = r->n - s->off;
    s->len = left < c->scratch_elems ? left : c->scratch_elems;
    s->phase = RD_FOLD_IN;
    s->step = 0;
    s->posted = s->nreq = 0;
}

void rt_rd_start_(struct rt_comm *c, struct rt_allreduce_req *r)
{
    r->u.rd.off = 0;
    piece(c, r);
}

/* Posts the receive (send = 0) or send (send = 1) of p[0..len) as fragments: up to
 * RT_RD_MAX_FRAGS messages of at most RT_RD_FRAG_ELEMS each (larger only when len needs it).
 * Both sides cut the same len the same way, and MPI matches same-tag messages in order. */
static void post(struct rt_comm *c, struct rt_rd_state *s, int send, float *p, int len, int peer,
                 int tag)
{
    int nf = (len + RT_RD_FRAG_ELEMS - 1) / RT_RD_FRAG_ELEMS;
    if (nf < 1) nf = 1;
    if (nf > RT_RD_MAX_FRAGS) nf = 1; /* too big for eager anyway: one rendezvous */
    int per = (len + nf - 1) / nf;
    for (int f = 0; f < nf; f++) {
        int off = f * per, l = len - off < per ? len - off : per;
        if (l < 0) l = 0, off = len;
        if (send)
            MPI_Isend(p + off, l, MPI_FLOAT, peer, tag, c->ar, &s->req[s->nreq++]);
        else
            MPI_Irecv(p + off, l, MPI_FLOAT, peer, tag, c->ar, &s->req[s->nreq++]);
    }
    s->posted = 1;
    s->peer = peer;
}

/* Tests (block = 0) or waits for (block = 1) the requests of the current phase. */
static int complete(struct rt_comm *c, const struct rt_allreduce_req *r, struct rt_rd_state *s,
                    int block)
{
    int flag = 1;
    if (block) {
        struct rt_wait_what what = {.peer = s->peer,
                                    .role = "recursive-doubling partner",
                                    .stage = "recursive-doubling",
                                    .step = s->step + 1,
                                    .steps =
                                        c->rd_p2 > 1 ? 31 - __builtin_clz((unsigned)c->rd_p2) : 1};
        rt_wait_(c, s->nreq, s->req, 0, r, &what);
    } else
        MPI_Testall(s->nreq, s->req, &flag, MPI_STATUSES_IGNORE);
    if (flag) s->posted = s->nreq = 0;
    return flag;
}

int rt_rd_progress_(struct rt_comm *c, struct rt_allreduce_req *r, int block)
{
    struct rt_rd_state *s = &r->u.rd;
    const int v = new_rank(c), extra = v < 0;
    int steps = 0;
    while ((1 << steps) < c->rd_p2)
        steps++;
    while (s->off < r->n) {
        float *p = r->buf + s->off;
        const int len = (int)s->len; /* <= scratch, far below INT_MAX */
        switch (s->phase) {
        case RD_FOLD_IN:
            if (c->rank >= 2 * c->rd_rem) {
                s->phase = RD_EXCHANGE;
                break;
            }
            if (!s->posted) {
                if (extra)
                    post(c, s, 1, p, len, c->rank + 1, r->tag + RT_TAG_FOLD_IN);
                else
                    post(c, s, 0, c->scratch, len, c->rank - 1, r->tag + RT_TAG_FOLD_IN);
            }
            if (!complete(c, r, s, block)) return 0;
            if (extra) {
                s->phase = RD_FOLD_OUT;
            } else {
                rt_add_into_(p, c->scratch, len);
                s->phase = RD_EXCHANGE;
            }
            break;
        case RD_EXCHANGE: {
            if (s->step == steps) {
                rt_scale_(p, s->len, r->scale);
                s->phase = RD_FOLD_OUT;
                break;
            }
            const int pv = v ^ (1 << s->step), partner = real_rank(c, pv);
            if (!s->posted) {
                post(c, s, 0, c->scratch, len, partner, r->tag + RT_TAG_EXCHANGE);
                post(c, s, 1, p, len, partner, r->tag + RT_TAG_EXCHANGE);
            }
            if (!complete(c, r, s, block)) return 0;
            /* IEEE addition is commutative, so both partners get the same bits. */
            rt_add_into_(p, c->scratch, len);
            s->step++;
            break;
        }
        case RD_FOLD_OUT:
            if (c->rank >= 2 * c->rd_rem) {
                s->phase = RD_NEXT;
                break;
            }
            if (!s->posted) {
                if (extra)
                    post(c, s, 0, p, len, c->rank + 1, r->tag + RT_TAG_FOLD_OUT);
                else
                    post(c, s, 1, p, len, c->rank - 1, r->tag + RT_TAG_FOLD_OUT);
            }
            if (!complete(c, r, s, block)) return 0;
            s->phase = RD_NEXT;
            break;
        default: /* RD_NEXT */
            s->off += s->len;
            piece(c, r);
            break;
        }
    }
    return 1;
}
