/* layer.h - the table of operations behind every layer kind (private to src/nn).
 *
 * A kind is one file in src/nn that fills one struct rt_layer_ops; rt_layer_kind_ops maps
 * the enum to the tables. The model driver (model.c) and everything it answers for other
 * modules (shapes, parameter views, prunable weights, structured units, FLOPs, save and
 * load dimensions) only go through this interface.
 *
 * A layer has an input and output shape (per sample; flat widths in and out), a parameter
 * block (weight then bias, views into the model's flat params/grads), an output buffer y
 * and a buffer dy for dLoss/dy. Buffer ownership: every pointer below is a view into one of
 * the model's arenas (owned by struct rt_model, freed by rt_model_free). Layers never
 * allocate after binding.
 *
 * Rows: a layer sees B samples as B P rows, P = l->positions (1, or T for a layer whose
 * output is a sequence (T, D)); IN and OUT are the widths of one row, so that a dense
 * layer over a sequence is one GEMM over every position of the batch. Every `B` of the
 * ops below is a count of rows.
 *
 * Dimension letters: B rows, IN/OUT the layer's input/output widths per row. */
#ifndef RT_NN_LAYER_H
#define RT_NN_LAYER_H

#include <stddef.h>

#include "ringtrain/arena.h"
#include "ringtrain/conv.h"
#include "ringtrain/dense.h"
#include "ringtrain/model.h"
#include "ringtrain/rng.h"
#include "nn/transformer_kernels.h"

struct rt_layer;

/* Which pass of a training step a GEMM belongs to. */
enum rt_gemm_pass { RT_GEMM_FORWARD, RT_GEMM_DW, RT_GEMM_DX };

/* One GEMM a layer issues per step: C (M, N) = op(A) op(B), as cblas_sgemm row-major,
 * `repeat` times in the call (once per sample for conv, per sample and head for
 * attention). */
struct rt_gemm_shape {
    int M, N, K;
    int trans_a, trans_b;
    int repeat;
    enum rt_gemm_pass pass;
};
#define RT_LAYER_MAX_GEMMS 6

struct rt_layer_ops {
    const char *name;
    /* Checks the spec's hyper-parameters against in_shape and sets out_shape (and any
     * geometry the kind keeps). -1 with a message in err (the shapes, what does not fit);
     * the driver adds the layer's index and text. */
    int (*infer)(struct rt_layer *l, char *err, size_t cap);
    /* Floats of the weight (0: no parameters) and of the bias. */
    size_t (*weight_count)(const struct rt_layer *l);
    size_t (*bias_count)(const struct rt_layer *l);
    /* The weight's dims in PyTorch's layout; returns the rank. NULL: no weight. */
    int (*weight_dims)(const struct rt_layer *l, int64_t dims[4]);
    /* Arena bytes (rt_arena_footprint included) bind_buffers takes for max_batch rows. */
    size_t (*buffer_bytes)(const struct rt_layer *l, int max_batch);
    /* Takes y and private buffers (not dy: the driver owns the dy chain) from a. Fails only
     * with RT_ERR_NOMEM when the arena was sized too small (a bug). */
    int (*bind_buffers)(struct rt_layer *l, struct rt_arena *a, int max_batch);
    /* Draws the layer's parameters (w, b) from rng. NULL: no parameters. */
    void (*init)(struct rt_layer *l, enum rt_init init, struct rt_rng *rng);
    /* y (B, OUT) = layer(x (B, IN)); x borrowed, must stay unchanged until backward. */
    void (*forward)(struct rt_layer *l, const float *x, int B);
    /* From dy (B, OUT), which is scratch and may be overwritten: OVERWRITES the layer's
     * parameter gradients, or ADDS to them when l->accumulate (a later micro-batch of a
     * step). x is what forward saw. NULL: no parameters. */
    void (*backward)(struct rt_layer *l, const float *x, int B);
    /* dx (B, IN) = dLoss/dx, OVERWRITTEN; only after backward, whose state (in dy) it
     * may use. Split from backward so that the driver can announce the finished parameter
     * gradients (and let their allreduce start) before this runs. */
    void (*backward_dx)(struct rt_layer *l, float *dx, const float *x, int B);
    /* The GEMMs of one training step at batch B (forward, dW, dX in that order; dX last so
     * that the first layer's can be left out); returns how many. NULL: none. */
    int (*gemms)(const struct rt_layer *l, int B, struct rt_gemm_shape *out);
    /* 1 when the weight is a matrix that magnitude pruning ranks (dense, conv2d). */
    int prunable;
    /* Structured pruning: 1 when the kind's outputs are units (dense neurons, conv
     * filters: weight rows, one bias each), 2 when it passes units through unchanged in
     * order (activations, pooling, dropout, flatten), 3 when it makes heads of the units
     * of the layer right before it (attention: head h reads rows h of each of q, k, v and
     * writes output columns h), 0 when units end here. */
    int unit_role;
};

