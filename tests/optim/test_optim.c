/* test_optim.c - unit tests of src/optim: optimizer updates, schedules, clipping, names.
 *
 * Expected optimizer values were computed by hand in double precision (a python3 one-off
 * applying the formulas quoted above each table) for 3 steps on a 5-vector. The vector is
 * tiled REP times so that the same numbers also cover the vector loops, several Adam
 * blocks and a ragged tail. Tolerances are a few float32 ulps of values near 1; the
 * mistakes the tests guard against (eps inside the square root, missing bias correction,
 * coupled instead of decoupled decay) move the results by 1e-3 or more. */
#include "check_util.h"
#include "ringtrain/optim.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NV   5   /* elements of the hand-computed vectors */
#define REP  203 /* tiles: 1015 elements, 3 full Adam blocks of 256 and a tail */
#define N    (NV * REP)
#define ATOL 2e-6
#define RTOL 2e-6

static const float p0[NV] = {1.0f, -2.0f, 0.5f, 3.0f, -0.25f};
static const float grads[3][NV] = {
    {0.5f, -1.0f, 0.25f, 2.0f, 0.0f},
    {-0.3f, 0.8f, 0.1f, 1.5f, -0.4f},
    {0.2f, -0.6f, -0.2f, 1.0f, 0.9f},
};
static const double lrs[3] = {0.1, 0.05, 0.02}; /* lr of steps 1, 2, 3 */

static void tile(float *dst, const float *src)
{
    for (size_t i = 0; i < N; i++)
        dst[i] = src[i % NV];
}

/* Runs 3 steps of cfg from p0 with o's state as it is, comparing p after each step. */
static void run_steps(struct rt_optim *o, const float expect[3][NV], const char *name)
{
    static float p[N], g[N], want[N];
    char label[128];
    tile(p, p0);
    for (int t = 0; t < 3; t++) {
        tile(g, grads[t]);
        rt_optim_step(o, p, g, lrs[t]);
        tile(want, expect[t]);
        snprintf(label, sizeof label, "%s step %d", name, t + 1);
        check_close(p, want, N, ATOL, RTOL, label);
    }
}

static void check_three_steps(const struct rt_optim_cfg *cfg, const float expect[3][NV],
                              const char *name)
{
    struct rt_optim o;
    ck_assert_int_eq(rt_optim_init(&o, cfg, N), RT_OK);
    run_steps(&o, expect, name);
    ck_assert_int_eq(o.step, 3);
    rt_optim_free(&o);
}

static const struct rt_optim_cfg adam_base = {
    .kind = RT_OPTIM_ADAM, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-2};

/* ---- rt_optim_step ---------------------------------------------------------------------- */

/* p -= lr*g */
static const float sgd_plain[3][NV] = {
    {0.95f, -1.9f, 0.475f, 2.8f, -0.25f},
    {0.965f, -1.94f, 0.47f, 2.725f, -0.23f},
    {0.961f, -1.928f, 0.474f, 2.705f, -0.248f},
};

/* buf = g (step 1), buf = 0.9*buf + g; p -= lr*buf */
static const float sgd_momentum[3][NV] = {
    {0.95f, -1.9f, 0.475f, 2.8f, -0.25f},
    {0.9425f, -1.895f, 0.45875f, 2.635f, -0.23f},
    {0.9358f, -1.8812f, 0.4569f, 2.5556f, -0.2408f},
};

/* g += 0.1*p; buf = g (step 1), buf = 0.9*buf + g; p -= lr*(g + 0.9*buf) */
static const float sgd_nesterov_wd[3][NV] = {
    {0.886f, -1.772f, 0.443f, 2.563f, -0.24525f},
    {0.881783f, -1.782566f, 0.4171415f, 2.3030015f, -0.203907625f},
    {0.865508905f, -1.74558561f, 0.416444702f, 2.19426403f, -0.230090971f},
};

