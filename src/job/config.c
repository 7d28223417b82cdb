/* config.c - the job's keys, their defaults and parsers, INI loading through inih.
 *
 * One table describes every key; defaults are applied by parsing the table's default
 * strings through the same setters that parse the file, so a default can never be a value
 * the file would reject. Deliberately not here: checks that need the rank count (batch
 * divisibility) or the data (input width); the trainer does those. */
#include "ringtrain/config.h"
#include "ringtrain/status.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum key_type {
    K_INT,
    K_SEED,
    K_REAL,
    K_PATH,
    K_ENUM,
    K_SIZES,
    K_ACT,
    K_SHAPE,
    K_BETAS,
    K_BOOL,
    K_PHASES
};

/* Enum keys parse into an int through a per-enum adapter; `name` formats it back. */
struct enum_io {
    int (*parse)(const char *s, int *out);
    const char *(*name)(int v);
    const char *choices;
};

struct key {
    const char *section, *name;
    enum key_type type;
    size_t offset;
    const char *def;
    double min, max; /* inclusive range for K_INT / K_REAL */
    const struct enum_io *en;
    const char *doc;
};

#define ENUM_IO(tag, T, parsefn, namefn, list)                                                     \
    static int parse_##tag(const char *s, int *out)                                                \
    {                                                                                              \
        T v;                                                                                       \
        if (parsefn(s, &v) != 0) return -1;                                                        \
        *out = (int)v;                                                                             \
        return 0;                                                                                  \
    }                                                                                              \
    static const char *name_##tag(int v)                                                           \
    {                                                                                              \
        return namefn((T)v);                                                                       \
    }                                                                                              \
    static const struct enum_io io_##tag = {parse_##tag, name_##tag, list};

ENUM_IO(act, enum rt_act, rt_act_parse, rt_act_name, "relu, tanh, sigmoid, gelu, identity")
ENUM_IO(loss, enum rt_loss, rt_loss_parse, rt_loss_name, "ce, mse")
ENUM_IO(init, enum rt_init, rt_init_parse, rt_init_name, "torch, xavier, he")
ENUM_IO(shuffle, enum rt_shuffle, rt_shuffle_parse, rt_shuffle_name, "global, shard, off")
ENUM_IO(optim, enum rt_optim_kind, rt_optim_parse, rt_optim_name, "sgd, adam, adamw")
ENUM_IO(algo, enum rt_allreduce_algo, rt_allreduce_algo_parse, rt_allreduce_algo_name,
        "auto, ring, rd, mpi")
ENUM_IO(overlap, enum rt_overlap, rt_overlap_parse, rt_overlap_name, "thread, poll, off")
ENUM_IO(sched, enum rt_sched_kind, rt_sched_parse, rt_sched_name, "constant, step, cosine")
ENUM_IO(sparse, enum rt_sparse_comm, rt_sparse_comm_parse, rt_sparse_comm_name, "auto, on, off")
ENUM_IO(pscope, enum rt_prune_scope, rt_prune_scope_parse, rt_prune_scope_name, "global, layer")
ENUM_IO(tcache, enum rt_teacher_cache, rt_teacher_cache_parse, rt_teacher_cache_name,
        "on, off, memory, file")
ENUM_IO(psched, enum rt_prune_schedule, rt_prune_schedule_parse, rt_prune_schedule_name,
        "gradual, oneshot")

#define OFF(field) offsetof(struct rt_config, field)
#define BIG        9.0e18

