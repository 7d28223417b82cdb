/* conv_kernels.c - conv2d forward, backward and sparse forward over cblas_sgemm (im2col).
 *
 * A convolution is a GEMM once the input is unrolled: row k = (c, kh, kw) of the column
 * matrix of a sample holds, for every output pixel p = (oh, ow), the input value that the
 * weight w[o][c][kh][kw] meets there (0 in the padding). Then, per sample,
 *
 *       y_s (OC, P) = W (OC, K) col_s (K, P)          forward
 *       dW (OC, K) += dy_s (OC, P) col_s^T (P, K)      backward, parameters
 *    dcol_s (K, P) = W^T (K, OC) dy_s (OC, P)          backward, data: col2im adds dcol_s
 *                                                      back onto the pixels it came from
 *
 * Two ways to run these over a batch (bench_conv measures both, "plans" below):
 *
 *   per sample   B GEMMs of N = P; y_s lands in NCHW directly; scratch (K, P).
 *   batched      the columns of all samples side by side, (K, B P), and ONE GEMM of
 *                N = B P; its output (OC, B P) is channel-major, so a layout pass moves
 *                each run of P floats to y (B, OC, P). Backward needs dy in the same
 *                (OC, B P) layout: backward_params makes it, backward_data reuses it.
 *
 *            per sample                       batched
 *     x_0 -> [col_0] -> W col_0 -> y_0      x_0 x_1 .. -> [col_0|col_1|..] (K, B P)
 *     x_1 -> [col_1] -> W col_1 -> y_1                  -> W cols (OC, B P) -> layout -> y
 *
 * and, orthogonally, whether backward_params recomputes the columns or reads the ones the
 * forward left in scratch (the "keep" plans: more scratch, one im2col less per step).
 *
 * Measured (bench_conv, 3x3 padding 1, OpenBLAS 0.3.21 on a 2-core Zen 4 shared with other
 * jobs; best step of 30, forward + both backward halves, ms):
 *
 *     shape        B  thr   sample  sample-keep   batch  batch-keep   sgemm alone
 *     1->32@28    64    1     2.08         2.20    4.42        4.23      1.31
 *     1->32@28   128    1     4.71         5.41   14.46       13.65      2.98
 *     32->64@14   64    1    17.7         19.0    24.7        26.2      15.7
 *     32->64@14  128    1    48.5         50.0    78.3        67.6      44.9
 *     1->32@28    64    2     1.91         1.75   10.29        8.82      1.48
 *     32->64@14   64    2    27.7         24.9    30.8        25.9      18.1
 *     32->64@14  128    2    57.7         70.5    69.5        58.1      41.9
 *
 * Per sample wins at one thread everywhere and is within ~10% of the best at two: one
 * sample's columns (K P, 225 KiB for 32->64@14) stay in L2 between im2col and the GEMM that
 * reads them, while the batch's columns (14-29 MB) go to memory and back, and the layout
 * passes cost more than the bigger GEMM saves. Keeping the columns saves an im2col in
 * backward_params but makes the forward write them out of cache. So the public kernels run
 * the per-sample plan, which also needs the least scratch, carries no state from forward to
 * backward, and is row-wise reproducible: every sample's GEMMs have the same shape and
 * operand layout, so no sample's rounding depends on where it sits in the batch. The other
 * plans stay, for tests and for bench_conv to measure again on other machines.
 *
 * The non-GEMM passes were tuned until the per-sample step on 32->64@14 came within ~10% of
 * its bare sgemm calls (eff in the bench): im2col copies the rows of a "same"-width tap in one
 * memcpy (flat_taps) and clears padding columns with strided stores, not per-row memsets; bias sums
 * use eight partial sums (sum8).
 *
 * A 1x1 kernel with stride 1 and no padding needs no im2col: x_s (C, H W) is col_s. It
 * always runs per sample, without scratch.
 *
 * Not here: pooling (pool_kernels.c), layer wiring (model.c), threads (BLAS's own).
 *
 * Dimension letters: B samples, C input channels, H W input size, OC output channels,
 * KH KW kernel, SH SW stride, PH PW padding, OH OW output size, K = C KH KW, P = OH OW. */