/* m = .9m + .1g; v = .999v + .001g^2; p -= lr/(1-.9^t) * m/(sqrt(v)/sqrt(1-.999^t) + .01) */
static const float adam_plain[3][NV] = {
    {0.901960784f, -1.9009901f, 0.403846154f, 2.90049751f, -0.25f},
    {0.892612635f, -1.89811559f, 0.361159797f, 2.85164513f, -0.214063392f},
    {0.885854034f, -1.89195337f, 0.357807356f, 2.83291471f, -0.220948008f},
};

/* as adam_plain with g += 0.1*p first */
static const float adam_wd[3][NV] = {
    {0.901639344f, -1.90082645f, 0.403225806f, 2.9004329f, -0.178571429f},
    {0.882725488f, -1.88796318f, 0.358999593f, 2.85137768f, -0.14070986f},
    {0.87226047f, -1.8781417f, 0.3522196f, 2.83237864f, -0.146983608f},
};

/* p *= 1 - lr*0.1, then adam_plain's update */
static const float adamw_wd[3][NV] = {
    {0.891960784f, -1.8809901f, 0.398846154f, 2.87049751f, -0.2475f},
    {0.878152831f, -1.86871064f, 0.354165566f, 2.80729264f, -0.210325892f},
    {0.869637925f, -1.858811f, 0.350104795f, 2.78294764f, -0.216789857f},
};

/* adam_plain with b1 = .3, b2 = .5: 1-b1 >= 0.5 takes the other form of torch's lerp */
static const float adam_low_betas[3][NV] = {
    {0.901960784f, -1.9009901f, 0.403846154f, 2.90049751f, -0.25f},
    {0.916807211f, -1.92279914f, 0.365566442f, 2.85279682f, -0.204293886f},
    {0.90938108f, -1.91403744f, 0.376387562f, 2.83537639f, -0.219813691f},
};

START_TEST(rt_optim_step_sgd_plain)
{
    struct rt_optim_cfg c = {.kind = RT_OPTIM_SGD, .lr = 0.1};
    check_three_steps(&c, sgd_plain, "sgd");
}
END_TEST

START_TEST(rt_optim_step_sgd_momentum)
{
    struct rt_optim_cfg c = {.kind = RT_OPTIM_SGD, .lr = 0.1, .momentum = 0.9};
    check_three_steps(&c, sgd_momentum, "sgd momentum");
}
END_TEST

START_TEST(rt_optim_step_sgd_nesterov_weight_decay)
{
    struct rt_optim_cfg c = {
        .kind = RT_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .nesterov = 1, .weight_decay = 0.1};
    check_three_steps(&c, sgd_nesterov_wd, "sgd nesterov wd");
}
END_TEST

/* Step 1 must set buf = g whatever the buffer holds (torch clones the gradient), so a
 * NaN-filled buffer and a buffer left over from an earlier run give the fresh results. */
START_TEST(rt_optim_step_sgd_first_step_ignores_buffer)
{
    struct rt_optim_cfg c = {
        .kind = RT_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .nesterov = 1, .weight_decay = 0.1};
    struct rt_optim o;
    ck_assert_int_eq(rt_optim_init(&o, &c, N), RT_OK);
    for (size_t i = 0; i < N; i++)
        o.m[i] = NAN;
    run_steps(&o, sgd_nesterov_wd, "sgd nan buffer");
    o.step = 0;
    run_steps(&o, sgd_nesterov_wd, "sgd reused buffer");
    rt_optim_free(&o);
}
END_TEST

START_TEST(rt_optim_step_adam)
{
    check_three_steps(&adam_base, adam_plain, "adam");
}
END_TEST

START_TEST(rt_optim_step_adam_weight_decay)
{
    struct rt_optim_cfg c = adam_base;
    c.weight_decay = 0.1;
    check_three_steps(&c, adam_wd, "adam wd");
}
END_TEST

START_TEST(rt_optim_step_adamw)
{
    struct rt_optim_cfg c = adam_base;
    c.kind = RT_OPTIM_ADAMW;
    c.weight_decay = 0.1;
    check_three_steps(&c, adamw_wd, "adamw");
}
END_TEST

