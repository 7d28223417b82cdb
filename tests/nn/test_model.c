/* test_model.c - struct rt_model: build, init, forward, loss, backward, counting, names.
 *
 * The whole-model gradient check is the random-direction one: the directional derivative
 * of the double reference loss (ref.h) along a random d, by central differences, against
 * grads . d from our float backward. Printed as `gradcheck model-<act>-<loss> ...`.
 *
 * Dimension letters: B rows, IN/OUT a layer's widths, K the output width. */
#include "check_util.h"
#include "ref.h"

#include "ringtrain/dense.h"
#include "ringtrain/model.h"
#include "ringtrain/status.h"
#include "nn/loss.h"

#include <math.h>
#include <string.h>

#define N_ACTS 5
static const enum rt_act all_acts[N_ACTS] = {RT_ACT_IDENTITY, RT_ACT_RELU, RT_ACT_TANH,
                                             RT_ACT_SIGMOID, RT_ACT_GELU};

static struct rt_model_spec make_spec(int n, const int *sizes, enum rt_act act, enum rt_loss loss,
                                      enum rt_init init)
{
    struct rt_model_spec s;
    memset(&s, 0, sizeof s);
    rt_model_spec_widths(&s, sizes, n, act);
    s.loss = loss;
    s.init = init;
    return s;
}

/* ---- rt_model_init ---- */

START_TEST(model_init_rejects_bad_specs)
{
    int sizes[RT_MAX_LAYERS + 2];
    for (int i = 0; i < RT_MAX_LAYERS + 2; i++)
        sizes[i] = 3;
    struct rt_model_spec good = make_spec(3, sizes, RT_ACT_RELU, RT_LOSS_CE, RT_INIT_TORCH);
    struct rt_model_spec bad[8];
    int max_batch[8] = {4, 4, 4, 4, 4, 4, 4, 0};
    for (int i = 0; i < 8; i++)
        bad[i] = good;
    bad[0].n_layers = 0;
    bad[1].n_layers = RT_MAX_LAYERS + 1;
    bad[2].layers[0].units = 0;
    bad[3].input.d[0] = -3;
    bad[4].layers[0].act = (enum rt_act)99;
    bad[5].loss = (enum rt_loss)7;
    bad[6].init = (enum rt_init)5;
    for (int i = 0; i < 8; i++) {
        struct rt_model m;
        memset(&m, 0xab, sizeof m); /* garbage in: init must not trust it */
        rt_error_clear();
        ck_assert_msg(rt_model_init(&m, &bad[i], max_batch[i]) == RT_ERR_INVAL, "case %d", i);
        ck_assert_ptr_null(m.params);
        ck_assert_ptr_null(m.layers);
        ck_assert_int_eq(m.n_layers, 0);
        rt_model_free(&m); /* freed model: no-op */
    }
    struct rt_model m;
    ck_assert_int_eq(rt_model_init(&m, NULL, 4), RT_ERR_INVAL);
}
END_TEST

START_TEST(model_init_layout)
{
    int sizes[4] = {5, 7, 6, 4};
    struct rt_model_spec s = make_spec(4, sizes, RT_ACT_GELU, RT_LOSS_MSE, RT_INIT_HE);
    struct rt_model m;
    ck_assert_int_eq(rt_model_init(&m, &s, 8), RT_OK);
    ck_assert_int_eq(m.n_layers, 3);
    ck_assert_int_eq(m.max_batch, 8);
    ck_assert_uint_eq(m.n_params, 7 * 5 + 7 + 6 * 7 + 6 + 4 * 6 + 4);
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        float *w, *b, *dw, *db;
        rt_model_layer_view(&m, i, &w, &b, &dw, &db);
        size_t nw = (size_t)sizes[i + 1] * sizes[i];
        ck_assert_uint_eq(rt_model_layer_offset(&m, i), off);
        ck_assert_uint_eq(rt_model_layer_count(&m, i), nw + sizes[i + 1]);
        ck_assert_ptr_eq(w, m.params + off);
        ck_assert_ptr_eq(b, m.params + off + nw);
        ck_assert_ptr_eq(dw, m.grads + off);
        ck_assert_ptr_eq(db, m.grads + off + nw);
        off += nw + sizes[i + 1];
    }
    ck_assert_uint_eq(off, m.n_params);
    for (size_t i = 0; i < m.n_params; i++)
        ck_assert_float_eq(m.params[i], 0.0f);          /* documented: zero until init_params */
    rt_model_layer_view(&m, 1, NULL, NULL, NULL, NULL); /* NULL out-pointers are allowed */
    rt_model_free(&m);
    ck_assert_ptr_null(m.params);
    rt_model_free(&m);
}
END_TEST

