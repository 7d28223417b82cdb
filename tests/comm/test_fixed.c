/* test_fixed.c - fixed-point exact sums (fixed.h): the property that matters is that the
 * result does not depend on the order of the terms or on how they are grouped into partial
 * sums (how comm.deterministic stays bitwise at any rank count), that it is accurate, and
 * that a term beyond the scale is reported rather than wrapped. */
#include "check_util.h"
#include "ringtrain/fixed.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { N = 1000, T = 12, BLOCKS = (N + RT_FIXED_BLOCK - 1) / RT_FIXED_BLOCK };

/* Term t, coordinate i: signs, a spread of binades, blocks of very different scales. */
static float term(int t, int i)
{
    uint32_t h = (uint32_t)(i * 2654435761u) ^ (uint32_t)(t + 1) * 2246822519u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    float frac = (float)(h & 0xffffff) / 16777216.0f - 0.5f;
    return ldexpf(frac, (int)(h >> 28) - 8 - (i / RT_FIXED_BLOCK) * 6);
}

/* The sum of terms order[0..k) of each group, groups then added as integers: one way ranks
 * might hold and combine the micro-batches. */
static int grouped_sum(float *out, const int *order, int groups, const int32_t *shift)
{
    static int64_t acc[N], part[N];
    static float g[N], maxima[BLOCKS];
    memset(acc, 0, sizeof acc);
    memset(maxima, 0, sizeof maxima);
    int flags = 0, per = T / groups;
    for (int q = 0; q < groups; q++) {
        for (int k = 0; k < per; k++) {
            for (int i = 0; i < N; i++)
                g[i] = term(order[q * per + k], i);
            /* split at an odd place: ranges may cut blocks (layers do) */
            flags |= rt_fixed_accumulate(part, maxima, g, 0, 301, shift, T, k == 0);
            flags |= rt_fixed_accumulate(part, maxima, g, 301, N, shift, T, k == 0);
        }
        for (int i = 0; i < N; i++)
            acc[i] += part[i];
    }
    rt_fixed_to_float(out, acc, N, shift);
    return flags;
}

static void scales(int32_t *shift)
{
    float ref[BLOCKS] = {0};
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) {
            float a = fabsf(term(t, i));
            ref[i / RT_FIXED_BLOCK] = a > ref[i / RT_FIXED_BLOCK] ? a : ref[i / RT_FIXED_BLOCK];
        }
    rt_fixed_shifts(shift, ref, BLOCKS, T);
}

START_TEST(order_and_grouping_do_not_matter)
{
    int32_t shift[BLOCKS];
    scales(shift);
    int order[T];
    for (int t = 0; t < T; t++)
        order[t] = t;
    static float ref[N], got[N];
    ck_assert_int_eq(grouped_sum(ref, order, 1, shift), 0);
    const int groupings[] = {2, 3, 4, 6, 12};
    for (int r = 0; r < 20; r++) {
        for (int t = T - 1; t > 0; t--) { /* a fixed pseudo-random shuffle per round */
            int j = (int)((unsigned)(r * 7919 + t * 104729) % (unsigned)(t + 1)), x = order[t];
            order[t] = order[j];
            order[j] = x;
        }
        ck_assert_int_eq(grouped_sum(got, order, groupings[r % 5], shift), 0);
        ck_assert_int_eq(memcmp(ref, got, sizeof ref), 0);
    }
}
END_TEST

/* Against a double sum: within float rounding of the result plus the fixed point's
 * resolution, half a unit of 2^-30 of 2^e >= the block's largest term per term. */
START_TEST(accurate)
{
    int32_t shift[BLOCKS];
    scales(shift);
    int order[T];
    for (int t = 0; t < T; t++)
        order[t] = t;
    static float got[N];
    grouped_sum(got, order, 1, shift);
    double top[BLOCKS] = {0};
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++)
            top[i / RT_FIXED_BLOCK] = fmax(top[i / RT_FIXED_BLOCK], fabs(term(t, i)));
    for (int i = 0; i < N; i++) {
        double exact = 0;
        for (int t = 0; t < T; t++)
            exact += term(t, i);
        double res = T * ldexp(top[i / RT_FIXED_BLOCK], -30);
        ck_assert_msg(fabs(got[i] - exact) <= 6e-8 * fabs(exact) + res,
                      "coordinate %d: %.9g against %.9g", i, got[i], exact);
    }
}
END_TEST

/* A term far beyond its block's reference is an overflow (flag 1), a NaN non-finite
 * (flag 2), and a block never seen (reference 0 everywhere) takes zeros only. */
START_TEST(overflow_and_nonfinite)
{
    float ref[2] = {1.0f, 1.0f}, g[2 * RT_FIXED_BLOCK] = {0}, maxima[2] = {0};
    int32_t shift[2];
    int64_t acc[2 * RT_FIXED_BLOCK];
    rt_fixed_shifts(shift, ref, 2, T);
    g[3] = ldexpf(1.0f, RT_FIXED_HEADROOM - 1);
    ck_assert_int_eq(rt_fixed_accumulate(acc, maxima, g, 0, 2 * RT_FIXED_BLOCK, shift, T, 1), 0);
    g[RT_FIXED_BLOCK + 5] = ldexpf(1.0f, RT_FIXED_HEADROOM + 1);
    ck_assert_int_eq(rt_fixed_accumulate(acc, maxima, g, 0, 2 * RT_FIXED_BLOCK, shift, T, 1), 1);
    ck_assert_float_eq(maxima[1], ldexpf(1.0f, RT_FIXED_HEADROOM + 1));
    g[7] = NAN;
    ck_assert_int_eq(rt_fixed_accumulate(acc, maxima, g, 0, RT_FIXED_BLOCK, shift, T, 1) & 2, 2);
    float zero[2] = {0, 0}, h[4] = {0, 0, 0, 0};
    rt_fixed_shifts(shift, zero, 1, T);
    ck_assert_int_eq(rt_fixed_accumulate(acc, maxima, h, 0, 4, shift, T, 1), 0);
    h[2] = 1e-30f;
    ck_assert_int_eq(rt_fixed_accumulate(acc, maxima, h, 0, 4, shift, T, 1), 1);
}
END_TEST

/* A silent block borrows room from the largest reference (2^-16 of it). */
START_TEST(silent_block_has_room)
{
    float ref[2] = {1.0f, 0.0f}, g[2 * RT_FIXED_BLOCK] = {0}, maxima[2] = {0};
    int32_t shift[2];
    int64_t acc[2 * RT_FIXED_BLOCK];
    float out[2 * RT_FIXED_BLOCK];
    rt_fixed_shifts(shift, ref, 2, T);
    g[RT_FIXED_BLOCK + 1] = 0.375f;
    ck_assert_int_eq(rt_fixed_accumulate(acc, maxima, g, 0, 2 * RT_FIXED_BLOCK, shift, T, 1), 0);
    rt_fixed_to_float(out, acc, 2 * RT_FIXED_BLOCK, shift);
    ck_assert_float_eq(out[RT_FIXED_BLOCK + 1], 0.375f);
    rt_fixed_next_ref(ref, maxima, 2);
    ck_assert_float_eq(ref[0], 1.0f / 16);
    ck_assert_float_eq(ref[1], 0.375f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fixed");
    TCase *tc = tcase_create("exact sums");
    tcase_add_test(tc, order_and_grouping_do_not_matter);
    tcase_add_test(tc, accurate);
    tcase_add_test(tc, overflow_and_nonfinite);
    tcase_add_test(tc, silent_block_has_room);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
