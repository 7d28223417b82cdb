/* sched.c - learning-rate schedules: linear warm-up, then constant, step or cosine.
 *
 * Closed forms of torch.optim.lr_scheduler.StepLR and CosineAnnealingLR (one cycle, held at
 * min_lr after it ends) in double, so the rate for any step is known without replaying the
 * steps before it: a resumed run gets the same rate as an uninterrupted one.
 *
 * Not here: validating the schedule keys (config.c does; this file only avoids dividing by
 * zero on values it would reject). */
#include "ringtrain/optim.h"

#include <math.h>
#include <string.h>

#define RT_PI 3.14159265358979323846

int rt_sched_parse(const char *name, enum rt_sched_kind *out)
{
    if (strcmp(name, "constant") == 0 || strcmp(name, "none") == 0)
        *out = RT_SCHED_CONSTANT;
    else if (strcmp(name, "step") == 0)
        *out = RT_SCHED_STEP;
    else if (strcmp(name, "cosine") == 0)
        *out = RT_SCHED_COSINE;
    else
        return -1;
    return 0;
}

const char *rt_sched_name(enum rt_sched_kind k)
{
    switch (k) {
    case RT_SCHED_CONSTANT:
        return "constant";
    case RT_SCHED_STEP:
        return "step";
    case RT_SCHED_COSINE:
        return "cosine";
    }
    return "unknown";
}

/* StepLR: the rate is multiplied by gamma after every step_size steps. */
static double step_lr(const struct rt_sched_cfg *c, double base_lr, int64_t s)
{
    if (c->step_size < 1) return base_lr;
    int64_t decays = s / c->step_size; /* whole periods only: integer division is the point */
    return base_lr * pow(c->gamma, (double)decays);
}

/* CosineAnnealingLR over T = total - warmup steps; a schedule with no room left after
 * warm-up (T <= 0) is already at its end. */
static double cosine_lr(const struct rt_sched_cfg *c, double base_lr, int64_t s,
                        int64_t total_steps)
{
    int64_t T = total_steps - (c->warmup_steps > 0 ? c->warmup_steps : 0);
    if (T <= 0 || s >= T) return c->min_lr;
    return c->min_lr + (base_lr - c->min_lr) * (1.0 + cos(RT_PI * (double)s / (double)T)) / 2.0;
}

double rt_sched_lr(const struct rt_sched_cfg *s, double base_lr, int64_t step, int64_t total_steps)
{
    int64_t warmup = s->warmup_steps > 0 ? s->warmup_steps : 0;
    if (step < warmup) return base_lr * (double)(step + 1) / (double)warmup;
    int64_t after = step - warmup;
    switch (s->kind) {
    case RT_SCHED_STEP:
        return step_lr(s, base_lr, after);
    case RT_SCHED_COSINE:
        return cosine_lr(s, base_lr, after, total_steps);
    case RT_SCHED_CONSTANT:
        break;
    }
    return base_lr;
}
