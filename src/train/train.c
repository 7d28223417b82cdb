/* train.c - the step loop and evaluation, run by every rank in lockstep.
 *
 * One step on rank r of N: take this rank's rows of the step's global batch, forward,
 * loss normalised by the GLOBAL batch (so the sum over ranks is the global-mean gradient),
 * backward into the flat gradient block, one allreduce of that block, clip, one optimizer
 * pass. Every rank executes the same collectives in the same order; nothing rank-dependent
 * decides whether a collective happens. The step loop allocates nothing: every buffer was
 * sized in trainer_open. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "ringtrain/train.h"
#include "ringtrain/log.h"
#include "ringtrain/model_file.h"
#include "ringtrain/signals.h"
#include "ringtrain/status.h"
#include "ringtrain/trace.h"
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Threads per rank: an explicit setting wins, then OPENBLAS_NUM_THREADS; otherwise a rank
 * bound to some cores (mpirun binds by default) uses them all, and an unbound rank gets its
 * share of the node so that ranks x threads never exceed the cores. */
int trainer_choose_threads(int requested, int local_ranks)
{
    int n = requested;
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    if (n <= 0 && env && atoi(env) > 0) {
        n = atoi(env);
    } else if (n <= 0) {
        cpu_set_t set;
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        int usable = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
        n = usable < online ? usable : usable / (local_ranks > 0 ? local_ranks : 1);
    }
    n = n > 0 ? n : 1;
    rt_nn_set_threads(n);
    return n;
}

static int open_data(struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    struct rt_data_opts o = {
        .rank = t->rank,
        .world = t->world,
        .shuffle = c->shuffle,
        .seed = c->seed,
        .global_batch = c->batch,
        .memory_mb = c->memory_mb,
        .synth_rows = c->synth_rows,
        .x_name = c->data_x,
        .y_name = c->data_y,
    };
    if (c->batch % t->world != 0)
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [train] batch = %lld: expected a multiple of the %d ranks", c->source,
                         (long long)c->batch, t->world);
    RT_TRY(rt_dataset_open(&t->train, c->train, &o));
    t->data_shape = rt_dataset_sample_shape(t->train);
    if (c->test[0] == '\0') return RT_OK;
    o.shuffle = RT_SHUFFLE_OFF;
    o.global_batch = eval_global_batch(c->eval_batch, t->world);
    o.synth_rows = c->synth_test_rows;
    o.synth_split = 1;
    return rt_dataset_open(&t->test, c->test, &o);
}

/* Buckets follow the model's layer blocks. The loss is already normalised by the global
 * batch, so the sum over ranks IS the average: scale 1. */
static int make_buckets(struct trainer *t)
{
    size_t offset[RT_MAX_LAYERS];
    for (int i = 0; i < t->model.n_layers; i++)
        offset[i] = rt_model_layer_offset(&t->model, i);
    RT_TRY(rt_buckets_init(&t->buckets, t->comm, t->model.grads, t->model.n_params, offset,
                           t->model.n_layers, (size_t)t->cfg->bucket_kb * 1024, t->cfg->overlap,
                           1.0f));
    /* A pruning job switches to sparse gradients at a mask update, inside the step loop:
     * its buffers are taken now. */
    for (int i = 0; i < t->cfg->n_phases; i++)
        if (t->cfg->phases[i] == RT_PHASE_PRUNE) return rt_buckets_reserve_sparse(t->buckets);
    return RT_OK;
}

int trainer_same_arch(const struct rt_model_spec *a, const struct rt_model_spec *b)
{
    return rt_model_spec_same_layers(a, b);
}

void trainer_phase_optim(struct trainer *t, int i)
{
    if (t->cfg->phases[i] == RT_PHASE_DISTILL) {
        rt_config_distill_optim(t->cfg, &t->ocfg, &t->scfg);
        return;
    }
    t->ocfg = t->cfg->optim;
    t->scfg = t->cfg->sched;
}

int trainer_phase_spec(const struct trainer *t, int i, struct rt_model_spec *spec)
{
    const struct rt_config *c = t->cfg;
    const char *key = "[model] layers";
    rt_config_model_spec(c, spec);
    for (int k = 0; k <= i && k < c->n_phases; k++)
        if (c->phases[k] == RT_PHASE_DISTILL) {
            rt_config_student_spec(c, spec);
            key = "[distill] student_layers";
        }
    char what[RT_PATH_MAX + 64];
    snprintf(what, sizeof what, "%s: %s", c->train, key);
    return rt_model_spec_bind_input(spec, &t->data_shape, what);
}

int trainer_max_batch(const struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    int64_t rows = local_rows_max(c->batch, t->world);
    int64_t eval_rows = local_rows_max(eval_global_batch(c->eval_batch, t->world), t->world);
    return (int)(rows > eval_rows ? rows : eval_rows);
}

/* A fresh optimizer of the phase's kind: moments from an earlier phase describe another
 * problem (or another model). */
static int reset_optimizer(struct trainer *t)
{
    rt_optim_free(&t->opt);
    return rt_optim_init(&t->opt, &t->ocfg, t->model.n_params);
}

/* bench train: per-layer times of the model in use (a rebuilt one starts again at 0). */
static void trainer_time_layers(struct trainer *t)
{
    if (!t->bench) return;
    memset(t->layer_timing, 0, sizeof t->layer_timing);
    t->layer_steps0 = t->step;
    t->model.timing = t->layer_timing;
}

int trainer_rebuild(struct trainer *t, const struct rt_model_spec *spec, const int32_t *kept,
                    const int *counts)
{
    struct rt_model nm;
    int st = rt_model_init(&nm, spec, trainer_max_batch(t));
    if (st == RT_OK && kept) rt_model_shrink_copy(&t->model, kept, counts, &nm);
    if (st == RT_OK) {
        rt_model_free(&t->model);
        t->model = nm; /* the struct holds no pointer into itself */
        trainer_time_layers(t);
        st = reset_optimizer(t);
    }
    if (st == RT_OK && t->has_masks) {
        rt_masks_free(&t->masks);
        st = rt_masks_init(&t->masks, &t->model);
        t->has_masks = st == RT_OK;
    }
    if (st == RT_OK) {
        rt_buckets_free(t->buckets);
        t->buckets = NULL;
        st = make_buckets(t);
    }
    return st;
}

