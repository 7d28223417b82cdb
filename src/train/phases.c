/* phases.c - the phase controller and the table of per-phase operations.
 *
 * A job runs its phases in order ([job] phases); each starts on an epoch boundary with its
 * own step count and optimizer, runs epochs of steps, and ends with its model file and a
 * checkpoint named after it. Nothing here tests which phase runs: what differs is the
 * running phase's operations (phases.h), one table per phase file. The phases' names are
 * the table's too (rt_phase_parse, rt_phase_name: phase.h). */
#include "ringtrain/phase.h"
#include "ringtrain/status.h"
#include "ringtrain/trace.h"
#include "train/phases.h"
#include "train/trainer.h"

#include <stddef.h>
#include <string.h>

static const struct phase_ops *const phase_table[] = {
    [RT_PHASE_TRAIN] = &phase_train_ops,
    [RT_PHASE_PRUNE] = &phase_prune_ops,
    [RT_PHASE_DISTILL] = &phase_distill_ops,
};
#define N_PHASE_KINDS (int)(sizeof phase_table / sizeof phase_table[0])

int rt_phase_parse(const char *name, enum rt_phase *out)
{
    for (int i = 0; i < N_PHASE_KINDS; i++)
        if (strcmp(name, phase_table[i]->name) == 0) {
            *out = (enum rt_phase)i;
            return 0;
        }
    return -1;
}

const char *rt_phase_name(enum rt_phase p)
{
    return phase_ops_of(p)->name;
}

const struct phase_ops *phase_ops_of(enum rt_phase p)
{
    return (unsigned)p < (unsigned)N_PHASE_KINDS ? phase_table[p] : &phase_train_ops;
}

const struct phase_ops *trainer_phase(const struct trainer *t)
{
    return phase_ops_of(t->cfg->phases[t->phase_index]);
}

int64_t trainer_phase_steps(const struct trainer *t, int i)
{
    return phase_ops_of(t->cfg->phases[i])->steps(t);
}

void trainer_phase_optim(struct trainer *t, int i)
{
    phase_ops_of(t->cfg->phases[i])->optim(t->cfg, &t->ocfg, &t->scfg);
}

int trainer_phase_spec(const struct trainer *t, int i, struct rt_model_spec *spec)
{
    const struct rt_config *c = t->cfg;
    const char *key = "[model] layers";
    rt_config_model_spec(c, spec);
    for (int k = 0; k <= i && k < c->n_phases; k++)
        if (phase_ops_of(c->phases[k])->spec) {
            phase_ops_of(c->phases[k])->spec(c, spec);
            key = "[distill] student_layers"; /* the one phase that brings its own model */
        }
    char what[RT_PATH_MAX + 64];
    snprintf(what, sizeof what, "%s: %s", c->train, key);
    return rt_model_spec_bind_input(spec, &t->data_shape, what);
}

int trainer_job_needs_masks(const struct rt_config *c)
{
    for (int i = 0; i < c->n_phases; i++)
        if (phase_ops_of(c->phases[i])->needs_masks) return 1;
    return 0;
}

const struct rt_masks *trainer_masks(const struct trainer *t)
{
    const struct phase_ops *ph = trainer_phase(t);
    return ph->masks ? ph->masks(t) : NULL;
}

int trainer_sync_sparse(struct trainer *t)
{
    enum rt_sparse_comm mode = t->cfg->sparse;
    int pruning = t->has_masks && trainer_masks(t) != NULL;
    int on = pruning && (mode == RT_SPARSE_ON ||
                         (mode == RT_SPARSE_AUTO && rt_masks_sparsity(&t->masks, -1) >= 0.5));
    return rt_buckets_set_mask(t->buckets, on ? t->masks.keep : NULL);
}

/* A phase starts on an epoch boundary with its own step count and a fresh optimizer of its
 * kind. Resumed inside a phase, nothing is reset: the checkpoint restored it all (a
 * distillation checkpoint holds its teacher; only the teacher's cache is rebuilt). */
