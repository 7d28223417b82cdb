/* step.c - one training step, run by every rank in lockstep.
 *
 * One step on rank r of N: take this rank's rows of the step's global batch, forward,
 * loss normalised by the GLOBAL batch (so the sum over ranks is the global-mean gradient),
 * backward into the flat gradient block, one allreduce of that block, clip, one optimizer
 * pass. Every rank executes the same collectives in the same order; nothing rank-dependent
 * decides whether a collective happens. The step allocates nothing: every buffer was sized
 * in trainer_open. What differs between phases (learning rate, loss, masks, a mask update
 * at the boundary) is the running phase's operations (phases.h). */
#include "ringtrain/log.h"
#include "ringtrain/signals.h"
#include "ringtrain/status.h"
#include "ringtrain/trace.h"
#include "train/phases.h"
#include "train/trainer.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Averages the gradients bucket by bucket and updates each bucket's parameters as soon as
 * it arrives, so the optimizer overlaps the rest of the communication. Clipping needs the
 * global norm first, so it waits for every bucket. */
/* 1 when grads[lo, hi) are all finite: x * 0 is 0 for every finite x and NaN otherwise. */
static int finite_range(const float *g, size_t lo, size_t hi)
{
    float acc = 0.0f;
    for (size_t i = lo; i < hi; i++)
        acc += g[i] * 0.0f;
    return acc == 0.0f;
}

/* The error of a non-finite averaged gradient, naming the layer of coordinate lo. */
static int nonfinite_error(struct trainer *t, size_t lo)
{
    int layer = 0;
    while (layer + 1 < t->model.n_layers && rt_model_layer_offset(&t->model, layer + 1) <= lo)
        layer++;
    return rt_errorf(RT_ERR_NONFINITE,
                     "step %lld (phase %s, epoch %lld): the averaged gradient of layer %d is "
                     "not finite (NaN or Inf); nothing of this step was saved, the last good "
                     "checkpoint is %s. Resume from it (perhaps with a lower learning rate), or "
                     "set [train] skip_nonfinite = on to skip such steps",
                     (long long)t->step + 1, trainer_phase(t)->name,
                     (long long)(t->epoch - t->phase_epoch0 + 1), layer,
                     t->last_ckpt[0] ? t->last_ckpt : "(none: checkpoints are off or none yet)");
}

/* Bucket v's own part: masked gradient, the update on this rank's optimizer state, masked
 * parameters. A pruned weight's gradient is masked before the update and the weight after
 * it, so it stays exactly zero whatever the optimizer does (its moments were zeroed with the
 * mask). */
static void update_own(struct trainer *t, const struct rt_bucket_view *v, double lr,
                       const struct rt_masks *mk)
{
    struct rt_model *m = &t->model;
    rt_optim_update_at(&t->opt, m->params + v->own_lo, m->grads + v->own_lo, v->state_off,
                       v->own_hi - v->own_lo, lr);
    if (mk) rt_masks_apply(mk, m->params, v->own_lo, v->own_hi);
}

/* After a step's updates: sharded, every rank's shards go to every rank (overlapping the
 * next forward); then the step is over for the optimizer. */
static void end_update(struct trainer *t)
{
    rt_optim_end_step(&t->opt);
    rt_buckets_start_gather(t->buckets);
}

/* Every branch after communication is taken by all ranks together. Unsharded, the masked
 * averaged gradient is the same bytes everywhere, so every rank finds the same verdict;
 * sharded, each rank has seen its shard only, and the verdicts are agreed. */
static int agree_bad(struct trainer *t, int bad)
{
    if (!t->cfg->optim_shard) return bad;
    double v = bad;
    rt_comm_max_f64(t->comm, &v, 1);
    return v != 0.0;
}

/* Every bucket first, then one update or none: clipping needs the global norm, and
 * skipping a non-finite step needs to know before any parameter moves. 0 when skipped.
 * Sharded, the norm's sum of squares is summed over the ranks' shards (the same norm to
 * its rounding). */