static const struct key keys[] = {
    {"job", "phases", K_PHASES, OFF(phases), "train", 0, 0, NULL,
     "the phases to run in order, each at most once: train, prune, distill; e.g. train, prune, "
     "distill or train, distill, prune (prune the student)"},
    {"model", "layers", K_SIZES, OFF(model), "784, 512, 256, 10", 1, 1 << 24, NULL,
     "layer widths, input first, output last (an MLP); or a layer list such as conv(32, 3, "
     "pad=1), relu, maxpool(2), flatten, dense(10) (README: Layer lists)"},
    {"model", "activation", K_ACT, OFF(model), "relu", 0, 0, &io_act,
     "hidden-layer activation of a list of widths (the last layer is linear)"},
    {"model", "input_shape", K_SHAPE, OFF(input_shape), "auto", 0, 0, NULL,
     "per-sample input of a layer list: auto (the data's /X dimensions), C, H, W or D; "
     "rows of a flat file are read as this shape"},
    {"model", "context", K_INT, OFF(context), "0", 0, 1 << 20, NULL,
     "tokens per sample of a text dataset (a language model's T); 0 for other data"},
    {"model", "loss", K_ENUM, OFF(model.loss), "ce", 0, 0, &io_loss,
     "ce: softmax cross-entropy on int labels; mse: mean squared error on float targets"},
    {"model", "init", K_ENUM, OFF(model.init), "torch", 0, 0, &io_init,
     "parameter initialisation (torch = nn.Linear's default)"},
    {"data", "train", K_PATH, OFF(train), "data/fashion-mnist-train.h5", 0, 0, NULL,
     "training set: an HDF5 dataset file or synth:bigmodel"},
    {"data", "test", K_PATH, OFF(test), "data/fashion-mnist-test.h5", 0, 0, NULL,
     "test set evaluated at each epoch end; empty for none"},
    {"data", "x", K_PATH, OFF(data_x), "X", 0, 0, NULL,
     "the inputs' dataset in the files (a path such as X or train/images): any float or "
     "integer type, read as float32; (N, D), (N, H, W) or (N, C, H, W)"},
    {"data", "y", K_PATH, OFF(data_y), "y", 0, 0, NULL,
     "the labels' dataset: integers (N) of any width, read as int32, or float targets (N, K)"},
    {"data", "shuffle", K_ENUM, OFF(shuffle), "global", 0, 0, &io_shuffle,
     "global: one permutation per epoch; shard: each rank shuffles its own rows; off: file order"},
    {"data", "memory_mb", K_REAL, OFF(memory_mb), "2048", 0, 1e9, NULL,
     "per rank: hold the rows a rank uses in memory when they fit, else stream them"},
    {"data", "synth_rows", K_INT, OFF(synth_rows), "65536", 1, BIG, NULL,
     "rows of a synth: training set"},
    {"data", "synth_test_rows", K_INT, OFF(synth_test_rows), "8192", 1, BIG, NULL,
     "rows of a synth: test set"},
    {"optim", "name", K_ENUM, OFF(optim.kind), "adam", 0, 0, &io_optim, "optimizer"},
    {"optim", "lr", K_REAL, OFF(optim.lr), "0.001", 0, 1e6, NULL, "base learning rate"},
    {"optim", "momentum", K_REAL, OFF(optim.momentum), "0", 0, 1, NULL, "SGD momentum"},
    {"optim", "nesterov", K_BOOL, OFF(optim.nesterov), "off", 0, 0, NULL,
     "SGD Nesterov momentum (needs momentum > 0)"},
    {"optim", "weight_decay", K_REAL, OFF(optim.weight_decay), "0", 0, 1e6, NULL,
     "L2 penalty (SGD, Adam) or decoupled decay (AdamW)"},
    {"optim", "betas", K_BETAS, OFF(optim.beta1), "0.9, 0.999", 0, 0, NULL,
     "Adam/AdamW beta1, beta2, each in [0, 1)"},
    {"optim", "eps", K_REAL, OFF(optim.eps), "1e-8", 1e-30, 1, NULL,
     "Adam/AdamW epsilon, added after the square root"},
    {"optim", "schedule", K_ENUM, OFF(sched.kind), "constant", 0, 0, &io_sched,
     "learning-rate schedule after warm-up"},
    {"optim", "warmup_steps", K_INT, OFF(sched.warmup_steps), "0", 0, BIG, NULL,
     "linear warm-up steps"},
    {"optim", "step_size", K_INT, OFF(sched.step_size), "1000", 1, BIG, NULL,
     "step schedule: steps between decays"},
    {"optim", "gamma", K_REAL, OFF(sched.gamma), "0.1", 0, 1, NULL, "step schedule: decay factor"},
    {"optim", "min_lr", K_REAL, OFF(sched.min_lr), "0", 0, 1e6, NULL,
     "cosine schedule: final learning rate"},
    {"optim", "shard", K_BOOL, OFF(optim_shard), "off", 0, 0, NULL,
     "shard the optimizer state over the ranks (ZeRO-1): 1/N of the moments per rank"},
    {"optim", "clip_norm", K_REAL, OFF(clip_norm), "0", 0, 1e30, NULL,
     "clip gradients to this global L2 norm; 0 = off"},
    {"comm", "algorithm", K_ENUM, OFF(algorithm), "auto", 0, 0, &io_algo,
     "gradient allreduce: ring, recursive doubling, MPI_Allreduce, or auto by size"},
    {"comm", "segment_kb", K_INT, OFF(segment_kb), "0", 0, 1 << 20, NULL,
     "ring pipeline segment in KiB; 0 = the measured default"},
    {"comm", "bucket_kb", K_INT, OFF(bucket_kb), "4096", 1, 1 << 22, NULL,
     "gradient bucket size in KiB: buckets are averaged while backprop goes on"},
    {"comm", "overlap", K_ENUM, OFF(overlap), "poll", 0, 0, &io_overlap,
     "how buckets progress during backprop: a comm thread, polling between layers, or off"},
    {"comm", "check_every", K_INT, OFF(check_every), "100", 0, BIG, NULL,
     "steps between cross-rank parameter checksums; 0 = never"},
    {"comm", "timeout_s", K_REAL, OFF(comm_timeout_s), "0", 0, 1e9, NULL,
     "end the job when a rank waits longer than this in an allreduce or agreement, naming "
     "the peer, bucket and ring step it waits for; 0 = wait forever"},
    {"comm", "deterministic", K_BOOL, OFF(deterministic), "off", 0, 0, NULL,
     "gradients summed exactly (fixed point) over fixed micro-batches: bitwise the same "
     "parameters at any rank count dividing comm.micro_batches"},
    {"comm", "micro_batches", K_INT, OFF(micro_batches), "12", 1, 1 << 16, NULL,
     "comm.deterministic: micro-batches per step (the rank count must divide it)"},
    {"comm", "sparse", K_ENUM, OFF(sparse), "auto", 0, 0, &io_sparse,
     "under pruning masks, allreduce only the kept gradient coordinates (auto: when at most "
     "half are kept)"},
    {"train", "epochs", K_INT, OFF(epochs), "15", 1, 1e9, NULL, "passes over the training set"},
    {"train", "max_steps", K_INT, OFF(max_steps), "0", 0, BIG, NULL,
     "stop after this many steps; 0 = no limit"},
    {"train", "batch", K_INT, OFF(batch), "256", 1, 1 << 30, NULL,
     "global batch (rows per step over all ranks); must divide by the rank count"},
    {"train", "accum_steps", K_INT, OFF(accum_steps), "1", 1, 1 << 16, NULL,
     "micro-batches per step: the batch runs in this many pieces, gradients accumulate"},
    {"train", "eval_batch", K_INT, OFF(eval_batch), "1024", 1, 1 << 30, NULL,
     "global batch for evaluation"},
    {"train", "seed", K_SEED, OFF(seed), "1234", 0, 0, NULL,
     "seed of initialisation, shuffling and synthetic data"},
    {"train", "log_every", K_INT, OFF(log_every), "50", 0, BIG, NULL,
     "steps between progress lines; 0 = epoch ends only"},
    {"train", "eval_every", K_INT, OFF(eval_every), "0", 0, BIG, NULL,
     "steps between evaluations of the test set (a language model's validation loss); 0 = "
     "epoch ends only"},
    {"train", "threads", K_INT, OFF(threads), "0", 0, 1024, NULL,
     "BLAS threads per rank; 0 = cores / ranks on the node (OPENBLAS_NUM_THREADS wins)"},
    {"train", "skip_nonfinite", K_BOOL, OFF(skip_nonfinite), "off", 0, 0, NULL,
     "on: a step whose averaged gradient has a NaN or Inf is skipped on every rank and "
     "counted; off: the job stops naming the step and the last good checkpoint"},
    {"train", "out", K_PATH, OFF(out), "runs/model.h5", 0, 0, NULL,
     "where the trained model is written; empty = not saved"},
    {"checkpoint", "dir", K_PATH, OFF(ckpt_dir), "", 0, 0, NULL,
     "checkpoint directory; empty = checkpoints/ beside train.out"},
    {"checkpoint", "every_steps", K_INT, OFF(ckpt_every_steps), "0", 0, BIG, NULL,
     "write a checkpoint every this many global steps; 0 = not by steps"},
    {"checkpoint", "every_minutes", K_REAL, OFF(ckpt_every_minutes), "30", 0, 1e9, NULL,
     "write a checkpoint when this many minutes passed since the last one; 0 = not by time"},
    {"checkpoint", "keep", K_INT, OFF(ckpt_keep), "3", 0, 1e6, NULL,
     "newest checkpoints kept (older ones are deleted after a new one is complete); 0 = off"},
    {"prune", "scope", K_ENUM, OFF(prune_scope), "global", 0, 0, &io_pscope,
     "magnitude ranking over all layers' weights together, or within each layer"},
    {"prune", "schedule", K_ENUM, OFF(prune_sched.kind), "gradual", 0, 0, &io_psched,
     "gradual: Zhu & Gupta cubic ramp; oneshot: everything at start_step"},
    {"prune", "initial_sparsity", K_REAL, OFF(prune_sched.initial), "0", 0, 0.999999, NULL,
     "gradual: sparsity of the first mask update (s_i)"},
    {"prune", "target_sparsity", K_REAL, OFF(prune_sched.target), "0.9", 0, 0.999999, NULL,
     "fraction of weights pruned at the end (s_f); biases are never pruned"},
    {"prune", "start_step", K_INT, OFF(prune_sched.start), "0", 0, BIG, NULL,
     "phase step of the first mask update (t0)"},
    {"prune", "every_steps", K_INT, OFF(prune_sched.every), "100", 1, BIG, NULL,
     "gradual: steps between mask updates (dt)"},
    {"prune", "updates", K_INT, OFF(prune_sched.updates), "10", 1, 1e6, NULL,
     "gradual: mask updates after the first (n): s_f is reached at t0 + n dt"},
    {"prune", "finetune_epochs", K_INT, OFF(prune_finetune_epochs), "3", 0, 1e9, NULL,
     "epochs of training with fixed masks after the last update"},
    {"prune", "max_steps", K_INT, OFF(prune_max_steps), "0", 0, BIG, NULL,
     "stop the phase after this many steps (mask updates and fine-tuning); 0 = no limit"},
    {"prune", "keep_neurons", K_REAL, OFF(prune_keep_neurons), "1", 1e-6, 1, NULL,
     "structured: fraction of each hidden layer's neurons kept (by the L2 norm of their "
     "weights) at the start of the phase, layers physically shrunk; 1 = off"},
    {"prune", "keep_heads", K_REAL, OFF(prune_keep_heads), "1", 1e-6, 1, NULL,
     "structured: fraction of each attention layer's heads kept (by the L2 norm of their q, "
     "k, v rows and projection columns), layers physically shrunk; 1 = off"},
    {"prune", "lr", K_REAL, OFF(prune_lr), "0", 0, 1e6, NULL,
     "learning rate of the pruning phase (fresh optimizer, constant); 0 = optim.lr"},
    {"distill", "teacher", K_PATH, OFF(teacher), RT_TEACHER_PREVIOUS, 0, 0, NULL,
     "previous: the model the phase before produced; or a model or checkpoint file"},
    {"distill", "student_layers", K_SIZES, OFF(student), "784, 64, 10", 1, 1 << 24, NULL,
     "the student's layers, as [model] layers (input and output as the teacher's)"},
    {"distill", "student_activation", K_ACT, OFF(student), "relu", 0, 0, &io_act,
     "the student's hidden-layer activation, for a list of widths"},
    {"distill", "epochs", K_INT, OFF(distill_epochs), "40", 1, 1e9, NULL,
     "epochs of distillation (train.max_steps does not apply)"},
    {"distill", "max_steps", K_INT, OFF(distill_max_steps), "0", 0, BIG, NULL,
     "stop distillation after this many steps; 0 = no limit (a language model's epochs are "
     "long)"},
    {"distill", "name", K_ENUM, OFF(distill_optim.kind), "adam", 0, 0, &io_optim,
     "the student's optimizer (momentum, betas, eps from [optim])"},
    {"distill", "lr", K_REAL, OFF(distill_optim.lr), "0.01", 0, 1e6, NULL,
     "the student's base learning rate"},
    {"distill", "weight_decay", K_REAL, OFF(distill_optim.weight_decay), "0", 0, 1e6, NULL,
     "the student's weight decay"},
    {"distill", "schedule", K_ENUM, OFF(distill_sched.kind), "cosine", 0, 0, &io_sched,
     "the student's learning-rate schedule (step_size, gamma from [optim])"},
    {"distill", "warmup_steps", K_INT, OFF(distill_sched.warmup_steps), "0", 0, BIG, NULL,
     "the student's linear warm-up steps"},
    {"distill", "min_lr", K_REAL, OFF(distill_sched.min_lr), "0", 0, 1e6, NULL,
     "cosine schedule: the student's final learning rate"},
    {"distill", "temperature", K_REAL, OFF(temperature), "1.5", 1e-3, 1e3, NULL,
     "classification: softmax temperature T of the soft targets"},
    {"distill", "alpha", K_REAL, OFF(alpha), "0.5", 0, 1, NULL,
     "weight of the teacher term: alpha T^2 KL + (1 - alpha) CE, or MSE against "
     "alpha teacher + (1 - alpha) target; 0 = plain training"},
    {"distill", "cache_teacher", K_ENUM, OFF(cache_teacher), "on", 0, 0, &io_tcache,
     "compute the teacher's outputs once and reuse them every epoch: on (memory when they "
     "fit in data.memory_mb, else a per-rank file; every step when the phase is shorter than "
     "an epoch), memory, file, or off (every step)"},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static const struct key *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

static int section_known(const char *section)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0) return 1;
    return 0;
}

