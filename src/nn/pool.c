/* pool.c - the maxpool2d and avgpool2d entries of the layer table: nn.MaxPool2d(k, s) and
 * nn.AvgPool2d(k, s) (no padding, floor mode) on NCHW rows. The two kinds share their
 * shape rule and buffers, so they share this file; the kernels are in pool_kernels.c.
 * Dimension letters: B rows; C, H, W the input plane; OH, OW the output. */
#include "ringtrain/conv.h"
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <stdio.h>

static int pool_infer(struct rt_layer *l, char *err, size_t cap)
{
    const struct rt_layer_spec *s = &l->spec;
    if (l->in_shape.rank != 3) {
        snprintf(err, cap, "pooling takes images (C, H, W), not a flat input");
        return -1;
    }
    const int *d = l->in_shape.d;
    if (rt_pool2d_geom_init(&l->g.pool, d[0], d[1], d[2], s->kernel[0], s->kernel[1], s->stride[0],
                            s->stride[1]) < 0) {
        snprintf(err, cap, "a %dx%d window leaves nothing of the %dx%d input", s->kernel[0],
                 s->kernel[1], d[1], d[2]);
        return -1;
    }
    l->out_shape = (struct rt_shape){.rank = 3, .d = {d[0], l->g.pool.OH, l->g.pool.OW}};
    return 0;
}

static size_t pool_buffer_bytes(const struct rt_layer *l, int max_batch)
{
    size_t n = (size_t)max_batch * l->out;
    size_t arg = l->spec.kind == RT_LAYER_MAXPOOL2D ? rt_arena_footprint(n * sizeof(int32_t)) : 0;
    return rt_arena_footprint(n * sizeof(float)) + arg;
}

static int pool_bind_buffers(struct rt_layer *l, struct rt_arena *a, int max_batch)
{
    size_t n = (size_t)max_batch * l->out;
    l->y = rt_arena_alloc(a, n * sizeof(float));
    if (l->spec.kind == RT_LAYER_MAXPOOL2D) l->aux = rt_arena_alloc(a, n * sizeof(int32_t));
    return !l->y || (l->spec.kind == RT_LAYER_MAXPOOL2D && !l->aux) ? RT_ERR_NOMEM : RT_OK;
}

static void maxpool_forward(struct rt_layer *l, const float *x, int B)
{
    rt_maxpool2d_forward(l->y, l->aux, x, &l->g.pool, B);
}

static void maxpool_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    rt_maxpool2d_backward(dx, l->dy, l->aux, &l->g.pool, B);
}

static void avgpool_forward(struct rt_layer *l, const float *x, int B)
{
    rt_avgpool2d_forward(l->y, x, &l->g.pool, B);
}

static void avgpool_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    rt_avgpool2d_backward(dx, l->dy, &l->g.pool, B);
}

const struct rt_layer_ops rt_layer_maxpool2d_ops = {
    .name = "maxpool2d",
    .infer = pool_infer,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = pool_buffer_bytes,
    .bind_buffers = pool_bind_buffers,
    .forward = maxpool_forward,
    .backward_dx = maxpool_backward_dx,
    .unit_role = RT_UNITS_PASS,
};

const struct rt_layer_ops rt_layer_avgpool2d_ops = {
    .name = "avgpool2d",
    .infer = pool_infer,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = pool_buffer_bytes,
    .bind_buffers = pool_bind_buffers,
    .forward = avgpool_forward,
    .backward_dx = avgpool_backward_dx,
    .unit_role = RT_UNITS_PASS,
};