START_TEST(model_init_max_layers)
{
    int sizes[RT_MAX_LAYERS + 1];
    for (int i = 0; i <= RT_MAX_LAYERS; i++)
        sizes[i] = 2 + i % 3;
    struct rt_model_spec s =
        make_spec(RT_MAX_LAYERS + 1, sizes, RT_ACT_GELU, RT_LOSS_CE, RT_INIT_TORCH);
    struct rt_model m;
    ck_assert_int_eq(rt_model_init(&m, &s, 3), RT_OK);
    ck_assert_int_eq(m.n_layers, RT_MAX_LAYERS);
    float x[3 * 2] = {1, 2, 3, 4, 5, 6};
    int32_t y[3] = {0, 1, 0};
    rt_model_init_params(&m, 5);
    rt_model_forward(&m, x, 3);
    ck_assert(isfinite(rt_model_loss(&m, y, 3, 3.0)));
    rt_model_backward(&m, x, 3, NULL, NULL);
    rt_model_free(&m);
}
END_TEST

/* ---- rt_model_init_params ---- */

enum { SIN = 400, SOUT = 300 };

struct moments {
    double mean, var, max_abs, frac_within_sd;
};

static struct moments moments_of(const float *v, size_t n)
{
    struct moments mo = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        mo.mean += v[i];
        mo.max_abs = fmax(mo.max_abs, fabs(v[i]));
    }
    mo.mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        mo.var += (v[i] - mo.mean) * (v[i] - mo.mean);
    mo.var /= (double)(n - 1);
    for (size_t i = 0; i < n; i++)
        mo.frac_within_sd += fabs(v[i]) < sqrt(mo.var);
    mo.frac_within_sd /= (double)n;
    return mo;
}

/* W (SOUT, SIN) = 120000 draws: mean within 5 standard errors, variance within 2% (about
 * 5 sigma), and the share within one sd tells uniform (1/sqrt 3 = 0.577) from normal
 * (0.683). */
static void check_w(const float *w, double var, int uniform, double bound)
{
    size_t n = (size_t)SOUT * SIN;
    struct moments mo = moments_of(w, n);
    ck_assert_msg(fabs(mo.mean) < 5.0 * sqrt(var / (double)n), "mean %g", mo.mean);
    ck_assert_msg(fabs(mo.var / var - 1.0) < 0.02, "var %g, want %g", mo.var, var);
    double share = uniform ? 1.0 / sqrt(3.0) : 0.682689;
    ck_assert_msg(fabs(mo.frac_within_sd - share) < 0.01, "share within sd %g, want %g",
                  mo.frac_within_sd, share);
    if (uniform)
        ck_assert_msg(mo.max_abs <= bound && mo.max_abs > 0.999 * bound, "max |w| %g, bound %g",
                      mo.max_abs, bound);
}

START_TEST(model_init_params_stats)
{
    enum rt_init init = (enum rt_init)_i;
    int sizes[3] = {SIN, SOUT, 10};
    struct rt_model_spec s = make_spec(3, sizes, RT_ACT_RELU, RT_LOSS_CE, init);
    struct rt_model m;
    ck_assert_int_eq(rt_model_init(&m, &s, 1), RT_OK);
    rt_model_init_params(&m, 2024);
    float *w, *b, *w1, *b1;
    rt_model_layer_view(&m, 0, &w, &b, NULL, NULL);
    rt_model_layer_view(&m, 1, &w1, &b1, NULL, NULL);
    if (init == RT_INIT_TORCH) {
        double bound = 1.0 / sqrt(SIN);
        check_w(w, bound * bound / 3.0, 1, bound);
        struct moments mb = moments_of(b, SOUT);
        ck_assert(mb.max_abs <= bound && mb.max_abs > 0.95 * bound);
        ck_assert_msg(fabs(mb.var / (bound * bound / 3.0) - 1.0) < 0.25, "bias var %g", mb.var);
        struct moments m1 = moments_of(b1, 10); /* layer 1 uses its own IN = SOUT */
        ck_assert(m1.max_abs <= 1.0 / sqrt(SOUT) && m1.max_abs > 0.0);
    } else {
        if (init == RT_INIT_XAVIER) {
            double bound = sqrt(6.0 / (SIN + SOUT));
            check_w(w, bound * bound / 3.0, 1, bound);
            ck_assert(moments_of(w1, 10 * SOUT).max_abs <= sqrt(6.0 / (SOUT + 10)));
        } else {
            check_w(w, 2.0 / SIN, 0, 0);
        }
        for (int i = 0; i < SOUT; i++)
            ck_assert_float_eq(b[i], 0.0f);
        for (int i = 0; i < 10; i++)
            ck_assert_float_eq(b1[i], 0.0f);
    }
    rt_model_free(&m);
}
END_TEST

