/* test_rowstore.c - src/data/rowstore.c, both kinds: rows put in pieces come back
 * bit-identical through read and gather (shuffled, repeated, n = 0 and n = max_gather), bad
 * ranges and indices fail with RT_ERR_INVAL and leave the table as it was, and the file kind's
 * scratch file lives exactly as long as the store. Loop tests run once per kind (_i). */
#include "check_util.h"
#include "ringtrain/rowstore.h"
#include "ringtrain/status.h"

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------------------- */

/* Row i, column j of the test tables: bit-rich, finite, different everywhere. */
static float value(int64_t i, int j)
{
    uint32_t h = (uint32_t)i * 2654435761u ^ (uint32_t)j * 2246822519u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return (float)(h % 2000003u) / 1024.0f - 977.0f;
}

static float *make_table(int64_t rows, int width)
{
    float *t = malloc((size_t)rows * (size_t)width * sizeof(float));
    ck_assert_ptr_nonnull(t);
    for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < width; j++)
            t[i * width + j] = value(i, j);
    return t;
}

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* A scratch path for the file kind (owned by the caller), NULL for the memory kind. */
static char *kind_path(enum rt_rowstore_kind kind, const char *hint)
{
    return kind == RT_ROWSTORE_FILE ? strdup(scratch_path(hint)) : NULL;
}

static struct rt_rowstore *open_ok(enum rt_rowstore_kind kind, const char *path, int64_t rows,
                                   int width, int max_gather)
{
    struct rt_rowstore *s = NULL;
    int st = rt_rowstore_open(&s, kind, path, rows, width, max_gather);
    ck_assert_msg(st == RT_OK, "open %lld x %d: %s", (long long)rows, width, rt_error_message(st));
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(rt_rowstore_rows(s), rows);
    ck_assert_int_eq(rt_rowstore_width(s), width);
    ck_assert_int_eq(rt_rowstore_kind(s), kind);
    return s;
}

/* Expects status st to be code, with a one-line message containing both needles. */
static void expect_fail(int st, int code, const char *needle, const char *needle2)
{
    const char *msg = rt_error_message(st);
    ck_assert_msg(st == code, "got %s (%s), expected %s", rt_status_name(st), msg,
                  rt_status_name(code));
    ck_assert_msg(!needle || strstr(msg, needle), "message \"%s\" lacks \"%s\"", msg, needle);
    ck_assert_msg(!needle2 || strstr(msg, needle2), "message \"%s\" lacks \"%s\"", msg, needle2);
    ck_assert_msg(strchr(msg, '\n') == NULL, "message has a newline");
    rt_error_clear();
}

/* Fails with the first differing float when a and b (n floats) are not bit-identical. */
static void expect_same(const float *a, const float *b, size_t n, const char *label)
{
    if (memcmp(a, b, n * sizeof(float)) == 0) return;
    size_t i = 0;
    for (uint32_t x = 0, y = 0; i < n; i++) { /* the first float whose bits differ */
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, b + i, sizeof y);
        if (x != y) break;
    }
    ck_abort_msg("%s: float %zu of %zu differs: %.9g vs %.9g", label, i, n, a[i], b[i]);
}

/* Puts table t (rows, width) in uneven pieces, last piece first. */
static void put_pieces(struct rt_rowstore *s, const float *t, int64_t rows, int width)
{
    const int64_t cut[] = {0, rows / 7, rows / 3, rows / 2 + 1, rows - 1, rows};
    for (int p = 4; p >= 0; p--) {
        int64_t a = cut[p], b = cut[p + 1];
        if (b < a) continue; /* tiny tables */
        int st = rt_rowstore_put(s, a, t + a * width, b - a);
        ck_assert_msg(st == RT_OK, "put [%lld, %lld): %s", (long long)a, (long long)b,
                      rt_error_message(st));
    }
}

