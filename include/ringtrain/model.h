/* model.h - a network as an ordered list of typed layers over flat parameter and gradient
 * blocks.
 *
 * A model spec is a list of layer specs (dense, conv2d, maxpool2d, avgpool2d, flatten, an
 * activation, dropout, and the transformer kinds: embed, posembed, layernorm, attention,
 * residual/add, unembed) and the per-sample input shape: rank 1 (D) or rank 3 (C, H, W),
 * activations in NCHW as in PyTorch. A sequence is rank 2 (T, D), row-major (B, T, D) as
 * PyTorch's batch-first tensors: dense and layernorm act on each position, so a (T, D)
 * input is T rows of D to them. A residual branch is written inline: `residual` keeps
 * its input, the layers after it transform it, and `add` adds the kept input back
 * (branches nest; spec.c's block(...) item writes a GPT-2 block this way). Each layer infers its
 * output shape from its input shape (rt_model_spec_infer), so only the input and the layers' own
 * hyper-parameters are given. An activation written right after a dense or conv2d layer is folded
 * into it (run fused with the bias), elsewhere it is a layer of its own.
 *
 * Layout (documented for checkpoints, h5py and PyTorch users): the parameters of layer i
 * are its weight in PyTorch's layout (dense: nn.Linear.weight (OUT, IN); conv2d:
 * nn.Conv2d.weight (OC, C, KH, KW); embed: nn.Embedding.weight (V, D); posembed (T, D);
 * layernorm: nn.LayerNorm.weight (D)) followed by its bias (OUT, OC or D; embeddings have
 * none); layers without parameters take no space. unembed has none of its own: it reads
 * the embedding's weight, and its gradient is added into the embedding's (tied head). Layers follow
 * each other in order in one contiguous float block `params`; `grads` has the same layout, so
 * averaging gradients across ranks is one call on one buffer.
 *
 * Everything a caller needs to know about a layer's sizes is asked of the model through
 * the functions below (parameters, prunable weights, structured units, FLOPs, shapes):
 * the layer kinds behind them live in src/nn, one file each, behind one table of
 * operations (src/nn/layer.h).
 *
 * All buffers, activations included, are allocated by rt_model_init for batches of up to
 * max_batch rows; forward, loss and backward never allocate.
 *
 * Dimension letters: B rows in the batch, IN/OUT a layer's flat widths, K the output width. */
#ifndef RT_MODEL_H
#define RT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ringtrain/arena.h"

#define RT_MAX_LAYERS 128

enum rt_act { RT_ACT_IDENTITY, RT_ACT_RELU, RT_ACT_TANH, RT_ACT_SIGMOID, RT_ACT_GELU };
enum rt_loss { RT_LOSS_CE, RT_LOSS_MSE };
enum rt_init { RT_INIT_TORCH, RT_INIT_XAVIER, RT_INIT_HE, RT_INIT_GPT2 };

/* Parse a name ("relu", "ce"/"cross_entropy", "mse", "torch"/"xavier"/"he"); returns 0 or
 * -1 when the name is unknown (the caller reports it with the file and key). */
int rt_act_parse(const char *name, enum rt_act *out);
int rt_loss_parse(const char *name, enum rt_loss *out);
int rt_init_parse(const char *name, enum rt_init *out);
const char *rt_act_name(enum rt_act a);
const char *rt_loss_name(enum rt_loss l);
const char *rt_init_name(enum rt_init i);

enum rt_layer_kind {
    RT_LAYER_DENSE,
    RT_LAYER_CONV2D,
    RT_LAYER_MAXPOOL2D,
    RT_LAYER_AVGPOOL2D,
    RT_LAYER_FLATTEN,
    RT_LAYER_ACT,
    RT_LAYER_DROPOUT,
    RT_LAYER_EMBED,     /* token embedding: ids (T) -> (T, D), weight (V, D) */
    RT_LAYER_POSEMBED,  /* learned positions: (T, D) + P, weight (T, D) */
    RT_LAYER_LAYERNORM, /* over the last dim, affine weight and bias (D) */
    RT_LAYER_ATTENTION, /* causal multi-head self-attention: (T, 3D) q|k|v -> (T, D) */
    RT_LAYER_RESIDUAL,  /* opens a residual branch: passes x on and keeps it */
    RT_LAYER_ADD,       /* closes the innermost open branch: y = x + the kept x */
    RT_LAYER_UNEMBED,   /* the output head tied to the first embed: (T, D) -> (T, V) */
    RT_LAYER_KINDS
};