START_TEST(rt_optim_step_adam_low_betas)
{
    struct rt_optim_cfg c = adam_base;
    c.beta1 = 0.3;
    c.beta2 = 0.5;
    check_three_steps(&c, adam_low_betas, "adam low betas");
}
END_TEST

/* Guards around params and grads must survive, grads must be left as they were, and the
 * arena padding after m and v (inside the arena, so readable) must stay zero. */
#define GUARD    16
#define GUARD_N  1003
#define SENTINEL 12345.0f

static void check_no_overrun(const struct rt_optim_cfg *c)
{
    static float p[GUARD_N + 2 * GUARD], g[GUARD_N + 2 * GUARD], g_copy[GUARD_N + 2 * GUARD];
    for (size_t i = 0; i < GUARD_N + 2 * GUARD; i++)
        p[i] = g[i] = SENTINEL;
    for (size_t i = 0; i < GUARD_N; i++) {
        p[GUARD + i] = p0[i % NV];
        g[GUARD + i] = grads[0][i % NV];
    }
    memcpy(g_copy, g, sizeof g);
    struct rt_optim o;
    ck_assert_int_eq(rt_optim_init(&o, c, GUARD_N), RT_OK);
    for (int t = 0; t < 3; t++)
        rt_optim_step(&o, p + GUARD, g + GUARD, 0.1);
    for (size_t i = 0; i < GUARD; i++) {
        ck_assert_float_eq(p[i], SENTINEL);
        ck_assert_float_eq(p[GUARD + GUARD_N + i], SENTINEL);
    }
    ck_assert_int_eq(memcmp(g, g_copy, sizeof g), 0);
    size_t padded = rt_arena_footprint(GUARD_N * sizeof(float)) / sizeof(float);
    ck_assert_uint_gt(padded, GUARD_N);
    for (size_t i = GUARD_N; i < padded; i++) {
        if (o.m) ck_assert_float_eq(o.m[i], 0.0f);
        if (o.v) ck_assert_float_eq(o.v[i], 0.0f);
    }
    rt_optim_free(&o);
}

START_TEST(rt_optim_step_no_overrun)
{
    struct rt_optim_cfg sgd = {.kind = RT_OPTIM_SGD, .lr = 0.1};
    struct rt_optim_cfg nest = {
        .kind = RT_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .nesterov = 1, .weight_decay = 0.1};
    struct rt_optim_cfg adam = adam_base;
    adam.weight_decay = 0.1;
    struct rt_optim_cfg adamw = adam;
    adamw.kind = RT_OPTIM_ADAMW;
    check_no_overrun(&sgd);
    check_no_overrun(&nest);
    check_no_overrun(&adam);
    check_no_overrun(&adamw);
}
END_TEST

/* ---- rt_optim_init ---------------------------------------------------------------------- */

/* Applying a step range by range, in any order, gives the same bytes as one call. */
START_TEST(rt_optim_update_range_equals_step)
{
    enum { LEN = 1000 };
    const enum rt_optim_kind kinds[] = {RT_OPTIM_SGD, RT_OPTIM_ADAM, RT_OPTIM_ADAMW};
    for (int k = 0; k < 3; k++) {
        struct rt_optim_cfg c = {.kind = kinds[k],
                                 .lr = 0.01,
                                 .momentum = 0.9,
                                 .weight_decay = 0.01,
                                 .beta1 = 0.9,
                                 .beta2 = 0.999,
                                 .eps = 1e-8};
        struct rt_optim a, b;
        ck_assert_int_eq(rt_optim_init(&a, &c, LEN), RT_OK);
        ck_assert_int_eq(rt_optim_init(&b, &c, LEN), RT_OK);
        static float pa[LEN], pb[LEN], g[LEN];
        for (int i = 0; i < LEN; i++) {
            pa[i] = pb[i] = 0.01f * (float)(i % 37) - 0.2f;
            g[i] = 0.003f * (float)(i % 11) - 0.015f;
        }
        for (int step = 0; step < 3; step++) {
            rt_optim_step(&a, pa, g, 0.01);
            rt_optim_update_range(&b, pb, g, 700, LEN, 0.01);
            rt_optim_update_range(&b, pb, g, 333, 700, 0.01);
            rt_optim_update_range(&b, pb, g, 0, 333, 0.01);
            rt_optim_end_step(&b);
        }
        ck_assert_int_eq(memcmp(pa, pb, sizeof pa), 0);
        ck_assert_int_eq(a.step, b.step);
        rt_optim_free(&a);
        rt_optim_free(&b);
    }
}
END_TEST