/* Reads the whole table back (in one go and in ranges) and compares it with t. */
static void expect_table(struct rt_rowstore *s, const float *t, int64_t rows, int width)
{
    size_t all = (size_t)rows * (size_t)width;
    float *got = malloc(all * sizeof(float));
    ck_assert_ptr_nonnull(got);
    memset(got, 0xff, all * sizeof(float));
    ck_assert_int_eq(rt_rowstore_read(s, 0, got, rows), RT_OK);
    expect_same(got, t, all, "read all");
    const int64_t ranges[][2] = {
        {0, 1}, {rows - 1, 1}, {rows / 5, rows / 2}, {rows / 3, 0}, {1, rows - 1}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        int64_t first = ranges[r][0], n = ranges[r][1];
        if (first < 0 || n < 0 || first + n > rows) continue;
        memset(got, 0xff, all * sizeof(float));
        ck_assert_int_eq(rt_rowstore_read(s, first, got, n), RT_OK);
        expect_same(got, t + first * width, (size_t)n * (size_t)width, "read range");
    }
    free(got);
}

/* index[0..n): random rows of [0, rows), with repeats (every 5th repeats an earlier one,
 * and the last equals the first). */
static void random_index(int64_t *index, int n, int64_t rows, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (int i = 0; i < n; i++)
        index[i] = (int64_t)(rng_next(&x) % (uint64_t)rows);
    for (int i = 5; i < n; i += 5)
        index[i] = index[rng_next(&x) % (uint64_t)i];
    if (n > 1) index[n - 1] = index[0];
}

/* Gathers index[0..n) and compares every row with t. */
static void expect_gather(struct rt_rowstore *s, const float *t, const int64_t *index, int n,
                          int width)
{
    float *got = malloc(((size_t)n + 1) * (size_t)width * sizeof(float));
    ck_assert_ptr_nonnull(got);
    int st = rt_rowstore_gather(s, index, n, got);
    ck_assert_msg(st == RT_OK, "gather %d rows: %s", n, rt_error_message(st));
    for (int i = 0; i < n; i++) {
        char label[64];
        snprintf(label, sizeof label, "gather row %d (index %lld)", i, (long long)index[i]);
        expect_same(got + (size_t)i * width, t + index[i] * width, (size_t)width, label);
    }
    free(got);
}

/* ---- rt_rowstore_open / rt_rowstore_close ----------------------------------------------- */

START_TEST(open_bad_shape)
{
    enum rt_rowstore_kind kind = (enum rt_rowstore_kind)_i;
    char *path = kind_path(kind, "shape.h5");
    struct rt_rowstore *s = (struct rt_rowstore *)1;
    expect_fail(rt_rowstore_open(&s, kind, path, 0, 4, 8), RT_ERR_INVAL, "rows = 0", NULL);
    ck_assert_ptr_null(s);
    expect_fail(rt_rowstore_open(&s, kind, path, -3, 4, 8), RT_ERR_INVAL, "rows = -3", NULL);
    expect_fail(rt_rowstore_open(&s, kind, path, 10, 0, 8), RT_ERR_INVAL, "width = 0", NULL);
    expect_fail(rt_rowstore_open(&s, kind, path, 10, -1, 8), RT_ERR_INVAL, "width = -1", NULL);
    expect_fail(rt_rowstore_open(&s, kind, path, 10, 4, -1), RT_ERR_INVAL, "max_gather", NULL);
    ck_assert_ptr_null(s);
    if (path) ck_assert_int_eq(access(path, F_OK), -1); /* nothing created */
    free(path);
}
END_TEST

START_TEST(open_bad_kind_or_path)
{
    struct rt_rowstore *s = (struct rt_rowstore *)1;
    expect_fail(rt_rowstore_open(&s, (enum rt_rowstore_kind)7, NULL, 10, 4, 8), RT_ERR_INVAL,
                "kind = 7", NULL);
    ck_assert_ptr_null(s);
    expect_fail(rt_rowstore_open(&s, RT_ROWSTORE_FILE, NULL, 10, 4, 8), RT_ERR_INVAL, "path", NULL);
    expect_fail(rt_rowstore_open(&s, RT_ROWSTORE_FILE, "", 10, 4, 8), RT_ERR_INVAL, "path", NULL);
    ck_assert_ptr_null(s);
}
END_TEST

START_TEST(open_file_missing_dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/rows.h5", scratch_path("nosuchdir"));
    struct rt_rowstore *s = (struct rt_rowstore *)1;
    expect_fail(rt_rowstore_open(&s, RT_ROWSTORE_FILE, path, 10, 4, 8), RT_ERR_IO, path,
                "No such file or directory");
    ck_assert_ptr_null(s);
}
END_TEST

