/* residual.c - residual branches written inline in the layer list: `residual` opens a
 * branch and keeps its input, the layers after it transform that input, and `add` closes
 * the branch with y = (branch output) + (the kept input), GPT-2's x = x + f(x).
 *
 * residual's output is a copy of its input (one pass over B D floats, against the GEMMs of
 * the branch: the copy lets every layer own its y, so the driver's chain stays as it is).
 * Backward: add passes dy into the branch unchanged and keeps it (its dy is not touched
 * until the next backward); residual's dx is the gradient from the branch plus add's dy,
 * both routes the input took.
 *
 * Dimension letters: B rows, D width (IN = OUT). */
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <string.h>

static void residual_forward(struct rt_layer *l, const float *x, int B)
{
    if (B) memcpy(l->y, x, (size_t)B * l->out * sizeof *x);
}

static void residual_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    const float *skip = l->partner->dy;
    size_t n = (size_t)B * l->out;
    for (size_t i = 0; i < n; i++)
        dx[i] = l->dy[i] + skip[i];
}

const struct rt_layer_ops rt_layer_residual_ops = {
    .name = "residual",
    .infer = rt_layer_infer_same,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = rt_layer_output_bytes,
    .bind_buffers = rt_layer_bind_output,
    .forward = residual_forward,
    .backward_dx = residual_backward_dx,
    .unit_role = RT_UNITS_END,
};

static void add_forward(struct rt_layer *l, const float *x, int B)
{
    const float *kept = l->partner->y;
    size_t n = (size_t)B * l->out;
    for (size_t i = 0; i < n; i++)
        l->y[i] = x[i] + kept[i];
}

const struct rt_layer_ops rt_layer_add_ops = {
    .name = "add",
    .infer = rt_layer_infer_same,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = rt_layer_output_bytes,
    .bind_buffers = rt_layer_bind_output,
    .forward = add_forward,
    .backward_dx = rt_layer_pass_dx,
    .unit_role = RT_UNITS_END,
};