static int begin_phase(struct trainer *t)
{
    t->total_steps = trainer_phase_steps(t, t->phase_index);
    trainer_phase_optim(t, t->phase_index);
    rt_trace_instant(RT_TR_PHASE, t->phase_index, rt_trace_now());
    const struct phase_ops *ph = trainer_phase(t);
    int resumed = ph->resumed(t);
    if (!resumed && t->phase_index > 0) {
        if (t->step_in_epoch > 0) {
            t->epoch++;
            t->step_in_epoch = 0;
        }
        t->phase_epoch0 = t->epoch;
    }
    if (ph->begin) RT_TRY(ph->begin(t, resumed));
    trainer_metrics_event(t, "phase_start", "%s%s, %lld steps", ph->name,
                          resumed ? " (resumed)" : "", (long long)t->total_steps);
    return rt_comm_agree(t->comm, trainer_sync_sparse(t));
}

/* Steps of the current epoch from where the position says, until it ends or the run does. */
static int run_steps(struct trainer *t)
{
    int st = rt_dataset_begin_epoch(t->train, t->epoch, t->step_in_epoch);
    RT_TRY(rt_comm_agree(t->comm, st));
    t->prog.epoch_samples0 = t->samples;
    t->prog.epoch_seconds0 = t->train_seconds;
    double t0 = rt_comm_wtime();
    while (st == RT_OK && t->step_in_epoch < t->steps_per_epoch && t->phase_step < t->total_steps) {
        st = trainer_step(t);
        if (st == RT_OK && t->cfg->log_every > 0 && t->step % t->cfg->log_every == 0)
            st = trainer_report_progress(t);
        if (st == RT_OK && t->cfg->eval_every > 0 && t->step % t->cfg->eval_every == 0)
            st = trainer_report_eval(t);
    }
    t->train_seconds += rt_comm_wtime() - t0;
    trainer_params_ready(t); /* what follows reads the parameters */
    if (st == RT_OK) st = rt_comm_agree(t->comm, t->deferred);
    return st;
}

static int run_epochs(struct trainer *t, struct rt_train_result *res)
{
    t->prog.t_last = rt_comm_wtime();
    t->prog.samples_last = t->samples;
    if (t->n_metrics > 0) trainer_result_from_metric(&t->metrics[t->n_metrics - 1], res);
    while (t->phase_step < t->total_steps) {
        int st = run_steps(t);
        if (st != RT_OK) return st;
        RT_TRY(trainer_end_epoch(t, res));
        t->prog.t_last = rt_comm_wtime(); /* evaluation time is not training throughput */
        t->prog.samples_last = t->samples;
        if (t->step_in_epoch < t->steps_per_epoch) break; /* the phase ended inside it */
        t->epoch++;
        t->step_in_epoch = 0;
    }
    return RT_OK;
}

/* The report needs each phase's model as a file; plain one-phase training has train.out. */
static int wants_report(const struct trainer *t)
{
    if (t->bench) return 0;
    return t->cfg->n_phases > 1 || phase_ops_of(t->cfg->phases[0])->teacher;
}

/* Every phase ends with its model file (for the report) and a checkpoint named after it;
 * the distillation teacher is dropped once its phase is over. */
int trainer_run_phases(struct trainer *t, struct rt_train_result *res)
{
    for (; t->phase_index < t->cfg->n_phases; t->phase_index++, t->phase_step = 0) {
        RT_TRY(begin_phase(t));
        int st = run_epochs(t, res);
        if (st != RT_OK) return st;
        const struct phase_ops *ph = trainer_phase(t);
        trainer_metrics_event(t, "phase_end", "%s", ph->name);
        if (wants_report(t)) RT_TRY(trainer_save_phase_model(t, t->phase_index));
        if (t->cfg->ckpt_keep > 0 && t->step != t->last_ckpt_step)
            RT_TRY(trainer_checkpoint(t, ph->name));
        if (t->phase_index + 1 == t->cfg->n_phases) break; /* keep the last phase current */
        if (ph->end) ph->end(t);
    }
    return wants_report(t) ? trainer_report(t) : RT_OK;
}