/* A per-sample shape: rank 1 (D), rank 2 (T, D): a sequence of T positions of D values
 * each, or rank 3 (C, H, W); rank 0 = not known yet. */
struct rt_shape {
    int rank;
    int d[3];
};
int64_t rt_shape_size(const struct rt_shape *s); /* product of the dims; 0 for rank 0 */
int rt_shape_equal(const struct rt_shape *a, const struct rt_shape *b);
/* "(1, 28, 28)", "(784)" or "(?)" into buf. */
void rt_shape_text(char *buf, size_t cap, const struct rt_shape *s);

struct rt_layer_spec {
    enum rt_layer_kind kind;
    int units;                        /* dense: OUT; conv2d: output channels; embed: D */
    int kernel[2], stride[2], pad[2]; /* conv2d and pooling, (H, W); pooling has no pad */
    enum rt_act act; /* RT_LAYER_ACT: the function; dense, conv2d: applied after (fused) */
    double p;        /* dropout: probability of zeroing an element */
    int vocab;       /* embed: V (units is D); unembed: taken from the tied embed */
    int heads;       /* attention: the number of heads (units is D) */
};

struct rt_model_spec {
    struct rt_shape input; /* rank 0: taken from the data (rt_model_spec_bind_input) */
    int n_layers;          /* 1 .. RT_MAX_LAYERS */
    struct rt_layer_spec layers[RT_MAX_LAYERS];
    int widths_form; /* given as widths ("784, 512, 10"): hidden dense layers apply `act`,
                        and the job file writes it back that way */
    enum rt_act act; /* [model] activation: the hidden activation of the widths form */
    enum rt_loss loss;
    enum rt_init init;
};

/* The layer list in the job-file syntax (README "Layer lists"): a list of widths
 * "784, 512, 10" (the widths form: input width, then dense layers, hidden ones applying
 * `act`), or a list of layers "conv(32, 3, pad=1), relu, maxpool(2), flatten, dense(10)".
 * Fills input (widths form only), n_layers, layers and widths_form of spec; keeps the rest.
 * -1 with a message in err (naming the item and what was expected) when it does not parse. */
int rt_model_spec_parse(struct rt_model_spec *spec, const char *text, char *err, size_t err_cap);
/* The canonical text of the layers: the widths form for a spec in widths form, else the
 * layer list (activations folded into a layer written after it). Parses back to the same
 * layers. Returns the length needed, like snprintf. */
size_t rt_model_spec_format(char *buf, size_t cap, const struct rt_model_spec *s);
/* spec as an MLP in the widths form: input (widths[0]), dense layers widths[1..n), the
 * hidden ones applying act. 2 <= n <= RT_MAX_LAYERS + 1. Keeps loss and init. */
void rt_model_spec_widths(struct rt_model_spec *spec, const int *widths, int n, enum rt_act act);
/* Marks a spec in the widths form when it is one (flat input, dense layers only, one hidden
 * activation, a linear last layer), so that it is written and shown that way. */
void rt_model_spec_normalize(struct rt_model_spec *spec);
/* Sets [model] activation: spec->act and, in the widths form, the hidden layers' act. */
void rt_model_spec_set_act(struct rt_model_spec *spec, enum rt_act act);
/* Short text for messages: "784-512-256-10" for an MLP of the widths form, else the list. */
void rt_model_sizes_text(char *buf, size_t cap, const struct rt_model_spec *s);
/* Text of layer i alone, e.g. "conv(32, 3, pad=1), relu". */
void rt_layer_spec_text(char *buf, size_t cap, const struct rt_layer_spec *l);
/* 1 when a and b have the same input shape (when both are known) and the same layers. */
int rt_model_spec_same_layers(const struct rt_model_spec *a, const struct rt_model_spec *b);

