/* test_dense.c - the dense layer kernels (rt_dense_*) against naive double references.
 *
 * Gradient checks take central differences of an independent double-precision forward
 * (ref.h) of the scalar f = sum(G . act(X W^T + b)) for a fixed random G, so that dY = G,
 * and compare them with the float analytic gradients. Each check prints its largest
 * relative error as `gradcheck <name> max_rel_err=<e>`.
 *
 * Dimension letters: B rows, IN input width, OUT output width. */
#include "check_util.h"
#include "ref.h"

#include "ringtrain/dense.h"

#include <math.h>
#include <string.h>

#define B_     4
#define IN_    5
#define OUT_   3
#define N_ACTS 5

static const enum rt_act all_acts[N_ACTS] = {RT_ACT_IDENTITY, RT_ACT_RELU, RT_ACT_TANH,
                                             RT_ACT_SIGMOID, RT_ACT_GELU};
static const char *act_label[N_ACTS] = {"identity", "relu", "tanh", "sigmoid", "gelu"};

/* Per activation: the float analytic gradients must match the double central differences
 * to this relative error (floor 1e-2: the gradients here are O(1)). float rounding gives
 * ~1e-6; a wrong derivative gives > 1e-2. */
static const double dense_tol[N_ACTS] = {1e-4, 1e-4, 1e-4, 1e-4, 1e-4};

struct dense_case {
    float x[B_ * IN_], w[OUT_ * IN_], b[OUT_], g[B_ * OUT_];
    double xd[B_ * IN_], wd[OUT_ * IN_], bd[OUT_];
};

static double objective(const struct dense_case *c, enum rt_act a)
{
    double y[B_ * OUT_];
    ref_dense(y, c->xd, c->wd, c->bd, a, B_, IN_, OUT_, NULL);
    double f = 0.0;
    for (int i = 0; i < B_ * OUT_; i++)
        f += c->g[i] * y[i];
    return f;
}

/* d objective / d v[i] by central differences, v being one of c's double arrays. */
static double numeric_grad(struct dense_case *c, double *v, int i, enum rt_act a)
{
    double keep = v[i];
    v[i] = keep + GRADCHECK_EPS;
    double fp = objective(c, a);
    v[i] = keep - GRADCHECK_EPS;
    double fm = objective(c, a);
    v[i] = keep;
    return (fp - fm) / (2.0 * GRADCHECK_EPS);
}

static double max_err(struct dense_case *c, double *v, const float *analytic, int n, enum rt_act a)
{
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        double e = rel_err(analytic[i], numeric_grad(c, v, i, a), 1e-2);
        worst = e > worst || isnan(e) ? e : worst;
    }
    return worst;
}

/* Random case whose pre-activations stay >= 1e-2 away from 0, so that eps-perturbations
 * never cross relu's kink. */
static void draw_case(struct dense_case *c, enum rt_act a, uint64_t seed)
{
    struct rt_rng rng;
    rt_rng_seed(&rng, seed);
    for (int attempt = 0; attempt < 1000; attempt++) {
        fill_uniform_f(c->x, B_ * IN_, -1, 1, &rng);
        fill_uniform_f(c->w, OUT_ * IN_, -1, 1, &rng);
        fill_uniform_f(c->b, OUT_, -0.5, 0.5, &rng);
        fill_uniform_f(c->g, B_ * OUT_, -1, 1, &rng);
        to_double(c->xd, c->x, B_ * IN_);
        to_double(c->wd, c->w, OUT_ * IN_);
        to_double(c->bd, c->b, OUT_);
        double y[B_ * OUT_], zmin = INFINITY;
        ref_dense(y, c->xd, c->wd, c->bd, a, B_, IN_, OUT_, &zmin);
        if (zmin > 1e-2) return;
    }
    ck_abort_msg("no case away from the kink");
}

