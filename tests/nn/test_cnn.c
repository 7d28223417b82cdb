/* test_cnn.c - whole models with layers of every kind, against a direct double-precision
 * reference of the same layer list (written here from the PyTorch definitions, sharing no
 * code with src/nn): forward outputs, and the gradient of the loss by a random-direction
 * check (the directional derivative of the double loss by central differences against
 * grads . d from our float backward). Dropout is checked for its contract: masks that
 * depend on (seed, step, row id) only.
 *
 * Dimension letters: B rows; C, H, W a layer's input; OC, OH, OW its output. */
#include "check_util.h"
#include "ref.h"

#include "ringtrain/model.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reference: one sample through the layer list, in double ---- */

/* nn.Conv2d on one sample: in (C, H, W) -> out (OC, OH, OW); w (OC, C, KH, KW), b (OC). */
static void ref_conv(double *out, const double *in, const double *w, const double *b,
                     const struct rt_layer_spec *l, const struct rt_shape *is,
                     const struct rt_shape *os)
{
    int C = is->d[0], H = is->d[1], W = is->d[2], OC = os->d[0], OH = os->d[1], OW = os->d[2];
    int KH = l->kernel[0], KW = l->kernel[1];
    for (int o = 0; o < OC; o++)
        for (int y = 0; y < OH; y++)
            for (int x = 0; x < OW; x++) {
                double s = b[o];
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < KH; i++)
                        for (int j = 0; j < KW; j++) {
                            int r = y * l->stride[0] - l->pad[0] + i;
                            int q = x * l->stride[1] - l->pad[1] + j;
                            if (r < 0 || r >= H || q < 0 || q >= W) continue;
                            s += w[((o * C + c) * KH + i) * KW + j] * in[(c * H + r) * W + q];
                        }
                out[(o * OH + y) * OW + x] = ref_act(l->act, s);
            }
}

static void ref_pool(double *out, const double *in, const struct rt_layer_spec *l,
                     const struct rt_shape *is, const struct rt_shape *os)
{
    int C = is->d[0], H = is->d[1], W = is->d[2], OH = os->d[1], OW = os->d[2];
    for (int c = 0; c < C; c++)
        for (int y = 0; y < OH; y++)
            for (int x = 0; x < OW; x++) {
                double mx = -INFINITY, sum = 0;
                for (int i = 0; i < l->kernel[0]; i++)
                    for (int j = 0; j < l->kernel[1]; j++) {
                        double v = in[(c * H + y * l->stride[0] + i) * W + x * l->stride[1] + j];
                        mx = v > mx ? v : mx;
                        sum += v;
                    }
                out[(c * OH + y) * OW + x] =
                    l->kind == RT_LAYER_MAXPOOL2D ? mx : sum / (l->kernel[0] * l->kernel[1]);
            }
}

/* Logits (K) of one sample x (IN) under parameters p (the model.h flat layout). */
static void ref_sample(double *logits, const double *p, const struct rt_model_spec *s,
                       const float *x)
{
    struct rt_shape shapes[RT_MAX_LAYERS];
    ck_assert_int_eq(rt_model_spec_infer(s, shapes), RT_OK);
    size_t big = (size_t)rt_shape_size(&s->input);
    for (int i = 0; i < s->n_layers; i++)
        big = (size_t)rt_shape_size(&shapes[i]) > big ? (size_t)rt_shape_size(&shapes[i]) : big;
    double *a = calloc(big, sizeof *a), *c = calloc(big, sizeof *c);
    for (int64_t i = 0; i < rt_shape_size(&s->input); i++)
        a[i] = x[i];
    for (int i = 0; i < s->n_layers; i++) {
        const struct rt_layer_spec *l = &s->layers[i];
        const struct rt_shape *is = i ? &shapes[i - 1] : &s->input, *os = &shapes[i];
        int IN = (int)rt_shape_size(is), OUT = (int)rt_shape_size(os);
        if (l->kind == RT_LAYER_CONV2D) {
            size_t nw = (size_t)os->d[0] * is->d[0] * l->kernel[0] * l->kernel[1];
            ref_conv(c, a, p, p + nw, l, is, os);
            p += nw + (size_t)os->d[0];
        } else if (l->kind == RT_LAYER_DENSE) {
            for (int o = 0; o < OUT; o++) {
                double z = p[(size_t)OUT * IN + o];
                for (int k = 0; k < IN; k++)
                    z += p[(size_t)o * IN + k] * a[k];
                c[o] = ref_act(l->act, z);
            }
            p += (size_t)OUT * IN + OUT;
        } else if (l->kind == RT_LAYER_MAXPOOL2D || l->kind == RT_LAYER_AVGPOOL2D) {
            ref_pool(c, a, l, is, os);
        } else { /* flatten, dropout in inference, activation */
            for (int k = 0; k < OUT; k++)
                c[k] = l->kind == RT_LAYER_ACT ? ref_act(l->act, a[k]) : a[k];
        }
        double *t = a;
        a = c;
        c = t;
    }
    memcpy(logits, a, (size_t)rt_shape_size(&shapes[s->n_layers - 1]) * sizeof *a);
    free(a);
    free(c);
}