#include "ringtrain/conv.h"

#include <cblas.h>
#include <string.h>

/* The plan of the public kernels (see the measurements above). */
#define CONV_PLAN RT_CONV_PLAN_SAMPLE_

int rt_conv2d_geom_init(struct rt_conv2d_geom *g, int C, int H, int W, int OC, int KH, int KW,
                        int SH, int SW, int PH, int PW)
{
    if (C < 1 || H < 1 || W < 1 || OC < 1 || KH < 1 || KW < 1 || SH < 1 || SW < 1) return -1;
    if (PH < 0 || PW < 0 || PH > (1 << 20) || PW > (1 << 20)) return -1; /* no int overflow */
    if (H + 2 * PH < KH || W + 2 * PW < KW) return -1;
    *g = (struct rt_conv2d_geom){C, H, W, OC, KH, KW, SH, SW, PH, PW, 0, 0};
    g->OH = (H + 2 * PH - KH) / SH + 1;
    g->OW = (W + 2 * PW - KW) / SW + 1;
    return 0;
}

static size_t pixels(const struct rt_conv2d_geom *g)
{
    return (size_t)g->OH * (size_t)g->OW;
}

static size_t col_rows(const struct rt_conv2d_geom *g)
{
    return (size_t)g->C * (size_t)g->KH * (size_t)g->KW;
}

/* 1x1, stride 1, no padding: x_s is its own column matrix. */
static int pointwise(const struct rt_conv2d_geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PH == 0 && g->PW == 0;
}

static int batched(enum rt_conv_plan_ plan)
{
    return plan == RT_CONV_PLAN_BATCH_ || plan == RT_CONV_PLAN_BATCH_KEEP_;
}

size_t rt_conv2d_plan_scratch_floats_(const struct rt_conv2d_geom *g, int max_batch,
                                      enum rt_conv_plan_ plan)
{
    size_t K = col_rows(g), P = pixels(g), nb = max_batch > 0 ? (size_t)max_batch : 0;
    if (pointwise(g)) return 0;
    if (batched(plan)) return (K + (size_t)g->OC) * P * nb;
    return plan == RT_CONV_PLAN_SAMPLE_KEEP_ ? K * P * nb : K * P;
}

size_t rt_conv2d_scratch_floats(const struct rt_conv2d_geom *g, int max_batch)
{
    size_t need = rt_conv2d_plan_scratch_floats_(g, max_batch, CONV_PLAN);
    size_t one = rt_conv2d_plan_scratch_floats_(g, 1, RT_CONV_PLAN_SAMPLE_);
    return need > one ? need : one; /* the CSR kernel needs one sample's columns */
}

/* ---- im2col and col2im ---- */

/* [lo, hi): the output positions o in [0, n_out) whose input o s - pad + k lies in
 * [0, n_in). Outside it a kernel tap reads padding. */
static void tap_range(int *lo, int *hi, int k, int s, int pad, int n_in, int n_out)
{
    int first = pad - k;           /* need o s >= first */
    int last = n_in - 1 + pad - k; /* and o s <= last */
    int l = first <= 0 ? 0 : (first + s - 1) / s;
    int h = last < 0 ? 0 : last / s + 1;
    h = h < n_out ? h : n_out;
    *lo = l < h ? l : h;
    *hi = h;
}

/* Kernel position (kh, kw) reads the input at output rows [oh0, oh1) and columns [ow0, ow1),
 * padding elsewhere. */
struct tap {
    int kh, kw, oh0, oh1, ow0, ow1;
};

static struct tap tap_of(int kh, int kw, const struct rt_conv2d_geom *g)
{
    struct tap t = {kh, kw, 0, 0, 0, 0};
    tap_range(&t.oh0, &t.oh1, kh, g->SH, g->PH, g->H, g->OH);
    tap_range(&t.ow0, &t.ow1, kw, g->SW, g->PW, g->W, g->OW);
    return t;
}

