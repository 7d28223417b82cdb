/* fixed.h - exact, order-independent sums of float vectors (comm.deterministic).
 *
 * Float addition is not associative, so a sum over ranks (or micro-batches) added in another
 * order gives other bits. These sums are made in fixed point instead: each float is scaled
 * by a power of two chosen per block of RT_FIXED_BLOCK coordinates, rounded once to an
 * integer, and the integers are added in int64, where addition is exact and associative.
 * The result depends only on the set of terms and the scales, never on the order, the
 * number of ranks or the reduction algorithm. No MPI here (the int64 sum over ranks is
 * rt_comm_allreduce_i64).
 *
 * Scales. Block b's shift comes from a reference magnitude ref[b] (the previous step's
 * largest |term| in the block, decaying: rt_fixed_next_ref): with ref[b] < 2^e, terms up
 * to 2^(e + RT_FIXED_HEADROOM) scale to at most 2^(51 - L) in magnitude, L = ceil(log2
 * terms), so a sum of `terms` of them stays below 2^51: every partial sum and the result are
 * exact in int64 and convert back to double exactly. A larger term (or a non-finite one)
 * is an overflow: the caller recomputes the step with the references set to this step's
 * own largest terms. Resolution: 2^-(39 - ...) of the block's reference, far below float's
 * 2^-24 (terms below it round to the nearest multiple, the same whatever the order). */
#ifndef RT_FIXED_H
#define RT_FIXED_H

#include <stddef.h>
#include <stdint.h>

#define RT_FIXED_BLOCK    256
#define RT_FIXED_HEADROOM 8

static inline size_t rt_fixed_blocks(size_t n)
{
    return (n + RT_FIXED_BLOCK - 1) / RT_FIXED_BLOCK;
}

/* shift[b] (blocks) from ref[b] for sums of up to `terms` terms (>= 1). A ref of 0 (nothing
 * seen yet) gives a shift under which any nonzero term overflows. */
void rt_fixed_shifts(int32_t *shift, const float *ref, size_t blocks, int terms);

/* acc[i] (+)= round(g[i] * 2^shift[i / RT_FIXED_BLOCK]) for i < n (first: acc = ..., else
 * acc += ...), and blockmax[b] = max(blockmax[b], |g| over the block) (first: = ...).
 * Returns 1 when a term overflowed (or was not finite), else 0; acc is then meaningless. */
int rt_fixed_accumulate(int64_t *acc, float *blockmax, const float *g, size_t n,
                        const int32_t *shift, int terms, int first);

/* g[i] = acc[i] * 2^-shift, rounded once to float. */
void rt_fixed_to_float(float *g, const int64_t *acc, size_t n, const int32_t *shift);

/* The next step's references: ref[b] = max(blockmax[b], ref[b] / 16): the largest term
 * seen, forgetting older magnitudes slowly, so that a block silent for a step (an embedding
 * row no token used) keeps a scale. */
void rt_fixed_next_ref(float *ref, const float *blockmax, size_t blocks);

#endif