/* 1 when a is b with some layers' units (neurons, channels) fewer, as structured pruning
 * leaves it: same kinds and hyper-parameters, the same last layer. */
int rt_model_spec_narrower(const struct rt_model_spec *a, const struct rt_model_spec *b);

/* Shape inference: out[i] = the per-sample output shape of layer i (out has n_layers
 * entries; may be NULL). RT_ERR_SHAPE naming the layer (index and text) and both shapes
 * when a layer does not fit its input (a kernel larger than its input, pooling that leaves
 * nothing, a dense layer on an image without flatten, ...), RT_ERR_INVAL when the input is
 * not known or a hyper-parameter is out of range. */
int rt_model_spec_infer(const struct rt_model_spec *spec, struct rt_shape *out);
/* The output width K per position and the positions P of the last layer's output (after a
 * successful infer): (T, V) gives V and T, any other shape its flat size and 1. 0 when
 * the spec does not infer. */
int rt_model_spec_outputs(const struct rt_model_spec *spec);
int rt_model_spec_positions(const struct rt_model_spec *spec);
/* Sets the input shape from the data's sample shape when the spec has none; when it has one,
 * the two must hold as many values (a flat file's rows read as the spec's shape, or an
 * image read flat by a widths-form MLP). RT_ERR_SHAPE naming both shapes and `what` (e.g.
 * "[model] layers"). */
int rt_model_spec_bind_input(struct rt_model_spec *spec, const struct rt_shape *data,
                             const char *what);

struct rt_layer; /* src/nn/layer.h */
struct rt_csr;   /* dense.h */

/* What layers that behave differently in training see of the step (dropout): set by
 * rt_model_set_training before a training forward; a model starts in inference mode. */
struct rt_model_mode {
    int training;        /* 0: inference (dropout is the identity) */
    uint64_t seed;       /* the job seed */
    int64_t step;        /* the global step: the same at any rank count and on resume */
    const int64_t *rows; /* (B) borrowed: the global id of each row of the batch */
};

struct rt_model {
    struct rt_model_spec spec; /* input shape known */
    int n_layers;
    int max_batch;           /* rows the activation arena was sized for */
    int inputs, outputs;     /* flat input width, K: outputs per position */
    int positions;           /* P: output positions per sample (T of a sequence
                                model, 1 otherwise): logits are (B P, K) */
    size_t n_params;         /* floats in params (and in grads) */
    float *params;           /* (n_params) owned, see layout above */
    float *grads;            /* (n_params) owned, same layout; overwritten by backward, or
                                added to (rt_model_set_grad_accumulate) */
    int grad_accumulate;     /* 1: backward adds into grads (rt_model_set_grad_accumulate) */
    struct rt_layer *layers; /* (n_layers) owned */
    float *dlogits;          /* (max_batch, K) owned: dLoss/dlogits, written by the loss */
    double *timing;          /* borrowed, NULL = off: (n_layers, 2) seconds each layer's forward and
                                backward took, accumulated by the drivers (bench train) */
    struct rt_model_mode *mode_block; /* in act_arena (layers point at it, and the struct
                                         may be moved): rt_model_set_training */
    struct rt_arena params_arena, grads_arena, act_arena;
    struct rt_csr *csr; /* (n_layers) owned; non-NULL after rt_model_use_csr(m, 1), and
                           after rt_model_use_rowwise(m, 1) when a layer runs CSR (then only
                           those layers' entries are filled) */
    float *rowwise_wt;  /* owned; non-NULL after rt_model_use_rowwise(m, 1): the transposed
                           weights (IN, OUT) of the dense layers that run the row-wise kernel */
    void (*before_forward)(void *ctx, int layer); /* rt_model_set_forward_hook */
    void *forward_ctx;
};

/* Calls fn(ctx, i) before each layer i's forward (NULL: none): how a sharded optimizer's
 * parameter allgather overlaps the forward, each layer waiting only for its own (and its
 * predecessors') parameters. */
void rt_model_set_forward_hook(struct rt_model *m, void (*fn)(void *ctx, int layer), void *ctx);