static int reduce_then_update(struct trainer *t, double lr, const struct rt_masks *mk)
{
    struct rt_model *m = &t->model;
    struct rt_bucket_view v;
    size_t bad = SIZE_MAX;
    double sq[2] = {0, 0}; /* sum of squares, non-finite */
    while (rt_buckets_next(t->buckets, &v)) {
        if (mk) rt_masks_apply(mk, m->grads, v.own_lo, v.own_hi);
        if (bad == SIZE_MAX && !finite_range(m->grads, v.own_lo, v.own_hi)) bad = v.own_lo;
        if (t->cfg->optim_shard)
            sq[0] += rt_grad_sum_squares(m->grads + v.own_lo, v.own_hi - v.own_lo);
    }
    sq[1] = bad != SIZE_MAX;
    if (t->cfg->optim_shard) rt_comm_sum_f64(t->comm, sq, 2);
    if (sq[1] != 0) return t->cfg->skip_nonfinite ? 0 : nonfinite_error(t, bad);
    double clip = t->cfg->clip_norm;
    if (clip > 0 && !t->cfg->optim_shard) rt_clip_grad_norm(m->grads, m->n_params, clip);
    float coef = t->cfg->optim_shard ? rt_clip_coef(sqrt(sq[0]), clip) : 1.0f;
    for (int k = 0; k < rt_buckets_count(t->buckets); k++) {
        rt_buckets_view(t->buckets, k, &v);
        if (coef != 1.0f)
            for (size_t i = v.own_lo; i < v.own_hi; i++)
                m->grads[i] *= coef;
        update_own(t, &v, lr, mk);
    }
    end_update(t);
    return 1;
}

/* Averages the gradients bucket by bucket and updates each bucket's parameters as soon as
 * it arrives, so the optimizer overlaps the rest of the communication. Returns 1 when the
 * step was applied, 0 when it was skipped (non-finite, train.skip_nonfinite), or a failure
 * (non-finite) on every rank together: the remaining buckets are still completed, so that
 * every rank leaves the step's collectives together. The gradient is masked before it is
 * checked: pruned coordinates hold each rank's own unreduced values under sparse
 * communication. */
static int reduce_and_update(struct trainer *t, double lr)
{
    struct rt_model *m = &t->model;
    const struct rt_masks *mk = trainer_masks(t);
    if (t->cfg->clip_norm > 0 || t->cfg->skip_nonfinite) return reduce_then_update(t, lr, mk);
    struct rt_bucket_view v;
    size_t bad = SIZE_MAX;
    double tw = rt_trace_on() ? rt_trace_now() : 0;
    while (rt_buckets_next(t->buckets, &v)) {
        double to = tw > 0 ? rt_trace_now() : 0;
        if (tw > 0) rt_trace_span(RT_TR_COMM_WAIT, 0, tw, to);
        if (bad != SIZE_MAX) continue;
        if (mk) rt_masks_apply(mk, m->grads, v.own_lo, v.own_hi);
        if (!finite_range(m->grads, v.own_lo, v.own_hi)) {
            bad = v.own_lo;
            continue;
        }
        update_own(t, &v, lr, mk);
        if (tw > 0) rt_trace_span(RT_TR_OPTIMIZER, 0, to, tw = rt_trace_now());
    }
    if (agree_bad(t, bad != SIZE_MAX)) {
        int st = nonfinite_error(t, bad != SIZE_MAX ? bad : 0);
        return rt_comm_agree(t->comm, bad != SIZE_MAX ? st : RT_OK);
    }
    end_update(t);
    return 1;
}

/* comm.deterministic: the exact gradient is the same bytes on every rank, so masking,
 * the finite check and clipping decide alike everywhere; each rank then updates its own part
 * of every bucket (all of it unsharded). */
static int update_replicated(struct trainer *t, double lr)
{
    struct rt_model *m = &t->model;
    const struct rt_masks *mk = trainer_masks(t);
    if (mk) rt_masks_apply(mk, m->grads, 0, m->n_params);
    if (!finite_range(m->grads, 0, m->n_params))
        return t->cfg->skip_nonfinite ? 0 : nonfinite_error(t, 0);
    if (t->cfg->clip_norm > 0) rt_clip_grad_norm(m->grads, m->n_params, t->cfg->clip_norm);
    for (int k = 0; k < rt_buckets_count(t->buckets); k++) {
        struct rt_bucket_view v;
        rt_buckets_view(t->buckets, k, &v);
        update_own(t, &v, lr, mk);
    }
    end_update(t);
    return 1;
}

/* The deterministic step's gradient and update. */
static int exact_step(struct trainer *t, const struct rt_batch *b, double *loss, double *correct)
{
    t->lr = trainer_phase(t)->lr(t);
    rt_faults_slow(&t->faults, t->rank);
    rt_faults_stall(&t->faults, t->rank, t->step);
    size_t bad = 0;
    int ready = trainer_exact_gradient(t, b, loss, correct, &bad);
    if (ready == 0) return t->cfg->skip_nonfinite ? 0 : nonfinite_error(t, bad);
    return ready == 1 ? update_replicated(t, t->lr) : ready;
}

void trainer_params_ready(struct trainer *t)
{
    if (t->buckets) rt_buckets_wait_gather(t->buckets, -1);
}

/* rank 0's clock decides timed checkpoints; the decision travels in the step agreement. */
static int checkpoint_due_by_time(const struct trainer *t)
{
    double minutes = t->cfg->ckpt_every_minutes;
    return t->rank == 0 && t->cfg->ckpt_keep > 0 && minutes > 0 &&
           rt_comm_wtime() - t->last_ckpt_time >= minutes * 60.0;
}

