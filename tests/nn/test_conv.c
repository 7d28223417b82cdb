/* test_conv.c - the conv2d and pooling kernels (conv.h) against direct double references.
 *
 * The references below are the definitions, loop by loop (cross-correlation with zero
 * padding; max and mean over each window), in double. Gradient checks take central
 * differences of these references of f = sum(G . y) for a fixed random G, so that dy = G,
 * and compare them with the float gradients; each prints `gradcheck <name> max_rel_err=<e>`.
 * Every conv test runs all plans (rt_conv_plan_), the public kernels among them.
 *
 * Dimension letters: B samples, C input channels, H W input size, OC output channels,
 * KH KW kernel, SH SW stride, PH PW padding, OH OW output size. */
#include "check_util.h"
#include "ref.h"

#include "ringtrain/conv.h"

#include <math.h>
#include <string.h>

struct conv_shape {
    int B, C, H, W, OC, KH, KW, SH, SW, PH, PW;
};

/* Odd shapes: non-square inputs, strides 1 and 2, padding 0..3, 1x1 (with and without the
 * no-im2col shortcut), 3x3, 3x2, 5x5 kernels, a kernel as large as the padded input, and
 * taps that only ever read padding. */
static const struct conv_shape shapes[] = {
    {3, 3, 7, 5, 5, 3, 3, 1, 1, 1, 1}, /* same-size output */
    {3, 3, 7, 5, 5, 3, 3, 2, 2, 1, 1}, /* stride 2 + padding */
    {1, 2, 7, 5, 4, 5, 5, 1, 1, 2, 2}, /* 5x5, padding 2, batch 1 */
    {3, 3, 7, 5, 5, 1, 1, 1, 1, 0, 0}, /* pointwise: x is the column matrix */
    {2, 3, 7, 5, 5, 1, 1, 2, 2, 0, 0}, /* 1x1 with stride: im2col after all */
    {3, 3, 6, 7, 5, 3, 2, 2, 1, 2, 1}, /* 3x2 kernel, mixed stride and padding */
    {3, 1, 9, 8, 4, 5, 5, 2, 2, 2, 2}, /* one input channel, 5x5 stride 2 */
    {2, 2, 3, 2, 3, 5, 4, 1, 1, 1, 1}, /* kernel = padded input: 1x1 output */
    {2, 2, 4, 4, 3, 3, 3, 2, 3, 3, 3}, /* padding 3: whole rows of padding */
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static const char *plan_name[RT_CONV_PLAN_COUNT_] = {"sample", "sample-keep", "batch",
                                                     "batch-keep"};

/* One shape's operands, in float for the kernels and double for the reference. */
struct conv_case {
    struct rt_conv2d_geom g;
    int B;
    size_t nx, nw, ny;
    float *x, *w, *b, *gy;    /* x (B, C, H, W), w (OC, C, KH, KW), b (OC), G (B, OC, OH, OW) */
    double *xd, *wd, *bd, *f; /* the same in double; f (B, OC, OH, OW) reference output */
};

static void *alloc_or_fail(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert(p);
    return p;
}

static void case_init(struct conv_case *c, const struct conv_shape *s, uint64_t seed)
{
    ck_assert_int_eq(rt_conv2d_geom_init(&c->g, s->C, s->H, s->W, s->OC, s->KH, s->KW, s->SH, s->SW,
                                         s->PH, s->PW),
                     0);
    c->B = s->B;
    c->nx = (size_t)s->B * s->C * s->H * s->W;
    c->nw = (size_t)s->OC * s->C * s->KH * s->KW;
    c->ny = (size_t)s->B * s->OC * c->g.OH * c->g.OW;
    c->x = alloc_or_fail(c->nx, sizeof *c->x);
    c->w = alloc_or_fail(c->nw, sizeof *c->w);
    c->b = alloc_or_fail((size_t)s->OC, sizeof *c->b);
    c->gy = alloc_or_fail(c->ny, sizeof *c->gy);
    c->xd = alloc_or_fail(c->nx, sizeof *c->xd);
    c->wd = alloc_or_fail(c->nw, sizeof *c->wd);
    c->bd = alloc_or_fail((size_t)s->OC, sizeof *c->bd);
    c->f = alloc_or_fail(c->ny, sizeof *c->f);
    struct rt_rng rng;
    rt_rng_seed(&rng, seed);
    fill_uniform_f(c->x, (int)c->nx, -1, 1, &rng);
    fill_uniform_f(c->w, (int)c->nw, -0.5, 0.5, &rng);
    fill_uniform_f(c->b, s->OC, -0.5, 0.5, &rng);
    fill_uniform_f(c->gy, (int)c->ny, -1, 1, &rng);
    to_double(c->xd, c->x, (int)c->nx);
    to_double(c->wd, c->w, (int)c->nw);
    to_double(c->bd, c->b, s->OC);
}

static void case_free(struct conv_case *c)
{
    free(c->x), free(c->w), free(c->b), free(c->gy);
    free(c->xd), free(c->wd), free(c->bd), free(c->f);
}

/* y (B, OC, OH, OW) by the definition of torch.nn.functional.conv2d, in double. */
static void ref_conv(double *y, const double *x, const double *w, const double *b,
                     const struct rt_conv2d_geom *g, int B)
{
    const struct rt_conv2d_geom q = *g;
    for (int s = 0; s < B; s++)
        for (int o = 0; o < q.OC; o++)
            for (int oh = 0; oh < q.OH; oh++)
                for (int ow = 0; ow < q.OW; ow++) {
                    double acc = b[o];
                    for (int c = 0; c < q.C; c++)
                        for (int kh = 0; kh < q.KH; kh++)
                            for (int kw = 0; kw < q.KW; kw++) {
                                int ih = oh * q.SH - q.PH + kh, iw = ow * q.SW - q.PW + kw;
                                if (ih < 0 || ih >= q.H || iw < 0 || iw >= q.W) continue;
                                acc += w[((o * q.C + c) * q.KH + kh) * q.KW + kw] *
                                       x[((s * q.C + c) * q.H + ih) * q.W + iw];
                            }
                    y[((s * q.OC + o) * q.OH + oh) * q.OW + ow] = acc;
                }
}

static void to_float(float *f, const double *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        f[i] = (float)d[i];
}

/* Scratch of exactly the size asked for, then a canary tail that must survive. */
enum { CANARY = 64 };

static float *scratch_alloc(size_t n)
{
    float *s = alloc_or_fail(n + CANARY, sizeof *s);
    for (size_t i = 0; i < n + CANARY; i++)
        s[i] = 12345.0f;
    return s;
}

static void scratch_check(const float *s, size_t n)
{
    for (size_t i = n; i < n + CANARY; i++)
        ck_assert_msg(s[i] == 12345.0f, "scratch overrun at +%zu", i - n);
}

static void nan_fill(float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = NAN;
}

static void shape_label(char *buf, size_t n, const struct conv_case *c, const char *what)
{
    const struct rt_conv2d_geom *g = &c->g;
    snprintf(buf, n, "%s B%d C%d %dx%d OC%d k%dx%d s%dx%d p%dx%d", what, c->B, g->C, g->H, g->W,
             g->OC, g->KH, g->KW, g->SH, g->SW, g->PH, g->PW);
}

/* ---- rt_conv2d_geom_init ---- */

START_TEST(conv2d_geom_init_sizes)
{
    struct rt_conv2d_geom g;
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 3, 7, 5, 4, 3, 2, 2, 1, 1, 0), 0);
    ck_assert_int_eq(g.OH, (7 + 2 - 3) / 2 + 1);
    ck_assert_int_eq(g.OW, (5 - 2) / 1 + 1);
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 2, 1, 5, 4, 1, 1, 1, 1), 0); /* just fits */
    ck_assert_int_eq(g.OH, 1);
    ck_assert_int_eq(g.OW, 1);
}
END_TEST

