/* setup.c - a run's set-up and tear-down on every rank: data, model, optimizer, gradient
 * buckets, the run record; and the rebuild when the architecture changes (structured
 * pruning, a distillation student). Every phase of set-up ends at an agreement point. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "ringtrain/status.h"
#include "train/phases.h"
#include "train/trainer.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

struct rt_data_opts trainer_data_opts(const struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    return (struct rt_data_opts){
        .rank = t->rank,
        .world = t->world,
        .shuffle = c->shuffle,
        .seed = c->seed,
        .global_batch = c->batch,
        .memory_mb = c->memory_mb,
        .synth_rows = c->synth_rows,
        .context = (int)c->context,
        .x_name = c->data_x,
        .y_name = c->data_y,
    };
}

/* comm.deterministic cuts the batch itself, by global positions: it needs the positions
 * to mean the same rows at any rank count, and every micro-batch on one rank. */
static int check_deterministic(const struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    if (!c->deterministic) return RT_OK;
    if (c->micro_batches % t->world != 0)
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [comm] micro_batches = %lld: comm.deterministic needs a multiple "
                         "of the %d ranks",
                         c->source, (long long)c->micro_batches, t->world);
    if (c->micro_batches > c->batch)
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [comm] micro_batches = %lld: more than the %lld rows of [train] "
                         "batch",
                         c->source, (long long)c->micro_batches, (long long)c->batch);
    if (c->accum_steps != 1)
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [train] accum_steps = %lld: comm.deterministic cuts the batch into "
                         "[comm] micro_batches itself; leave accum_steps at 1",
                         c->source, (long long)c->accum_steps);
    if (c->shuffle == RT_SHUFFLE_SHARD)
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [data] shuffle = shard: comm.deterministic needs the same rows at "
                         "any rank count (shuffle = global or off)",
                         c->source);
    return RT_OK;
}

static int open_data(struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    struct rt_data_opts o = trainer_data_opts(t);
    if (c->batch % t->world != 0)
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [train] batch = %lld: expected a multiple of the %d ranks", c->source,
                         (long long)c->batch, t->world);
    if (c->accum_steps > c->batch / t->world)
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [train] accum_steps = %lld: more micro-batches than the %lld rows "
                         "each of the %d ranks has of [train] batch = %lld",
                         c->source, (long long)c->accum_steps, (long long)(c->batch / t->world),
                         t->world, (long long)c->batch);
    RT_TRY(check_deterministic(t));
    RT_TRY(rt_dataset_open(&t->train, c->train, &o));
    if (c->context > 0 && rt_dataset_info(t->train)->positions == 1)
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [model] context = %lld, but %s is not a text dataset "
                         "(ringtrain data import-text)",
                         c->source, (long long)c->context, c->train);
    t->data_shape = rt_dataset_sample_shape(t->train);
    if (c->test[0] == '\0') return RT_OK;
    o.shuffle = RT_SHUFFLE_OFF;
    o.global_batch = eval_global_batch(c->eval_batch, t->world);
    o.synth_rows = c->synth_test_rows;
    o.split = 1;
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
    if (t->cfg->optim_shard) {
        RT_TRY(rt_buckets_set_sharded(t->buckets, t->model.params));
        rt_model_set_forward_hook(&t->model, rt_buckets_layer_params, t->buckets);
    }
    /* A pruning job switches to sparse gradients at a mask update, inside the step loop:
     * its buffers are taken now. */
    return trainer_job_needs_masks(t->cfg) ? rt_buckets_reserve_sparse(t->buckets) : RT_OK;
}

int trainer_same_arch(const struct rt_model_spec *a, const struct rt_model_spec *b)
{
    return rt_model_spec_same_layers(a, b);
}

int trainer_max_batch(const struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    /* A step's rows run as accum_steps micro-batches, or as comm.deterministic's fixed
     * ones (positions j, j + M, ...: ceil(batch / M) rows): activations for one of them. */
    int64_t rows = micro_rows_max(local_rows_max(c->batch, t->world), c->accum_steps);
    if (c->deterministic) rows = micro_rows_max(c->batch, c->micro_batches);
    int64_t eval_rows = local_rows_max(eval_global_batch(c->eval_batch, t->world), t->world);
    if (!t->test) eval_rows = 0; /* nothing is evaluated during training */
    return (int)(rows > eval_rows ? rows : eval_rows);
}

/* A fresh optimizer of the phase's kind: moments from an earlier phase describe another
 * problem (or another model). Sharded, it keeps this rank's shards only (the buckets say
 * how many). */
int trainer_reset_optimizer(struct trainer *t)
{
    rt_optim_free(&t->opt);
    return rt_optim_init(&t->opt, &t->ocfg, rt_buckets_shard_elems(t->buckets));
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
    if (st == RT_OK) st = trainer_exact_init(t);
    return st == RT_OK ? trainer_reset_optimizer(t) : st;
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
void trainer_init_params(struct trainer *t)
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
    trainer_init_params(t);
    RT_TRY(setup_comm(t));
    RT_TRY(trainer_exact_init(t));
    return rt_optim_init(&t->opt, &t->ocfg, rt_buckets_shard_elems(t->buckets));
}

static int validate_data(struct trainer *t)
{
    const struct rt_model_spec *s = &t->model.spec;
    int in = t->model.inputs, out = t->model.outputs;
    RT_TRY(rt_dataset_validate(t->train, in, out, s->loss));
    if (t->test) RT_TRY(rt_dataset_validate(t->test, in, out, s->loss));
    return RT_OK;
}

/* Every phase of set-up ends at an agreement point, so a bad file or value on any rank
 * stops every rank at the same place with the same message. */
int trainer_open(struct trainer *t)
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
    t->total_steps = trainer_phase_steps(t, 0);
    if (trainer_job_needs_masks(t->cfg) && !t->has_masks) {
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

void trainer_close(struct trainer *t)
{
    rt_dataset_close(t->train);
    rt_dataset_close(t->test);
    rt_buckets_free(t->buckets);
    trainer_exact_free(t);
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