/* The step boundary: one agreement carries the data fetch's status, whether any rank was
 * signalled (the signal may reach one rank only) and whether a timed checkpoint is due.
 * Every rank then takes the same branches. Returns RT_STOPPED when the job is to stop. */
static int step_boundary(struct trainer *t, int fetch_status)
{
    int vals[2] = {rt_signal_pending(), checkpoint_due_by_time(t)};
    RT_TRY(rt_comm_agree_max(t->comm, t->deferred != RT_OK ? t->deferred : fetch_status, vals, 2));
    int64_t every = t->cfg->ckpt_every_steps;
    int by_steps = every > 0 && t->step > 0 && t->step % every == 0;
    int on = t->cfg->ckpt_keep > 0 && t->step != t->last_ckpt_step;
    if (on && (vals[0] || vals[1] || by_steps)) RT_TRY(trainer_checkpoint(t, ""));
    if (!vals[0]) return RT_OK;
    t->stop_signal = vals[0];
    trainer_metrics_event(t, "stop", "%s", rt_signal_name(vals[0]));
    if (t->cfg->ckpt_keep > 0) return RT_STOPPED;
    return rt_errorf(RT_ERR_IO,
                     "stopped by %s at step %lld; checkpoints are off ([checkpoint] keep = 0), "
                     "so nothing was saved",
                     rt_signal_name(vals[0]), (long long)t->step);
}

/* Backward's per-layer callback when tracing or a gradient fault is armed: the span since
 * the previous layer (or the start of backward) is this layer's backward; the test hook
 * may spoil a coordinate; then its bucket may start. */
struct backward_hook {
    struct trainer *t;
    double last;
};

static void layer_ready_hooked(void *ctx, int layer, size_t offset, size_t count)
{
    struct backward_hook *bh = ctx;
    struct trainer *t = bh->t;
    if (rt_trace_on()) {
        double now = rt_trace_now();
        rt_trace_span(RT_TR_BACKWARD, layer, bh->last, now);
        bh->last = now;
    }
    const struct rt_masks *mk = trainer_masks(t);
    rt_faults_nan_grad(&t->faults, t->rank, t->step, t->model.grads, offset, offset + count,
                       mk ? mk->keep : NULL);
    rt_buckets_layer_ready(t->buckets, layer, offset, count);
}

/* Forward, then the phase's loss and m->dlogits. A failed teacher-cache read cannot leave
 * this step alone: the others are about to allreduce. The step goes on with a zero loss
 * gradient from this rank, and the failure is agreed at the next step boundary or the
 * epoch's end, before anything is saved. Returns the loss. */
double trainer_forward_loss(struct trainer *t, const struct rt_batch *b)
{
    struct rt_model *m = &t->model;
    double tr = rt_trace_on() ? rt_trace_now() : 0;
    /* Dropout masks from (seed, global step, row ids): the same at any rank count. */
    rt_model_set_training(m, 1, t->cfg->seed, t->step, b->ids);
    rt_model_forward(m, b->x, b->local_rows);
    if (tr > 0) rt_trace_span(RT_TR_FORWARD, 0, tr, rt_trace_now());
    double norm = rt_model_loss_norm(m, b->global_rows);
    double loss;
    int ls = trainer_phase(t)->loss(t, b, norm, &loss);
    if (ls != RT_OK) {
        memset(m->dlogits, 0,
               (size_t)b->local_rows * m->positions * (size_t)m->outputs * sizeof(float));
        loss = 0;
        t->deferred = t->deferred != RT_OK ? t->deferred : ls;
    }
    return loss;
}

/* Backward; each finished layer hands its gradient bucket to the communication. */
static void backward(struct trainer *t, const struct rt_batch *b)
{
    struct rt_model *m = &t->model;
    rt_buckets_begin(t->buckets);
    if (rt_trace_on() || t->faults.grad_rank >= 0) {
        struct backward_hook bh = {t, rt_trace_on() ? rt_trace_now() : 0};
        rt_model_backward(m, b->x, b->local_rows, layer_ready_hooked, &bh);
    } else {
        rt_model_backward(m, b->x, b->local_rows, rt_buckets_layer_ready, t->buckets);
    }
}

/* The step's time since t0 (communication times c0), split: computing, blocked in
 * communication, and waiting for the left neighbour's data. */
static void account_time(struct trainer *t, const struct rt_comm_times *c0, double t0)
{
    struct progress *p = &t->prog;
    struct rt_comm_times c1;
    rt_comm_times(t->comm, &c1);
    double blocked = c1.blocked_s - c0->blocked_s, waited = c1.wait_left_s - c0->wait_left_s;
    double computed = rt_comm_wtime() - t0 - blocked;
    p->compute_s += computed;
    p->comm_s += blocked - waited;
    p->wait_s += waited;
    p->run_compute_s += computed;
    p->run_comm_s += blocked - waited;
    p->run_wait_s += waited;
    p->steps += 1;
}