/* Stride 1 and OW == W ("same" width, as 3x3 with padding 1): then pixel i of the tap's rows
 * reads input i + shift, so the rows are one run of the plane, copied in one go, and only
 * the padding columns inside that run need clearing. This is the Fashion-MNIST CNN's case;
 * short per-row copies cost as much as the forward GEMM there. */
static int flat_taps(const struct rt_conv2d_geom *g)
{
    return g->SH == 1 && g->SW == 1 && g->OW == g->W;
}

/* For flat taps: the shift, and [*lo, *hi) the part of the tap's rows whose input lies in
 * the plane (what falls outside is padding columns at the first or last row). */
static ptrdiff_t flat_span(size_t *lo, size_t *hi, const struct tap *t,
                           const struct rt_conv2d_geom *g)
{
    ptrdiff_t shift = (ptrdiff_t)(t->kh - g->PH) * g->W + t->kw - g->PW;
    ptrdiff_t l = (ptrdiff_t)t->oh0 * g->OW, h = (ptrdiff_t)t->oh1 * g->OW;
    ptrdiff_t n = (ptrdiff_t)g->H * g->W;
    l = l + shift < 0 ? -shift : l;
    h = h + shift > n ? n - shift : h;
    *lo = (size_t)l;
    *hi = (size_t)(h > l ? h : l);
    return shift;
}

static void zero(float *v, size_t n)
{
    memset(v, 0, n * sizeof *v);
}

/* Clears columns [j0, j1) of the tap's rows of row (P): column by column, as strided
 * stores; per-row memsets of one or two floats would cost a call each. */
static void zero_columns(float *row, int j0, int j1, const struct tap *t,
                         const struct rt_conv2d_geom *g)
{
    for (int j = j0; j < j1; j++)
        for (int oh = t->oh0; oh < t->oh1; oh++)
            row[(size_t)oh * g->OW + j] = 0.0f;
}

/* Clears the padding columns of the tap's rows. */
static void zero_side_columns(float *row, const struct tap *t, const struct rt_conv2d_geom *g)
{
    zero_columns(row, 0, t->ow0, t, g);
    zero_columns(row, t->ow1, g->OW, t, g);
}

/* Row (P) of a column matrix for tap t, from plane = x_s[c] (H, W). */
static void im2col_row(float *row, const float *plane, const struct tap *t,
                       const struct rt_conv2d_geom *g)
{
    int OW = g->OW;
    zero(row, (size_t)t->oh0 * OW);
    zero(row + (size_t)t->oh1 * OW, (size_t)(g->OH - t->oh1) * OW);
    if (flat_taps(g)) {
        size_t lo, hi;
        ptrdiff_t shift = flat_span(&lo, &hi, t, g);
        memcpy(row + lo, plane + (ptrdiff_t)lo + shift, (hi - lo) * sizeof *row);
    } else {
        for (int oh = t->oh0; oh < t->oh1; oh++) {
            float *r = row + (size_t)oh * OW;
            const float *src = plane + (size_t)(oh * g->SH - g->PH + t->kh) * g->W +
                               (ptrdiff_t)t->ow0 * g->SW - g->PW + t->kw;
            for (int ow = t->ow0; ow < t->ow1; ow++)
                r[ow] = src[(size_t)(ow - t->ow0) * g->SW];
        }
    }
    zero_side_columns(row, t, g); /* for flat taps, also what flat_span left out */
}

/* col (K, P) with row stride ld from one sample xs (C, H, W). */
static void im2col(float *col, size_t ld, const float *xs, const struct rt_conv2d_geom *g)
{
    size_t plane = (size_t)g->H * g->W, k = 0;
    for (int c = 0; c < g->C; c++)
        for (int kh = 0; kh < g->KH; kh++)
            for (int kw = 0; kw < g->KW; kw++, k++) {
                struct tap t = tap_of(kh, kw, g);
                im2col_row(col + k * ld, xs + c * plane, &t, g);
            }
}

