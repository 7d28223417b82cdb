/* optim.c - SGD, Adam and AdamW updates over one flat parameter array.
 *
 * The goal is agreement with PyTorch's single-tensor path (torch.optim.SGD/Adam/AdamW,
 * foreach=False) up to float32 rounding, so every element goes through the same float32
 * operations in the same order as PyTorch's kernels do, and every per-step scalar (bias
 * corrections, step size) is computed in double once per step and then rounded to float,
 * which is what PyTorch does when a Python float meets a float32 tensor. The per-element
 * sequences are spelled out above sgd_loop() and adam_loop().
 *
 * Speed: the update runs over every parameter on every step, next to GEMMs that the
 * benchmark must keep at 80% of their rate, so it is one pass over the arrays with restrict
 * pointers and no data-dependent branches. The choices that depend on the configuration
 * (weight decay on or off, Nesterov, the first SGD step, the lerp form) are made once per
 * step: each loop is an always-inline function whose flag arguments are compile-time
 * constants at every call site, so the compiler emits one branch-free loop per variant.
 *
 * Not here: averaging gradients across ranks (comm), the learning-rate schedule and
 * clipping (sched.c, clip.c), prune masks (the caller re-applies the mask after the step).
 *
 * Dimension letters: n parameters; every array is (n). */
#include "ringtrain/optim.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX__) || defined(__SSE2__)
#include <immintrin.h>
#elif defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#endif

#define RT_ALWAYS_INLINE inline __attribute__((always_inline))

/* Elements per Adam block: the scratch of square roots (1 KiB) stays in L1 between the
 * three loops of a block. A multiple of every vector width. */
#define ADAM_BLOCK 256

static const char *const optim_names[] = {
    [RT_OPTIM_SGD] = "sgd",
    [RT_OPTIM_ADAM] = "adam",
    [RT_OPTIM_ADAMW] = "adamw",
};

int rt_optim_parse(const char *name, enum rt_optim_kind *out)
{
    for (int k = RT_OPTIM_SGD; k <= RT_OPTIM_ADAMW; k++) {
        if (strcmp(name, optim_names[k]) == 0) {
            *out = (enum rt_optim_kind)k;
            return 0;
        }
    }
    return -1;
}

const char *rt_optim_name(enum rt_optim_kind k)
{
    if ((unsigned)k > RT_OPTIM_ADAMW) return "unknown";
    return optim_names[k];
}

/* Range checks shared by the fields. The conditions are written so that NaN fails them. */
static int check_nonneg(const char *field, double x)
{
    if (!(x >= 0.0))
        return rt_errorf(RT_ERR_INVAL, "optim.%s = %g: expected a value >= 0", field, x);
    return RT_OK;
}

static int check_unit(const char *field, double x)
{
    if (!(x >= 0.0 && x < 1.0))
        return rt_errorf(RT_ERR_INVAL, "optim.%s = %g: expected a value in [0, 1)", field, x);
    return RT_OK;
}

/* Only the fields the chosen kind reads are checked, so that an SGD config may leave the
 * Adam fields zero and the other way round. */
static int validate_cfg(const struct rt_optim_cfg *c)
{
    if ((unsigned)c->kind > RT_OPTIM_ADAMW)
        return rt_errorf(RT_ERR_INVAL, "optim.kind = %d: expected sgd, adam or adamw",
                         (int)c->kind);
    RT_TRY(check_nonneg("lr", c->lr));
    RT_TRY(check_nonneg("weight_decay", c->weight_decay));
    if (c->kind == RT_OPTIM_SGD) {
        RT_TRY(check_nonneg("momentum", c->momentum));
        if (c->nesterov && !(c->momentum > 0.0))
            return rt_errorf(RT_ERR_INVAL, "optim.nesterov = %d: needs optim.momentum > 0, got %g",
                             c->nesterov, c->momentum);
        return RT_OK;
    }
    RT_TRY(check_unit("beta1", c->beta1));
    RT_TRY(check_unit("beta2", c->beta2));
    if (!(c->eps > 0.0))
        return rt_errorf(RT_ERR_INVAL, "optim.eps = %g: expected a value > 0", c->eps);
    return RT_OK;
}

int rt_optim_init(struct rt_optim *o, const struct rt_optim_cfg *cfg, size_t n)
{
    memset(o, 0, sizeof *o);
    RT_TRY(validate_cfg(cfg));
    o->cfg = *cfg;
    o->n = n;
    int need_m = cfg->kind != RT_OPTIM_SGD || cfg->momentum > 0.0;
    int need_v = cfg->kind != RT_OPTIM_SGD;
    if (n > SIZE_MAX / sizeof(float) - RT_ARENA_ALIGN)
        return rt_errorf(RT_ERR_NOMEM, "optimizer state: %zu parameters do not fit in memory", n);
    size_t one = rt_arena_footprint(n * sizeof(float));
    size_t cap = (size_t)(need_m + need_v) * one;
    if (one != 0 && cap / one != (size_t)(need_m + need_v))
        return rt_errorf(RT_ERR_NOMEM, "optimizer state: %zu parameters do not fit in memory", n);
    RT_TRY(rt_arena_init(&o->arena, "optimizer state", cap));
    /* n == 0 leaves the arena empty and the pointers NULL, which the loops never touch. */
    if (need_m && n > 0) o->m = rt_arena_alloc(&o->arena, n * sizeof(float));
    if (need_v && n > 0) o->v = rt_arena_alloc(&o->arena, n * sizeof(float));
    return RT_OK;
}

