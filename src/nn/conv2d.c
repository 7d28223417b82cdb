/* conv2d.c - the conv2d entry of the layer table: nn.Conv2d(C, OC, (KH, KW), stride,
 * padding) on NCHW rows, weight (OC, C, KH, KW) and bias (OC) exactly as PyTorch stores
 * them, an activation fused after it. The kernels are in conv_kernels.c.
 * Dimension letters: B rows; C, H, W the input plane; OC, OH, OW the output. */
#include "ringtrain/conv.h"
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <stdio.h>

static int conv_infer(struct rt_layer *l, char *err, size_t cap)
{
    const struct rt_layer_spec *s = &l->spec;
    if (l->in_shape.rank != 3) {
        snprintf(err, cap,
                 "conv takes images (C, H, W): the data or the layer before gives a "
                 "flat input");
        return -1;
    }
    const int *d = l->in_shape.d;
    if (rt_conv2d_geom_init(&l->g.conv, d[0], d[1], d[2], s->units, s->kernel[0], s->kernel[1],
                            s->stride[0], s->stride[1], s->pad[0], s->pad[1]) < 0) {
        snprintf(err, cap, "the %dx%d kernel is larger than the %dx%d input padded to %dx%d",
                 s->kernel[0], s->kernel[1], d[1], d[2], d[1] + 2 * s->pad[0],
                 d[2] + 2 * s->pad[1]);
        return -1;
    }
    l->out_shape = (struct rt_shape){.rank = 3, .d = {s->units, l->g.conv.OH, l->g.conv.OW}};
    return 0;
}

static size_t conv_weight_count(const struct rt_layer *l)
{
    const struct rt_conv2d_geom *g = &l->g.conv;
    return (size_t)g->OC * g->C * g->KH * g->KW;
}

static size_t conv_bias_count(const struct rt_layer *l)
{
    return (size_t)l->g.conv.OC;
}

static int conv_weight_dims(const struct rt_layer *l, int64_t dims[4])
{
    const struct rt_conv2d_geom *g = &l->g.conv;
    dims[0] = g->OC;
    dims[1] = g->C;
    dims[2] = g->KH;
    dims[3] = g->KW;
    return 4;
}

static size_t conv_buffer_bytes(const struct rt_layer *l, int max_batch)
{
    size_t out = rt_arena_footprint((size_t)max_batch * l->out * sizeof(float));
    size_t scratch =
        rt_arena_footprint(rt_conv2d_scratch_floats(&l->g.conv, max_batch) * sizeof(float));
    return (rt_act_needs_preact(l->act) ? 2 * out : out) + scratch;
}

static int conv_bind_buffers(struct rt_layer *l, struct rt_arena *a, int max_batch)
{
    size_t n = (size_t)max_batch * l->out * sizeof(float);
    l->y = rt_arena_alloc(a, n);
    l->z = rt_act_needs_preact(l->act) ? rt_arena_alloc(a, n) : NULL;
    l->scratch = rt_arena_alloc(a, rt_conv2d_scratch_floats(&l->g.conv, max_batch) * sizeof(float));
    return !l->y || !l->scratch || (rt_act_needs_preact(l->act) && !l->z) ? RT_ERR_NOMEM : RT_OK;
}

static void conv_init(struct rt_layer *l, enum rt_init init, struct rt_rng *rng)
{
    const struct rt_conv2d_geom *g = &l->g.conv;
    double field = (double)g->KH * g->KW; /* torch's fans: channels times receptive field */
    rt_layer_init_weights(l, init, rng, g->C * field, g->OC * field);
}

static void conv_forward(struct rt_layer *l, const float *x, int B)
{
    /* both kernels run sample by sample: row-wise reproducible as they are (conv.h) */
    if (l->csr)
        rt_conv2d_forward_csr(l->y, l->scratch, x, l->csr, l->b, &l->g.conv, B);
    else
        rt_conv2d_forward(l->y, l->scratch, x, l->w, l->b, &l->g.conv, B);
    rt_act_apply(l->y, l->z, (size_t)B * l->out, l->act);
}

static void conv_backward(struct rt_layer *l, const float *x, int B)
{
    rt_act_grad(l->dy, l->y, l->z, (size_t)B * l->out, l->act); /* dy becomes dZ */
    rt_conv2d_backward_params(l->dw, l->db, l->scratch, l->dy, x, &l->g.conv, B, l->accumulate);
}

static void conv_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    rt_conv2d_backward_data(dx, l->scratch, l->dy, l->w, &l->g.conv, B);
}

/* The GEMMs conv_kernels.c issues, one of each per sample on its (K, P) columns, K =
 * C KH KW, P = OH OW: y_s = W cols_s, dW += dy_s cols_s^T, dcols_s = W^T dy_s. */
static int conv_gemms(const struct rt_layer *l, int B, struct rt_gemm_shape *out)
{
    const struct rt_conv2d_geom *g = &l->g.conv;
    int P = g->OH * g->OW, K = g->C * g->KH * g->KW;
    out[0] = (struct rt_gemm_shape){g->OC, P, K, 0, 0, B, RT_GEMM_FORWARD};
    out[1] = (struct rt_gemm_shape){g->OC, K, P, 0, 1, B, RT_GEMM_DW};
    out[2] = (struct rt_gemm_shape){K, P, g->OC, 1, 0, B, RT_GEMM_DX};
    return 3;
}

const struct rt_layer_ops rt_layer_conv2d_ops = {
    .name = "conv2d",
    .infer = conv_infer,
    .weight_count = conv_weight_count,
    .bias_count = conv_bias_count,
    .weight_dims = conv_weight_dims,
    .buffer_bytes = conv_buffer_bytes,
    .bind_buffers = conv_bind_buffers,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
    .backward_dx = conv_backward_dx,
    .gemms = conv_gemms,
    .prunable = 1,
    .unit_role = RT_UNITS_MAKE,
};
