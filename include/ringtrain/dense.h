/* dense.h - kernels of one dense (fully connected) layer, on borrowed buffers.
 *
 * Shapes: X (B, IN), W (OUT, IN) row-major as nn.Linear.weight, b (OUT), Y (B, OUT),
 * Z (B, OUT) the pre-activation X W^T + b. Every kernel takes B >= 0.
 * No allocation, no I/O, cannot fail. */
#ifndef RT_DENSE_H
#define RT_DENSE_H

#include <stdint.h>

#include "ringtrain/model.h"

/* Y = X W^T + b (overwrites Y). B may be 0. */
void rt_dense_linear(float *y, const float *x, const float *w, const float *b, int B, int IN,
                     int OUT);

/* Y = act(X W^T + b) (overwrites y). z receives X W^T + b when rt_act_needs_preact(act)
 * (backward then needs it) and must be non-NULL in that case; otherwise it is unused and
 * may be NULL. */
void rt_dense_forward(float *y, float *z, const float *x, const float *w, const float *b,
                      enum rt_act act, int B, int IN, int OUT);

/* A weight matrix (OUT, IN) in compressed sparse rows: row o's nonzeros are
 * data[indptr[o] .. indptr[o+1]) at columns indices[...] (scipy.sparse.csr_matrix layout). */
struct rt_csr {
    int rows, cols;
    int64_t nnz;
    int64_t *indptr; /* (rows + 1) */
    int32_t *indices;
    float *data;
};

/* rt_dense_forward with W in CSR: B * nnz multiply-adds instead of B * IN * OUT. Each
 * output is summed over its row's nonzeros in column order. */
void rt_dense_forward_csr(float *y, float *z, const float *x, const struct rt_csr *w,
                          const float *b, enum rt_act act, int B);

/* rt_dense_forward with the weights transposed, wt (IN, OUT) = W^T, and a fixed order of
 * operations: each output is b-free X W^T summed over k = 0..IN-1 in increasing order in
 * float, then bias and activation as rt_dense_forward. A row's result therefore depends on
 * that row alone (not on B or the other rows), bit for bit. Portable C the compiler
 * vectorises across outputs; no BLAS. */
void rt_dense_forward_rowwise(float *y, float *z, const float *x, const float *wt, const float *b,
                              enum rt_act act, int B, int IN, int OUT);

/* Backward of rt_dense_forward. dy (B, OUT) holds dLoss/dY on entry and dLoss/dZ on return
 * (it is overwritten in place: scratch). OVERWRITES dw (OUT, IN) = dZ^T X, db (OUT) =
 * colsum(dZ) and, unless dx is NULL, dx (B, IN) = dZ W. y and z are what forward wrote
 * (z may be NULL unless rt_act_needs_preact(act)). With B == 0, dw and db become zero. */
void rt_dense_backward(float *dx, float *dw, float *db, float *dy, const float *x, const float *w,
                       const float *y, const float *z, enum rt_act act, int B, int IN, int OUT);

/* 1 when act's derivative needs the pre-activation (gelu), 0 when its output suffices. */
int rt_act_needs_preact(enum rt_act act);

#endif
