/* model.c - the layer list over flat parameter and gradient blocks, and the forward, loss
 * and backward drivers.
 *
 * rt_model_init is the only place that allocates: three arenas, sized exactly beforehand.
 *   params_arena  params (n_params floats), layers back to back as model.h documents
 *   grads_arena   grads, same layout, so averaging across ranks is one buffer
 *   act_arena     the layer structs, each layer's outputs (and private buffers), the dy
 *                 chain of hidden layers and dlogits
 * The dy chain: backward of layer i writes its dx straight into layer i-1's dy, and the
 * loss writes dlogits, which is the last layer's dy. Layer 0's dx is never computed, since
 * nothing consumes a gradient with respect to the data. Each layer's gradient block is
 * announced (rt_grad_ready_fn) as soon as it is final, before that layer's dX GEMM, so that
 * communication of the block can overlap the rest of backward. Gradient accumulation is one
 * flag on the model, copied into each layer right before its backward (so no layer can hold
 * a stale value) and read by a kind where it would clear or overwrite its gradients.
 *
 * Inference modes keep their own copies of the weights outside the arenas, made when the
 * mode is switched on (never in forward): CSR (rt_model_use_csr) and row-wise
 * (rt_model_use_rowwise: CSR for layers that are mostly zeros, a transposed snapshot in one
 * block for the others). Switching either on or off first frees both, so that at most one
 * mode holds copies and every layer's forward dispatch (l->csr, l->wt) is consistent.
 *
 * Not here: the layer kernels (dense.c), losses (loss.c), anything about ranks.
 *
 * Dimension letters: B rows, IN/OUT a layer's widths, K the output width. */
#include "ringtrain/model.h"
#include "ringtrain/status.h"
#include "nn/layer.h"
#include "nn/loss.h"

/* A conv layer runs CSR in sparse mode from this fraction of zero weights (bench_conv:
 * the CSR kernel over each sample's columns breaks even with the per-sample GEMM from
 * about 70% (32->64 channels at 14x14) to 85% (1->32 at 28x28, where K = 9)). */
#define RT_CONV_CSR_MIN_ZEROS 0.8

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <cblas.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static const struct rt_layer_ops *const kind_ops[RT_LAYER_KINDS] = {
    [RT_LAYER_DENSE] = &rt_layer_dense_ops,
    [RT_LAYER_CONV2D] = &rt_layer_conv2d_ops,
    [RT_LAYER_MAXPOOL2D] = &rt_layer_maxpool2d_ops,
    [RT_LAYER_AVGPOOL2D] = &rt_layer_avgpool2d_ops,
    [RT_LAYER_FLATTEN] = &rt_layer_flatten_ops,
    [RT_LAYER_ACT] = &rt_layer_act_ops,
    [RT_LAYER_DROPOUT] = &rt_layer_dropout_ops,
    [RT_LAYER_EMBED] = &rt_layer_embed_ops,
    [RT_LAYER_POSEMBED] = &rt_layer_posembed_ops,
    [RT_LAYER_LAYERNORM] = &rt_layer_layernorm_ops,
    [RT_LAYER_ATTENTION] = &rt_layer_attention_ops,
    [RT_LAYER_RESIDUAL] = &rt_layer_residual_ops,
    [RT_LAYER_ADD] = &rt_layer_add_ops,
    [RT_LAYER_UNEMBED] = &rt_layer_unembed_ops,
};

const struct rt_layer_ops *rt_layer_kind_ops(enum rt_layer_kind kind)
{
    return (unsigned)kind < RT_LAYER_KINDS ? kind_ops[kind] : NULL;
}

