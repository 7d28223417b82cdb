/* fixed.h - exact, order-independent sums of float vectors (comm.deterministic).
 *
 * Float addition is not associative, so a sum over ranks (or micro-batches) added in another
 * order gives other bits. These sums are made in fixed point instead: each float is scaled
 * by a power of two chosen per block of RT_FIXED_BLOCK coordinates, rounded once to an
 * integer, and the integers are added in int64, where addition is exact and associative.
 * The result depends only on the set of terms and the scales, never on the order, the
 * number of ranks or the reduction algorithm. No MPI here (the int64 sum over ranks is an
 * RT_TYPE_I64 allreduce, comm.h).
 *
 * Scales. Block b's shift comes from a reference magnitude r: the previous step's largest
 * |term| in the block (decaying: rt_fixed_next_ref), but at least 2^-RT_FIXED_FLOOR_BITS of
 * the largest reference of all blocks, so that a block that was silent (an input pixel
 * that is almost always 0, a rarely used token) still has room. With r < 2^e, terms up
 * to 2^(e + RT_FIXED_HEADROOM) scale to at most 2^(50 - L) in magnitude, L = ceil(log2
 * terms), so a sum of `terms` of them stays within 2^50: every partial sum and the result are
 * exact in int64 and convert back to double exactly. A larger term is an overflow, and the
 * caller recomputes the step with the references set to this step's own largest terms.
 * Resolution: 2^-(50 - L - RT_FIXED_HEADROOM) of r (2^-30 at 12 terms), finer than float's
 * 2^-24 for the block's largest terms; a term below it rounds to the nearest multiple, the
 * same whatever the order. */
#ifndef RT_FIXED_H
#define RT_FIXED_H

#include <stddef.h>
#include <stdint.h>

#define RT_FIXED_BLOCK      256
#define RT_FIXED_HEADROOM   16
#define RT_FIXED_FLOOR_BITS 16

static inline size_t rt_fixed_blocks(size_t n)
{
    return (n + RT_FIXED_BLOCK - 1) / RT_FIXED_BLOCK;
}

/* shift[b] (blocks) from ref[b] for sums of up to `terms` terms (>= 1). A ref of 0 (nothing
 * seen yet) gives a shift under which any nonzero term overflows. */
void rt_fixed_shifts(int32_t *shift, const float *ref, size_t blocks, int terms);

/* acc[i] (+)= round(g[i] * 2^shift[i / RT_FIXED_BLOCK]) for lo <= i < hi (first: acc = ...,
 * else acc += ...), and blockmax[b] = max(blockmax[b], |g| over the block's part in range):
 * the caller zeroes blockmax once per sum, ranges may split blocks. Returns 1 when a term
 * overflowed, 2 when one was not finite (or-ed), else 0; acc is then meaningless. */
int rt_fixed_accumulate(int64_t *acc, float *blockmax, const float *g, size_t lo, size_t hi,
                        const int32_t *shift, int terms, int first);

/* g[i] = acc[i] * 2^-shift, rounded once to float. */
void rt_fixed_to_float(float *g, const int64_t *acc, size_t n, const int32_t *shift);

/* The next step's references: ref[b] = max(blockmax[b], ref[b] / 16): the largest term
 * seen, forgetting older magnitudes slowly, so that a block silent for a step (an embedding
 * row no token used) keeps a scale. */
void rt_fixed_next_ref(float *ref, const float *blockmax, size_t blocks);

#endif
