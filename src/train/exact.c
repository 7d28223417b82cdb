/* exact.c - comm.deterministic: the step's gradient bitwise the same at any rank count.
 *
 * With N ranks, the sum over ranks of float gradients depends on N twice: each rank's
 * weight-gradient GEMMs add its own rows' contributions (another N, other rows per rank,
 * other partial sums), and the ranks' results are added in an order set by N. Both go:
 *  - the step's global batch is cut into M = comm.micro_batches fixed micro-batches, the
 *    same cut at any N: micro-batch j holds the step's positions p = j, j + M, j + 2M, ...
 *    Rank r holds positions r, r + N, ... (the sampler's rule, dataset.h), so when N divides
 *    M every micro-batch lies on one rank: j on rank j mod N, as its local rows
 *    (j - r) / N, + M/N, + 2M/N, ... in position order. Each micro-batch's gradient is one
 *    forward and backward of its own rows: the same bytes wherever it runs.
 *  - the M micro-batch gradients are summed in fixed point (fixed.h): exact integer
 *    additions, which give the same result in any order, over micro-batches on a rank and
 *    then over ranks (an int64 ring allreduce, comm.h), converted back to float once.
 * The fixed-point scale of each block of 256 coordinates comes from the previous step's
 * largest terms; a step whose terms outgrow it (and the first step, which has no previous)
 * is computed again with its own largest terms, found by one small max-allreduce. The
 * references travel in checkpoints, so a resumed run scales exactly as the uninterrupted.
 *
 * Cost, against the usual step: micro-batch GEMMs of batch/M rows, one conversion pass per
 * micro-batch, an int64 allreduce (twice the bytes of float, during the last micro-batch's
 * backward as buckets are) instead of float buckets, and memory for the int64 sum (8 bytes
 * per parameter). */
#include "ringtrain/fixed.h"
#include "ringtrain/log.h"
#include "ringtrain/status.h"
#include "train/trainer.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#define NONFINITE_MARK ((size_t)1 << 24)

int trainer_exact_init(struct trainer *t)
{
    trainer_exact_free(t);
    if (!t->cfg->deterministic) return RT_OK;
    struct exact_sum *e = &t->exact;
    const struct rt_model *m = &t->model;
    size_t n = m->n_params, rows = (size_t)m->max_batch;
    size_t ybytes = m->spec.loss == RT_LOSS_CE ? (size_t)m->positions * sizeof(int32_t)
                                               : (size_t)m->outputs * sizeof(float);
    e->blocks = rt_fixed_blocks(n);
    e->acc = malloc((n ? n : 1) * sizeof *e->acc);
    e->ref = calloc(e->blocks + 1, sizeof *e->ref);
    e->maxima = calloc(e->blocks + 2, sizeof *e->maxima);
    e->shift = calloc(e->blocks + 1, sizeof *e->shift);
    e->x = malloc(rows * (size_t)m->inputs * sizeof *e->x);
    e->y = malloc(rows * ybytes);
    e->ids = malloc(rows * sizeof *e->ids);
    if (!e->acc || !e->ref || !e->maxima || !e->shift || !e->x || !e->y || !e->ids)
        return rt_errorf(RT_ERR_NOMEM,
                         "comm.deterministic: cannot allocate the exact sums of %zu "
                         "parameters",
                         n);
    return RT_OK;
}

void trainer_exact_free(struct trainer *t)
{
    struct exact_sum *e = &t->exact;
    free(e->acc);
    free(e->ref);
    free(e->maxima);
    free(e->shift);
    free(e->x);
    free(e->y);
    free(e->ids);
    memset(e, 0, sizeof *e);
}