static double gradcheck_dense(enum rt_act a, const char *label)
{
    struct dense_case c;
    draw_case(&c, a, 1234 + (uint64_t)a);
    float y[B_ * OUT_], z[B_ * OUT_], dy[B_ * OUT_];
    float dx[B_ * IN_], dw[OUT_ * IN_], db[OUT_];
    rt_dense_forward(y, z, c.x, c.w, c.b, a, B_, IN_, OUT_);
    memcpy(dy, c.g, sizeof dy);
    rt_dense_backward(dx, dw, db, dy, c.x, c.w, y, z, a, B_, IN_, OUT_);
    double ew = max_err(&c, c.wd, dw, OUT_ * IN_, a);
    double eb = max_err(&c, c.bd, db, OUT_, a);
    double ex = max_err(&c, c.xd, dx, B_ * IN_, a);
    double worst = fmax(ew, fmax(eb, ex));
    printf("gradcheck dense-%s max_rel_err=%.2g (dW %.2g, db %.2g, dX %.2g)\n", label, worst, ew,
           eb, ex);
    fflush(stdout);
    return worst;
}

START_TEST(dense_backward_gradcheck)
{
    double worst = gradcheck_dense(all_acts[_i], act_label[_i]);
    ck_assert_msg(worst < dense_tol[_i], "dense-%s: max rel err %.3g >= %.1g", act_label[_i], worst,
                  dense_tol[_i]);
}
END_TEST

/* The activation alone, on a grid of z in [-6, 6]: a 1x1 layer with W = 1, b = 0 makes
 * dX = act'(z) dY exactly. The grid avoids 0 by an offset (relu's kink). floor 1e-2 since
 * act' computed from a float output near saturation (tanh: 1 - y^2) has absolute error
 * ~1e-7, as in torch. */
START_TEST(dense_backward_act_gradcheck)
{
    enum rt_act a = all_acts[_i];
    enum { N = 241 };
    float x[N], y[N], z[N], dy[N], dx[N], dw[1], db[1], w[1] = {1.0f}, b[1] = {0.0f};
    for (int i = 0; i < N; i++) {
        x[i] = (float)(-6.0 + 0.05 * i + 0.0123);
        dy[i] = 1.0f;
    }
    rt_dense_forward(y, z, x, w, b, a, N, 1, 1);
    rt_dense_backward(dx, dw, db, dy, x, w, y, z, a, N, 1, 1);
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        double zd = x[i];
        double num = (ref_act(a, zd + GRADCHECK_EPS) - ref_act(a, zd - GRADCHECK_EPS)) /
                     (2.0 * GRADCHECK_EPS);
        double e = rel_err(dx[i], num, 1e-2);
        worst = e > worst || isnan(e) ? e : worst;
    }
    printf("gradcheck act-%s max_rel_err=%.2g\n", act_label[_i], worst);
    fflush(stdout);
    ck_assert_msg(worst < 1e-4, "act-%s: max rel err %.3g", act_label[_i], worst);
}
END_TEST

START_TEST(dense_backward_b0_zero)
{
    float dw[OUT_ * IN_], db[OUT_], dx[IN_];
    for (int i = 0; i < OUT_ * IN_; i++)
        dw[i] = 7.0f;
    for (int i = 0; i < OUT_; i++)
        db[i] = NAN;
    dx[0] = 3.0f;
    float w[OUT_ * IN_] = {0}, one[1] = {0};
    rt_dense_backward(dx, dw, db, one, one, w, one, one, all_acts[_i], 0, IN_, OUT_);
    for (int i = 0; i < OUT_ * IN_; i++)
        ck_assert_float_eq(dw[i], 0.0f);
    for (int i = 0; i < OUT_; i++)
        ck_assert_float_eq(db[i], 0.0f);
    ck_assert_float_eq(dx[0], 3.0f); /* zero rows: nothing written */
}
END_TEST