START_TEST(conv2d_geom_init_refusals)
{
    struct rt_conv2d_geom g = {.OH = 99};
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 3, 1, 4, 3, 1, 1, 0, 0), -1); /* KH > H */
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 3, 1, 6, 3, 1, 1, 1, 1), -1); /* > H + 2 */
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 3, 1, 3, 6, 1, 1, 1, 1), -1); /* > W + 2 */
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 0, 3, 3, 1, 3, 3, 1, 1, 0, 0), -1);
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 0, 3, 1, 1, 1, 1, 1, 0, 0), -1);
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 3, 0, 3, 3, 1, 1, 0, 0), -1);
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 3, 1, 0, 3, 1, 1, 0, 0), -1);
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 3, 1, 3, 3, 0, 1, 0, 0), -1);
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 3, 1, 3, 3, 1, 0, 0, 0), -1);
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 3, 1, 3, 3, 1, 1, -1, 0), -1);
    ck_assert_int_eq(rt_conv2d_geom_init(&g, 1, 3, 3, 1, 3, 3, 1, 1, 0, -1), -1);
    ck_assert_int_eq(g.OH, 99); /* untouched */
}
END_TEST

/* The documented formulas, and 0 for the pointwise shortcut. */
START_TEST(conv2d_scratch_floats_formula)
{
    struct rt_conv2d_geom g;
    size_t K = 288, P = 196, OC = 64;
    rt_conv2d_geom_init(&g, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1);
    ck_assert_uint_eq(rt_conv2d_scratch_floats(&g, 128), K * P);
    ck_assert_uint_eq(rt_conv2d_scratch_floats(&g, 0), K * P);
    ck_assert_uint_eq(rt_conv2d_plan_scratch_floats_(&g, 128, RT_CONV_PLAN_SAMPLE_), K * P);
    ck_assert_uint_eq(rt_conv2d_plan_scratch_floats_(&g, 128, RT_CONV_PLAN_SAMPLE_KEEP_),
                      K * P * 128);
    ck_assert_uint_eq(rt_conv2d_plan_scratch_floats_(&g, 128, RT_CONV_PLAN_BATCH_),
                      (K + OC) * P * 128);
    ck_assert_uint_eq(rt_conv2d_plan_scratch_floats_(&g, 128, RT_CONV_PLAN_BATCH_KEEP_),
                      (K + OC) * P * 128);
    rt_conv2d_geom_init(&g, 32, 14, 14, 64, 1, 1, 1, 1, 0, 0);
    ck_assert_uint_eq(rt_conv2d_scratch_floats(&g, 128), 0);
    ck_assert_uint_eq(rt_conv2d_plan_scratch_floats_(&g, 128, RT_CONV_PLAN_BATCH_), 0);
}
END_TEST

