/* clip.c - global gradient-norm clipping, as torch.nn.utils.clip_grad_norm_ (L2 norm).
 *
 * The sum of squares is accumulated in double over eight independent partial sums: one
 * running sum would make the pass latency-bound (one dependent add per element), while
 * eight lanes vectorise and keep the result independent of the machine (the order of the
 * additions is fixed by the code, not by the compiler).
 *
 * Dimension letters: n gradients. */
#include "ringtrain/optim.h"

#include <math.h>

#define CLIP_LANES 8

double rt_grad_sum_squares(const float *restrict g, size_t n)
{
    double acc[CLIP_LANES] = {0};
    size_t i = 0;
    for (; i + CLIP_LANES <= n; i += CLIP_LANES)
        for (int j = 0; j < CLIP_LANES; j++)
            acc[j] += (double)g[i + j] * (double)g[i + j];
    for (int j = 0; i < n; i++, j++)
        acc[j] += (double)g[i] * (double)g[i];
    double total = 0.0;
    for (int j = 0; j < CLIP_LANES; j++)
        total += acc[j];
    return total;
}

float rt_clip_coef(double norm, double max_norm)
{
    /* torch: coef = max_norm / (norm + 1e-6), applied only when it is below 1. A NaN norm
     * fails the test and leaves grads alone; the caller sees NaN in the norm. */
    if (!(max_norm > 0.0)) return 1.0f;
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}

double rt_clip_grad_norm(float *grads, size_t n, double max_norm)
{
    double norm = sqrt(rt_grad_sum_squares(grads, n));
    float c = rt_clip_coef(norm, max_norm);
    if (c != 1.0f)
        for (size_t i = 0; i < n; i++)
            grads[i] *= c;
    return norm;
}