static int validate_spec(const struct rt_model_spec *spec, int max_batch)
{
    if (!spec) return rt_errorf(RT_ERR_INVAL, "model: no spec");
    if ((unsigned)spec->loss > RT_LOSS_MSE)
        return rt_errorf(RT_ERR_INVAL, "model: unknown loss %d", (int)spec->loss);
    if ((unsigned)spec->init > RT_INIT_GPT2)
        return rt_errorf(RT_ERR_INVAL, "model: unknown init %d", (int)spec->init);
    for (int i = 0; i < spec->n_layers && i < RT_MAX_LAYERS; i++) {
        const struct rt_layer_spec *l = &spec->layers[i];
        int sized = l->kind == RT_LAYER_DENSE || l->kind == RT_LAYER_CONV2D;
        int windowed = l->kind == RT_LAYER_CONV2D || l->kind == RT_LAYER_MAXPOOL2D ||
                       l->kind == RT_LAYER_AVGPOOL2D;
        if ((unsigned)l->kind >= RT_LAYER_KINDS || (unsigned)l->act > RT_ACT_GELU)
            return rt_errorf(RT_ERR_INVAL, "model: layer %d: unknown kind %d or activation %d", i,
                             (int)l->kind, (int)l->act);
        if ((sized && l->units < 1) ||
            (windowed && (l->kernel[0] < 1 || l->kernel[1] < 1 || l->stride[0] < 1 ||
                          l->stride[1] < 1 || l->pad[0] < 0 || l->pad[1] < 0)) ||
            (l->kind == RT_LAYER_DROPOUT && !(l->p >= 0 && l->p < 1)) ||
            ((l->kind == RT_LAYER_EMBED || l->kind == RT_LAYER_UNEMBED) &&
             (l->vocab < 1 || l->units < 1)) ||
            (l->kind == RT_LAYER_ATTENTION && l->heads < 1))
            return rt_errorf(RT_ERR_INVAL,
                             "model: layer %d: a size, kernel, stride, padding, "
                             "probability, vocabulary or head count out of range",
                             i);
    }
    if (max_batch < 1)
        return rt_errorf(RT_ERR_INVAL, "model: max batch %d, must be >= 1", max_batch);
    return RT_OK;
}

/* Rows per sample of a layer with output shape s: the positions of a sequence. */
static int shape_positions(const struct rt_shape *s)
{
    return s->rank == 2 ? s->d[0] : 1;
}

/* Partners (residual <-> add, the tied unembed -> the first embed and back) and the init
 * scale of the dense layers that end a residual branch. Shapes were checked by infer:
 * branches are balanced and an unembed has an embed before it. */
static void pair_layers(struct rt_layer *layers, int L)
{
    int open[RT_MAX_LAYERS], depth = 0, adds = 0, embed = -1;
    for (int i = 0; i < L; i++) {
        struct rt_layer *l = &layers[i];
        l->partner_index = -1;
        l->init_scale = 1.0;
        if (l->spec.kind == RT_LAYER_RESIDUAL) open[depth++] = i;
        if (l->spec.kind == RT_LAYER_ADD && depth > 0) {
            l->partner_index = open[--depth];
            layers[l->partner_index].partner_index = i;
            adds++;
        }
        if (l->spec.kind == RT_LAYER_EMBED && embed < 0) embed = i;
        if (l->spec.kind == RT_LAYER_UNEMBED && embed >= 0) {
            l->partner_index = embed;
            layers[embed].partner_index = i;
        }
    }
    for (int i = 1; i < L; i++)
        if (layers[i].spec.kind == RT_LAYER_ATTENTION &&
            layers[i - 1].spec.kind == RT_LAYER_DENSE) {
            int width = layers[i - 1].spec.units / 3; /* q | k | v */
            layers[i - 1].zero_bias_grad[0] = width;
            layers[i - 1].zero_bias_grad[1] = 2 * width;
        }
    for (int i = 1; i < L && adds; i++) /* GPT-2: 1/sqrt(2 n_layer) on c_proj weights */
        if (layers[i].spec.kind == RT_LAYER_ADD && layers[i - 1].spec.kind == RT_LAYER_DENSE)
            layers[i - 1].init_scale = 1.0 / sqrt((double)adds);
}

/* Fills layers (kinds, shapes, offsets) from the spec and returns n_params in *n_params. */
static int plan_layers(struct rt_layer *layers, size_t *n_params, const struct rt_model_spec *spec)
{
    struct rt_shape shapes[RT_MAX_LAYERS];
    RT_TRY(rt_model_spec_infer(spec, shapes));
    size_t total = 0;
    for (int i = 0; i < spec->n_layers; i++) {
        struct rt_layer *l = &layers[i];
        char err[256];
        memset(l, 0, sizeof *l);
        l->ops = rt_layer_kind_ops(spec->layers[i].kind);
        l->spec = spec->layers[i];
        l->act = l->spec.kind == RT_LAYER_ACT ? RT_ACT_IDENTITY : l->spec.act;
        l->index = i;
        l->in_shape = i ? shapes[i - 1] : spec->input;
        if (l->ops->infer(l, err, sizeof err) < 0) /* sets the geometry; checked above */
            return rt_errorf(RT_ERR_SHAPE, "model: layer %d: %s", i, err);
        l->positions = shape_positions(&l->out_shape);
        l->in = (int)(rt_shape_size(&l->in_shape) / l->positions);
        l->out = (int)(rt_shape_size(&l->out_shape) / l->positions);
        l->offset = total;
        l->count = l->ops->weight_count(l) + l->ops->bias_count(l);
        /* Sizes are ints, so one block is < 2^62 floats; 64 of them could still wrap. */
        if (l->count > SIZE_MAX / sizeof(float) / (RT_MAX_LAYERS + 1))
            return rt_errorf(RT_ERR_INVAL, "model: layer %d is too large", i);
        total += l->count;
    }
    pair_layers(layers, spec->n_layers);
    *n_params = total;
    return RT_OK;
}