START_TEST(rt_optim_init_state)
{
    struct rt_optim o;
    ck_assert_int_eq(rt_optim_init(&o, &adam_base, 37), RT_OK);
    ck_assert_ptr_nonnull(o.m);
    ck_assert_ptr_nonnull(o.v);
    ck_assert_uint_eq((uintptr_t)o.m % RT_ARENA_ALIGN, 0);
    ck_assert_uint_eq((uintptr_t)o.v % RT_ARENA_ALIGN, 0);
    ck_assert_int_eq(o.step, 0);
    ck_assert_uint_eq(o.n, 37);
    for (size_t i = 0; i < 37; i++)
        ck_assert(o.m[i] == 0.0f && o.v[i] == 0.0f);
    rt_optim_free(&o);

    struct rt_optim_cfg sgd = {.kind = RT_OPTIM_SGD, .lr = 0.1};
    ck_assert_int_eq(rt_optim_init(&o, &sgd, 37), RT_OK);
    ck_assert_ptr_null(o.m);
    ck_assert_ptr_null(o.v);
    rt_optim_free(&o);

    sgd.momentum = 0.9;
    ck_assert_int_eq(rt_optim_init(&o, &sgd, 37), RT_OK);
    ck_assert_ptr_nonnull(o.m);
    ck_assert_ptr_null(o.v);
    rt_optim_free(&o);
}
END_TEST

START_TEST(rt_optim_init_empty)
{
    struct rt_optim o;
    float p = 1.0f, g = 1.0f;
    ck_assert_int_eq(rt_optim_init(&o, &adam_base, 0), RT_OK);
    rt_optim_step(&o, &p, &g, 0.1);
    ck_assert_float_eq(p, 1.0f);
    ck_assert_int_eq(o.step, 1);
    rt_optim_free(&o);
}
END_TEST

struct bad_cfg {
    struct rt_optim_cfg cfg;
    const char *message;
};

START_TEST(rt_optim_init_rejects_invalid)
{
    const struct rt_optim_cfg a = adam_base;
    const struct rt_optim_cfg s = {.kind = RT_OPTIM_SGD, .lr = 0.1, .momentum = 0.9};
    struct bad_cfg bad[12];
    int nb = 0;
#define BAD(base, field, value, msg)                                                               \
    do {                                                                                           \
        bad[nb].cfg = (base);                                                                      \
        bad[nb].cfg.field = (value);                                                               \
        bad[nb++].message = (msg);                                                                 \
    } while (0)
    BAD(a, beta2, 1.5, "optim.beta2 = 1.5: expected a value in [0, 1)");
    BAD(a, beta2, 1.0, "optim.beta2 = 1: expected a value in [0, 1)");
    BAD(a, beta1, -0.1, "optim.beta1 = -0.1: expected a value in [0, 1)");
    BAD(a, eps, 0.0, "optim.eps = 0: expected a value > 0");
    BAD(a, lr, -1.0, "optim.lr = -1: expected a value >= 0");
    BAD(a, lr, NAN, "optim.lr = nan: expected a value >= 0");
    BAD(a, weight_decay, -0.01, "optim.weight_decay = -0.01: expected a value >= 0");
    BAD(s, momentum, -0.5, "optim.momentum = -0.5: expected a value >= 0");
    BAD(s, kind, (enum rt_optim_kind)7, "optim.kind = 7: expected sgd, adam or adamw");
    bad[nb].cfg = s;
    bad[nb].cfg.momentum = 0.0;
    bad[nb].cfg.nesterov = 1;
    bad[nb++].message = "optim.nesterov = 1: needs optim.momentum > 0, got 0";
#undef BAD
    for (int i = 0; i < nb; i++) {
        struct rt_optim o;
        rt_error_clear();
        ck_assert_int_eq(rt_optim_init(&o, &bad[i].cfg, 8), RT_ERR_INVAL);
        ck_assert_str_eq(rt_error_message(RT_ERR_INVAL), bad[i].message);
        ck_assert_ptr_null(o.m);
        rt_optim_free(&o); /* safe after a failed init */
    }
}
END_TEST