START_TEST(model_init_params_reproducible)
{
    int sizes[4] = {9, 8, 7, 3};
    struct rt_model_spec s = make_spec(4, sizes, RT_ACT_TANH, RT_LOSS_CE, (enum rt_init)_i);
    struct rt_model a, b;
    ck_assert_int_eq(rt_model_init(&a, &s, 2), RT_OK);
    ck_assert_int_eq(rt_model_init(&b, &s, 5), RT_OK);
    rt_model_init_params(&a, 77);
    rt_model_init_params(&b, 77);
    ck_assert_int_eq(memcmp(a.params, b.params, a.n_params * sizeof(float)), 0);
    rt_model_init_params(&b, 78);
    float *wa, *wb;
    for (int l = 0; l < 3; l++) { /* every layer's weights change with the seed */
        rt_model_layer_view(&a, l, &wa, NULL, NULL, NULL);
        rt_model_layer_view(&b, l, &wb, NULL, NULL, NULL);
        size_t n = (size_t)sizes[l + 1] * sizes[l], same = 0;
        for (size_t i = 0; i < n; i++)
            same += wa[i] == wb[i];
        ck_assert_uint_eq(same, 0);
    }
    /* layers draw from their own streams: layer 0 and 1 do not repeat each other */
    float *w1;
    rt_model_layer_view(&a, 1, &w1, NULL, NULL, NULL);
    rt_model_layer_view(&a, 0, &wa, NULL, NULL, NULL);
    ck_assert(wa[0] != w1[0] || wa[1] != w1[1]);
    rt_model_free(&a);
    rt_model_free(&b);
}
END_TEST

/* ---- rt_model_forward ---- */

START_TEST(model_forward_reference)
{
    enum { B = 4 };
    int sizes[4] = {6, 9, 8, 5};
    struct rt_model_spec s = make_spec(4, sizes, all_acts[_i], RT_LOSS_CE, RT_INIT_TORCH);
    struct rt_model m;
    ck_assert_int_eq(rt_model_init(&m, &s, B), RT_OK);
    rt_model_init_params(&m, 3);
    float x[B * 6], want[B * 5];
    struct rt_rng rng;
    rt_rng_seed(&rng, 9);
    fill_uniform_f(x, B * 6, -2, 2, &rng);
    double *p = malloc(m.n_params * sizeof *p), z[B * 5];
    to_double(p, m.params, (int)m.n_params);
    ref_model_forward(z, p, &s, x, B, NULL);
    for (int i = 0; i < B * 5; i++)
        want[i] = (float)z[i];
    const float *logits = rt_model_forward(&m, x, B);
    check_close(logits, want, B * 5, 1e-5, 1e-5, "logits");
    /* fewer rows than max_batch: the first rows are the same */
    logits = rt_model_forward(&m, x, 2);
    check_close(logits, want, 2 * 5, 1e-5, 1e-5, "logits B=2");
    free(p);
    rt_model_free(&m);
}
END_TEST

/* ---- rt_model_backward ---- */

enum { MB = 3 };
static const int msizes[4] = {5, 7, 6, 4};

struct model_case {
    struct rt_model m;
    struct rt_model_spec s;
    float x[MB * 5], t[MB * 4];
    int32_t labels[MB];
    const void *targets;
    double norm;
};

/* A 3-layer model with inputs drawn so that every hidden pre-activation is >= 1e-3 from
 * zero: the eps-perturbation then never crosses relu's kink. */
static void model_case_init(struct model_case *c, enum rt_act act, enum rt_loss loss)
{
    c->s = make_spec(4, msizes, act, loss, RT_INIT_TORCH);
    ck_assert_int_eq(rt_model_init(&c->m, &c->s, MB + 1), RT_OK);
    rt_model_init_params(&c->m, 100 + (uint64_t)act);
    struct rt_rng rng;
    rt_rng_seed(&rng, 31 * (uint64_t)act + (uint64_t)loss);
    double *p = malloc(c->m.n_params * sizeof *p), zmin = 0.0;
    to_double(p, c->m.params, (int)c->m.n_params);
    for (int attempt = 0; attempt < 1000 && zmin < 1e-3; attempt++) {
        fill_uniform_f(c->x, MB * 5, -2, 2, &rng);
        zmin = INFINITY;
        double z[MB * 4];
        ref_model_forward(z, p, &c->s, c->x, MB, &zmin);
    }
    ck_assert(zmin >= 1e-3);
    fill_uniform_f(c->t, MB * 4, -1, 1, &rng);
    for (int r = 0; r < MB; r++)
        c->labels[r] = (int32_t)rt_rng_below(&rng, 4);
    c->targets = loss == RT_LOSS_CE ? (const void *)c->labels : (const void *)c->t;
    c->norm = rt_loss_norm(loss, MB, 4);
    free(p);
}

/* Directional derivative along 8 random directions; returns the largest relative error. */
static double random_direction_check(struct model_case *c)
{
    size_t n = c->m.n_params;
    double *p = malloc(n * sizeof *p), *q = malloc(n * sizeof *q), *d = malloc(n * sizeof *d);
    to_double(p, c->m.params, (int)n);
    struct rt_rng rng;
    rt_rng_seed(&rng, 4242);
    double worst = 0.0;
    for (int trial = 0; trial < 8; trial++) {
        double analytic = 0.0;
        for (size_t i = 0; i < n; i++) {
            d[i] = rt_rng_normal(&rng);
            analytic += (double)c->m.grads[i] * d[i];
        }
        double f[2];
        for (int side = 0; side < 2; side++) {
            double h = side == 0 ? GRADCHECK_EPS : -GRADCHECK_EPS;
            for (size_t i = 0; i < n; i++)
                q[i] = p[i] + h * d[i];
            f[side] = ref_model_loss(q, &c->s, c->x, c->targets, MB, NULL) / c->norm;
        }
        double numeric = (f[0] - f[1]) / (2.0 * GRADCHECK_EPS);
        double e = rel_err(analytic, numeric, 1e-2);
        worst = e > worst || isnan(e) ? e : worst;
    }
    free(p);
    free(q);
    free(d);
    return worst;
}

