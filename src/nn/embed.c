/* embed.c - token embeddings (nn.Embedding) and learned position embeddings, the two kinds
 * that start a GPT.
 *
 * embed: ids (T) -> (T, D), one row per position: y[r] = W[id_r], W (V, D). The ids come
 * as floats (the model's input is a float block; byte tokens 0..255 are exact), are
 * truncated to integers and clamped into [0, V) so that a bad id can never read outside
 * W (the dataset has checked them; the clamp is a guard, not a feature). Backward adds
 * each row of dY into the row of W it read. When the output head is tied to this
 * embedding (partner: an unembed), the head's backward, which runs first, has already
 * written its part of dW, and this one adds to it; otherwise dW starts from zero. When
 * gradients accumulate over micro-batches (l->accumulate) dW is never cleared: the head
 * adds too, and both uses' gradients pile up on the earlier micro-batches'. posembed
 * likewise.
 *
 * posembed: (T, D) -> (T, D), y[b, t] = x[b, t] + P[t], P (T, D) (GPT-2's wpe for a
 * context of T).
 *
 * Dimension letters: B rows (samples times T), T positions, D width, V vocabulary. */
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int embed_infer(struct rt_layer *l, char *err, size_t cap)
{
    if (l->in_shape.rank != 1) {
        snprintf(err, cap, "embed takes a sequence of token ids (T): it must come first");
        return -1;
    }
    l->out_shape = (struct rt_shape){.rank = 2, .d = {l->in_shape.d[0], l->spec.units}};
    return 0;
}

static size_t embed_weight_count(const struct rt_layer *l)
{
    return (size_t)l->spec.vocab * l->spec.units;
}

static int embed_weight_dims(const struct rt_layer *l, int64_t dims[4])
{
    dims[0] = l->spec.vocab;
    dims[1] = l->spec.units;
    return 2;
}

/* nn.Embedding's N(0, 1), or GPT-2's N(0, 0.02). */
static void embed_init(struct rt_layer *l, enum rt_init init, struct rt_rng *rng)
{
    double std = init == RT_INIT_GPT2 ? 0.02 : 1.0;
    size_t n = l->ops->weight_count(l);
    for (size_t i = 0; i < n; i++)
        l->w[i] = (float)(rt_rng_normal(rng) * std);
}

static int token_id(float v, int V)
{
    if (!(v >= 0.0f)) return 0; /* negative or NaN */
    return v >= (float)V ? V - 1 : (int)v;
}

static void embed_forward(struct rt_layer *l, const float *x, int B)
{
    int D = l->out, V = l->spec.vocab;
    for (int r = 0; r < B; r++)
        memcpy(l->y + (size_t)r * D, l->w + (size_t)token_id(x[r], V) * D,
               (size_t)D * sizeof(float));
}

static void embed_backward(struct rt_layer *l, const float *x, int B)
{
    int D = l->out, V = l->spec.vocab;
    if (!l->partner && !l->accumulate) memset(l->dw, 0, (size_t)V * D * sizeof *l->dw);
    for (int r = 0; r < B; r++) {
        float *g = l->dw + (size_t)token_id(x[r], V) * D;
        const float *dy = l->dy + (size_t)r * D;
        for (int d = 0; d < D; d++)
            g[d] += dy[d];
    }
}

/* Ids have no gradient. Called only when embed is not the first layer (after a flatten of
 * ids, say): then what lies below it gets zeros. */
static void no_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    if (B) memset(dx, 0, (size_t)B * l->in * sizeof *dx);
}

const struct rt_layer_ops rt_layer_embed_ops = {
    .name = "embed",
    .infer = embed_infer,
    .weight_count = embed_weight_count,
    .bias_count = rt_layer_no_params,
    .weight_dims = embed_weight_dims,
    .buffer_bytes = rt_layer_output_bytes,
    .bind_buffers = rt_layer_bind_output,
    .init = embed_init,
    .forward = embed_forward,
    .backward = embed_backward,
    .backward_dx = no_dx,
    .unit_role = RT_UNITS_END,
};

/* ---- posembed ---- */

static int posembed_infer(struct rt_layer *l, char *err, size_t cap)
{
    if (l->in_shape.rank != 2) {
        snprintf(err, cap, "posembed takes a sequence (T, D): put it after embed");
        return -1;
    }
    l->out_shape = l->in_shape;
    return 0;
}

static size_t posembed_weight_count(const struct rt_layer *l)
{
    return (size_t)l->positions * l->out;
}

static int posembed_weight_dims(const struct rt_layer *l, int64_t dims[4])
{
    dims[0] = l->positions;
    dims[1] = l->out;
    return 2;
}

static void posembed_forward(struct rt_layer *l, const float *x, int B)
{
    size_t n = (size_t)l->positions * l->out;
    for (int s = 0; s < B / l->positions; s++) {
        const float *xs = x + (size_t)s * n;
        float *ys = l->y + (size_t)s * n;
        for (size_t i = 0; i < n; i++)
            ys[i] = xs[i] + l->w[i];
    }
}

static void posembed_backward(struct rt_layer *l, const float *x, int B)
{
    (void)x;
    size_t n = (size_t)l->positions * l->out;
    if (!l->accumulate) memset(l->dw, 0, n * sizeof *l->dw);
    for (int s = 0; s < B / l->positions; s++) {
        const float *dy = l->dy + (size_t)s * n;
        for (size_t i = 0; i < n; i++)
            l->dw[i] += dy[i];
    }
}

const struct rt_layer_ops rt_layer_posembed_ops = {
    .name = "posembed",
    .infer = posembed_infer,
    .weight_count = posembed_weight_count,
    .bias_count = rt_layer_no_params,
    .weight_dims = posembed_weight_dims,
    .buffer_bytes = rt_layer_output_bytes,
    .bind_buffers = rt_layer_bind_output,
    .init = embed_init,
    .forward = posembed_forward,
    .backward = posembed_backward,
    .backward_dx = rt_layer_pass_dx,
    .unit_role = RT_UNITS_END,
};
