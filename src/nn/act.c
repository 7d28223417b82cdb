/* act.c - an activation as a layer of its own: where no dense or conv layer comes just
 * before it to take it fused (after pooling, flatten or dropout). The functions themselves
 * (rt_act_apply, rt_act_grad) live with the dense kernels, which fuse them with the bias.
 * Dimension letters: B rows, N = IN = OUT values per row. */
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <string.h>

static size_t act_buffer_bytes(const struct rt_layer *l, int max_batch)
{
    size_t one = rt_arena_footprint((size_t)max_batch * l->out * sizeof(float));
    return rt_act_needs_preact(l->spec.act) ? 2 * one : one;
}

static int act_bind_buffers(struct rt_layer *l, struct rt_arena *a, int max_batch)
{
    size_t n = (size_t)max_batch * l->out * sizeof(float);
    l->y = rt_arena_alloc(a, n);
    l->z = rt_act_needs_preact(l->spec.act) ? rt_arena_alloc(a, n) : NULL;
    return !l->y || (rt_act_needs_preact(l->spec.act) && !l->z) ? RT_ERR_NOMEM : RT_OK;
}

static void act_forward(struct rt_layer *l, const float *x, int B)
{
    size_t n = (size_t)B * l->out;
    if (n) memcpy(l->y, x, n * sizeof *x);
    rt_act_apply(l->y, l->z, n, l->spec.act);
}

static void act_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    size_t n = (size_t)B * l->out;
    if (n) memcpy(dx, l->dy, n * sizeof *dx);
    rt_act_grad(dx, l->y, l->z, n, l->spec.act);
}

const struct rt_layer_ops rt_layer_act_ops = {
    .name = "activation",
    .infer = rt_layer_infer_same,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = act_buffer_bytes,
    .bind_buffers = act_bind_buffers,
    .forward = act_forward,
    .backward_dx = act_backward_dx,
    .unit_role = RT_UNITS_PASS,
};