START_TEST(model_backward_random_direction)
{
    enum rt_act act = all_acts[_i / 2];
    enum rt_loss loss = _i % 2 ? RT_LOSS_MSE : RT_LOSS_CE;
    struct model_case c;
    model_case_init(&c, act, loss);
    rt_model_forward(&c.m, c.x, MB);
    double sum = rt_model_loss(&c.m, c.targets, MB, c.norm);
    double *p = malloc(c.m.n_params * sizeof *p);
    to_double(p, c.m.params, (int)c.m.n_params);
    double ref = ref_model_loss(p, &c.s, c.x, c.targets, MB, NULL);
    ck_assert_msg(fabs(sum - ref) <= 1e-5 * fabs(ref) + 1e-6, "loss %.9g vs %.9g", sum, ref);
    free(p);
    memset(c.m.grads, 0x7f, c.m.n_params * sizeof(float)); /* stale junk must not survive */
    rt_model_backward(&c.m, c.x, MB, NULL, NULL);
    double worst = random_direction_check(&c);
    printf("gradcheck model-%s-%s max_rel_err=%.2g\n", rt_act_name(act), rt_loss_name(loss), worst);
    fflush(stdout);
    ck_assert_msg(worst < 1e-4, "model-%s-%s: max rel err %.3g", rt_act_name(act),
                  rt_loss_name(loss), worst);
    rt_model_free(&c.m);
}
END_TEST

START_TEST(model_backward_b0_zero)
{
    struct model_case c;
    model_case_init(&c, all_acts[_i], RT_LOSS_CE);
    for (size_t i = 0; i < c.m.n_params; i++)
        c.m.grads[i] = NAN;
    rt_model_forward(&c.m, c.x, 0);
    ck_assert_double_eq(rt_model_loss(&c.m, c.targets, 0, 1.0), 0.0);
    rt_model_backward(&c.m, c.x, 0, NULL, NULL);
    for (size_t i = 0; i < c.m.n_params; i++)
        ck_assert_float_eq(c.m.grads[i], 0.0f);
    rt_model_free(&c.m);
}
END_TEST

struct ready_log {
    int n, layer[RT_MAX_LAYERS];
    size_t offset[RT_MAX_LAYERS], count[RT_MAX_LAYERS];
    const struct rt_model *m;
    int grads_final; /* the block had its final values when announced */
    float *final;    /* grads of a previous identical backward */
};

static void on_ready(void *ctx, int layer, size_t offset, size_t count)
{
    struct ready_log *log = ctx;
    log->layer[log->n] = layer;
    log->offset[log->n] = offset;
    log->count[log->n] = count;
    log->n++;
    if (memcmp(log->m->grads + offset, log->final + offset, count * sizeof(float)) != 0)
        log->grads_final = 0;
}

/* Layers are announced last to first, each with its block, and the block is final then;
 * a second backward gives the same bytes (overwrite, not accumulate). */
START_TEST(model_backward_ready_order)
{
    struct model_case c;
    model_case_init(&c, RT_ACT_RELU, RT_LOSS_MSE);
    rt_model_forward(&c.m, c.x, MB);
    rt_model_loss(&c.m, c.targets, MB, c.norm);
    rt_model_backward(&c.m, c.x, MB, NULL, NULL);
    float *first = malloc(c.m.n_params * sizeof *first);
    memcpy(first, c.m.grads, c.m.n_params * sizeof *first);
    memset(c.m.grads, 0, c.m.n_params * sizeof(float));
    struct ready_log log = {.n = 0, .m = &c.m, .grads_final = 1, .final = first};
    rt_model_loss(&c.m, c.targets, MB, c.norm);
    rt_model_backward(&c.m, c.x, MB, on_ready, &log);
    ck_assert_int_eq(log.n, 3);
    ck_assert(log.grads_final);
    for (int k = 0; k < 3; k++) {
        int i = 2 - k;
        ck_assert_int_eq(log.layer[k], i);
        ck_assert_uint_eq(log.offset[k], rt_model_layer_offset(&c.m, i));
        ck_assert_uint_eq(log.count[k], (size_t)msizes[i + 1] * msizes[i] + msizes[i + 1]);
    }
    ck_assert_int_eq(memcmp(first, c.m.grads, c.m.n_params * sizeof *first), 0);
    free(first);
    rt_model_free(&c.m);
}
END_TEST

/* ---- rt_model_loss and rt_model_count_correct, through an identity model ---- */

/* sizes {K, K} with W = I and b = 0: logits are the inputs, exactly. */
static void identity_model(struct rt_model *m, int K, int B, enum rt_loss loss)
{
    int sizes[2] = {K, K};
    struct rt_model_spec s = make_spec(2, sizes, RT_ACT_RELU, loss, RT_INIT_TORCH);
    ck_assert_int_eq(rt_model_init(m, &s, B), RT_OK);
    for (int k = 0; k < K; k++)
        m->params[k * K + k] = 1.0f;
}