static const char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Strict number parsing: the whole value must be consumed. */
static int parse_real(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *trim(end) != '\0' || errno == ERANGE || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *trim(end) != '\0' || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"on", "true", "yes", "1"}, *no[] = {"off", "false", "no", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

/* Splits a comma-separated list into at most max doubles; returns the count or -1. */
static int parse_list(const char *s, double *vals, int max)
{
    char buf[RT_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (n == max || parse_real(trim(tok), &vals[n]) != 0) return -1;
        n++;
    }
    return n;
}

static int bad_value(const char *origin, const struct key *k, const char *value,
                     const char *expected)
{
    return rt_errorf(RT_ERR_INVAL, "%s: [%s] %s = '%s': expected %s", origin, k->section, k->name,
                     value, expected);
}

/* Whether v reads back from a job file as itself: no control characters, no ';' at the
 * start or after a blank (inih takes that for an inline comment). */
static int path_value_ok(const char *v)
{
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f ||
            (*p == ';' && (p == v || p[-1] == ' ' || p[-1] == '\t')))
            return 0;
    return 1;
}

static int set_sizes(struct rt_model_spec *spec, const struct key *k, const char *v,
                     const char *origin)
{
    char err[256];
    if (rt_model_spec_parse(spec, v, err, sizeof err) < 0)
        return rt_errorf(RT_ERR_INVAL, "%s: [%s] %s = '%s': %s", origin, k->section, k->name, v,
                         err);
    return RT_OK;
}

