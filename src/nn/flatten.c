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

static void flatten_forward(struct rt_layer *l, const float *x, int B)
{
    if (B) memcpy(l->y, x, (size_t)B * l->out * sizeof *x);
}

const struct rt_layer_ops rt_layer_flatten_ops = {
    .name = "flatten",
    .infer = flatten_infer,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = rt_layer_output_bytes,
    .bind_buffers = rt_layer_bind_output,
    .forward = flatten_forward,
    .backward_dx = rt_layer_pass_dx,
    .unit_role = RT_UNITS_PASS,
};