START_TEST(model_loss_ce_values)
{
    struct rt_model m;
    identity_model(&m, 4, 3, RT_LOSS_CE);
    float x[12] = {0, 0, 0, 0, 1, 1, 1, 1, -7, -7, -7, -7}; /* negative: last layer is linear */
    int32_t labels[3] = {0, 3, 2};
    const float *z = rt_model_forward(&m, x, 3);
    check_close(z, x, 12, 0, 0, "identity logits");
    double norm = rt_loss_norm(RT_LOSS_CE, 6, 4); /* as if 2 ranks of 3 rows */
    ck_assert_double_eq_tol(rt_model_loss(&m, labels, 3, norm), 3.0 * log(4.0), 1e-6);
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++)
            ck_assert_float_eq_tol(m.dlogits[r * 4 + k], (k == labels[r] ? -0.75f : 0.25f) / 6.0f,
                                   1e-7f);
    rt_model_free(&m);
}
END_TEST

START_TEST(model_loss_mse_values)
{
    struct rt_model m;
    identity_model(&m, 3, 2, RT_LOSS_MSE);
    float x[6] = {1, 2, 3, 0, -1, 0.5f}, t[6] = {0, 0, 0, 0, 1, 0.5f};
    rt_model_forward(&m, x, 2);
    double norm = rt_loss_norm(RT_LOSS_MSE, 2, 3);
    ck_assert_double_eq(norm, 6.0);
    ck_assert_double_eq_tol(rt_model_loss(&m, t, 2, norm), 18.0, 1e-12);
    float want[6] = {2.0f / 6, 4.0f / 6, 1.0f, 0, -4.0f / 6, 0};
    check_close(m.dlogits, want, 6, 1e-7, 1e-6, "dlogits");
    rt_model_free(&m);
}
END_TEST

START_TEST(model_count_correct_ties)
{
    struct rt_model m;
    identity_model(&m, 3, 4, RT_LOSS_CE);
    float x[12] = {1, 1, 0, 0, 0, 5, 3, 3, 3, -1, 2, 2};
    int32_t hit[4] = {0, 2, 0, 1}, miss[4] = {1, 1, 2, 2}, mixed[4] = {0, 0, 1, 1};
    rt_model_forward(&m, x, 4);
    ck_assert_int_eq(rt_model_count_correct(&m, hit, 4), 4);
    ck_assert_int_eq(rt_model_count_correct(&m, miss, 4), 0);
    ck_assert_int_eq(rt_model_count_correct(&m, mixed, 4), 2);
    ck_assert_int_eq(rt_model_count_correct(&m, hit, 2), 2);
    rt_model_free(&m);
}
END_TEST

/* ---- rt_model_loss_kd ---- */

/* The model entry point is the kernel of its loss on the last logits, bit for bit. */
START_TEST(model_loss_kd_dispatch)
{
    enum { B = 3, K = 4 };
    float x[B * K] = {0.5f, -1, 2, 0, 1, 1, -3, 0.25f, -7, 2, 0, 1};
    float teacher[B * K] = {1, 0, -1, 2, 0.5f, 0.5f, 3, -2, 0, 0, 1, -1};
    float t[B * K] = {0, 1, 0, 0, 1, 0, 0, 0, -1, 0.5f, 2, 0};
    int32_t labels[B] = {2, 0, 3};
    float d[B * K];
    for (int l = 0; l < 2; l++) {
        enum rt_loss loss = l ? RT_LOSS_MSE : RT_LOSS_CE;
        struct rt_model m;
        identity_model(&m, K, B, loss);
        const float *z = rt_model_forward(&m, x, B);
        double norm = rt_loss_norm(loss, 2 * B, K);
        double got = rt_model_loss_kd(&m, teacher, l ? (const void *)t : labels, B, norm, 2.0, 0.3);
        double want = l ? rt_loss_kd_mse(d, z, teacher, t, B, K, 0.3, norm)
                        : rt_loss_kd(d, z, teacher, labels, B, K, 2.0, 0.3, norm);
        ck_assert_double_eq(got, want);
        ck_assert_int_eq(memcmp(m.dlogits, d, sizeof d), 0);
        if (loss == RT_LOSS_MSE) { /* T is unused by the regression loss */
            ck_assert_double_eq(rt_model_loss_kd(&m, teacher, t, B, norm, 7.0, 0.3), want);
            ck_assert_int_eq(memcmp(m.dlogits, d, sizeof d), 0);
        }
        rt_model_free(&m);
    }
}
END_TEST

/* ---- rt_model_use_rowwise ---- */

enum { RWN = 64 };
static const int rw_sizes[4] = {30, 70, 40, 10};

/* A 3-layer model whose middle layer keeps only every tenth weight (90% zeros: CSR in
 * row-wise mode; the other two run the row-wise kernel), and RWN input rows. */
