/* model.h - a feed-forward network over flat parameter and gradient blocks.
 *
 * Layout (documented for checkpoints, h5py and PyTorch users): the parameters of layer i
 * are W_i (OUT_i, IN_i) row-major, exactly nn.Linear.weight, followed by b_i (OUT_i). Layers
 * follow each other in order in one contiguous float block `params`; `grads` has the same
 * layout. Averaging gradients across ranks is therefore one call on one buffer.
 *
 * Hidden layers apply `act`; the last layer is linear (its output, the logits, goes to the
 * loss). All buffers, activations included, are allocated by rt_model_init for batches of
 * up to max_batch rows; forward, loss and backward never allocate.
 *
 * Layer kinds sit behind a small table of operations (src/nn/layer.h), so that kinds other
 * than dense can be added without changing this interface.
 *
 * Dimension letters: B rows in the batch, IN/OUT a layer's widths, K the model output width. */
#ifndef RT_MODEL_H
#define RT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ringtrain/arena.h"

#define RT_MAX_LAYERS 32

enum rt_act { RT_ACT_IDENTITY, RT_ACT_RELU, RT_ACT_TANH, RT_ACT_SIGMOID, RT_ACT_GELU };
enum rt_loss { RT_LOSS_CE, RT_LOSS_MSE };
enum rt_init { RT_INIT_TORCH, RT_INIT_XAVIER, RT_INIT_HE };

/* Parse a name ("relu", "ce"/"cross_entropy", "mse", "torch"/"xavier"/"he"); returns 0 or
 * -1 when the name is unknown (the caller reports it with the file and key). */
int rt_act_parse(const char *name, enum rt_act *out);
int rt_loss_parse(const char *name, enum rt_loss *out);
int rt_init_parse(const char *name, enum rt_init *out);
const char *rt_act_name(enum rt_act a);
const char *rt_loss_name(enum rt_loss l);
const char *rt_init_name(enum rt_init i);

struct rt_model_spec;
/* The widths as "784-512-256-10" into buf. */
void rt_model_sizes_text(char *buf, size_t cap, const struct rt_model_spec *s);

struct rt_model_spec {
    int n_sizes;                  /* layer widths given: n_layers + 1, >= 2 */
    int sizes[RT_MAX_LAYERS + 1]; /* sizes[0] = input width, sizes[n_sizes-1] = K */
    enum rt_act act;              /* hidden activation */
    enum rt_loss loss;
    enum rt_init init;
};

struct rt_layer; /* src/nn/layer.h */
struct rt_csr;   /* dense.h */

struct rt_model {
    struct rt_model_spec spec;
    int n_layers;
    int max_batch;           /* rows the activation arena was sized for */
    size_t n_params;         /* floats in params (and in grads) */
    float *params;           /* (n_params) owned, see layout above */
    float *grads;            /* (n_params) owned, same layout; overwritten by backward */
    struct rt_layer *layers; /* (n_layers) owned */
    float *dlogits;          /* (max_batch, K) owned: dLoss/dlogits, written by the loss */
    struct rt_arena params_arena, grads_arena, act_arena;
    struct rt_csr *csr; /* (n_layers) owned; non-NULL after rt_model_use_csr(m, 1), and
                           after rt_model_use_rowwise(m, 1) when a layer runs CSR (then only
                           those layers' entries are filled) */
    float *rowwise_wt;  /* owned; non-NULL after rt_model_use_rowwise(m, 1): the transposed
                           weights (IN, OUT) of the layers that run the row-wise kernel */
};

/* Validates spec (every width >= 1, 2 <= n_sizes <= RT_MAX_LAYERS + 1, max_batch >= 1) and
 * allocates parameters, gradients and the activation arena. Parameters start at zero: call
 * rt_model_init_params. Fails with RT_ERR_INVAL or RT_ERR_NOMEM (message recorded). On
 * failure the model is left freed. */
int rt_model_init(struct rt_model *m, const struct rt_model_spec *spec, int max_batch);
void rt_model_free(struct rt_model *m); /* no-op on a zeroed or freed model */

/* Draws every parameter from spec.init, seeded by (seed, layer) through rt_rng_derive:
 * same seed, same bytes, on any machine. RT_INIT_TORCH is nn.Linear's default
 * (W ~ U(-1/sqrt(IN), 1/sqrt(IN)), i.e. kaiming_uniform a=sqrt(5); b ~ U(-1/sqrt(IN), ...)).
 * RT_INIT_XAVIER: W ~ U(-sqrt(6/(IN+OUT)), +), b = 0. RT_INIT_HE: W ~ N(0, 2/IN), b = 0. */
