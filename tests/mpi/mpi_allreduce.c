/* mpi_allreduce.c - the gradient allreduce (ring, rd, mpi, auto; blocking and queued
 * requests) at any rank count. Data x[i] = 1000*r + i % 997 sums exactly in float, so results
 * are compared exactly: expected = (float)sum * scale, one float multiply, which is what
 * every algorithm computes. Assertions are made on agreed values only (failure counts summed
 * over ranks); the exit code is the failure count summed over ranks. */
#include "check_util.h"
#include "ringtrain/buckets.h"
#include "ringtrain/comm.h"
#include "ringtrain/status.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static rt_comm_t *comm;
static int rank, size;

static const enum rt_allreduce_algo algos[] = {RT_ALLREDUCE_RING, RT_ALLREDUCE_RD, RT_ALLREDUCE_MPI,
                                               RT_ALLREDUCE_AUTO};
enum { N_ALGOS = 4, N_COUNTS = 7 };

static void counts(size_t out[N_COUNTS])
{
    size_t c[N_COUNTS] = {
        0, 1, (size_t)size - 1, (size_t)size, (size_t)size + 1, 1000, ((size_t)1 << 20) + 7};
    memcpy(out, c, sizeof c);
}

static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(1000 * rank + (int)(i % 997));
}

/* Elements of x (n floats) that differ from scale * (sum over ranks). */
static long wrong(const float *x, size_t n, float scale)
{
    long bad = 0;
    for (size_t i = 0; i < n; i++) {
        float sum = (float)(1000.0 * size * (size - 1) / 2 + (double)size * (double)(i % 997));
        float want = sum * scale;
        bad += memcmp(&x[i], &want, sizeof want) != 0;
    }
    return bad;
}

/* Agreed total over ranks. */
static long total(long v)
{
    double d = (double)v;
    rt_comm_sum_f64(comm, &d, 1);
    return (long)d;
}

static uint64_t fnv(const void *p, size_t bytes)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < bytes; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* 1 on every rank when every rank holds the same bytes in x, else 0 on every rank. */
static int same_everywhere(const float *x, size_t n)
{
    uint64_t h = fnv(x, n * sizeof *x);
    double v[4] = {(double)(h >> 32), (double)(h & 0xffffffffu), -(double)(h >> 32),
                   -(double)(h & 0xffffffffu)};
    rt_comm_max_f64(comm, v, 4);
    return v[0] == -v[2] && v[1] == -v[3];
}

static void configure(enum rt_allreduce_algo a, size_t seg)
{
    struct rt_comm_opts o = {.algorithm = a, .segment_bytes = seg};
    ck_assert_int_eq(rt_comm_agree(comm, rt_comm_configure(comm, &o)), RT_OK);
}

