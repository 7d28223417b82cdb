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
    int room = 51 - log2_ceil(terms) - RT_FIXED_HEADROOM;
    for (size_t b = 0; b < blocks; b++) {
        int e;
        if (!(ref[b] > 0.0f) || !isfinite(ref[b])) {
            shift[b] = NO_SCALE;
            continue;
        }
        frexpf(ref[b], &e); /* ref < 2^e */
        shift[b] = room - e;
    }
}

/* One block: returns its flags (1 overflow, 2 non-finite) and its largest |g|. */
static int block(int64_t *restrict acc, const float *restrict g, size_t n, int32_t shift,
                 double bound, int first, float *max)
{
    float m = 0.0f;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(g[i]);
        finite &= a <= FLT_MAX;
        m = a > m ? a : m;
    }
    *max = m;
    if (!finite) return 2;
    if (shift == NO_SCALE) {
        if (m > 0.0f) return 1;
        if (first) memset(acc, 0, n * sizeof *acc);
        return 0;
    }
    double scale = ldexp(1.0, shift);
    if ((double)m * scale >= bound) return 1;
    int64_t magic;
    const double mg = MAGIC;
    memcpy(&magic, &mg, sizeof magic);
    for (size_t i = 0; i < n; i++) {
        double y = (double)g[i] * scale + MAGIC;
        int64_t q;
        memcpy(&q, &y, sizeof q);
        acc[i] = (first ? 0 : acc[i]) + (q - magic);
    }
    return 0;
}

int rt_fixed_accumulate(int64_t *acc, float *blockmax, const float *g, size_t n,
                        const int32_t *shift, int terms, int first)
{
    double bound = ldexp(1.0, 51 - log2_ceil(terms));
    int flags = 0;
    for (size_t b = 0, lo = 0; lo < n; b++, lo += RT_FIXED_BLOCK) {
        size_t len = n - lo < RT_FIXED_BLOCK ? n - lo : RT_FIXED_BLOCK;
        float m;
        flags |= block(acc + lo, g + lo, len, shift[b], bound, first, &m);
        blockmax[b] = first || m > blockmax[b] ? m : blockmax[b];
    }
    return flags;
}

void rt_fixed_to_float(float *g, const int64_t *acc, size_t n, const int32_t *shift)
{
    for (size_t b = 0, lo = 0; lo < n; b++, lo += RT_FIXED_BLOCK) {
        size_t len = n - lo < RT_FIXED_BLOCK ? n - lo : RT_FIXED_BLOCK;
        double inv = shift[b] == NO_SCALE ? 0.0 : ldexp(1.0, -shift[b]);
        for (size_t i = 0; i < len; i++)
            g[lo + i] = (float)((double)acc[lo + i] * inv);
    }
}

void rt_fixed_next_ref(float *ref, const float *blockmax, size_t blocks)
{
    for (size_t b = 0; b < blocks; b++) {
        float decayed = ref[b] / 16.0f;
        ref[b] = blockmax[b] > decayed ? blockmax[b] : decayed;
    }
}
