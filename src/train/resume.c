/* resume.c - checkpoints of a training run: writing them (rank 0, atomically, outcome
 * agreed) and resuming from them (rank 0 reads and verifies, everyone receives).
 *
 * Nothing a checkpoint holds depends on the rank count: parameters and optimizer state are
 * stored in the flat unsharded layout (a sharded optimizer's moments are gathered and
 * scattered piece by piece, shards.c), and the sampler position is global (epoch, step in
 * epoch) under a global batch. So a checkpoint resumes at any rank count; at the same count it
 * continues bit-identically. */
#include "train/phases.h"
#include "train/trainer.h"
#include "ringtrain/log.h"
#include "ringtrain/status.h"
#include "ringtrain/trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void trainer_add_metric(struct trainer *t, const struct rt_ckpt_metric *row)
{
    if (t->metrics_cap < 1) return;
    if (t->n_metrics == t->metrics_cap) {
        memmove(t->metrics, t->metrics + 1, (size_t)(t->metrics_cap - 1) * sizeof *t->metrics);
        t->n_metrics--;
    }
    t->metrics[t->n_metrics++] = *row;
}

int trainer_make_dirs(const char *dir, const char *what)
{
    char buf[RT_PATH_MAX + 2];
    snprintf(buf, sizeof buf, "%s/", dir);
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return rt_errorf(RT_ERR_IO, "%s: cannot create directory %s: %s", what, buf,
                             strerror(errno));
        *s = '/';
    }
    return RT_OK;
}

static void fill_state(const struct trainer *t, struct rt_ckpt_state *s, const double *epoch_sums)
{
    memset(s, 0, sizeof *s);
    snprintf(s->phase, sizeof s->phase, "%s", rt_phase_name(t->cfg->phases[t->phase_index]));
    s->phase_index = t->phase_index;
    s->phase_step = t->phase_step;
    s->phase_epoch0 = t->phase_epoch0;
    s->step = t->step;
    s->epoch = t->epoch;
    s->step_in_epoch = t->step_in_epoch;
    s->steps_per_epoch = t->steps_per_epoch;
    s->total_steps = t->total_steps;
    s->world_size = t->world;
    s->optim_step = t->opt.step;
    s->shuffle = t->cfg->shuffle;
    s->seed = t->cfg->seed;
    s->global_batch = t->cfg->batch;
    s->rows = rt_dataset_info(t->train)->rows;
    s->samples = t->samples;
    s->train_seconds = t->train_seconds;
    s->wall_seconds = t->wall_before + rt_comm_wtime() - t->wall_start;
    s->epoch_loss_sum = epoch_sums[0];
    s->epoch_rows = epoch_sums[1];
    s->last_lr = t->lr;
    s->n_metrics = t->n_metrics;
}

/* What rank 0 writes: the checkpoint at path, then the directory pruned to the newest. */
struct ckpt_job {
    const char *path;
    const double *sums;
};

static int write_checkpoint(struct trainer *t, void *ctx)
{
    const struct ckpt_job *j = ctx;
    struct rt_ckpt_state s;
    fill_state(t, &s, j->sums);
    struct rt_ckpt_moments mo;
    trainer_moments_source(t, &mo);
    struct rt_ckpt_content c = {.model = &t->model,
                                .optim = &t->opt,
                                .state = &s,
                                .metrics = t->metrics,
                                .config_text = t->config_text,
                                .moments = t->cfg->optim_shard ? &mo : NULL,
                                .exact_ref = t->exact.ref,
                                .exact_blocks = t->exact.blocks};
    if (t->has_masks && trainer_masks(t)) {
        c.mask = t->masks.packed;
        c.mask_bytes = t->masks.packed_bytes;
        c.mask_weights = (int64_t)t->masks.n_weights;
        c.mask_sparsity = rt_masks_sparsity(&t->masks, -1);
    }
    if (t->has_teacher && trainer_phase(t)->teacher) c.teacher = &t->teacher.model;
    RT_TRY(trainer_make_dirs(t->ckpt_dir, t->ckpt_dir));
    RT_TRY(rt_ckpt_write(j->path, &c));
    return rt_ckpt_prune(t->ckpt_dir, (int)t->cfg->ckpt_keep);
}