/* Bytes of the activation arena: the mode, layer structs, layer buffers, dy of every layer
 * but the last, and dlogits (which is the last layer's dy). */
static size_t act_arena_bytes(const struct rt_layer *layers, int L, int max_batch)
{
    size_t bytes = rt_arena_footprint(sizeof(struct rt_model_mode)) +
                   rt_arena_footprint((size_t)L * sizeof *layers);
    for (int i = 0; i < L; i++) {
        size_t rows = (size_t)max_batch * layers[i].positions;
        bytes += layers[i].ops->buffer_bytes(&layers[i], (int)rows);
        bytes += rt_arena_footprint(rows * layers[i].out * sizeof(float));
    }
    return bytes;
}

/* Points every layer at its parameter and gradient blocks and its buffers. */
static int bind_layers(struct rt_model *m)
{
    int L = m->n_layers;
    for (int i = 0; i < L; i++) {
        struct rt_layer *l = &m->layers[i];
        int rows = m->max_batch * l->positions;
        l->partner = l->partner_index >= 0 ? &m->layers[l->partner_index] : NULL;
        size_t nw = l->ops->weight_count(l);
        if (l->count) {
            l->w = m->params + l->offset;
            l->b = l->w + nw;
            l->dw = m->grads + l->offset;
            l->db = l->dw + nw;
        }
        l->mode = m->mode_block;
        RT_TRY(l->ops->bind_buffers(l, &m->act_arena, rows));
        l->dy = i == L - 1 ? m->dlogits
                           : rt_arena_alloc(&m->act_arena, (size_t)rows * l->out * sizeof(float));
        if (!l->dy) return RT_ERR_NOMEM;
    }
    return RT_OK;
}

static int model_build(struct rt_model *m, const struct rt_model_spec *spec, int max_batch)
{
    struct rt_layer plan[RT_MAX_LAYERS];
    RT_TRY(validate_spec(spec, max_batch));
    RT_TRY(plan_layers(plan, &m->n_params, spec));
    m->spec = *spec;
    m->n_layers = spec->n_layers;
    m->max_batch = max_batch;
    int L = m->n_layers;
    m->inputs = (int)rt_shape_size(&spec->input);
    m->outputs = plan[L - 1].out;
    m->positions = plan[L - 1].positions;
    size_t param_bytes = m->n_params * sizeof(float);
    RT_TRY(rt_arena_init(&m->params_arena, "model params", param_bytes));
    RT_TRY(rt_arena_init(&m->grads_arena, "model grads", param_bytes));
    RT_TRY(rt_arena_init(&m->act_arena, "model activations", act_arena_bytes(plan, L, max_batch)));
    m->params = rt_arena_alloc(&m->params_arena, param_bytes);
    m->grads = rt_arena_alloc(&m->grads_arena, param_bytes);
    m->mode_block = rt_arena_alloc(&m->act_arena, sizeof *m->mode_block);
    m->layers = rt_arena_alloc(&m->act_arena, (size_t)L * sizeof *m->layers);
    m->dlogits = rt_arena_alloc(&m->act_arena,
                                (size_t)max_batch * m->positions * m->outputs * sizeof(float));
    if ((m->n_params && (!m->params || !m->grads)) || !m->mode_block || !m->layers || !m->dlogits)
        return RT_ERR_NOMEM; /* sized above, so this is a bug; the arena recorded why */
    memset(m->mode_block, 0, sizeof *m->mode_block);
    memcpy(m->layers, plan, (size_t)L * sizeof *m->layers);
    return bind_layers(m);
}

int rt_model_init(struct rt_model *m, const struct rt_model_spec *spec, int max_batch)
{
    memset(m, 0, sizeof *m);
    int st = model_build(m, spec, max_batch);
    if (st < 0) rt_model_free(m);
    return st;
}

void rt_model_set_training(struct rt_model *m, int training, uint64_t seed, int64_t step,
                           const int64_t *rows)
{
    *m->mode_block = (struct rt_model_mode){
        .training = training, .seed = seed, .step = step, .rows = training ? rows : NULL};
}