/* Gradients are overwritten, not accumulated, and dx == NULL skips only dX. */
START_TEST(dense_backward_overwrites)
{
    struct dense_case c;
    draw_case(&c, RT_ACT_TANH, 99);
    float y[B_ * OUT_], dy[B_ * OUT_], dx[B_ * IN_];
    float dw1[OUT_ * IN_], db1[OUT_], dw2[OUT_ * IN_], db2[OUT_];
    rt_dense_forward(y, NULL, c.x, c.w, c.b, RT_ACT_TANH, B_, IN_, OUT_);
    memcpy(dy, c.g, sizeof dy);
    rt_dense_backward(dx, dw1, db1, dy, c.x, c.w, y, NULL, RT_ACT_TANH, B_, IN_, OUT_);
    memcpy(dy, c.g, sizeof dy);
    memcpy(dw2, dw1, sizeof dw2); /* stale values a += would double */
    memcpy(db2, db1, sizeof db2);
    rt_dense_backward(NULL, dw2, db2, dy, c.x, c.w, y, NULL, RT_ACT_TANH, B_, IN_, OUT_);
    check_close(dw2, dw1, OUT_ * IN_, 0, 0, "dw");
    check_close(db2, db1, OUT_, 0, 0, "db");
}
END_TEST

/* Odd sizes, so that a stride mix-up cannot hide. */
enum { FB = 7, FIN = 33, FOUT = 17 };

static void draw_forward(float *x, float *w, float *b, double *xd, double *wd, double *bd)
{
    struct rt_rng rng;
    rt_rng_seed(&rng, 42);
    fill_uniform_f(x, FB * FIN, -2, 2, &rng);
    fill_uniform_f(w, FOUT * FIN, -0.5, 0.5, &rng);
    fill_uniform_f(b, FOUT, -1, 1, &rng);
    to_double(xd, x, FB * FIN);
    to_double(wd, w, FOUT * FIN);
    to_double(bd, b, FOUT);
}

START_TEST(dense_forward_reference)
{
    enum rt_act a = all_acts[_i];
    float x[FB * FIN], w[FOUT * FIN], b[FOUT], y[FB * FOUT], z[FB * FOUT], yr[FB * FOUT];
    float zr[FB * FOUT];
    double xd[FB * FIN], wd[FOUT * FIN], bd[FOUT], yd[FB * FOUT], zd[FB * FOUT];
    draw_forward(x, w, b, xd, wd, bd);
    ref_dense(yd, xd, wd, bd, a, FB, FIN, FOUT, NULL);
    ref_dense(zd, xd, wd, bd, RT_ACT_IDENTITY, FB, FIN, FOUT, NULL);
    for (int i = 0; i < FB * FOUT; i++) {
        yr[i] = (float)yd[i];
        zr[i] = (float)zd[i];
    }
    rt_dense_forward(y, z, x, w, b, a, FB, FIN, FOUT);
    check_close(y, yr, FB * FOUT, 1e-5, 1e-5, act_label[_i]);
    if (rt_act_needs_preact(a)) check_close(z, zr, FB * FOUT, 1e-5, 1e-5, "pre-activation");
}
END_TEST

/* The CSR kernel against the double reference on weights with every third one zero (and a
 * whole row of zeros): same outputs as the dense kernel, for every activation. */