/* The adjoint of im2col_row: plane (H, W) += each tap of row (P) at the pixel it read.
 * Flat taps add the whole run after clearing the padding columns of row (which is why row
 * is not const): those then add zeros to pixels of the neighbouring input rows. */
static void col2im_row(float *plane, float *row, const struct tap *t,
                       const struct rt_conv2d_geom *g)
{
    if (flat_taps(g)) {
        size_t lo, hi;
        ptrdiff_t shift = flat_span(&lo, &hi, t, g);
        zero_side_columns(row, t, g);
        float *dst = plane + ((ptrdiff_t)lo + shift);
        const float *src = row + lo;
        for (size_t i = 0; i < hi - lo; i++)
            dst[i] += src[i];
        return;
    }
    for (int oh = t->oh0; oh < t->oh1; oh++) {
        const float *r = row + (size_t)oh * g->OW;
        float *dst = plane + (size_t)(oh * g->SH - g->PH + t->kh) * g->W +
                     (ptrdiff_t)t->ow0 * g->SW - g->PW + t->kw;
        for (int ow = t->ow0; ow < t->ow1; ow++)
            dst[(size_t)(ow - t->ow0) * g->SW] += r[ow];
    }
}

/* OVERWRITES dxs (C, H, W) with the col2im of dcol (K, P), row stride ld; dcol is
 * clobbered (col2im_row). */
static void col2im(float *dxs, float *dcol, size_t ld, const struct rt_conv2d_geom *g)
{
    size_t plane = (size_t)g->H * g->W, k = 0;
    zero(dxs, (size_t)g->C * plane);
    for (int c = 0; c < g->C; c++)
        for (int kh = 0; kh < g->KH; kh++)
            for (int kw = 0; kw < g->KW; kw++, k++) {
                struct tap t = tap_of(kh, kw, g);
                col2im_row(dxs + c * plane, dcol + k * ld, &t, g);
            }
}

/* ---- per-sample plans ---- */

static size_t in_floats(const struct rt_conv2d_geom *g)
{
    return (size_t)g->C * g->H * g->W;
}

static size_t out_floats(const struct rt_conv2d_geom *g)
{
    return (size_t)g->OC * pixels(g);
}

/* Where sample s's columns live: x_s itself (1x1), slot s of a (K, B P) block (kept), or
 * the single (K, P) block. Returns the row stride in *ld. */
static float *sample_col(size_t *ld, float *scratch, int s, int B, int keep,
                         const struct rt_conv2d_geom *g)
{
    size_t P = pixels(g);
    *ld = keep ? P * (size_t)B : P;
    return keep ? scratch + (size_t)s * P : scratch;
}

/* ys (OC, P) = b + W col (col with row stride ld): the GEMM adds onto the bias (beta 1). */
static void sample_forward(float *ys, const float *col, size_t ld, const float *w, const float *b,
                           const struct rt_conv2d_geom *g)
{
    int P = (int)pixels(g), K = (int)col_rows(g);
    for (int o = 0; o < g->OC; o++)
        for (int p = 0; p < P; p++)
            ys[(size_t)o * P + p] = b[o];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->OC, P, K, 1.0f, w, K, col, (int)ld,
                1.0f, ys, P);
}

static void forward_samples(float *y, float *scratch, const float *x, const float *w,
                            const float *b, const struct rt_conv2d_geom *g, int B, int keep)
{
    for (int s = 0; s < B; s++) {
        const float *xs = x + (size_t)s * in_floats(g);
        float *ys = y + (size_t)s * out_floats(g);
        if (pointwise(g)) {
            sample_forward(ys, xs, pixels(g), w, b, g);
            continue;
        }
        size_t ld;
        float *col = sample_col(&ld, scratch, s, B, keep, g);
        im2col(col, ld, xs, g);
        sample_forward(ys, col, ld, w, b, g);
    }
}