/* Infers every layer's shape (rt_model_spec_infer: the input shape must be known), checks
 * max_batch >= 1 and allocates parameters, gradients and the activation arena. Parameters
 * start at zero: call rt_model_init_params. Fails with RT_ERR_SHAPE, RT_ERR_INVAL or
 * RT_ERR_NOMEM (message recorded). On failure the model is left freed. */
int rt_model_init(struct rt_model *m, const struct rt_model_spec *spec, int max_batch);
void rt_model_free(struct rt_model *m); /* no-op on a zeroed or freed model */

/* Draws every parameter from spec.init, seeded by (seed, layer) through rt_rng_derive:
 * same seed, same bytes, on any machine. RT_INIT_TORCH is PyTorch's default for nn.Linear
 * and nn.Conv2d (W ~ U(-1/sqrt(FAN_IN), +), i.e. kaiming_uniform a=sqrt(5); b likewise),
 * FAN_IN = IN or C KH KW. RT_INIT_XAVIER: W ~ U(-sqrt(6/(FAN_IN+FAN_OUT)), +), b = 0.
 * RT_INIT_HE: W ~ N(0, 2/FAN_IN), b = 0. RT_INIT_GPT2 (GPT-2 and nanoGPT): every dense and
 * embedding weight ~ N(0, 0.02), biases 0, and the dense layer that ends a residual branch
 * scaled by 1/sqrt(the number of branches). Layer norms start at weight 1, bias 0, and
 * embeddings under the other schemes at N(0, 1), as nn.LayerNorm and nn.Embedding do. */
void rt_model_init_params(struct rt_model *m, uint64_t seed);

/* Training mode for the next forward and backward (dropout draws its masks from (seed,
 * step, rows[r], element)), or inference mode (training = 0, the rest ignored). */
void rt_model_set_training(struct rt_model *m, int training, uint64_t seed, int64_t step,
                           const int64_t *rows);

/* ---- what a layer is, asked of the layer ---- */

/* Views of layer i's parameters inside params (and grads when non-NULL out-pointers);
 * NULL for a layer without parameters. */
void rt_model_layer_view(const struct rt_model *m, int i, float **w, float **b, float **dw,
                         float **db);
/* Offset (in floats) of layer i's block inside params/grads, and its length (0 for a layer
 * without parameters). */
size_t rt_model_layer_offset(const struct rt_model *m, int i);
size_t rt_model_layer_count(const struct rt_model *m, int i);
/* Floats of layer i's weight (the block's first rt_model_layer_weights floats); 0 when the
 * layer has none. The rest of the block, rt_model_layer_bias_count floats, is the bias
 * (layer norms: weight and bias (D) each). */
size_t rt_model_layer_weights(const struct rt_model *m, int i);
size_t rt_model_layer_bias_count(const struct rt_model *m, int i);
/* 1 when layer i's weight is a matrix that magnitude pruning ranks and masks (dense,
 * conv2d); embeddings and layer norms are not, nor are biases. */
int rt_model_layer_prunable(const struct rt_model *m, int i);
/* The weight's dimensions in PyTorch's layout, e.g. (OUT, IN) or (OC, C, KH, KW); returns
 * the rank (0 without weights). The bias is (dims[0]). */
int rt_model_layer_weight_dims(const struct rt_model *m, int i, int64_t dims[4]);
/* Layer i's per-sample output shape, its kind's name ("dense", "conv2d", ...) and its text
 * in the job-file syntax. */
const struct rt_shape *rt_model_layer_shape(const struct rt_model *m, int i);
const char *rt_model_layer_kind(const struct rt_model *m, int i);
void rt_model_layer_text(const struct rt_model *m, int i, char *buf, size_t cap);
/* FLOPs of layer i's forward, and of its training step (forward, dW, dX but for the first
 * layer with parameters), per sample (GEMM multiply-adds count two). */
double rt_model_layer_forward_flops(const struct rt_model *m, int i);
double rt_model_layer_train_flops(const struct rt_model *m, int i);

/* ---- structured pruning: units (dense neurons, conv channels) the layers can drop ---- */

