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
 * communication of the block can overlap the rest of backward.
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

#include <assert.h>
#include <stdlib.h>
#include <cblas.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

int rt_layer_setup(struct rt_layer *l, enum rt_layer_kind kind, int in, int out, enum rt_act act)
{
    memset(l, 0, sizeof *l);
    switch (kind) {
    case RT_LAYER_DENSE:
        l->ops = &rt_layer_dense_ops;
        break;
    default:
        return rt_errorf(RT_ERR_INVAL, "model: unknown layer kind %d", (int)kind);
    }
    l->kind = kind;
    l->in = in;
    l->out = out;
    l->act = act;
    return RT_OK;
}

static int validate_spec(const struct rt_model_spec *spec, int max_batch)
{
    if (!spec) return rt_errorf(RT_ERR_INVAL, "model: no spec");
    if (spec->n_sizes < 2 || spec->n_sizes > RT_MAX_LAYERS + 1)
        return rt_errorf(RT_ERR_INVAL, "model: %d layer widths given, need 2 to %d", spec->n_sizes,
                         RT_MAX_LAYERS + 1);
    for (int i = 0; i < spec->n_sizes; i++)
        if (spec->sizes[i] < 1)
            return rt_errorf(RT_ERR_INVAL, "model: layer width %d is %d, must be >= 1", i,
                             spec->sizes[i]);
    if ((unsigned)spec->act > RT_ACT_GELU)
        return rt_errorf(RT_ERR_INVAL, "model: unknown activation %d", (int)spec->act);
    if ((unsigned)spec->loss > RT_LOSS_MSE)
        return rt_errorf(RT_ERR_INVAL, "model: unknown loss %d", (int)spec->loss);
    if ((unsigned)spec->init > RT_INIT_HE)
        return rt_errorf(RT_ERR_INVAL, "model: unknown init %d", (int)spec->init);
    if (max_batch < 1)
        return rt_errorf(RT_ERR_INVAL, "model: max batch %d, must be >= 1", max_batch);
    return RT_OK;
}

/* Fills layers (widths, kinds, offsets) from the spec and returns n_params in *n_params.
 * Hidden layers apply spec->act; the last one is linear, its output being the logits. */
static int plan_layers(struct rt_layer *layers, size_t *n_params, const struct rt_model_spec *spec)
{
    int L = spec->n_sizes - 1;
    size_t total = 0;
    for (int i = 0; i < L; i++) {
        struct rt_layer *l = &layers[i];
        enum rt_act act = i == L - 1 ? RT_ACT_IDENTITY : spec->act;
        RT_TRY(rt_layer_setup(l, RT_LAYER_DENSE, spec->sizes[i], spec->sizes[i + 1], act));
        l->offset = total;
        l->count = l->ops->param_count(l);
        /* Widths are ints, so one block is < 2^62 floats; 32 of them could still wrap. */
        if (l->count > SIZE_MAX / sizeof(float) / (RT_MAX_LAYERS + 1))
            return rt_errorf(RT_ERR_INVAL, "model: layer %d (%d x %d) is too large", i, l->in,
                             l->out);
        total += l->count;
    }
    *n_params = total;
    return RT_OK;
}

/* Bytes of the activation arena: layer structs, layer buffers, dy of hidden layers, and
 * dlogits (which is the last layer's dy). */
static size_t act_arena_bytes(const struct rt_layer *layers, int L, int max_batch)
{
    size_t bytes = rt_arena_footprint((size_t)L * sizeof *layers);
    for (int i = 0; i < L; i++) {
        bytes += layers[i].ops->buffer_bytes(&layers[i], max_batch);
        bytes += rt_arena_footprint((size_t)max_batch * layers[i].out * sizeof(float));
    }
    return bytes;
}

/* Points every layer at its parameter and gradient blocks and its buffers. */
static int bind_layers(struct rt_model *m)
{
    int L = m->n_layers;
    size_t row_bytes = (size_t)m->max_batch * sizeof(float);
    for (int i = 0; i < L; i++) {
        struct rt_layer *l = &m->layers[i];
        size_t nw = (size_t)l->out * l->in;
        l->w = m->params + l->offset;
        l->b = l->w + nw;
        l->dw = m->grads + l->offset;
        l->db = l->dw + nw;
        RT_TRY(l->ops->bind_buffers(l, &m->act_arena, m->max_batch));
        l->dy = i == L - 1 ? m->dlogits : rt_arena_alloc(&m->act_arena, row_bytes * l->out);
        if (!l->dy) return RT_ERR_NOMEM;
    }
    return RT_OK;
}

