/* phases.h - the phases of a job behind one table of operations (private to src/train).
 *
 * A phase kind is one file (phase_train.c, phase_prune.c, phase_distill.c) that fills one
 * struct phase_ops; the controller (phases.c), the step (step.c), progress lines and
 * checkpoints call the running phase's operations instead of testing which phase runs.
 * Operations marked "NULL: ..." are optional. A new kind is a new file and a table entry. */
#ifndef RT_TRAIN_PHASES_H
#define RT_TRAIN_PHASES_H

#include "train/trainer.h"

struct phase_ops {
    const char *name;  /* [job] phases, checkpoint tags, metrics (rt_phase_name) */
    const char *label; /* before "epoch e/n" in progress lines: "" or "prune " */
    int needs_masks;   /* a job with this phase keeps masks and sparse-gradient buffers */
    int teacher;       /* learns from a teacher: its checkpoints hold it, the report lists it */
    /* The phase's optimizer and schedule, and the architecture it makes of the one before
     * it (NULL: the same), from the job alone. */
    void (*optim)(const struct rt_config *c, struct rt_optim_cfg *o, struct rt_sched_cfg *s);
    void (*spec)(const struct rt_config *c, struct rt_model_spec *spec);
    int64_t (*steps)(const struct trainer *t);  /* its step count (steps_per_epoch known) */
    int64_t (*epochs)(const struct trainer *t); /* the n of its progress lines' "epoch e/n" */
    int (*resumed)(const struct trainer *t);    /* 1 when a checkpoint restored it under way */
    /* Collective, at its start (after the epoch boundary), fresh or resumed. NULL: nothing. */
    int (*begin)(struct trainer *t, int resumed);
    /* Collective, at each step boundary before the step's data is used. NULL: nothing. */
    int (*boundary)(struct trainer *t);
    double (*lr)(const struct trainer *t); /* this step's learning rate */
    /* The step's loss and m->dlogits for batch b (norm: rt_loss_norm of the global batch).
     * A failure is deferred by the step (the other ranks are about to allreduce). */
    int (*loss)(struct trainer *t, const struct rt_batch *b, double norm, double *loss);
    /* The masks in force on gradients, weights and sparsity reports. NULL: none. */
    const struct rt_masks *(*masks)(const struct trainer *t);
    void (*end)(struct trainer *t); /* after its model file and checkpoint. NULL: nothing */
};

extern const struct phase_ops phase_train_ops, phase_prune_ops, phase_distill_ops;

/* The operations of phase kind p (the training phase's for an unknown value). */
const struct phase_ops *phase_ops_of(enum rt_phase p);

/* The running phase's operations: cfg->phases[t->phase_index]. */
const struct phase_ops *trainer_phase(const struct trainer *t);

/* Steps of phase i: training runs its epochs (cut at train.max_steps); pruning runs until
 * its last mask update, then finetune_epochs more; distillation runs its epochs. */
int64_t trainer_phase_steps(const struct trainer *t, int i);

/* 1 when a phase of job c keeps masks (the job allocates them and the sparse buffers). */
int trainer_job_needs_masks(const struct rt_config *c);

/* The running phase's masks, or NULL. */
const struct rt_masks *trainer_masks(const struct trainer *t);

/* Points the gradient buckets at the mask (sparse allreduce) or not, as comm.sparse says;
 * every rank holds the same mask, so every rank decides the same. */
int trainer_sync_sparse(struct trainer *t);

/* The training phase's operations, which other phases share where they behave alike:
 * [optim]'s optimizer and schedule; ceil(total_steps / steps_per_epoch) epochs; resumed
 * when phase_step > 0; the schedule's learning rate; the loss against the targets. */
void phase_job_optim(const struct rt_config *c, struct rt_optim_cfg *o, struct rt_sched_cfg *s);
int64_t phase_epochs_of_steps(const struct trainer *t);
int phase_resumed_by_step(const struct trainer *t);
double phase_sched_lr(const struct trainer *t);
int phase_plain_loss(struct trainer *t, const struct rt_batch *b, double norm, double *loss);

#endif