/* Output units of layer i that structured pruning may remove: its neurons (dense) or
 * filters (conv2d), when a later dense or conv2d layer reads them through layers that
 * keep units apart (activations, pooling, dropout, flatten); 0 otherwise (layers without
 * units, and the last one with parameters, whose outputs are the model's). */
int rt_model_units(const struct rt_model *m, int i);
/* 1 when layer i's units are attention heads: it is the q|k|v dense layer right before an
 * attention layer, and unit h is head h (its rows in q, k and v; the projection's columns
 * that read it). */
int rt_model_units_are_heads(const struct rt_model *m, int i);
/* score[j] = sqrt(|incoming weights of unit j|^2 + |weights that read it in the next
 * layer|^2) for the rt_model_units(m, i) units of layer i. */
void rt_model_unit_scores(const struct rt_model *m, int i, double *score);
/* spec with layer i's units set to counts[i] wherever rt_model_units(m, i) > 0. */
void rt_model_shrunk_spec(const struct rt_model *m, const int *counts, struct rt_model_spec *out);
/* Copies the kept units' parameters from src into dst, a model initialised with
 * rt_model_shrunk_spec(src, counts): kept lists, layer after layer (i ascending, for each
 * i with units), counts[i] ascending unit indices. The rows (filters) of every layer with
 * units and the matching input columns (channels) of the layer that reads them. The shrunk
 * model computes exactly what src computes with the dropped units' outputs forced to
 * zero. */
void rt_model_shrink_copy(const struct rt_model *src, const int32_t *kept, const int *counts,
                          struct rt_model *dst);

/* Forward pass of B samples (0 <= B <= max_batch); x (B, IN0) is borrowed and must stay
 * unchanged until backward. Returns the logits (B P, K) (P = m->positions: a sequence
 * model predicts at each of its T positions), owned by the model, valid until the next
 * forward. Cannot fail. */
const float *rt_model_forward(struct rt_model *m, const float *x, int B);

/* Loss of the last forward's B samples against targets (int32 labels (B P) for RT_LOSS_CE,
 * float (B P, K) for RT_LOSS_MSE): one prediction per row of the logits (a token of a
 * sequence model). Returns the SUM over rows of the per-row loss (CE: -log p_y;
 * MSE: sum over the K elements of (out - t)^2). Writes m->dlogits = d(sum)/dlogits / norm,
 * where norm is the global divisor (rt_loss_norm of the global batch) so that gradients
 * summed over ranks are the gradient of the global mean. Cannot fail. */
double rt_model_loss(struct rt_model *m, const void *targets, int B, double norm);

/* The divisor that turns a summed loss over `rows` rows into the PyTorch mean: rows for
 * CE (mean over the batch), rows * K for MSE (mean over all elements, as nn.MSELoss). */
double rt_loss_norm(enum rt_loss loss, int64_t rows, int K);
/* rt_loss_norm for `samples` samples of m: their rows of logits are samples P, so a
 * language model's loss is the mean over every token of the batch. */
double rt_model_loss_norm(const struct rt_model *m, int64_t samples);

/* Called by backward when layer i's gradient block (offset, count floats into grads) is
 * final. Layers finish in reverse order: this is where gradient buckets start to move. */
typedef void (*rt_grad_ready_fn)(void *ctx, int layer, size_t offset, size_t count);

/* Backward of the last forward from m->dlogits. OVERWRITES grads (no zeroing needed; with
 * B == 0 the gradients become zero), or ADDS to them after rt_model_set_grad_accumulate(m, 1)
 * (B == 0 then leaves them as they are). Either way the zero-by-the-math bias entries
 * (attention's key bias) are exactly 0. x is the same input forward saw. ready may be NULL;
 * it is called on every backward, accumulating or not (a trainer that reduces once per step
 * passes NULL but on the last micro-batch). Cannot fail. */
void rt_model_backward(struct rt_model *m, const float *x, int B, rt_grad_ready_fn ready,
                       void *ctx);

/* Whether the next backward adds its parameter gradients into grads (1) or overwrites them (0,
 * the default). The first micro-batch of a step overwrites, the later ones accumulate: with
 * each micro-batch's loss divided by the same global norm (rt_model_loss_norm of the whole
 * step's samples), grads ends as the gradient of the step's mean loss, up to float rounding,
 * with no buffer beyond grads (as PyTorch sums into .grad). Stays set until changed. Cannot
 * fail. */
