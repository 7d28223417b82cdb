/* dropout.c - nn.Dropout(p): in training each element is zeroed with probability p and
 * the others scaled by 1/(1-p); in inference it is the identity.
 *
 * The mask of a row is drawn from (job seed, global step, the row's global id, layer)
 * alone, never from a stream that advances with what a rank has seen: so N ranks draw
 * exactly the masks one rank draws for the same rows, and a resumed run draws the same
 * masks as the run it continues. Rows without ids (rt_model_set_training with rows NULL)
 * use their position in the batch; the rows of a sequence are told apart by position. Masks are
 * kept (one byte per element) for backward. Dimension letters: B rows, N = IN = OUT values per row.
 */
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <string.h>

static size_t dropout_buffer_bytes(const struct rt_layer *l, int max_batch)
{
    size_t n = (size_t)max_batch * l->out;
    return rt_arena_footprint(n * sizeof(float)) + rt_arena_footprint(n);
}

static int dropout_bind_buffers(struct rt_layer *l, struct rt_arena *a, int max_batch)
{
    size_t n = (size_t)max_batch * l->out;
    l->y = rt_arena_alloc(a, n * sizeof(float));
    l->aux = rt_arena_alloc(a, n);
    return l->y && l->aux ? RT_OK : RT_ERR_NOMEM;
}

static int active(const struct rt_layer *l)
{
    return l->mode->training && l->spec.p > 0;
}

/* keep (N) for row r of the step: 1 kept, 0 dropped. */
static void row_mask(uint8_t *keep, const struct rt_layer *l, int r)
{
    const struct rt_model_mode *md = l->mode;
    int sample = r / l->positions, at = r % l->positions; /* a sequence: T rows a sample */
    uint64_t row = md->rows ? (uint64_t)md->rows[sample] : (uint64_t)sample;
    uint64_t s = rt_rng_derive(md->seed, RT_STREAM_DROPOUT, (uint64_t)md->step);
    struct rt_rng rng;
    rt_rng_seed(&rng, rt_rng_derive(rt_rng_derive(s, row, (uint64_t)at), (uint64_t)l->index, 1));
    for (int e = 0; e < l->out; e++)
        keep[e] = rt_rng_uniform(&rng) >= l->spec.p;
}

static void dropout_forward(struct rt_layer *l, const float *x, int B)
{
    size_t n = (size_t)l->out;
    if (!active(l)) {
        if (B) memcpy(l->y, x, (size_t)B * n * sizeof *x);
        return;
    }
    float scale = (float)(1.0 / (1.0 - l->spec.p));
    uint8_t *keep = l->aux;
    for (int r = 0; r < B; r++) {
        uint8_t *k = keep + (size_t)r * n;
        row_mask(k, l, r);
        const float *xr = x + (size_t)r * n;
        float *yr = l->y + (size_t)r * n;
        for (size_t e = 0; e < n; e++)
            yr[e] = k[e] ? xr[e] * scale : 0.0f;
    }
}

static void dropout_backward_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    size_t n = (size_t)B * l->out;
    if (!active(l)) {
        if (n) memcpy(dx, l->dy, n * sizeof *dx);
        return;
    }
    float scale = (float)(1.0 / (1.0 - l->spec.p));
    const uint8_t *keep = l->aux;
    for (size_t e = 0; e < n; e++)
        dx[e] = keep[e] ? l->dy[e] * scale : 0.0f;
}

const struct rt_layer_ops rt_layer_dropout_ops = {
    .name = "dropout",
    .infer = rt_layer_infer_same,
    .weight_count = rt_layer_no_params,
    .bias_count = rt_layer_no_params,
    .buffer_bytes = dropout_buffer_bytes,
    .bind_buffers = dropout_bind_buffers,
    .forward = dropout_forward,
    .backward_dx = dropout_backward_dx,
    .unit_role = RT_UNITS_PASS,
};
