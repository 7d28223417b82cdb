/* optim.h - optimizers, learning-rate schedules and gradient clipping over flat arrays.
 *
 * Update rules are PyTorch's, term for term (torch.optim.SGD/Adam/AdamW, single-tensor
 * path), so that a run can be compared with a PyTorch reference:
 *   SGD:   g += wd*p; buf = mom*buf + g (buf = g on step 1); g = nesterov ? g + mom*buf : buf;
 *          p -= lr*g                                           (dampening is 0)
 *   Adam:  g += wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 *          p -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *   AdamW: p *= 1 - lr*wd, then Adam with wd = 0.
 * Each element is computed in float32 with PyTorch's operation order (m is updated as
 * torch's lerp_ does: m + w*(g - m) when w = 1-b1 < 0.5, else g - (g - m)*(1 - w)); scalars such as
 * 1-b1^t and lr/(1-b1^t) are computed in double once per step, then rounded to float.
 * No MPI: gradients arrive already averaged. */
#ifndef RT_OPTIM_H
#define RT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "ringtrain/arena.h"

enum rt_optim_kind { RT_OPTIM_SGD, RT_OPTIM_ADAM, RT_OPTIM_ADAMW };
enum rt_sched_kind { RT_SCHED_CONSTANT, RT_SCHED_STEP, RT_SCHED_COSINE };

int rt_optim_parse(const char *name, enum rt_optim_kind *out); /* 0, or -1 if unknown */
int rt_sched_parse(const char *name, enum rt_sched_kind *out);
const char *rt_optim_name(enum rt_optim_kind k);
const char *rt_sched_name(enum rt_sched_kind k);

struct rt_optim_cfg {
    enum rt_optim_kind kind;
    double lr;       /* base learning rate */
    double momentum; /* SGD */
    int nesterov;    /* SGD, needs momentum > 0 */
    double weight_decay;
    double beta1, beta2; /* Adam/AdamW */
    double eps;          /* Adam/AdamW, added after the square root */
};

struct rt_optim {
    struct rt_optim_cfg cfg;
    size_t n;     /* floats per state array */
    int64_t step; /* updates done so far (t of the bias correction is step + 1) */
    float *m;     /* (n) owned: SGD momentum buffer / Adam first moment; NULL if unused */
    float *v;     /* (n) owned: Adam second moment; NULL if unused */
    struct rt_arena arena;
};

/* Validates cfg and allocates the state arrays (zero) from o->arena, once. Checks only the
 * fields the kind uses: lr >= 0 and weight_decay >= 0 always; SGD: momentum >= 0, nesterov
 * needs momentum > 0; Adam/AdamW: beta1, beta2 in [0, 1), eps > 0. A bad value fails with
 * RT_ERR_INVAL and a message naming it ("optim.beta2 = 1.5: expected a value in [0, 1)");
 * no memory fails with RT_ERR_NOMEM. On failure o is left so that rt_optim_free is safe.
 * SGD without momentum has no state (m = v = NULL), nor does n = 0. */
int rt_optim_init(struct rt_optim *o, const struct rt_optim_cfg *cfg, size_t n);
void rt_optim_free(struct rt_optim *o); /* NULL or an already freed o is a no-op */

/* One update of params (n) from grads (n) at learning rate lr (the schedule's value for
 * this step), then o->step += 1. grads is only read; nothing beyond n is touched. The first
 * SGD step (o->step == 0) sets the momentum buffer to g whatever it held. Never allocates,
 * cannot fail. */
void rt_optim_step(struct rt_optim *o, float *params, const float *grads, double lr);

/* The same update restricted to elements [lo, hi), without ending the step: a step may be
 * applied range by range (as gradient buckets arrive) and then closed with
 * rt_optim_end_step. The update is element-wise, so the bytes equal rt_optim_step's. */
void rt_optim_update_range(const struct rt_optim *o, float *params, const float *grads, size_t lo,
                           size_t hi, double lr);
/* The same update of len elements params[0..len) from grads[0..len), whose state is at
 * [state_off, state_off + len) of the optimizer's arrays: a sharded optimizer keeps state
 * for its shards only (buckets.h), packed one after another. */
void rt_optim_update_at(const struct rt_optim *o, float *params, const float *grads,
                        size_t state_off, size_t len, double lr);
void rt_optim_end_step(struct rt_optim *o);

struct rt_sched_cfg {
    enum rt_sched_kind kind;
    int64_t warmup_steps; /* linear warm-up: lr * (step+1)/warmup_steps for step < warmup */
    int64_t step_size;    /* RT_SCHED_STEP: multiply by gamma every step_size steps */
    double gamma;
    double min_lr; /* RT_SCHED_COSINE: eta_min */
};

/* Learning rate for the update with index `step` (0-based) out of total_steps, in double.
 * With W = warmup_steps and s = step - W (steps after warm-up):
 *   step < W:  base_lr * (step+1) / W                      (reaches base_lr at step W-1)
 *   constant:  base_lr
 *   step:      base_lr * gamma^floor(s / step_size)         (StepLR)
 *   cosine:    min_lr + (base_lr - min_lr) * (1 + cos(pi * min(s, T) / T)) / 2,
 *              T = total_steps - W                          (CosineAnnealingLR, one cycle)
 * so cosine gives base_lr at s = 0 and min_lr from s = T on (also when T <= 0). Values the
 * config would reject are tolerated: W < 0 counts as 0, step_size < 1 as no decay.
 * Pure function. */
double rt_sched_lr(const struct rt_sched_cfg *s, double base_lr, int64_t step, int64_t total_steps);

/* Global L2 norm of grads (accumulated in double). When max_norm > 0 and
 * coef = max_norm / (norm + 1e-6) is below 1, scales grads by (float)coef, as
 * torch.nn.utils.clip_grad_norm_ does; otherwise grads are not written. Returns the norm
 * before clipping (NaN or Inf if grads hold one: the caller checks). */
double rt_clip_grad_norm(float *grads, size_t n, double max_norm);
/* Its pieces, for a norm summed across ranks (sharded): the sum of squares of g[0..n) in
 * double (eight fixed lanes), and the factor clipping multiplies by (1 when it does not). */
double rt_grad_sum_squares(const float *g, size_t n);
float rt_clip_coef(double norm, double max_norm);

#endif
