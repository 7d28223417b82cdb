/* layernorm.c - nn.LayerNorm over the last dimension (eps 1e-5, affine weight and bias),
 * per position of a sequence or over a flat row. Kernels in norm_kernels.c; this file keeps
 * each row's mean and 1/std from forward for backward (2 floats a row, in l->scratch).
 *
 * Dimension letters: B rows, D width. */
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <stdio.h>

#define RT_LAYERNORM_EPS 1e-5f /* nn.LayerNorm's default */

static int layernorm_infer(struct rt_layer *l, char *err, size_t cap)
{
    if (l->in_shape.rank != 1 && l->in_shape.rank != 2) {
        snprintf(err, cap, "layernorm takes a sequence (T, D) or a flat input (D)");
        return -1;
    }
    l->out_shape = l->in_shape;
    return 0;
}

static size_t layernorm_param_count(const struct rt_layer *l)
{
    return (size_t)l->out;
}

static int layernorm_weight_dims(const struct rt_layer *l, int64_t dims[4])
{
    dims[0] = l->out;
    return 1;
}

static size_t layernorm_buffer_bytes(const struct rt_layer *l, int rows)
{
    return rt_arena_footprint((size_t)rows * l->out * sizeof(float)) +
           rt_arena_footprint(2 * (size_t)rows * sizeof(float));
}

static int layernorm_bind_buffers(struct rt_layer *l, struct rt_arena *a, int rows)
{
    l->y = rt_arena_alloc(a, (size_t)rows * l->out * sizeof(float));
    l->scratch = rt_arena_alloc(a, 2 * (size_t)rows * sizeof(float));
    l->aux = l->scratch ? l->scratch + rows : NULL; /* rstd after the means */
    return l->y && l->scratch ? RT_OK : RT_ERR_NOMEM;
}

static void layernorm_init(struct rt_layer *l, enum rt_init init, struct rt_rng *rng)
{
    (void)init, (void)rng;
    for (int d = 0; d < l->out; d++) {
        l->w[d] = 1.0f;
        l->b[d] = 0.0f;
    }
}

static void layernorm_forward(struct rt_layer *l, const float *x, int B)
{
    rt_layernorm_forward(l->y, l->scratch, l->aux, x, l->w, l->b, B, l->out, RT_LAYERNORM_EPS);
}

static void layernorm_backward(struct rt_layer *l, const float *x, int B)
{
    rt_layernorm_backward(NULL, l->dw, l->db, l->dy, x, l->scratch, l->aux, l->w, B, l->out,
                          l->accumulate);
}

static void layernorm_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    rt_layernorm_backward(dx, NULL, NULL, l->dy, x, l->scratch, l->aux, l->w, B, l->out, 0);
}

const struct rt_layer_ops rt_layer_layernorm_ops = {
    .name = "layernorm",
    .infer = layernorm_infer,
    .weight_count = layernorm_param_count,
    .bias_count = layernorm_param_count,
    .weight_dims = layernorm_weight_dims,
    .buffer_bytes = layernorm_buffer_bytes,
    .bind_buffers = layernorm_bind_buffers,
    .init = layernorm_init,
    .forward = layernorm_forward,
    .backward = layernorm_backward,
    .backward_dx = layernorm_backward_dx,
    .unit_role = RT_UNITS_END,
};