/* The ring's options are the job's; buckets follow the model. */
static int setup_comm(struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    struct rt_comm_opts o = {.algorithm = c->algorithm,
                             .segment_bytes = (size_t)c->segment_kb * 1024};
    RT_TRY(rt_comm_configure(t->comm, &o));
    rt_comm_set_timeout(t->comm, c->comm_timeout_s);
    RT_TRY(make_buckets(t));
    t->checksums = calloc((size_t)t->world, sizeof *t->checksums);
    t->timings = calloc((size_t)t->world * 3, sizeof *t->timings);
    if (!t->checksums || !t->timings)
        return rt_errorf(RT_ERR_NOMEM, "cannot allocate %d ranks' checksums", t->world);
    rt_faults_from_env(&t->faults);
    return RT_OK;
}

/* Rank 0 decides the initial weights; the others receive them, so replicas start
 * identical by construction rather than by trusting every rank's RNG. */
static void init_params(struct trainer *t)
{
    if (t->rank == 0) rt_model_init_params(&t->model, t->cfg->seed);
    rt_comm_bcast(t->comm, t->model.params, t->model.n_params * sizeof(float), 0);
}

static int build_model(struct trainer *t)
{
    struct rt_model_spec spec;
    RT_TRY(trainer_phase_spec(t, 0, &spec));
    trainer_phase_optim(t, 0);
    RT_TRY(rt_model_init(&t->model, &spec, trainer_max_batch(t)));
    trainer_time_layers(t);
    init_params(t);
    RT_TRY(rt_optim_init(&t->opt, &t->ocfg, t->model.n_params));
    return setup_comm(t);
}

static int validate_data(struct trainer *t)
{
    const struct rt_model_spec *s = &t->model.spec;
    int in = t->model.inputs, out = t->model.outputs;
    RT_TRY(rt_dataset_validate(t->train, in, out, s->loss));
    if (t->test) RT_TRY(rt_dataset_validate(t->test, in, out, s->loss));
    return RT_OK;
}

/* Steps of phase i: training runs its epochs (cut at train.max_steps); pruning runs until
 * its last mask update, then finetune_epochs more. */
static int64_t phase_steps(const struct trainer *t, int i)
{
    const struct rt_config *c = t->cfg;
    if (c->phases[i] == RT_PHASE_PRUNE)
        return rt_prune_last_update(&c->prune_sched) +
               c->prune_finetune_epochs * t->steps_per_epoch;
    if (c->phases[i] == RT_PHASE_DISTILL) return c->distill_epochs * t->steps_per_epoch;
    int64_t n = t->steps_per_epoch * c->epochs;
    return c->max_steps > 0 && c->max_steps < n ? c->max_steps : n;
}

static enum rt_phase current_phase(const struct trainer *t)
{
    return t->cfg->phases[t->phase_index];
}

/* Every phase of set-up ends at an agreement point, so a bad file or value on any rank
 * stops every rank at the same place with the same message. */
static int trainer_open(struct trainer *t)
{
    int st = open_data(t);
    RT_TRY(rt_comm_agree(t->comm, st));
    st = build_model(t);
    RT_TRY(rt_comm_agree(t->comm, st));
    st = validate_data(t);
    RT_TRY(rt_comm_agree(t->comm, st));
    size_t need = rt_config_format(t->cfg, NULL, 0) + 1;
    t->config_text = malloc(need);
    if (t->config_text) rt_config_format(t->cfg, t->config_text, need);
    /* One metrics row per epoch, plus slack for epochs cut short and resumed. */
    t->metrics_cap = t->cfg->epochs + 64;
    t->metrics = calloc((size_t)t->metrics_cap, sizeof *t->metrics);
    st = t->config_text && t->metrics ? RT_OK
                                      : rt_errorf(RT_ERR_NOMEM, "cannot allocate the run record");
    RT_TRY(rt_comm_agree(t->comm, st));
    t->steps_per_epoch = rt_dataset_steps_per_epoch(t->train);
    t->total_steps = phase_steps(t, 0);
    for (int i = 0; i < t->cfg->n_phases; i++)
        if (t->cfg->phases[i] == RT_PHASE_PRUNE && !t->has_masks) {
            st = rt_masks_init(&t->masks, &t->model);
            t->has_masks = st == RT_OK;
            RT_TRY(rt_comm_agree(t->comm, st));
        }
    RT_TRY(rt_comm_agree(t->comm, t->bench ? RT_OK : trainer_metrics_open(t)));
    t->lr = t->cfg->optim.lr;
    t->last_ckpt_step = -1;
    t->last_ckpt_time = rt_comm_wtime();
    rt_config_ckpt_dir(t->cfg, t->ckpt_dir, sizeof t->ckpt_dir);
    return RT_OK;
}

static void trainer_close(struct trainer *t)
{
    rt_dataset_close(t->train);
    rt_dataset_close(t->test);
    rt_buckets_free(t->buckets);
    free(t->checksums);
    free(t->timings);
    rt_optim_free(&t->opt);
    rt_model_free(&t->model);
    rt_teacher_free(&t->teacher);
    trainer_metrics_close(t);
    free(t->config_text);
    free(t->metrics);
    if (t->has_masks) rt_masks_free(&t->masks);
}

/* Loss and accuracy over every row of d exactly once: the order is file order and the
 * last short batch is split between ranks like any other, so sums over ranks count each
 * sample once. The loop itself has no collectives; one agreement and one reduction end it. */
int trainer_evaluate(struct rt_model *m, struct rt_dataset *d, rt_comm_t *comm,
                     struct rt_eval_result *r)
{
    double sums[3] = {0, 0, 0}; /* loss sum, correct, rows */
    const int classify = m->spec.loss == RT_LOSS_CE;
    rt_model_set_training(m, 0, 0, 0, NULL); /* dropout off */
    int st = rt_dataset_begin_epoch(d, 0, 0);
    for (int64_t k = 0; st == RT_OK && k < rt_dataset_steps_per_epoch(d); k++) {
        struct rt_batch b;
        st = rt_dataset_next(d, &b);
        if (st != RT_OK) break;
        rt_model_forward(m, b.x, b.local_rows);
        sums[0] += rt_model_loss(m, b.y, b.local_rows, 1.0);
        if (classify) sums[1] += (double)rt_model_count_correct(m, b.y, b.local_rows);
        sums[2] += b.local_rows;
    }
    RT_TRY(rt_comm_agree(comm, st));
    rt_comm_sum_f64(comm, sums, 3);
    int K = m->outputs;
    r->samples = (int64_t)sums[2];
    r->loss = sums[0] / rt_loss_norm(m->spec.loss, r->samples, K);
    r->acc = classify ? sums[1] / sums[2] : -1.0;
    return RT_OK;
}