void rt_model_set_grad_accumulate(struct rt_model *m, int on)
{
    m->grad_accumulate = on != 0;
}

static void free_csr(struct rt_model *m)
{
    for (int i = 0; m->csr && i < m->n_layers; i++) {
        free(m->csr[i].indptr);
        free(m->csr[i].indices);
        free(m->csr[i].data);
        m->layers[i].csr = NULL;
    }
    free(m->csr);
    m->csr = NULL;
}

/* Rows (units) and columns of layer i's weight seen as a matrix: (OUT, IN) for dense,
 * (OC, C KH KW) for conv2d; 0 rows without weights. */
static int weight_rows(const struct rt_layer *l, size_t *cols)
{
    int64_t dims[4];
    size_t nw = l->ops->weight_count(l);
    if (!nw || !l->ops->weight_dims) {
        *cols = 0;
        return 0;
    }
    l->ops->weight_dims(l, dims);
    *cols = nw / (size_t)dims[0];
    return (int)dims[0];
}

/* Layer i's weights into c, exact zeros dropped. */
static int compress(const struct rt_layer *l, struct rt_csr *c)
{
    size_t cols;
    int rows = weight_rows(l, &cols);
    int64_t nnz = 0;
    size_t n = (size_t)rows * cols;
    for (size_t j = 0; j < n; j++)
        nnz += l->w[j] != 0.0f;
    c->rows = rows;
    c->cols = (int)cols;
    c->nnz = nnz;
    c->indptr = malloc((size_t)(rows + 1) * sizeof *c->indptr);
    c->indices = malloc((size_t)(nnz ? nnz : 1) * sizeof *c->indices);
    c->data = malloc((size_t)(nnz ? nnz : 1) * sizeof *c->data);
    if (!c->indptr || !c->indices || !c->data)
        return rt_errorf(RT_ERR_NOMEM, "CSR weights: %lld nonzeros", (long long)nnz);
    int64_t k = 0;
    for (int o = 0; o < rows; o++) {
        c->indptr[o] = k;
        const float *row = l->w + (size_t)o * cols;
        for (size_t i = 0; i < cols; i++)
            if (row[i] != 0.0f) {
                c->indices[k] = (int32_t)i;
                c->data[k++] = row[i];
            }
    }
    c->indptr[rows] = k;
    return RT_OK;
}

static void free_rowwise(struct rt_model *m)
{
    for (int i = 0; i < m->n_layers; i++)
        m->layers[i].wt = NULL;
    free(m->rowwise_wt);
    m->rowwise_wt = NULL;
}

/* Back to GEMM in every layer: CSR and row-wise are both off, their copies freed. */
static void use_gemm(struct rt_model *m)
{
    if (!m->layers) return;
    free_rowwise(m);
    free_csr(m);
}

/* CSR copies of the layers marked in sparse; m->csr stays NULL when none is marked. */
static int compress_marked(struct rt_model *m, const unsigned char *sparse)
{
    int any = 0;
    for (int i = 0; i < m->n_layers; i++)
        any |= sparse[i];
    if (!any) return RT_OK;
    m->csr = calloc((size_t)m->n_layers, sizeof *m->csr);
    if (!m->csr) return rt_errorf(RT_ERR_NOMEM, "CSR weights");
    for (int i = 0; i < m->n_layers; i++) {
        if (!sparse[i]) continue;
        RT_TRY(compress(&m->layers[i], &m->csr[i]));
        m->layers[i].csr = &m->csr[i];
    }
    return RT_OK;
}

/* Fraction of layer l's weights that are exact zeros. */
static double zero_fraction(const struct rt_layer *l)
{
    size_t n = l->ops->weight_count(l), zeros = 0;
    for (size_t j = 0; j < n; j++)
        zeros += l->w[j] == 0.0f;
    return n ? (double)zeros / (double)n : 0.0;
}

/* Whether layer l's sparse kernel beats its dense one: dense layers always take CSR in this
 * mode (the CSR file format's promise); a conv layer only from RT_CONV_CSR_MIN_ZEROS zeros,
 * below which its GEMM over the batch's columns is faster (bench_conv). */
static int csr_pays(const struct rt_layer *l)
{
    if (!l->ops->weight_count(l) || !l->ops->prunable) return 0;
    return l->spec.kind != RT_LAYER_CONV2D || zero_fraction(l) >= RT_CONV_CSR_MIN_ZEROS;
}

