/* bench_train.c - `ringtrain bench train JOB.ini`: what a job's training costs per rank,
 * without touching its checkpoints, model files or metrics.
 *
 * MFU = achieved model FLOP/s per rank (training FLOPs per sample x samples/s / ranks, over
 * real steps of the trainer's own loop) divided by the FLOP/s cblas_sgemm reaches on
 * exactly the GEMMs of one step (same shapes, transposes and threads), measured on every
 * rank in the same run before and after training, so machine noise hits both alike. */
#include "ringtrain/bench.h"
#include "ringtrain/config.h"
#include "ringtrain/log.h"
#include "ringtrain/model.h"
#include "ringtrain/status.h"
#include "ringtrain/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_FIELDS 9 /* per rank: see report() */

static int bench_config(struct rt_config *cfg, int argc, char **argv, long *steps)
{
    rt_config_defaults(cfg);
    *steps = 100;
    int first = 0;
    if (argc > 0 && argv[0][0] != '-' && !strchr(argv[0], '=')) {
        RT_TRY(rt_config_load(cfg, argv[0]));
        first = 1;
    }
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            *steps = atol(argv[++i]);
            if (*steps < 1)
                return rt_errorf(RT_ERR_INVAL,
                                 "bench train: --steps %s: expected a whole number >= 1", argv[i]);
            continue;
        }
        RT_TRY(rt_config_override(cfg, argv[i]));
    }
    RT_TRY(rt_config_validate(cfg));
    /* The first phase only, as many steps as asked, nothing written, no evaluation. */
    cfg->n_phases = 1;
    cfg->max_steps = *steps;
    cfg->ckpt_keep = 0;
    cfg->out[0] = cfg->test[0] = '\0';
    cfg->log_every = 0;
    if (cfg->phases[0] == RT_PHASE_DISTILL)
        return rt_errorf(RT_ERR_INVAL, "bench train: the job starts with distill: benchmark its "
                                       "student as a train job instead");
    return RT_OK;
}

static void report(rt_comm_t *comm, const struct rt_config *cfg, const double *all, double fps,
                   double samples_per_s, long steps)
{
    int world = rt_comm_size(comm);
    rt_log0("bench train: job %s | %d rank%s | %lld samples per step | %ld steps | %.3g MFLOP per "
            "sample (forward + backward GEMMs)\n",
            cfg->source, world, world > 1 ? "s" : "", (long long)cfg->batch, steps, fps / 1e6);
    if (cfg->context > 0) /* a language model: its figure of merit, all ranks together */
        rt_log0("bench train: %.0f tokens/s (%lld tokens per sample; FLOPs count attention's "
                "T x T products in full)\n",
                samples_per_s * (double)cfg->context, (long long)cfg->context);
    rt_log0("%-5s %12s %11s %11s %6s %11s %11s %11s %7s %9s %9s %9s\n", "rank", "samples/s",
            "GFLOP/s", "sgemm GF/s", "MFU", "compute ms", "comm ms", "wait ms", "comm %", "peak MB",
            "optim MB", "act MB");
    for (int q = 0; q < world; q++) {
        const double *r = all + (size_t)q * BENCH_FIELDS;
        double achieved = samples_per_s * fps / world, step = r[2] + r[3] + r[4];
        rt_log0("%-5d %12.0f %11.2f %11.2f %6.3f %11.3f %11.3f %11.3f %7.1f %9.1f %9.3f %9.3f\n", q,
                samples_per_s, achieved / 1e9, r[0] / 1e9, r[0] > 0 ? achieved / r[0] : 0,
                1e3 * r[2] / r[5], 1e3 * r[3] / r[5], 1e3 * r[4] / r[5],
                step > 0 ? 100 * (r[3] + r[4]) / step : 0, r[6] / 1024.0, r[7] / 1048576.0,
                r[8] / 1048576.0);
    }
}

/* Rank 0's layers: where a step's time goes, and each layer's MFU: the time cblas_sgemm
 * alone takes for that layer's own GEMMs at this batch over the time the layer took (layers
 * without GEMMs show their time only). */
static void report_layers(const struct rt_train_result *r, int B)
{
    rt_log0("%-5s %-40s %9s %9s %8s %10s %9s %6s\n", "layer", "(rank 0, per step)", "fwd ms",
            "bwd ms", "share %", "sgemm ms", "GFLOP/s", "MFU");
    double total = 0;
    for (int i = 0; i < r->n_layers; i++)
        total += r->layers[i].forward_s + r->layers[i].backward_s;
    for (int i = 0; i < r->n_layers; i++) {
        const struct rt_layer_time *l = &r->layers[i];
        double t = l->forward_s + l->backward_s;
        rt_log0("%-5d %-40.40s %9.3f %9.3f %8.1f", i, l->text, 1e3 * l->forward_s,
                1e3 * l->backward_s, total > 0 ? 100 * t / total : 0);
        if (l->flops > 0 && l->gemm_s > 0 && t > 0)
            rt_log0(" %10.3f %9.2f %6.3f\n", 1e3 * l->gemm_s, l->flops * B / t / 1e9,
                    l->gemm_s / t);
        else
            rt_log0(" %10s %9s %6s\n", "-", "-", "-");
    }
}

/* The agreed failure st: rank 0 says it once; 2 for a usage error, else 1. */
static int failed(rt_comm_t *comm, int st)
{
    if (rt_comm_rank(comm) == 0) fprintf(stderr, "ringtrain: error: %s\n", rt_error_message(st));
    return st == RT_ERR_INVAL ? 2 : 1;
}

int rt_cli_bench_train(rt_comm_t *comm, int argc, char **argv)
{
    static struct rt_config cfg;
    long steps;
    int st = rt_comm_agree(comm, bench_config(&cfg, argc, argv, &steps));
    if (st != RT_OK) return failed(comm, st);
    int B = (int)(cfg.batch / rt_comm_size(comm));
    struct rt_train_opts opts = {.bench = 1};
    struct rt_train_result r;
    long timed = cfg.max_steps;
    cfg.max_steps = steps < 10 ? steps : 10; /* warm-up: threads, pages, clocks settle */
    st = rt_train_run(&cfg, comm, &opts, &r);
    if (st != RT_OK) return failed(comm, st);
    double g0 = r.gemm_step_s;
    cfg.max_steps = timed;
    st = rt_train_run(&cfg, comm, &opts, &r);
    if (st != RT_OK) return failed(comm, st);
    double g1 = r.gemm_step_s, fps = r.flops_per_sample;
    double mine[BENCH_FIELDS] = {g0 > 0 && g1 > 0 ? fps * B / ((g0 + g1) / 2) : 0,
                                 r.samples_per_s,
                                 r.compute_s,
                                 r.comm_s,
                                 r.wait_s,
                                 (double)r.steps,
                                 r.peak_rss_bytes / 1024.0,
                                 r.optim_state_bytes,
                                 r.activation_bytes};
    double *all = malloc(sizeof mine * (size_t)rt_comm_size(comm));
    if ((st = rt_comm_agree(comm, all ? RT_OK : rt_errorf(RT_ERR_NOMEM, "bench train"))) != RT_OK) {
        free(all);
        return failed(comm, st);
    }
    rt_comm_allgather_f64(comm, mine, BENCH_FIELDS, all);
    report(comm, &cfg, all, fps, r.samples_per_s, steps);
    report_layers(&r, B);
    free(all);
    return 0;
}