/* "auto", "D" or "C, H, W". */
static int set_shape(struct rt_shape *shape, const struct key *k, const char *v, const char *origin)
{
    double d[4];
    int n = strcmp(v, "auto") == 0 ? 0 : parse_list(v, d, 3);
    if (n != 0 && n != 1 && n != 3)
        return bad_value(origin, k, v, "auto, a width D or C, H, W (e.g. 1, 28, 28)");
    for (int i = 0; i < n; i++)
        if (d[i] != floor(d[i]) || d[i] < 1 || d[i] > (1 << 24))
            return bad_value(origin, k, v, "whole-number sizes from 1 to 16777216");
    shape->rank = n;
    for (int i = 0; i < 3; i++)
        shape->d[i] = i < n ? (int)d[i] : 0;
    return RT_OK;
}

/* "train, prune, distill": known names, each once. The first phase makes a model from
 * scratch (train, or distill from a teacher file); prune needs a model made before it. */
static int set_phases(struct rt_config *c, const struct key *k, const char *v, const char *origin)
{
    char buf[RT_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", v);
    int n = 0;
    enum rt_phase p[RT_MAX_PHASES];
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        const char *name = trim(tok);
        if (n == RT_MAX_PHASES || rt_phase_parse(name, &p[n]) != 0)
            return bad_value(origin, k, v, "a list of phases from: train, prune, distill");
        for (int i = 0; i < n; i++)
            if (p[i] == p[n]) return bad_value(origin, k, v, "each phase at most once");
        n++;
    }
    if (n == 0 || p[0] == RT_PHASE_PRUNE)
        return bad_value(origin, k, v,
                         "a list starting with train or distill (prune needs a model made "
                         "before it), e.g. train, prune, distill");
    c->n_phases = n;
    memcpy(c->phases, p, (size_t)n * sizeof p[0]);
    return RT_OK;
}