/* Sum of v (n): eight interleaved float partial sums, which the compiler keeps in vector
 * registers (one running sum would wait on every add's latency), combined pairwise. A fixed
 * order for a given n. */
static float sum8(const float *v, size_t n)
{
    float a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            a[j] += v[i + j];
    for (; i < n; i++)
        a[0] += v[i];
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

/* db[o] += sum of row o of dys (OC, P). */
static void add_row_sums(float *db, const float *dys, const struct rt_conv2d_geom *g)
{
    size_t P = pixels(g);
    for (int o = 0; o < g->OC; o++)
        db[o] += sum8(dys + (size_t)o * P, P);
}

/* dw and db from zero; with B == 0 they stay zero (a GEMM with K = 0 is asked to write
 * beta C, which not every BLAS honours). Skipped when accumulating: the sums go on from the
 * earlier micro-batches' gradients, and B == 0 then leaves them as they are. */
static void clear_param_grads(float *dw, float *db, const struct rt_conv2d_geom *g)
{
    zero(dw, (size_t)g->OC * col_rows(g));
    zero(db, (size_t)g->OC);
}

/* dW (OC, K) (+)= dy_s col_s^T, one GEMM per sample, the first overwriting (beta 0) unless
 * accumulating. */
static void params_samples(float *dw, float *db, float *scratch, const float *dy, const float *x,
                           const struct rt_conv2d_geom *g, int B, int keep, int accumulate)
{
    int P = (int)pixels(g), K = (int)col_rows(g);
    if (!accumulate) clear_param_grads(dw, db, g);
    for (int s = 0; s < B; s++) {
        const float *xs = x + (size_t)s * in_floats(g);
        const float *dys = dy + (size_t)s * out_floats(g);
        size_t ld = (size_t)P;
        const float *col = xs;
        if (!pointwise(g)) {
            float *c = sample_col(&ld, scratch, s, B, keep, g);
            if (!keep) im2col(c, ld, xs, g);
            col = c;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->OC, K, P, 1.0f, dys, P, col,
                    (int)ld, s == 0 && !accumulate ? 0.0f : 1.0f, dw, K);
        add_row_sums(db, dys, g);
    }
}

/* dx_s = col2im(W^T dy_s) per sample; the (K, P) product goes to the start of scratch (the
 * kept columns are no longer needed). 1x1: W^T dy_s is dx_s itself. */
static void data_samples(float *dx, float *scratch, const float *dy, const float *w,
                         const struct rt_conv2d_geom *g, int B)
{
    int P = (int)pixels(g), K = (int)col_rows(g);
    for (int s = 0; s < B; s++) {
        const float *dys = dy + (size_t)s * out_floats(g);
        float *dxs = dx + (size_t)s * in_floats(g);
        float *dcol = pointwise(g) ? dxs : scratch;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, g->OC, 1.0f, w, K, dys, P, 0.0f,
                    dcol, P);
        if (!pointwise(g)) col2im(dxs, dcol, (size_t)P, g);
    }
}

/* ---- batched plans: scratch = cols (K, B P), then t (OC, B P) ---- */

static float *batch_t(float *scratch, const struct rt_conv2d_geom *g, int B)
{
    return scratch + col_rows(g) * pixels(g) * (size_t)B;
}

static void im2col_batch(float *cols, const float *x, const struct rt_conv2d_geom *g, int B)
{
    size_t P = pixels(g);
    for (int s = 0; s < B; s++)
        im2col(cols + (size_t)s * P, P * (size_t)B, x + (size_t)s * in_floats(g), g);
}

/* y (B, OC, P) = t (OC, B P) + b: runs of P floats change places. */
static void t_to_nchw(float *y, const float *t, const float *b, const struct rt_conv2d_geom *g,
                      int B)
{
    size_t P = pixels(g), BP = P * (size_t)B;
    for (int s = 0; s < B; s++)
        for (int o = 0; o < g->OC; o++) {
            const float *src = t + (size_t)o * BP + (size_t)s * P;
            float *dst = y + ((size_t)s * g->OC + o) * P;
            for (size_t p = 0; p < P; p++)
                dst[p] = src[p] + b[o];
        }
}

