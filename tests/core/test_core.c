/* test_core.c - status messages, the arena and the random number generator. */
#include "check_util.h"
#include "ringtrain/arena.h"
#include "ringtrain/rng.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

START_TEST(errorf_keeps_the_first_message)
{
    rt_error_clear();
    ck_assert_int_eq(rt_errorf(RT_ERR_IO, "a.h5: %s", "gone"), RT_ERR_IO);
    ck_assert_int_eq(rt_errorf(RT_ERR_SHAPE, "later consequence"), RT_ERR_SHAPE);
    ck_assert_str_eq(rt_error_message(RT_ERR_SHAPE), "a.h5: gone");
    rt_error_clear();
    ck_assert_str_eq(rt_error_message(RT_ERR_NOMEM), "out of memory");
    rt_errorf(RT_ERR_IO, "two\nlines");
    ck_assert_str_eq(rt_error_message(RT_ERR_IO), "two lines");
}
END_TEST

START_TEST(arena_aligns_and_reports_overflow)
{
    struct rt_arena a;
    ck_assert_int_eq(rt_arena_init(&a, "test arena", 1000), RT_OK);
    char *p = rt_arena_alloc(&a, 3), *q = rt_arena_alloc(&a, 100);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq((uintptr_t)p % RT_ARENA_ALIGN, 0);
    ck_assert_uint_eq((uintptr_t)q % RT_ARENA_ALIGN, 0);
    ck_assert_int_eq(q - p, 64);
    ck_assert_int_eq(q[99], 0); /* zeroed */
    rt_error_clear();
    ck_assert_ptr_null(rt_arena_alloc(&a, 5000));
    const char *msg = rt_error_message(RT_ERR_NOMEM);
    ck_assert_ptr_nonnull(strstr(msg, "test arena"));
    ck_assert_ptr_nonnull(strstr(msg, "need 5056"));
    rt_arena_free(&a);
    rt_arena_free(&a); /* twice is a no-op */
    ck_assert_uint_eq(rt_arena_footprint(65), 128);
}
END_TEST

START_TEST(rng_is_reproducible_and_distinct)
{
    struct rt_rng a, b, c;
    rt_rng_seed(&a, 42);
    rt_rng_seed(&b, 42);
    rt_rng_seed(&c, 43);
    int same_c = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = rt_rng_u64(&a);
        ck_assert_uint_eq(x, rt_rng_u64(&b));
        same_c += x == rt_rng_u64(&c);
    }
    ck_assert_int_lt(same_c, 2);
    ck_assert_uint_ne(rt_rng_derive(1, 2, 3), rt_rng_derive(1, 2, 4));
    ck_assert_uint_ne(rt_rng_derive(1, 2, 3), rt_rng_derive(1, 3, 3));
    ck_assert_uint_eq(rt_rng_derive(1, 2, 3), rt_rng_derive(1, 2, 3));
}
END_TEST

START_TEST(rng_distributions_have_the_right_moments)
{
    struct rt_rng r;
    rt_rng_seed(&r, 7);
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0;
    int counts[5] = {0};
    for (int i = 0; i < n; i++) {
        double u = rt_rng_uniform(&r);
        ck_assert(u >= 0 && u < 1);
        su += u;
        double z = rt_rng_normal(&r);
        ck_assert(isfinite(z));
        sn += z;
        sn2 += z * z;
        counts[rt_rng_below(&r, 5)]++;
    }
    /* 5-sigma bounds: fail only when the distribution is wrong. */
    ck_assert_double_lt(fabs(su / n - 0.5), 5 * sqrt(1.0 / 12 / n));
    ck_assert_double_lt(fabs(sn / n), 5 / sqrt(n));
    ck_assert_double_lt(fabs(sn2 / n - 1), 5 * sqrt(2.0 / n));
    for (int k = 0; k < 5; k++)
        ck_assert_double_lt(fabs(counts[k] - n / 5.0), 5 * sqrt(n * 0.2 * 0.8));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("rt_errorf");
    tcase_add_test(tc, errorf_keeps_the_first_message);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_arena");
    tcase_add_test(tc, arena_aligns_and_reports_overflow);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_rng");
    tcase_add_test(tc, rng_is_reproducible_and_distinct);
    tcase_add_test(tc, rng_distributions_have_the_right_moments);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
