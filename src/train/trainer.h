/* trainer.h - the state of one training run on one rank, shared by the files of
 * src/train (set-up, the step, progress, phases, checkpointing). Private to src/train.
 *
 * Position: `step` global steps are done; the run is in epoch `epoch` (0-based) with
 * `step_in_epoch` of its steps done. That triple, with the seed, fixes the data order, so
 * it is all a checkpoint needs to continue the sampler exactly. */
#ifndef RT_TRAIN_TRAINER_H
#define RT_TRAIN_TRAINER_H

#include "ringtrain/buckets.h"
#include "ringtrain/ckpt.h"
#include "ringtrain/comm.h"
#include "ringtrain/config.h"
#include "ringtrain/dataset.h"
#include "ringtrain/distill.h"
#include "ringtrain/model.h"
#include "ringtrain/optim.h"
#include "ringtrain/prune.h"
#include "ringtrain/train.h"
#include "train/faults.h"

#include <stdio.h>

/* Running sums between progress lines and over the epoch in progress, this rank's share;
 * reduced across ranks only when printed or checkpointed. */
struct progress {
    double loss_sum, rows, correct; /* since the last line */
    double epoch_loss, epoch_rows, epoch_correct;
    double t_last, samples_last;
    /* This rank's step time since the last line, split: computing (forward, backward,
     * optimizer, including communication progressed behind it), blocked in communication,
     * and the part of that spent waiting for the left neighbour's data. */
    double compute_s, comm_s, wait_s, steps;
    double run_compute_s, run_comm_s, run_wait_s; /* the same over the whole run */
    double epoch_samples0, epoch_seconds0;        /* samples, train_seconds at epoch start */
};

/* One "step" line of metrics.jsonl (metrics.c): the interval since the previous one. */
struct metrics_step {
    double loss, accuracy, sparsity, samples_per_s; /* accuracy < 0: regression */
    double compute_s, comm_s, wait_s;               /* rank 0, mean per step */
    int slowest_rank, max_wait_rank;
    double slowest_compute_s, max_wait_s; /* their mean per step */
};

/* comm.deterministic (exact.c): the fixed-point gradient sum and one micro-batch's rows. */
#define RT_EXACT_MAX_SUMS 64
struct exact_sum {
    size_t blocks;  /* fixed.h blocks of the parameters */
    int64_t *acc;   /* (n_params) owned */
    float *ref;     /* (blocks) owned: reference magnitudes, in checkpoints */
    float *maxima;  /* (blocks + 2) owned: this step's block maxima, then two flags */
    int32_t *shift; /* (blocks) owned */
    float *x;       /* (max_batch, inputs) owned: the micro-batch's rows */
    void *y;        /* (max_batch, positions) int32 or (max_batch, outputs) float, owned */
    int64_t *ids;   /* (max_batch) owned */
    /* the int64 sum over ranks, started piece by piece during the last backward */
    rt_comm_req *sums[RT_EXACT_MAX_SUMS]; /* in start order */
    int nsums;
    size_t pend_lo, pend_hi; /* converted range not yet started */
};

struct trainer {
    double layer_timing[2 * RT_MAX_LAYERS]; /* bench: forward, backward seconds per layer */
    int64_t layer_steps0;                   /* the step the model in use began timing at */
    const struct rt_config *cfg;
    rt_comm_t *comm;
    int rank, world;
    struct rt_model model;
    struct rt_optim opt;
    struct rt_dataset *train, *test;
    struct rt_shape data_shape; /* of the training set's samples */
    struct rt_buckets *buckets; /* owned: gradient averaging overlapped with backward */
    uint64_t *checksums;        /* (world) owned: replica checksums of the last check */
    double *timings;            /* (3 world) owned: every rank's compute, comm, wait sums */
    struct rt_faults faults;    /* test hooks (faults.h) */
    int64_t skipped;            /* steps skipped for a non-finite gradient (train.skip_nonfinite) */
    int threads;
    int64_t steps_per_epoch;
    int64_t step, epoch, step_in_epoch; /* position, see above */
    /* The phase in progress: cfg->phases[phase_index], phase_step of its total_steps done,
     * begun at global epoch phase_epoch0 (each phase starts on an epoch boundary). */
    int phase_index;
    int64_t phase_step, total_steps, phase_epoch0;
    struct rt_optim_cfg ocfg;       /* the phase's optimizer ([distill] or [optim]) */
    struct rt_sched_cfg scfg;       /* and its learning-rate schedule */
    struct rt_teacher teacher;      /* the distillation phase's frozen teacher */
    int has_teacher;                /* teacher set up (fresh or from a checkpoint) */
    int deferred;                   /* a failure inside a step, agreed at the next boundary */
    struct exact_sum exact;         /* comm.deterministic; zeroed when off */
    struct rt_masks masks;          /* pruning masks; all kept outside a prune phase */
    int has_masks;                  /* masks allocated (the job has a prune phase) */
    double train_seconds, samples;  /* across resumes */
    double wall_start, wall_before; /* this process's start; wall time of earlier runs */
    double lr;                      /* of the last step */
    int stop_signal;                /* agreed stop request (signal number), 0 if none */
    struct progress prog;
    FILE *metrics_file;             /* rank 0: metrics.jsonl, appended */
    const char *trace_path;         /* --trace FILE, or NULL */
    int bench;                      /* bench train: nothing is written */
    double trace_t0;                /* this rank's trace clock at the common start */
    struct rt_ckpt_metric *metrics; /* (metrics_cap) owned: one row per finished epoch */
    int64_t n_metrics, metrics_cap;
    char ckpt_dir[RT_PATH_MAX];
    int64_t last_ckpt_step; /* -1: none written or loaded by this run */
    double last_ckpt_time;
    char last_ckpt[RT_PATH_MAX + 64];
    char *config_text; /* owned: the effective job, saved with the model */
};