/* Edges of the valid ranges, and fields the kind does not use, are accepted. */
START_TEST(rt_optim_init_accepts_edges)
{
    struct rt_optim o;
    struct rt_optim_cfg a = adam_base;
    a.lr = 0.0;
    a.beta1 = 0.0;
    a.beta2 = 0.0;
    a.momentum = -1.0; /* unused by Adam */
    ck_assert_int_eq(rt_optim_init(&o, &a, 4), RT_OK);
    rt_optim_free(&o);
    struct rt_optim_cfg s = {.kind = RT_OPTIM_SGD, .lr = 0.1, .beta2 = 7.0}; /* eps 0 too */
    ck_assert_int_eq(rt_optim_init(&o, &s, 4), RT_OK);
    rt_optim_free(&o);
}
END_TEST

START_TEST(rt_optim_init_too_large)
{
    struct rt_optim o;
    rt_error_clear();
    ck_assert_int_eq(rt_optim_init(&o, &adam_base, SIZE_MAX / 2), RT_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(rt_error_message(RT_ERR_NOMEM), "optimizer state"));
    rt_optim_free(&o);
}
END_TEST

/* ---- rt_optim_free ---------------------------------------------------------------------- */

START_TEST(rt_optim_free_twice_and_null)
{
    struct rt_optim o;
    ck_assert_int_eq(rt_optim_init(&o, &adam_base, 100), RT_OK);
    rt_optim_free(&o);
    ck_assert_ptr_null(o.m);
    ck_assert_ptr_null(o.v);
    rt_optim_free(&o);
    rt_optim_free(NULL);
}
END_TEST

/* ---- rt_sched_lr ------------------------------------------------------------------------ */

#define LR_TOL 1e-15

START_TEST(rt_sched_lr_warmup)
{
    struct rt_sched_cfg c = {.kind = RT_SCHED_CONSTANT, .warmup_steps = 10};
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 0, 100), 0.01, LR_TOL); /* 0.1 * 1/10 */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 4, 100), 0.05, LR_TOL);
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 9, 100), 0.1, LR_TOL); /* last warm-up */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 10, 100), 0.1, LR_TOL);
}
END_TEST

START_TEST(rt_sched_lr_constant)
{
    struct rt_sched_cfg c = {.kind = RT_SCHED_CONSTANT};
    ck_assert_double_eq(rt_sched_lr(&c, 0.1, 0, 100), 0.1);
    ck_assert_double_eq(rt_sched_lr(&c, 0.1, 1000, 100), 0.1);
}
END_TEST

/* lr * gamma^floor(s/step_size), s counted from the end of a 10-step warm-up. */
START_TEST(rt_sched_lr_step)
{
    struct rt_sched_cfg c = {
        .kind = RT_SCHED_STEP, .warmup_steps = 10, .step_size = 30, .gamma = 0.5};
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 9, 200), 0.1, LR_TOL);
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 10, 200), 0.1, LR_TOL);   /* s = 0 */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 39, 200), 0.1, LR_TOL);   /* s = 29 */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 40, 200), 0.05, LR_TOL);  /* s = 30 */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 70, 200), 0.025, LR_TOL); /* s = 60 */
    c.warmup_steps = 0;
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 0, 200), 0.1, LR_TOL);
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 30, 200), 0.05, LR_TOL);
}
END_TEST