int rt_model_use_csr(struct rt_model *m, int on)
{
    unsigned char sparse[RT_MAX_LAYERS];
    use_gemm(m); /* whichever mode was on, CSR replaces it or GEMM returns */
    if (!on) return RT_OK;
    for (int i = 0; i < m->n_layers; i++)
        sparse[i] = rt_model_layer_prunable(m, i) && m->layers[i].ops->weight_count(&m->layers[i]);
    int st = compress_marked(m, sparse); /* every prunable layer: a CSR file holds them */
    if (st != RT_OK) {
        use_gemm(m);
        return st;
    }
    for (int i = 0; i < m->n_layers; i++) /* but each runs the faster of its kernels */
        if (!csr_pays(&m->layers[i])) m->layers[i].csr = NULL;
    return RT_OK;
}

void rt_model_kernels_text(const struct rt_model *m, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < m->n_layers && used < cap; i++) {
        const struct rt_layer *l = &m->layers[i];
        if (!l->ops->weight_count(l)) continue;
        used += (size_t)snprintf(buf + used, cap - used, "%s%d:%s:%s", used ? "," : "", i,
                                 l->ops->name, l->csr ? "csr" : "gemm");
    }
}

/* 1 when at least 90% of the layer's weights are exact zeros, the threshold model.h sets
 * for CSR in row-wise mode: ceil(9 n / 10) zeros, formed without overflow for any n.
 * Measured: the scalar CSR kernel breaks even with the row-wise dense one near 90%. */
static int mostly_zeros(const struct rt_layer *l)
{
    size_t n = l->ops->weight_count(l), zeros = 0;
    for (size_t j = 0; j < n; j++)
        zeros += l->w[j] == 0.0f;
    return n && zeros >= n / 10 * 9 + (n % 10 * 9 + 9) / 10;
}

/* wt (IN, OUT) = w^T for w (OUT, IN). Once per snapshot, so plain loops. */
static void transpose(float *wt, const float *w, int IN, int OUT)
{
    for (int o = 0; o < OUT; o++)
        for (int k = 0; k < IN; k++)
            wt[(size_t)k * OUT + o] = w[(size_t)o * IN + k];
}

/* The transposed weights of every dense layer not marked in sparse, back to back in one
 * block of n floats; conv layers are row-wise as they are (one GEMM per sample). The block is
 * allocated even when n is 0: a non-NULL rowwise_wt is what says the model is in row-wise mode. */
static int transpose_dense(struct rt_model *m, const unsigned char *sparse, size_t n)
{
    m->rowwise_wt = malloc((n ? n : 1) * sizeof *m->rowwise_wt);
    if (!m->rowwise_wt) return rt_errorf(RT_ERR_NOMEM, "row-wise weights: %zu floats", n);
    float *wt = m->rowwise_wt;
    for (int i = 0; i < m->n_layers; i++) {
        struct rt_layer *l = &m->layers[i];
        if (sparse[i] || l->spec.kind != RT_LAYER_DENSE) continue;
        transpose(wt, l->w, l->in, l->out);
        l->wt = wt;
        wt += (size_t)l->in * l->out;
    }
    return RT_OK;
}

int rt_model_use_rowwise(struct rt_model *m, int on)
{
    unsigned char sparse[RT_MAX_LAYERS] = {0};
    size_t dense_floats = 0;
    use_gemm(m); /* a fresh snapshot, whichever mode was on */
    if (!on) return RT_OK;
    for (int i = 0; i < m->n_layers; i++) {
        const struct rt_layer *l = &m->layers[i];
        /* CSR kernels of dense layers are row-wise; conv runs per sample either way */
        sparse[i] = (unsigned char)(l->spec.kind == RT_LAYER_DENSE && mostly_zeros(l));
        if (!sparse[i] && l->spec.kind == RT_LAYER_DENSE) dense_floats += (size_t)l->in * l->out;
    }
    int st = compress_marked(m, sparse);
    if (st == RT_OK) st = transpose_dense(m, sparse, dense_floats);
    if (st != RT_OK) use_gemm(m);
    return st;
}

int64_t rt_model_weight_nonzeros(const struct rt_model *m)
{
    int64_t nz = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct rt_layer *l = &m->layers[i];
        size_t n = l->ops->prunable ? l->ops->weight_count(l) : 0;
        for (size_t j = 0; j < n; j++)
            nz += l->w[j] != 0.0f;
    }
    return nz;
}

int64_t rt_model_weight_count(const struct rt_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].ops->prunable) n += (int64_t)m->layers[i].ops->weight_count(&m->layers[i]);
    return n;
}