/* Collective set-up (setup.c): opens the data, builds the model, optimizer and buckets,
 * and the run record; every part ends at an agreement point. trainer_close frees it all. */
int trainer_open(struct trainer *t);
void trainer_close(struct trainer *t);

/* Replaces the optimizer by a fresh one of t->ocfg's kind. RT_ERR_NOMEM. */
int trainer_reset_optimizer(struct trainer *t);

/* Collective: rank 0 initialises the parameters and broadcasts them. */
void trainer_init_params(struct trainer *t);

/* Collective: compares every replica's parameters (and masks) by checksum; RT_ERR_INTERNAL
 * naming the ranks that differ from rank 0 (the same on every rank). */
int trainer_check_replicas(struct trainer *t);

/* Sharded optimizer: waits until the last step's parameter allgathers are done. Anything
 * that reads or writes the parameters outside a training forward calls it first (a no-op
 * unsharded). Collective in effect: every rank reaches it at the same points. */
void trainer_params_ready(struct trainer *t);

/* Sharded checkpoints (shards.c). The moments as a checkpoint sees them: rank 0's
 * callbacks fetch from or deliver to each piece's owner. */
void trainer_moments_source(struct trainer *t, struct rt_ckpt_moments *mo);
/* Collective: rank 0 runs write(t, ctx) (which may call the source's fill) while the
 * others serve the moments it asks for; write's status on rank 0, RT_OK elsewhere. */
int trainer_write_sharded(struct trainer *t, int (*write)(struct trainer *t, void *ctx), void *ctx);
/* Collective: rank 0 reads path's moments and sends each rank its shards. */
int trainer_scatter_moments(struct trainer *t, const char *path);

/* Forward of batch b and the phase's loss into m->dlogits, normalised by b's global rows
 * (step.c). A failed loss (teacher cache) is deferred to the next agreement. */
double trainer_forward_loss(struct trainer *t, const struct rt_batch *b);

/* comm.deterministic (exact.c). init sizes the state for the model in use (again after a
 * rebuild: the references restart from nothing); free releases it. */
int trainer_exact_init(struct trainer *t);
void trainer_exact_free(struct trainer *t);
/* Collective: forward and backward of this rank's fixed micro-batches of b, their gradients
 * summed exactly over micro-batches and ranks into m->grads (the same bytes at any rank
 * count). 1 when the gradient is ready; 0 when it is not finite (the same verdict and
 * *bad, a coordinate of the first non-finite block, on every rank); or the (agreed)
 * failure. The loss and correct predictions of this rank's rows into *loss, *correct. */
int trainer_exact_gradient(struct trainer *t, const struct rt_batch *b, double *loss,
                           double *correct, size_t *bad);

/* Collective: one training step (step.c). RT_STOPPED when a signal stops the run. */
int trainer_step(struct trainer *t);

/* Collective (progress.c): a progress line from the sums since the last one; the end of an
 * epoch (or of the run inside one): mean loss, test metrics, a metrics row, into res. */
int trainer_report_progress(struct trainer *t);
/* Collective: the test set's loss (and accuracy) now, as a log line and a metrics event
 * (train.eval_every). */
int trainer_report_eval(struct trainer *t);
int trainer_end_epoch(struct trainer *t, struct rt_train_result *res);
void trainer_result_from_metric(const struct rt_ckpt_metric *r, struct rt_train_result *res);

