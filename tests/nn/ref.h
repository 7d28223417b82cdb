/* ref.h - naive double-precision references for the nn tests, written independently of
 * src/nn (plain loops, libm in double), plus the gradient-check helpers.
 *
 * Shapes as in dense.h: X (B, IN), W (OUT, IN), b (OUT), Y (B, OUT); logits (B, K). */
#ifndef RT_TEST_NN_REF_H
#define RT_TEST_NN_REF_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ringtrain/model.h"
#include "ringtrain/rng.h"

static inline double ref_act(enum rt_act a, double z)
{
    switch (a) {
    case RT_ACT_IDENTITY:
        return z;
    case RT_ACT_RELU:
        return z > 0.0 ? z : 0.0;
    case RT_ACT_TANH:
        return tanh(z);
    case RT_ACT_SIGMOID:
        return 1.0 / (1.0 + exp(-z));
    case RT_ACT_GELU:
        return 0.5 * z * (1.0 + erf(z / sqrt(2.0)));
    }
    abort();
}

/* y = act(x w^T + b), all double; zmin (optional) receives min |pre-activation|. */
static inline void ref_dense(double *y, const double *x, const double *w, const double *b,
                             enum rt_act a, int B, int IN, int OUT, double *zmin)
{
    for (int r = 0; r < B; r++)
        for (int o = 0; o < OUT; o++) {
            double z = b[o];
            for (int i = 0; i < IN; i++)
                z += x[r * IN + i] * w[o * IN + i];
            if (zmin && fabs(z) < *zmin) *zmin = fabs(z);
            y[r * OUT + o] = ref_act(a, z);
        }
}

/* Sum over rows of -log softmax(z)_y, by the textbook formula with the max shifted out. */
static inline double ref_ce(const double *z, const int32_t *labels, int B, int K)
{
    double total = 0.0;
    for (int r = 0; r < B; r++) {
        const double *zr = z + r * K;
        double mx = zr[0], s = 0.0;
        for (int k = 1; k < K; k++)
            mx = fmax(mx, zr[k]);
        for (int k = 0; k < K; k++)
            s += exp(zr[k] - mx);
        total += mx + log(s) - zr[labels[r]];
    }
    return total;
}

static inline double ref_mse(const double *out, const float *t, int B, int K)
{
    double total = 0.0;
    for (int i = 0; i < B * K; i++)
        total += (out[i] - t[i]) * (out[i] - t[i]);
    return total;
}

/* Logits (B, K) of a whole MLP in double, parameters in the model.h flat layout: hidden
 * layers apply s->act, the last is linear. zmin (optional) receives min |pre-activation|
 * over the hidden layers, i.e. the distance to relu's kink. */
/* The widths of an MLP spec (input, then each dense layer's): returns how many. */
static inline int ref_widths(const struct rt_model_spec *s, int *w)
{
    w[0] = s->input.d[0];
    for (int l = 0; l < s->n_layers; l++)
        w[l + 1] = s->layers[l].units;
    return s->n_layers + 1;
}

static inline void ref_model_forward(double *logits, const double *params,
                                     const struct rt_model_spec *s, const float *x, int B,
                                     double *zmin)
{
    int sizes[RT_MAX_LAYERS + 1];
    int L = ref_widths(s, sizes) - 1, maxw = 0;
    for (int i = 0; i <= L; i++)
        maxw = sizes[i] > maxw ? sizes[i] : maxw;
    double *a = calloc((size_t)B * maxw, sizeof *a), *c = calloc((size_t)B * maxw, sizeof *c);
    for (int i = 0; i < B * sizes[0]; i++)
        a[i] = x[i];
    const double *p = params;
    for (int l = 0; l < L; l++) {
        int IN = sizes[l], OUT = sizes[l + 1];
        enum rt_act act = l == L - 1 ? RT_ACT_IDENTITY : s->act;
        ref_dense(c, a, p, p + (size_t)OUT * IN, act, B, IN, OUT, l < L - 1 ? zmin : NULL);
        p += (size_t)OUT * IN + OUT;
        double *t = a;
        a = c;
        c = t;
    }
    for (int i = 0; i < B * sizes[L]; i++)
        logits[i] = a[i];
    free(a);
    free(c);
}