/* ---- forward ---- */

/* Every plan and the public forward (plan -1) against the reference. */
START_TEST(conv2d_forward_reference)
{
    struct conv_case c;
    case_init(&c, &shapes[_i], 100 + (uint64_t)_i);
    ref_conv(c.f, c.xd, c.wd, c.bd, &c.g, c.B);
    float *want = alloc_or_fail(c.ny, sizeof *want), *y = alloc_or_fail(c.ny, sizeof *y);
    to_float(want, c.f, c.ny);
    for (int plan = -1; plan < RT_CONV_PLAN_COUNT_; plan++) {
        size_t n = plan < 0 ? rt_conv2d_scratch_floats(&c.g, c.B)
                            : rt_conv2d_plan_scratch_floats_(&c.g, c.B, plan);
        float *scr = scratch_alloc(n);
        nan_fill(y, c.ny);
        if (plan < 0)
            rt_conv2d_forward(y, scr, c.x, c.w, c.b, &c.g, c.B);
        else
            rt_conv2d_plan_forward_(y, scr, c.x, c.w, c.b, &c.g, c.B, plan);
        char label[128];
        shape_label(label, sizeof label, &c, plan < 0 ? "forward" : plan_name[plan]);
        check_close(y, want, c.ny, 1e-5, 1e-5, label);
        scratch_check(scr, n);
        free(scr);
    }
    free(want), free(y);
    case_free(&c);
}
END_TEST

START_TEST(conv2d_forward_b0)
{
    struct conv_case c;
    case_init(&c, &shapes[1], 7);
    float y[1] = {5.0f};
    rt_conv2d_forward(y, NULL, c.x, c.w, c.b, &c.g, 0);
    rt_conv2d_forward_csr(y, NULL, c.x, NULL, c.b, &c.g, 0);
    ck_assert_float_eq(y[0], 5.0f);
    case_free(&c);
}
END_TEST

/* ---- rt_conv2d_forward and CSR: a sample's bits do not depend on its batch ---- */

/* Samples computed alone, then in batches of 1, 2, 5 and N taken in shuffled orders (so each
 * sample sits at several positions): the same bytes every time. */
