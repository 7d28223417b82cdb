/* conv.h - kernels of one conv2d, max-pool or average-pool layer over NCHW batches, on
 * borrowed buffers. Pure kernels: the layer table (layer.h) wires them.
 *
 * Shapes, as PyTorch's default (contiguous, row-major) layout: x (B, C, H, W), y (B, OC, OH,
 * OW), conv weight w (OC, C, KH, KW) as nn.Conv2d.weight, bias b (OC). Gradients have the
 * shape of what they differentiate. Every kernel takes B >= 0 and, once its geometry was
 * accepted by *_geom_init, cannot fail: no allocation, no I/O. Scratch is the caller's.
 * Sizes must keep B * C * H * W, B * OC * OH * OW and the scratch below within INT_MAX
 * (they are BLAS ints). */
#ifndef RT_CONV_H
#define RT_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "ringtrain/dense.h"

struct rt_conv2d_geom {             /* one conv2d layer on one sample */
    int C, H, W;                    /* input channels, height, width */
    int OC, KH, KW, SH, SW, PH, PW; /* output channels, kernel, stride, zero padding */
    int OH, OW;                     /* output size: (H + 2PH - KH)/SH + 1, same for W */
};

/* Fills g; returns 0, or -1 (g untouched) when any size or stride is < 1, a padding is < 0,
 * or the output would be empty (kernel larger than the padded input). */
int rt_conv2d_geom_init(struct rt_conv2d_geom *g, int C, int H, int W, int OC, int KH, int KW,
                        int SH, int SW, int PH, int PW);

/* Floats of scratch every rt_conv2d_* kernel below needs, allocated once by the caller:
 * K P = C KH KW OH OW (one sample's im2col columns, 225 KiB for 32->64 3x3 on 14x14), or 0
 * for a 1x1 kernel with stride 1 and no padding (x is its own column matrix; scratch may
 * then be NULL). The chosen plan works sample by sample, so this does not grow with
 * max_batch; the argument stays so that a batched plan could be chosen without changing
 * callers. */
size_t rt_conv2d_scratch_floats(const struct rt_conv2d_geom *g, int max_batch);

/* y (B, OC, OH, OW) = conv(x, w) + b, overwrites y: torch.nn.functional.conv2d
 * (cross-correlation, zero padding) up to float rounding. Per sample, im2col into scratch
 * and one cblas_sgemm; this beat one batched GEMM in bench_conv (see conv_kernels.c).
 * Row-wise reproducible: every sample runs a GEMM of the same shape on a column matrix of
 * the same layout, so each sample's output depends on that sample alone, bit for bit,
 * whatever B and its position in the batch (for a given BLAS library, CPU and BLAS thread
 * count). Scratch is clobbered and carries nothing to backward: a forward may run alone
 * (inference), and backward may come later with other conv calls in between. */
void rt_conv2d_forward(float *y, float *scratch, const float *x, const float *w, const float *b,
                       const struct rt_conv2d_geom *g, int B);

/* First half of the backward of rt_conv2d_forward: OVERWRITES dw (OC, C, KH, KW) and db (OC)
 * from dy (B, OC, OH, OW) and the forward's x (its columns are recomputed into scratch), or
 * with accumulate ADDS to them (gradient accumulation over micro-batches). With B == 0 dw
 * and db become zero (accumulate: stay as they are). The caller may start communicating dw
 * and db as soon as this returns. */
void rt_conv2d_backward_params(float *dw, float *db, float *scratch, const float *dy,
                               const float *x, const struct rt_conv2d_geom *g, int B,
                               int accumulate);

/* Second half: OVERWRITES dx (B, C, H, W) = dLoss/dx from dy and w. Meant to run after
 * rt_conv2d_backward_params of the same step (a batched plan would reuse what _params left
 * in scratch); the chosen plan reads nothing from scratch. B == 0 writes nothing. */
void rt_conv2d_backward_data(float *dx, float *scratch, const float *dy, const float *w,
                             const struct rt_conv2d_geom *g, int B);

/* rt_conv2d_forward with a sparse kernel, for inference: w in CSR (dense.h) with rows = OC,
 * cols = C KH KW (the PyTorch weight flattened). Per sample: im2col, then for every output
 * channel b[o] plus, for each nonzero in column order, value times its column row. So each
 * sample's output depends on that sample alone, bit for bit. Same values as
 * rt_conv2d_forward up to float rounding; faster than it from about 70% (32->64@14) to 85%
 * (1->32@28) zeros, 2.3x at 90% on 32->64@14 (bench_conv). Scratch as sized above (clobbered). */