static int model_build(struct rt_model *m, const struct rt_model_spec *spec, int max_batch)
{
    struct rt_layer plan[RT_MAX_LAYERS];
    RT_TRY(validate_spec(spec, max_batch));
    m->spec = *spec;
    m->n_layers = spec->n_sizes - 1;
    m->max_batch = max_batch;
    RT_TRY(plan_layers(plan, &m->n_params, spec));

    int L = m->n_layers, K = spec->sizes[spec->n_sizes - 1];
    size_t param_bytes = m->n_params * sizeof(float);
    RT_TRY(rt_arena_init(&m->params_arena, "model params", param_bytes));
    RT_TRY(rt_arena_init(&m->grads_arena, "model grads", param_bytes));
    RT_TRY(rt_arena_init(&m->act_arena, "model activations", act_arena_bytes(plan, L, max_batch)));
    m->params = rt_arena_alloc(&m->params_arena, param_bytes);
    m->grads = rt_arena_alloc(&m->grads_arena, param_bytes);
    m->layers = rt_arena_alloc(&m->act_arena, (size_t)L * sizeof *m->layers);
    m->dlogits = rt_arena_alloc(&m->act_arena, (size_t)max_batch * K * sizeof(float));
    if (!m->params || !m->grads || !m->layers || !m->dlogits)
        return RT_ERR_NOMEM; /* sized above, so this is a bug; the arena recorded why */
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

/* Layer i's weights into c, exact zeros dropped. */
static int compress(const struct rt_layer *l, struct rt_csr *c)
{
    int64_t nnz = 0;
    size_t n = (size_t)l->in * (size_t)l->out;
    for (size_t j = 0; j < n; j++)
        nnz += l->w[j] != 0.0f;
    c->rows = l->out;
    c->cols = l->in;
    c->nnz = nnz;
    c->indptr = malloc((size_t)(l->out + 1) * sizeof *c->indptr);
    c->indices = malloc((size_t)(nnz ? nnz : 1) * sizeof *c->indices);
    c->data = malloc((size_t)(nnz ? nnz : 1) * sizeof *c->data);
    if (!c->indptr || !c->indices || !c->data)
        return rt_errorf(RT_ERR_NOMEM, "CSR weights: %lld nonzeros", (long long)nnz);
    int64_t k = 0;
    for (int o = 0; o < l->out; o++) {
        c->indptr[o] = k;
        const float *row = l->w + (size_t)o * l->in;
        for (int i = 0; i < l->in; i++)
            if (row[i] != 0.0f) {
                c->indices[k] = i;
                c->data[k++] = row[i];
            }
    }
    c->indptr[l->out] = k;
    return RT_OK;
}

static void free_rowwise(struct rt_model *m)
{
    for (int i = 0; m->rowwise_wt && i < m->n_layers; i++)
        m->layers[i].wt = NULL;
    free(m->rowwise_wt);
    m->rowwise_wt = NULL;
}

/* Back to GEMM in every layer: CSR and row-wise are both off, their copies freed. */
static void use_gemm(struct rt_model *m)
{
    free_rowwise(m);
    free_csr(m);
}

int rt_model_use_csr(struct rt_model *m, int on)
{
    use_gemm(m); /* whichever mode was on, CSR replaces it or GEMM returns */
    if (!on) return RT_OK;
    m->csr = calloc((size_t)m->n_layers, sizeof *m->csr);
    if (!m->csr) return rt_errorf(RT_ERR_NOMEM, "CSR weights");
    for (int i = 0; i < m->n_layers; i++) {
        int st = compress(&m->layers[i], &m->csr[i]);
        if (st != RT_OK) {
            free_csr(m);
            return st;
        }
        m->layers[i].csr = &m->csr[i];
    }
    return RT_OK;
}

/* 1 when at least 90% of the layer's weights are exact zeros, the threshold model.h sets
 * for CSR in row-wise mode: ceil(9 n / 10) zeros, formed without overflow for any n.
 * Measured: the scalar CSR kernel breaks even with the row-wise dense one near 90%. */
static int mostly_zeros(const struct rt_layer *l)
{
    size_t n = (size_t)l->in * (size_t)l->out, zeros = 0;
    for (size_t j = 0; j < n; j++)
        zeros += l->w[j] == 0.0f;
    return zeros >= n / 10 * 9 + (n % 10 * 9 + 9) / 10;
}

/* CSR copies of the layers marked in sparse; m->csr stays NULL when none is marked. */
static int compress_sparse(struct rt_model *m, const unsigned char *sparse)
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

/* wt (IN, OUT) = w^T for w (OUT, IN). Once per snapshot, so plain loops. */
static void transpose(float *wt, const float *w, int IN, int OUT)
{
    for (int o = 0; o < OUT; o++)
        for (int k = 0; k < IN; k++)
            wt[(size_t)k * OUT + o] = w[(size_t)o * IN + k];
}

/* The transposed weights of every layer not marked in sparse, back to back in one block of
 * n floats. The block is allocated even when n is 0: a non-NULL rowwise_wt is what says
 * the model is in row-wise mode. */
static int transpose_dense(struct rt_model *m, const unsigned char *sparse, size_t n)
{
    m->rowwise_wt = malloc((n ? n : 1) * sizeof *m->rowwise_wt);
    if (!m->rowwise_wt) return rt_errorf(RT_ERR_NOMEM, "row-wise weights: %zu floats", n);
    float *wt = m->rowwise_wt;
    for (int i = 0; i < m->n_layers; i++) {
        struct rt_layer *l = &m->layers[i];
        if (sparse[i]) continue;
        transpose(wt, l->w, l->in, l->out);
        l->wt = wt;
        wt += (size_t)l->in * l->out;
    }
    return RT_OK;
}

int rt_model_use_rowwise(struct rt_model *m, int on)
{
    unsigned char sparse[RT_MAX_LAYERS];
    size_t dense_floats = 0;
    use_gemm(m); /* a fresh snapshot, whichever mode was on */
    if (!on) return RT_OK;
    for (int i = 0; i < m->n_layers; i++) {
        sparse[i] = (unsigned char)mostly_zeros(&m->layers[i]);
        if (!sparse[i]) dense_floats += (size_t)m->layers[i].in * m->layers[i].out;
    }
    int st = compress_sparse(m, sparse);
    if (st == RT_OK) st = transpose_dense(m, sparse, dense_floats);
    if (st != RT_OK) use_gemm(m);
    return st;
}

int64_t rt_model_weight_nonzeros(const struct rt_model *m)
{
    int64_t nz = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct rt_layer *l = &m->layers[i];
        size_t n = (size_t)l->in * (size_t)l->out;
        for (size_t j = 0; j < n; j++)
            nz += l->w[j] != 0.0f;
    }
    return nz;
}