void rt_model_free(struct rt_model *m)
{
    use_gemm(m);
    rt_arena_free(&m->params_arena);
    rt_arena_free(&m->grads_arena);
    rt_arena_free(&m->act_arena);
    memset(m, 0, sizeof *m);
}

void rt_model_init_params(struct rt_model *m, uint64_t seed)
{
    for (int i = 0; i < m->n_layers; i++) {
        struct rt_layer *l = &m->layers[i];
        if (!l->ops->init) continue;
        struct rt_rng rng;
        rt_rng_seed(&rng, rt_rng_derive(seed, RT_STREAM_INIT, (uint64_t)i));
        l->ops->init(l, m->spec.init, &rng);
    }
}

size_t rt_layer_no_params(const struct rt_layer *l)
{
    (void)l;
    return 0;
}

size_t rt_layer_output_bytes(const struct rt_layer *l, int rows)
{
    return rt_arena_footprint((size_t)rows * l->out * sizeof(float));
}

int rt_layer_bind_output(struct rt_layer *l, struct rt_arena *a, int rows)
{
    l->y = rt_arena_alloc(a, (size_t)rows * l->out * sizeof(float));
    return l->y ? RT_OK : RT_ERR_NOMEM;
}

void rt_layer_pass_dx(struct rt_layer *l, float *dx, const float *x, int B)
{
    (void)x;
    if (B) memcpy(dx, l->dy, (size_t)B * l->out * sizeof *dx);
}

int rt_layer_infer_same(struct rt_layer *l, char *err, size_t cap)
{
    (void)err;
    (void)cap;
    l->out_shape = l->in_shape;
    return 0;
}

/* v[i] ~ U(-bound, bound), in order: the stream position defines the bytes. */
static void fill_uniform(float *v, size_t n, double bound, struct rt_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((2.0 * rt_rng_uniform(rng) - 1.0) * bound);
}

static void fill_normal(float *v, size_t n, double std, struct rt_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(rt_rng_normal(rng) * std);
}

/* W first, then b, from one stream: see model.h for the three schemes. */
void rt_layer_init_weights(struct rt_layer *l, enum rt_init init, struct rt_rng *rng, double fan_in,
                           double fan_out)
{
    size_t nw = l->ops->weight_count(l), nb = l->ops->bias_count(l);
    switch (init) {
    case RT_INIT_TORCH: /* kaiming_uniform(a=sqrt 5): gain sqrt(1/3) * sqrt(3/FAN_IN) */
        fill_uniform(l->w, nw, 1.0 / sqrt(fan_in), rng);
        fill_uniform(l->b, nb, 1.0 / sqrt(fan_in), rng);
        return;
    case RT_INIT_XAVIER:
        fill_uniform(l->w, nw, sqrt(6.0 / (fan_in + fan_out)), rng);
        break;
    case RT_INIT_HE:
        fill_normal(l->w, nw, sqrt(2.0 / fan_in), rng);
        break;
    case RT_INIT_GPT2:
        fill_normal(l->w, nw, 0.02, rng);
        break;
    }
    memset(l->b, 0, nb * sizeof *l->b);
}

/* ---- questions about one layer ---- */

void rt_model_layer_view(const struct rt_model *m, int i, float **w, float **b, float **dw,
                         float **db)
{
    const struct rt_layer *l = &m->layers[i];
    if (w) *w = l->w;
    if (b) *b = l->b;
    if (dw) *dw = l->dw;
    if (db) *db = l->db;
}

size_t rt_model_layer_offset(const struct rt_model *m, int i)
{
    return m->layers[i].offset;
}

size_t rt_model_layer_count(const struct rt_model *m, int i)
{
    return m->layers[i].count;
}

size_t rt_model_layer_weights(const struct rt_model *m, int i)
{
    return m->layers[i].ops->weight_count(&m->layers[i]);
}

size_t rt_model_layer_bias_count(const struct rt_model *m, int i)
{
    return m->layers[i].ops->bias_count(&m->layers[i]);
}

int rt_model_layer_prunable(const struct rt_model *m, int i)
{
    const struct rt_layer *l = &m->layers[i];
    return l->ops->prunable && l->ops->weight_count(l) > 0;
}

int rt_model_layer_weight_dims(const struct rt_model *m, int i, int64_t dims[4])
{
    const struct rt_layer *l = &m->layers[i];
    if (!l->ops->weight_dims || !l->ops->weight_count(l)) return 0;
    return l->ops->weight_dims(l, dims);
}

const struct rt_shape *rt_model_layer_shape(const struct rt_model *m, int i)
{
    return &m->layers[i].out_shape;
}