static int set_range_error(const char *origin, const struct key *k, const char *v, int integer)
{
    char what[160];
    if (k->max >= BIG)
        snprintf(what, sizeof what, "%s >= %g", integer ? "a whole number" : "a number", k->min);
    else
        snprintf(what, sizeof what, "%s from %g to %g", integer ? "a whole number" : "a number",
                 k->min, k->max);
    return bad_value(origin, k, v, what);
}

static int set_key(struct rt_config *c, const struct key *k, const char *v, const char *origin)
{
    void *field = (char *)c + k->offset; /* k->type says what lives there */
    double r;
    int64_t i;
    switch (k->type) {
    case K_INT:
        if (parse_int(v, &i) != 0 || (double)i < k->min || (double)i > k->max)
            return set_range_error(origin, k, v, 1);
        *(int64_t *)field = i;
        return RT_OK;
    case K_SEED:
        if (parse_int(v, &i) != 0 || i < 0) return bad_value(origin, k, v, "a whole number >= 0");
        *(uint64_t *)field = (uint64_t)i;
        return RT_OK;
    case K_REAL:
        if (parse_real(v, &r) != 0 || r < k->min || r > k->max)
            return set_range_error(origin, k, v, 0);
        *(double *)field = r;
        return RT_OK;
    case K_PATH:
        if (strlen(v) >= RT_PATH_MAX)
            return bad_value(origin, k, v, "a path shorter than 1024 bytes");
        if (!path_value_ok(v))
            return bad_value(origin, k, v,
                             "a path without control characters and without ';' at its start "
                             "or after a blank (a job file reads that as a comment)");
        snprintf(field, RT_PATH_MAX, "%s", v);
        return RT_OK;
    case K_BOOL:
        if (parse_bool(v, field) != 0) return bad_value(origin, k, v, "on or off");
        return RT_OK;
    case K_ENUM: {
        char expected[200];
        snprintf(expected, sizeof expected, "one of %s", k->en->choices);
        int e;
        if (k->en->parse(v, &e) != 0) return bad_value(origin, k, v, expected);
        /* Enum fields of the config structs are plain C enums: int-sized on every ABI we
         * build for, checked below at compile time. */
        *(int *)field = e;
        return RT_OK;
    }
    case K_BETAS: {
        double b[3];
        if (parse_list(v, b, 2) != 2 || b[0] < 0 || b[0] >= 1 || b[1] < 0 || b[1] >= 1)
            return bad_value(origin, k, v, "two numbers in [0, 1), e.g. 0.9, 0.999");
        c->optim.beta1 = b[0];
        c->optim.beta2 = b[1];
        return RT_OK;
    }
    case K_SIZES:
        return set_sizes(field, k, v, origin);
    case K_ACT: {
        int e;
        if (k->en->parse(v, &e) != 0)
            return bad_value(origin, k, v, "one of relu, tanh, sigmoid, gelu, identity");
        rt_model_spec_set_act(field, (enum rt_act)e);
        return RT_OK;
    }
    case K_SHAPE:
        return set_shape(field, k, v, origin);
    case K_PHASES:
        return set_phases(c, k, v, origin);
    }
    return rt_errorf(RT_ERR_INTERNAL, "config key type %d", (int)k->type);
}

