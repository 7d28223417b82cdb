/* mpi_shard.c - reduce-scatter and allgather as requests of their own, and the sharded
 * gradient buckets built on them, at any rank count.
 *
 * The property that matters is bitwise equality with the ring allreduce: a sharded
 * optimizer equals an unsharded one only if reduce-scatter + allgather add the same numbers
 * in the same order. So the data here is NOT exactly summable (hash-derived fractions of
 * mixed magnitude, so that another addition order changes the bits), and results are
 * compared bit for bit with the ring allreduce of the same input. Assertions are made on
 * agreed values only (failure counts summed over ranks). */
#include "check_util.h"
#include "ringtrain/buckets.h"
#include "ringtrain/comm.h"
#include "ringtrain/shard.h"
#include "ringtrain/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static rt_comm_t *comm;
static int rank, size;

/* Rank- and position-dependent values spanning several binades. */
static float value(int r, size_t i)
{
    uint32_t h = (uint32_t)(i * 2654435761u) ^ (uint32_t)(r + 1) * 40503u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    float frac = (float)(h & 0xffffff) / 16777216.0f - 0.5f;
    return frac * (float)(1u << (h >> 28));
}

static void fill(float *x, size_t n, int r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = value(r, i);
}

static long total(long v)
{
    double d = (double)v;
    rt_comm_sum_f64(comm, &d, 1);
    return (long)d;
}

static long differ(const float *a, const float *b, size_t lo, size_t hi)
{
    long bad = 0;
    for (size_t i = lo; i < hi; i++)
        bad += memcmp(&a[i], &b[i], sizeof *a) != 0;
    return bad;
}

static const size_t counts[] = {0, 1, 5, 1000, 100003, ((size_t)1 << 20) + 7};
enum { N_COUNTS = sizeof counts / sizeof counts[0] };

/* An uneven cut of n with empty parts: part j ends at n (j+1)^2 / size^2, and rank 1's part
 * is empty when there are several ranks. */
static void uneven_cut(size_t n, size_t *part)
{
    part[0] = 0;
    for (int j = 1; j <= size; j++)
        part[j] = (size_t)((double)n * j * j / ((double)size * size));
    if (size > 2) part[2] = part[1];
    part[size] = n;
}

static void run(enum rt_coll_op op, float *x, size_t n, float scale, const size_t *part, int queued)
{
    struct rt_coll_args a = {op, RT_ALLREDUCE_RING, x, n, scale, part, RT_TYPE_F32};
    if (queued)
        rt_comm_wait(comm, rt_comm_start(comm, &a));
    else
        rt_comm_run(comm, &a);
}

/* Reduce-scatter then allgather == the ring allreduce, bit for bit, for the even shards and
 * an uneven cut, blocking and queued, with a scale. */
START_TEST(halves_equal_allreduce)
{
    size_t nmax = counts[N_COUNTS - 1];
    float *x = malloc((nmax + 1) * sizeof *x), *ref = malloc((nmax + 1) * sizeof *ref);
    size_t *part = malloc(((size_t)size + 1) * sizeof *part);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(ref);
    long bad = 0;
    for (int k = 0; k < N_COUNTS; k++)
        for (int cut = 0; cut < 2; cut++)
            for (int queued = 0; queued < 2; queued++) {
                size_t n = counts[k];
                const size_t *p = NULL;
                if (cut) uneven_cut(n, part), p = part;
                float scale = 1.0f / (float)size;
                fill(ref, n, rank);
                run(RT_OP_ALLREDUCE, ref, n, scale, p, queued);
                fill(x, n, rank);
                run(RT_OP_REDUCE_SCATTER, x, n, scale, p, queued);
                size_t lo = p ? p[rank] : rt_shard_off(n, size, rank);
                size_t hi = p ? p[rank + 1] : lo + rt_shard_len(n, size, rank);
                bad += differ(x, ref, lo, hi); /* the own part, before the gather */
                run(RT_OP_ALLGATHER, x, n, 1.0f, p, queued);
                bad += differ(x, ref, 0, n);
            }
    free(part);
    free(ref);
    free(x);
    ck_assert_int_eq(total(bad), 0);
}
END_TEST