static void check_row_independent(int csr_too, int threads)
{
    enum { N = 9 };
    const int batch[4] = {1, 2, 5, N};
    const struct conv_shape s = {N, 8, 14, 13, 16, 3, 3, 1, 1, 1, 1};
    struct conv_case c;
    case_init(&c, &s, 555);
    for (size_t i = 0; i < c.nw; i += 3)
        c.w[i] = 0.0f; /* some zeros, for CSR */
    struct rt_csr w;
    int64_t indptr[17];
    int32_t *idx = alloc_or_fail(c.nw, sizeof *idx);
    float *data = alloc_or_fail(c.nw, sizeof *data);
    int K = s.C * s.KH * s.KW;
    w = (struct rt_csr){s.OC, K, 0, indptr, idx, data};
    for (int o = 0; o < s.OC; o++) {
        indptr[o] = w.nnz;
        for (int k = 0; k < K; k++)
            if (c.w[o * K + k] != 0.0f) idx[w.nnz] = k, data[w.nnz++] = c.w[o * K + k];
    }
    indptr[s.OC] = w.nnz;
    rt_nn_set_threads(threads);
    size_t per_x = c.nx / N, per_y = c.ny / N;
    float *alone = alloc_or_fail(c.ny, sizeof *alone), *y = alloc_or_fail(c.ny, sizeof *y);
    float *xb = alloc_or_fail(c.nx, sizeof *xb);
    float *scr = scratch_alloc(rt_conv2d_scratch_floats(&c.g, N));
    for (int i = 0; i < N; i++) {
        if (csr_too)
            rt_conv2d_forward_csr(alone + i * per_y, scr, c.x + i * per_x, &w, c.b, &c.g, 1);
        else
            rt_conv2d_forward(alone + i * per_y, scr, c.x + i * per_x, c.w, c.b, &c.g, 1);
    }
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
            memcpy(xb + i * per_x, c.x + perm[i] * per_x, per_x * sizeof *xb);
        for (int r0 = 0; r0 < N; r0 += batch[t]) {
            int B = N - r0 < batch[t] ? N - r0 : batch[t];
            if (csr_too)
                rt_conv2d_forward_csr(y + r0 * per_y, scr, xb + r0 * per_x, &w, c.b, &c.g, B);
            else
                rt_conv2d_forward(y + r0 * per_y, scr, xb + r0 * per_x, c.w, c.b, &c.g, B);
        }
        for (int i = 0; i < N; i++)
            ck_assert_msg(memcmp(y + i * per_y, alone + perm[i] * per_y, per_y * sizeof *y) == 0,
                          "%s, %d threads: sample %d differs in batches of %d",
                          csr_too ? "csr" : "forward", threads, perm[i], batch[t]);
    }
    free(alone), free(y), free(xb), free(scr), free(idx), free(data);
    case_free(&c);
}

START_TEST(conv2d_forward_row_independent)
{
    check_row_independent(0, 1 + _i);
}
END_TEST

START_TEST(conv2d_forward_csr_row_independent)
{
    check_row_independent(1, 1);
}
END_TEST

/* The CSR kernel on weights with every third one zero and a whole output channel of zeros
 * (bias only): the dense forward's values and the reference's. */
START_TEST(conv2d_forward_csr_matches_dense)
{
    struct conv_case c;
    case_init(&c, &shapes[_i], 300 + (uint64_t)_i);
    int K = c.g.C * c.g.KH * c.g.KW, OC = c.g.OC;
    int64_t *indptr = alloc_or_fail((size_t)OC + 1, sizeof *indptr);
    int32_t *idx = alloc_or_fail(c.nw, sizeof *idx);
    float *data = alloc_or_fail(c.nw, sizeof *data);
    struct rt_csr w = {OC, K, 0, indptr, idx, data};
    for (int o = 0; o < OC; o++) {
        indptr[o] = w.nnz;
        for (int k = 0; k < K; k++) {
            if ((o * K + k) % 3 == 0 || o == 1) c.w[o * K + k] = 0.0f, c.wd[o * K + k] = 0.0;
            if (c.w[o * K + k] != 0.0f) idx[w.nnz] = k, data[w.nnz++] = c.w[o * K + k];
        }
    }
    indptr[OC] = w.nnz;
    float *yd = alloc_or_fail(c.ny, sizeof *yd), *ys = alloc_or_fail(c.ny, sizeof *ys);
    float *want = alloc_or_fail(c.ny, sizeof *want);
    size_t n = rt_conv2d_scratch_floats(&c.g, c.B);
    float *scr = scratch_alloc(n);
    rt_conv2d_forward(yd, scr, c.x, c.w, c.b, &c.g, c.B);
    nan_fill(ys, c.ny);
    rt_conv2d_forward_csr(ys, scr, c.x, &w, c.b, &c.g, c.B);
    scratch_check(scr, n);
    ref_conv(c.f, c.xd, c.wd, c.bd, &c.g, c.B);
    to_float(want, c.f, c.ny);
    char label[128];
    shape_label(label, sizeof label, &c, "csr");
    check_close(ys, yd, c.ny, 1e-5, 1e-5, label);
    check_close(ys, want, c.ny, 1e-5, 1e-5, label);
    free(yd), free(ys), free(want), free(scr), free(indptr), free(idx), free(data);
    case_free(&c);
}
END_TEST

/* ---- backward ---- */

static double conv_objective(const struct conv_case *c)
{
    ref_conv(c->f, c->xd, c->wd, c->bd, &c->g, c->B);
    double f = 0.0;
    for (size_t i = 0; i < c->ny; i++)
        f += c->gy[i] * c->f[i];
    return f;
}