_Static_assert(sizeof(enum rt_act) == sizeof(int), "enum fields are set through int");

void rt_config_defaults(struct rt_config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        int st = set_key(c, &keys[i], keys[i].def, "built-in default");
        (void)st; /* the table's defaults are covered by test_config */
    }
    snprintf(c->source, sizeof c->source, "(built-in default)");
}

/* inih reads the file line by line through this reader, which counts lines so that the
 * handler can say where a problem is (Debian's inih is built without INI_HANDLER_LINENO). */
struct ini_ctx {
    struct rt_config *c;
    FILE *f;
    const char *path;
    int line;
    int failed;
    unsigned char seen[N_KEYS];
};

static char *job_line_reader(char *str, int num, void *stream)
{
    struct ini_ctx *x = stream;
    char *r = fgets(str, num, x->f);
    if (!r) return r;
    x->line++;
    /* Debian's inih reads through a 200-byte buffer: the rest of a longer line would be
     * parsed as a line of its own, silently when it looks like "key = value". */
    size_t len = strlen(str);
    if (len == (size_t)num - 1 && str[len - 1] != '\n') {
        int ch = getc(x->f); /* a line of exactly num - 1 bytes fits: its newline is next */
        if (ch != '\n' && ch != EOF) {
            x->failed = 1;
            rt_errorf(RT_ERR_INVAL,
                      "%s:%d: line longer than %d bytes (the job-file parser's limit)", x->path,
                      x->line, num - 1);
            return NULL; /* stops inih */
        }
    }
    /* inih does not report a section header by itself, so an unknown (or empty) section
     * is caught here, at its own line. */
    const char *p = str + strspn(str, " \t");
    const char *end = strchr(p, ']');
    if (*p == '[' && end && end - p - 1 < 64) {
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(end - p - 1), p + 1);
        if (!section_known(trim(name))) {
            x->failed = 1;
            rt_errorf(RT_ERR_INVAL, "%s:%d: unknown section [%s]", x->path, x->line, name);
        }
    }
    return r;
}

static int job_key_handler(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *x = user;
    char origin[RT_PATH_MAX + 32];
    snprintf(origin, sizeof origin, "%s:%d", x->path, x->line);
    const struct key *k = find_key(section, name);
    if (!k) {
        x->failed = 1;
        if (!section_known(section))
            rt_errorf(RT_ERR_INVAL, "%s: unknown section [%s]", origin, section);
        else
            rt_errorf(RT_ERR_INVAL, "%s: unknown key '%s' in [%s]", origin, name, section);
        return 0;
    }
    if (x->seen[k - keys]++) {
        x->failed = 1;
        rt_errorf(RT_ERR_INVAL, "%s: [%s] %s is set twice", origin, section, name);
        return 0;
    }
    if (set_key(x->c, k, value, origin) != RT_OK) {
        x->failed = 1;
        return 0;
    }
    return 1;
}