/* int64 sums are exact: every algorithm asked for (rd falls back to the ring), blocking and
 * queued, with even and uneven cuts, gives the exact sum of values near 2^50 whose float
 * sum would round, and the same bytes on every rank. */
static int64_t ivalue(int r, size_t i)
{
    return ((int64_t)1 << 50) / (size + 1) - (int64_t)((i * 2654435761u) % 1000003u) * (r + 1) +
           (int64_t)r * 3;
}

START_TEST(int64_sums_exact)
{
    size_t nmax = counts[N_COUNTS - 1];
    int64_t *x = malloc((nmax + 1) * sizeof *x);
    size_t *part = malloc(((size_t)size + 1) * sizeof *part);
    ck_assert_ptr_nonnull(x);
    const enum rt_allreduce_algo algos[] = {RT_ALLREDUCE_RING, RT_ALLREDUCE_RD, RT_ALLREDUCE_MPI,
                                            RT_ALLREDUCE_AUTO};
    long bad = 0;
    for (int k = 0; k < N_COUNTS; k++)
        for (int v = 0; v < 8; v++) {
            size_t n = counts[k];
            int algo = v % 4, queued = v / 4, cut = (k + v) % 2;
            if (cut) uneven_cut(n, part);
            for (size_t i = 0; i < n; i++)
                x[i] = ivalue(rank, i);
            struct rt_coll_args a = {RT_OP_ALLREDUCE,   algos[algo], x, n, 1.0f,
                                     cut ? part : NULL, RT_TYPE_I64};
            if (queued)
                rt_comm_wait(comm, rt_comm_start(comm, &a));
            else
                rt_comm_run(comm, &a);
            for (size_t i = 0; i < n; i++) {
                int64_t want = 0;
                for (int r = 0; r < size; r++)
                    want += ivalue(r, i);
                bad += x[i] != want;
            }
        }
    free(part);
    free(x);
    ck_assert_int_eq(total(bad), 0);
}
END_TEST

/* An allgather alone: part j everywhere is rank j's part j, whatever the others held. */
START_TEST(allgather_collects_parts)
{
    size_t n = 100003;
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++)
        x[i] = -1.0f - (float)rank; /* garbage outside the own part */
    size_t lo = rt_shard_off(n, size, rank), len = rt_shard_len(n, size, rank);
    for (size_t i = lo; i < lo + len; i++)
        x[i] = value(rank, i);
    run(RT_OP_ALLGATHER, x, n, 1.0f, NULL, 1);
    long bad = 0;
    for (int j = 0; j < size; j++)
        for (size_t i = rt_shard_off(n, size, j);
             i < rt_shard_off(n, size, j) + rt_shard_len(n, size, j); i++)
            bad += x[i] != value(j, i);
    free(x);
    ck_assert_int_eq(total(bad), 0);
}
END_TEST

/* The shard contract: the shards of n tile [0, n) in order, lengths differ by at most 1. */
START_TEST(shards_tile)
{
    const size_t ns[] = {0, 1, 7, 10, 1000003};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
        for (int N = 1; N <= 7; N++) {
            size_t at = 0;
            for (int j = 0; j < N; j++) {
                ck_assert_uint_eq(rt_shard_off(ns[k], N, j), at);
                at += rt_shard_len(ns[k], N, j);
                ck_assert_uint_le(rt_shard_len(ns[k], N, 0) - rt_shard_len(ns[k], N, j), 1);
            }
            ck_assert_uint_eq(at, ns[k]);
        }
}
END_TEST

/* Sharded buckets against unsharded ones on the same gradients, dense and sparse: every
 * bucket's own part holds the unsharded average bit for bit, the shards of all ranks cover
 * every coordinate once, and the parameter allgather leaves every rank the same bytes. */
