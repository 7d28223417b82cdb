/* dense.c - the dense (fully connected) layer: kernels over cblas_sgemm, activations, init,
 * and the dense entry of the layer table.
 *
 * Forward is one GEMM with beta = 0 (so the output needs no clearing) followed by ONE pass
 * that adds the bias and applies the activation. Backward first turns dY into dZ in place
 * while summing the bias gradient in the same pass (rows are read in memory order), then
 * runs the two GEMMs dW = dZ^T X and dX = dZ W, both with beta = 0 so that gradients are
 * overwritten and no zero_grad pass is ever needed. A layer that accumulates (a later
 * micro-batch of a step, l->accumulate) runs the dW GEMM with beta = 1 and sums db on from
 * its value: the micro-batches' gradients add up in place, with no buffer of their own, and
 * db comes out in the same order of additions as one pass over all their rows would take.
 * The GEMMs are where the time goes; the element-wise passes exist only once each so that
 * they stay a small fraction of it.
 *
 * Activation derivatives are taken from the output y where that is enough (relu, tanh,
 * sigmoid), which saves keeping the pre-activation; gelu needs z and keeps it.
 *
 * rt_dense_forward_rowwise gives up BLAS for reproducibility: a GEMM may round a row
 * differently depending on where it sits in the batch, and this kernel may not. It fixes
 * the order of operations of every output (one float sum per element, k ascending from
 * 0.0f) and leaves the compiler only the freedom to run several elements side by side,
 * which does not change any bits. Tiling then only decides which elements are computed
 * together, never how one is computed (see rowwise_slab).
 *
 * Not here: losses (loss.c), the layer list and flat parameter blocks (model.c).
 *
 * Dimension letters: B rows, IN input width, OUT output width. */
#include "ringtrain/dense.h"
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define RT_SQRT1_2      0.70710678118654752440f /* 1/sqrt(2) */
#define RT_INV_SQRT_2PI 0.39894228040143267794f /* 1/sqrt(2 pi): the normal density at 0 */

/* Exact gelu, z Phi(z), as torch's default (approximate='none'). */
static inline float gelu(float t)
{
    return 0.5f * t * (1.0f + erff(t * RT_SQRT1_2));
}

/* d/dz [z Phi(z)] = Phi(z) + z phi(z). */
static inline float gelu_grad(float t)
{
    float cdf = 0.5f * (1.0f + erff(t * RT_SQRT1_2));
    return cdf + t * RT_INV_SQRT_2PI * expf(-0.5f * t * t);
}

int rt_act_needs_preact(enum rt_act act)
{
    return act == RT_ACT_GELU;
}

void rt_dense_linear(float *y, const float *x, const float *w, const float *b, int B, int IN,
                     int OUT)
{
    if (B == 0) return;
    for (int r = 0; r < B; r++)
        for (int o = 0; o < OUT; o++)
            y[(size_t)r * OUT + o] = b ? b[o] : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OUT, IN, 1.0f, x, IN, w, IN, 1.0f, y,
                OUT);
}

/* One row of the fused forward pass: yr = act(zr + b), keeping zr + b in zr for gelu. On
 * entry the GEMM result is in zr for gelu and in yr otherwise. The switch sits outside the
 * element loop so that each loop is a plain, vectorisable stream. */
static void bias_act_row(float *yr, float *zr, const float *b, enum rt_act act, int OUT)
{
    switch (act) {
    case RT_ACT_IDENTITY:
        for (int o = 0; o < OUT; o++)
            yr[o] += b[o];
        break;
    case RT_ACT_RELU:
        for (int o = 0; o < OUT; o++) {
            float t = yr[o] + b[o];
            yr[o] = t < 0.0f ? 0.0f : t; /* NaN passes through, to be caught downstream */
        }
        break;
    case RT_ACT_TANH:
        for (int o = 0; o < OUT; o++)
            yr[o] = tanhf(yr[o] + b[o]);
        break;
    case RT_ACT_SIGMOID:
        for (int o = 0; o < OUT; o++)
            yr[o] = 1.0f / (1.0f + expf(-(yr[o] + b[o]))); /* expf -> inf gives 0: fine */
        break;
    case RT_ACT_GELU:
        for (int o = 0; o < OUT; o++) {
            float t = zr[o] + b[o];
            zr[o] = t;
            yr[o] = gelu(t);
        }
        break;
    }
}