int rt_config_load(struct rt_config *c, const char *path)
{
    struct ini_ctx x = {.c = c, .path = path};
    x.f = fopen(path, "r");
    if (!x.f) return rt_errorf(RT_ERR_IO, "%s: cannot open job file: %s", path, strerror(errno));
    int r = ini_parse_stream(job_line_reader, &x, job_key_handler, &x);
    fclose(x.f);
    if (r == 0 && !x.failed) {
        snprintf(c->source, sizeof c->source, "%s", path);
        return RT_OK;
    }
    if (x.failed) return RT_ERR_INVAL;
    if (r < 0) return rt_errorf(RT_ERR_NOMEM, "%s: cannot parse job file", path);
    return rt_errorf(RT_ERR_INVAL, "%s:%d: syntax error: expected [section] or key = value", path,
                     r);
}

int rt_config_override(struct rt_config *c, const char *assignment)
{
    char buf[RT_PATH_MAX + 64];
    snprintf(buf, sizeof buf, "%s", assignment);
    char *eq = strchr(buf, '=');
    char *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq)
        return rt_errorf(RT_ERR_INVAL,
                         "command line: '%s': expected section.key=value, e.g. optim.lr=0.01",
                         assignment);
    *eq = '\0';
    *dot = '\0';
    char *section = (char *)trim(buf), *name = (char *)trim(dot + 1);
    char *value = (char *)trim(eq + 1);
    const struct key *k = find_key(section, name);
    if (!k) {
        if (!section_known(section))
            return rt_errorf(RT_ERR_INVAL, "command line: '%s': unknown section [%s]", assignment,
                             section);
        return rt_errorf(RT_ERR_INVAL, "command line: '%s': unknown key '%s' in [%s]", assignment,
                         name, section);
    }
    return set_key(c, k, value, "command line");
}

static int phase_index(const struct rt_config *c, enum rt_phase p)
{
    for (int i = 0; i < c->n_phases; i++)
        if (c->phases[i] == p) return i;
    return -1;
}

/* What can be checked without the teacher file and the data: the teacher is named, and a
 * student made from the previous phase's model has its input and output widths. */
static int validate_distill(const struct rt_config *c)
{
    const char *src = c->source;
    int d = phase_index(c, RT_PHASE_DISTILL);
    if (d < 0) return RT_OK;
    int previous = strcmp(c->teacher, RT_TEACHER_PREVIOUS) == 0;
    if (c->teacher[0] == '\0' || (previous && d == 0))
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [distill] teacher = '%s': distill is the first phase, so expected "
                         "a model or checkpoint file to distil from",
                         src, c->teacher);
    /* Lists of widths say their input and output here; layer lists once the data is open. */
    const struct rt_model_spec *m = &c->model, *s = &c->student;
    int s_out = s->layers[s->n_layers - 1].units, m_out = m->layers[m->n_layers - 1].units;
    if (d > 0 && m->widths_form && s->widths_form &&
        (s->input.d[0] != m->input.d[0] || s_out != m_out))
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [distill] student_layers: input %d and output %d must be the "
                         "model's (%d and %d, [model] layers)",
                         src, s->input.d[0], s_out, m->input.d[0], m_out);
    if (c->distill_sched.kind == RT_SCHED_COSINE && c->distill_sched.min_lr > c->distill_optim.lr)
        return rt_errorf(RT_ERR_INVAL, "%s: [distill] min_lr = %g exceeds lr = %g", src,
                         c->distill_sched.min_lr, c->distill_optim.lr);
    return RT_OK;
}

int rt_config_validate(const struct rt_config *c)
{
    const char *src = c->source;
    if (c->data_x[0] == '\0' || c->data_y[0] == '\0')
        return rt_errorf(RT_ERR_INVAL, "%s: [data] %s = '': expected a dataset name", src,
                         c->data_x[0] ? "y" : "x");
    if (c->train[0] == '\0')
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [data] train is empty: expected a dataset file or "
                         "synth:bigmodel",
                         src);
    if (c->optim.nesterov && (c->optim.kind != RT_OPTIM_SGD || c->optim.momentum <= 0))
        return rt_errorf(RT_ERR_INVAL,
                         "%s: [optim] nesterov = on needs name = sgd and "
                         "momentum > 0",
                         src);
    if (c->sched.kind == RT_SCHED_COSINE && c->sched.min_lr > c->optim.lr)
        return rt_errorf(RT_ERR_INVAL, "%s: [optim] min_lr = %g exceeds lr = %g", src,
                         c->sched.min_lr, c->optim.lr);
    return validate_distill(c);
}