/* Summed CE loss of B rows. */
static double ref_loss(const double *p, const struct rt_model_spec *s, const float *x,
                       const int32_t *y, int B, int IN, int K)
{
    double *z = malloc((size_t)K * sizeof *z), total = 0;
    for (int r = 0; r < B; r++) {
        ref_sample(z, p, s, x + (size_t)r * IN);
        total += ref_ce(z, y + r, 1, K);
    }
    free(z);
    return total;
}

/* ---- the cases ---- */

static const char *const cases[] = {
    /* the CNN shape, small; max pooling, relu fused */
    "conv(3, 3, pad=1), relu, maxpool(2), conv(4, 3, pad=1), relu, maxpool(2), flatten, "
    "dense(5), relu, dense(3)",
    /* stride 2, non-square kernel and padding, avg pooling, smooth activations */
    "conv(4, 3x2, stride=2, pad=1x0), tanh, avgpool(2, stride=1), flatten, gelu, dense(3)",
    /* 1x1 and 5x5 kernels, overlapping max pools, an activation after pooling */
    "conv(3, 1), sigmoid, conv(2, 5, pad=2), maxpool(3, stride=2), relu, flatten, dense(3)",
    /* dropout (inactive outside training) and a dense stack after flatten */
    "conv(2, 3), dropout(0.5), flatten, dense(6), tanh, dense(3)",
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])
enum { B = 3, C0 = 2, H0 = 9, W0 = 7, K = 3 };

struct cnn_case {
    struct rt_model_spec s;
    struct rt_model m;
    float x[B * C0 * H0 * W0];
    int32_t y[B];
};

static void cnn_case_init(struct cnn_case *c, int i)
{
    memset(&c->s, 0, sizeof c->s);
    char err[256];
    ck_assert_msg(rt_model_spec_parse(&c->s, cases[i], err, sizeof err) == 0, "%s", err);
    c->s.input = (struct rt_shape){.rank = 3, .d = {C0, H0, W0}};
    c->s.loss = RT_LOSS_CE;
    c->s.init = RT_INIT_TORCH;
    int rc = rt_model_init(&c->m, &c->s, B);
    ck_assert_msg(rc == RT_OK, "%s: %s", cases[i], rt_error_message(rc));
    rt_model_init_params(&c->m, 77 + (uint64_t)i);
    struct rt_rng rng;
    rt_rng_seed(&rng, 5 + (uint64_t)i);
    fill_uniform_f(c->x, B * C0 * H0 * W0, -1, 1, &rng);
    for (int r = 0; r < B; r++)
        c->y[r] = (int32_t)rt_rng_below(&rng, K);
}

START_TEST(cnn_forward_matches_reference)
{
    struct cnn_case c;
    cnn_case_init(&c, _i);
    const float *out = rt_model_forward(&c.m, c.x, B);
    double *p = malloc(c.m.n_params * sizeof *p);
    to_double(p, c.m.params, (int)c.m.n_params);
    for (int r = 0; r < B; r++) {
        double want[K];
        ref_sample(want, p, &c.s, c.x + (size_t)r * C0 * H0 * W0);
        for (int k = 0; k < K; k++)
            ck_assert_msg(fabs(out[r * K + k] - want[k]) <= 1e-5 * (1 + fabs(want[k])),
                          "%s: row %d logit %d: %g, reference %g", cases[_i], r, k, out[r * K + k],
                          want[k]);
    }
    free(p);
    rt_model_free(&c.m);
}
END_TEST

START_TEST(cnn_backward_random_direction)
{
    struct cnn_case c;
    cnn_case_init(&c, _i);
    int IN = C0 * H0 * W0;
    double norm = rt_loss_norm(RT_LOSS_CE, B, K);
    rt_model_forward(&c.m, c.x, B);
    rt_model_loss(&c.m, c.y, B, norm);
    rt_model_backward(&c.m, c.x, B, NULL, NULL);
    size_t n = c.m.n_params;
    double *p = malloc(n * sizeof *p), *q = malloc(n * sizeof *q), *d = malloc(n * sizeof *d);
    to_double(p, c.m.params, (int)n);
    struct rt_rng rng;
    rt_rng_seed(&rng, 4242);
    double worst = 0;
    for (int trial = 0; trial < 6; trial++) {
        double analytic = 0;
        for (size_t k = 0; k < n; k++) {
            d[k] = rt_rng_normal(&rng);
            analytic += (double)c.m.grads[k] * d[k];
        }
        double f[2];
        for (int side = 0; side < 2; side++) {
            double h = side == 0 ? GRADCHECK_EPS : -GRADCHECK_EPS;
            for (size_t k = 0; k < n; k++)
                q[k] = p[k] + h * d[k];
            f[side] = ref_loss(q, &c.s, c.x, c.y, B, IN, K) / norm;
        }
        double e = rel_err(analytic, (f[0] - f[1]) / (2 * GRADCHECK_EPS), 1e-2);
        worst = e > worst || isnan(e) ? e : worst;
    }
    printf("gradcheck cnn case %d: max rel err %.2e (%s)\n", _i, worst, cases[_i]);
    ck_assert_msg(worst < 1e-3, "%s: relative error %g", cases[_i], worst);
    free(p);
    free(q);
    free(d);
    rt_model_free(&c.m);
}
END_TEST

