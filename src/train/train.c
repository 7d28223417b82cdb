/* train.c - rt_train_run: set-up (setup.c), the phases (phases.c), the final model.
 *
 * Every rank runs it in lockstep. The files of src/train, by concern: setup.c (data,
 * model, buckets, rebuild), step.c (one step), progress.c (progress lines, epoch ends,
 * evaluation), replicas.c (checksums), phases.c (the phase controller and the table of
 * per-phase operations), phase_train.c, phase_prune.c, phase_distill.c (one phase each),
 * faults.c (test hooks), resume.c (checkpoints), metrics.c, report.c. */
#include "ringtrain/log.h"
#include "ringtrain/memstat.h"
#include "ringtrain/model_file.h"
#include "ringtrain/status.h"
#include "ringtrain/train.h"
#include "train/trainer.h"

#include <stdio.h>
#include <string.h>

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
    res->optim_state_bytes =
        (double)((t->opt.m != NULL) + (t->opt.v != NULL)) * (double)t->opt.n * sizeof(float);
    res->activation_bytes = (double)t->model.act_arena.cap;
    res->peak_rss_bytes = rt_mem_peak_bytes(); /* before bench_result's own buffers */
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
    if (t.bench) rt_mem_peak_reset();
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
        if (cfg->optim_shard) {
            double arrays = (t.opt.m != NULL) + (t.opt.v != NULL);
            rt_log0("optim: state sharded over %d rank%s (ZeRO-1): %zu of %zu floats per "
                    "moment, %.2f of %.2f MiB on rank 0\n",
                    t.world, t.world > 1 ? "s" : "", t.opt.n, t.model.n_params,
                    arrays * 4.0 * (double)t.opt.n / 1048576.0,
                    arrays * 4.0 * (double)t.model.n_params / 1048576.0);
        }
        st = trainer_run_phases(&t, res);
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
