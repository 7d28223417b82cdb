/* pool_kernels.c - max and average pooling over NCHW batches, forward and backward.
 *
 * Every (sample, channel) plane is pooled on its own, so the kernels are a loop over B C
 * planes around a plane function. No padding and floor mode, as nn.MaxPool2d(k, s) and
 * nn.AvgPool2d(k, s) by default: a window never leaves the input, so there is no bounds
 * test in the inner loops and the average always divides by KH KW.
 *
 * Max pooling records the argmax of each window (caller's buffer) so that backward routes
 * the gradient without looking at x again; its comparison is torch's CPU one,
 * `v > max || isnan(v)`, which makes ties go to the first in scan order and a NaN win (the
 * last NaN of the window). Backward clears dx and then adds, so windows that overlap
 * (stride < kernel) sum their contributions as autograd does.
 *
 * Not here: convolution (conv_kernels.c), layer wiring (model.c).
 *
 * Dimension letters: B samples, C channels, H W input size, KH KW window, SH SW stride,
 * OH OW output size. */
#include "ringtrain/conv.h"

#include <math.h>
#include <string.h>

int rt_pool2d_geom_init(struct rt_pool2d_geom *g, int C, int H, int W, int KH, int KW, int SH,
                        int SW)
{
    if (C < 1 || H < 1 || W < 1 || KH < 1 || KW < 1 || SH < 1 || SW < 1) return -1;
    if (H < KH || W < KW) return -1;
    *g = (struct rt_pool2d_geom){C, H, W, KH, KW, SH, SW, (H - KH) / SH + 1, (W - KW) / SW + 1};
    return 0;
}

static size_t in_plane(const struct rt_pool2d_geom *g)
{
    return (size_t)g->H * g->W;
}

static size_t out_plane(const struct rt_pool2d_geom *g)
{
    return (size_t)g->OH * g->OW;
}

/* The running max over one window as selects, not branches: which tap wins is data, and a
 * mispredicted branch per tap cost more than the compares (measured: 2x2 pooling of
 * 128x32x28x28 took 17 ms with branches). A NaN wins and then stays, like torch; ties keep
 * the first tap in scan order. */
static inline void take_max(float *m, int32_t *best, float v, int32_t i)
{
    int win = (v > *m) | (v != v);
    *m = win ? v : *m;
    *best = win ? i : *best;
}

/* y, am (OH, OW) from x (H, W). */
static void maxpool_plane(float *y, int32_t *am, const float *x, const struct rt_pool2d_geom *g)
{
    for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
            int32_t first = (int32_t)(oh * g->SH * g->W + ow * g->SW), best = first;
            float m = x[first];
            for (int kh = 0; kh < g->KH; kh++)
                for (int kw = 0; kw < g->KW; kw++) {
                    int32_t i = first + kh * g->W + kw;
                    take_max(&m, &best, x[i], i);
                }
            y[oh * g->OW + ow] = m;
            am[oh * g->OW + ow] = best;
        }
}

void rt_maxpool2d_forward(float *y, int32_t *argmax, const float *x, const struct rt_pool2d_geom *g,
                          int B)
{
    size_t planes = (size_t)B * g->C;
    for (size_t i = 0; i < planes; i++)
        maxpool_plane(y + i * out_plane(g), argmax + i * out_plane(g), x + i * in_plane(g), g);
}

void rt_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax,
                           const struct rt_pool2d_geom *g, int B)
{
    size_t planes = (size_t)B * g->C, n = out_plane(g);
    memset(dx, 0, planes * in_plane(g) * sizeof *dx);
    for (size_t i = 0; i < planes; i++) {
        float *dxp = dx + i * in_plane(g);
        for (size_t j = 0; j < n; j++)
            dxp[argmax[i * n + j]] += dy[i * n + j];
    }
}

/* y (OH, OW) from x (H, W): a float sum in scan order, divided by the window size (as
 * torch, rather than multiplied by its reciprocal). */
static void avgpool_plane(float *y, const float *x, const struct rt_pool2d_geom *g)
{
    float n = (float)(g->KH * g->KW);
    for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
            const float *win = x + (size_t)oh * g->SH * g->W + (size_t)ow * g->SW;
            float acc = 0.0f;
            for (int kh = 0; kh < g->KH; kh++)
                for (int kw = 0; kw < g->KW; kw++)
                    acc += win[(size_t)kh * g->W + kw];
            y[oh * g->OW + ow] = acc / n;
        }
}

static void avgpool_plane_backward(float *dx, const float *dy, const struct rt_pool2d_geom *g)
{
    float n = (float)(g->KH * g->KW);
    for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
            float *win = dx + (size_t)oh * g->SH * g->W + (size_t)ow * g->SW;
            float d = dy[oh * g->OW + ow] / n;
            for (int kh = 0; kh < g->KH; kh++)
                for (int kw = 0; kw < g->KW; kw++)
                    win[(size_t)kh * g->W + kw] += d;
        }
}

void rt_avgpool2d_forward(float *y, const float *x, const struct rt_pool2d_geom *g, int B)
{
    size_t planes = (size_t)B * g->C;
    for (size_t i = 0; i < planes; i++)
        avgpool_plane(y + i * out_plane(g), x + i * in_plane(g), g);
}

void rt_avgpool2d_backward(float *dx, const float *dy, const struct rt_pool2d_geom *g, int B)
{
    size_t planes = (size_t)B * g->C;
    memset(dx, 0, planes * in_plane(g) * sizeof *dx);
    for (size_t i = 0; i < planes; i++)
        avgpool_plane_backward(dx + i * in_plane(g), dy + i * out_plane(g), g);
}