/* Micro-batch j's rows of b, copied into one contiguous batch (j on this rank). */
static struct rt_batch gather_micro(struct trainer *t, const struct rt_batch *b, int j)
{
    struct exact_sum *e = &t->exact;
    const struct rt_model *m = &t->model;
    int N = t->world, per = (int)(t->cfg->micro_batches / N);
    int ce = m->spec.loss == RT_LOSS_CE;
    size_t xw = (size_t)m->inputs, yw = ce ? (size_t)m->positions : (size_t)m->outputs;
    int rows = 0;
    for (int i = (j - t->rank) / N; i < b->local_rows; i += per, rows++) {
        memcpy(e->x + (size_t)rows * xw, b->x + (size_t)i * xw, xw * sizeof(float));
        if (ce)
            memcpy((int32_t *)e->y + (size_t)rows * yw, (const int32_t *)b->y + (size_t)i * yw,
                   yw * sizeof(int32_t));
        else
            memcpy((float *)e->y + (size_t)rows * yw, (const float *)b->y + (size_t)i * yw,
                   yw * sizeof(float));
        e->ids[rows] = b->ids[i];
    }
    struct rt_batch mb = *b;
    mb.x = e->x;
    mb.y = e->y;
    mb.ids = e->ids;
    mb.local_rows = rows;
    return mb;
}

/* The int64 sum over ranks, in pieces of at least 1/RT_EXACT_MAX_SUMS of the parameters
 * (and 256 KiB, where the ring's segments stop shrinking), started as the last micro-batch's
 * backward completes them, so that it runs during the rest of backward as the float buckets do.
 * Exact, so the pieces and the algorithm change nothing in the result. */
static void sums_start(struct trainer *t, size_t lo, size_t hi)
{
    struct exact_sum *e = &t->exact;
    if (e->nsums == RT_EXACT_MAX_SUMS) { /* cannot happen with the piece size below */
        rt_comm_wait(t->comm, e->sums[0]);
        memmove(e->sums, e->sums + 1, (size_t)--e->nsums * sizeof *e->sums);
    }
    struct rt_coll_args a = {RT_OP_ALLREDUCE, RT_ALLREDUCE_AUTO, e->acc + lo, hi - lo, 1.0f, NULL,
                             RT_TYPE_I64};
    e->sums[e->nsums++] = rt_comm_start(t->comm, &a);
}

/* Backward hands over [lo, hi), finished for this step on this rank. Layers arrive last
 * first, each adjacent to the one before. */
static void sums_ready(struct trainer *t, size_t lo, size_t hi)
{
    struct exact_sum *e = &t->exact;
    size_t n = t->model.n_params, piece = n / (RT_EXACT_MAX_SUMS - 2) + 1;
    if (piece < ((size_t)1 << 15)) piece = (size_t)1 << 15;
    if (e->pend_lo == e->pend_hi) {
        e->pend_lo = lo, e->pend_hi = hi;
    } else if (hi == e->pend_lo) {
        e->pend_lo = lo;
    } else { /* not adjacent: start what is pending first */
        sums_start(t, e->pend_lo, e->pend_hi);
        e->pend_lo = lo, e->pend_hi = hi;
    }
    if (e->pend_hi - e->pend_lo >= piece || lo == 0) {
        sums_start(t, e->pend_lo, e->pend_hi);
        e->pend_lo = e->pend_hi = 0;
    }
    rt_comm_poke(t->comm);
}

/* Waits for every piece; the sum is then complete on every rank. */
static void sums_finish(struct trainer *t)
{
    struct exact_sum *e = &t->exact;
    if (e->pend_lo != e->pend_hi) sums_start(t, e->pend_lo, e->pend_hi);
    e->pend_lo = e->pend_hi = 0;
    for (int k = 0; k < e->nsums; k++)
        rt_comm_wait(t->comm, e->sums[k]);
    e->nsums = 0;
}

/* Each layer's gradient block goes into the fixed-point sum as soon as backward has
 * written it, while it is still in cache; after this rank's last micro-batch, it goes on to
 * the sum over ranks. */
struct convert {
    struct trainer *t;
    int first, last, flags;
};