int64_t rt_model_weight_count(const struct rt_model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->n_layers; i++)
        n += (int64_t)m->layers[i].in * m->layers[i].out;
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
        struct rt_rng rng;
        rt_rng_seed(&rng, rt_rng_derive(seed, RT_STREAM_INIT, (uint64_t)i));
        m->layers[i].ops->init(&m->layers[i], m->spec.init, &rng);
    }
}

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

const float *rt_model_forward(struct rt_model *m, const float *x, int B)
{
    assert(B >= 0 && B <= m->max_batch);
    const float *in = x; /* (B, IN) of the current layer */
    for (int i = 0; i < m->n_layers; i++) {
        struct rt_layer *l = &m->layers[i];
        l->ops->forward(l, in, B);
        in = l->y;
    }
    return in;
}

double rt_model_loss(struct rt_model *m, const void *targets, int B, double norm)
{
    assert(B >= 0 && B <= m->max_batch);
    const float *logits = m->layers[m->n_layers - 1].y;
    int K = m->spec.sizes[m->spec.n_sizes - 1];
    if (m->spec.loss == RT_LOSS_MSE) return rt_loss_mse(m->dlogits, logits, targets, B, K, norm);
    return rt_loss_ce(m->dlogits, logits, targets, B, K, norm);
}