int trainer_checkpoint(struct trainer *t, const char *tag)
{
    trainer_params_ready(t);
    /* The epoch's partial loss is summed over ranks so that it survives a change of the
     * rank count; every rank takes part in that sum, so it precedes the rank-0 branch. */
    double sums[2] = {t->prog.epoch_loss, t->prog.epoch_rows};
    rt_comm_sum_f64(t->comm, sums, 2);
    double t0 = rt_comm_wtime(), tr = rt_trace_now();
    char path[RT_PATH_MAX + 64];
    int st = rt_ckpt_path(path, sizeof path, t->ckpt_dir, t->step, tag);
    struct ckpt_job job = {path, sums};
    /* The path is the same on every rank, so every rank takes the same branch here. */
    if (st == RT_OK && t->cfg->optim_shard)
        st = trainer_write_sharded(t, write_checkpoint, &job);
    else if (st == RT_OK && t->rank == 0)
        st = write_checkpoint(t, &job);
    RT_TRY(rt_comm_agree(t->comm, st));
    rt_trace_span(RT_TR_CHECKPOINT, 0, tr, rt_trace_now());
    t->last_ckpt_step = t->step;
    t->last_ckpt_time = rt_comm_wtime();
    snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", path);
    rt_log0("checkpoint %s (step %lld, %.2f s)\n", path, (long long)t->step,
            t->last_ckpt_time - t0);
    trainer_metrics_event(t, "checkpoint", "%s (%.2f s)", path, t->last_ckpt_time - t0);
    return RT_OK;
}

/* Damage (unreadable, truncated, a checksum mismatch, not our file) makes `auto` fall back
 * to an older checkpoint; a valid checkpoint that does not fit the job stops the run,
 * because skipping it would silently throw away progress. */
static int is_damage(int st)
{
    return st == RT_ERR_IO || st == RT_ERR_FORMAT || st == RT_ERR_HDF5;
}

/* The model a checkpoint holds is the job's model of its phase: [model], or the student
 * from the distillation phase on; after structured pruning, with narrower hidden layers.
 * The model is rebuilt to the checkpoint's widths when they are one of those, and the
 * optimizer to the phase's kind; any other architecture is refused with both named. */
static int fit_arch(struct trainer *t, const struct rt_model_spec *spec, int phase_index,
                    const char *path)
{
    int p = phase_index >= 0 && phase_index < t->cfg->n_phases ? phase_index : 0;
    trainer_phase_optim(t, p);
    int same_optim = t->opt.cfg.kind == t->ocfg.kind;
    if (trainer_same_arch(spec, &t->model.spec) && same_optim) return RT_OK;
    struct rt_model_spec phase_spec;
    RT_TRY(trainer_phase_spec(t, p, &phase_spec));
    const struct rt_model_spec *job = &phase_spec;
    int ok = trainer_same_arch(spec, job);
    if (!ok && (t->cfg->prune_keep_neurons < 1 || t->cfg->prune_keep_heads < 1))
        ok = rt_model_spec_narrower(spec, job);
    if (!ok) {
        char a[RT_MAX_LAYERS * 48], b[RT_MAX_LAYERS * 48];
        rt_model_sizes_text(a, sizeof a, spec);
        rt_model_sizes_text(b, sizeof b, job);
        return rt_errorf(RT_ERR_SHAPE, "%s: layer widths %s do not match the model's %s", path, a,
                         b);
    }
    return trainer_rebuild(t, spec, NULL, NULL);
}

/* Sharded, rank 0 reads the moments once here only to verify them (a damaged one makes
 * `auto` take an older checkpoint); trainer_scatter_moments later sends them out. */
