/* phase_train.c - the training phase: [train] epochs (cut at train.max_steps) with the
 * [optim] optimizer and schedule, the plain loss, no masks. Its operations are also the
 * other phases' where they behave alike (phases.h). */
#include "ringtrain/status.h"
#include "train/phases.h"
#include "train/trainer.h"

void phase_job_optim(const struct rt_config *c, struct rt_optim_cfg *o, struct rt_sched_cfg *s)
{
    *o = c->optim;
    *s = c->sched;
}

int64_t phase_epochs_of_steps(const struct trainer *t)
{
    return (t->total_steps + t->steps_per_epoch - 1) / t->steps_per_epoch;
}

int phase_resumed_by_step(const struct trainer *t)
{
    return t->phase_step > 0;
}

/* The learning rate of this step: the phase's schedule. */
double phase_sched_lr(const struct trainer *t)
{
    return rt_sched_lr(&t->scfg, t->ocfg.lr, t->phase_step, t->total_steps);
}

/* The step's loss and m->dlogits against the targets. */
int phase_plain_loss(struct trainer *t, const struct rt_batch *b, double norm, double *loss)
{
    *loss = rt_model_loss(&t->model, b->y, b->local_rows, norm);
    return RT_OK;
}

/* Its epochs, cut at train.max_steps. */
static int64_t train_steps(const struct trainer *t)
{
    const struct rt_config *c = t->cfg;
    int64_t n = t->steps_per_epoch * c->epochs;
    return c->max_steps > 0 && c->max_steps < n ? c->max_steps : n;
}

/* Progress lines count the job's epochs ("epoch 3/15"), even when max_steps cuts them. */
static int64_t train_epochs(const struct trainer *t)
{
    return t->cfg->epochs;
}

const struct phase_ops phase_train_ops = {
    .name = "train",
    .label = "",
    .optim = phase_job_optim,
    .steps = train_steps,
    .epochs = train_epochs,
    .resumed = phase_resumed_by_step,
    .lr = phase_sched_lr,
    .loss = phase_plain_loss,
};
