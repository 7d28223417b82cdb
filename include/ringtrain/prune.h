/* prune.h - magnitude pruning masks and the gradual sparsity schedule.
 *
 * A mask covers the weights of every layer (biases are never pruned). Rank 0 computes each
 * mask update from its parameters and broadcasts it bit-packed; every rank unpacks the same
 * bits, so masks are identical on every replica by construction, never recomputed locally.
 *
 * Selection: the k weights of smallest |w| are pruned, k = round(sparsity * n) over each
 * layer's weights (scope layer) or over all weights together (scope global, magnitudes
 * compared as they are, like torch.nn.utils.prune.global_unstructured with L1). Ties are
 * broken by position: among equal magnitudes the lower flat index is pruned first, so the
 * result depends on nothing but the values. Pruned weights are zero and so stay the
 * smallest: masks only ever grow.
 *
 * Schedule (Zhu & Gupta 2017, "To prune, or not to prune"): with t counted in steps from
 * the start of the pruning phase, s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3 for
 * t0 <= t <= t0 + n dt, s_i before, s_f after; masks are updated at t = t0 + k dt,
 * k = 0..n (the first at s_i, the last reaches s_f). oneshot: one update to s_f at t0.
 * k = round(sparsity * n) rounds halves away from zero (llround).
 *
 * No MPI and no allocation after rt_masks_init. */
#ifndef RT_PRUNE_H
#define RT_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "ringtrain/arena.h"
#include "ringtrain/model.h"

enum rt_prune_scope { RT_PRUNE_LAYER, RT_PRUNE_GLOBAL };
enum rt_prune_schedule { RT_PRUNE_GRADUAL, RT_PRUNE_ONESHOT };
int rt_prune_scope_parse(const char *name, enum rt_prune_scope *out); /* 0 or -1 */
int rt_prune_schedule_parse(const char *name, enum rt_prune_schedule *out);
const char *rt_prune_scope_name(enum rt_prune_scope s);
const char *rt_prune_schedule_name(enum rt_prune_schedule s);

struct rt_prune_sched {
    enum rt_prune_schedule kind;
    double initial, target;        /* s_i, s_f in [0, 1) */
    int64_t start, every, updates; /* t0, dt >= 1, n >= 1 (phase steps) */
};

/* s_t as above. */
double rt_prune_sparsity_at(const struct rt_prune_sched *s, int64_t t);
/* 1 when the masks are to be updated before phase step t runs. */
int rt_prune_is_update(const struct rt_prune_sched *s, int64_t t);
/* The phase step after which the masks are final (the last update). */
int64_t rt_prune_last_update(const struct rt_prune_sched *s);

struct rt_masks {
    int n_layers;
    size_t n_params;             /* of the model: masks index the flat parameters */
    size_t n_weights;            /* prunable: the weights of every layer */
    size_t w_off[RT_MAX_LAYERS]; /* flat offset of layer i's weight block */
    size_t w_len[RT_MAX_LAYERS]; /* its length (OUT * IN) */
    uint8_t *keep;               /* (n_params) 1 kept, 0 pruned; biases always 1 */
    uint8_t *packed;             /* (packed_bytes) the weights' bits, LSB first */
    size_t packed_bytes;
    uint64_t *keys; /* (n_weights) selection scratch */
    struct rt_arena arena;
};

/* Sizes the masks for m's layout, every weight kept. RT_ERR_NOMEM. */
int rt_masks_init(struct rt_masks *k, const struct rt_model *m);
void rt_masks_free(struct rt_masks *k);

/* Rank 0: prunes the smallest-magnitude weights of params so that `sparsity` of them
 * (per layer or over all) are pruned, keeping every earlier pruned weight pruned, then
 * packs the bits (rt_masks_pack). */
void rt_masks_compute(struct rt_masks *k, const float *params, enum rt_prune_scope scope,
                      double sparsity);
void rt_masks_pack(struct rt_masks *k);   /* keep -> packed */
void rt_masks_unpack(struct rt_masks *k); /* packed -> keep */
void rt_masks_keep_all(struct rt_masks *k);

/* Zeroes the pruned positions of a flat array laid out like the parameters (parameters,
 * gradients, optimizer moments), restricted to [lo, hi). */
void rt_masks_apply(const struct rt_masks *k, float *v, size_t lo, size_t hi);
/* The same for an array that holds only [lo, hi): v[0] is position lo (a shard of the
 * optimizer state). */
void rt_masks_apply_at(const struct rt_masks *k, float *v, size_t lo, size_t hi);

/* Pruned fraction of layer i's weights, or of all weights when i < 0. */
double rt_masks_sparsity(const struct rt_masks *k, int i);

/* Fraction of prunable weights of params that are exactly zero (layer i, or all if i < 0):
 * what `final: sparsity=` and inspect report, masks or not. */
double rt_weights_sparsity(const struct rt_model *m, const float *params, int i);

/* Structured pruning (rank 0 decides): for every layer i with units (rt_model_units: the
 * neurons of a hidden dense layer, the filters of a conv layer that a later layer reads)
 * keeps the max(1, round(keep * units)) units with the largest rt_model_unit_scores (the
 * L2 norm of their incoming and outgoing weights), ties to the lower index, and writes
 * their indices, ascending, to kept (layer after layer; capacity: the sum of the units)
 * and their number to counts[i] (0 for layers without units; counts has n_layers
 * entries). The model then shrinks with rt_model_shrunk_spec and rt_model_shrink_copy.
 * RT_ERR_NOMEM. */
int rt_prune_neurons(const struct rt_model *m, double keep, double keep_heads, int32_t *kept,
                     int *counts);

#endif
