/* ckpt.h - training checkpoints: one HDF5 file holds everything a resumed run needs to
 * continue bit-identically, written by rank 0, atomically.
 *
 * Layout (h5py: f.attrs[...], f["model/layers/0/weight"][...]); README documents it too:
 *   root attributes
 *     format "ringtrain-checkpoint", format_version int32, created (UTC, ISO 8601),
 *     ringtrain_version, world_size (ranks at save: informational, nothing depends on it),
 *     config (the effective job as INI text), phase ("train", "prune"), phase_index (into
 *     [job] phases), phase_step (steps done in the phase), phase_epoch0 (the phase's first
 *     global epoch), step (global steps done),
 *     epoch (0-based epoch in progress), step_in_epoch (its steps done), steps_per_epoch,
 *     total_steps (the job's planned total when saved)
 *   /model      the model file layout (model_file.h): format attributes, layers/<i>/weight, bias
 *   /optim      attrs name, step (updates done), lr (last used), momentum, nesterov,
 *               weight_decay, beta1, beta2, eps; datasets m, v: float32 (n_params) in the
 *               flat parameter order (layer 0 weight, layer 0 bias, layer 1 weight, ...),
 *               present when the optimizer keeps them (SGD momentum buffer is m)
 *   /sampler    attrs shuffle, seed, epoch, step_in_epoch, global_batch, rows (training rows)
 *   /rng        attrs generator, seed: nothing random carries state across steps; every draw
 *               derives from (seed, stream, index), so the seed is the whole RNG state
 *   /progress   attrs samples (training samples seen), train_seconds, epoch_loss_sum and
 *               epoch_rows (the epoch in progress, for its mean loss), last_lr
 *   /metrics/epochs  compound table, one row per finished epoch: phase (string), epoch,
 *               step, loss, test_loss, test_acc (-1: regression or no test set), lr,
 *               samples_per_s, seconds (wall time since the job started, across resumes)
 *   /prune/mask uint8 (ceil(weights / 8)): the pruning mask of every layer's weights in
 *               flat order, bit j of byte j/8 (LSB first) set when weight j is kept; attrs
 *               sparsity (pruned fraction), weights (count). Present in a pruning phase.
 *   /distill/teacher  the frozen teacher of a distillation phase in the model file layout
 *               (format attributes, layers/<i>/weight, bias); /model is then the student.
 *               Present in a distillation phase, so that it resumes without the teacher's
 *               original file.
 *   /comm/exact_ref  float32 (ceil(n_params / 256)): with comm.deterministic, each block's
 *               reference magnitude for the next step's fixed-point scale (fixed.h), so a
 *               resumed run scales, and rounds, exactly as the uninterrupted one.
 * Every float dataset is chunked with Fletcher32 checksums (src/h5/h5io.h). Later phases
 * add groups (/prune, /distill) beside these; readers ignore groups they do not know, and
 * format_version rises only when an existing meaning changes.
 *
 * Files in a checkpoint directory are named ckpt-<step, 8+ digits>[-<tag>].h5; newer means
 * a larger step (then a later name).
 *
 * No MPI: the trainer decides who writes and broadcasts what was read. */
#ifndef RT_CKPT_H
#define RT_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ringtrain/dataset.h"
#include "ringtrain/model.h"
#include "ringtrain/optim.h"

#define RT_CKPT_FORMAT         "ringtrain-checkpoint"
#define RT_CKPT_FORMAT_VERSION 2
#define RT_CKPT_PHASE_MAX      16

/* One finished epoch, as the metrics table stores it. */
struct rt_ckpt_metric {
    char phase[RT_CKPT_PHASE_MAX];
    int64_t epoch, step;
    double loss, test_loss, test_acc, lr, samples_per_s, seconds;
};

/* The scalar state of a run: plain old data, broadcast as bytes. */
struct rt_ckpt_state {
    char phase[RT_CKPT_PHASE_MAX];
    int32_t phase_index;              /* into the job's [job] phases */
    int64_t phase_step, phase_epoch0; /* steps done in the phase; its first global epoch */
    int64_t step, epoch, step_in_epoch, steps_per_epoch, total_steps;
    int32_t world_size;
    /* optimizer */
    int64_t optim_step;
    /* sampler and RNG */
    enum rt_shuffle shuffle;
    uint64_t seed;
    int64_t global_batch, rows;
    /* progress */
    double samples, train_seconds, epoch_loss_sum, epoch_rows, last_lr, wall_seconds;
    int64_t n_metrics; /* rows in the metrics table */
};

/* Optimizer moments that live in shards on several ranks (optim.shard = on). The file's
 * layout is the same as unsharded; the writer asks for the moments and the reader hands
 * them over in consecutive pieces of at most RT_CKPT_PIECE floats, in increasing position
 * of the flat layout, m then v, so no process holds more than one piece of another's
 * shards. which: 0 = m, 1 = v. A callback returns RT_OK or a failure, which stops the
 * write or read. */
#define RT_CKPT_PIECE ((size_t)1 << 20)
struct rt_ckpt_moments {
    size_t n; /* floats in each moment array: the model's parameters */
    int (*fill)(void *ctx, int which, size_t lo, size_t len, float *buf);      /* write */
    int (*put)(void *ctx, int which, size_t lo, size_t len, const float *buf); /* read */
    void *ctx;
};