static void rowwise_model(struct rt_model *m, float *x, enum rt_act act)
{
    struct rt_model_spec s = make_spec(4, rw_sizes, act, RT_LOSS_CE, RT_INIT_TORCH);
    ck_assert_int_eq(rt_model_init(m, &s, RWN), RT_OK);
    rt_model_init_params(m, 8);
    float *w;
    rt_model_layer_view(m, 1, &w, NULL, NULL, NULL);
    for (int j = 0; j < rw_sizes[1] * rw_sizes[2]; j++)
        if (j % 10 != 3) w[j] = 0.0f;
    struct rt_rng rng;
    rt_rng_seed(&rng, 12);
    fill_uniform_f(x, RWN * rw_sizes[0], -2, 2, &rng);
}

/* Logits (RWN, K) of all rows, forwarded in batches of `batch` rows. */
static void forward_in_batches(float *out, struct rt_model *m, const float *x, int batch)
{
    int IN = rw_sizes[0], K = rw_sizes[3];
    for (int r0 = 0; r0 < RWN; r0 += batch) {
        int B = RWN - r0 < batch ? RWN - r0 : batch;
        memcpy(out + r0 * K, rt_model_forward(m, x + r0 * IN, B), (size_t)B * K * sizeof *out);
    }
}

START_TEST(model_use_rowwise_matches_gemm)
{
    enum { IN = 30, K = 10 };
    struct rt_model m;
    float x[RWN * IN], gemm[RWN * K], rw[RWN * K], again[RWN * K];
    rowwise_model(&m, x, all_acts[_i]);
    forward_in_batches(gemm, &m, x, RWN);
    ck_assert_int_eq(rt_model_use_rowwise(&m, 1), RT_OK);
    ck_assert_ptr_nonnull(m.rowwise_wt);
    ck_assert_ptr_nonnull(m.csr);
    ck_assert_ptr_null(m.csr[0].indptr); /* dense layers: row-wise kernel */
    ck_assert_ptr_nonnull(m.csr[1].indptr);
    ck_assert_ptr_null(m.csr[2].indptr);
    forward_in_batches(rw, &m, x, RWN);
    check_close(rw, gemm, RWN * K, 1e-5, 1e-5, rt_act_name(all_acts[_i]));
    ck_assert_int_eq(rt_model_use_rowwise(&m, 0), RT_OK);
    ck_assert_ptr_null(m.rowwise_wt);
    ck_assert_ptr_null(m.csr);
    forward_in_batches(again, &m, x, RWN);
    ck_assert_int_eq(memcmp(again, gemm, sizeof gemm), 0); /* exactly GEMM again */
    rt_model_free(&m);
}
END_TEST

/* Rows forwarded alone, then in batches of 3, 17 and 64 in a shuffled order: the same
 * logits, byte for byte. */
START_TEST(model_use_rowwise_row_independent)
{
    enum { IN = 30, K = 10 };
    const int batch[3] = {3, 17, RWN};
    struct rt_model m;
    float x[RWN * IN], xs[RWN * IN], alone[RWN * K], got[RWN * K];
    rowwise_model(&m, x, all_acts[_i]);
    ck_assert_int_eq(rt_model_use_rowwise(&m, 1), RT_OK);
    forward_in_batches(alone, &m, x, 1);
    struct rt_rng rng;
    rt_rng_seed(&rng, 6);
    int perm[RWN];
    for (int i = 0; i < RWN; i++)
        perm[i] = i;
    for (int t = 0; t < 3; t++) {
        for (int i = RWN - 1; i > 0; i--) {
            int j = (int)rt_rng_below(&rng, (uint64_t)i + 1), keep = perm[i];
            perm[i] = perm[j];
            perm[j] = keep;
        }
        for (int i = 0; i < RWN; i++)
            memcpy(xs + i * IN, x + perm[i] * IN, sizeof(float) * IN);
        forward_in_batches(got, &m, xs, batch[t]);
        for (int i = 0; i < RWN; i++)
            ck_assert_msg(memcmp(got + i * K, alone + perm[i] * K, sizeof(float) * K) == 0,
                          "%s: row %d differs in batches of %d", rt_act_name(all_acts[_i]), perm[i],
                          batch[t]);
    }
    rt_model_free(&m); /* frees the row-wise copies too */
}
END_TEST