void rt_config_distill_optim(const struct rt_config *c, struct rt_optim_cfg *o,
                             struct rt_sched_cfg *s)
{
    *o = c->optim;
    o->kind = c->distill_optim.kind;
    o->lr = c->distill_optim.lr;
    o->weight_decay = c->distill_optim.weight_decay;
    o->nesterov = o->kind == RT_OPTIM_SGD && c->optim.nesterov;
    *s = c->sched;
    s->kind = c->distill_sched.kind;
    s->warmup_steps = c->distill_sched.warmup_steps;
    s->min_lr = c->distill_sched.min_lr;
}

/* A layer list takes [model] input_shape (rank 0: the data's); widths give their own. */
static void apply_input_shape(const struct rt_config *c, struct rt_model_spec *spec)
{
    if (!spec->widths_form) spec->input = c->input_shape;
}

void rt_config_model_spec(const struct rt_config *c, struct rt_model_spec *spec)
{
    *spec = c->model;
    apply_input_shape(c, spec);
}

void rt_config_student_spec(const struct rt_config *c, struct rt_model_spec *spec)
{
    *spec = c->student;
    spec->loss = c->model.loss;
    spec->init = c->model.init;
    apply_input_shape(c, spec);
}

void rt_config_run_dir(const struct rt_config *c, char *buf, size_t cap)
{
    const char *slash = strrchr(c->out, '/');
    if (!slash)
        snprintf(buf, cap, ".");
    else
        snprintf(buf, cap, "%.*s", (int)(slash - c->out), c->out);
}

void rt_config_ckpt_dir(const struct rt_config *c, char *buf, size_t cap)
{
    if (c->ckpt_dir[0]) {
        snprintf(buf, cap, "%s", c->ckpt_dir);
        return;
    }
    const char *slash = strrchr(c->out, '/');
    if (!slash)
        snprintf(buf, cap, "checkpoints");
    else
        snprintf(buf, cap, "%.*s/checkpoints", (int)(slash - c->out), c->out);
}

/* snprintf into a buffer that may be NULL or too small, counting what was needed. */
struct sink {
    char *buf;
    size_t size, n;
};

static void put(struct sink *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct sink *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(o->n < o->size ? o->buf + o->n : NULL, o->n < o->size ? o->size - o->n : 0,
                        fmt, ap);
    va_end(ap);
    o->n += len > 0 ? (size_t)len : 0;
}

static void format_value(const struct rt_config *c, const struct key *k, struct sink *o)
{
    const void *field = (const char *)c + k->offset; /* k->type says what lives there */
    switch (k->type) {
    case K_INT:
        put(o, "%lld", (long long)*(const int64_t *)field);
        break;
    case K_SEED:
        put(o, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    case K_REAL:
        put(o, "%.17g", *(const double *)field);
        break;
    case K_PATH:
        put(o, "%s", (const char *)field);
        break;
    case K_BOOL:
        put(o, "%s", *(const int *)field ? "on" : "off");
        break;
    case K_ENUM:
        put(o, "%s", k->en->name(*(const int *)field));
        break;
    case K_BETAS:
        put(o, "%.17g, %.17g", c->optim.beta1, c->optim.beta2);
        break;
    case K_SIZES: {
        char text[RT_MAX_LAYERS * 48];
        rt_model_spec_format(text, sizeof text, field);
        put(o, "%s", text);
        break;
    }
    case K_ACT:
        put(o, "%s", rt_act_name(((const struct rt_model_spec *)field)->act));
        break;
    case K_SHAPE: {
        const struct rt_shape *sh = field;
        if (sh->rank == 0) put(o, "auto");
        for (int i = 0; i < sh->rank; i++)
            put(o, "%s%d", i ? ", " : "", sh->d[i]);
        break;
    }
    case K_PHASES:
        for (int i = 0; i < c->n_phases; i++)
            put(o, "%s%s", i ? ", " : "", rt_phase_name(c->phases[i]));
        break;
    }
}

size_t rt_config_format(const struct rt_config *c, char *buf, size_t size)
{
    struct sink o = {buf, buf ? size : 0, 0};
    if (o.size) buf[0] = '\0';
    const char *section = "";
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(section, keys[i].section) != 0) {
            section = keys[i].section;
            put(&o, "%s[%s]\n", i ? "\n" : "", section);
        }
        put(&o, "%s = ", keys[i].name);
        format_value(c, &keys[i], &o);
        put(&o, "\n");
    }
    return o.n;
}

void rt_config_print_keys(FILE *f)
{
    fprintf(f, "%-28s %-24s %s\n", "key", "default", "meaning");
    for (size_t i = 0; i < N_KEYS; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%s", keys[i].section, keys[i].name);
        fprintf(f, "%-28s %-24s %s", name, keys[i].def[0] ? keys[i].def : "(empty)", keys[i].doc);
        if (keys[i].en) fprintf(f, " [%s]", keys[i].en->choices);
        fputc('\n', f);
    }
}