START_TEST(open_memory_too_large)
{
    struct rt_rowstore *s = (struct rt_rowstore *)1;
    expect_fail(rt_rowstore_open(&s, RT_ROWSTORE_MEMORY, NULL, INT64_MAX / 2, 1000, 8),
                RT_ERR_NOMEM, "MB", NULL);
    ck_assert_ptr_null(s);
}
END_TEST

START_TEST(close_removes_file)
{
    char *path = strdup(scratch_path("life.h5"));
    /* a leftover at path is truncated, not an error */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not an HDF5 file\n", f);
    fclose(f);
    struct rt_rowstore *s = open_ok(RT_ROWSTORE_FILE, path, 100, 3, 4);
    ck_assert_int_eq(access(path, F_OK), 0);
    ck_assert_int_gt(H5Fis_hdf5(path), 0);
    rt_rowstore_close(s);
    ck_assert_int_eq(access(path, F_OK), -1);
    rt_rowstore_close(NULL); /* no-op */
    free(path);
}
END_TEST

/* ---- rt_rowstore_put / rt_rowstore_read ------------------------------------------------- */

START_TEST(put_read_ranges)
{
    enum rt_rowstore_kind kind = (enum rt_rowstore_kind)_i;
    char *path = kind_path(kind, "ranges.h5");
    const int64_t rows = 3001; /* several chunks, a partial last one */
    const int width = 29;
    float *t = make_table(rows, width);
    struct rt_rowstore *s = open_ok(kind, path, rows, width, 16);
    put_pieces(s, t, rows, width);
    expect_table(s, t, rows, width);
    /* overwrite a range that straddles pieces, then put it back */
    float *z = calloc(500 * (size_t)width, sizeof(float));
    ck_assert_int_eq(rt_rowstore_put(s, rows / 3 - 100, z, 500), RT_OK);
    ck_assert_int_eq(rt_rowstore_put(s, rows / 3 - 100, t + (rows / 3 - 100) * width, 500), RT_OK);
    expect_table(s, t, rows, width);
    ck_assert_int_eq(rt_rowstore_put(s, rows, t, 0), RT_OK); /* empty at the end: fine */
    ck_assert_int_eq(rt_rowstore_read(s, 0, NULL, 0), RT_OK);
    rt_rowstore_close(s);
    free(z);
    free(t);
    free(path);
}
END_TEST

START_TEST(read_unwritten_is_zero)
{
    enum rt_rowstore_kind kind = (enum rt_rowstore_kind)_i;
    char *path = kind_path(kind, "zero.h5");
    const int64_t rows = 2000;
    const int width = 5;
    struct rt_rowstore *s = open_ok(kind, path, rows, width, 4);
    float one[5] = {1, 2, 3, 4, 5}, got[10 * 5];
    ck_assert_int_eq(rt_rowstore_put(s, 1000, one, 1), RT_OK);
    ck_assert_int_eq(rt_rowstore_read(s, 995, got, 10), RT_OK);
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < width; j++)
            ck_assert_float_eq(got[i * width + j], i == 5 ? one[j] : 0.0f);
    int64_t index[2] = {1999, 1000};
    ck_assert_int_eq(rt_rowstore_gather(s, index, 2, got), RT_OK);
    for (int j = 0; j < width; j++) {
        ck_assert_float_eq(got[j], 0.0f);
        ck_assert_float_eq(got[width + j], one[j]);
    }
    rt_rowstore_close(s);
    free(path);
}
END_TEST