/* Collective: runs the job's phases from the position on (phases.c), then the report. */
int trainer_run_phases(struct trainer *t, struct rt_train_result *res);

/* Collective. Loads the checkpoint named by resume ("auto": the newest readable one in
 * the checkpoint directory, or none) into the model, optimizer and position. Rank 0 reads
 * and broadcasts. With "auto" and an empty directory the run starts from scratch. */
int trainer_resume(struct trainer *t, const char *resume);

/* Collective. Rank 0 writes a checkpoint of the current state tagged tag ("" for periodic
 * ones), then removes the oldest beyond checkpoint.keep; every rank learns the outcome. */
int trainer_checkpoint(struct trainer *t, const char *tag);

/* Collective (every rank, same arguments): replaces the model by one of architecture spec
 * (same depth, input and output widths), copying the kept neurons' parameters from the
 * current model when kept is non-NULL (rt_model_shrink_copy), and rebuilds what depends on
 * the layout: a fresh optimizer, the masks, the gradient buckets. Outside the step loop. */
int trainer_rebuild(struct trainer *t, const struct rt_model_spec *spec, const int32_t *kept,
                    const int *counts);

static inline int64_t local_rows_max(int64_t global_batch, int world)
{
    return (global_batch + world - 1) / world;
}

/* Rows of the largest of k micro-batches of `rows` (train.accum_steps). */
static inline int64_t micro_rows_max(int64_t rows, int64_t k)
{
    return (rows + k - 1) / k;
}

/* Largest multiple of world not above b (at least world): evaluation batches need not match
 * training ones, only divide evenly. */
static inline int64_t eval_global_batch(int64_t b, int world)
{
    return b < world ? world : b / world * world;
}

/* Threads per rank (train.threads, OPENBLAS_NUM_THREADS, or the node's share); sets BLAS's. */
int trainer_choose_threads(int requested, int local_ranks);

/* Collective: loss and accuracy of m over every row of d exactly once (file order). */
int trainer_evaluate(struct rt_model *m, struct rt_dataset *d, rt_comm_t *comm,
                     struct rt_eval_result *r);

/* The optimizer and schedule of phase i into t->ocfg, t->scfg. */
void trainer_phase_optim(struct trainer *t, int i);

/* The architecture the job's model has in phase i before any structured pruning: the
 * student from the distillation phase on, else [model]; a layer list without an input
 * shape takes the training data's. RT_ERR_SHAPE when the input does not fit the data. */
int trainer_phase_spec(const struct trainer *t, int i, struct rt_model_spec *spec);

/* The training set's reader options: this rank, the job's order, batch, memory, datasets. */
struct rt_data_opts trainer_data_opts(const struct trainer *t);

/* Rows of the largest local batch (training or evaluation): the models' max_batch. */
int trainer_max_batch(const struct trainer *t);

/* Collective, at the end of the job: evaluates each phase's model file (and a teacher
 * file) on the test set, times inference, prints the table and writes report.json in the
 * run directory (rank 0). */
int trainer_report(struct trainer *t);

/* Collective, after phase i: rank 0 writes the phase's model to its file in the run
 * directory (CSR when at least half the weights are zero); the path into buf. */
int trainer_save_phase_model(struct trainer *t, int i);
void trainer_phase_model_path(const struct trainer *t, int i, char *buf, size_t cap);

/* 1 when a and b have the same widths and activation. */
int trainer_same_arch(const struct rt_model_spec *a, const struct rt_model_spec *b);

/* metrics.jsonl (metrics.c); rank 0 writes, the others' calls do nothing. */
int trainer_metrics_open(struct trainer *t);
void trainer_metrics_close(struct trainer *t);
void trainer_metrics_step(struct trainer *t, const struct metrics_step *r);
void trainer_metrics_epoch(struct trainer *t, const struct rt_ckpt_metric *row, double accuracy,
                           double sparsity);
void trainer_metrics_event(struct trainer *t, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --trace (metrics.c): collective; begin starts recording after a barrier, end gathers every
 * rank's events on rank 0, which writes the Chrome trace JSON. No-ops without a path. */
int trainer_trace_begin(struct trainer *t, const char *path);
int trainer_trace_end(struct trainer *t);

/* mkdir -p dir; errors name `what` (the key or file the directory is for). */
int trainer_make_dirs(const char *dir, const char *what);

/* Appends a finished (or cut) epoch's row to the metrics table, dropping the oldest row
 * when full. */
void trainer_add_metric(struct trainer *t, const struct rt_ckpt_metric *row);

#endif
