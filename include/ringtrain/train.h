/* train.h - the training run and evaluation, on every rank.
 *
 * Both functions are collective: every rank calls them with the same arguments, and their
 * return value is already agreed across ranks (rt_comm_agree), so the caller can exit on
 * every rank together. The error message is available through rt_error_message(). */
#ifndef RT_TRAIN_H
#define RT_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "ringtrain/comm.h"
#include "ringtrain/config.h"
#include "ringtrain/phase.h"

struct rt_train_result {
    int64_t steps;              /* global steps taken */
    double epochs;              /* epochs completed, fractional when max_steps cut one short */
    double loss;                /* mean training loss over the last epoch's steps */
    int has_test;               /* 1 when a test set was evaluated */
    double test_loss, test_acc; /* test_acc < 0 when the loss is not a classification */
    double samples_per_s;       /* training samples over training time (evaluation excluded) */
    double seconds;             /* wall time of this process's run */
    double sparsity;            /* fraction of the weights (not biases) that are exactly 0 */
    int stop_signal;            /* with RT_STOPPED: the signal that stopped the run */
    int64_t skipped;            /* steps skipped for a non-finite gradient (this process) */
    double compute_s, comm_s, wait_s;  /* this rank's step time of this run, split (train.h's
                                          progress-line split: see README) */
    char checkpoint[RT_PATH_MAX + 64]; /* the last checkpoint written or resumed from, or "" */
    double optim_state_bytes; /* this rank's optimizer moments (1/N of them when sharded) */
    double activation_bytes;  /* the model's activation arena (one micro-batch's rows) */
    double peak_rss_bytes;    /* this process's peak resident memory during the run (with
                                 opts->bench: measured from the run's start, before the
                                 benchmark's own GEMM timing) */
    /* With opts->bench: the final model's training FLOPs per sample and the seconds
     * cblas_sgemm alone takes for its GEMMs of one step at this rank's batch. */
    double flops_per_sample, gemm_step_s;
    /* With opts->bench, per layer of the final model: its text, forward and backward
     * seconds per step (this rank), and the seconds cblas_sgemm alone takes for its GEMMs. */
    int n_layers;
    struct rt_layer_time {
        char text[64];
        double forward_s, backward_s, gemm_s, flops; /* flops: training FLOPs per sample */
    } layers[RT_MAX_LAYERS];
};

struct rt_train_opts {
    const char *resume; /* NULL: start fresh; "auto": newest readable checkpoint; or a path */
    const char *trace;  /* NULL, or the Chrome trace JSON file rank 0 writes at the end */
    int bench;          /* 1: write nothing (no metrics.jsonl, phase models or report) */
};

/* Trains cfg's model on cfg's data with this communicator's ranks, prints progress on rank
 * 0, writes checkpoints and the final model (cfg->out) on rank 0. Returns RT_OK, a failure,
 * or RT_STOPPED when a signal stopped the run at a step boundary after a checkpoint
 * (res->stop_signal, res->checkpoint). opts may be NULL. */
int rt_train_run(const struct rt_config *cfg, rt_comm_t *comm, const struct rt_train_opts *opts,
                 struct rt_train_result *res);

/* For --print-config: the job's models layer by layer (output shapes, parameters), as INI
 * comments. Reads the training data's dimensions when a layer list has no input shape.
 * RT_ERR_SHAPE and the data's errors, with the layer or file named. */
int rt_train_describe(const struct rt_config *cfg, FILE *out);

struct rt_eval_result {
    double loss;
    double acc;                 /* < 0 for regression models */
    int64_t samples;            /* every sample counted exactly once */
    int csr;                    /* 1 when the model file was CSR and the sparse kernel ran */
    char kernels[512];          /* per layer with weights: rt_model_kernels_text */
    int64_t nonzeros, weights;  /* nonzero weights and all weights (biases not counted) */
    int64_t params;             /* all parameters, biases included */
    double infer_us_per_sample; /* forward time per row (slowest rank); < 0: not measured */
    int positions;              /* tokens per sample of a language model; 1 otherwise */
};

/* Evaluates the model file on the dataset, sharded across ranks. threads as train.threads. */
int rt_eval_run(rt_comm_t *comm, const char *model_path, const char *data_path, int64_t batch,
                double memory_mb, int threads, struct rt_eval_result *res);

#endif
