/* norm_kernels.c - layer normalisation forward and backward (contract in
 * transformer_kernels.h). Statistics are summed in double: a row of d = 768 floats summed
 * in float loses digits that the gradient check (and PyTorch, which accumulates in float
 * with Welford's updates) would notice as a different variance.
 *
 * Dimension letters: rows, d width. */
#include "nn/transformer_kernels.h"

#include <math.h>
#include <string.h>

void rt_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int rows, int d, float eps)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        double s = 0.0, ss = 0.0;
        for (int i = 0; i < d; i++)
            s += xr[i];
        double mu = s / d;
        for (int i = 0; i < d; i++)
            ss += (xr[i] - mu) * (xr[i] - mu);
        float m = (float)mu, rs = (float)(1.0 / sqrt(ss / d + eps));
        for (int i = 0; i < d; i++)
            yr[i] = (xr[i] - m) * rs * w[i] + b[i];
        mean[r] = m;
        rstd[r] = rs;
    }
}

/* dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy w, xhat = (x - mean) rstd. */
static void row_dx(float *dx, const float *dy, const float *x, float m, float rs, const float *w,
                   int d)
{
    double sg = 0.0, sgx = 0.0;
    for (int i = 0; i < d; i++) {
        float g = dy[i] * w[i];
        sg += g;
        sgx += (double)g * (x[i] - m) * rs;
    }
    float mg = (float)(sg / d), mgx = (float)(sgx / d);
    for (int i = 0; i < d; i++)
        dx[i] = rs * (dy[i] * w[i] - mg - (x[i] - m) * rs * mgx);
}

/* dw and db are row sums: accumulating only skips their start from zero, so the additions
 * run in the order one pass over every micro-batch's rows would take. */
void rt_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *w, int rows, int d,
                           int accumulate)
{
    if (dw && !accumulate) memset(dw, 0, (size_t)d * sizeof *dw);
    if (db && !accumulate) memset(db, 0, (size_t)d * sizeof *db);
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * d, *dyr = dy + (size_t)r * d;
        float m = mean[r], rs = rstd[r];
        if (dw || db)
            for (int i = 0; i < d; i++) {
                if (dw) dw[i] += dyr[i] * (xr[i] - m) * rs;
                if (db) db[i] += dyr[i];
            }
        if (dx) row_dx(dx + (size_t)r * d, dyr, xr, m, rs, w, d);
    }
}