static long sharded_vs_unsharded(const uint8_t *keep, enum rt_overlap overlap)
{
    size_t n = 300007, offset[4] = {0, 1000, 200000, 260000};
    float *g = malloc(n * sizeof *g), *ref = malloc(n * sizeof *ref), *p = malloc(n * sizeof *p);
    struct rt_buckets *b, *u;
    ck_assert_int_eq(rt_buckets_init(&u, comm, ref, n, offset, 4, 64 << 10, overlap, 0.5f), RT_OK);
    ck_assert_int_eq(rt_buckets_init(&b, comm, g, n, offset, 4, 64 << 10, overlap, 0.5f), RT_OK);
    ck_assert_int_eq(rt_buckets_set_sharded(b, p), RT_OK);
    ck_assert_int_eq(rt_buckets_set_mask(u, keep), RT_OK);
    ck_assert_int_eq(rt_buckets_set_mask(b, keep), RT_OK);
    fill(ref, n, rank);
    fill(g, n, rank);
    struct rt_bucket_view v, w;
    rt_buckets_begin(u);
    while (rt_buckets_next(u, &w))
        ;
    rt_buckets_begin(b);
    for (int l = 3; l >= 0; l--)
        rt_buckets_layer_ready(b, l, offset[l], (l == 3 ? n : offset[l + 1]) - offset[l]);
    long bad = 0;
    size_t own = 0;
    memset(p, 0, n * sizeof *p);
    while (rt_buckets_next(b, &v)) {
        for (size_t i = v.own_lo; i < v.own_hi; i++)
            if (!keep || keep[i]) bad += memcmp(&g[i], &ref[i], sizeof *g) != 0;
        /* the "update": each rank writes its own parts of the parameters */
        for (size_t i = v.own_lo; i < v.own_hi; i++)
            p[i] = keep && !keep[i] ? 0.0f : g[i];
        bad += v.state_off != own;
        own += v.own_hi - v.own_lo;
    }
    bad += own != rt_buckets_shard_elems(b);
    double cover = (double)own;
    rt_comm_sum_f64(comm, &cover, 1);
    bad += rank == 0 && cover != (double)n;
    rt_buckets_start_gather(b);
    for (int l = 0; l < 4; l++)
        rt_buckets_wait_gather(b, l);
    rt_buckets_wait_gather(b, -1);
    for (size_t i = 0; i < n; i++)
        bad += p[i] != (keep && !keep[i] ? 0.0f : ref[i]);
    rt_buckets_free(b);
    rt_buckets_free(u);
    free(p);
    free(ref);
    free(g);
    return bad;
}

START_TEST(buckets_sharded_dense)
{
    const enum rt_overlap modes[] = {RT_OVERLAP_POLL, RT_OVERLAP_THREAD, RT_OVERLAP_OFF};
    ck_assert_int_eq(total(sharded_vs_unsharded(NULL, modes[_i])), 0);
}
END_TEST

START_TEST(buckets_sharded_sparse)
{
    size_t n = 300007;
    uint8_t *keep = malloc(n);
    for (size_t i = 0; i < n; i++)
        keep[i] = (i * 2654435761u >> 9) % 7 < 2; /* about 30%, the same on every rank */
    const enum rt_overlap modes[] = {RT_OVERLAP_POLL, RT_OVERLAP_OFF};
    ck_assert_int_eq(total(sharded_vs_unsharded(keep, modes[_i])), 0);
    free(keep);
}
END_TEST

int main(int argc, char **argv)
{
    rt_comm_init(&comm, &argc, &argv);
    rank = rt_comm_rank(comm);
    size = rt_comm_size(comm);
    Suite *s = suite_create("mpi_shard");
    TCase *tc = tcase_create("reduce-scatter and allgather");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, shards_tile);
    tcase_add_test(tc, halves_equal_allreduce);
    tcase_add_test(tc, allgather_collects_parts);
    tcase_add_test(tc, int64_sums_exact);
    tcase_add_loop_test(tc, buckets_sharded_dense, 0, 3);
    tcase_add_loop_test(tc, buckets_sharded_sparse, 0, 2);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, rank ? CK_SILENT : CK_NORMAL);
    double failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rt_comm_sum_f64(comm, &failed, 1);
    rt_comm_finalize(comm);
    return failed == 0 ? 0 : 1;
}