/* Largest relative error of analytic (n) against central differences in v. */
static double conv_max_err(struct conv_case *c, double *v, const float *analytic, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double keep = v[i];
        v[i] = keep + GRADCHECK_EPS;
        double fp = conv_objective(c);
        v[i] = keep - GRADCHECK_EPS;
        double fm = conv_objective(c);
        v[i] = keep;
        double e = rel_err(analytic[i], (fp - fm) / (2.0 * GRADCHECK_EPS), 1e-2);
        worst = e > worst || isnan(e) ? e : worst;
    }
    return worst;
}

/* forward, backward_params, backward_data of one plan (-1: the public kernels), gradients
 * pre-filled with NaN to show they are overwritten. */
static void conv_step(float *dw, float *db, float *dx, const struct conv_case *c, int plan)
{
    size_t n = plan < 0 ? rt_conv2d_scratch_floats(&c->g, c->B)
                        : rt_conv2d_plan_scratch_floats_(&c->g, c->B, plan);
    float *scr = scratch_alloc(n), *y = alloc_or_fail(c->ny, sizeof *y);
    nan_fill(dw, c->nw), nan_fill(db, (size_t)c->g.OC), nan_fill(dx, c->nx);
    if (plan < 0) {
        rt_conv2d_forward(y, scr, c->x, c->w, c->b, &c->g, c->B);
        rt_conv2d_backward_params(dw, db, scr, c->gy, c->x, &c->g, c->B, 0);
        rt_conv2d_backward_data(dx, scr, c->gy, c->w, &c->g, c->B);
    } else {
        enum rt_conv_plan_ p = (enum rt_conv_plan_)plan;
        rt_conv2d_plan_forward_(y, scr, c->x, c->w, c->b, &c->g, c->B, p);
        rt_conv2d_plan_backward_params_(dw, db, scr, c->gy, c->x, &c->g, c->B, 0, p);
        rt_conv2d_plan_backward_data_(dx, scr, c->gy, c->w, &c->g, c->B, p);
    }
    scratch_check(scr, n);
    free(scr), free(y);
}

START_TEST(conv2d_backward_gradcheck)
{
    struct conv_case c;
    case_init(&c, &shapes[_i], 200 + (uint64_t)_i);
    float *dw = alloc_or_fail(c.nw, sizeof *dw), *db = alloc_or_fail((size_t)c.g.OC, sizeof *db);
    float *dx = alloc_or_fail(c.nx, sizeof *dx);
    for (int plan = -1; plan < RT_CONV_PLAN_COUNT_; plan++) {
        conv_step(dw, db, dx, &c, plan);
        double ew = conv_max_err(&c, c.wd, dw, c.nw);
        double eb = conv_max_err(&c, c.bd, db, (size_t)c.g.OC);
        double ex = conv_max_err(&c, c.xd, dx, c.nx);
        double worst = fmax(ew, fmax(eb, ex));
        char label[128];
        shape_label(label, sizeof label, &c, plan < 0 ? "public" : plan_name[plan]);
        printf("gradcheck conv2d %s max_rel_err=%.2g (dW %.2g, db %.2g, dX %.2g)\n", label, worst,
               ew, eb, ex);
        fflush(stdout);
        ck_assert_msg(worst < 1e-4, "%s: max rel err %.3g", label, worst);
    }
    free(dw), free(db), free(dx);
    case_free(&c);
}
END_TEST

/* B == 0: dw and db become zero, dx is not written. */
START_TEST(conv2d_backward_b0_zero)
{
    struct conv_case c;
    case_init(&c, &shapes[_i], 9);
    float *dw = alloc_or_fail(c.nw, sizeof *dw), db[8], dx[1] = {3.0f}, one[1] = {0};
    for (int plan = -1; plan < RT_CONV_PLAN_COUNT_; plan++) {
        nan_fill(dw, c.nw), nan_fill(db, (size_t)c.g.OC);
        if (plan < 0) {
            rt_conv2d_backward_params(dw, db, NULL, one, one, &c.g, 0, 0);
            rt_conv2d_backward_data(dx, NULL, one, c.w, &c.g, 0);
        } else {
            rt_conv2d_plan_backward_params_(dw, db, NULL, one, one, &c.g, 0, 0, plan);
            rt_conv2d_plan_backward_data_(dx, NULL, one, c.w, &c.g, 0, plan);
        }
        for (size_t i = 0; i < c.nw; i++)
            ck_assert_float_eq(dw[i], 0.0f);
        for (int i = 0; i < c.g.OC; i++)
            ck_assert_float_eq(db[i], 0.0f);
        ck_assert_float_eq(dx[0], 3.0f);
    }
    free(dw);
    case_free(&c);
}
END_TEST

/* Forward then _params of samples [lo, hi) under plan (-1: the public kernels), adding into
 * dw and db when accumulate; forward first since the keep plans read its columns. */