void rt_conv2d_forward_csr(float *y, float *scratch, const float *x, const struct rt_csr *w,
                           const float *b, const struct rt_conv2d_geom *g, int B);

struct rt_pool2d_geom { /* one pooling layer on one sample; no padding, floor mode */
    int C, H, W;        /* input channels, height, width */
    int KH, KW, SH, SW; /* window and stride */
    int OH, OW;         /* (H - KH)/SH + 1, same for W */
};

/* As nn.MaxPool2d((KH, KW), (SH, SW)) / nn.AvgPool2d: fills g and returns 0, or -1 (g
 * untouched) when any size or stride is < 1 or the output would be empty (window larger
 * than the input). */
int rt_pool2d_geom_init(struct rt_pool2d_geom *g, int C, int H, int W, int KH, int KW, int SH,
                        int SW);

/* y (B, C, OH, OW) = max over each window of x (B, C, H, W), overwrites y and argmax
 * (B, C, OH, OW): the index ih W + iw within the input plane of each maximum. Ties go to
 * the first in row-major scan order; a NaN in the window gives NaN, its argmax the last NaN
 * (as torch's CPU kernel). */
void rt_maxpool2d_forward(float *y, int32_t *argmax, const float *x, const struct rt_pool2d_geom *g,
                          int B);

/* OVERWRITES dx (B, C, H, W): dy (B, C, OH, OW) routed to each window's argmax (as the
 * forward left it); where windows overlap (stride < kernel) the contributions add up. */
void rt_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax,
                           const struct rt_pool2d_geom *g, int B);

/* y (B, C, OH, OW) = mean over each KH x KW window of x, overwrites y. */
void rt_avgpool2d_forward(float *y, const float *x, const struct rt_pool2d_geom *g, int B);

/* OVERWRITES dx (B, C, H, W): each dy spread evenly over its window, overlaps added up. */
void rt_avgpool2d_backward(float *dx, const float *dy, const struct rt_pool2d_geom *g, int B);

/* ---- exported for tests and bench_conv only ('_' suffix): the strategies measured ---- */

enum rt_conv_plan_ {
    RT_CONV_PLAN_SAMPLE_,      /* per sample: im2col + GEMM; backward recomputes the columns:
                                * what the public kernels do */
    RT_CONV_PLAN_SAMPLE_KEEP_, /* per sample, the forward's columns kept for backward */
    RT_CONV_PLAN_BATCH_,       /* one im2col + one GEMM over the batch; backward recomputes */
    RT_CONV_PLAN_BATCH_KEEP_,  /* batched, columns kept */
    RT_CONV_PLAN_COUNT_
};

/* The three kernels above under an explicit plan, and the scratch that plan needs for
 * batches of up to max_batch. The same plan for all three calls of a step, in order
 * (forward, _params, _data) on the same scratch, untouched in between: the keep plans leave
 * the columns in scratch for _params, the batched plans leave dy rearranged there for
 * _data. Scratch, with K = C KH KW and P = OH OW: SAMPLE K P, SAMPLE_KEEP K P B, BATCH and
 * BATCH_KEEP (K + OC) P B (the batch's columns, then an (OC, B P) block); 0 for 1x1. */
size_t rt_conv2d_plan_scratch_floats_(const struct rt_conv2d_geom *g, int max_batch,
                                      enum rt_conv_plan_ plan);
void rt_conv2d_plan_forward_(float *y, float *scratch, const float *x, const float *w,
                             const float *b, const struct rt_conv2d_geom *g, int B,
                             enum rt_conv_plan_ plan);
void rt_conv2d_plan_backward_params_(float *dw, float *db, float *scratch, const float *dy,
                                     const float *x, const struct rt_conv2d_geom *g, int B,
                                     int accumulate, enum rt_conv_plan_ plan);
void rt_conv2d_plan_backward_data_(float *dx, float *scratch, const float *dy, const float *w,
                                   const struct rt_conv2d_geom *g, int B, enum rt_conv_plan_ plan);

/* The bare cblas_sgemm calls of one training step under plan: forward, dW and dX with the
 * kernels' shapes and transposes, no im2col, no layout pass, on c (OC P B + OC K floats),
 * cols (K P B) and w (OC K): the reference rate of the bench. */
void rt_conv2d_plan_gemms_(float *c, float *cols, const float *w, const struct rt_conv2d_geom *g,
                           int B, enum rt_conv_plan_ plan);

#endif