/* t (OC, B P) = dy (B, OC, P) rearranged, and db += its row sums, in add_row_sums' order. */
static void nchw_to_t(float *t, float *db, const float *dy, const struct rt_conv2d_geom *g, int B)
{
    size_t P = pixels(g), BP = P * (size_t)B;
    for (int s = 0; s < B; s++) {
        const float *dys = dy + (size_t)s * out_floats(g);
        for (int o = 0; o < g->OC; o++)
            memcpy(t + (size_t)o * BP + (size_t)s * P, dys + (size_t)o * P, P * sizeof *t);
        add_row_sums(db, dys, g);
    }
}

static void forward_batch(float *y, float *scratch, const float *x, const float *w, const float *b,
                          const struct rt_conv2d_geom *g, int B)
{
    int BP = (int)(pixels(g) * (size_t)B), K = (int)col_rows(g);
    float *t = batch_t(scratch, g, B);
    im2col_batch(scratch, x, g, B);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->OC, BP, K, 1.0f, w, K, scratch, BP,
                0.0f, t, BP);
    t_to_nchw(y, t, b, g, B);
}

static void params_batch(float *dw, float *db, float *scratch, const float *dy, const float *x,
                         const struct rt_conv2d_geom *g, int B, int keep, int accumulate)
{
    int BP = (int)(pixels(g) * (size_t)B), K = (int)col_rows(g);
    float *t = batch_t(scratch, g, B);
    if (!accumulate) clear_param_grads(dw, db, g);
    if (B == 0) return;
    if (!keep) im2col_batch(scratch, x, g, B);
    nchw_to_t(t, db, dy, g, B);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->OC, K, BP, 1.0f, t, BP, scratch, BP,
                accumulate ? 1.0f : 0.0f, dw, K);
}

/* dcols (K, B P) = W^T t, over the columns (no longer needed), then col2im per sample. */
static void data_batch(float *dx, float *scratch, const float *w, const struct rt_conv2d_geom *g,
                       int B)
{
    int BP = (int)(pixels(g) * (size_t)B), K = (int)col_rows(g);
    const float *t = batch_t(scratch, g, B);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, BP, g->OC, 1.0f, w, K, t, BP, 0.0f,
                scratch, BP);
    for (int s = 0; s < B; s++)
        col2im(dx + (size_t)s * in_floats(g), scratch + (size_t)s * pixels(g), (size_t)BP, g);
}

/* ---- the plans behind the public kernels ---- */

static int keeps(enum rt_conv_plan_ plan)
{
    return plan == RT_CONV_PLAN_SAMPLE_KEEP_ || plan == RT_CONV_PLAN_BATCH_KEEP_;
}

void rt_conv2d_plan_forward_(float *y, float *scratch, const float *x, const float *w,
                             const float *b, const struct rt_conv2d_geom *g, int B,
                             enum rt_conv_plan_ plan)
{
    if (B == 0) return;
    if (batched(plan) && !pointwise(g))
        forward_batch(y, scratch, x, w, b, g, B);
    else
        forward_samples(y, scratch, x, w, b, g, B, keeps(plan));
}

void rt_conv2d_plan_backward_params_(float *dw, float *db, float *scratch, const float *dy,
                                     const float *x, const struct rt_conv2d_geom *g, int B,
                                     int accumulate, enum rt_conv_plan_ plan)
{
    if (batched(plan) && !pointwise(g))
        params_batch(dw, db, scratch, dy, x, g, B, keeps(plan), accumulate);
    else
        params_samples(dw, db, scratch, dy, x, g, B, keeps(plan), accumulate);
}

void rt_conv2d_plan_backward_data_(float *dx, float *scratch, const float *dy, const float *w,
                                   const struct rt_conv2d_geom *g, int B, enum rt_conv_plan_ plan)
{
    if (B == 0) return;
    if (batched(plan) && !pointwise(g))
        data_batch(dx, scratch, w, g, B);
    else
        data_samples(dx, scratch, dy, w, g, B);
}

