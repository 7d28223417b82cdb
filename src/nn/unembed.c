/* unembed.c - the output head tied to the token embedding (GPT-2's lm_head, whose weight
 * is wte's): logits (B, V) = X (B, D) E^T with E (V, D) the embedding's weight. The head
 * has no parameter of its own, so E is stored, counted and pruned once, as the embedding.
 *
 * Backward writes dE = dY^T X into the embedding's gradient block (overwriting it: this
 * layer runs before the embedding in backward, and the embedding then adds its own rows),
 * so the tied weight's gradient is the sum of both uses. When gradients accumulate over
 * micro-batches (l->accumulate, and then the embedding's too) it adds instead (beta = 1),
 * since the block then holds the earlier micro-batches' sum. dX = dY E.
 *
 * Dimension letters: B rows (samples times T), D width, V vocabulary. */
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

static int unembed_infer(struct rt_layer *l, char *err, size_t cap)
{
    if (l->in_shape.rank != 2 || l->in_shape.d[1] != l->spec.units) {
        snprintf(err, cap,
                 "unembed takes a sequence (T, %d), the width of the embedding it is "
                 "tied to",
                 l->spec.units);
        return -1;
    }
    l->out_shape = (struct rt_shape){.rank = 2, .d = {l->in_shape.d[0], l->spec.vocab}};
    return 0;
}

/* One GEMM per sequence (P rows), all of the same shape: a sequence's logits are then a
 * function of that sequence alone, bit for bit, wherever it sits in the batch (OpenBLAS
 * rounds a row by its position in a call), as row-wise inference promises for a teacher
 * (rt_model_use_rowwise). P = 128 rows keep the GEMM efficient. */
static void unembed_forward(struct rt_layer *l, const float *x, int B)
{
    int D = l->in, V = l->out, P = l->positions;
    for (int r = 0; r < B; r += P)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, P, V, D, 1.0f, x + (size_t)r * D, D,
                    l->partner->w, D, 0.0f, l->y + (size_t)r * V, V);
}

static void unembed_backward(struct rt_layer *l, const float *x, int B)
{
    int D = l->in, V = l->out;
    float *dE = l->partner->dw;
    if (B == 0) { /* a GEMM with K = 0 need not honour beta = 0 */
        if (!l->accumulate) memset(dE, 0, (size_t)V * D * sizeof *dE);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, D, B, 1.0f, l->dy, V, x, D,
                l->accumulate ? 1.0f : 0.0f, dE, D);
}

static void unembed_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    if (B == 0) return;
    int D = l->in, V = l->out;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, V, 1.0f, l->dy, V, l->partner->w,
                D, 0.0f, dx, D);
}

static int unembed_gemms(const struct rt_layer *l, int B, struct rt_gemm_shape *g)
{
    return rt_layer_linear_gemms(B, l->in, l->out, g);
}

const struct rt_layer_ops rt_layer_unembed_ops = {
    .name = "unembed",
    .infer = unembed_infer,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = rt_layer_output_bytes,
    .bind_buffers = rt_layer_bind_output,
    .forward = unembed_forward,
    .backward = unembed_backward,
    .backward_dx = unembed_backward_dx,
    .gemms = unembed_gemms,
    .unit_role = RT_UNITS_END,
};
