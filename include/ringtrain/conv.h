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

/* Floats of scratch every rt_conv2d_* kernel below needs for batches of up to max_batch
 * samples; allocated once by the caller. With K = C KH KW and P = OH OW it is
 *   (K + OC) P max_batch   in general (the batch's columns, then an (OC, B P) block),
 *   0                      for a 1x1 kernel with stride 1 and no padding (x is its own
 *                          column matrix); scratch may then be NULL. */
size_t rt_conv2d_scratch_floats(const struct rt_conv2d_geom *g, int max_batch);

/* y (B, OC, OH, OW) = conv(x, w) + b, overwrites y: exactly torch.nn.functional.conv2d
 * (cross-correlation, zero padding) up to float rounding. One im2col over the batch and one
 * GEMM (fastest measured; bench_conv).
 * Scratch contract: on return scratch holds the batch's im2col columns, which the next
 * rt_conv2d_backward_params of this step reads instead of recomputing them. So between a
 * training forward and its backward the caller must not touch scratch, nor x, nor run another
 * conv kernel on the same scratch. A forward that is not followed by a backward (inference)
 * leaves nothing to clean up. A sample's output depends on its position in the batch through
 * BLAS rounding: for bit-reproducible rows use rt_conv2d_forward_rowwise. */
void rt_conv2d_forward(float *y, float *scratch, const float *x, const float *w, const float *b,
                       const struct rt_conv2d_geom *g, int B);

/* rt_conv2d_forward computed with one GEMM per sample, every one of the same shape on a
 * column matrix of the same layout: each sample's output depends on that sample alone, bit
 * for bit, whatever B and its position in the batch (for a given BLAS library, CPU and
 * thread count). Inference: it keeps nothing for backward (scratch is clobbered). */
void rt_conv2d_forward_rowwise(float *y, float *scratch, const float *x, const float *w,
                               const float *b, const struct rt_conv2d_geom *g, int B);

/* First half of the backward of rt_conv2d_forward: OVERWRITES dw (OC, C, KH, KW) and db (OC)
 * from dy (B, OC, OH, OW). Reads the columns the forward left in scratch (x is not read
 * again; it is passed for the 1x1 case, whose columns are x). Leaves in scratch a copy of dy
 * that rt_conv2d_backward_data reads. With B == 0 dw and db become zero. The caller may start
 * communicating dw and db as soon as this returns. */
void rt_conv2d_backward_params(float *dw, float *db, float *scratch, const float *dy,
                               const float *x, const struct rt_conv2d_geom *g, int B);

/* Second half: OVERWRITES dx (B, C, H, W) = dLoss/dx. Call only after rt_conv2d_backward_params
 * of the same step, with the same scratch and dy (it reads what _params left). B == 0 writes
 * nothing. */
void rt_conv2d_backward_data(float *dx, float *scratch, const float *dy, const float *w,
                             const struct rt_conv2d_geom *g, int B);

/* rt_conv2d_forward with a sparse kernel, for inference: w in CSR (dense.h) with rows = OC,
 * cols = C KH KW (the PyTorch weight flattened). Per sample: im2col, then for every output
 * channel b[o] plus, for each nonzero in column order, value times its column row. So each
 * sample's output depends on that sample alone, bit for bit. Same values as
 * rt_conv2d_forward up to float rounding. Scratch as sized above (clobbered). */
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
    RT_CONV_PLAN_SAMPLE_,      /* per sample: im2col + GEMM; backward recomputes the columns */
    RT_CONV_PLAN_SAMPLE_KEEP_, /* per sample, the forward's columns kept for backward */
    RT_CONV_PLAN_BATCH_,       /* one im2col + one GEMM over the batch; backward recomputes */
    RT_CONV_PLAN_BATCH_KEEP_,  /* batched, columns kept: what rt_conv2d_forward does */
    RT_CONV_PLAN_COUNT_
};

/* The three kernels above under an explicit plan (the same plan for all three of a step),
 * and the scratch that plan needs. */
size_t rt_conv2d_plan_scratch_floats_(const struct rt_conv2d_geom *g, int max_batch,
                                      enum rt_conv_plan_ plan);
void rt_conv2d_plan_forward_(float *y, float *scratch, const float *x, const float *w,
                             const float *b, const struct rt_conv2d_geom *g, int B,
                             enum rt_conv_plan_ plan);
void rt_conv2d_plan_backward_params_(float *dw, float *db, float *scratch, const float *dy,
                                     const float *x, const struct rt_conv2d_geom *g, int B,
                                     enum rt_conv_plan_ plan);
void rt_conv2d_plan_backward_data_(float *dx, float *scratch, const float *dy, const float *w,
                                   const struct rt_conv2d_geom *g, int B, enum rt_conv_plan_ plan);

/* The bare cblas_sgemm calls of one training step under plan: forward, dW and dX with the
 * kernels' shapes and transposes, no im2col, no layout pass, on c (OC P B + OC K floats),
 * cols (K P B) and w (OC K): the reference rate of the bench. */
void rt_conv2d_plan_gemms_(float *c, float *cols, const float *w, const struct rt_conv2d_geom *g,
                           int B, enum rt_conv_plan_ plan);

#endif