void rt_optim_free(struct rt_optim *o)
{
    if (!o) return;
    rt_arena_free(&o->arena);
    o->m = o->v = NULL;
    o->n = 0;
}

/* ---- SGD ----------------------------------------------------------------------------------
 * torch.optim.SGD, per element, all float32 (scalars rounded to float first):
 *   g = g + wd*p                   grad.add(param, alpha=wd)          if wd != 0
 *   buf = g                        torch.clone(grad)                  first step
 *   buf = buf*mom + g              buf.mul_(mom).add_(grad)           later steps
 *   g = g + mom*buf  or  g = buf   nesterov or not                    if mom != 0
 *   p = p + (-lr)*g                param.add_(grad, alpha=-lr)
 * The first step writes buf = g outright instead of relying on buf being zero, so a buffer
 * that held anything before (a reused optimizer, NaN garbage) cannot leak into the update. */
struct sgd_scalars {
    float wd, mom, neg_lr;
};

static RT_ALWAYS_INLINE void sgd_loop(float *restrict p, float *restrict buf,
                                      const float *restrict grad, size_t n, struct sgd_scalars s,
                                      const int has_wd, const int has_mom, const int nesterov,
                                      const int first)
{
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        if (has_wd) g = g + s.wd * p[i];
        if (has_mom) {
            float b = first ? g : buf[i] * s.mom + g;
            buf[i] = b;
            g = nesterov ? g + s.mom * b : b;
        }
        p[i] = p[i] + s.neg_lr * g;
    }
}

/* Every flag combination as its own specialised loop (index bit 0 wd, 1 momentum,
 * 2 nesterov, 3 first step). Combinations without momentum ignore bits 2 and 3. */
#define SGD_CASE(f)                                                                                \
    case f:                                                                                        \
        sgd_loop(p, buf, grad, n, s, (f)&1, (f) >> 1 & 1, (f) >> 2 & 1, (f) >> 3 & 1);             \
        break;

static void sgd_step(const struct rt_optim *o, float *restrict p, float *restrict buf,
                     const float *restrict grad, size_t n, double lr)
{
    const struct rt_optim_cfg *c = &o->cfg;
    struct sgd_scalars s = {(float)c->weight_decay, (float)c->momentum, (float)-lr};
    int has_mom = c->momentum != 0.0;
    unsigned f = (c->weight_decay != 0.0) | has_mom << 1 | (has_mom && c->nesterov) << 2 |
                 (has_mom && o->step == 0) << 3;
    switch (f) {
        SGD_CASE(0)
        SGD_CASE(1)
        SGD_CASE(2)
        SGD_CASE(3)
        SGD_CASE(6)
        SGD_CASE(7)
        SGD_CASE(10)
        SGD_CASE(11)
        SGD_CASE(14)
        SGD_CASE(15)
    }
}

/* ---- Adam / AdamW --------------------------------------------------------------------------
 * torch.optim.Adam/AdamW (_single_tensor_adam, amsgrad off), per element in float32:
 *   p = p * (1 - lr*wd)                 param.mul_(1 - lr*wd)              AdamW, wd != 0
 *   g = g + wd*p                        grad.add(param, alpha=wd)          Adam, wd != 0
 *   m = lerp(m, g, 1-b1)                exp_avg.lerp_(grad, 1-b1)
 *   v = v*b2;  v = v + (1-b2)*g*g       exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1-b2)
 *   d = sqrt(v) / sqrt(bc2) + eps       (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
 *   p = p + (-lr/bc1)*m / d             param.addcdiv_(exp_avg, denom, value=-step_size)
 * with bc1 = 1 - b1^t, bc2 = 1 - b2^t in double. PyTorch's lerp(a, b, w) is a + w*(b - a)
 * when |w| < 0.5 and b - (b - a)*(1 - w) otherwise; both forms are kept.
 *
 * GCC does not vectorise sqrtf() while errno is in play (-fmath-errno is the default and
 * cannot be switched off per function), so each block runs three loops: the moments, the
 * square roots with vector instructions (sqrt_block), then the parameter update. */

/* root = sqrt(x) for k <= ADAM_BLOCK elements. Vector and scalar square roots are both
 * correctly rounded IEEE operations, so every path gives the same bits as sqrtf(). */