static void format_eta(char *buf, size_t size, double seconds)
{
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else
        snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
}

/* "epoch 3/15" in the training phase, "prune epoch 2/6" in others (epochs of the phase). */
static void epoch_label(const struct trainer *t, char *buf, size_t cap)
{
    int64_t e = t->epoch - t->phase_epoch0 + 1;
    if (current_phase(t) == RT_PHASE_TRAIN) {
        snprintf(buf, cap, "epoch %lld/%lld", (long long)e, (long long)t->cfg->epochs);
        return;
    }
    int64_t n = (t->total_steps + t->steps_per_epoch - 1) / t->steps_per_epoch;
    snprintf(buf, cap, "%s epoch %lld/%lld", rt_phase_name(current_phase(t)), (long long)e,
             (long long)n);
}

/* " | sparsity 0.900" while masks are in force; with per_layer, each layer's too. */
static void sparsity_label(const struct trainer *t, char *buf, size_t cap, int per_layer)
{
    buf[0] = '\0';
    if (current_phase(t) != RT_PHASE_PRUNE) return;
    size_t n = (size_t)snprintf(buf, cap, " | sparsity %.3f", rt_masks_sparsity(&t->masks, -1));
    int shown = 0; /* layers with weights only: pooling and the like have none to prune */
    for (int i = 0; per_layer && i < t->model.n_layers && n < cap; i++)
        if (rt_model_layer_weights(&t->model, i))
            n += (size_t)snprintf(buf + n, cap - n, "%s%.3f", shown++ ? "/" : " (layers ",
                                  rt_masks_sparsity(&t->masks, i));
    if (per_layer && n < cap) snprintf(buf + n, cap - n, ")");
}

/* The slowest rank by compute time and the rank that waited most for its left neighbour,
 * from every rank's (compute, comm, wait) sums of the interval: raw step time cannot name
 * a straggler (every rank's step ends together), waiting time does. */
static void find_stragglers(struct trainer *t, struct metrics_step *r)
{
    struct progress *p = &t->prog;
    double mine[3] = {p->compute_s, p->comm_s, p->wait_s}, steps = p->steps > 0 ? p->steps : 1;
    rt_comm_allgather_f64(t->comm, mine, 3, t->timings);
    r->slowest_rank = r->max_wait_rank = 0;
    for (int q = 1; q < t->world; q++) {
        if (t->timings[3 * q] > t->timings[3 * r->slowest_rank]) r->slowest_rank = q;
        if (t->timings[3 * q + 2] > t->timings[3 * r->max_wait_rank + 2]) r->max_wait_rank = q;
    }
    r->compute_s = mine[0] / steps;
    r->comm_s = mine[1] / steps;
    r->wait_s = mine[2] / steps;
    r->slowest_compute_s = t->timings[3 * r->slowest_rank] / steps;
    r->max_wait_s = t->timings[3 * r->max_wait_rank + 2] / steps;
}

/* " | compute 2.10 ms comm 0.31 wait 0.05 | slowest r1 +8% | waits r0 0.40 ms" */
static void timing_label(const struct trainer *t, const struct metrics_step *r, char *buf,
                         size_t cap)
{
    double mean = 0;
    for (int q = 0; q < t->world; q++)
        mean += t->timings[3 * q];
    mean /= t->world;
    double excess = mean > 0 ? 100.0 * (t->timings[3 * r->slowest_rank] / mean - 1) : 0;
    size_t n = (size_t)snprintf(buf, cap, " | step ms: compute %.2f comm %.2f wait %.2f",
                                1e3 * r->compute_s, 1e3 * r->comm_s, 1e3 * r->wait_s);
    if (t->world > 1 && n < cap)
        snprintf(buf + n, cap - n, " | slowest r%d +%.0f%% compute, r%d waits %.2f ms",
                 r->slowest_rank, excess, r->max_wait_rank, 1e3 * r->max_wait_s);
}

static int report_progress(struct trainer *t)
{
    struct progress *p = &t->prog;
    double sums[3] = {p->loss_sum, p->rows, p->correct};
    rt_comm_sum_f64(t->comm, sums, 3);
    struct metrics_step r;
    find_stragglers(t, &r);
    int K = t->model.outputs;
    double loss = sums[0] / rt_loss_norm(t->model.spec.loss, (int64_t)sums[1], K);
    /* The reduced value is identical on every rank, so this branch needs no agreement. */
    if (!isfinite(loss))
        return rt_errorf(RT_ERR_NONFINITE, "step %lld (epoch %lld): training loss is %g",
                         (long long)t->step, (long long)t->epoch + 1, loss);
    double now = rt_comm_wtime(), dt = now - p->t_last;
    double rate = dt > 0 ? (t->samples - p->samples_last) / dt : 0;
    char eta[32], label[64], sp[32], timing[160];
    format_eta(eta, sizeof eta,
               rate > 0 ? (double)(t->total_steps - t->phase_step) * (double)t->cfg->batch / rate
                        : 0);
    epoch_label(t, label, sizeof label);
    sparsity_label(t, sp, sizeof sp, 0);
    timing_label(t, &r, timing, sizeof timing);
    rt_log0("%s | step %lld/%lld | loss %.4f | lr %.2e%s | %.0f samples/s | ETA %s%s\n", label,
            (long long)t->phase_step, (long long)t->total_steps, loss, t->lr, sp, rate, eta,
            timing);
    r.loss = loss;
    r.accuracy = t->model.spec.loss == RT_LOSS_CE && sums[1] > 0 ? sums[2] / sums[1] : -1;
    r.sparsity = current_phase(t) == RT_PHASE_PRUNE ? rt_masks_sparsity(&t->masks, -1) : 0;
    r.samples_per_s = rate;
    trainer_metrics_step(t, &r);
    p->loss_sum = p->rows = p->correct = 0;
    p->compute_s = p->comm_s = p->wait_s = p->steps = 0;
    p->t_last = now;
    p->samples_last = t->samples;
    return RT_OK;
}

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

