/* fixed.c - exact fixed-point sums (contract in fixed.h).
 *
 * Rounding to an integer uses the double "magic number" trick: for |x| < 2^51, adding
 * 1.5 * 2^52 leaves round-to-nearest-even(x) in the low mantissa bits, so the integer is the
 * difference of two bit patterns. Unlike llrint() it vectorises on every x86-64 level (AVX2
 * has no double-to-int64 conversion), and the pass over the gradient is made once per
 * micro-batch, next to the GEMMs. */
#include "ringtrain/fixed.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define MAGIC    6755399441055744.0 /* 1.5 * 2^52 */
#define NO_SCALE INT32_MIN          /* ref 0: only zero terms fit */

static int log2_ceil(int terms)
{
    int l = 0;
    while ((1 << l) < terms)
        l++;
    return l;
}

void rt_fixed_shifts(int32_t *shift, const float *ref, size_t blocks, int terms)
{
    int room = 50 - log2_ceil(terms) - RT_FIXED_HEADROOM;
    float top = 0.0f;
    for (size_t b = 0; b < blocks; b++)
        top = ref[b] > top && isfinite(ref[b]) ? ref[b] : top;
    float floor = ldexpf(top, -RT_FIXED_FLOOR_BITS);
    for (size_t b = 0; b < blocks; b++) {
        float r = isfinite(ref[b]) && ref[b] > floor ? ref[b] : floor;
        int e;
        if (!(r > 0.0f)) {
            shift[b] = NO_SCALE;
            continue;
        }
        frexpf(r, &e); /* r < 2^e */
        shift[b] = room - e;
    }
}

/* One block, one pass: the terms rounded into acc (written before the bound is checked:
 * on overflow the caller discards acc) and the largest |g|. Compiled for AVX2 as well as
 * the baseline and chosen at run time (-march stays opt-in): the pass runs once per
 * micro-batch over every parameter. */
__attribute__((target_clones("avx2", "default"))) static float
block_pass(int64_t *restrict acc, const float *restrict g, size_t n, double scale, int first)
{
    int64_t magic;
    const double mg = MAGIC;
    memcpy(&magic, &mg, sizeof magic);
    /* Separate loops without a data-dependent branch: each vectorises. */
    if (first)
        for (size_t i = 0; i < n; i++) {
            double y = (double)g[i] * scale + MAGIC;
            int64_t q;
            memcpy(&q, &y, sizeof q);
            acc[i] = q - magic;
        }
    else
        for (size_t i = 0; i < n; i++) {
            double y = (double)g[i] * scale + MAGIC;
            int64_t q;
            memcpy(&q, &y, sizeof q);
            acc[i] += q - magic;
        }
    /* The largest |g| as the largest bit pattern with the sign cleared: for non-negative
     * floats the integer order is the float order, Inf and NaN above every finite value,
     * and an integer maximum vectorises where a float one (NaN rules) does not. */
    uint32_t top = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &g[i], sizeof u);
        u &= 0x7fffffffu;
        top = u > top ? u : top;
    }
    float m;
    memcpy(&m, &top, sizeof m);
    return m;
}

/* Returns the block's flags (1 overflow, 2 non-finite) and its largest |g| (NaN or Inf when
 * a term is not finite). */
static int block(int64_t *restrict acc, const float *restrict g, size_t n, int32_t shift,
                 double bound, int first, float *max)
{
    double scale = shift == NO_SCALE ? 0.0 : ldexp(1.0, shift);
    float m = block_pass(acc, g, n, scale, first);
    *max = m;
    if (!(m <= FLT_MAX)) return 2;
    if (shift == NO_SCALE) return m > 0.0f;
    return (double)m * scale >= bound;
}

int rt_fixed_accumulate(int64_t *acc, float *blockmax, const float *g, size_t lo, size_t hi,
                        const int32_t *shift, int terms, int first)
{
    double bound = ldexp(1.0, 50 - log2_ceil(terms));
    int flags = 0;
    while (lo < hi) {
        size_t b = lo / RT_FIXED_BLOCK, end = (b + 1) * RT_FIXED_BLOCK;
        size_t len = (hi < end ? hi : end) - lo;
        float m;
        flags |= block(acc + lo, g + lo, len, shift[b], bound, first, &m);
        blockmax[b] = m > blockmax[b] || m != m ? m : blockmax[b];
        lo += len;
    }
    return flags;
}

/* acc -> double by the same trick backwards (|acc| < 2^51): the integer added to the bit
 * pattern of 1.5 * 2^52, minus 1.5 * 2^52, is acc exactly; vectorises without AVX-512's
 * int64 conversions. */
__attribute__((target_clones("avx2", "default"))) static void
block_to_float(float *restrict g, const int64_t *restrict acc, size_t n, double inv)
{
    int64_t magic;
    const double mg = MAGIC;
    memcpy(&magic, &mg, sizeof magic);
    for (size_t i = 0; i < n; i++) {
        int64_t bits = acc[i] + magic;
        double d;
        memcpy(&d, &bits, sizeof d);
        g[i] = (float)((d - MAGIC) * inv);
    }
}

void rt_fixed_to_float(float *g, const int64_t *acc, size_t n, const int32_t *shift)
{
    for (size_t b = 0, lo = 0; lo < n; b++, lo += RT_FIXED_BLOCK) {
        size_t len = n - lo < RT_FIXED_BLOCK ? n - lo : RT_FIXED_BLOCK;
        double inv = shift[b] == NO_SCALE ? 0.0 : ldexp(1.0, -shift[b]);
        block_to_float(g + lo, acc + lo, len, inv);
    }
}

void rt_fixed_next_ref(float *ref, const float *blockmax, size_t blocks)
{
    for (size_t b = 0; b < blocks; b++) {
        float decayed = ref[b] / 16.0f;
        ref[b] = blockmax[b] > decayed ? blockmax[b] : decayed;
    }
}