const char *rt_model_layer_kind(const struct rt_model *m, int i)
{
    return m->layers[i].ops->name;
}

void rt_model_layer_text(const struct rt_model *m, int i, char *buf, size_t cap)
{
    rt_layer_spec_text(buf, cap, &m->layers[i].spec);
}

static double gemm_flops(const struct rt_gemm_shape *g)
{
    return 2.0 * (double)g->M * (double)g->N * (double)g->K * (double)g->repeat;
}

/* The GEMMs of layer i for one sample (its P rows). */
static int sample_gemms(const struct rt_layer *l, struct rt_gemm_shape *g)
{
    return l->ops->gemms ? l->ops->gemms(l, l->positions, g) : 0;
}

double rt_model_layer_forward_flops(const struct rt_model *m, int i)
{
    struct rt_gemm_shape g[RT_LAYER_MAX_GEMMS];
    int n = sample_gemms(&m->layers[i], g);
    double f = 0.0;
    for (int k = 0; k < n; k++)
        if (g[k].pass == RT_GEMM_FORWARD) f += gemm_flops(&g[k]);
    return f;
}

/* The first layer with parameters: below it nothing needs a gradient. */
static int first_trained(const struct rt_model *m)
{
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].count) return i;
    return m->n_layers;
}

/* ---- the drivers ---- */

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Adds the time since *t0 to m->timing[i][phase] and restarts the clock (timing on). */
static void lap(struct rt_model *m, int i, int phase, double *t0)
{
    double now = seconds_now();
    m->timing[2 * i + phase] += now - *t0;
    *t0 = now;
}

void rt_model_set_forward_hook(struct rt_model *m, void (*fn)(void *ctx, int layer), void *ctx)
{
    m->before_forward = fn;
    m->forward_ctx = ctx;
}

const float *rt_model_forward(struct rt_model *m, const float *x, int B)
{
    assert(B >= 0 && B <= m->max_batch);
    const float *in = x; /* (B, IN) of the current layer */
    double t0 = m->timing ? seconds_now() : 0;
    for (int i = 0; i < m->n_layers; i++) {
        struct rt_layer *l = &m->layers[i];
        if (m->before_forward) m->before_forward(m->forward_ctx, i);
        l->ops->forward(l, in, B * l->positions);
        if (m->timing) lap(m, i, 0, &t0);
        in = l->y;
    }
    return in;
}

double rt_model_loss(struct rt_model *m, const void *targets, int B, double norm)
{
    assert(B >= 0 && B <= m->max_batch);
    const float *logits = m->layers[m->n_layers - 1].y;
    int K = m->outputs, rows = B * m->positions;
    if (m->spec.loss == RT_LOSS_MSE) return rt_loss_mse(m->dlogits, logits, targets, rows, K, norm);
    return rt_loss_ce(m->dlogits, logits, targets, rows, K, norm);
}

double rt_model_loss_norm(const struct rt_model *m, int64_t samples)
{
    return rt_loss_norm(m->spec.loss, samples * m->positions, m->outputs);
}

double rt_model_loss_kd(struct rt_model *m, const float *teacher, const void *targets, int B,
                        double norm, double T, double alpha)
{
    assert(B >= 0 && B <= m->max_batch);
    const float *logits = m->layers[m->n_layers - 1].y;
    int K = m->outputs, rows = B * m->positions;
    if (m->spec.loss == RT_LOSS_MSE)
        return rt_loss_kd_mse(m->dlogits, logits, teacher, targets, rows, K, alpha, norm);
    return rt_loss_kd(m->dlogits, logits, teacher, targets, rows, K, T, alpha, norm);
}

void rt_model_backward(struct rt_model *m, const float *x, int B, rt_grad_ready_fn ready, void *ctx)
{
    assert(B >= 0 && B <= m->max_batch);
    int first = first_trained(m);
    double t0 = m->timing ? seconds_now() : 0;
    for (int i = m->n_layers - 1; i >= first; i--) {
        struct rt_layer *l = &m->layers[i];
        const float *in = i > 0 ? m->layers[i - 1].y : x;
        int rows = B * l->positions;
        l->accumulate = m->grad_accumulate; /* read by the kinds with parameters */
        if (l->ops->backward) l->ops->backward(l, in, rows);
        if (m->timing) lap(m, i, 1, &t0);
        if (ready && l->count) { /* before dX: the bucket can move while dX runs */
            ready(ctx, i, l->offset, l->count);
            if (m->timing) t0 = seconds_now(); /* communication is not the layer's */
        }
        if (i > first) l->ops->backward_dx(l, m->layers[i - 1].dy, in, rows);
        if (m->timing) lap(m, i, 1, &t0);
    }
}