/* The averaged gradient is bitwise the same on every rank, so every rank finds the same
 * non-finite coordinates and takes the same branch without an agreement. */
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
                     (long long)t->step + 1, rt_phase_name(current_phase(t)),
                     (long long)(t->epoch - t->phase_epoch0 + 1), layer,
                     t->last_ckpt[0] ? t->last_ckpt : "(none: checkpoints are off or none yet)");
}

/* Every bucket first, then one update or none: clipping needs the global norm, and
 * skipping a non-finite step needs to know before any parameter moves. 0 when skipped. */
static int reduce_then_update(struct trainer *t, double lr, const struct rt_masks *mk)
{
    struct rt_model *m = &t->model;
    size_t lo, hi, bad = SIZE_MAX;
    while (rt_buckets_next(t->buckets, &lo, &hi)) {
        if (mk) rt_masks_apply(mk, m->grads, lo, hi);
        if (bad == SIZE_MAX && !finite_range(m->grads, lo, hi)) bad = lo;
    }
    if (bad != SIZE_MAX) return t->cfg->skip_nonfinite ? 0 : nonfinite_error(t, bad);
    if (t->cfg->clip_norm > 0) rt_clip_grad_norm(m->grads, m->n_params, t->cfg->clip_norm);
    rt_optim_step(&t->opt, m->params, m->grads, lr);
    if (mk) rt_masks_apply(mk, m->params, 0, m->n_params);
    return 1;
}

/* Averages the gradients bucket by bucket and updates each bucket's parameters as soon as
 * it arrives, so the optimizer overlaps the rest of the communication. Returns 1 when the
 * step was applied, 0 when it was skipped (non-finite, train.skip_nonfinite), or a failure
 * (non-finite): then the remaining buckets are still completed, so that every rank leaves
 * the step's allreduces together. */
static int reduce_and_update(struct trainer *t, double lr)
{
    struct rt_model *m = &t->model;
    const struct rt_masks *mk = current_phase(t) == RT_PHASE_PRUNE ? &t->masks : NULL;
    if (t->cfg->clip_norm > 0 || t->cfg->skip_nonfinite) return reduce_then_update(t, lr, mk);
    /* A pruned weight's gradient is masked before the update and the weight after it, so it
     * stays exactly zero whatever the optimizer does (its moments were zeroed with the
     * mask). */
    size_t lo, hi, bad = SIZE_MAX;
    double tw = rt_trace_on() ? rt_trace_now() : 0;
    while (rt_buckets_next(t->buckets, &lo, &hi)) {
        double to = tw > 0 ? rt_trace_now() : 0;
        if (tw > 0) rt_trace_span(RT_TR_COMM_WAIT, 0, tw, to);
        if (bad != SIZE_MAX) continue;
        if (!finite_range(m->grads, lo, hi)) {
            bad = lo;
            continue;
        }
        if (mk) rt_masks_apply(mk, m->grads, lo, hi);
        rt_optim_update_range(&t->opt, m->params, m->grads, lo, hi, lr);
        if (mk) rt_masks_apply(mk, m->params, lo, hi);
        if (tw > 0) rt_trace_span(RT_TR_OPTIMIZER, 0, to, tw = rt_trace_now());
    }
    if (bad != SIZE_MAX) return nonfinite_error(t, bad);
    rt_optim_end_step(&t->opt);
    return 1;
}

/* Fletcher-style sums over the parameters' bits: order-sensitive, so a swapped or
 * changed value shows, and cheap next to a training step. */
static uint64_t params_checksum(const float *p, size_t n)
{
    uint64_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &p[i], sizeof bits);
        a += bits;
        b += a;
    }
    return a ^ (b << 1) ^ (b >> 63);
}

/* Replicas must stay bit-identical; a difference means a bug or a hardware fault, and
 * training on would silently average different models. The gathered list is the same on
 * every rank, so every rank takes the same branch without a further agreement. */
static int check_replicas(struct trainer *t)
{
    uint64_t sum = params_checksum(t->model.params, t->model.n_params);
    if (t->has_masks) { /* the masks are part of the replica */
        const uint8_t *b = t->masks.packed;
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (size_t i = 0; i < t->masks.packed_bytes; i++)
            h = (h ^ b[i]) * 1099511628211ULL;
        sum ^= h << 1 | h >> 63;
    }
    rt_comm_allgather_u64(t->comm, sum, t->checksums);
    char ranks[256] = "";
    size_t len = 0;
    int differ = 0;
    for (int r = 1; r < t->world; r++)
        if (t->checksums[r] != t->checksums[0]) {
            if (len < sizeof ranks - 16)
                len += (size_t)snprintf(ranks + len, sizeof ranks - len, "%s%d", differ ? ", " : "",
                                        r);
            differ++;
        }
    if (!differ) return RT_OK;
    return rt_errorf(RT_ERR_INTERNAL,
                     "replicas diverged at step %lld: the parameters of rank%s %s differ from "
                     "rank 0's (checksums compared every %lld steps)",
                     (long long)t->step, differ > 1 ? "s" : "", ranks,
                     (long long)t->cfg->check_every);
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

/* Points the gradient buckets at the mask (sparse allreduce) or not, as comm.sparse says;
 * every rank holds the same mask, so every rank decides the same. */
static int sync_sparse(struct trainer *t)
{
    enum rt_sparse_comm mode = t->cfg->sparse;
    int pruning = t->has_masks && current_phase(t) == RT_PHASE_PRUNE;
    int on = pruning && (mode == RT_SPARSE_ON ||
                         (mode == RT_SPARSE_AUTO && rt_masks_sparsity(&t->masks, -1) >= 0.5));
    return rt_buckets_set_mask(t->buckets, on ? t->masks.keep : NULL);
}

/* Rank 0 decides the mask at this phase step and broadcasts it bit-packed; every rank
 * applies it to the parameters and zeroes the optimizer moments of pruned weights (so no
 * pruned weight comes back), then all confirm by checksum that their replicas, masks
 * included, are identical. Recomputing at the same step gives the same mask, so a resume
 * at this boundary repeats it harmlessly. */
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
    if (t->opt.m) rt_masks_apply(mk, t->opt.m, 0, t->opt.n);
    if (t->opt.v) rt_masks_apply(mk, t->opt.v, 0, t->opt.n);
    RT_TRY(check_replicas(t));
    RT_TRY(rt_comm_agree(t->comm, sync_sparse(t)));
    rt_log0("prune: phase step %lld: %s sparsity %.4f (schedule %.4f, target %.4f)\n",
            (long long)t->phase_step, rt_prune_scope_name(c->prune_scope),
            rt_masks_sparsity(mk, -1), target, c->prune_sched.target);
    trainer_metrics_event(t, "mask_update", "sparsity %.4f", rt_masks_sparsity(mk, -1));
    return RT_OK;
}