/* What a writer passes besides the state: borrowed, read only. */
struct rt_ckpt_content {
    const struct rt_model *model;
    const struct rt_optim *optim;
    const struct rt_ckpt_state *state;
    const struct rt_ckpt_metric *metrics; /* (state->n_metrics) */
    const char *config_text;              /* may be NULL */
    const uint8_t *mask;                  /* pruning mask, bit-packed (prune.h); NULL: none */
    size_t mask_bytes;
    int64_t mask_weights;                  /* weights the mask covers (bits in use) */
    double mask_sparsity;                  /* its pruned fraction, for readers */
    const struct rt_model *teacher;        /* a distillation phase's teacher; NULL: none */
    const struct rt_ckpt_moments *moments; /* sharded moments; NULL: optim's m and v */
    const float *exact_ref; /* comm.deterministic's fixed-point references; NULL: none */
    size_t exact_blocks;
};

/* Writes a checkpoint to path atomically (path.tmp, flush, fsync, rename, fsync of the
 * directory): path is either absent/old or complete. RT_ERR_IO on any failure (directory
 * not writable, disk full), with tmp removed. */
int rt_ckpt_write(const char *path, const struct rt_ckpt_content *c);

/* Reads the architecture and the scalar state, and checks format and version. RT_ERR_IO,
 * RT_ERR_FORMAT (not a checkpoint), RT_ERR_INCOMPAT ("format_version = 9 is newer than this
 * ringtrain reads (1)"). */
int rt_ckpt_read_header(const char *path, struct rt_model_spec *spec, struct rt_ckpt_state *st);

/* Reads everything into an initialised model (same architecture, else RT_ERR_SHAPE naming
 * both), an initialised optimizer (same kind and size), st, and up to metrics_cap metric
 * rows (st->n_metrics is clipped to what was stored in metrics). Every chunk's checksum is
 * verified: a corrupt file fails with RT_ERR_IO naming the dataset. */
int rt_ckpt_read(const char *path, struct rt_model *m, struct rt_optim *o, struct rt_ckpt_state *st,
                 struct rt_ckpt_metric *metrics, int64_t metrics_cap);

/* rt_ckpt_read whose moments go to moments->put instead of o->m and o->v (o's kind and
 * which moments it keeps are still checked against the file). */
int rt_ckpt_read_sharded(const char *path, struct rt_model *m, struct rt_optim *o,
                         struct rt_ckpt_state *st, struct rt_ckpt_metric *metrics,
                         int64_t metrics_cap, const struct rt_ckpt_moments *moments);

/* Only the moments of path, to moments->put (m when has_m, v when has_v); checksums verified. */
int rt_ckpt_read_moments(const char *path, const struct rt_ckpt_moments *moments, int has_m,
                         int has_v);

/* comm.deterministic's references into ref (blocks floats): *found = 1 when the file has them. */
int rt_ckpt_read_exact(const char *path, float *ref, size_t blocks, int *found);

/* The pruning mask into buf (bytes, the exact packed size): 1 when read, 0 when the file
 * has none; checksum verified. RT_ERR_SHAPE when the size differs. */
int rt_ckpt_read_mask(const char *path, uint8_t *buf, size_t bytes, int *found);

/* The teacher of a distillation checkpoint: its architecture (*found = 0 when the file has
 * none), and its parameters into an initialised model of that architecture. Errors as
 * rt_ckpt_read. */
int rt_ckpt_read_teacher_spec(const char *path, struct rt_model_spec *spec, int *found);
int rt_ckpt_read_teacher(const char *path, struct rt_model *m);

/* Up to cap rows of the metrics table into rows; *n rows read. Checksums verified. */
int rt_ckpt_read_metrics(const char *path, struct rt_ckpt_metric *rows, int64_t cap, int64_t *n);

/* The effective job text stored in the checkpoint, malloc'ed into *text (caller frees);
 * *text is NULL when none was stored. */
int rt_ckpt_read_config(const char *path, char **text);

/* dir/ckpt-<step>[-tag].h5 into buf. RT_ERR_INVAL when it does not fit. */
int rt_ckpt_path(char *buf, size_t cap, const char *dir, int64_t step, const char *tag);

/* Checkpoint files in dir, newest first, as full paths in a malloc'ed array of *n strings
 * (rt_ckpt_list_free). A missing directory is an empty list, not an error. */
int rt_ckpt_list(const char *dir, char ***paths, int *n);
void rt_ckpt_list_free(char **paths, int n);

/* After a successful write: removes the oldest periodic checkpoints (ckpt-<step>.h5) beyond
 * keep (keep >= 1) and any leftover ckpt-*.h5.tmp of an interrupted writer. A phase's
 * final checkpoint (ckpt-<step>-<phase>.h5) is never removed: each is where the next phase
 * starts, e.g. to distil again from the same pruned teacher. Never touches other files.
 * Failures to remove are reported as RT_ERR_IO (the new checkpoint is intact either way). */
int rt_ckpt_prune(const char *dir, int keep);

/* Prints a human summary (format, phase, step, epoch, architecture, parameter count,
 * sparsity per layer, optimizer, metrics at save time), verifying every checksum. */
int rt_ckpt_inspect(const char *path, FILE *out);

#endif