START_TEST(put_read_out_of_range)
{
    enum rt_rowstore_kind kind = (enum rt_rowstore_kind)_i;
    char *path = kind_path(kind, "range.h5");
    const int64_t rows = 300;
    const int width = 7;
    float *t = make_table(rows, width);
    float *junk = malloc(2 * (size_t)rows * width * sizeof(float));
    for (size_t i = 0; i < 2 * (size_t)rows * width; i++)
        junk[i] = -1.0f;
    struct rt_rowstore *s = open_ok(kind, path, rows, width, 8);
    const char *where = path ? path : "memory";
    put_pieces(s, t, rows, width);
    struct {
        int64_t first, n;
        const char *needle;
    } bad[] = {
        {-1, 1, "1 rows from row -1:"},
        {rows, 1, "1 rows from row 300:"},
        {rows - 2, 3, "3 rows from row 298:"},
        {0, rows + 1, "301 rows from row 0:"},
        {5, -1, "n = -1"},
        {rows + 1, 0, "0 rows from row 301:"},
        {INT64_MAX, 2, "from row 9223372036854775807:"},
        {rows - 1, INT64_MAX, "9223372036854775807 rows from row 299:"},
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        expect_fail(rt_rowstore_put(s, bad[b].first, junk, bad[b].n), RT_ERR_INVAL, bad[b].needle,
                    where);
        expect_fail(rt_rowstore_read(s, bad[b].first, junk, bad[b].n), RT_ERR_INVAL, bad[b].needle,
                    where);
    }
    for (size_t i = 0; i < 2 * (size_t)rows * width; i++)
        ck_assert_float_eq(junk[i], -1.0f); /* failed reads wrote nothing */
    expect_fail(rt_rowstore_put(s, 0, NULL, 1), RT_ERR_INVAL, "NULL", NULL);
    expect_fail(rt_rowstore_read(s, 0, NULL, 1), RT_ERR_INVAL, "NULL", NULL);
    expect_table(s, t, rows, width);
    rt_rowstore_close(s);
    free(junk);
    free(t);
    free(path);
}
END_TEST

/* ---- rt_rowstore_gather ----------------------------------------------------------------- */

START_TEST(gather_shuffled_repeats)
{
    enum rt_rowstore_kind kind = (enum rt_rowstore_kind)_i;
    char *path = kind_path(kind, "gather.h5");
    const int64_t rows = 2500;
    const int width = 13, G = 200;
    float *t = make_table(rows, width);
    struct rt_rowstore *s = open_ok(kind, path, rows, width, G);
    put_pieces(s, t, rows, width);
    int64_t index[200];
    for (int n = 1; n <= G; n += n < 8 ? 1 : 37) {
        random_index(index, n, rows, 1000 + (uint64_t)n);
        expect_gather(s, t, index, n, width);
    }
    random_index(index, G, rows, 77); /* n = max_gather */
    expect_gather(s, t, index, G, width);
    for (int i = 0; i < G; i++) /* runs: consecutive rows, descending, then one row repeated */
        index[i] = i < 64 ? 100 + i : i < 128 ? rows - 1 - (i - 64) : 7;
    expect_gather(s, t, index, G, width);
    for (int i = 0; i < G; i++) /* every row the same */
        index[i] = rows - 1;
    expect_gather(s, t, index, G, width);
    rt_rowstore_close(s);
    free(t);
    free(path);
}
END_TEST

START_TEST(gather_empty)
{
    enum rt_rowstore_kind kind = (enum rt_rowstore_kind)_i;
    char *path = kind_path(kind, "empty.h5");
    struct rt_rowstore *s = open_ok(kind, path, 10, 3, 4);
    float dst[3] = {-1, -1, -1};
    int64_t index[1] = {0};
    ck_assert_int_eq(rt_rowstore_gather(s, index, 0, dst), RT_OK);
    ck_assert_int_eq(rt_rowstore_gather(s, NULL, 0, NULL), RT_OK);
    ck_assert_float_eq(dst[0], -1.0f);
    rt_rowstore_close(s);
    /* max_gather = 0: only empty gathers */
    s = open_ok(kind, path, 10, 3, 0);
    ck_assert_int_eq(rt_rowstore_gather(s, index, 0, dst), RT_OK);
    expect_fail(rt_rowstore_gather(s, index, 1, dst), RT_ERR_INVAL, "n = 1", NULL);
    rt_rowstore_close(s);
    free(path);
}
END_TEST