enum { RT_UNITS_END = 0, RT_UNITS_MAKE = 1, RT_UNITS_PASS = 2, RT_UNITS_HEADS = 3 };

struct rt_layer {
    const struct rt_layer_ops *ops;
    struct rt_layer_spec spec;
    struct rt_shape in_shape, out_shape;
    int positions;            /* P: rows per sample (see Rows above) */
    int in, out;              /* IN, OUT: sizes of the shapes per row (flat size / P) */
    double init_scale;        /* RT_INIT_GPT2 multiplies the weight by it (1 unless the
                                 dense layer ends a residual branch) */
    int partner_index;        /* residual <-> its add; unembed <-> the embed it is tied
                                 to; -1: none (set by the driver's plan) */
    struct rt_layer *partner; /* that layer, once bound */
    int zero_bias_grad[2];    /* [lo, hi): bias entries whose gradient is exactly 0 by the
                                 math, written as 0 (the key bias of attention's q|k|v:
                                 softmax ignores a constant added to a query's scores, so
                                 rounding noise is all a computed gradient would hold, and
                                 Adam would turn that noise into full-size steps) */
    int accumulate;           /* 1: backward adds into dw, db (a tied head into its
                                 embedding's dw) rather than overwriting them; the driver
                                 sets it before each backward (rt_model_set_grad_accumulate) */
    enum rt_act act;          /* fused activation of dense and conv2d (RT_ACT_IDENTITY: none) */
    int index;                /* position in the model */
    size_t offset;            /* floats from params (and grads) to this layer's block */
    size_t count;             /* floats in the block: weight_count + bias_count */
    float *w, *b;             /* views into params; NULL without parameters */
    float *dw, *db;           /* views into grads */
    float *y;                 /* (max_batch, OUT) output of the last forward */
    float *z;                 /* (max_batch, OUT) pre-activation; only when act needs it */
    float *dy;                /* (max_batch, OUT) dLoss/dy, set by the driver: the next layer's
                                 dx, or the model's dlogits for the last layer */
    float *scratch;           /* kind-private floats (conv columns) */
    void *aux;                /* kind-private (maxpool arg-max indices, dropout masks) */
    union {
        struct rt_conv2d_geom conv;
        struct rt_pool2d_geom pool;
        struct rt_attn_geom attn;
    } g;
    const struct rt_model_mode *mode; /* the model's: training or inference */
    const struct rt_csr *csr;         /* non-NULL: forward with these weights in CSR
                                         (inference; rows = units) */
    const float *wt;                  /* non-NULL (and csr NULL): dense forward with
                                         rt_dense_forward_rowwise on these weights
                                         transposed (IN, OUT) (inference) */
};

/* The ops of a kind; NULL for a value outside the enum. */
const struct rt_layer_ops *rt_layer_kind_ops(enum rt_layer_kind kind);

/* Shared by the kinds with a fused activation: y = act(y) in place over n values, keeping
 * the pre-activation in z when rt_act_needs_preact(act); and dy = dy * act'(.) in place. */
void rt_act_apply(float *y, float *z, size_t n, enum rt_act act);
void rt_act_grad(float *dy, const float *y, const float *z, size_t n, enum rt_act act);
/* For kinds without parameters, and kinds whose output has the input's shape. */
size_t rt_layer_no_params(const struct rt_layer *l);
int rt_layer_infer_same(struct rt_layer *l, char *err, size_t cap);
/* For kinds whose only buffer is y (rows, OUT), and whose dx is dy (same shape). */
size_t rt_layer_output_bytes(const struct rt_layer *l, int rows);
int rt_layer_bind_output(struct rt_layer *l, struct rt_arena *a, int rows);
void rt_layer_pass_dx(struct rt_layer *l, float *dx, const float *x, int B);

/* PyTorch's default initialisation and the other two schemes over one weight and bias,
 * fan_in and fan_out as the kind defines them (see rt_model_init_params). */
void rt_layer_init_weights(struct rt_layer *l, enum rt_init init, struct rt_rng *rng, double fan_in,
                           double fan_out);

extern const struct rt_layer_ops rt_layer_dense_ops, rt_layer_conv2d_ops, rt_layer_maxpool2d_ops,
    rt_layer_avgpool2d_ops, rt_layer_flatten_ops, rt_layer_act_ops, rt_layer_dropout_ops,
    rt_layer_embed_ops, rt_layer_posembed_ops, rt_layer_layernorm_ops, rt_layer_attention_ops,
    rt_layer_residual_ops, rt_layer_add_ops, rt_layer_unembed_ops;

/* The GEMMs of a linear map of B rows, IN -> OUT, with weight (OUT, IN): X W^T, dZ^T X,
 * dZ W (dense, and the tied head). */
int rt_layer_linear_gemms(int B, int IN, int OUT, struct rt_gemm_shape *g);

#endif
