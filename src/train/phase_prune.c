/* phase_prune.c - the pruning phase: an optional structured shrink at its start, then
 * magnitude masks updated on the gradual schedule (rank 0 decides, every rank applies and
 * confirms by checksum) and finetune_epochs more with the masks held; its own constant
 * learning rate. */
#include "ringtrain/log.h"
#include "ringtrain/status.h"
#include "ringtrain/trace.h"
#include "train/phases.h"
#include "train/trainer.h"

#include <stdlib.h>

/* Rank 0 decides the mask at this phase step and broadcasts it bit-packed; every rank
 * applies it to the parameters and zeroes the optimizer moments of pruned weights (so no
 * pruned weight comes back), then all confirm by checksum that their replicas, masks
 * included, are identical. Recomputing at the same step gives the same mask, so a resume
 * at this boundary repeats it harmlessly. */
/* The optimizer state of pruned weights: this rank's part of each bucket (all of it
 * unsharded). */
static void mask_optimizer_state(struct trainer *t, const struct rt_masks *mk)
{
    for (int k = 0; k < rt_buckets_count(t->buckets); k++) {
        struct rt_bucket_view v;
        rt_buckets_view(t->buckets, k, &v);
        if (t->opt.m) rt_masks_apply_at(mk, t->opt.m + v.state_off, v.own_lo, v.own_hi);
        if (t->opt.v) rt_masks_apply_at(mk, t->opt.v + v.state_off, v.own_lo, v.own_hi);
    }
}

static int update_masks(struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    double target = rt_prune_sparsity_at(&c->prune_sched, t->phase_step);
    struct rt_masks *mk = &t->masks;
    struct rt_model *m = &t->model;
    if (t->rank == 0) rt_masks_compute(mk, m->params, c->prune_scope, target);
    rt_comm_bcast(t->comm, mk->packed, mk->packed_bytes, 0);
    rt_masks_unpack(mk);
    rt_masks_apply(mk, m->params, 0, m->n_params);
    mask_optimizer_state(t, mk);
    RT_TRY(trainer_check_replicas(t));
    RT_TRY(rt_comm_agree(t->comm, trainer_sync_sparse(t)));
    rt_log0("prune: phase step %lld: %s sparsity %.4f (schedule %.4f, target %.4f)\n",
            (long long)t->phase_step, rt_prune_scope_name(c->prune_scope),
            rt_masks_sparsity(mk, -1), target, c->prune_sched.target);
    trainer_metrics_event(t, "mask_update", "sparsity %.4f", rt_masks_sparsity(mk, -1));
    return RT_OK;
}

/* Structured pruning at the start of the phase: rank 0 chooses the neurons and broadcasts
 * them; every rank shrinks its replica the same way, then the checksums confirm it. */
static int shrink_model(struct trainer *t)
{
    const struct rt_model *m = &t->model;
    int counts[RT_MAX_LAYERS] = {0}, total = 0;
    for (int i = 0; i < m->n_layers; i++)
        total += rt_model_units(m, i);
    int32_t *kept = malloc((size_t)(total ? total : 1) * sizeof *kept);
    int st = kept ? RT_OK : rt_errorf(RT_ERR_NOMEM, "structured pruning: %d indices", total);
    if (st == RT_OK && t->rank == 0)
        st =
            rt_prune_neurons(m, t->cfg->prune_keep_neurons, t->cfg->prune_keep_heads, kept, counts);
    st = rt_comm_agree(t->comm, st);
    struct rt_model_spec spec;
    size_t n_kept = 0;
    if (st == RT_OK) {
        rt_comm_bcast(t->comm, counts, sizeof counts, 0);
        for (int i = 0; i < m->n_layers; i++)
            n_kept += (size_t)counts[i];
        rt_comm_bcast(t->comm, kept, n_kept * sizeof *kept, 0);
        rt_model_shrunk_spec(m, counts, &spec);
    }
    size_t before = m->n_params;
    char a[RT_MAX_LAYERS * 48], b[RT_MAX_LAYERS * 48];
    rt_model_sizes_text(a, sizeof a, &m->spec);
    if (st == RT_OK) st = rt_comm_agree(t->comm, trainer_rebuild(t, &spec, kept, counts));
    free(kept);
    RT_TRY(st);
    RT_TRY(trainer_check_replicas(t));
    rt_model_sizes_text(b, sizeof b, &t->model.spec);
    rt_log0("prune: neurons: %s -> %s, %zu -> %zu parameters (%.1f%%)\n", a, b, before,
            t->model.n_params, 100.0 * (double)t->model.n_params / (double)before);
    return RT_OK;
}

/* Pruning starts with every weight kept, after an optional structured shrink. */
static int begin_prune(struct trainer *t)
{
    /* Shrink once: a model already narrower than the job's (resumed) is not cut again. */
    struct rt_model_spec spec;
    RT_TRY(trainer_phase_spec(t, t->phase_index, &spec));
    int structured = t->cfg->prune_keep_neurons < 1 || t->cfg->prune_keep_heads < 1;
    if (structured && trainer_same_arch(&t->model.spec, &spec)) RT_TRY(shrink_model(t));
    rt_masks_keep_all(&t->masks);
    const struct rt_prune_sched *ps = &t->cfg->prune_sched;
    rt_log0("prune: %s %s magnitude pruning to %.3f, mask updates at phase steps %lld..%lld, "
            "then %lld epochs of fine-tuning: %lld steps\n",
            rt_prune_schedule_name(ps->kind), rt_prune_scope_name(t->cfg->prune_scope), ps->target,
            (long long)ps->start, (long long)rt_prune_last_update(ps),
            (long long)t->cfg->prune_finetune_epochs, (long long)t->total_steps);
    return RT_OK;
}

/* Fresh (not resumed): a new optimizer, then the shrink and the masks. */
static int prune_begin(struct trainer *t, int resumed)
{
    if (resumed) return RT_OK;
    RT_TRY(rt_comm_agree(t->comm, trainer_reset_optimizer(t)));
    return begin_prune(t);
}

/* Until its last mask update, then finetune_epochs more. */
static int64_t prune_steps(const struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    int64_t n =
        rt_prune_last_update(&c->prune_sched) + c->prune_finetune_epochs * t->steps_per_epoch;
    return c->prune_max_steps > 0 && c->prune_max_steps < n ? c->prune_max_steps : n;
}

/* A mask update when the schedule has one at this phase step. */
static int prune_boundary(struct trainer *t)
{
    if (!rt_prune_is_update(&t->cfg->prune_sched, t->phase_step)) return RT_OK;
    double tm = rt_trace_now();
    RT_TRY(update_masks(t));
    rt_trace_span(RT_TR_MASK_UPDATE, 0, tm, rt_trace_now());
    return RT_OK;
}

/* The pruning phase's constant learning rate (prune.lr, else optim.lr). */
static double prune_lr(const struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    return c->prune_lr > 0 ? c->prune_lr : c->optim.lr;
}

static const struct rt_masks *prune_masks(const struct trainer *t)
{
    return &t->masks;
}

const struct phase_ops phase_prune_ops = {
    .name = "prune",
    .label = "prune ",
    .needs_masks = 1,
    .optim = phase_job_optim,
    .steps = prune_steps,
    .epochs = phase_epochs_of_steps,
    .resumed = phase_resumed_by_step,
    .begin = prune_begin,
    .boundary = prune_boundary,
    .lr = prune_lr,
    .loss = phase_plain_loss,
    .masks = prune_masks,
};