void rt_dense_forward(float *y, float *z, const float *x, const float *w, const float *b,
                      enum rt_act act, int B, int IN, int OUT)
{
    if (B == 0) return;
    /* (B, OUT) = (B, IN) (OUT, IN)^T; gelu keeps the pre-activation, so GEMM into z. */
    float *gemm_out = rt_act_needs_preact(act) ? z : y;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OUT, IN, 1.0f, x, IN, w, IN, 0.0f,
                gemm_out, OUT);
    for (int r = 0; r < B; r++) {
        size_t row = (size_t)r * OUT;
        bias_act_row(y + row, z ? z + row : NULL, b, act, OUT);
    }
}

/* Four rows at a time share every load of a weight and its column index; each row still
 * sums its own products in the same order (k ascending), so the result of a row does not
 * depend on the rows beside it. */
#define CSR_ROWS 4

static void csr_rows4(float *out, const float *x, const struct rt_csr *w, int r0)
{
    int IN = w->cols, OUT = w->rows;
    const float *x0 = x + (size_t)r0 * IN, *x1 = x0 + IN, *x2 = x1 + IN, *x3 = x2 + IN;
    for (int o = 0; o < OUT; o++) {
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        for (int64_t k = w->indptr[o]; k < w->indptr[o + 1]; k++) {
            float d = w->data[k];
            int32_t j = w->indices[k];
            a0 += d * x0[j];
            a1 += d * x1[j];
            a2 += d * x2[j];
            a3 += d * x3[j];
        }
        out[(size_t)r0 * OUT + o] = a0;
        out[(size_t)(r0 + 1) * OUT + o] = a1;
        out[(size_t)(r0 + 2) * OUT + o] = a2;
        out[(size_t)(r0 + 3) * OUT + o] = a3;
    }
}

void rt_dense_forward_csr(float *y, float *z, const float *x, const struct rt_csr *w,
                          const float *b, enum rt_act act, int B)
{
    int IN = w->cols, OUT = w->rows;
    float *out = rt_act_needs_preact(act) ? z : y;
    int r = 0;
    for (; r + CSR_ROWS <= B; r += CSR_ROWS)
        csr_rows4(out, x, w, r);
    for (; r < B; r++) {
        const float *xr = x + (size_t)r * IN;
        float *yr = out + (size_t)r * OUT;
        for (int o = 0; o < OUT; o++) {
            float acc = 0.0f;
            for (int64_t k = w->indptr[o]; k < w->indptr[o + 1]; k++)
                acc += w->data[k] * xr[w->indices[k]];
            yr[o] = acc;
        }
    }
    for (r = 0; r < B; r++)
        bias_act_row(y + (size_t)r * OUT, z ? z + (size_t)r * OUT : NULL, b, act, OUT);
}

/* ---- the row-wise kernel ---- */

/* Tiles of rt_dense_forward_rowwise. RW_ROWS rows share every load of weights; each row
 * keeps RW_COLS accumulators in L1; the weights are walked in slabs of RW_DEPTH values of
 * k, so that a slab (RW_DEPTH x RW_COLS floats, 32 KiB) stays in cache while every row
 * block passes over it. Chosen by measurement (Zen 3, B = 128, -O2 and -O3 alike): about
 * 1/3 of OpenBLAS sgemm, which has FMA and AVX2 where this code has baseline SSE2. */
enum { RW_ROWS = 8, RW_COLS = 64, RW_DEPTH = 128 };

/* acc (nr, 4 n4) += x[.., k0..k1) wt[k0..k1, 0..4 n4), one running float sum per element,
 * k ascending. Four values of k go into one statement to save loads and stores of acc; C
 * evaluates a + b + c left to right and rounds each step to float (FLT_EVAL_METHOD 0), so
 * this is the same sum as four separate +=. (Where FLT_EVAL_METHOD is not 0, every row still
 * takes the same steps, so rows stay independent of each other.) The inner loop of 4 with a
 * constant bound is what GCC's cheapest vector cost model (-O2) accepts: it becomes one SSE
 * operation. x is (nr, IN) and wt has row stride OUT. */