static int discard_piece(void *ctx, int which, size_t lo, size_t len, const float *buf)
{
    (void)ctx, (void)which, (void)lo, (void)len, (void)buf;
    return RT_OK;
}

static int read_one(struct trainer *t, const char *path, struct rt_ckpt_state *s)
{
    struct rt_model_spec spec;
    RT_TRY(rt_ckpt_read_header(path, &spec, s));
    RT_TRY(fit_arch(t, &spec, s->phase_index, path));
    struct rt_ckpt_moments verify = {t->model.n_params, NULL, discard_piece, NULL};
    RT_TRY(rt_ckpt_read_sharded(path, &t->model, &t->opt, s, t->metrics, t->metrics_cap,
                                t->cfg->optim_shard ? &verify : NULL));
    if (!t->has_masks) return RT_OK;
    int found = 0;
    RT_TRY(rt_ckpt_read_mask(path, t->masks.packed, t->masks.packed_bytes, &found));
    if (!found) rt_masks_keep_all(&t->masks);
    return RT_OK;
}

/* Rank 0: the newest checkpoint of the directory that reads back clean. */
static int find_newest(struct trainer *t, struct rt_ckpt_state *s, char *chosen, size_t cap,
                       int *found)
{
    char **paths;
    int n;
    *found = 0;
    RT_TRY(rt_ckpt_list(t->ckpt_dir, &paths, &n));
    int st = RT_OK;
    for (int i = 0; i < n && !*found; i++) {
        st = read_one(t, paths[i], s);
        if (st == RT_OK) {
            *found = 1;
            snprintf(chosen, cap, "%s", paths[i]);
        } else if (is_damage(st)) {
            rt_warn("skipping a damaged checkpoint: %s\n", rt_error_message(st));
            rt_error_clear();
            st = RT_OK;
        } else {
            break;
        }
    }
    if (st == RT_OK && n > 0 && !*found)
        st =
            rt_errorf(RT_ERR_IO, "%s: none of the %d checkpoints reads back clean", t->ckpt_dir, n);
    rt_ckpt_list_free(paths, n);
    return st;
}

/* What the checkpoint's position means depends on the global batch and the training rows;
 * other changed settings (learning rate, epochs, seed) are the user's to make. */
static int check_compatible(const struct trainer *t, const struct rt_ckpt_state *s,
                            const char *path)
{
    int64_t rows = rt_dataset_info(t->train)->rows;
    if (s->global_batch != t->cfg->batch)
        return rt_errorf(RT_ERR_INCOMPAT,
                         "%s: made with [train] batch = %lld, the job has %lld: the sampler "
                         "position would not mean the same rows",
                         path, (long long)s->global_batch, (long long)t->cfg->batch);
    if (s->rows != rows)
        return rt_errorf(RT_ERR_INCOMPAT, "%s: made on a training set of %lld rows, %s has %lld",
                         path, (long long)s->rows, t->cfg->train, (long long)rows);
    const struct rt_config *c = t->cfg;
    if (s->phase_index < 0 || s->phase_index >= c->n_phases ||
        strcmp(s->phase, rt_phase_name(c->phases[s->phase_index])) != 0)
        return rt_errorf(RT_ERR_INCOMPAT,
                         "%s: written in phase %d (%s), which [job] phases does not have at that "
                         "place",
                         path, s->phase_index + 1, s->phase);
    if (s->seed != t->cfg->seed || s->shuffle != t->cfg->shuffle)
        rt_log0("resume: note: the checkpoint used shuffle = %s, seed = %llu; the job has %s, "
                "%llu: the data order changes from here on\n",
                rt_shuffle_name(s->shuffle), (unsigned long long)s->seed,
                rt_shuffle_name(t->cfg->shuffle), (unsigned long long)t->cfg->seed);
    return RT_OK;
}

