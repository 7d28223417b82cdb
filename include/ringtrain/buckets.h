/* buckets.h - gradient buckets: the flat gradient block cut into pieces that are averaged
 * across ranks as soon as backprop has produced them, while backprop goes on.
 *
 * Layers finish backward in reverse order (last layer first), so buckets are laid out from
 * the END of the gradient block: bucket 0 holds the last layer(s), bucket 1 the ones
 * before, and so on. A layer larger than the bucket size is cut into several buckets;
 * small neighbouring layers share one. Every rank computes the same layout from the same
 * model, so every rank starts the same allreduces in the same order.
 *
 * Progress (rt_overlap):
 *   RT_OVERLAP_THREAD  a communication thread runs each bucket's (blocking) allreduce while
 *                      the main thread computes; MPI must allow MPI_THREAD_SERIALIZED, and
 *                      the main thread makes no MPI call between rt_buckets_begin and the
 *                      last rt_buckets_next.
 *   RT_OVERLAP_POLL    non-blocking allreduces advanced whenever a layer finishes backward
 *                      and while waiting.
 *   RT_OVERLAP_OFF     one allreduce of the whole block after backward.
 * The buckets never allocate after rt_buckets_init. */
#ifndef RT_BUCKETS_H
#define RT_BUCKETS_H

#include <stddef.h>
#include <stdint.h>

#include "ringtrain/comm.h"

enum rt_overlap { RT_OVERLAP_THREAD, RT_OVERLAP_POLL, RT_OVERLAP_OFF };
/* Buckets per layout: each may be in flight at once (and sharded, its gather too). */
#define RT_MAX_BUCKETS (RT_MAX_INFLIGHT / 2)
int rt_overlap_parse(const char *name, enum rt_overlap *out); /* 0, or -1 if unknown */
const char *rt_overlap_name(enum rt_overlap o);

/* comm.sparse: whether gradient allreduces carry only the coordinates pruning kept. */
enum rt_sparse_comm { RT_SPARSE_AUTO, RT_SPARSE_ON, RT_SPARSE_OFF };
int rt_sparse_comm_parse(const char *name, enum rt_sparse_comm *out);
const char *rt_sparse_comm_name(enum rt_sparse_comm s);

struct rt_buckets;

/* Lays out buckets over grads (n floats) for layers whose blocks start at offset[i],
 * contiguous and in layer order (layer i ends where layer i+1 starts). bucket_bytes >= 4;
 * it is raised when needed so that there are at most RT_MAX_BUCKETS buckets.
 * Averaging: every bucket is multiplied by scale after the sum. With RT_OVERLAP_THREAD on an MPI
 * that cannot take it, falls back to RT_OVERLAP_POLL (rt_buckets_overlap says which). Fails with
 * RT_ERR_NOMEM or RT_ERR_INVAL. */
int rt_buckets_init(struct rt_buckets **out, rt_comm_t *c, float *grads, size_t n,
                    const size_t *offset, int n_layers, size_t bucket_bytes,
                    enum rt_overlap overlap, float scale);
void rt_buckets_free(struct rt_buckets *b); /* NULL is a no-op; joins the thread */

int rt_buckets_count(const struct rt_buckets *b);
enum rt_overlap rt_buckets_overlap(const struct rt_buckets *b);

/* Sparse gradients: with keep (n bytes, 1 = kept, borrowed and read only here) every bucket
 * moves only its kept coordinates, gathered in index order (everyone holds the same mask,
 * so no index travels), and rt_buckets_next hands back the bucket with those coordinates
 * averaged; every other coordinate keeps this rank's own value (the caller masks them). NULL
 * returns to dense. Call between steps, on every rank with the same mask. The first call allocates
 * the index and packing buffers (n each); later calls do not allocate. RT_ERR_NOMEM, RT_ERR_INVAL
 * (n >= 2^32). */
int rt_buckets_set_mask(struct rt_buckets *b, const uint8_t *keep);
/* Allocates what rt_buckets_set_mask needs, ahead of the step loop. RT_ERR_NOMEM. */
int rt_buckets_reserve_sparse(struct rt_buckets *b);
/* Floats one step's allreduces carry in all (the dense count, or the kept count). */
size_t rt_buckets_wire_floats(const struct rt_buckets *b);

/* Starts a step: no bucket is ready. */
void rt_buckets_begin(struct rt_buckets *b);
/* Layer `layer`'s gradient block is final: starts every bucket it completes. Matches
 * rt_grad_ready_fn so it can be handed to rt_model_backward (ctx = the buckets). */
void rt_buckets_layer_ready(void *ctx, int layer, size_t offset, size_t count);
/* A bucket as the optimizer sees it: its range [lo, hi) of grads and params, the part
 * [own_lo, own_hi) whose averaged gradient this rank holds and updates (all of it
 * unsharded, this rank's shard (shard.h) of the bucket when sharded), and where that part
 * starts in this rank's optimizer state (own_lo unsharded). */
struct rt_bucket_view {
    size_t lo, hi, own_lo, own_hi, state_off;
};
/* Waits for the next bucket, in bucket order, and describes it in *v, its own part now
 * averaged; returns 0 when every bucket of the step has been returned. Layers that
 * were never reported ready are treated as ready when the first call is made. */
int rt_buckets_next(struct rt_buckets *b, struct rt_bucket_view *v);
/* Bucket k's view without communication. */
void rt_buckets_view(const struct rt_buckets *b, int k, struct rt_bucket_view *v);

/* ---- Sharded optimizer state (optim.shard = on) -------------------------------------------
 * Gradients are reduce-scattered: each rank ends with the average of its shard of every
 * bucket only, updates those parameters with its shard of the optimizer state, and
 * rt_buckets_start_gather then allgathers the updated parameters. A bucket small enough for
 * recursive doubling is allreduced as unsharded, and still updated shard by shard and
 * gathered. The additions are the
 * unsharded ones, so the parameters equal shard = off bit for bit. RT_OVERLAP_THREAD runs
 * as RT_OVERLAP_POLL. Call once after rt_buckets_init, on every rank; params (the flat
 * parameter block, same layout as grads) is borrowed. */
int rt_buckets_set_sharded(struct rt_buckets *b, float *params);
/* Floats of this rank's optimizer state: its shards of every bucket (n unsharded). */
size_t rt_buckets_shard_elems(const struct rt_buckets *b);
/* Rank r's shard of bucket k: dense range [lo, lo + len) and its offset in rank r's state. */
struct rt_shard_piece {
    size_t lo, len, state_off;
};
void rt_buckets_piece(const struct rt_buckets *b, int k, int r, struct rt_shard_piece *p);
/* Starts the allgather of every bucket's parameters, the first layers' first (after the
 * step's updates, on every rank). */
void rt_buckets_start_gather(struct rt_buckets *b);
/* Waits until layer `layer`'s parameters (layer < 0: all) are gathered, advancing the rest
 * without blocking. Nothing reads a parameter before it: the forward calls it layer by
 * layer, anything else that reads or writes the parameters (evaluation, checkpoints,
 * pruning) with -1. A no-op unsharded. */
void rt_buckets_wait_gather(struct rt_buckets *b, int layer);
/* rt_buckets_wait_gather as a model's forward hook (ctx = the buckets). */
void rt_buckets_layer_params(void *ctx, int layer);

#endif