/* The learning rate of this step: the training schedule, or the pruning phase's constant. */
static double step_lr(const struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    if (current_phase(t) == RT_PHASE_PRUNE) return c->prune_lr > 0 ? c->prune_lr : c->optim.lr;
    return rt_sched_lr(&t->scfg, t->ocfg.lr, t->phase_step, t->total_steps);
}

/* Backward's per-layer callback on the timeline: the span since the previous layer (or the
 * start of backward) is this layer's backward, then its bucket may start. */
struct backward_trace {
    struct rt_buckets *buckets;
    double last;
};

static void layer_ready_traced(void *ctx, int layer, size_t offset, size_t count)
{
    struct backward_trace *bt = ctx;
    double now = rt_trace_now();
    rt_trace_span(RT_TR_BACKWARD, layer, bt->last, now);
    bt->last = now;
    rt_buckets_layer_ready(bt->buckets, layer, offset, count);
}

/* The step's loss and m->dlogits: against the targets, or in a distillation phase against
 * the teacher's outputs for the same rows too (alpha = 0 needs no teacher: plain
 * training, exactly). */
static int step_loss(struct trainer *t, const struct rt_batch *b, double norm, double *loss)
{
    const struct rt_config *c = t->cfg;
    if (current_phase(t) != RT_PHASE_DISTILL || c->alpha == 0) {
        *loss = rt_model_loss(&t->model, b->y, b->local_rows, norm);
        return RT_OK;
    }
    const float *teacher;
    RT_TRY(rt_teacher_outputs(&t->teacher, b, &teacher));
    *loss =
        rt_model_loss_kd(&t->model, teacher, b->y, b->local_rows, norm, c->temperature, c->alpha);
    return RT_OK;
}

/* One synchronous data-parallel step on this rank's share of the global batch. */
static int train_step(struct trainer *t)
{
    struct rt_batch b;
    int st = step_boundary(t, rt_dataset_next(t->train, &b));
    if (st != RT_OK) return st;
    if (current_phase(t) == RT_PHASE_PRUNE &&
        rt_prune_is_update(&t->cfg->prune_sched, t->phase_step)) {
        double tm = rt_trace_now();
        RT_TRY(update_masks(t));
        rt_trace_span(RT_TR_MASK_UPDATE, 0, tm, rt_trace_now());
    }
    struct rt_model *m = &t->model;
    struct progress *p = &t->prog;
    struct rt_comm_times c0, c1;
    rt_comm_times(t->comm, &c0);
    double t0 = rt_comm_wtime(), tr = rt_trace_on() ? rt_trace_now() : 0;
    /* Dropout masks from (seed, global step, row ids): the same at any rank count. */
    rt_model_set_training(m, 1, t->cfg->seed, t->step, b.ids);
    rt_model_forward(m, b.x, b.local_rows);
    if (tr > 0) rt_trace_span(RT_TR_FORWARD, 0, tr, rt_trace_now());
    double norm = rt_loss_norm(m->spec.loss, b.global_rows, m->outputs);
    double loss;
    /* A failed teacher-cache read cannot leave this step alone: the others are about to
     * allreduce. The step goes on with a zero loss gradient from this rank, and the failure
     * is agreed at the next step boundary or the epoch's end, before anything is saved. */
    int ls = step_loss(t, &b, norm, &loss);
    if (ls != RT_OK) {
        memset(m->dlogits, 0, (size_t)b.local_rows * (size_t)m->outputs * sizeof(float));
        loss = 0;
        t->deferred = t->deferred != RT_OK ? t->deferred : ls;
    }
    t->lr = step_lr(t);
    rt_faults_slow(&t->faults, t->rank);
    rt_faults_stall(&t->faults, t->rank, t->step);
    rt_faults_nan_step(&t->faults, t->rank, t->step, m->dlogits);
    rt_buckets_begin(t->buckets);
    if (rt_trace_on()) {
        struct backward_trace bt = {t->buckets, rt_trace_now()};
        rt_model_backward(m, b.x, b.local_rows, layer_ready_traced, &bt);
    } else {
        rt_model_backward(m, b.x, b.local_rows, rt_buckets_layer_ready, t->buckets);
    }
    int applied = reduce_and_update(t, t->lr);
    if (applied < 0) return applied;
    rt_comm_times(t->comm, &c1);
    double blocked = c1.blocked_s - c0.blocked_s, waited = c1.wait_left_s - c0.wait_left_s;
    double computed = rt_comm_wtime() - t0 - blocked;
    p->compute_s += computed;
    p->comm_s += blocked - waited;
    p->wait_s += waited;
    p->run_compute_s += computed;
    p->run_comm_s += blocked - waited;
    p->run_wait_s += waited;
    p->steps += 1;
    if (m->spec.loss == RT_LOSS_CE) {
        double correct = (double)rt_model_count_correct(m, b.y, b.local_rows);
        p->correct += correct;
        p->epoch_correct += correct;
    }
    if (applied) {
        p->loss_sum += loss;
        p->rows += b.local_rows;
        p->epoch_loss += loss;
        p->epoch_rows += b.local_rows;
    } else {
        t->skipped++;
        rt_log0("step %lld: non-finite gradient, step skipped on every rank ([train] "
                "skip_nonfinite = on; %lld skipped so far)\n",
                (long long)t->step + 1, (long long)t->skipped);
        trainer_metrics_event(t, "skip", "non-finite gradient");
    }
    t->samples += (double)b.global_rows;
    t->step++;
    t->phase_step++;
    t->step_in_epoch++;
    rt_faults_corrupt(&t->faults, t->rank, t->step, m->params);
    if (t->cfg->check_every > 0 && t->step % t->cfg->check_every == 0) RT_TRY(check_replicas(t));
    return RT_OK;
}