double rt_model_loss_kd(struct rt_model *m, const float *teacher, const void *targets, int B,
                        double norm, double T, double alpha)
{
    assert(B >= 0 && B <= m->max_batch);
    const float *logits = m->layers[m->n_layers - 1].y;
    int K = m->spec.sizes[m->spec.n_sizes - 1];
    if (m->spec.loss == RT_LOSS_MSE)
        return rt_loss_kd_mse(m->dlogits, logits, teacher, targets, B, K, alpha, norm);
    return rt_loss_kd(m->dlogits, logits, teacher, targets, B, K, T, alpha, norm);
}

void rt_model_backward(struct rt_model *m, const float *x, int B, rt_grad_ready_fn ready, void *ctx)
{
    assert(B >= 0 && B <= m->max_batch);
    for (int i = m->n_layers - 1; i >= 0; i--) {
        struct rt_layer *l = &m->layers[i];
        const float *in = i > 0 ? m->layers[i - 1].y : x;
        float *dx = i > 0 ? m->layers[i - 1].dy : NULL;
        l->ops->backward(l, in, B);
        if (ready) /* before dX: the bucket can move while the dX GEMM runs */
            ready(ctx, i, l->offset, l->count);
        if (dx) l->ops->backward_dx(l, dx, B);
    }
}

int64_t rt_model_count_correct(const struct rt_model *m, const int32_t *labels, int B)
{
    const float *logits = m->layers[m->n_layers - 1].y;
    return rt_loss_count_correct(logits, labels, B, m->spec.sizes[m->spec.n_sizes - 1]);
}

/* Multiply-adds count two FLOPs; bias, activation and loss passes are left out, as is
 * usual for MFU, since they are O(B OUT) against the GEMMs' O(B IN OUT). */
static double layer_gemm_flops(const struct rt_layer *l)
{
    return 2.0 * (double)l->in * (double)l->out;
}

double rt_model_forward_flops_per_sample(const struct rt_model *m)
{
    double f = 0.0;
    for (int i = 0; i < m->n_layers; i++)
        f += layer_gemm_flops(&m->layers[i]);
    return f;
}

double rt_model_train_flops_per_sample(const struct rt_model *m)
{
    double f = 0.0;
    for (int i = 0; i < m->n_layers; i++) /* forward + dW, and dX except for layer 0 */
        f += layer_gemm_flops(&m->layers[i]) * (i == 0 ? 2.0 : 3.0);
    return f;
}

void rt_nn_set_threads(int n)
{
    if (n > 0) openblas_set_num_threads(n);
}

/* The GEMMs of one training step of a dense stack at batch B, as dense.c issues them. */
static void gemm_step(const struct rt_model_spec *s, int B, const float *a, const float *b,
                      float *c)
{
    for (int l = 0; l + 1 < s->n_sizes; l++) {
        int IN = s->sizes[l], OUT = s->sizes[l + 1];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OUT, IN, 1.0f, a, IN, b, IN, 0.0f,
                    c, OUT);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, B, 1.0f, a, OUT, b, IN, 0.0f,
                    c, IN);
        if (l > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, IN, OUT, 1.0f, a, OUT, b, IN,
                        0.0f, c, IN);
    }
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double rt_model_gemm_step_seconds(const struct rt_model_spec *spec, int B, int reps)
{
    size_t big = 0;
    for (int l = 0; l < spec->n_sizes; l++)
        big = (size_t)spec->sizes[l] > big ? (size_t)spec->sizes[l] : big;
    size_t n = big * (big > (size_t)B ? big : (size_t)B);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    double total = -1;
    if (a && b && c) {
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] = (float)(i % 13) * 0.01f;
        gemm_step(spec, B, a, b, c); /* warm-up: threads, pages */
        double t0 = seconds_now();
        for (int r = 0; r < reps; r++)
            gemm_step(spec, B, a, b, c);
        total = (seconds_now() - t0) / (reps > 0 ? reps : 1);
    }
    free(a);
    free(b);
    free(c);
    return total;
}