/* Loss SUM of a whole MLP in double (targets as for rt_model_loss). */
static inline double ref_model_loss(const double *params, const struct rt_model_spec *s,
                                    const float *x, const void *targets, int B, double *zmin)
{
    int K = s->layers[s->n_layers - 1].units;
    double *z = calloc((size_t)B * K + 1, sizeof *z);
    ref_model_forward(z, params, s, x, B, zmin);
    double loss = s->loss == RT_LOSS_CE ? ref_ce(z, targets, B, K) : ref_mse(z, targets, B, K);
    free(z);
    return loss;
}

/* |a - n| relative to the larger magnitude, with a floor so that gradients that are zero
 * up to rounding are judged on an absolute scale. */
static inline double rel_err(double analytic, double numeric, double floor)
{
    double scale = fmax(fmax(fabs(analytic), fabs(numeric)), floor);
    return fabs(analytic - numeric) / scale;
}

static inline void fill_uniform_f(float *v, int n, double lo, double hi, struct rt_rng *rng)
{
    for (int i = 0; i < n; i++)
        v[i] = (float)(lo + (hi - lo) * rt_rng_uniform(rng));
}

static inline void to_double(double *d, const float *f, int n)
{
    for (int i = 0; i < n; i++)
        d[i] = f[i];
}

/* Causal multi-head attention of one sequence, as transformer_kernels.h defines it:
 * qkv (T, 3D) -> y (T, D), H heads of D/H. */
static inline void ref_attention(double *y, const double *qkv, int T, int D, int H)
{
    int hd = D / H;
    double *s = malloc((size_t)T * sizeof *s);
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= t; j++) {
                double dot = 0;
                for (int c = 0; c < hd; c++)
                    dot += qkv[t * 3 * D + h * hd + c] * qkv[j * 3 * D + D + h * hd + c];
                s[j] = dot / sqrt((double)hd);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= t; j++)
                sum += (s[j] = exp(s[j] - mx));
            for (int c = 0; c < hd; c++) {
                double acc = 0;
                for (int j = 0; j <= t; j++)
                    acc += s[j] / sum * qkv[j * 3 * D + 2 * D + h * hd + c];
                y[t * D + h * hd + c] = acc;
            }
        }
    free(s);
}

/* nn.LayerNorm(D, eps = 1e-5) over `rows` rows. */
static inline void ref_layernorm(double *y, const double *x, const double *w, const double *b,
                                 int rows, int D)
{
    for (int r = 0; r < rows; r++) {
        double mu = 0, var = 0;
        for (int i = 0; i < D; i++)
            mu += x[r * D + i] / D;
        for (int i = 0; i < D; i++)
            var += (x[r * D + i] - mu) * (x[r * D + i] - mu) / D;
        for (int i = 0; i < D; i++)
            y[r * D + i] = (x[r * D + i] - mu) / sqrt(var + 1e-5) * w[i] + b[i];
    }
}

#define GRADCHECK_EPS 1e-6

/* The random-direction gradient check: for `trials` directions d ~ N(0, I) over the n
 * parameters p, the relative error between <grad, d> and the central difference of f along
 * d (step GRADCHECK_EPS, in double). Returns the worst (NaN propagates). */
typedef double (*ref_objective_fn)(const double *p, void *ctx);
static inline double ref_gradcheck(const double *p, const float *grad, size_t n, ref_objective_fn f,
                                   void *ctx, int trials, uint64_t seed)
{
    double *q = malloc(n * sizeof *q), *d = malloc(n * sizeof *d), worst = 0;
    struct rt_rng rng;
    rt_rng_seed(&rng, seed);
    for (int trial = 0; trial < trials; trial++) {
        double analytic = 0, fs[2];
        for (size_t k = 0; k < n; k++) {
            d[k] = rt_rng_normal(&rng);
            analytic += (double)grad[k] * d[k];
        }
        for (int side = 0; side < 2; side++) {
            double h = side ? -GRADCHECK_EPS : GRADCHECK_EPS;
            for (size_t k = 0; k < n; k++)
                q[k] = p[k] + h * d[k];
            fs[side] = f(q, ctx);
        }
        double e = rel_err(analytic, (fs[0] - fs[1]) / (2 * GRADCHECK_EPS), 1e-2);
        worst = e > worst || isnan(e) ? e : worst;
    }
    free(q);
    free(d);
    return worst;
}

#endif