static void broadcast_state(struct trainer *t, struct rt_ckpt_state *s)
{
    rt_comm_bcast(t->comm, s, sizeof *s, 0);
    struct rt_model *m = &t->model;
    rt_comm_bcast(t->comm, m->params, m->n_params * sizeof(float), 0);
    if (t->opt.m && !t->cfg->optim_shard)
        rt_comm_bcast(t->comm, t->opt.m, t->opt.n * sizeof(float), 0);
    if (t->opt.v && !t->cfg->optim_shard)
        rt_comm_bcast(t->comm, t->opt.v, t->opt.n * sizeof(float), 0);
    rt_comm_bcast(t->comm, &t->opt.step, sizeof t->opt.step, 0);
    if (s->n_metrics > 0)
        rt_comm_bcast(t->comm, t->metrics, (size_t)s->n_metrics * sizeof *t->metrics, 0);
    if (t->has_masks) {
        rt_comm_bcast(t->comm, t->masks.packed, t->masks.packed_bytes, 0);
        rt_masks_unpack(&t->masks);
    }
}

static void apply_state(struct trainer *t, const struct rt_ckpt_state *s)
{
    t->step = s->step;
    t->phase_index = s->phase_index;
    t->phase_step = s->phase_step;
    t->phase_epoch0 = s->phase_epoch0;
    t->epoch = s->epoch;
    t->step_in_epoch = s->step_in_epoch;
    t->samples = s->samples;
    t->train_seconds = s->train_seconds;
    t->wall_before = s->wall_seconds;
    t->lr = s->last_lr;
    /* The epoch's partial sums were reduced when saved: one rank carries them. */
    t->prog.epoch_loss = t->rank == 0 ? s->epoch_loss_sum : 0;
    t->prog.epoch_rows = t->rank == 0 ? s->epoch_rows : 0;
    t->n_metrics = s->n_metrics;
    t->last_ckpt_step = s->step;
}

/* One "key = value" line of an INI text as rt_config_format writes it: 1 with key and
 * value filled, 2 for a "[section]" header (in key), 0 otherwise. */
static int ini_line(const char *line, int len, char *key, size_t kcap, char *val, size_t vcap)
{
    char buf[RT_PATH_MAX + 128];
    snprintf(buf, sizeof buf, "%.*s", len, line);
    if (len > 2 && buf[0] == '[' && buf[len - 1] == ']') {
        snprintf(key, kcap, "%.*s", len - 2 < 63 ? len - 2 : 63, buf + 1);
        return 2;
    }
    char *eq = strstr(buf, " = ");
    if (!eq) eq = strstr(buf, " =");
    if (!eq) return 0;
    *eq = '\0';
    snprintf(key, kcap, "%.63s", buf);
    snprintf(val, vcap, "%s", eq[2] == ' ' ? eq + 3 : eq + 2);
    return 1;
}

/* Calls fn for every key of text with its section and value. */
static void ini_each(const char *text, void (*fn)(void *, const char *, const char *, const char *),
                     void *ctx)
{
    char sec[64] = "", key[64], val[RT_PATH_MAX];
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        int kind = ini_line(line, len, key, sizeof key, val, sizeof val);
        if (kind == 2) snprintf(sec, sizeof sec, "%s", key);
        if (kind == 1) fn(ctx, sec, key, val);
        line = end ? end + 1 : NULL;
    }
}

struct lookup {
    const char *sec, *key;
    char *val;
    int found;
};

static void lookup_fn(void *ctx, const char *sec, const char *key, const char *val)
{
    struct lookup *l = ctx;
    if (!l->found && strcmp(sec, l->sec) == 0 && strcmp(key, l->key) == 0) {
        snprintf(l->val, RT_PATH_MAX, "%s", val);
        l->found = 1;
    }
}

static void compare_fn(void *ctx, const char *sec, const char *key, const char *val)
{
    char was[RT_PATH_MAX] = "";
    struct lookup l = {sec, key, was, 0};
    ini_each(ctx, lookup_fn, &l);
    if (!l.found || strcmp(was, val) != 0)
        rt_log0("resume: changed %s.%s = %s (the checkpoint's run had %s)\n", sec, key,
                val[0] ? val : "(empty)",
                !l.found ? "none"
                : was[0] ? was
                         : "(empty)");
}