START_TEST(dense_forward_csr_reference)
{
    enum rt_act a = all_acts[_i];
    float x[FB * FIN], w[FOUT * FIN], b[FOUT], y[FB * FOUT], z[FB * FOUT], yr[FB * FOUT];
    double xd[FB * FIN], wd[FOUT * FIN], bd[FOUT], yd[FB * FOUT];
    draw_forward(x, w, b, xd, wd, bd);
    int64_t indptr[FOUT + 1], nnz = 0;
    int32_t idx[FOUT * FIN];
    float data[FOUT * FIN];
    for (int o = 0; o < FOUT; o++) {
        indptr[o] = nnz;
        for (int i = 0; i < FIN; i++) {
            if ((o * FIN + i) % 3 == 0 || o == 5) w[o * FIN + i] = 0.0f, wd[o * FIN + i] = 0.0;
            if (w[o * FIN + i] == 0.0f) continue;
            idx[nnz] = i;
            data[nnz++] = w[o * FIN + i];
        }
    }
    indptr[FOUT] = nnz;
    struct rt_csr c = {FOUT, FIN, nnz, indptr, idx, data};
    ref_dense(yd, xd, wd, bd, a, FB, FIN, FOUT, NULL);
    for (int i = 0; i < FB * FOUT; i++)
        yr[i] = (float)yd[i];
    rt_dense_forward_csr(y, z, x, &c, b, a, FB);
    check_close(y, yr, FB * FOUT, 1e-5, 1e-5, act_label[_i]);
}
END_TEST

START_TEST(dense_forward_b0)
{
    float y[1] = {5.0f}, x[1] = {1.0f}, w[1] = {1.0f}, b[1] = {1.0f};
    rt_dense_forward(y, y, x, w, b, RT_ACT_GELU, 0, 1, 1);
    ck_assert_float_eq(y[0], 5.0f);
}
END_TEST

START_TEST(dense_linear_reference)
{
    float x[FB * FIN], w[FOUT * FIN], b[FOUT], y[FB * FOUT], yr[FB * FOUT];
    double xd[FB * FIN], wd[FOUT * FIN], bd[FOUT], yd[FB * FOUT], zero[FOUT] = {0};
    draw_forward(x, w, b, xd, wd, bd);
    ref_dense(yd, xd, wd, bd, RT_ACT_IDENTITY, FB, FIN, FOUT, NULL);
    for (int i = 0; i < FB * FOUT; i++)
        yr[i] = (float)yd[i];
    rt_dense_linear(y, x, w, b, FB, FIN, FOUT);
    check_close(y, yr, FB * FOUT, 1e-5, 1e-5, "with bias");
    ref_dense(yd, xd, wd, zero, RT_ACT_IDENTITY, FB, FIN, FOUT, NULL);
    for (int i = 0; i < FB * FOUT; i++)
        yr[i] = (float)yd[i];
    rt_dense_linear(y, x, w, NULL, FB, FIN, FOUT);
    check_close(y, yr, FB * FOUT, 1e-5, 1e-5, "no bias");
}
END_TEST

/* ---- rt_dense_forward_rowwise ---- */

/* Widths that reach every path of the kernel: OUT < 4 (scalar), OUT < 64 (one narrow panel
 * width, the last panel overlapping), several 64-wide panels plus an overlapping one; IN
 * past one slab of k (128) and not a multiple of 4. */
enum { RW_B = 19, RW_N_SHAPES = 5 };
static const int rw_shapes[RW_N_SHAPES][2] = {{5, 1}, {33, 3}, {40, 10}, {133, 150}, {300, 64}};

/* x (B, IN), w (OUT, IN), wt = w^T (IN, OUT), b (OUT); caller frees x, w, wt. */
static void draw_rowwise(float **x, float **w, float **wt, float *b, int B, int IN, int OUT,
                         uint64_t seed)
{
    struct rt_rng rng;
    rt_rng_seed(&rng, seed);
    *x = malloc((size_t)B * IN * sizeof **x);
    *w = malloc((size_t)OUT * IN * sizeof **w);
    *wt = malloc((size_t)OUT * IN * sizeof **wt);
    ck_assert(*x && *w && *wt);
    fill_uniform_f(*x, B * IN, -2, 2, &rng);
    fill_uniform_f(*w, OUT * IN, -0.5, 0.5, &rng);
    fill_uniform_f(b, OUT, -1, 1, &rng);
    for (int o = 0; o < OUT; o++)
        for (int k = 0; k < IN; k++)
            (*wt)[k * OUT + o] = (*w)[o * IN + k];
}