static void params_of(float *dw, float *db, const struct conv_case *c, int plan, int lo, int hi,
                      int accumulate)
{
    int n = hi - lo;
    size_t ix = (size_t)lo * c->g.C * c->g.H * c->g.W, iy = (size_t)lo * c->ny / (size_t)c->B;
    size_t ns = plan < 0 ? rt_conv2d_scratch_floats(&c->g, n)
                         : rt_conv2d_plan_scratch_floats_(&c->g, n, plan);
    float *scr = scratch_alloc(ns), *y = alloc_or_fail(c->ny, sizeof *y);
    if (plan < 0) {
        rt_conv2d_forward(y, scr, c->x + ix, c->w, c->b, &c->g, n);
        rt_conv2d_backward_params(dw, db, scr, c->gy + iy, c->x + ix, &c->g, n, accumulate);
    } else {
        rt_conv2d_plan_forward_(y, scr, c->x + ix, c->w, c->b, &c->g, n, plan);
        rt_conv2d_plan_backward_params_(dw, db, scr, c->gy + iy, c->x + ix, &c->g, n, accumulate,
                                        plan);
    }
    scratch_check(scr, ns);
    free(scr), free(y);
}

/* Accumulate: sample 0 overwriting, then the others adding, gives the gradient of all B
 * samples in one call, in every plan. The per-sample plans sum in the same order either way;
 * the batched ones group the dW GEMM's sum over B P pixels differently, a few roundings of
 * sums of magnitude <= B P (about 100 here), hence the 1e-5 bounds. */
START_TEST(conv2d_backward_params_accumulates)
{
    struct conv_case c;
    case_init(&c, &shapes[_i], 31);
    size_t OC = (size_t)c.g.OC;
    float *dw = alloc_or_fail(c.nw, sizeof *dw), *dw1 = alloc_or_fail(c.nw, sizeof *dw1);
    float db[8], db1[8];
    for (int plan = -1; plan < RT_CONV_PLAN_COUNT_; plan++) {
        char label[128];
        shape_label(label, sizeof label, &c, plan < 0 ? "public" : plan_name[plan]);
        params_of(dw1, db1, &c, plan, 0, c.B, 0);
        nan_fill(dw, c.nw), nan_fill(db, OC);
        params_of(dw, db, &c, plan, 0, 1, 0);
        params_of(dw, db, &c, plan, 1, c.B, 1); /* 0 samples when B = 1: adds nothing */
        check_close(dw, dw1, c.nw, 1e-5, 1e-5, label);
        check_close(db, db1, OC, 1e-5, 1e-5, label);
    }
    free(dw), free(dw1);
    case_free(&c);
}
END_TEST

/* ---- pooling ---- */

struct pool_shape {
    int B, C, H, W, KH, KW, SH, SW;
};

static const struct pool_shape pshapes[] = {
    {3, 3, 7, 5, 2, 2, 2, 2}, /* floor mode drops the last row */
    {1, 2, 7, 5, 3, 3, 1, 1}, /* overlapping windows */
    {3, 2, 7, 5, 3, 2, 2, 1}, /* non-square window and stride */
    {2, 2, 7, 5, 1, 1, 1, 1}, /* identity */
    {3, 2, 7, 5, 7, 5, 1, 1}, /* one window over the plane */
    {2, 3, 8, 7, 2, 2, 3, 3}, /* stride > window: inputs no window reads */
};
#define N_PSHAPES ((int)(sizeof pshapes / sizeof pshapes[0]))

static void pool_init(struct rt_pool2d_geom *g, const struct pool_shape *s)
{
    ck_assert_int_eq(rt_pool2d_geom_init(g, s->C, s->H, s->W, s->KH, s->KW, s->SH, s->SW), 0);
}

/* y (B, C, OH, OW) in double: the max (first in scan order on ties; am optional) or mean. */
static void ref_pool(double *y, int32_t *am, const double *x, const struct rt_pool2d_geom *g, int B,
                     int is_max)
{
    for (int i = 0; i < B * g->C; i++)
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++) {
                double m = -INFINITY, sum = 0.0;
                int32_t best = -1;
                for (int kh = 0; kh < g->KH; kh++)
                    for (int kw = 0; kw < g->KW; kw++) {
                        int idx = (oh * g->SH + kh) * g->W + ow * g->SW + kw;
                        double v = x[(size_t)i * g->H * g->W + idx];
                        sum += v;
                        if (best < 0 || v > m) m = v, best = idx;
                    }
                size_t o = ((size_t)i * g->OH + oh) * g->OW + ow;
                y[o] = is_max ? m : sum / (g->KH * g->KW);
                if (am) am[o] = best;
            }
}

