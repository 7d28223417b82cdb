/* dense.h - kernels of one dense (fully connected) layer, on borrowed buffers.
 *
 * Shapes: X (B, IN), W (OUT, IN) row-major as nn.Linear.weight, b (OUT), Y (B, OUT).
 * No allocation, no I/O, cannot fail. */
#ifndef RT_DENSE_H
#define RT_DENSE_H

#include "ringtrain/model.h"

/* Y = X W^T + b (overwrites Y). B may be 0. */
void rt_dense_linear(float *y, const float *x, const float *w, const float *b, int B, int IN,
                     int OUT);

#endif