START_TEST(gather_out_of_range)
{
    enum rt_rowstore_kind kind = (enum rt_rowstore_kind)_i;
    char *path = kind_path(kind, "gbad.h5");
    const int64_t rows = 400;
    const int width = 6, G = 32;
    float *t = make_table(rows, width);
    struct rt_rowstore *s = open_ok(kind, path, rows, width, G);
    const char *where = path ? path : "memory";
    put_pieces(s, t, rows, width);
    int64_t index[33];
    float dst[33 * 6];
    for (int i = 0; i < 33; i++)
        index[i] = (int64_t)i * 11;
    index[17] = rows;
    expect_fail(rt_rowstore_gather(s, index, G, dst), RT_ERR_INVAL, "index[17] = 400", where);
    index[17] = -5;
    expect_fail(rt_rowstore_gather(s, index, G, dst), RT_ERR_INVAL, "index[17] = -5", where);
    index[17] = INT64_MAX;
    expect_fail(rt_rowstore_gather(s, index, G, dst), RT_ERR_INVAL, "index[17] = ", where);
    index[17] = 3;
    expect_fail(rt_rowstore_gather(s, index, G + 1, dst), RT_ERR_INVAL, "n = 33", where);
    expect_fail(rt_rowstore_gather(s, index, -1, dst), RT_ERR_INVAL, "n = -1", where);
    expect_fail(rt_rowstore_gather(s, NULL, 2, dst), RT_ERR_INVAL, "NULL", NULL);
    expect_fail(rt_rowstore_gather(s, index, 2, NULL), RT_ERR_INVAL, "NULL", NULL);
    expect_gather(s, t, index, G, width); /* the store still works */
    expect_table(s, t, rows, width);
    rt_rowstore_close(s);
    free(t);
    free(path);
}
END_TEST

/* Memory kind at full size (80 MB), file kind smaller so the test stays quick. */
START_TEST(gather_large)
{
    enum rt_rowstore_kind kind = (enum rt_rowstore_kind)_i;
    char *path = kind_path(kind, "large.h5");
    const int64_t rows = kind == RT_ROWSTORE_FILE ? 5000 : 20000;
    const int width = kind == RT_ROWSTORE_FILE ? 37 : 1000, G = 4096;
    float *t = make_table(rows, width);
    struct rt_rowstore *s = open_ok(kind, path, rows, width, G);
    for (int64_t r = 0; r < rows; r += 256) /* batch-sized puts, in order */
        ck_assert_int_eq(rt_rowstore_put(s, r, t + r * width, rows - r < 256 ? rows - r : 256),
                         RT_OK);
    expect_table(s, t, rows, width);
    int64_t *index = malloc(G * sizeof *index);
    random_index(index, G, rows, 4242);
    expect_gather(s, t, index, G, width);
    for (int i = 0; i < G; i++) /* a permutation-like sweep: stride coprime to rows */
        index[i] = (int64_t)(((uint64_t)i * 7919u) % (uint64_t)rows);
    expect_gather(s, t, index, G, width);
    rt_rowstore_close(s);
    if (path) ck_assert_int_eq(access(path, F_OK), -1);
    free(index);
    free(t);
    free(path);
}
END_TEST

static Suite *rowstore_suite(void)
{
    Suite *s = suite_create("rowstore");
    const int kinds = 2; /* _i: RT_ROWSTORE_MEMORY, RT_ROWSTORE_FILE */
    TCase *tc;
    tc = tcase_create("rt_rowstore_open");
    tcase_add_loop_test(tc, open_bad_shape, 0, kinds);
    tcase_add_test(tc, open_bad_kind_or_path);
    tcase_add_test(tc, open_file_missing_dir);
    tcase_add_test(tc, open_memory_too_large);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_rowstore_close");
    tcase_add_test(tc, close_removes_file);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_rowstore_put_read");
    tcase_add_loop_test(tc, put_read_ranges, 0, kinds);
    tcase_add_loop_test(tc, read_unwritten_is_zero, 0, kinds);
    tcase_add_loop_test(tc, put_read_out_of_range, 0, kinds);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_rowstore_gather");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, gather_shuffled_repeats, 0, kinds);
    tcase_add_loop_test(tc, gather_empty, 0, kinds);
    tcase_add_loop_test(tc, gather_out_of_range, 0, kinds);
    tcase_add_loop_test(tc, gather_large, 0, kinds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return run_suite(rowstore_suite());
}