static void rowwise_slab(float *restrict acc, const float *restrict x, const float *restrict wt,
                         int nr, int k0, int k1, int IN, int OUT, int n4)
{
    size_t s = (size_t)OUT, ow = 4 * (size_t)n4;
    int k = k0;
    for (; k + 4 <= k1; k += 4) {
        const float *w = wt + (size_t)k * s;
        for (int r = 0; r < nr; r++) {
            const float *xr = x + (size_t)r * IN + k;
            float *a = acc + (size_t)r * ow;
            float x0 = xr[0], x1 = xr[1], x2 = xr[2], x3 = xr[3];
            for (int v = 0; v < n4; v++)
                for (int j = 0; j < 4; j++) {
                    size_t o = 4 * (size_t)v + (size_t)j;
                    a[o] = a[o] + x0 * w[o] + x1 * w[s + o] + x2 * w[2 * s + o] + x3 * w[3 * s + o];
                }
        }
    }
    for (; k < k1; k++) {
        const float *w = wt + (size_t)k * s;
        for (int r = 0; r < nr; r++) {
            float xr = x[(size_t)r * IN + k];
            float *a = acc + (size_t)r * ow;
            for (int v = 0; v < n4; v++)
                for (int j = 0; j < 4; j++)
                    a[4 * (size_t)v + j] += xr * w[4 * (size_t)v + j];
        }
    }
}

/* Columns o0 .. o0 + 4 n4 of out (B, OUT) = x wt, for every row: slab by slab, each row
 * block's partial sums parked in out between slabs (a float store and reload is exact). */
static void rowwise_panel(float *out, const float *x, const float *wt, int B, int IN, int OUT,
                          int o0, int n4)
{
    float acc[RW_ROWS * RW_COLS];
    size_t row_bytes = 4 * (size_t)n4 * sizeof *acc;
    for (int k0 = 0; k0 < IN; k0 += RW_DEPTH) {
        int k1 = IN - k0 < RW_DEPTH ? IN : k0 + RW_DEPTH;
        for (int r0 = 0; r0 < B; r0 += RW_ROWS) {
            int nr = B - r0 < RW_ROWS ? B - r0 : RW_ROWS;
            float *dst = out + (size_t)r0 * OUT + o0;
            for (int r = 0; r < nr; r++) {
                float *a = acc + (size_t)r * 4 * n4;
                if (k0 == 0)
                    memset(a, 0, row_bytes);
                else
                    memcpy(a, dst + (size_t)r * OUT, row_bytes);
            }
            rowwise_slab(acc, x + (size_t)r0 * IN, wt + o0, nr, k0, k1, IN, OUT, n4);
            for (int r = 0; r < nr; r++)
                memcpy(dst + (size_t)r * OUT, acc + (size_t)r * 4 * n4, row_bytes);
        }
    }
}

/* OUT < 4: too narrow for a group of four, and too small to matter. Same sums. */
static void rowwise_narrow(float *out, const float *x, const float *wt, int B, int IN, int OUT)
{
    for (int r = 0; r < B; r++)
        for (int o = 0; o < OUT; o++) {
            float acc = 0.0f;
            for (int k = 0; k < IN; k++)
                acc += x[(size_t)r * IN + k] * wt[(size_t)k * OUT + o];
            out[(size_t)r * OUT + o] = acc;
        }
}

/* Panels of RW_COLS columns (or OUT rounded down to four, when narrower). The last panel
 * is moved left to end at OUT rather than run past it: the columns it shares with its
 * neighbour are computed twice, to the same bits, and no scalar edge code is needed. */
void rt_dense_forward_rowwise(float *y, float *z, const float *x, const float *wt, const float *b,
                              enum rt_act act, int B, int IN, int OUT)
{
    if (B == 0) return;
    float *out = rt_act_needs_preact(act) ? z : y;
    if (OUT < 4) {
        rowwise_narrow(out, x, wt, B, IN, OUT);
    } else {
        int width = OUT < RW_COLS ? OUT / 4 * 4 : RW_COLS;
        for (int o0 = 0; o0 < OUT; o0 += width)
            rowwise_panel(out, x, wt, B, IN, OUT, o0 + width <= OUT ? o0 : OUT - width, width / 4);
    }
    for (int r = 0; r < B; r++) {
        size_t row = (size_t)r * OUT;
        bias_act_row(y + row, z ? z + row : NULL, b, act, OUT);
    }
}