/* x (n) distinct: a shuffled ramp with steps of 1/64, far wider than GRADCHECK_EPS, so that
 * no perturbation moves a max. */
static void fill_distinct(float *x, int n, uint64_t seed)
{
    struct rt_rng rng;
    rt_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++)
        x[i] = (float)(i - n / 2) / 64.0f;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rt_rng_below(&rng, (uint64_t)i + 1);
        float t = x[i];
        x[i] = x[j], x[j] = t;
    }
}

START_TEST(pool2d_forward_reference)
{
    const struct pool_shape *s = &pshapes[_i];
    struct rt_pool2d_geom g;
    pool_init(&g, s);
    int nx = s->B * s->C * s->H * s->W, ny = s->B * s->C * g.OH * g.OW;
    float *x = alloc_or_fail((size_t)nx, sizeof *x), *y = alloc_or_fail((size_t)ny, sizeof *y);
    float *want = alloc_or_fail((size_t)ny, sizeof *want);
    double *xd = alloc_or_fail((size_t)nx, sizeof *xd), *yd = alloc_or_fail((size_t)ny, sizeof *yd);
    int32_t *am = alloc_or_fail((size_t)ny, sizeof *am),
            *amr = alloc_or_fail((size_t)ny, sizeof *am);
    struct rt_rng rng;
    rt_rng_seed(&rng, 400 + (uint64_t)_i);
    fill_uniform_f(x, nx, -2, 2, &rng);
    to_double(xd, x, nx);
    ref_pool(yd, amr, xd, &g, s->B, 1);
    to_float(want, yd, (size_t)ny);
    nan_fill(y, (size_t)ny);
    rt_maxpool2d_forward(y, am, x, &g, s->B);
    check_close(y, want, (size_t)ny, 0, 0, "maxpool"); /* a max is exact */
    ck_assert(memcmp(am, amr, (size_t)ny * sizeof *am) == 0);
    ref_pool(yd, NULL, xd, &g, s->B, 0);
    to_float(want, yd, (size_t)ny);
    nan_fill(y, (size_t)ny);
    rt_avgpool2d_forward(y, x, &g, s->B);
    check_close(y, want, (size_t)ny, 1e-6, 1e-5, "avgpool");
    free(x), free(y), free(want), free(xd), free(yd), free(am), free(amr);
}
END_TEST

/* Ties go to the first in scan order; a NaN wins (the last one, as torch); -inf is a value. */
START_TEST(maxpool2d_forward_ties_nan)
{
    struct rt_pool2d_geom g;
    ck_assert_int_eq(rt_pool2d_geom_init(&g, 1, 2, 6, 2, 2, 2, 2), 0); /* three 2x2 windows */
    const float x[12] = {1, 3, 0, NAN, -INFINITY, -INFINITY, 3, 2, NAN, 5, -INFINITY, -INFINITY};
    float y[3];
    int32_t am[3];
    rt_maxpool2d_forward(y, am, x, &g, 1);
    ck_assert_float_eq(y[0], 3.0f);
    ck_assert_int_eq(am[0], 1); /* 3 at (0,1) and (1,0): the first */
    ck_assert(isnan(y[1]));
    ck_assert_int_eq(am[1], 8); /* NaNs at 3 and 8: the last */
    ck_assert(isinf(y[2]) && y[2] < 0);
    ck_assert_int_eq(am[2], 4);
}
END_TEST

/* f = sum(G . pool(x)); maxpool on distinct inputs, avgpool on any. */
static double pool_objective(const double *xd, const float *gy, const struct rt_pool2d_geom *g,
                             int B, int is_max, double *yd)
{
    ref_pool(yd, NULL, xd, g, B, is_max);
    double f = 0.0;
    for (int i = 0; i < B * g->C * g->OH * g->OW; i++)
        f += gy[i] * yd[i];
    return f;
}