static void convert_ready(void *ctx, int layer, size_t offset, size_t count)
{
    struct convert *cv = ctx;
    struct exact_sum *e = &cv->t->exact;
    (void)layer;
    cv->flags |= rt_fixed_accumulate(e->acc, e->maxima, cv->t->model.grads, offset, offset + count,
                                     e->shift, (int)cv->t->cfg->micro_batches, cv->first);
    if (cv->last && count > 0) sums_ready(cv->t, offset, offset + count);
}

/* One pass over this rank's micro-batches into the fixed-point sum, and the sum over ranks
 * started; the flags of rt_fixed_accumulate, or-ed. */
static int accumulate(struct trainer *t, const struct rt_batch *b, double *loss, double *correct)
{
    struct exact_sum *e = &t->exact;
    struct rt_model *m = &t->model;
    int M = (int)t->cfg->micro_batches;
    int overlap = t->world > 1 && t->cfg->overlap != RT_OVERLAP_OFF;
    struct convert cv = {t, 1, 0, 0};
    *loss = *correct = 0;
    memset(e->maxima, 0, (e->blocks + 2) * sizeof *e->maxima);
    rt_model_set_grad_accumulate(m, 0);
    for (int j = t->rank; j < M; j += t->world, cv.first = 0) {
        struct rt_batch mb = gather_micro(t, b, j);
        *loss += trainer_forward_loss(t, &mb);
        if (m->spec.loss == RT_LOSS_CE)
            *correct += (double)rt_model_count_correct(m, mb.y, mb.local_rows);
        cv.last = overlap && j + t->world >= M;
        if (j + t->world >= M) rt_faults_nan_step(&t->faults, t->rank, t->step, m->dlogits);
        rt_model_backward(m, mb.x, mb.local_rows, convert_ready, &cv);
    }
    if (t->world > 1 && !overlap) sums_start(t, 0, m->n_params);
    return cv.flags;
}

/* The step's block maxima and flags, maximised over ranks: the same on every rank, and
 * independent of the rank count (a maximum over the same terms). */
static void agree_maxima(struct trainer *t, int flags)
{
    struct exact_sum *e = &t->exact;
    e->maxima[e->blocks] = (float)(flags & 1);
    /* The second flag says where: 2^24 minus the first non-finite block, so that the
     * maximum names the lowest such block of any rank (0: none). Floats hold it exactly. */
    size_t first = 0;
    while ((flags & 2) && first < e->blocks && e->maxima[first] <= FLT_MAX)
        first++;
    if (first >= NONFINITE_MARK) first = NONFINITE_MARK - 1;
    e->maxima[e->blocks + 1] = flags & 2 ? (float)(NONFINITE_MARK - first) : 0.0f;
    rt_comm_max_f32(t->comm, e->maxima, e->blocks + 2);
}

int trainer_exact_gradient(struct trainer *t, const struct rt_batch *b, double *loss,
                           double *correct, size_t *bad)
{
    struct exact_sum *e = &t->exact;
    struct rt_model *m = &t->model;
    int M = (int)t->cfg->micro_batches;
    for (int attempt = 0;; attempt++) {
        rt_fixed_shifts(e->shift, e->ref, e->blocks, M);
        agree_maxima(t, accumulate(t, b, loss, correct));
        sums_finish(t); /* also when the step is redone: acc is written again */
        if (e->maxima[e->blocks + 1] != 0) { /* a term was not finite, on some rank */
            *bad = (NONFINITE_MARK - (size_t)e->maxima[e->blocks + 1]) * RT_FIXED_BLOCK;
            return 0;
        }
        if (e->maxima[e->blocks] == 0) break;
        if (attempt > 0)
            return rt_comm_agree(t->comm, rt_errorf(RT_ERR_INTERNAL,
                                                    "step %lld: the fixed-point sum overflowed "
                                                    "under its own scale",
                                                    (long long)t->step + 1));
        memcpy(e->ref, e->maxima, e->blocks * sizeof *e->ref); /* again, at this step's scale */
    }
    rt_fixed_to_float(m->grads, e->acc, m->n_params, e->shift);
    rt_fixed_next_ref(e->ref, e->maxima, e->blocks);
    return 1;
}