/* Each mode replaces the other cleanly, and each gives its own results again. */
START_TEST(model_use_rowwise_and_csr_switch)
{
    enum { IN = 30, K = 10 };
    struct rt_model m;
    float x[RWN * IN], gemm[RWN * K], csr[RWN * K], rw[RWN * K], got[RWN * K];
    rowwise_model(&m, x, RT_ACT_RELU);
    forward_in_batches(gemm, &m, x, RWN);
    ck_assert_int_eq(rt_model_use_csr(&m, 1), RT_OK);
    forward_in_batches(csr, &m, x, RWN);
    ck_assert_int_eq(rt_model_use_rowwise(&m, 1), RT_OK); /* CSR on -> row-wise */
    ck_assert_ptr_nonnull(m.rowwise_wt);
    ck_assert_ptr_null(m.csr[0].indptr);
    forward_in_batches(rw, &m, x, RWN);
    ck_assert_int_eq(rt_model_use_csr(&m, 1), RT_OK); /* row-wise on -> CSR */
    ck_assert_ptr_null(m.rowwise_wt);
    for (int i = 0; i < 3; i++)
        ck_assert_ptr_nonnull(m.csr[i].indptr);
    forward_in_batches(got, &m, x, RWN);
    ck_assert_int_eq(memcmp(got, csr, sizeof got), 0);
    ck_assert_int_eq(rt_model_use_rowwise(&m, 1), RT_OK);
    ck_assert_int_eq(rt_model_use_rowwise(&m, 1), RT_OK); /* twice: a fresh snapshot */
    forward_in_batches(got, &m, x, RWN);
    ck_assert_int_eq(memcmp(got, rw, sizeof got), 0);
    ck_assert_int_eq(rt_model_use_csr(&m, 0), RT_OK); /* row-wise on -> GEMM */
    ck_assert_ptr_null(m.rowwise_wt);
    ck_assert_ptr_null(m.csr);
    forward_in_batches(got, &m, x, RWN);
    ck_assert_int_eq(memcmp(got, gemm, sizeof got), 0);
    rt_model_free(&m);
}
END_TEST

/* 70% zeros is sparse enough, 60% is not; with every layer sparse, the mode still shows
 * (rowwise_wt non-NULL) and forward still matches GEMM. */
START_TEST(model_use_rowwise_threshold)
{
    int sizes[3] = {5, 2, 4};
    struct rt_model_spec s = make_spec(3, sizes, RT_ACT_TANH, RT_LOSS_MSE, RT_INIT_TORCH);
    float x[2 * 5] = {1, -2, 0.5f, 3, -1, 0, 1, 2, -0.5f, 0.25f}, gemm[2 * 4];
    for (int zeros = 8; zeros <= 9; zeros++) {
        struct rt_model m;
        ck_assert_int_eq(rt_model_init(&m, &s, 2), RT_OK);
        rt_model_init_params(&m, 4);
        float *w0, *w1;
        rt_model_layer_view(&m, 0, &w0, NULL, NULL, NULL);
        rt_model_layer_view(&m, 1, &w1, NULL, NULL, NULL);
        for (int j = 0; j < zeros; j++) /* layer 0: 10 weights */
            w0[j] = 0.0f;
        memcpy(gemm, rt_model_forward(&m, x, 2), sizeof gemm);
        ck_assert_int_eq(rt_model_use_rowwise(&m, 1), RT_OK);
        if (zeros == 8)
            ck_assert_ptr_null(m.csr); /* no layer sparse enough */
        else
            ck_assert(m.csr && m.csr[0].indptr && !m.csr[1].indptr);
        check_close(rt_model_forward(&m, x, 2), gemm, 8, 1e-6, 1e-6, "threshold");
        for (int j = 0; j < 8; j++) /* layer 1: 8 weights, all zero */
            w1[j] = 0.0f;
        memcpy(gemm, rt_model_forward(&m, x, 2), sizeof gemm); /* the old snapshot */
        ck_assert_int_eq(rt_model_use_rowwise(&m, 0), RT_OK);
        float fresh[2 * 4];
        memcpy(fresh, rt_model_forward(&m, x, 2), sizeof fresh);
        ck_assert(memcmp(fresh, gemm, sizeof fresh) != 0); /* row-wise had a snapshot */
        ck_assert_int_eq(rt_model_use_rowwise(&m, 1), RT_OK);
        if (zeros == 9) ck_assert(m.csr[0].indptr && m.csr[1].indptr); /* every layer CSR */
        ck_assert_ptr_nonnull(m.rowwise_wt);
        check_close(rt_model_forward(&m, x, 2), fresh, 8, 1e-6, 1e-6, "after new snapshot");
        rt_model_free(&m);
    }
}
END_TEST

/* ---- FLOPs, names, threads ---- */

START_TEST(model_flops_values)
{
    int big[3] = {1000, 2000, 1000}, one[2] = {10, 3};
    struct rt_model m;
    struct rt_model_spec s = make_spec(3, big, RT_ACT_RELU, RT_LOSS_MSE, RT_INIT_TORCH);
    ck_assert_int_eq(rt_model_init(&m, &s, 1), RT_OK);
    ck_assert_double_eq(rt_model_forward_flops_per_sample(&m), 8e6);
    ck_assert_double_eq(rt_model_train_flops_per_sample(&m), 4e6 * 2 + 4e6 * 3);
    rt_model_free(&m);
    s = make_spec(2, one, RT_ACT_RELU, RT_LOSS_CE, RT_INIT_TORCH);
    ck_assert_int_eq(rt_model_init(&m, &s, 1), RT_OK);
    ck_assert_double_eq(rt_model_forward_flops_per_sample(&m), 60.0);
    ck_assert_double_eq(rt_model_train_flops_per_sample(&m), 120.0); /* no dX for layer 0 */
    rt_model_free(&m);
}
END_TEST