static void result_from_metric(const struct rt_ckpt_metric *r, struct rt_train_result *res)
{
    res->loss = r->loss;
    res->has_test = r->test_loss >= 0;
    res->test_loss = r->test_loss;
    res->test_acc = r->test_acc;
}

/* The end of an epoch, or of the run inside one: mean loss, test metrics, a metrics row. */
static int end_epoch(struct trainer *t, struct rt_train_result *res)
{
    struct progress *p = &t->prog;
    double sums[3] = {p->epoch_loss, p->epoch_rows, p->epoch_correct};
    rt_comm_sum_f64(t->comm, sums, 3);
    int K = t->model.outputs;
    struct rt_ckpt_metric row = {
        .epoch = t->epoch, .step = t->step, .test_loss = -1, .test_acc = -1, .lr = t->lr};
    snprintf(row.phase, sizeof row.phase, "%s", rt_phase_name(current_phase(t)));
    row.loss = sums[0] / rt_loss_norm(t->model.spec.loss, (int64_t)sums[1], K);
    p->epoch_loss = p->epoch_rows = p->epoch_correct = 0;
    if (!isfinite(row.loss))
        return rt_errorf(RT_ERR_NONFINITE, "step %lld (epoch %lld): training loss is %g",
                         (long long)t->step, (long long)t->epoch + 1, row.loss);
    char test[96] = "";
    if (t->test) {
        struct rt_eval_result e;
        double te = rt_trace_now();
        RT_TRY(trainer_evaluate(&t->model, t->test, t->comm, &e));
        rt_trace_span(RT_TR_EVALUATE, 0, te, rt_trace_now());
        row.test_loss = e.loss;
        row.test_acc = e.acc;
        if (e.acc >= 0)
            snprintf(test, sizeof test, " | test_loss %.4f | test_acc %.4f", e.loss, e.acc);
        else
            snprintf(test, sizeof test, " | test_loss %.6f", e.loss);
    }
    /* This epoch's (or, resumed inside it, this run's part of it) training throughput. */
    double secs = t->train_seconds - p->epoch_seconds0;
    row.samples_per_s = secs > 0 ? (t->samples - p->epoch_samples0) / secs : 0;
    row.seconds = t->wall_before + rt_comm_wtime() - t->wall_start;
    trainer_add_metric(t, &row);
    result_from_metric(&row, res);
    double acc = t->model.spec.loss == RT_LOSS_CE && sums[1] > 0 ? sums[2] / sums[1] : -1;
    trainer_metrics_epoch(
        t, &row, acc, current_phase(t) == RT_PHASE_PRUNE ? rt_masks_sparsity(&t->masks, -1) : 0);
    char label[64], sp[320];
    epoch_label(t, label, sizeof label);
    sparsity_label(t, sp, sizeof sp, 1);
    rt_log0("%s done | loss %.4f%s%s\n", label, row.loss, test, sp);
    return RT_OK;
}

/* Steps of the current epoch from where the position says, until it ends or the run does. */
static int run_steps(struct trainer *t)
{
    int st = rt_dataset_begin_epoch(t->train, t->epoch, t->step_in_epoch);
    RT_TRY(rt_comm_agree(t->comm, st));
    t->prog.epoch_samples0 = t->samples;
    t->prog.epoch_seconds0 = t->train_seconds;
    double t0 = rt_comm_wtime();
    while (st == RT_OK && t->step_in_epoch < t->steps_per_epoch && t->phase_step < t->total_steps) {
        st = train_step(t);
        if (st == RT_OK && t->cfg->log_every > 0 && t->step % t->cfg->log_every == 0)
            st = report_progress(t);
    }
    t->train_seconds += rt_comm_wtime() - t0;
    if (st == RT_OK) st = rt_comm_agree(t->comm, t->deferred);
    return st;
}

static int run_epochs(struct trainer *t, struct rt_train_result *res)
{
    t->prog.t_last = rt_comm_wtime();
    t->prog.samples_last = t->samples;
    if (t->n_metrics > 0) result_from_metric(&t->metrics[t->n_metrics - 1], res);
    while (t->phase_step < t->total_steps) {
        int st = run_steps(t);
        if (st != RT_OK) return st;
        RT_TRY(end_epoch(t, res));
        t->prog.t_last = rt_comm_wtime(); /* evaluation time is not training throughput */
        t->prog.samples_last = t->samples;
        if (t->step_in_epoch < t->steps_per_epoch) break; /* the phase ended inside it */
        t->epoch++;
        t->step_in_epoch = 0;
    }
    return RT_OK;
}

/* Rank 0 writes; everyone learns the outcome before going on. */
static int save_model(struct trainer *t)
{
    if (t->cfg->out[0] == '\0') return RT_OK;
    int st = RT_OK;
    if (t->rank == 0) {
        char dir[RT_PATH_MAX];
        const char *slash = strrchr(t->cfg->out, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - t->cfg->out) : 0, t->cfg->out);
        st = dir[0] ? trainer_make_dirs(dir, t->cfg->out) : RT_OK;
        if (st == RT_OK) st = rt_model_save(t->cfg->out, &t->model, t->config_text);
    }
    return rt_comm_agree(t->comm, st);
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
        st = rt_prune_neurons(m, t->cfg->prune_keep_neurons, kept, counts);
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
    RT_TRY(check_replicas(t));
    rt_model_sizes_text(b, sizeof b, &t->model.spec);
    rt_log0("prune: neurons: %s -> %s, %zu -> %zu parameters (%.1f%%)\n", a, b, before,
            t->model.n_params, 100.0 * (double)t->model.n_params / (double)before);
    return RT_OK;
}