void rt_model_set_grad_accumulate(struct rt_model *m, int on);

/* Distillation loss of the last forward's B samples against the frozen teacher's outputs
 * (B P, K) for the same rows and the targets (as rt_model_loss). CE: rt_loss_kd (Hinton et
 * al. 2015, temperature T, weight alpha of the soft term); MSE: rt_loss_kd_mse (squared
 * error against alpha * teacher + (1 - alpha) * target; T unused). Returns the sum over
 * rows and writes m->dlogits divided by norm, like rt_model_loss. Cannot fail. */
double rt_model_loss_kd(struct rt_model *m, const float *teacher, const void *targets, int B,
                        double norm, double T, double alpha);

/* Number of rows among the last forward's B P whose arg-max logit equals the label (CE only;
 * ties go to the lowest index, like torch.argmax). */
int64_t rt_model_count_correct(const struct rt_model *m, const int32_t *labels, int B);

/* FLOPs of one training step per sample (forward + backward GEMMs, dX of the first layer
 * with parameters skipped, since nothing consumes a gradient of the data), and of one
 * forward per sample. Used for model FLOP utilisation. */
double rt_model_train_flops_per_sample(const struct rt_model *m);
double rt_model_forward_flops_per_sample(const struct rt_model *m);

/* Inference with sparse weights: on = 1 compresses every layer's current weights to CSR
 * (exact zeros dropped, m->csr[i] for every layer with weights, what a CSR file stores) and
 * forward then multiplies only the nonzeros in the layers where that is faster
 * (rt_model_kernels_text); on = 0 returns to
 * GEMM. Either call ends row-wise mode (rt_model_use_rowwise). Training must not run with
 * CSR on (backward still uses the dense weights, which CSR does not follow). Allocates;
 * RT_ERR_NOMEM. */
int rt_model_use_csr(struct rt_model *m, int on);
/* The kernel each layer with weights runs, e.g. "0:conv2d:gemm,2:conv2d:csr,5:dense:csr": in
 * CSR mode every dense layer runs CSR, a conv layer only from 80% zero weights, where its
 * sparse kernel is the faster one. */
void rt_model_kernels_text(const struct rt_model *m, char *buf, size_t cap);
/* Row-wise inference: on = 1 makes forward results of every row a function of that row
 * alone, bit for bit, whatever the other rows of the batch and their number (BLAS GEMM
 * does not give that: OpenBLAS 0.3.21 rounds a row differently at different positions in
 * a call). Used for a frozen teacher whose outputs may be computed once and cached or
 * recomputed per batch with identical results. Each dense layer whose weights are at
 * least 90% zeros runs CSR (rt_dense_forward_csr, already row-wise); the others run
 * rt_dense_forward_rowwise on a transposed snapshot of their weights. Snapshots the
 * current weights: call again after they change. Inference only, like CSR. on = 0 returns
 * to GEMM; either call ends CSR mode. Allocates; RT_ERR_NOMEM. */
int rt_model_use_rowwise(struct rt_model *m, int on);

/* Nonzero weights and all weights of the prunable layers (rt_model_layer_prunable): what
 * sparsity is measured over. */
int64_t rt_model_weight_nonzeros(const struct rt_model *m);
int64_t rt_model_weight_count(const struct rt_model *m);

/* Mean seconds cblas_sgemm takes for the GEMMs of one training step of m's layers at batch
 * B (the same shapes and transposes as the layers issue: forward, dW and, except for the
 * first layer with parameters, dX), over reps repeats after a warm-up, on this process's
 * BLAS threads: the reference of model FLOP utilisation. per_layer (n_layers, may be NULL)
 * receives each layer's share. Allocates its own operands; < 0 when it cannot. */
double rt_model_gemm_step_seconds(const struct rt_model *m, int B, int reps, double *per_layer);

/* BLAS threads for this process (cblas lives in src/nn only). n <= 0 leaves the default. */
void rt_nn_set_threads(int n);

#endif