/* The step's rows, loss and correct predictions into the running sums; a skipped step
 * (applied = 0) is counted and said instead. */
static void account_rows(struct trainer *t, const struct rt_batch *b, double loss, double correct,
                         int applied)
{
    struct progress *p = &t->prog;
    p->correct += correct;
    p->epoch_correct += correct;
    if (applied) {
        p->loss_sum += loss;
        p->rows += b->local_rows;
        p->epoch_loss += loss;
        p->epoch_rows += b->local_rows;
    } else {
        t->skipped++;
        rt_log0("step %lld: non-finite gradient, step skipped on every rank ([train] "
                "skip_nonfinite = on; %lld skipped so far)\n",
                (long long)t->step + 1, (long long)t->skipped);
        trainer_metrics_event(t, "skip", "non-finite gradient");
    }
}

/* Micro-batch k of K of this rank's rows b (train.accum_steps): b cut into K consecutive
 * pieces. global_rows stays the step's, so each piece's loss is normalised by the whole
 * step's batch and the gradients they add up to are the step's. */
static struct rt_batch micro_batch(const struct trainer *t, const struct rt_batch *b, int k, int K)
{
    const struct rt_model *m = &t->model;
    int per = (int)micro_rows_max(b->local_rows, K);
    int lo = k * per < b->local_rows ? k * per : b->local_rows;
    int hi = lo + per < b->local_rows ? lo + per : b->local_rows;
    struct rt_batch mb = *b;
    mb.x = b->x + (size_t)lo * (size_t)m->inputs;
    if (m->spec.loss == RT_LOSS_CE)
        mb.y = (const int32_t *)b->y + (size_t)lo * (size_t)m->positions;
    else
        mb.y = (const float *)b->y + (size_t)lo * (size_t)m->outputs;
    mb.ids = b->ids + lo;
    mb.local_rows = hi - lo;
    return mb;
}

/* Forward and backward of the step's micro-batches: the first overwrites the gradients,
 * the others add to them, and only the last one's backward hands its buckets to the
 * communication (the earlier ones reduce nothing: no_sync). Returns the loss; the correct
 * predictions into *correct. */
static double forward_backward(struct trainer *t, const struct rt_batch *b, double *correct)
{
    struct rt_model *m = &t->model;
    const int K = (int)t->cfg->accum_steps;
    double loss = 0;
    *correct = 0;
    for (int k = 0; k < K; k++) {
        struct rt_batch mb = micro_batch(t, b, k, K);
        loss += trainer_forward_loss(t, &mb);
        if (m->spec.loss == RT_LOSS_CE)
            *correct += (double)rt_model_count_correct(m, mb.y, mb.local_rows);
        if (k == 0) {
            t->lr = trainer_phase(t)->lr(t);
            rt_faults_slow(&t->faults, t->rank);
            rt_faults_stall(&t->faults, t->rank, t->step);
        }
        if (k == K - 1) rt_faults_nan_step(&t->faults, t->rank, t->step, m->dlogits);
        rt_model_set_grad_accumulate(m, k > 0);
        if (k < K - 1)
            rt_model_backward(m, mb.x, mb.local_rows, NULL, NULL);
        else
            backward(t, &mb);
    }
    return loss;
}

/* One synchronous data-parallel step on this rank's share of the global batch. */
int trainer_step(struct trainer *t)
{
    struct rt_batch b;
    int st = step_boundary(t, rt_dataset_next(t->train, &b));
    if (st != RT_OK) return st;
    const struct phase_ops *ph = trainer_phase(t);
    if (ph->boundary) {
        trainer_params_ready(t);
        RT_TRY(ph->boundary(t));
    }
    struct rt_model *m = &t->model;
    struct rt_comm_times c0;
    rt_comm_times(t->comm, &c0);
    double t0 = rt_comm_wtime(), correct, loss;
    int applied;
    if (t->cfg->deterministic) {
        applied = exact_step(t, &b, &loss, &correct);
    } else {
        loss = forward_backward(t, &b, &correct);
        applied = reduce_and_update(t, t->lr);
    }
    if (applied < 0) return applied;
    account_time(t, &c0, t0);
    account_rows(t, &b, loss, correct, applied);
    t->samples += (double)b.global_rows;
    t->step++;
    t->phase_step++;
    t->step_in_epoch++;
    rt_faults_corrupt(&t->faults, t->rank, t->step, m->params);
    if (t->cfg->check_every > 0 && t->step % t->cfg->check_every == 0)
        RT_TRY(trainer_check_replicas(t));
    return RT_OK;
}