/* min + (lr - min)(1 + cos(pi s/T))/2 with T = 110 - 10 = 100. */
START_TEST(rt_sched_lr_cosine)
{
    struct rt_sched_cfg c = {.kind = RT_SCHED_COSINE, .warmup_steps = 10, .min_lr = 0.001};
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 0, 110), 0.01, LR_TOL); /* warm-up */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 10, 110), 0.1, LR_TOL); /* start */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 35, 110), 0.0855017856687341, LR_TOL);
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 60, 110), 0.0505, LR_TOL); /* middle */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 110, 110), 0.001, LR_TOL); /* end */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 500, 110), 0.001, LR_TOL); /* clamped */
    c.warmup_steps = 0;
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 0, 100), 0.1, LR_TOL);
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 50, 100), 0.0505, LR_TOL);
    c.warmup_steps = 10; /* nothing left after warm-up: already at the end */
    ck_assert_double_eq_tol(rt_sched_lr(&c, 0.1, 10, 10), 0.001, LR_TOL);
}
END_TEST

/* ---- rt_clip_grad_norm ------------------------------------------------------------------ */

START_TEST(rt_clip_grad_norm_below)
{
    float g[2] = {3.0f, 4.0f};
    ck_assert_double_eq_tol(rt_clip_grad_norm(g, 2, 10.0), 5.0, 1e-12);
    ck_assert_float_eq(g[0], 3.0f);
    ck_assert_float_eq(g[1], 4.0f);
    ck_assert_double_eq_tol(rt_clip_grad_norm(g, 2, 0.0), 5.0, 1e-12); /* 0 = off */
    ck_assert_float_eq(g[0], 3.0f);
}
END_TEST

START_TEST(rt_clip_grad_norm_above)
{
    float g[2] = {3.0f, 4.0f};
    ck_assert_double_eq_tol(rt_clip_grad_norm(g, 2, 1.0), 5.0, 1e-12);
    float coef = (float)(1.0 / (5.0 + 1e-6));
    ck_assert_float_eq(g[0], 3.0f * coef);
    ck_assert_float_eq(g[1], 4.0f * coef);
}
END_TEST

/* torch clips whenever max_norm/(norm + 1e-6) < 1, so a norm equal to max_norm is scaled
 * (visibly in float only for a small norm, hence gradients of 1e-3). */
START_TEST(rt_clip_grad_norm_equal_and_long)
{
    static float g[1003];
    const float x = 1e-3f;
    for (size_t i = 0; i < 1003; i++)
        g[i] = (i % 2) ? -x : x;
    double norm = (double)x * sqrt(1003.0);
    ck_assert_double_eq_tol(rt_clip_grad_norm(g, 1003, norm), norm, 1e-15);
    float coef = (float)(norm / (norm + 1e-6));
    ck_assert_float_lt(coef, 1.0f);
    ck_assert_float_eq(g[0], x * coef);
    ck_assert_float_eq(g[1002], x * coef);
    ck_assert_float_eq(g[1001], -x * coef);
}
END_TEST

/* ---- names ------------------------------------------------------------------------------ */

START_TEST(rt_optim_parse_names)
{
    enum rt_optim_kind k;
    ck_assert_int_eq(rt_optim_parse("sgd", &k), 0);
    ck_assert_int_eq(k, RT_OPTIM_SGD);
    ck_assert_int_eq(rt_optim_parse("adam", &k), 0);
    ck_assert_int_eq(k, RT_OPTIM_ADAM);
    ck_assert_int_eq(rt_optim_parse("adamw", &k), 0);
    ck_assert_int_eq(k, RT_OPTIM_ADAMW);
    ck_assert_int_eq(rt_optim_parse("adagrad", &k), -1);
    ck_assert_int_eq(rt_optim_parse("", &k), -1);
}
END_TEST

START_TEST(rt_optim_name_roundtrip)
{
    for (int i = RT_OPTIM_SGD; i <= RT_OPTIM_ADAMW; i++) {
        enum rt_optim_kind k;
        ck_assert_int_eq(rt_optim_parse(rt_optim_name((enum rt_optim_kind)i), &k), 0);
        ck_assert_int_eq(k, i);
    }
    ck_assert_str_eq(rt_optim_name(RT_OPTIM_ADAMW), "adamw");
}
END_TEST

