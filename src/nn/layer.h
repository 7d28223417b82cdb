/* layer.h - the table of operations behind every layer kind (private to src/nn).
 *
 * The model driver (model.c) only knows this interface: a layer has widths, a parameter
 * block (views into the model's flat params/grads), an output buffer y and a buffer dy for
 * dLoss/dy. Adding a kind means one new rt_layer_ops table and one case in
 * rt_layer_setup; model.h does not change. Dense is the only kind today.
 *
 * Buffer ownership: every pointer below is a view into one of the model's arenas (owned by
 * struct rt_model, freed by rt_model_free). Layers never allocate after binding.
 *
 * Dimension letters: B rows, IN/OUT the layer's input/output widths. */
#ifndef RT_NN_LAYER_H
#define RT_NN_LAYER_H

#include <stddef.h>

#include "ringtrain/arena.h"
#include "ringtrain/dense.h"
#include "ringtrain/model.h"
#include "ringtrain/rng.h"

enum rt_layer_kind { RT_LAYER_DENSE };

struct rt_layer;

struct rt_layer_ops {
    const char *name;
    /* Floats of this layer's block in params (and grads). */
    size_t (*param_count)(const struct rt_layer *l);
    /* Arena bytes (rt_arena_footprint included) bind_buffers will take for max_batch rows. */
    size_t (*buffer_bytes)(const struct rt_layer *l, int max_batch);
    /* Takes y and private buffers (not dy: the driver owns the dy chain) from a. Fails only
     * with RT_ERR_NOMEM when the arena was sized too small (a bug). */
    int (*bind_buffers)(struct rt_layer *l, struct rt_arena *a, int max_batch);
    /* Draws the layer's parameters (w, b) from rng. */
    void (*init)(struct rt_layer *l, enum rt_init init, struct rt_rng *rng);
    /* y (B, OUT) = layer(x (B, IN)); x borrowed, must stay unchanged until backward. */
    void (*forward)(struct rt_layer *l, const float *x, int B);
    /* From dy (B, OUT), which is scratch and may be overwritten: OVERWRITES the layer's
     * parameter gradients. x is what forward saw. */
    void (*backward)(struct rt_layer *l, const float *x, int B);
    /* dx (B, IN) = dLoss/dx, OVERWRITTEN; only after backward, whose state (in dy) it
     * uses. Split from backward so that the driver can announce the finished parameter
     * gradients (and let their allreduce start) before this GEMM runs. */
    void (*backward_dx)(struct rt_layer *l, float *dx, int B);
};

struct rt_layer {
    enum rt_layer_kind kind;
    enum rt_act act; /* applied to the output; RT_ACT_IDENTITY for the logits layer */
    const struct rt_layer_ops *ops;
    int in, out;    /* IN, OUT */
    size_t offset;  /* floats from params (and grads) to this layer's block */
    size_t count;   /* floats in the block, ops->param_count */
    float *w, *b;   /* (OUT, IN), (OUT): views into params */
    float *dw, *db; /* (OUT, IN), (OUT): views into grads */
    float *y;       /* (max_batch, OUT) output of the last forward */
    float *z;       /* (max_batch, OUT) pre-activation; only when act needs it, else NULL */
    float *dy;      /* (max_batch, OUT) dLoss/dy, set by the driver: the next layer's dx,
                       or the model's dlogits for the last layer */
    const struct rt_csr *csr; /* non-NULL: forward with these weights in CSR (inference) */
    const float *wt;          /* non-NULL (and csr NULL): forward with rt_dense_forward_rowwise on
                                 these weights transposed, (IN, OUT), a view into the model's
                                 rowwise_wt (inference) */
};

/* Fills the kind-independent fields and ops of a layer of kind `kind`. Returns RT_OK or
 * RT_ERR_INVAL for an unknown kind. Parameter views and buffers are bound later. */
int rt_layer_setup(struct rt_layer *l, enum rt_layer_kind kind, int in, int out, enum rt_act act);

extern const struct rt_layer_ops rt_layer_dense_ops;

#endif