/* The teacher must read the student's inputs and speak its outputs and loss. */
static int check_teacher(const struct trainer *t)
{
    const struct rt_model *te = &t->teacher.model, *st = &t->model;
    char a[RT_MAX_LAYERS * 48], b[RT_MAX_LAYERS * 48];
    rt_model_sizes_text(a, sizeof a, &te->spec);
    rt_model_sizes_text(b, sizeof b, &st->spec);
    const char *from = strcmp(t->cfg->teacher, RT_TEACHER_PREVIOUS) == 0
                           ? "the previous phase's model"
                           : t->cfg->teacher;
    if (te->inputs != st->inputs || te->outputs != st->outputs)
        return rt_errorf(RT_ERR_SHAPE,
                         "[distill] teacher %s (%s) does not fit the student %s ([distill] "
                         "student_layers): input and output widths must match (%d and %d "
                         "against %d and %d)",
                         from, a, b, te->inputs, te->outputs, st->inputs, st->outputs);
    if (te->spec.loss != st->spec.loss)
        return rt_errorf(RT_ERR_SHAPE,
                         "[distill] teacher %s was trained with loss %s, the job's [model] loss "
                         "is %s",
                         from, rt_loss_name(te->spec.loss), rt_loss_name(st->spec.loss));
    return RT_OK;
}

/* Collective: the teacher's outputs for the training rows, once, where cache_teacher
 * says (on: memory when they fit in data.memory_mb, else a per-rank file in the run
 * directory). Nothing to do when the teacher is not used (alpha = 0) or not cached. */
static int build_teacher_cache(struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    if (c->cache_teacher == RT_CACHE_OFF || c->alpha == 0 || t->teacher.cache) return RT_OK;
    int64_t rows = rt_dataset_info(t->train)->rows;
    double bytes = rt_teacher_cache_bytes(&t->teacher, rows, c->shuffle);
    enum rt_rowstore_kind kind = c->cache_teacher == RT_CACHE_FILE     ? RT_ROWSTORE_FILE
                                 : c->cache_teacher == RT_CACHE_MEMORY ? RT_ROWSTORE_MEMORY
                                 : bytes <= c->memory_mb * 1048576.0   ? RT_ROWSTORE_MEMORY
                                                                       : RT_ROWSTORE_FILE;
    char dir[RT_PATH_MAX], file[RT_PATH_MAX + 64];
    rt_config_run_dir(c, dir, sizeof dir);
    snprintf(file, sizeof file, "%s/teacher-cache-%d.h5", dir, t->rank);
    int st = kind == RT_ROWSTORE_FILE ? trainer_make_dirs(dir, "[train] out") : RT_OK;
    RT_TRY(rt_comm_agree(t->comm, st));
    struct rt_data_opts o = {.rank = t->rank,
                             .world = t->world,
                             .shuffle = c->shuffle,
                             .seed = c->seed,
                             .global_batch = c->batch,
                             .memory_mb = c->memory_mb,
                             .synth_rows = c->synth_rows,
                             .x_name = c->data_x,
                             .y_name = c->data_y};
    double t0 = rt_comm_wtime(), tc = rt_trace_now();
    RT_TRY(rt_teacher_cache_build(&t->teacher, t->comm, c->train, &o, kind, file));
    rt_trace_span(RT_TR_TEACHER_CACHE, 0, tc, rt_trace_now());
    rt_log0(
        "distill: cached the teacher's outputs for %lld rows in %s (%.1f MB per rank, %.2f s)\n",
        (long long)rows, kind == RT_ROWSTORE_FILE ? "per-rank files" : "memory", bytes / 1048576.0,
        rt_comm_wtime() - t0);
    return RT_OK;
}

/* A distillation phase from scratch: the teacher is the model the previous phase left
 * (every rank holds it) or a file rank 0 reads; the student is a new model that rank 0
 * initialises, with a fresh optimizer of [distill]'s kind. */
static int begin_distill(struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    int st;
    if (strcmp(c->teacher, RT_TEACHER_PREVIOUS) == 0) {
        struct rt_model previous = t->model;
        memset(&t->model, 0, sizeof t->model);
        st = rt_comm_agree(t->comm, rt_teacher_adopt(&t->teacher, &previous, t->rank, t->world));
    } else {
        st = rt_teacher_load(&t->teacher, t->comm, c->teacher, RT_TEACHER_FILE,
                             trainer_max_batch(t));
    }
    if (st != RT_OK) return st;
    t->has_teacher = 1;
    struct rt_model_spec spec;
    st = trainer_phase_spec(t, t->phase_index, &spec);
    if (st == RT_OK) st = trainer_rebuild(t, &spec, NULL, NULL);
    RT_TRY(rt_comm_agree(t->comm, st));
    init_params(t);
    RT_TRY(rt_comm_agree(t->comm, check_teacher(t)));
    char a[RT_MAX_LAYERS * 48], b[RT_MAX_LAYERS * 48];
    rt_model_sizes_text(a, sizeof a, &t->teacher.model.spec);
    rt_model_sizes_text(b, sizeof b, &spec);
    rt_log0("distill: teacher %s (%s, %zu parameters) -> student %s (%zu parameters), T = %g, "
            "alpha = %g, %s %g, %lld steps\n",
            a, c->teacher, t->teacher.model.n_params, b, t->model.n_params, c->temperature,
            c->alpha, rt_optim_name(t->ocfg.kind), t->ocfg.lr, (long long)t->total_steps);
    return RT_OK;
}

/* Pruning starts with every weight kept, after an optional structured shrink. */
static int begin_prune(struct trainer *t)
{
    /* Shrink once: a model already narrower than the job's (resumed) is not cut again. */
    struct rt_model_spec spec;
    RT_TRY(trainer_phase_spec(t, t->phase_index, &spec));
    if (t->cfg->prune_keep_neurons < 1 && trainer_same_arch(&t->model.spec, &spec))
        RT_TRY(shrink_model(t));
    rt_masks_keep_all(&t->masks);
    const struct rt_prune_sched *ps = &t->cfg->prune_sched;
    rt_log0("prune: %s %s magnitude pruning to %.3f, mask updates at phase steps %lld..%lld, "
            "then %lld epochs of fine-tuning: %lld steps\n",
            rt_prune_schedule_name(ps->kind), rt_prune_scope_name(t->cfg->prune_scope), ps->target,
            (long long)ps->start, (long long)rt_prune_last_update(ps),
            (long long)t->cfg->prune_finetune_epochs, (long long)t->total_steps);
    return RT_OK;
}

