/* flatten.c - (C, H, W) -> (C H W), as nn.Flatten: NCHW rows are already flat in memory,
 * so both directions are one copy. A flat input passes unchanged. */
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <string.h>

static int flatten_infer(struct rt_layer *l, char *err, size_t cap)
{
    (void)err;
    (void)cap;
    l->out_shape = (struct rt_shape){.rank = 1, .d = {(int)rt_shape_size(&l->in_shape)}};
    return 0;
}

static size_t flatten_buffer_bytes(const struct rt_layer *l, int max_batch)
{
    return rt_arena_footprint((size_t)max_batch * l->out * sizeof(float));
}

static int flatten_bind_buffers(struct rt_layer *l, struct rt_arena *a, int max_batch)
{
    l->y = rt_arena_alloc(a, (size_t)max_batch * l->out * sizeof(float));
    return l->y ? RT_OK : RT_ERR_NOMEM;
}

static void flatten_forward(struct rt_layer *l, const float *x, int B)
{
    if (B) memcpy(l->y, x, (size_t)B * l->out * sizeof *x);
}

static void flatten_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    if (B) memcpy(dx, l->dy, (size_t)B * l->out * sizeof *dx);
}

const struct rt_layer_ops rt_layer_flatten_ops = {
    .name = "flatten",
    .infer = flatten_infer,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = flatten_buffer_bytes,
    .bind_buffers = flatten_bind_buffers,
    .forward = flatten_forward,
    .backward_dx = flatten_backward_dx,
    .unit_role = RT_UNITS_PASS,
};
