/* shards.c - checkpoints of a sharded optimizer (optim.shard = on): the file keeps the
 * unsharded layout (m and v over the flat parameter order), so it resumes at any rank
 * count, sharded or not, while every rank holds only its shards of the moments.
 *
 * Writing, rank 0 asks for the moments piece by piece (ckpt.h's rt_ckpt_moments, pieces of
 * RT_CKPT_PIECE floats in increasing position): for each piece it requests, from each
 * owner, the part of the owner's shard that falls inside, while every other rank serves
 * requests until rank 0 says done. Reading, rank 0 reads the file piece by piece and sends
 * each owner its part; the others receive until done. Who owns what comes from the
 * buckets (buckets.h: each bucket's range is cut into shards, shard.h), the same on every
 * rank. A failure on rank 0 (disk full, a checksum) still ends with "done", so the others
 * never wait for a message that will not come; the outcome is agreed afterwards. */
#include "ringtrain/log.h"
#include "ringtrain/status.h"
#include "train/trainer.h"

#include <stdint.h>
#include <string.h>

/* One request or delivery: which moment, where in the owner's state, how many floats.
 * which = -1 ends the exchange. */
struct piece_msg {
    int64_t which, state_off, len;
};

static float *moment_array(const struct trainer *t, int which)
{
    return which == 0 ? t->opt.m : t->opt.v;
}

/* For each (bucket k, rank r) shard that meets [lo, lo + len): fn on its overlap. Buckets
 * are laid out from the end, so increasing positions are decreasing k. */
static int each_overlap(struct trainer *t, size_t lo, size_t len,
                        int (*fn)(struct trainer *t, int r, size_t state_off, size_t n, size_t at,
                                  void *ctx),
                        void *ctx)
{
    size_t hi = lo + len;
    for (int k = rt_buckets_count(t->buckets) - 1; k >= 0; k--) {
        struct rt_bucket_view v;
        rt_buckets_view(t->buckets, k, &v);
        if (v.hi <= lo || v.lo >= hi) continue;
        for (int r = 0; r < t->world; r++) {
            struct rt_shard_piece p;
            rt_buckets_piece(t->buckets, k, r, &p);
            size_t a = p.lo > lo ? p.lo : lo, b = p.lo + p.len < hi ? p.lo + p.len : hi;
            if (a >= b) continue;
            RT_TRY(fn(t, r, p.state_off + (a - p.lo), b - a, a - lo, ctx));
        }
    }
    return RT_OK;
}

struct io_ctx {
    int which;
    float *buf; /* the piece, indexed from its start */
};

static int fetch(struct trainer *t, int r, size_t state_off, size_t n, size_t at, void *ctx)
{
    struct io_ctx *io = ctx;
    if (r == 0) {
        memcpy(io->buf + at, moment_array(t, io->which) + state_off, n * sizeof(float));
        return RT_OK;
    }
    struct piece_msg q = {io->which, (int64_t)state_off, (int64_t)n};
    rt_comm_send_bytes(t->comm, &q, sizeof q, r);
    rt_comm_recv_bytes(t->comm, io->buf + at, n * sizeof(float), r);
    return RT_OK;
}

static int deliver(struct trainer *t, int r, size_t state_off, size_t n, size_t at, void *ctx)
{
    struct io_ctx *io = ctx;
    if (r == 0) {
        memcpy(moment_array(t, io->which) + state_off, io->buf + at, n * sizeof(float));
        return RT_OK;
    }
    struct piece_msg q = {io->which, (int64_t)state_off, (int64_t)n};
    rt_comm_send_bytes(t->comm, &q, sizeof q, r);
    rt_comm_send_bytes(t->comm, io->buf + at, n * sizeof(float), r);
    return RT_OK;
}

static int fill_cb(void *ctx, int which, size_t lo, size_t len, float *buf)
{
    struct io_ctx io = {which, buf};
    return each_overlap(ctx, lo, len, fetch, &io);
}

static int put_cb(void *ctx, int which, size_t lo, size_t len, const float *buf)
{
    struct io_ctx io = {which, (float *)buf};
    return each_overlap(ctx, lo, len, deliver, &io);
}

/* Rank 0: tells every other rank that the exchange is over. */
static void send_done(struct trainer *t)
{
    struct piece_msg done = {-1, 0, 0};
    for (int r = 1; r < t->world; r++)
        rt_comm_send_bytes(t->comm, &done, sizeof done, r);
}

/* A rank other than 0 during a write: answers requests until done. */
static void serve(struct trainer *t)
{
    for (;;) {
        struct piece_msg q;
        rt_comm_recv_bytes(t->comm, &q, sizeof q, 0);
        if (q.which < 0) return;
        const float *src = moment_array(t, (int)q.which) + q.state_off;
        rt_comm_send_bytes(t->comm, src, (size_t)q.len * sizeof(float), 0);
    }
}

/* A rank other than 0 during a read: stores deliveries until done. */
static void receive(struct trainer *t)
{
    for (;;) {
        struct piece_msg q;
        rt_comm_recv_bytes(t->comm, &q, sizeof q, 0);
        if (q.which < 0) return;
        float *dst = moment_array(t, (int)q.which) + q.state_off;
        rt_comm_recv_bytes(t->comm, dst, (size_t)q.len * sizeof(float), 0);
    }
}

void trainer_moments_source(struct trainer *t, struct rt_ckpt_moments *mo)
{
    *mo = (struct rt_ckpt_moments){t->model.n_params, fill_cb, put_cb, t};
}

int trainer_write_sharded(struct trainer *t, int (*write)(struct trainer *t, void *ctx), void *ctx)
{
    if (t->rank != 0) {
        serve(t);
        return RT_OK;
    }
    int st = write(t, ctx);
    send_done(t);
    return st;
}

int trainer_scatter_moments(struct trainer *t, const char *path)
{
    if (t->rank != 0) {
        receive(t);
        return RT_OK;
    }
    struct rt_ckpt_moments mo;
    trainer_moments_source(t, &mo);
    int st = rt_ckpt_read_moments(path, &mo, t->opt.m != NULL, t->opt.v != NULL);
    send_done(t);
    return st;
}
