/* phase_distill.c - the distillation phase: a frozen teacher (the previous phase's model
 * or a file), a new student of [distill] student_layers trained with [distill]'s optimizer
 * on a blend of the hard loss and the teacher's softened outputs (KL at temperature T),
 * optionally cached once for the whole phase. */
#include "ringtrain/log.h"
#include "ringtrain/status.h"
#include "ringtrain/trace.h"
#include "train/phases.h"
#include "train/trainer.h"

#include <stdio.h>
#include <string.h>

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
    if (c->cache_teacher == RT_CACHE_ON && t->total_steps <= t->steps_per_epoch) {
        /* Each row is read at most once (a language model's 2000 steps over millions of
         * windows): a cache would hold outputs nobody reads again. Nor is there a cache
         * whose rows the teacher must reproduce bit for bit, so it runs on GEMMs, 3x
         * faster than row-wise; a resumed run sees the same batches, so the same bits. */
        rt_log0("distill: the teacher runs every step (%lld steps read each row at most once: "
                "a cache cannot pay)\n",
                (long long)t->total_steps);
        return rt_comm_agree(t->comm, rt_model_use_rowwise(&t->teacher.model, 0));
    }
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
    struct rt_data_opts o = trainer_data_opts(t);
    /* Each read must fit the teacher's batch: a step's rows may run as micro-batches. */
    o.global_batch = (int64_t)trainer_max_batch(t) * t->world;
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
    trainer_init_params(t);
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

/* Fresh: the teacher and the student; resumed, the checkpoint held both. Either way the
 * teacher's cache is built (again). */
static int distill_begin(struct trainer *t, int resumed)
{
    if (!resumed) RT_TRY(begin_distill(t));
    return build_teacher_cache(t);
}

static int64_t distill_steps(const struct trainer *t)
{
    int64_t n = t->cfg->distill_epochs * t->steps_per_epoch, cap = t->cfg->distill_max_steps;
    return cap > 0 && cap < n ? cap : n;
}

/* Resumed inside the phase when the checkpoint brought its teacher. */
static int distill_resumed(const struct trainer *t)
{
    return t->has_teacher;
}

/* The step's loss and m->dlogits against the targets and the teacher's outputs for the
 * same rows (alpha = 0 needs no teacher: plain training, exactly). */
static int distill_loss(struct trainer *t, const struct rt_batch *b, double norm, double *loss)
{
    const struct rt_config *c = t->cfg;
    if (c->alpha == 0) return phase_plain_loss(t, b, norm, loss);
    const float *teacher;
    RT_TRY(rt_teacher_outputs(&t->teacher, b, &teacher));
    *loss =
        rt_model_loss_kd(&t->model, teacher, b->y, b->local_rows, norm, c->temperature, c->alpha);
    return RT_OK;
}

/* The teacher is dropped once its phase is over. */
static void distill_end(struct trainer *t)
{
    if (t->has_teacher) {
        rt_teacher_free(&t->teacher);
        t->has_teacher = 0;
    }
}

const struct phase_ops phase_distill_ops = {
    .name = "distill",
    .label = "distill ",
    .teacher = 1,
    .optim = rt_config_distill_optim,
    .spec = rt_config_student_spec,
    .steps = distill_steps,
    .epochs = phase_epochs_of_steps,
    .resumed = distill_resumed,
    .begin = distill_begin,
    .lr = phase_sched_lr,
    .loss = distill_loss,
    .end = distill_end,
};