void rt_act_grad(float *dy, const float *y, const float *z, size_t n, enum rt_act act)
{
    switch (act) {
    case RT_ACT_IDENTITY:
        break;
    case RT_ACT_RELU: /* y > 0 exactly where z > 0; the kink gets 0, as in torch */
        for (size_t o = 0; o < n; o++)
            dy[o] = y[o] > 0.0f ? dy[o] : 0.0f;
        break;
    case RT_ACT_TANH:
        for (size_t o = 0; o < n; o++)
            dy[o] *= 1.0f - y[o] * y[o];
        break;
    case RT_ACT_SIGMOID:
        for (size_t o = 0; o < n; o++)
            dy[o] *= y[o] * (1.0f - y[o]);
        break;
    case RT_ACT_GELU:
        if (!z) break; /* cannot happen: gelu keeps its pre-activation (rt_act_needs_preact) */
        for (size_t o = 0; o < n; o++)
            dy[o] *= gelu_grad(z[o]);
        break;
    }
}

void rt_act_apply(float *y, float *z, size_t n, enum rt_act act)
{
    switch (act) {
    case RT_ACT_IDENTITY:
        break;
    case RT_ACT_RELU:
        for (size_t o = 0; o < n; o++)
            y[o] = y[o] < 0.0f ? 0.0f : y[o]; /* NaN passes through */
        break;
    case RT_ACT_TANH:
        for (size_t o = 0; o < n; o++)
            y[o] = tanhf(y[o]);
        break;
    case RT_ACT_SIGMOID:
        for (size_t o = 0; o < n; o++)
            y[o] = 1.0f / (1.0f + expf(-y[o]));
        break;
    case RT_ACT_GELU:
        for (size_t o = 0; o < n; o++) {
            z[o] = y[o];
            y[o] = gelu(z[o]);
        }
        break;
    }
}

/* One row of the fused backward pass: dr = dr * act'(.) and db += dr. */
static void act_grad_row(float *db, float *dr, const float *yr, const float *zr, enum rt_act act,
                         int OUT)
{
    rt_act_grad(dr, yr, zr, (size_t)OUT, act);
    for (int o = 0; o < OUT; o++)
        db[o] += dr[o];
}

/* dZ in place of dY, db and dW: everything but dX (see rt_dense_backward). dW and db are
 * overwritten, or added to when accumulate. */