/* Against the sgemm forward, for every activation and shape: the same values up to the
 * rounding of a different summation order (IN <= 300 terms of O(1)). */
START_TEST(dense_forward_rowwise_matches_gemm)
{
    enum rt_act a = all_acts[_i];
    for (int s = 0; s < RW_N_SHAPES; s++) {
        int IN = rw_shapes[s][0], OUT = rw_shapes[s][1];
        float *x, *w, *wt, b[150];
        draw_rowwise(&x, &w, &wt, b, RW_B, IN, OUT, 50 + (uint64_t)s);
        size_t n = (size_t)RW_B * OUT;
        float *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
        float *yg = malloc(n * sizeof *yg), *zg = malloc(n * sizeof *zg);
        rt_dense_forward(yg, zg, x, w, b, a, RW_B, IN, OUT);
        rt_dense_forward_rowwise(y, z, x, wt, b, a, RW_B, IN, OUT);
        char label[64];
        snprintf(label, sizeof label, "%s %dx%d", act_label[_i], IN, OUT);
        check_close(y, yg, n, 2e-5, 2e-5, label);
        if (rt_act_needs_preact(a)) check_close(z, zg, n, 2e-5, 2e-5, "pre-activation");
        free(x), free(w), free(wt), free(y), free(z), free(yg), free(zg);
    }
}
END_TEST

/* The documented order, exactly: per element one float sum from 0.0f over k ascending, then
 * the bias. This file is C11 too, so the loop below is not contracted into FMAs either. */
START_TEST(dense_forward_rowwise_exact_order)
{
    for (int s = 0; s < RW_N_SHAPES; s++) {
        int IN = rw_shapes[s][0], OUT = rw_shapes[s][1];
        float *x, *w, *wt, b[150];
        draw_rowwise(&x, &w, &wt, b, RW_B, IN, OUT, 70 + (uint64_t)s);
        size_t n = (size_t)RW_B * OUT;
        float *y = malloc(n * sizeof *y), *want = malloc(n * sizeof *want);
        for (int r = 0; r < RW_B; r++)
            for (int o = 0; o < OUT; o++) {
                float acc = 0.0f;
                for (int k = 0; k < IN; k++)
                    acc += x[r * IN + k] * wt[k * OUT + o];
                want[r * OUT + o] = acc + b[o];
            }
        rt_dense_forward_rowwise(y, NULL, x, wt, b, RT_ACT_IDENTITY, RW_B, IN, OUT);
        ck_assert_msg(memcmp(y, want, n * sizeof *y) == 0, "%dx%d: not the k-ascending sum", IN,
                      OUT);
        free(x), free(w), free(wt), free(y), free(want);
    }
}
END_TEST

/* Rows computed alone, then in batches of 1, 3, 17 and 64 rows taken in a shuffled order:
 * every row's outputs (and pre-activations) are the same bytes each time. */