/* Dropout: in training a row's mask depends on (seed, step, row id) only, so a row gives
 * the same outputs whatever else is in the batch and at whatever position; another step
 * or seed gives another mask; inference is the identity. */
START_TEST(cnn_dropout_masks_by_row_id)
{
    struct cnn_case c;
    cnn_case_init(&c, 3);
    int IN = C0 * H0 * W0;
    int64_t ids[B] = {10, 11, 12}, swapped[B] = {12, 11, 10};
    float xs[B * C0 * H0 * W0], a[B * K], b[B * K], e[B * K];
    memcpy(xs, c.x + 2 * IN, (size_t)IN * sizeof *xs); /* rows 2, 1, 0 */
    memcpy(xs + IN, c.x + IN, (size_t)IN * sizeof *xs);
    memcpy(xs + 2 * IN, c.x, (size_t)IN * sizeof *xs);
    rt_model_set_training(&c.m, 1, 9, 4, ids);
    memcpy(a, rt_model_forward(&c.m, c.x, B), sizeof a);
    rt_model_set_training(&c.m, 1, 9, 4, swapped);
    memcpy(b, rt_model_forward(&c.m, xs, B), sizeof b);
    for (int r = 0; r < B; r++) /* row r of a is row B-1-r of b, to the bit (row-wise) */
        for (int k = 0; k < K; k++)
            ck_assert_float_eq_tol(a[r * K + k], b[(B - 1 - r) * K + k], 1e-6);
    rt_model_set_training(&c.m, 1, 9, 5, ids);
    memcpy(b, rt_model_forward(&c.m, c.x, B), sizeof b);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    rt_model_set_training(&c.m, 0, 0, 0, NULL);
    memcpy(e, rt_model_forward(&c.m, c.x, B), sizeof e);
    double *p = malloc(c.m.n_params * sizeof *p);
    to_double(p, c.m.params, (int)c.m.n_params);
    for (int r = 0; r < B; r++) {
        double want[K];
        ref_sample(want, p, &c.s, c.x + (size_t)r * IN);
        for (int k = 0; k < K; k++)
            ck_assert_msg(fabs(e[r * K + k] - want[k]) <= 1e-5 * (1 + fabs(want[k])),
                          "inference must not drop");
    }
    free(p);
    rt_model_free(&c.m);
}
END_TEST

/* The layers report what pruning and model files need: weights, dims, units. */
START_TEST(cnn_layer_questions)
{
    struct cnn_case c;
    cnn_case_init(&c, 0);
    int64_t dims[4];
    ck_assert_int_eq(rt_model_layer_weight_dims(&c.m, 0, dims), 4);
    ck_assert(dims[0] == 3 && dims[1] == C0 && dims[2] == 3 && dims[3] == 3);
    ck_assert_uint_eq(rt_model_layer_weights(&c.m, 0), 3 * C0 * 9);
    ck_assert_uint_eq(rt_model_layer_count(&c.m, 0), 3 * C0 * 9 + 3);
    ck_assert_int_eq(rt_model_layer_weight_dims(&c.m, 1, dims), 0); /* maxpool */
    ck_assert_uint_eq(rt_model_layer_count(&c.m, 1), 0);
    ck_assert_int_eq(rt_model_units(&c.m, 0), 3); /* read by conv 2 */
    ck_assert_int_eq(rt_model_units(&c.m, 2), 4); /* read by the dense after flatten */
    ck_assert_int_eq(rt_model_units(&c.m, 5), 5); /* hidden dense */
    ck_assert_int_eq(rt_model_units(&c.m, 6), 0); /* the logits */
    ck_assert_int_eq(rt_model_units(&c.m, 4), 0); /* flatten has none */
    ck_assert_str_eq(rt_model_layer_kind(&c.m, 2), "conv2d");
    /* FLOPs: conv 2 MACs OC C KH KW per output pixel, twice */
    double f = rt_model_layer_forward_flops(&c.m, 2);
    ck_assert_double_eq_tol(f, 2.0 * 4 * 3 * 9 * (4 * 3), 1e-9);
    rt_model_free(&c.m);
}
END_TEST

static Suite *cnn_suite(void)
{
    Suite *s = suite_create("cnn");
    TCase *tc = tcase_create("cnn");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, cnn_forward_matches_reference, 0, N_CASES);
    tcase_add_loop_test(tc, cnn_backward_random_direction, 0, N_CASES);
    tcase_add_test(tc, cnn_dropout_masks_by_row_id);
    tcase_add_test(tc, cnn_layer_questions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(cnn_suite());
}