/* Rank 0: names the job keys that changed since the checkpoint was written, so a resumed
 * run's log says what differs from the run it continues. */
static void log_changed_keys(const struct trainer *t, const char *path)
{
    char *old = NULL;
    if (t->rank == 0 && rt_ckpt_read_config(path, &old) == RT_OK && old)
        ini_each(t->config_text, compare_fn, old);
    rt_error_clear();
    free(old);
}

/* comm.deterministic's scale references: rank 0 reads, everyone receives. A checkpoint of
 * a run without them (another mode) leaves them empty: the first step finds its own. */
static int resume_exact(struct trainer *t, const char *path)
{
    int found = 0, st = RT_OK;
    if (t->rank == 0) st = rt_ckpt_read_exact(path, t->exact.ref, t->exact.blocks, &found);
    RT_TRY(rt_comm_agree(t->comm, st));
    rt_comm_bcast(t->comm, &found, sizeof found, 0);
    if (found)
        rt_comm_bcast(t->comm, t->exact.ref, t->exact.blocks * sizeof *t->exact.ref, 0);
    else
        rt_log0("resume: %s has no comm.deterministic scales: the first step finds its own\n",
                path);
    return RT_OK;
}

int trainer_resume(struct trainer *t, const char *resume)
{
    struct rt_ckpt_state s;
    memset(&s, 0, sizeof s);
    char chosen[RT_PATH_MAX + 64] = "";
    int found = 0, st = RT_OK;
    if (t->rank == 0 && strcmp(resume, "auto") == 0) {
        st = find_newest(t, &s, chosen, sizeof chosen, &found);
    } else if (t->rank == 0) {
        st = read_one(t, resume, &s);
        found = st == RT_OK;
        snprintf(chosen, sizeof chosen, "%s", resume);
    }
    RT_TRY(rt_comm_agree(t->comm, st));
    rt_comm_bcast(t->comm, &found, sizeof found, 0);
    if (!found) {
        rt_log0("resume: no checkpoint in %s: starting from step 0\n", t->ckpt_dir);
        return RT_OK;
    }
    struct rt_model_spec spec = t->model.spec; /* rank 0's is the checkpoint's now */
    rt_comm_bcast(t->comm, &spec, sizeof spec, 0);
    rt_comm_bcast(t->comm, &s, sizeof s, 0);
    RT_TRY(
        rt_comm_agree(t->comm, t->rank == 0 ? RT_OK : fit_arch(t, &spec, s.phase_index, resume)));
    broadcast_state(t, &s);
    rt_comm_bcast(t->comm, chosen, sizeof chosen, 0);
    if (t->cfg->optim_shard) RT_TRY(rt_comm_agree(t->comm, trainer_scatter_moments(t, chosen)));
    if (t->cfg->deterministic) RT_TRY(resume_exact(t, chosen));
    RT_TRY(check_compatible(t, &s, chosen));
    apply_state(t, &s);
    if (trainer_phase(t)->teacher) {
        /* The teacher travels inside the checkpoint: its original file may be gone. */
        RT_TRY(rt_teacher_load(&t->teacher, t->comm, chosen, RT_TEACHER_CHECKPOINT,
                               trainer_max_batch(t)));
        t->has_teacher = 1;
    }
    snprintf(t->last_ckpt, sizeof t->last_ckpt, "%s", chosen);
    rt_log0("resume: %s: step %lld, epoch %lld (%lld of %lld steps done), written by %d rank%s\n",
            chosen, (long long)s.step, (long long)s.epoch + 1, (long long)s.step_in_epoch,
            (long long)s.steps_per_epoch, s.world_size, s.world_size == 1 ? "" : "s");
    log_changed_keys(t, chosen);
    return RT_OK;
}