static void dense_backward_params(float *dw, float *db, float *dy, const float *x, const float *y,
                                  const float *z, enum rt_act act, int B, int IN, int OUT,
                                  int accumulate)
{
    if (!accumulate) memset(db, 0, (size_t)OUT * sizeof *db); /* OUT floats: the sum's start */
    if (B == 0) {
        /* A GEMM with K = 0 would be asked to write beta * C; not every BLAS honours that. */
        if (!accumulate) memset(dw, 0, (size_t)OUT * IN * sizeof *dw);
        return;
    }
    for (int r = 0; r < B; r++) {
        size_t row = (size_t)r * OUT;
        act_grad_row(db, dy + row, y + row, z ? z + row : NULL, act, OUT);
    }
    /* dW (OUT, IN) = dZ^T (OUT, B) X (B, IN) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, B, 1.0f, dy, OUT, x, IN,
                accumulate ? 1.0f : 0.0f, dw, IN);
}

/* dX (B, IN) = dZ (B, OUT) W (OUT, IN), from the dZ dense_backward_params left in dz. */
static void dense_backward_input(float *dx, const float *dz, const float *w, int B, int IN, int OUT)
{
    if (B == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, IN, OUT, 1.0f, dz, OUT, w, IN, 0.0f,
                dx, IN);
}

void rt_dense_backward(float *dx, float *dw, float *db, float *dy, const float *x, const float *w,
                       const float *y, const float *z, enum rt_act act, int B, int IN, int OUT)
{
    dense_backward_params(dw, db, dy, x, y, z, act, B, IN, OUT, 0);
    if (dx) dense_backward_input(dx, dy, w, B, IN, OUT);
}

/* ---- the dense entry of the layer table ---- */

static int dense_infer(struct rt_layer *l, char *err, size_t cap)
{
    if (l->in_shape.rank == 2) { /* a sequence: the same map at every position */
        l->out_shape = (struct rt_shape){.rank = 2, .d = {l->in_shape.d[0], l->spec.units}};
        return 0;
    }
    if (l->in_shape.rank != 1) {
        snprintf(err, cap,
                 "dense takes a flat input (D) or a sequence (T, D): put flatten "
                 "before it");
        return -1;
    }
    l->out_shape = (struct rt_shape){.rank = 1, .d = {l->spec.units}};
    return 0;
}

static size_t dense_weight_count(const struct rt_layer *l)
{
    return (size_t)l->out * l->in;
}

static size_t dense_bias_count(const struct rt_layer *l)
{
    return (size_t)l->out;
}

static int dense_weight_dims(const struct rt_layer *l, int64_t dims[4])
{
    dims[0] = l->out;
    dims[1] = l->in;
    return 2;
}

static size_t dense_buffer_bytes(const struct rt_layer *l, int max_batch)
{
    size_t bytes = rt_arena_footprint((size_t)max_batch * l->out * sizeof(float));
    if (rt_act_needs_preact(l->act)) bytes *= 2;
    return bytes;
}

static int dense_bind_buffers(struct rt_layer *l, struct rt_arena *a, int max_batch)
{
    size_t n = (size_t)max_batch * l->out * sizeof(float);
    l->y = rt_arena_alloc(a, n);
    if (!l->y) return RT_ERR_NOMEM;
    l->z = NULL;
    if (rt_act_needs_preact(l->act)) {
        l->z = rt_arena_alloc(a, n);
        if (!l->z) return RT_ERR_NOMEM;
    }
    return RT_OK;
}

static void dense_init(struct rt_layer *l, enum rt_init init, struct rt_rng *rng)
{
    rt_layer_init_weights(l, init, rng, l->in, l->out);
    if (init == RT_INIT_GPT2)
        for (size_t j = 0; j < (size_t)l->in * l->out; j++)
            l->w[j] = (float)(l->w[j] * l->init_scale);
}

static void dense_forward(struct rt_layer *l, const float *x, int B)
{
    if (l->csr)
        rt_dense_forward_csr(l->y, l->z, x, l->csr, l->b, l->act, B);
    else if (l->wt)
        rt_dense_forward_rowwise(l->y, l->z, x, l->wt, l->b, l->act, B, l->in, l->out);
    else
        rt_dense_forward(l->y, l->z, x, l->w, l->b, l->act, B, l->in, l->out);
}

/* The zero_bias_grad range is cleared after every backward, accumulating or not: what the
 * sum added there is rounding noise, so the range stays exactly 0 over the micro-batches. */
static void dense_backward(struct rt_layer *l, const float *x, int B)
{
    dense_backward_params(l->dw, l->db, l->dy, x, l->y, l->z, l->act, B, l->in, l->out,
                          l->accumulate);
    int lo = l->zero_bias_grad[0], hi = l->zero_bias_grad[1];
    if (hi > lo) memset(l->db + lo, 0, (size_t)(hi - lo) * sizeof *l->db);
}

static void dense_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    dense_backward_input(dx, l->dy, l->w, B, l->in, l->out); /* l->dy holds dZ now */
}

/* As dense.c issues them: X W^T, dZ^T X, dZ W. */
int rt_layer_linear_gemms(int B, int IN, int OUT, struct rt_gemm_shape *g)
{
    g[0] = (struct rt_gemm_shape){B, OUT, IN, 0, 1, 1, RT_GEMM_FORWARD};
    g[1] = (struct rt_gemm_shape){OUT, IN, B, 1, 0, 1, RT_GEMM_DW};
    g[2] = (struct rt_gemm_shape){B, IN, OUT, 0, 0, 1, RT_GEMM_DX};
    return 3;
}

static int dense_gemms(const struct rt_layer *l, int B, struct rt_gemm_shape *g)
{
    return rt_layer_linear_gemms(B, l->in, l->out, g);
}

const struct rt_layer_ops rt_layer_dense_ops = {
    .name = "dense",
    .infer = dense_infer,
    .weight_count = dense_weight_count,
    .bias_count = dense_bias_count,
    .weight_dims = dense_weight_dims,
    .buffer_bytes = dense_buffer_bytes,
    .bind_buffers = dense_bind_buffers,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
    .backward_dx = dense_backward_dx,
    .gemms = dense_gemms,
    .prunable = 1,
    .unit_role = RT_UNITS_MAKE,
};