START_TEST(dense_forward_rowwise_row_independent)
{
    enum rt_act a = all_acts[_i];
    enum { N = 64 };
    const int batch[4] = {1, 3, 17, 64};
    for (int s = 2; s < RW_N_SHAPES; s++) {
        int IN = rw_shapes[s][0], OUT = rw_shapes[s][1];
        float *x, *w, *wt, b[150];
        draw_rowwise(&x, &w, &wt, b, N, IN, OUT, 90 + (uint64_t)s);
        size_t n = (size_t)N * OUT;
        float *alone = malloc(n * sizeof *alone), *zalone = malloc(n * sizeof *zalone);
        float *xb = malloc((size_t)N * IN * sizeof *xb);
        float *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
        for (int r = 0; r < N; r++)
            rt_dense_forward_rowwise(alone + r * OUT, zalone + r * OUT, x + r * IN, wt, b, a, 1, IN,
                                     OUT);
        struct rt_rng rng;
        rt_rng_seed(&rng, 5);
        int perm[N];
        for (int i = 0; i < N; i++)
            perm[i] = i;
        for (int t = 0; t < 4; t++) {
            for (int i = N - 1; i > 0; i--) { /* Fisher-Yates: a new order for each size */
                int j = (int)rt_rng_below(&rng, (uint64_t)i + 1), keep = perm[i];
                perm[i] = perm[j];
                perm[j] = keep;
            }
            for (int i = 0; i < N; i++)
                memcpy(xb + i * IN, x + perm[i] * IN, (size_t)IN * sizeof *xb);
            for (int r0 = 0; r0 < N; r0 += batch[t]) {
                int B = N - r0 < batch[t] ? N - r0 : batch[t];
                rt_dense_forward_rowwise(y + r0 * OUT, z + r0 * OUT, xb + r0 * IN, wt, b, a, B, IN,
                                         OUT);
            }
            for (int i = 0; i < N; i++) {
                size_t bytes = (size_t)OUT * sizeof *y;
                ck_assert_msg(memcmp(y + i * OUT, alone + perm[i] * OUT, bytes) == 0,
                              "%s %dx%d: row %d differs in batches of %d", act_label[_i], IN, OUT,
                              perm[i], batch[t]);
                if (rt_act_needs_preact(a))
                    ck_assert(memcmp(z + i * OUT, zalone + perm[i] * OUT, bytes) == 0);
            }
        }
        free(x), free(w), free(wt), free(alone), free(zalone), free(xb), free(y), free(z);
    }
}
END_TEST

START_TEST(dense_forward_rowwise_b0)
{
    float y[1] = {5.0f}, x[1] = {1.0f}, wt[1] = {1.0f}, b[1] = {1.0f};
    rt_dense_forward_rowwise(y, y, x, wt, b, RT_ACT_GELU, 0, 1, 1);
    ck_assert_float_eq(y[0], 5.0f);
    rt_dense_forward_rowwise(y, NULL, x, wt, b, RT_ACT_RELU, 0, 1, 1);
    ck_assert_float_eq(y[0], 5.0f);
}
END_TEST

START_TEST(act_needs_preact_only_gelu)
{
    ck_assert_int_eq(rt_act_needs_preact(RT_ACT_GELU), 1);
    ck_assert_int_eq(rt_act_needs_preact(RT_ACT_RELU), 0);
    ck_assert_int_eq(rt_act_needs_preact(RT_ACT_TANH), 0);
    ck_assert_int_eq(rt_act_needs_preact(RT_ACT_SIGMOID), 0);
    ck_assert_int_eq(rt_act_needs_preact(RT_ACT_IDENTITY), 0);
}
END_TEST

static Suite *dense_suite(void)
{
    Suite *s = suite_create("dense");
    TCase *tc = tcase_create("rt_dense_forward");
    tcase_add_loop_test(tc, dense_forward_reference, 0, N_ACTS);
    tcase_add_test(tc, dense_forward_b0);
    tcase_add_loop_test(tc, dense_forward_csr_reference, 0, N_ACTS);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_dense_forward_rowwise");
    tcase_add_loop_test(tc, dense_forward_rowwise_matches_gemm, 0, N_ACTS);
    tcase_add_test(tc, dense_forward_rowwise_exact_order);
    tcase_add_loop_test(tc, dense_forward_rowwise_row_independent, 0, N_ACTS);
    tcase_add_test(tc, dense_forward_rowwise_b0);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_dense_backward");
    tcase_add_loop_test(tc, dense_backward_gradcheck, 0, N_ACTS);
    tcase_add_loop_test(tc, dense_backward_act_gradcheck, 0, N_ACTS);
    tcase_add_loop_test(tc, dense_backward_b0_zero, 0, N_ACTS);
    tcase_add_test(tc, dense_backward_overwrites);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_dense_linear");
    tcase_add_test(tc, dense_linear_reference);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_act_needs_preact");
    tcase_add_test(tc, act_needs_preact_only_gelu);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(dense_suite());
}