void rt_model_init_params(struct rt_model *m, uint64_t seed);

/* Views of layer i's parameters inside params (and grads when non-NULL out-pointers). */
void rt_model_layer_view(const struct rt_model *m, int i, float **w, float **b, float **dw,
                         float **db);
/* Offset (in floats) of layer i's block inside params/grads, and its length. */
size_t rt_model_layer_offset(const struct rt_model *m, int i);
size_t rt_model_layer_count(const struct rt_model *m, int i);

/* Forward pass of B rows (0 <= B <= max_batch); x (B, IN0) is borrowed and must stay
 * unchanged until backward. Returns the logits (B, K), owned by the model, valid until the
 * next forward. Cannot fail. */
const float *rt_model_forward(struct rt_model *m, const float *x, int B);

/* Loss of the last forward's B rows against targets (int32 labels (B) for RT_LOSS_CE,
 * float (B, K) for RT_LOSS_MSE). Returns the SUM over rows of the per-row loss (CE: -log p_y;
 * MSE: sum over the K elements of (out - t)^2). Writes m->dlogits = d(sum)/dlogits / norm,
 * where norm is the global divisor (rt_loss_norm of the global batch) so that gradients
 * summed over ranks are the gradient of the global mean. Cannot fail. */
double rt_model_loss(struct rt_model *m, const void *targets, int B, double norm);

/* The divisor that turns a summed loss over `rows` rows into the PyTorch mean: rows for
 * CE (mean over the batch), rows * K for MSE (mean over all elements, as nn.MSELoss). */
double rt_loss_norm(enum rt_loss loss, int64_t rows, int K);

/* Called by backward when layer i's gradient block (offset, count floats into grads) is
 * final. Layers finish in reverse order: this is where gradient buckets start to move. */
typedef void (*rt_grad_ready_fn)(void *ctx, int layer, size_t offset, size_t count);

/* Backward of the last forward from m->dlogits. OVERWRITES grads (no zeroing needed; with
 * B == 0 the gradients become zero). x is the same input forward saw. ready may be NULL.
 * Cannot fail. */
void rt_model_backward(struct rt_model *m, const float *x, int B, rt_grad_ready_fn ready,
                       void *ctx);

/* Distillation loss of the last forward's B rows against the frozen teacher's outputs
 * (B, K) for the same rows and the targets (as rt_model_loss). CE: rt_loss_kd (Hinton et
 * al. 2015, temperature T, weight alpha of the soft term); MSE: rt_loss_kd_mse (squared
 * error against alpha * teacher + (1 - alpha) * target; T unused). Returns the sum over
 * rows and writes m->dlogits divided by norm, like rt_model_loss. Cannot fail. */
double rt_model_loss_kd(struct rt_model *m, const float *teacher, const void *targets, int B,
                        double norm, double T, double alpha);

/* Number of rows among the last forward's B whose arg-max logit equals the label (CE only;
 * ties go to the lowest index, like torch.argmax). */
int64_t rt_model_count_correct(const struct rt_model *m, const int32_t *labels, int B);

/* FLOPs of one training step per sample (forward + backward GEMMs, dX of layer 0 skipped),
 * and of one forward per sample. Used for model FLOP utilisation. */
double rt_model_train_flops_per_sample(const struct rt_model *m);
double rt_model_forward_flops_per_sample(const struct rt_model *m);

/* Inference with sparse weights: on = 1 compresses every layer's current weights to CSR
 * (exact zeros dropped) and forward then multiplies only the nonzeros; on = 0 returns to
 * GEMM. Either call ends row-wise mode (rt_model_use_rowwise). Training must not run with
 * CSR on (backward still uses the dense weights, which CSR does not follow). Allocates;
 * RT_ERR_NOMEM. */
int rt_model_use_csr(struct rt_model *m, int on);
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

/* Nonzero weights (biases not counted), and all weights. */
int64_t rt_model_weight_nonzeros(const struct rt_model *m);
int64_t rt_model_weight_count(const struct rt_model *m);

/* Mean seconds cblas_sgemm takes for the GEMMs of one training step of spec at batch B
 * (forward X W^T; backward dZ^T X and, except for layer 0, dZ W: same shapes and transposes
 * as src/nn issues), over reps repeats after a warm-up, on this process's BLAS threads: the
 * reference of model FLOP utilisation. Allocates its own operands; < 0 when it cannot. */
double rt_model_gemm_step_seconds(const struct rt_model_spec *spec, int B, int reps);

/* BLAS threads for this process (cblas lives in src/nn only). n <= 0 leaves the default. */
void rt_nn_set_threads(int n);

#endif
