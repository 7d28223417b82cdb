/* config.h - a job: every setting of a run, from built-in defaults, an INI file (parsed by
 * inih) and command-line `section.key=value` overrides, in that order.
 *
 * The key table in config.c is the single source of truth: it gives each key's type,
 * default, allowed range and one-line documentation, and `ringtrain train --help-keys`
 * prints it. The built-in defaults are the embedded job: Fashion-MNIST 784-512-256-10.
 * Errors name the origin (file:line or "command line"), the key and the value, and say
 * what was expected. No MPI here: the caller decides who parses (every rank does). */
#ifndef RT_CONFIG_H
#define RT_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "ringtrain/buckets.h"
#include "ringtrain/comm.h"
#include "ringtrain/dataset.h"
#include "ringtrain/distill.h"
#include "ringtrain/model.h"
#include "ringtrain/optim.h"
#include "ringtrain/phase.h"
#include "ringtrain/prune.h"

#define RT_PATH_MAX   1024
#define RT_MAX_PHASES 8

#define RT_TEACHER_PREVIOUS "previous" /* distill.teacher: the previous phase's model */

struct rt_config {
    /* [job] */
    int n_phases;
    enum rt_phase phases[RT_MAX_PHASES];
    /* [model] */
    struct rt_model_spec model;  /* input shape: see rt_config_model_spec */
    struct rt_shape input_shape; /* [model] input_shape; rank 0 = from the data */
    int64_t context;             /* [model] context: tokens per sample of text data; 0 = none */
    /* [data] */
    char train[RT_PATH_MAX];                       /* dataset file or synth:NAME */
    char test[RT_PATH_MAX];                        /* "" = no test set */
    char data_x[RT_PATH_MAX], data_y[RT_PATH_MAX]; /* dataset names inside the files */
    enum rt_shuffle shuffle;
    double memory_mb; /* per rank: hold rows in memory up to this size */
    int64_t synth_rows, synth_test_rows;
    /* [optim] */
    struct rt_optim_cfg optim;
    struct rt_sched_cfg sched;
    double clip_norm; /* 0 = off */
    int optim_shard;  /* ZeRO-1: optimizer state sharded over the ranks (buckets.h) */
    /* [comm] */
    enum rt_allreduce_algo algorithm;
    int64_t segment_kb;         /* ring pipeline segment; 0 = measured default */
    int64_t bucket_kb;          /* gradient bucket size */
    enum rt_overlap overlap;    /* how buckets make progress during backward */
    int64_t check_every;        /* steps between replica checksums; 0 = never */
    enum rt_sparse_comm sparse; /* under pruning masks */
    int deterministic;          /* gradient sums bitwise the same at any rank count */
    int64_t micro_batches;      /* comm.deterministic: fixed micro-batches per step */
    double comm_timeout_s;      /* hang detection; 0 = off */
    /* [train] */
    int64_t epochs, max_steps, batch, eval_batch, log_every, eval_every, threads;
    int64_t accum_steps; /* micro-batches per step: gradients accumulate, one reduction */
    int skip_nonfinite;  /* skip steps whose averaged gradient is not finite, instead of failing */
    uint64_t seed;
    char out[RT_PATH_MAX]; /* final model file; "" = do not save */
    /* [checkpoint] */
    char ckpt_dir[RT_PATH_MAX]; /* "" = <directory of out>/checkpoints */
    int64_t ckpt_every_steps;   /* 0 = not by step count */
    double ckpt_every_minutes;  /* 0 = not by time */
    int64_t ckpt_keep;          /* newest checkpoints kept; 0 = checkpoints off */
    /* [prune] */
    enum rt_prune_scope prune_scope;
    struct rt_prune_sched prune_sched; /* phase steps */
    int64_t prune_finetune_epochs;     /* after the last mask update */
    int64_t prune_max_steps;           /* cap on the phase's steps; 0 = none */
    double prune_keep_heads;           /* structured: share of attention heads kept */
    double prune_lr;                   /* 0 = optim.lr */
    double prune_keep_neurons;         /* structured: fraction of hidden neurons kept; 1 = off */
    /* [distill] */
    char teacher[RT_PATH_MAX];    /* RT_TEACHER_PREVIOUS or a model/checkpoint file */
    struct rt_model_spec student; /* widths and activation; loss and init from [model] */
    int64_t distill_epochs, distill_max_steps; /* max_steps 0 = no cap */
    struct rt_optim_cfg distill_optim;         /* kind, lr, weight_decay; the rest from [optim] */
    struct rt_sched_cfg distill_sched; /* kind, warmup_steps, min_lr; the rest from [optim] */
    double temperature, alpha;
    enum rt_teacher_cache cache_teacher;
    /* provenance */
    char source[RT_PATH_MAX]; /* the job file, or "(built-in default)" */
};

/* Fills c with the built-in defaults. Cannot fail. */
void rt_config_defaults(struct rt_config *c);

/* Applies an INI file on top of c. Unknown sections/keys, duplicate keys, syntax errors and
 * bad values fail with RT_ERR_INVAL ("job.ini:7: [optim] lr = abc: expected a number");
 * an unreadable file with RT_ERR_IO. */
int rt_config_load(struct rt_config *c, const char *path);

/* Applies one "section.key=value" override (origin "command line"). RT_ERR_INVAL. */
int rt_config_override(struct rt_config *c, const char *assignment);

/* Cross-key checks after everything is applied (e.g. nesterov needs momentum, a train set
 * is named). RT_ERR_INVAL with the keys named. */
int rt_config_validate(const struct rt_config *c);

/* Writes the effective job as INI text (every key, in table order) to buf; returns the
 * length that was needed (like snprintf). Used for checkpoints and --print-config. */
size_t rt_config_format(const struct rt_config *c, char *buf, size_t size);

/* The distillation phase's optimizer and schedule: [distill] name, lr, weight_decay,
 * schedule, warmup_steps, min_lr over the rest of [optim]; and the student's full spec
 * (loss and init from [model]). */
void rt_config_distill_optim(const struct rt_config *c, struct rt_optim_cfg *o,
                             struct rt_sched_cfg *s);
void rt_config_student_spec(const struct rt_config *c, struct rt_model_spec *spec);
/* The [model] spec with [model] input_shape applied to a layer list (rank 0 when the data
 * decides). */
void rt_config_model_spec(const struct rt_config *c, struct rt_model_spec *spec);

/* The run directory: where train.out goes ("." when it has no directory part). Per-phase
 * models and report.json are written there. */
void rt_config_run_dir(const struct rt_config *c, char *buf, size_t cap);

/* The checkpoint directory in effect: checkpoint.dir, or "<directory of train.out>/checkpoints"
 * when it is empty ("checkpoints" when train.out has no directory part or is empty). */
void rt_config_ckpt_dir(const struct rt_config *c, char *buf, size_t cap);

/* Prints the key table: section, key, default, documentation. */
void rt_config_print_keys(FILE *f);

#endif