void rt_conv2d_forward(float *y, float *scratch, const float *x, const float *w, const float *b,
                       const struct rt_conv2d_geom *g, int B)
{
    rt_conv2d_plan_forward_(y, scratch, x, w, b, g, B, CONV_PLAN);
}

void rt_conv2d_backward_params(float *dw, float *db, float *scratch, const float *dy,
                               const float *x, const struct rt_conv2d_geom *g, int B,
                               int accumulate)
{
    rt_conv2d_plan_backward_params_(dw, db, scratch, dy, x, g, B, accumulate, CONV_PLAN);
}

void rt_conv2d_backward_data(float *dx, float *scratch, const float *dy, const float *w,
                             const struct rt_conv2d_geom *g, int B)
{
    rt_conv2d_plan_backward_data_(dx, scratch, dy, w, g, B, CONV_PLAN);
}

/* ---- sparse forward ---- */

/* ys (OC, P) = b + W col for W in CSR: per output channel, an axpy of each nonzero's column
 * row across the P pixels (contiguous, so it vectorises). Four nonzeros go into one
 * statement to save loads and stores of the output row; C adds left to right, rounding each
 * step to float, so that is the same sum as four separate +=. */
static void csr_sample(float *ys, const float *col, const struct rt_csr *w, const float *b,
                       size_t P)
{
    for (int o = 0; o < w->rows; o++) {
        float *restrict yo = ys + (size_t)o * P;
        for (size_t p = 0; p < P; p++)
            yo[p] = b[o];
        int64_t k = w->indptr[o], end = w->indptr[o + 1];
        for (; k + 4 <= end; k += 4) {
            const float *c0 = col + (size_t)w->indices[k] * P,
                        *c1 = col + (size_t)w->indices[k + 1] * P;
            const float *c2 = col + (size_t)w->indices[k + 2] * P,
                        *c3 = col + (size_t)w->indices[k + 3] * P;
            float v0 = w->data[k], v1 = w->data[k + 1], v2 = w->data[k + 2], v3 = w->data[k + 3];
            for (size_t p = 0; p < P; p++)
                yo[p] = yo[p] + v0 * c0[p] + v1 * c1[p] + v2 * c2[p] + v3 * c3[p];
        }
        for (; k < end; k++) {
            const float *c0 = col + (size_t)w->indices[k] * P;
            float v0 = w->data[k];
            for (size_t p = 0; p < P; p++)
                yo[p] += v0 * c0[p];
        }
    }
}

void rt_conv2d_forward_csr(float *y, float *scratch, const float *x, const struct rt_csr *w,
                           const float *b, const struct rt_conv2d_geom *g, int B)
{
    size_t P = pixels(g);
    for (int s = 0; s < B; s++) {
        const float *xs = x + (size_t)s * in_floats(g);
        const float *col = xs;
        if (!pointwise(g)) {
            im2col(scratch, P, xs, g);
            col = scratch;
        }
        csr_sample(y + (size_t)s * out_floats(g), col, w, b, P);
    }
}

/* ---- the bench's reference: the same GEMMs, nothing else ---- */

void rt_conv2d_plan_gemms_(float *c, float *cols, const float *w, const struct rt_conv2d_geom *g,
                           int B, enum rt_conv_plan_ plan)
{
    int P = (int)pixels(g), K = (int)col_rows(g), OC = g->OC;
    int n = batched(plan) ? B : 1, N = P * n;
    float *dw = c + (size_t)B * OC * P;
    for (int s = 0; s < B; s += n) {
        float *col = cols + (size_t)s * K * P, *out = c + (size_t)s * OC * P;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, N, K, 1.0f, w, K, col, N, 0.0f,
                    out, N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, K, N, 1.0f, out, N, col, N,
                    s == 0 ? 0.0f : 1.0f, dw, K);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, OC, 1.0f, w, K, out, N, 0.0f,
                    col, N);
    }
}