START_TEST(pool2d_backward_gradcheck)
{
    const struct pool_shape *s = &pshapes[_i];
    struct rt_pool2d_geom g;
    pool_init(&g, s);
    int nx = s->B * s->C * s->H * s->W, ny = s->B * s->C * g.OH * g.OW;
    float *x = alloc_or_fail((size_t)nx, sizeof *x), *y = alloc_or_fail((size_t)ny, sizeof *y);
    float *gy = alloc_or_fail((size_t)ny, sizeof *gy), *dx = alloc_or_fail((size_t)nx, sizeof *dx);
    double *xd = alloc_or_fail((size_t)nx, sizeof *xd), *yd = alloc_or_fail((size_t)ny, sizeof *yd);
    int32_t *am = alloc_or_fail((size_t)ny, sizeof *am);
    struct rt_rng rng;
    rt_rng_seed(&rng, 500 + (uint64_t)_i);
    fill_distinct(x, nx, 600 + (uint64_t)_i);
    fill_uniform_f(gy, ny, -1, 1, &rng);
    to_double(xd, x, nx);
    for (int is_max = 0; is_max < 2; is_max++) {
        nan_fill(dx, (size_t)nx);
        if (is_max) {
            rt_maxpool2d_forward(y, am, x, &g, s->B);
            rt_maxpool2d_backward(dx, gy, am, &g, s->B);
        } else {
            rt_avgpool2d_backward(dx, gy, &g, s->B);
        }
        double worst = 0.0;
        for (int i = 0; i < nx; i++) {
            double keep = xd[i];
            xd[i] = keep + GRADCHECK_EPS;
            double fp = pool_objective(xd, gy, &g, s->B, is_max, yd);
            xd[i] = keep - GRADCHECK_EPS;
            double fm = pool_objective(xd, gy, &g, s->B, is_max, yd);
            xd[i] = keep;
            double e = rel_err(dx[i], (fp - fm) / (2.0 * GRADCHECK_EPS), 1e-2);
            worst = e > worst || isnan(e) ? e : worst;
        }
        printf("gradcheck %s B%d C%d %dx%d k%dx%d s%dx%d max_rel_err=%.2g\n",
               is_max ? "maxpool" : "avgpool", s->B, s->C, s->H, s->W, s->KH, s->KW, s->SH, s->SW,
               worst);
        fflush(stdout);
        ck_assert_msg(worst < 1e-4, "%s: max rel err %.3g", is_max ? "max" : "avg", worst);
    }
    free(x), free(y), free(gy), free(dx), free(xd), free(yd), free(am);
}
END_TEST

START_TEST(pool2d_geom_init_refusals)
{
    struct rt_pool2d_geom g = {.OH = 99};
    ck_assert_int_eq(rt_pool2d_geom_init(&g, 1, 3, 5, 4, 2, 1, 1), -1); /* KH > H */
    ck_assert_int_eq(rt_pool2d_geom_init(&g, 1, 5, 3, 2, 4, 1, 1), -1); /* KW > W */
    ck_assert_int_eq(rt_pool2d_geom_init(&g, 0, 3, 3, 2, 2, 1, 1), -1);
    ck_assert_int_eq(rt_pool2d_geom_init(&g, 1, 3, 3, 0, 2, 1, 1), -1);
    ck_assert_int_eq(rt_pool2d_geom_init(&g, 1, 3, 3, 2, 2, 0, 1), -1);
    ck_assert_int_eq(rt_pool2d_geom_init(&g, 1, 3, 3, 2, 2, 1, 0), -1);
    ck_assert_int_eq(g.OH, 99);
    ck_assert_int_eq(rt_pool2d_geom_init(&g, 2, 3, 5, 3, 5, 2, 2), 0); /* window = plane */
    ck_assert_int_eq(g.OH, 1);
    ck_assert_int_eq(g.OW, 1);
    ck_assert_int_eq(rt_pool2d_geom_init(&g, 2, 7, 5, 2, 2, 2, 2), 0);
    ck_assert_int_eq(g.OH, 3);
    ck_assert_int_eq(g.OW, 2);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("rt_conv2d_geom_init");
    tcase_add_test(tc, conv2d_geom_init_sizes);
    tcase_add_test(tc, conv2d_geom_init_refusals);
    tcase_add_test(tc, conv2d_scratch_floats_formula);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_conv2d_forward");
    tcase_add_loop_test(tc, conv2d_forward_reference, 0, N_SHAPES);
    tcase_add_test(tc, conv2d_forward_b0);
    tcase_add_loop_test(tc, conv2d_forward_row_independent, 0, 2); /* 1, 2 BLAS threads */
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_conv2d_forward_csr");
    tcase_add_loop_test(tc, conv2d_forward_csr_matches_dense, 0, N_SHAPES);
    tcase_add_test(tc, conv2d_forward_csr_row_independent);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_conv2d_backward");
    tcase_add_loop_test(tc, conv2d_backward_gradcheck, 0, N_SHAPES);
    tcase_add_loop_test(tc, conv2d_backward_b0_zero, 0, N_SHAPES);
    tcase_add_loop_test(tc, conv2d_backward_params_accumulates, 0, N_SHAPES);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_pool2d");
    tcase_add_test(tc, pool2d_geom_init_refusals);
    tcase_add_loop_test(tc, pool2d_forward_reference, 0, N_PSHAPES);
    tcase_add_test(tc, maxpool2d_forward_ties_nan);
    tcase_add_loop_test(tc, pool2d_backward_gradcheck, 0, N_PSHAPES);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(conv_suite());
}