START_TEST(rt_sched_parse_names)
{
    enum rt_sched_kind k;
    ck_assert_int_eq(rt_sched_parse("constant", &k), 0);
    ck_assert_int_eq(k, RT_SCHED_CONSTANT);
    k = RT_SCHED_COSINE;
    ck_assert_int_eq(rt_sched_parse("none", &k), 0);
    ck_assert_int_eq(k, RT_SCHED_CONSTANT);
    ck_assert_int_eq(rt_sched_parse("step", &k), 0);
    ck_assert_int_eq(k, RT_SCHED_STEP);
    ck_assert_int_eq(rt_sched_parse("cosine", &k), 0);
    ck_assert_int_eq(k, RT_SCHED_COSINE);
    ck_assert_int_eq(rt_sched_parse("linear", &k), -1);
}
END_TEST

START_TEST(rt_sched_name_roundtrip)
{
    for (int i = RT_SCHED_CONSTANT; i <= RT_SCHED_COSINE; i++) {
        enum rt_sched_kind k;
        ck_assert_int_eq(rt_sched_parse(rt_sched_name((enum rt_sched_kind)i), &k), 0);
        ck_assert_int_eq(k, i);
    }
    ck_assert_str_eq(rt_sched_name(RT_SCHED_CONSTANT), "constant");
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("rt_optim_step");
    tcase_add_test(tc, rt_optim_step_sgd_plain);
    tcase_add_test(tc, rt_optim_step_sgd_momentum);
    tcase_add_test(tc, rt_optim_step_sgd_nesterov_weight_decay);
    tcase_add_test(tc, rt_optim_step_sgd_first_step_ignores_buffer);
    tcase_add_test(tc, rt_optim_step_adam);
    tcase_add_test(tc, rt_optim_step_adam_weight_decay);
    tcase_add_test(tc, rt_optim_step_adamw);
    tcase_add_test(tc, rt_optim_step_adam_low_betas);
    tcase_add_test(tc, rt_optim_step_no_overrun);
    suite_add_tcase(s, tc);

    tc = tcase_create("rt_optim_update_range");
    tcase_add_test(tc, rt_optim_update_range_equals_step);
    suite_add_tcase(s, tc);

    tc = tcase_create("rt_optim_init");
    tcase_add_test(tc, rt_optim_init_state);
    tcase_add_test(tc, rt_optim_init_empty);
    tcase_add_test(tc, rt_optim_init_rejects_invalid);
    tcase_add_test(tc, rt_optim_init_accepts_edges);
    tcase_add_test(tc, rt_optim_init_too_large);
    suite_add_tcase(s, tc);

    tc = tcase_create("rt_optim_free");
    tcase_add_test(tc, rt_optim_free_twice_and_null);
    suite_add_tcase(s, tc);

    tc = tcase_create("rt_sched_lr");
    tcase_add_test(tc, rt_sched_lr_warmup);
    tcase_add_test(tc, rt_sched_lr_constant);
    tcase_add_test(tc, rt_sched_lr_step);
    tcase_add_test(tc, rt_sched_lr_cosine);
    suite_add_tcase(s, tc);

    tc = tcase_create("rt_clip_grad_norm");
    tcase_add_test(tc, rt_clip_grad_norm_below);
    tcase_add_test(tc, rt_clip_grad_norm_above);
    tcase_add_test(tc, rt_clip_grad_norm_equal_and_long);
    suite_add_tcase(s, tc);

    tc = tcase_create("rt_optim_parse");
    tcase_add_test(tc, rt_optim_parse_names);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_optim_name");
    tcase_add_test(tc, rt_optim_name_roundtrip);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_sched_parse");
    tcase_add_test(tc, rt_sched_parse_names);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_sched_name");
    tcase_add_test(tc, rt_sched_name_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(optim_suite());
}
