/* attention.c - causal multi-head self-attention as a layer: (T, 3D) -> (T, D), the input
 * being q | k | v of one Linear(D, 3D) per position (the dense layer before it), heads
 * consecutive slices of hd = D / heads, scores scaled by 1/sqrt(hd) (GPT-2's c_attn
 * split). The projection after it is the next dense layer. Kernels: attn_kernels.c.
 *
 * Memory: the softmax probabilities are kept from forward for backward (B heads T T floats
 * a layer: 4 MiB for 16 sequences of 128 at 4 heads) rather than recomputed, the faster of
 * the two by bench_attn; scratch for the kernels is sized once at bind.
 *
 * Dimension letters: B rows (samples times T), T positions, D width, H heads. */
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <stdio.h>

static int attention_infer(struct rt_layer *l, char *err, size_t cap)
{
    int H = l->spec.heads;
    if (l->in_shape.rank != 2 || l->in_shape.d[1] % 3 != 0) {
        snprintf(err, cap, "attention takes q|k|v per position (T, 3D): put dense(3D) before it");
        return -1;
    }
    int D = l->in_shape.d[1] / 3;
    if (H < 1 || D % H != 0) {
        snprintf(err, cap, "width %d is not divisible by heads = %d", D, H);
        return -1;
    }
    l->out_shape = (struct rt_shape){.rank = 2, .d = {l->in_shape.d[0], D}};
    l->g.attn = (struct rt_attn_geom){.T = l->in_shape.d[0], .D = D, .heads = H};
    return 0;
}

static size_t attention_buffer_bytes(const struct rt_layer *l, int rows)
{
    int B = rows / l->g.attn.T;
    return rt_arena_footprint((size_t)rows * l->out * sizeof(float)) +
           rt_arena_footprint(rt_attn_probs_floats(&l->g.attn, B) * sizeof(float)) +
           rt_arena_footprint(rt_attn_scratch_floats(&l->g.attn, B) * sizeof(float));
}

static int attention_bind_buffers(struct rt_layer *l, struct rt_arena *a, int rows)
{
    int B = rows / l->g.attn.T;
    l->y = rt_arena_alloc(a, (size_t)rows * l->out * sizeof(float));
    l->aux = rt_arena_alloc(a, rt_attn_probs_floats(&l->g.attn, B) * sizeof(float));
    l->scratch = rt_arena_alloc(a, rt_attn_scratch_floats(&l->g.attn, B) * sizeof(float));
    return l->y && l->aux && l->scratch ? RT_OK : RT_ERR_NOMEM;
}

static void attention_forward(struct rt_layer *l, const float *x, int B)
{
    rt_attn_forward(&l->g.attn, x, l->y, l->aux, l->scratch, B / l->g.attn.T);
}

static void attention_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    rt_attn_backward(&l->g.attn, x, l->aux, l->dy, dx, l->scratch, B / l->g.attn.T);
}

/* Per sample and head: S = Q K^T, Y = P V; backward dV = P^T dY, dP = dY V^T, dQ = dS K,
 * dK = dS^T Q. All are full T x T products (the causal half is not skipped). */
static int attention_gemms(const struct rt_layer *l, int B, struct rt_gemm_shape *g)
{
    const struct rt_attn_geom *a = &l->g.attn;
    int T = a->T, hd = a->D / a->heads, n = B / T * a->heads;
    g[0] = (struct rt_gemm_shape){T, T, hd, 0, 1, n, RT_GEMM_FORWARD};
    g[1] = (struct rt_gemm_shape){T, hd, T, 0, 0, n, RT_GEMM_FORWARD};
    g[2] = (struct rt_gemm_shape){T, hd, T, 1, 0, n, RT_GEMM_DX};
    g[3] = (struct rt_gemm_shape){T, T, hd, 0, 1, n, RT_GEMM_DX};
    g[4] = (struct rt_gemm_shape){T, hd, T, 0, 0, n, RT_GEMM_DX};
    g[5] = (struct rt_gemm_shape){T, hd, T, 1, 0, n, RT_GEMM_DX};
    return 6;
}

const struct rt_layer_ops rt_layer_attention_ops = {
    .name = "attention",
    .infer = attention_infer,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = attention_buffer_bytes,
    .bind_buffers = attention_bind_buffers,
    .forward = attention_forward,
    .backward_dx = attention_backward_dx,
    .gemms = attention_gemms,
    .unit_role = RT_UNITS_HEADS,
};