/* A phase starts on an epoch boundary with its own step count and a fresh optimizer of its
 * kind. Resumed inside a phase, nothing is reset: the checkpoint restored it all (a
 * distillation checkpoint holds its teacher; only the teacher's cache is rebuilt). */
static int begin_phase(struct trainer *t)
{
    t->total_steps = phase_steps(t, t->phase_index);
    trainer_phase_optim(t, t->phase_index);
    rt_trace_instant(RT_TR_PHASE, t->phase_index, rt_trace_now());
    int resumed = current_phase(t) == RT_PHASE_DISTILL ? t->has_teacher : t->phase_step > 0;
    if (!resumed && t->phase_index > 0) {
        if (t->step_in_epoch > 0) {
            t->epoch++;
            t->step_in_epoch = 0;
        }
        t->phase_epoch0 = t->epoch;
    }
    if (!resumed && current_phase(t) == RT_PHASE_DISTILL) RT_TRY(begin_distill(t));
    if (!resumed && current_phase(t) == RT_PHASE_PRUNE) {
        RT_TRY(rt_comm_agree(t->comm, reset_optimizer(t)));
        RT_TRY(begin_prune(t));
    }
    if (current_phase(t) == RT_PHASE_DISTILL) RT_TRY(build_teacher_cache(t));
    trainer_metrics_event(t, "phase_start", "%s%s, %lld steps", rt_phase_name(current_phase(t)),
                          resumed ? " (resumed)" : "", (long long)t->total_steps);
    return rt_comm_agree(t->comm, sync_sparse(t));
}

/* The report needs each phase's model as a file; plain one-phase training has train.out. */
static int wants_report(const struct trainer *t)
{
    if (t->bench) return 0;
    return t->cfg->n_phases > 1 || t->cfg->phases[0] == RT_PHASE_DISTILL;
}

/* Every phase ends with its model file (for the report) and a checkpoint named after it;
 * the distillation teacher is dropped once its phase is over. */
static int run_phases(struct trainer *t, struct rt_train_result *res)
{
    for (; t->phase_index < t->cfg->n_phases; t->phase_index++, t->phase_step = 0) {
        RT_TRY(begin_phase(t));
        int st = run_epochs(t, res);
        if (st != RT_OK) return st;
        trainer_metrics_event(t, "phase_end", "%s", rt_phase_name(current_phase(t)));
        if (wants_report(t)) RT_TRY(trainer_save_phase_model(t, t->phase_index));
        if (t->cfg->ckpt_keep > 0 && t->step != t->last_ckpt_step)
            RT_TRY(trainer_checkpoint(t, rt_phase_name(current_phase(t))));
        if (t->phase_index + 1 == t->cfg->n_phases) break; /* keep the last phase current */
        if (t->has_teacher) {
            rt_teacher_free(&t->teacher);
            t->has_teacher = 0;
        }
    }
    return wants_report(t) ? trainer_report(t) : RT_OK;
}

/* bench train's figures: the GEMM reference of the whole step and of each layer, and each
 * layer's mean forward and backward time over the steps of the final model. */
static void bench_result(const struct trainer *t, struct rt_train_result *res)
{
    const struct rt_model *m = &t->model;
    double gemm[RT_MAX_LAYERS];
    int B = (int)(t->cfg->batch / t->world);
    double steps = (double)(t->step - t->layer_steps0 > 0 ? t->step - t->layer_steps0 : 1);
    res->flops_per_sample = rt_model_train_flops_per_sample(m);
    res->gemm_step_s = rt_model_gemm_step_seconds(m, B, 10, gemm);
    res->n_layers = m->n_layers;
    for (int i = 0; i < m->n_layers; i++) {
        struct rt_layer_time *l = &res->layers[i];
        rt_model_layer_text(m, i, l->text, sizeof l->text);
        l->forward_s = t->layer_timing[2 * i] / steps;
        l->backward_s = t->layer_timing[2 * i + 1] / steps;
        l->gemm_s = gemm[i];
        l->flops = rt_model_layer_train_flops(m, i);
    }
}

static void fill_result(const struct trainer *t, struct rt_train_result *res)
{
    res->steps = t->step;
    res->epochs = (double)t->step / (double)t->steps_per_epoch;
    res->samples_per_s = t->train_seconds > 0 ? t->samples / t->train_seconds : 0;
    res->stop_signal = t->stop_signal;
    res->skipped = t->skipped;
    res->compute_s = t->prog.run_compute_s;
    res->comm_s = t->prog.run_comm_s;
    res->wait_s = t->prog.run_wait_s;
    res->sparsity = rt_weights_sparsity(&t->model, t->model.params, -1);
    if (t->bench && t->model.layers) bench_result(t, res);
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", t->last_ckpt);
}

int rt_train_run(const struct rt_config *cfg, rt_comm_t *comm, const struct rt_train_opts *opts,
                 struct rt_train_result *res)
{
    struct trainer t = {.cfg = cfg, .comm = comm, .bench = opts && opts->bench};
    t.rank = rt_comm_rank(comm);
    t.world = rt_comm_size(comm);
    memset(res, 0, sizeof *res);
    t.wall_start = rt_comm_wtime();
    t.threads = trainer_choose_threads((int)cfg->threads, rt_comm_local_size(comm));
    int st = trainer_open(&t);
    if (st == RT_OK && opts && opts->resume) st = trainer_resume(&t, opts->resume);
    if (st == RT_OK && opts) st = trainer_trace_begin(&t, opts->trace);
    if (st == RT_OK) {
        rt_log0("ringtrain: job %s | %d rank%s x %d thread%s | %zu parameters | %lld steps of "
                "%lld samples\n",
                cfg->source, t.world, t.world > 1 ? "s" : "", t.threads, t.threads > 1 ? "s" : "",
                t.model.n_params, (long long)t.total_steps, (long long)cfg->batch);
        st = run_phases(&t, res);
    }
    if (st == RT_OK) st = save_model(&t);
    if (st == RT_OK || st == RT_STOPPED) {
        int ts = trainer_trace_end(&t);
        st = st == RT_OK ? ts : st;
    }
    fill_result(&t, res);
    res->seconds = rt_comm_wtime() - t.wall_start;
    trainer_close(&t);
    return st;
}