int64_t rt_model_count_correct(const struct rt_model *m, const int32_t *labels, int B)
{
    const float *logits = m->layers[m->n_layers - 1].y;
    return rt_loss_count_correct(logits, labels, B * m->positions, m->outputs);
}

/* Bias, activation, pooling and loss passes are left out, as is usual for MFU, since they
 * are O(B OUT) against the GEMMs' O(B IN OUT). */
double rt_model_forward_flops_per_sample(const struct rt_model *m)
{
    double f = 0.0;
    for (int i = 0; i < m->n_layers; i++)
        f += rt_model_layer_forward_flops(m, i);
    return f;
}

/* Forward, dW and dX (but for the first trained layer) of layer i at B samples. */
static int step_gemms(const struct rt_model *m, int i, int B, struct rt_gemm_shape *g)
{
    const struct rt_layer *l = &m->layers[i];
    int n = l->ops->gemms ? l->ops->gemms(l, B * l->positions, g) : 0, kept = 0;
    for (int k = 0; k < n; k++)
        if (g[k].pass != RT_GEMM_DX || i != first_trained(m)) g[kept++] = g[k];
    return kept;
}

double rt_model_layer_train_flops(const struct rt_model *m, int i)
{
    double f = 0.0;
    struct rt_gemm_shape g[RT_LAYER_MAX_GEMMS];
    int n = step_gemms(m, i, 1, g);
    for (int k = 0; k < n; k++)
        f += gemm_flops(&g[k]);
    return f;
}

double rt_model_train_flops_per_sample(const struct rt_model *m)
{
    double f = 0.0;
    for (int i = 0; i < m->n_layers; i++)
        f += rt_model_layer_train_flops(m, i);
    return f;
}

void rt_nn_set_threads(int n)
{
    if (n > 0) openblas_set_num_threads(n);
}

/* One GEMM of shape g on scratch operands, g->repeat times. */
static void run_gemm(const struct rt_gemm_shape *g, const float *a, const float *b, float *c)
{
    int lda = g->trans_a ? g->M : g->K, ldb = g->trans_b ? g->K : g->N;
    for (int r = 0; r < g->repeat; r++)
        cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                    g->trans_b ? CblasTrans : CblasNoTrans, g->M, g->N, g->K, 1.0f, a, lda, b, ldb,
                    0.0f, c, g->N);
}

/* The layer's step GEMMs, timed; per-layer seconds into t (n_layers). */
static void gemm_step(const struct rt_model *m, int B, const float *a, const float *b, float *c,
                      double *t)
{
    struct rt_gemm_shape g[RT_LAYER_MAX_GEMMS];
    for (int i = 0; i < m->n_layers; i++) {
        double t0 = seconds_now();
        int n = step_gemms(m, i, B, g);
        for (int k = 0; k < n; k++)
            run_gemm(&g[k], a, b, c);
        if (t) t[i] += seconds_now() - t0;
    }
}

/* The largest operand of any step GEMM, in floats. */
static size_t largest_operand(const struct rt_model *m, int B)
{
    size_t big = 1;
    struct rt_gemm_shape g[RT_LAYER_MAX_GEMMS];
    for (int i = 0; i < m->n_layers; i++) {
        int n = step_gemms(m, i, B, g);
        for (int k = 0; k < n; k++) {
            size_t mk = (size_t)g[k].M * g[k].K, kn = (size_t)g[k].K * g[k].N,
                   mn = (size_t)g[k].M * g[k].N;
            big = mk > big ? mk : big;
            big = kn > big ? kn : big;
            big = mn > big ? mn : big;
        }
    }
    return big;
}

double rt_model_gemm_step_seconds(const struct rt_model *m, int B, int reps, double *per_layer)
{
    size_t n = largest_operand(m, B);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    double total = -1;
    if (a && b && c) {
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] = (float)(i % 13) * 0.01f;
        gemm_step(m, B, a, b, c, NULL); /* warm-up: threads, pages */
        if (per_layer) memset(per_layer, 0, (size_t)m->n_layers * sizeof *per_layer);
        double t0 = seconds_now();
        for (int r = 0; r < reps; r++)
            gemm_step(m, B, a, b, c, per_layer);
        int div = reps > 0 ? reps : 1;
        total = (seconds_now() - t0) / div;
        for (int i = 0; per_layer && i < m->n_layers; i++)
            per_layer[i] /= div;
    }
    free(a);
    free(b);
    free(c);
    return total;
}