static void sqrt_block(float *restrict root, const float *restrict x, size_t k)
{
    size_t i = 0;
#if defined(__AVX__)
    for (; i + 8 <= k; i += 8)
        _mm256_storeu_ps(root + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
#elif defined(__SSE2__)
    for (; i + 4 <= k; i += 4)
        _mm_storeu_ps(root + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#elif defined(__ARM_NEON) && defined(__aarch64__)
    for (; i + 4 <= k; i += 4)
        vst1q_f32(root + i, vsqrtq_f32(vld1q_f32(x + i)));
#endif
    for (; i < k; i++)
        root[i] = sqrtf(x[i]);
}

struct adam_scalars {
    float decay;    /* AdamW: 1 - lr*wd */
    float wd;       /* Adam: L2 coefficient */
    float w1, c1;   /* lerp weight 1-b1 and its complement 1-w1 */
    float b2, w2;   /* b2 and 1-b2 */
    float bc2_sqrt; /* sqrt(1 - b2^t) */
    float eps;
    float neg_step; /* -lr / (1 - b1^t) */
};

static RT_ALWAYS_INLINE void adam_moments(float *restrict p, float *restrict m, float *restrict v,
                                          const float *restrict grad, size_t n,
                                          const struct adam_scalars *sc, const int l2,
                                          const int decoupled, const int small_w)
{
    const struct adam_scalars s = *sc;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        if (decoupled) p[i] = p[i] * s.decay;
        if (l2) g = g + s.wd * p[i];
        float mi = m[i];
        m[i] = small_w ? mi + s.w1 * (g - mi) : g - (g - mi) * s.c1;
        float vi = v[i] * s.b2;
        v[i] = vi + s.w2 * g * g;
    }
}

static RT_ALWAYS_INLINE void adam_apply(float *restrict p, const float *restrict m,
                                        const float *restrict root, size_t n,
                                        const struct adam_scalars *sc)
{
    const struct adam_scalars s = *sc;
    for (size_t i = 0; i < n; i++) {
        float d = root[i] / s.bc2_sqrt + s.eps;
        p[i] = p[i] + s.neg_step * m[i] / d;
    }
}

static RT_ALWAYS_INLINE void adam_loop(float *restrict p, float *restrict m, float *restrict v,
                                       const float *restrict grad, size_t n,
                                       const struct adam_scalars *s, const int l2,
                                       const int decoupled, const int small_w)
{
    float root[ADAM_BLOCK] __attribute__((aligned(64)));
    for (size_t i = 0; i < n; i += ADAM_BLOCK) {
        size_t k = n - i < ADAM_BLOCK ? n - i : ADAM_BLOCK;
        adam_moments(p + i, m + i, v + i, grad + i, k, s, l2, decoupled, small_w);
        sqrt_block(root, v + i, k);
        adam_apply(p + i, m + i, root, k, s);
    }
}

/* Index bit 0 L2 decay, 1 decoupled decay, 2 small lerp weight; bits 0 and 1 never both. */
#define ADAM_CASE(f)                                                                               \
    case f:                                                                                        \
        adam_loop(p, m, v, grad, n, &s, (f)&1, (f) >> 1 & 1, (f) >> 2 & 1);                        \
        break;

static void adam_step(const struct rt_optim *o, float *restrict p, float *restrict m,
                      float *restrict v, const float *restrict grad, size_t n, double lr)
{
    const struct rt_optim_cfg *c = &o->cfg;
    double t = (double)(o->step + 1);
    double bc1 = 1.0 - pow(c->beta1, t);
    double bc2 = 1.0 - pow(c->beta2, t);
    double w1 = 1.0 - c->beta1;
    struct adam_scalars s = {
        .decay = (float)(1.0 - lr * c->weight_decay),
        .wd = (float)c->weight_decay,
        .w1 = (float)w1,
        .c1 = 1.0f - (float)w1, /* torch: opmath_t(1) - weight, in float */
        .b2 = (float)c->beta2,
        .w2 = (float)(1.0 - c->beta2),
        .bc2_sqrt = (float)sqrt(bc2),
        .eps = (float)c->eps,
        .neg_step = (float)-(lr / bc1),
    };
    int has_wd = c->weight_decay != 0.0;
    int adamw = c->kind == RT_OPTIM_ADAMW;
    unsigned f = (has_wd && !adamw) | (has_wd && adamw) << 1 | (fabs(w1) < 0.5) << 2;
    switch (f) {
        ADAM_CASE(0)
        ADAM_CASE(1)
        ADAM_CASE(2)
        ADAM_CASE(4)
        ADAM_CASE(5)
        ADAM_CASE(6)
    }
}

void rt_optim_update_at(const struct rt_optim *o, float *params, const float *grads,
                        size_t state_off, size_t len, double lr)
{
    if (len == 0) return;
    float *m = o->m ? o->m + state_off : NULL, *v = o->v ? o->v + state_off : NULL;
    if (o->cfg.kind == RT_OPTIM_SGD)
        sgd_step(o, params, m, grads, len, lr);
    else
        adam_step(o, params, m, v, grads, len, lr);
}

void rt_optim_update_range(const struct rt_optim *o, float *params, const float *grads, size_t lo,
                           size_t hi, double lr)
{
    if (lo < hi) rt_optim_update_at(o, params + lo, grads + lo, lo, hi - lo, lr);
}

void rt_optim_end_step(struct rt_optim *o)
{
    o->step++;
}

void rt_optim_step(struct rt_optim *o, float *params, const float *grads, double lr)
{
    rt_optim_update_range(o, params, grads, 0, o->n, lr);
    rt_optim_end_step(o);
}