/* Blocking calls: every count, scale 1 and 1/N, default, 4 KiB and 16-byte segments. */
START_TEST(blocking_exact)
{
    enum rt_allreduce_algo a = algos[_i];
    size_t cnt[N_COUNTS], segs[] = {0, 4096, 16};
    counts(cnt);
    float *x = malloc((cnt[N_COUNTS - 1] + 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    long bad = 0, differ = 0;
    for (int s = 0; s < 3; s++) {
        configure(RT_ALLREDUCE_AUTO, segs[s]);
        for (int k = 0; k < N_COUNTS; k++) {
            if (segs[s] == 16 && cnt[k] > 1000) continue; /* tiny segments: small counts */
            for (int sc = 0; sc < 2; sc++) {
                float scale = sc ? 1.0f / (float)size : 1.0f;
                fill(x, cnt[k]);
                rt_comm_allreduce_with(comm, a, x, cnt[k], scale);
                bad += wrong(x, cnt[k], scale);
                differ += !same_everywhere(x, cnt[k]);
            }
        }
    }
    configure(RT_ALLREDUCE_AUTO, 0);
    free(x);
    ck_assert_int_eq(total(bad), 0);
    ck_assert_int_eq(total(differ), 0);
}
END_TEST

/* Many requests of every algorithm queued at once, completed by rt_comm_test polling. */
START_TEST(queued_polling)
{
    size_t cnt[N_COUNTS], all = 0;
    counts(cnt);
    for (int k = 0; k < N_COUNTS; k++)
        all += cnt[k];
    configure(RT_ALLREDUCE_AUTO, 4096);
    enum { NREQ = N_ALGOS * N_COUNTS };
    float *x = malloc(N_ALGOS * all * sizeof *x + 1);
    ck_assert_ptr_nonnull(x);
    rt_comm_req *req[NREQ];
    float *buf[NREQ], scale[NREQ];
    size_t n[NREQ];
    float *p = x;
    for (int a = 0; a < N_ALGOS; a++)
        for (int k = 0; k < N_COUNTS; k++) {
            int q = a * N_COUNTS + k;
            buf[q] = p;
            n[q] = cnt[k];
            scale[q] = (q % 2) ? 1.0f / (float)size : 1.0f;
            p += cnt[k];
            fill(buf[q], n[q]);
            req[q] = rt_comm_iallreduce_with(comm, algos[a], buf[q], n[q], scale[q]);
        }
    int done[NREQ] = {0}, left = NREQ;
    long polls = 0;
    while (left > 0) { /* a compute thread polling between layers */
        for (int q = 0; q < NREQ; q++)
            if (!done[q] && rt_comm_test(comm, req[q])) done[q] = 1, left--;
        polls++;
    }
    long bad = 0, differ = 0;
    for (int q = 0; q < NREQ; q++) {
        bad += wrong(buf[q], n[q], scale[q]);
        differ += !same_everywhere(buf[q], n[q]);
    }
    configure(RT_ALLREDUCE_AUTO, 0);
    free(x);
    ck_assert_int_gt(polls, 0);
    ck_assert_int_eq(total(bad), 0);
    ck_assert_int_eq(total(differ), 0);
}
END_TEST

/* Requests completed out of order by rt_comm_wait, with a blocking call in between (which
 * must first finish the queue), using the configured algorithm. */
START_TEST(queued_wait_and_blocking)
{
    const size_t n = 100003;
    float *x = malloc(4 * n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    long bad = 0;
    for (int a = 0; a < N_ALGOS; a++) {
        configure(algos[a], 8192);
        for (int q = 0; q < 4; q++)
            fill(x + (size_t)q * n, n);
        rt_comm_req *r0 = rt_comm_iallreduce(comm, x, n, 1.0f);
        rt_comm_req *r1 = rt_comm_iallreduce(comm, x + n, n, 0.5f);
        rt_comm_allreduce(comm, x + 2 * n, n, 1.0f); /* finishes r0, r1 first */
        rt_comm_req *r3 = rt_comm_iallreduce(comm, x + 3 * n, n, 1.0f);
        rt_comm_wait(comm, r3);
        ck_assert_int_eq(rt_comm_test(comm, r1), 1); /* already done: released now */
        rt_comm_wait(comm, r0);
        bad += wrong(x, n, 1.0f) + wrong(x + n, n, 0.5f) + wrong(x + 2 * n, n, 1.0f) +
               wrong(x + 3 * n, n, 1.0f);
    }
    configure(RT_ALLREDUCE_AUTO, 0);
    free(x);
    ck_assert_int_eq(total(bad), 0);
}
END_TEST

/* Inexact data (order of additions matters): two runs give the same bytes, and every rank
 * holds the same bytes, for the algorithms we implement. */
START_TEST(deterministic_identical)
{
    const size_t n = 300007;
    float *x = malloc(2 * n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    long differ = 0;
    const enum rt_allreduce_algo ours[] = {RT_ALLREDUCE_RING, RT_ALLREDUCE_RD, RT_ALLREDUCE_AUTO};
    for (int a = 0; a < 3; a++)
        for (int s = 0; s < 2; s++) {
            configure(RT_ALLREDUCE_AUTO, s ? 4096 : 0);
            for (int run = 0; run < 2; run++) {
                float *y = x + (size_t)run * n;
                for (size_t i = 0; i < n; i++)
                    y[i] = 1.0f / (float)(1 + (i * 7 + (size_t)rank * 13) % 1009) +
                           1e-3f * (float)rank;
                if (run == 0)
                    rt_comm_allreduce_with(comm, ours[a], y, n, 1.0f / (float)size);
                else /* the non-blocking path gives the same bytes */
                    rt_comm_wait(comm,
                                 rt_comm_iallreduce_with(comm, ours[a], y, n, 1.0f / (float)size));
            }
            differ += memcmp(x, x + n, n * sizeof *x) != 0;
            differ += !same_everywhere(x, n);
        }
    configure(RT_ALLREDUCE_AUTO, 0);
    free(x);
    ck_assert_int_eq(total(differ), 0);
}
END_TEST

struct job {
    float *x;
    size_t n;
};

static void *comm_thread(void *arg)
{
    struct job *j = arg;
    rt_comm_allreduce_with(comm, RT_ALLREDUCE_RING, j->x, j->n, 1.0f);
    return NULL;
}

/* A communication thread makes the blocking call while the main thread stays out of MPI. */
START_TEST(blocking_on_thread)
{
    ck_assert_int_eq(rt_comm_threads_ok(comm), 1);
    struct job j = {.n = 200001};
    j.x = malloc(j.n * sizeof *j.x);
    ck_assert_ptr_nonnull(j.x);
    fill(j.x, j.n);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, comm_thread, &j), 0);
    pthread_join(t, NULL);
    long bad = wrong(j.x, j.n, 1.0f);
    free(j.x);
    ck_assert_int_eq(total(bad), 0);
}
END_TEST

/* A bucket size far below the model's size used to make more buckets than the request
 * queue holds, and the job aborted ("more than 64 requests outstanding"): the layout now
 * raises the bucket size to fit, in every overlap mode, and the sums stay exact. */
START_TEST(buckets_many_small)
{
    const enum rt_overlap modes[] = {RT_OVERLAP_POLL, RT_OVERLAP_THREAD, RT_OVERLAP_OFF};
    size_t n = 200001, offset[3] = {0, 150000, 200000};
    float *g = malloc(n * sizeof *g);
    ck_assert_ptr_nonnull(g);
    for (int m = 0; m < 3; m++) {
        struct rt_buckets *b;
        fill(g, n);
        ck_assert_int_eq(rt_buckets_init(&b, comm, g, n, offset, 3, 4, modes[m], 1.0f), RT_OK);
        ck_assert_int_le(rt_buckets_count(b), RT_MAX_BUCKETS);
        rt_buckets_begin(b);
        for (int layer = 2; layer >= 0; layer--)
            rt_buckets_layer_ready(b, layer, offset[layer],
                                   (layer == 2 ? n : offset[layer + 1]) - offset[layer]);
        size_t covered = 0;
        struct rt_bucket_view v;
        while (rt_buckets_next(b, &v))
            covered += v.hi - v.lo;
        rt_buckets_free(b);
        ck_assert_uint_eq(covered, n);
        ck_assert_int_eq(total(wrong(g, n, 1.0f)), 0);
    }
    free(g);
}
END_TEST

/* Sparse buckets: only the kept coordinates travel; they come back summed exactly as the
 * dense allreduce sums them (exact integer data), every pruned one keeps this rank's own
 * value, in every overlap mode, and the wire carries exactly the kept count. */
START_TEST(buckets_sparse_equals_dense)
{
    const enum rt_overlap modes[] = {RT_OVERLAP_POLL, RT_OVERLAP_THREAD, RT_OVERLAP_OFF};
    size_t n = 100003, offset[3] = {0, 70000, 99000};
    float *g = malloc(n * sizeof *g);
    uint8_t *keep = malloc(n);
    ck_assert_ptr_nonnull(g);
    ck_assert_ptr_nonnull(keep);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        keep[i] = (i * 2654435761u >> 7) % 10 == 0; /* about 10%, the same on every rank */
        kept += keep[i];
    }
    for (int m = 0; m < 3; m++) {
        struct rt_buckets *b;
        fill(g, n);
        ck_assert_int_eq(rt_buckets_init(&b, comm, g, n, offset, 3, 16 << 10, modes[m], 1.0f),
                         RT_OK);
        ck_assert_int_eq(rt_buckets_set_mask(b, keep), RT_OK);
        ck_assert_uint_eq(rt_buckets_wire_floats(b), kept);
        rt_buckets_begin(b);
        for (int layer = 2; layer >= 0; layer--)
            rt_buckets_layer_ready(b, layer, offset[layer],
                                   (layer == 2 ? n : offset[layer + 1]) - offset[layer]);
        struct rt_bucket_view v;
        while (rt_buckets_next(b, &v))
            ;
        long bad = 0;
        for (size_t i = 0; i < n; i++) {
            float want = (float)(1000.0 * size * (size - 1) / 2 + (double)size * (double)(i % 997));
            float mine = (float)(1000 * rank + (int)(i % 997));
            bad += keep[i] ? g[i] != want : g[i] != mine;
        }
        ck_assert_int_eq(rt_buckets_set_mask(b, NULL), RT_OK);
        ck_assert_uint_eq(rt_buckets_wire_floats(b), n);
        rt_buckets_free(b);
        ck_assert_int_eq(total(bad), 0);
    }
    free(keep);
    free(g);
}
END_TEST

START_TEST(names_and_options)
{
    for (int a = RT_ALLREDUCE_AUTO; a <= RT_ALLREDUCE_MPI; a++) {
        enum rt_allreduce_algo back;
        ck_assert_int_eq(rt_allreduce_algo_parse(rt_allreduce_algo_name(a), &back), 0);
        ck_assert_int_eq(back, a);
    }
    enum rt_allreduce_algo dummy;
    ck_assert_int_eq(rt_allreduce_algo_parse("tree", &dummy), -1);
    ck_assert_str_eq(rt_allreduce_algo_name(RT_ALLREDUCE_RD), "rd");
    struct rt_comm_opts bad = {.algorithm = RT_ALLREDUCE_RING, .segment_bytes = 4098};
    ck_assert_int_eq(rt_comm_configure(comm, &bad), RT_ERR_INVAL);
    rt_error_clear();
}
END_TEST

int main(int argc, char **argv)
{
    rt_comm_init(&comm, &argc, &argv);
    rank = rt_comm_rank(comm);
    size = rt_comm_size(comm);
    Suite *s = suite_create("mpi_allreduce");
    TCase *tc = tcase_create("rt_comm_allreduce");
    tcase_add_loop_test(tc, blocking_exact, 0, N_ALGOS);
    tcase_add_test(tc, blocking_on_thread);
    tcase_add_test(tc, names_and_options);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_comm_iallreduce");
    tcase_add_test(tc, queued_polling);
    tcase_add_test(tc, queued_wait_and_blocking);
    tcase_add_test(tc, deterministic_identical);
    tcase_add_test(tc, buckets_many_small);
    tcase_add_test(tc, buckets_sparse_equals_dense);
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