START_TEST(names_parse_and_roundtrip)
{
    enum rt_act a = RT_ACT_TANH;
    enum rt_loss l = RT_LOSS_MSE;
    enum rt_init i = RT_INIT_HE;
    const char *acts[][2] = {{"identity", "identity"}, {"linear", "identity"}, {"RELU", "relu"},
                             {"tanh", "tanh"},         {"sigmoid", "sigmoid"}, {"GeLU", "gelu"}};
    for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
        ck_assert_int_eq(rt_act_parse(acts[k][0], &a), 0);
        ck_assert_str_eq(rt_act_name(a), acts[k][1]);
    }
    const char *losses[][2] = {
        {"ce", "ce"}, {"cross_entropy", "ce"}, {"softmax_ce", "ce"}, {"MSE", "mse"}};
    for (size_t k = 0; k < sizeof losses / sizeof losses[0]; k++) {
        ck_assert_int_eq(rt_loss_parse(losses[k][0], &l), 0);
        ck_assert_str_eq(rt_loss_name(l), losses[k][1]);
    }
    const char *inits[][2] = {
        {"torch", "torch"}, {"default", "torch"}, {"xavier", "xavier"}, {"he", "he"}};
    for (size_t k = 0; k < sizeof inits / sizeof inits[0]; k++) {
        ck_assert_int_eq(rt_init_parse(inits[k][0], &i), 0);
        ck_assert_str_eq(rt_init_name(i), inits[k][1]);
    }
    /* unknown names fail and leave the output alone */
    a = RT_ACT_SIGMOID;
    ck_assert_int_eq(rt_act_parse("softmax", &a), -1);
    ck_assert_int_eq(rt_act_parse("", &a), -1);
    ck_assert_int_eq(rt_act_parse("relu6", &a), -1);
    ck_assert_int_eq(a, RT_ACT_SIGMOID);
    ck_assert_int_eq(rt_loss_parse("nll", &l), -1);
    ck_assert_int_eq(rt_init_parse("orthogonal", &i), -1);
    /* every value's name parses back to it */
    for (int v = 0; v < N_ACTS; v++) {
        ck_assert_int_eq(rt_act_parse(rt_act_name((enum rt_act)v), &a), 0);
        ck_assert_int_eq(a, v);
    }
    for (int v = 0; v <= RT_LOSS_MSE; v++) {
        ck_assert_int_eq(rt_loss_parse(rt_loss_name((enum rt_loss)v), &l), 0);
        ck_assert_int_eq(l, v);
    }
    for (int v = 0; v <= RT_INIT_HE; v++) {
        ck_assert_int_eq(rt_init_parse(rt_init_name((enum rt_init)v), &i), 0);
        ck_assert_int_eq(i, v);
    }
}
END_TEST

/* One thread must compute the same logits (the small GEMMs here are single-threaded in
 * OpenBLAS anyway; this guards against the call breaking the library state). */
START_TEST(nn_set_threads_keeps_results)
{
    struct model_case c;
    model_case_init(&c, RT_ACT_GELU, RT_LOSS_CE);
    float before[MB * 4];
    memcpy(before, rt_model_forward(&c.m, c.x, MB), sizeof before);
    rt_nn_set_threads(1);
    rt_nn_set_threads(0); /* leaves the setting */
    check_close(rt_model_forward(&c.m, c.x, MB), before, MB * 4, 0, 0, "logits");
    rt_model_free(&c.m);
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("rt_model_init");
    tcase_add_test(tc, model_init_rejects_bad_specs);
    tcase_add_test(tc, model_init_layout);
    tcase_add_test(tc, model_init_max_layers);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_init_params");
    tcase_add_loop_test(tc, model_init_params_stats, 0, RT_INIT_HE + 1);
    tcase_add_loop_test(tc, model_init_params_reproducible, 0, RT_INIT_HE + 1);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_forward");
    tcase_add_loop_test(tc, model_forward_reference, 0, N_ACTS);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_backward");
    tcase_add_loop_test(tc, model_backward_random_direction, 0, 2 * N_ACTS);
    tcase_add_loop_test(tc, model_backward_b0_zero, 0, N_ACTS);
    tcase_add_test(tc, model_backward_ready_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_loss");
    tcase_add_test(tc, model_loss_ce_values);
    tcase_add_test(tc, model_loss_mse_values);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_loss_kd");
    tcase_add_test(tc, model_loss_kd_dispatch);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_use_rowwise");
    tcase_add_loop_test(tc, model_use_rowwise_matches_gemm, 0, N_ACTS);
    tcase_add_loop_test(tc, model_use_rowwise_row_independent, 0, N_ACTS);
    tcase_add_test(tc, model_use_rowwise_and_csr_switch);
    tcase_add_test(tc, model_use_rowwise_threshold);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_count_correct");
    tcase_add_test(tc, model_count_correct_ties);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_flops");
    tcase_add_test(tc, model_flops_values);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_act_parse");
    tcase_add_test(tc, names_parse_and_roundtrip);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_nn_set_threads");
    tcase_add_test(tc, nn_set_threads_keeps_results);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(model_suite());
}
