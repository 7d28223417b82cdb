/* test_dataset.c - the sampler, memory and streaming paths, validation and the error paths
 * of src/data/dataset.c, on small HDF5 files written here. Multi-rank runs are simulated in
 * one process by opening one dataset per rank. */
#include "check_util.h"
#include "data_util.h"
#include "ringtrain/dataset.h"
#include "ringtrain/status.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- test files ------------------------------------------------------------------------- */

/* A file to write: X (N, D) = 100*i + j, y = i % classes (int32) or targets (N, K) =
 * -(10*i + c); knobs break one thing at a time. */
struct fspec {
    int64_t N, yrows; /* yrows < 0: same as N */
    int D, K;         /* K = 0: int32 class labels */
    int classes;
    hid_t xtype, ytype; /* file types; 0: float32 / int32 / float32 */
    int x_rank1;        /* write /X as 1-D */
    int no_x, no_y;
    int64_t nan_row, nan_col; /* -1: none */
    int64_t bad_label_row;    /* -1: none; label := classes + 2 */
    int64_t ynan_row;         /* -1: none; targets[row][1] := NaN */
};

static struct fspec fdefault(int64_t N, int D, int K)
{
    struct fspec s = {N, -1, D, K, 10, 0, 0, 0, 0, 0, -1, 0, -1, -1};
    return s;
}

static void write_ds(hid_t f, const char *name, hid_t ftype, hid_t mtype, int rank,
                     const hsize_t *dims, const void *buf)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    ck_assert(sp >= 0);
    hid_t ds = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(ds >= 0);
    if (dims[0] > 0) ck_assert(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
}

static char *make_file(const char *hint, const struct fspec *s)
{
    char *path = strdup(scratch_path(hint));
    int64_t yrows = s->yrows < 0 ? s->N : s->yrows;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    double *x = malloc(sizeof(double) * (size_t)(s->N * s->D + 1));
    for (int64_t i = 0; i < s->N; i++)
        for (int j = 0; j < s->D; j++)
            x[i * s->D + j] = 100.0 * (double)i + j;
    if (s->nan_row >= 0) x[s->nan_row * s->D + s->nan_col] = NAN;
    if (!s->no_x) {
        hsize_t dims[2] = {(hsize_t)s->N, (hsize_t)s->D};
        if (s->x_rank1) dims[0] = (hsize_t)(s->N * s->D);
        write_ds(f, "X", s->xtype ? s->xtype : H5T_IEEE_F32LE, H5T_NATIVE_DOUBLE,
                 s->x_rank1 ? 1 : 2, dims, x);
    }
    if (!s->no_y) {
        int w = s->K ? s->K : 1;
        double *y = malloc(sizeof(double) * (size_t)(yrows * w + 1));
        for (int64_t i = 0; i < yrows; i++)
            for (int c = 0; c < w; c++)
                y[i * w + c] = s->K ? -(10.0 * (double)i + c) : (double)(i % s->classes);
        if (s->bad_label_row >= 0) y[s->bad_label_row] = s->classes + 2;
        if (s->ynan_row >= 0) y[s->ynan_row * w + 1] = NAN;
        hsize_t dims[2] = {(hsize_t)yrows, (hsize_t)w};
        hid_t ft = s->ytype ? s->ytype : s->K ? H5T_IEEE_F32LE : H5T_STD_I32LE;
        write_ds(f, "y", ft, H5T_NATIVE_DOUBLE, s->K ? 2 : 1, dims, y);
        free(y);
    }
    free(x);
    H5Fclose(f);
    return path;
}

static struct rt_data_opts opts(int rank, int world, enum rt_shuffle sh, int64_t gb, double mb)
{
    struct rt_data_opts o;
    memset(&o, 0, sizeof o);
    o.rank = rank;
    o.world = world;
    o.shuffle = sh;
    o.seed = 1234;
    o.global_batch = gb;
    o.memory_mb = mb;
    o.synth_rows = 40;
    o.split = 0;
    return o;
}

/* ---- recording an epoch ----------------------------------------------------------------- */

struct rec {
    int64_t steps;
    int cap, D;
    size_t yrow;
    int *lr;     /* (steps) local rows */
    int64_t *gr; /* (steps) global rows */
    float *x;    /* (steps, cap, D) */
    char *y;     /* (steps, cap, yrow) */
};

static void record(struct rt_dataset *d, int64_t epoch, int64_t first, int cap, struct rec *r)
{
    const struct rt_dataset_info *in = rt_dataset_info(d);
    r->steps = rt_dataset_steps_per_epoch(d);
    r->cap = cap;
    r->D = in->dim;
    r->yrow = in->labels == RT_LABELS_CLASS ? 4 : sizeof(float) * (size_t)in->targets;
    r->lr = calloc((size_t)r->steps, sizeof(int));
    r->gr = calloc((size_t)r->steps, sizeof(int64_t));
    r->x = calloc((size_t)(r->steps * cap * r->D), sizeof(float));
    r->y = calloc((size_t)r->steps * cap, r->yrow);
    ck_assert_int_eq(rt_dataset_begin_epoch(d, epoch, first), RT_OK);
    for (int64_t k = first; k < r->steps; k++) {
        struct rt_batch b;
        int st = rt_dataset_next(d, &b);
        ck_assert_msg(st == RT_OK, "next: %s", rt_error_message(st));
        ck_assert_int_eq(b.step, k);
        ck_assert_int_le(b.local_rows, cap);
        r->lr[k] = b.local_rows;
        r->gr[k] = b.global_rows;
        memcpy(r->x + (size_t)k * cap * r->D, b.x, sizeof(float) * (size_t)b.local_rows * r->D);
        memcpy(r->y + (size_t)k * cap * r->yrow, b.y, r->yrow * (size_t)b.local_rows);
    }
    struct rt_batch b;
    rt_error_clear();
    ck_assert_int_eq(rt_dataset_next(d, &b), RT_ERR_INVAL); /* past the end */
}

static void rec_free(struct rec *r)
{
    free(r->lr);
    free(r->gr);
    free(r->x);
    free(r->y);
}

static int rec_equal(const struct rec *a, const struct rec *b, int64_t from)
{
    if (a->steps != b->steps) return 0;
    for (int64_t k = from; k < a->steps; k++) {
        if (a->lr[k] != b->lr[k] || a->gr[k] != b->gr[k]) return 0;
        size_t off = (size_t)k * a->cap;
        if (memcmp(a->x + off * a->D, b->x + off * a->D, sizeof(float) * a->lr[k] * a->D) ||
            memcmp(a->y + off * a->yrow, b->y + off * a->yrow, a->yrow * a->lr[k]))
            return 0;
    }
    return 1;
}

/* Row id of row i of step k (X[i][0] = 100 * id). */
static int64_t rec_id(const struct rec *r, int64_t k, int i)
{
    return (int64_t)(r->x[((size_t)k * r->cap + i) * r->D] / 100.0f);
}

/* For world = 1..4: the ranks' batches of step k, interleaved r, r+world, ..., are the
 * one-rank batch k byte for byte; steps agree; global_rows is the one-rank row count. */
static void check_union(const char *src, enum rt_shuffle sh, int64_t gb, double mb,
                        int expect_empty_rank)
{
    struct rt_data_opts o1 = opts(0, 1, sh, gb, mb);
    struct rt_dataset *d1 = open_ok(src, &o1);
    struct rec one;
    record(d1, 3, 0, (int)gb, &one);
    rt_dataset_close(d1);
    int saw_empty = 0;
    for (int world = 1; world <= 4; world++) {
        struct rec r[4];
        for (int q = 0; q < world; q++) {
            struct rt_data_opts o = opts(q, world, sh, gb, mb);
            struct rt_dataset *d = open_ok(src, &o);
            record(d, 3, 0, (int)gb, &r[q]);
            rt_dataset_close(d);
            ck_assert_int_eq(r[q].steps, one.steps);
        }
        for (int64_t k = 0; k < one.steps; k++) {
            int total = 0;
            for (int q = 0; q < world; q++) {
                ck_assert_int_eq(r[q].gr[k], one.lr[k]);
                total += r[q].lr[k];
                saw_empty |= r[q].lr[k] == 0;
                for (int i = 0; i < r[q].lr[k]; i++) {
                    size_t a = (size_t)k * gb + i, b = (size_t)k * gb + q + (size_t)i * world;
                    ck_assert_msg(
                        !memcmp(r[q].x + a * one.D, one.x + b * one.D, sizeof(float) * one.D) &&
                            !memcmp(r[q].y + a * one.yrow, one.y + b * one.yrow, one.yrow),
                        "world %d rank %d step %lld row %d differs", world, q, (long long)k, i);
                }
            }
            ck_assert_int_eq(total, one.lr[k]);
        }
        for (int q = 0; q < world; q++)
            rec_free(&r[q]);
    }
    if (expect_empty_rank) ck_assert_msg(saw_empty, "the tail never left a rank without rows");
    rec_free(&one);
}

/* ---- rt_dataset_open -------------------------------------------------------------------- */

START_TEST(open_reports_info)
{
    struct fspec s = fdefault(50, 3, 0);
    char *p = make_file("info.h5", &s);
    for (int mem = 0; mem < 2; mem++) {
        struct rt_data_opts o = opts(1, 2, RT_SHUFFLE_GLOBAL, 8, mem ? 100.0 : 0.0);
        struct rt_dataset *d = open_ok(p, &o);
        const struct rt_dataset_info *in = rt_dataset_info(d);
        ck_assert_int_eq(in->rows, 50);
        ck_assert_int_eq(in->dim, 3);
        ck_assert_int_eq(in->labels, RT_LABELS_CLASS);
        ck_assert_int_eq(in->targets, 1);
        ck_assert_int_eq(in->in_memory, mem);
        ck_assert_int_eq(rt_dataset_steps_per_epoch(d), 7);
        ck_assert_str_eq(rt_dataset_source(d), p);
        rt_dataset_close(d);
    }
    s = fdefault(20, 4, 6);
    char *q = make_file("info_t.h5", &s);
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_OFF, 5, 100.0);
    struct rt_dataset *d = open_ok(q, &o);
    ck_assert_int_eq(rt_dataset_info(d)->labels, RT_LABELS_TARGET);
    ck_assert_int_eq(rt_dataset_info(d)->targets, 6);
    rt_dataset_close(d);
    rt_dataset_close(NULL);
    unlink(p);
    unlink(q);
    free(p);
    free(q);
}
END_TEST

/* A file with inputs `x` (N rows of D, written as dims xd of rank xr, file type xt) and
 * labels `y` (N, file type yt) under the given dataset names. */
static char *make_typed(const char *hint, const char *xname, hid_t xt, int xr, const hsize_t *xd,
                        const double *x, const char *yname, hid_t yt, const long long *y)
{
    char *path = strdup(scratch_path(hint));
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t sp = H5Screate_simple(xr, xd, NULL);
    hid_t ds = H5Dcreate2(f, xname, xt, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    sp = H5Screate_simple(1, xd, NULL);
    ds = H5Dcreate2(f, yname, yt, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Pclose(lcpl);
    H5Fclose(f);
    return path;
}

/* IEEE half precision, which HDF5 1.10 has no predefined type for (h5py's float16). */
static hid_t half_type(void)
{
    hid_t h = H5Tcopy(H5T_IEEE_F32LE);
    ck_assert(H5Tset_fields(h, 15, 10, 5, 0, 10) >= 0 && H5Tset_precision(h, 16) >= 0 &&
              H5Tset_size(h, 2) >= 0 && H5Tset_ebias(h, 15) >= 0);
    return h;
}

/* Stored types other than float32 / int32 arrive through HDF5's conversion, exactly; named
 * datasets in groups; (N, C, H, W) gives the sample shape. */
START_TEST(open_converts_types)
{
    enum { N = 6, C = 2, H = 3, W = 2, D = C * H * W };
    double x[N * D];
    long long y[N];
    for (int i = 0; i < N * D; i++)
        x[i] = (double)(i % 200); /* exact in uint8, float16, float32 */
    for (int i = 0; i < N; i++)
        y[i] = i % 4;
    hsize_t d4[4] = {N, C, H, W}, d2[2] = {N, D}, d3[3] = {N, H, W};
    hid_t half = half_type();
    struct {
        hid_t xt, yt;
        int xr;
        const hsize_t *xd;
        struct rt_shape shape;
    } cases[] = {
        {H5T_IEEE_F64LE, H5T_STD_I64LE, 4, d4, {3, {C, H, W}}},
        {half, H5T_STD_U8LE, 2, d2, {1, {D}}},
        {H5T_STD_U8LE, H5T_STD_I16BE, 4, d4, {3, {C, H, W}}},
        {H5T_STD_I32BE, H5T_STD_U64LE, 3, d3, {3, {1, H, W}}},
    };
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_OFF, 3, 64);
    o.x_name = "train/pixels";
    o.y_name = "labels";
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int d = cases[c].xr == 3 ? H * W : D;
        char *p = make_typed("types.h5", "train/pixels", cases[c].xt, cases[c].xr, cases[c].xd, x,
                             "labels", cases[c].yt, y);
        for (int mem = 0; mem < 2; mem++) { /* held in memory, and streamed */
            o.memory_mb = mem ? 64 : 0;
            struct rt_dataset *ds = open_ok(p, &o);
            const struct rt_dataset_info *in = rt_dataset_info(ds);
            ck_assert_int_eq(in->dim, d);
            ck_assert(rt_shape_equal(&in->shape, &cases[c].shape));
            ck_assert_int_eq(in->labels, RT_LABELS_CLASS);
            ck_assert_int_eq(rt_dataset_validate(ds, d, 4, RT_LOSS_CE), RT_OK);
            ck_assert_int_eq(rt_dataset_begin_epoch(ds, 0, 0), RT_OK);
            struct rt_batch b;
            ck_assert_int_eq(rt_dataset_next(ds, &b), RT_OK);
            const int32_t *lab = b.y;
            for (int r = 0; r < b.local_rows; r++) {
                ck_assert_int_eq(lab[r], (int)y[r]);
                for (int k = 0; k < d; k++)
                    ck_assert_float_eq(b.x[r * d + k], (float)x[r * d + k]);
            }
            rt_dataset_close(ds);
        }
        unlink(p);
        free(p);
    }
    H5Tclose(half);
}
END_TEST

/* Values that do not fit after conversion: named with the row, on both read paths. */
START_TEST(open_refuses_values_that_do_not_fit)
{
    enum { N = 8, D = 3 };
    double x[N * D];
    long long y[N];
    for (int i = 0; i < N * D; i++)
        x[i] = i;
    for (int i = 0; i < N; i++)
        y[i] = i % 3;
    hsize_t d2[2] = {N, D};
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_OFF, 4, 64);
    for (int mem = 0; mem < 2; mem++) {
        o.memory_mb = mem ? 64 : 0;
        x[5 * D + 1] = 1e300;
        char *p = make_typed("big.h5", "X", H5T_IEEE_F64LE, 2, d2, x, "y", H5T_STD_I64LE, y);
        struct rt_dataset *ds = NULL;
        rt_error_clear();
        int st = rt_dataset_open(&ds, p, &o);
        if (st == RT_OK) st = rt_dataset_validate(ds, D, 3, RT_LOSS_CE);
        ck_assert_int_eq(st, RT_ERR_SHAPE);
        ck_assert_msg(strstr(rt_error_message(st), "[data] x = 'X' row 5 column 1 = 1e+300: "
                                                   "beyond float32's range"),
                      "%s", rt_error_message(st));
        rt_dataset_close(ds);
        unlink(p);
        free(p);
        /* a stored float64 infinity is not out of range: the finite check names it */
        x[5 * D + 1] = INFINITY;
        p = make_typed("inf.h5", "X", H5T_IEEE_F64LE, 2, d2, x, "y", H5T_STD_I64LE, y);
        ds = NULL;
        rt_error_clear();
        st = rt_dataset_open(&ds, p, &o);
        if (st == RT_OK) st = rt_dataset_validate(ds, D, 3, RT_LOSS_CE);
        ck_assert_int_eq(st, RT_ERR_NONFINITE);
        ck_assert_msg(strstr(rt_error_message(st), "/X row 5 column 1 = inf: expected a finite"),
                      "%s", rt_error_message(st));
        rt_dataset_close(ds);
        unlink(p);
        free(p);
        x[5 * D + 1] = 0;
        y[6] = 1LL << 40;
        p = make_typed("big.h5", "X", H5T_IEEE_F64LE, 2, d2, x, "y", H5T_STD_I64LE, y);
        ds = NULL;
        rt_error_clear();
        st = rt_dataset_open(&ds, p, &o);
        if (st == RT_OK) st = rt_dataset_validate(ds, D, 3, RT_LOSS_CE);
        ck_assert_int_eq(st, RT_ERR_SHAPE);
        ck_assert_msg(strstr(rt_error_message(st), "[data] y = 'y' row 6 = 1099511627776: "
                                                   "expected a class label that fits int32"),
                      "%s", rt_error_message(st));
        rt_dataset_close(ds);
        unlink(p);
        free(p);
        y[6] = 0;
    }
    /* a uint8 label of 200 for 3 classes: the existing range check, after conversion */
    y[2] = 200;
    char *p = make_typed("u8.h5", "X", H5T_IEEE_F32LE, 2, d2, x, "y", H5T_STD_U8LE, y);
    struct rt_dataset *ds = open_ok(p, &o);
    rt_error_clear();
    int st = rt_dataset_validate(ds, D, 3, RT_LOSS_CE);
    ck_assert_int_eq(st, RT_ERR_SHAPE);
    ck_assert_msg(strstr(rt_error_message(st), "row 2 = 200: expected a class label in [0, 3)"),
                  "%s", rt_error_message(st));
    rt_dataset_close(ds);
    unlink(p);
    free(p);
}
END_TEST

START_TEST(open_bad_files)
{
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_GLOBAL, 4, 0.0);
    struct rt_data_opts o4 = opts(0, 4, RT_SHUFFLE_GLOBAL, 4, 0.0);

    char *missing = strdup(scratch_path("missing.h5"));
    open_fails(missing, &o, RT_ERR_IO, "No such file");

    char *dir = strdup(scratch_path("dir.h5"));
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    open_fails(dir, &o, RT_ERR_IO, "directory");
    rmdir(dir);

    char *garbage = strdup(scratch_path("garbage.h5"));
    FILE *fp = fopen(garbage, "w");
    fputs("this is not an HDF5 file, just text\n", fp);
    fclose(fp);
    open_fails(garbage, &o, RT_ERR_FORMAT, "not an HDF5 file");
    unlink(garbage);

    struct {
        const char *hint;
        struct fspec s;
        int code;
        const char *needle;
        const struct rt_data_opts *o;
    } cases[] = {
        {"nox.h5", fdefault(10, 3, 0), RT_ERR_FORMAT, "[data] x = 'X': no such dataset", &o},
        {"noy.h5", fdefault(10, 3, 0), RT_ERR_FORMAT, "[data] y = 'y': no such dataset", &o},
        {"xrank.h5", fdefault(10, 3, 0), RT_ERR_FORMAT, "dimensions", &o},
        {"xf64.h5", fdefault(10, 3, 0), RT_ERR_FORMAT, "1 dimensions: targets must be 2-D", &o},
        {"yf64.h5", fdefault(10, 3, 0), RT_ERR_FORMAT, "float64 with 1 dimensions", &o},
        {"yi64.h5", fdefault(10, 3, 2), RT_ERR_FORMAT, "int64 with 2 dimensions", &o},
        {"yrank.h5", fdefault(10, 3, 2), RT_ERR_FORMAT, "dimensions", &o},
        {"rows.h5", fdefault(10, 3, 0), RT_ERR_FORMAT, "10 rows but /y has 9", &o},
        {"zero.h5", fdefault(0, 3, 0), RT_ERR_SHAPE, "0 rows", &o},
        {"few.h5", fdefault(3, 3, 0), RT_ERR_SHAPE, "3 rows for 4 ranks", &o4},
    };
    cases[0].s.no_x = 1;
    cases[1].s.no_y = 1;
    cases[2].s.x_rank1 = 1;
    cases[3].s.ytype = H5T_IEEE_F32LE; /* float labels (N): neither labels nor targets */
    cases[4].s.ytype = H5T_IEEE_F64LE;
    cases[4].s.K = 0;
    cases[5].s.ytype = H5T_STD_I64LE; /* integer targets (N, 2) */
    cases[6].s.ytype = H5T_STD_I32LE; /* int32 labels written (N, 2) */
    cases[7].s.yrows = 9;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = make_file(cases[i].hint, &cases[i].s);
        open_fails(p, cases[i].o, cases[i].code, cases[i].needle);
        unlink(p);
        free(p);
    }
    free(missing);
    free(dir);
    free(garbage);
}
END_TEST

START_TEST(open_bad_options)
{
    struct fspec s = fdefault(30, 3, 0);
    char *p = make_file("opts.h5", &s);
    struct rt_data_opts o = opts(0, 3, RT_SHUFFLE_GLOBAL, 100, 0.0);
    open_fails(p, &o, RT_ERR_INVAL, "train.batch = 100 is not divisible by 3 ranks");
    o = opts(3, 3, RT_SHUFFLE_GLOBAL, 6, 0.0);
    open_fails(p, &o, RT_ERR_INVAL, "rank = 3");
    o = opts(0, 0, RT_SHUFFLE_GLOBAL, 6, 0.0);
    open_fails(p, &o, RT_ERR_INVAL, "world = 0");
    o = opts(0, 1, RT_SHUFFLE_GLOBAL, 0, 0.0);
    open_fails(p, &o, RT_ERR_INVAL, "train.batch = 0");
    o = opts(0, 1, RT_SHUFFLE_GLOBAL, 4, 0.0);
    open_fails("synth:nosuchtask", &o, RT_ERR_INVAL, "unknown synthetic task");
    o.synth_rows = 0;
    open_fails("synth:bigmodel", &o, RT_ERR_SHAPE, "0 rows");
    o = opts(0, 4, RT_SHUFFLE_GLOBAL, 4, 0.0);
    o.synth_rows = 3;
    open_fails("synth:bigmodel", &o, RT_ERR_SHAPE, "3 rows for 4 ranks");
    unlink(p);
    free(p);
}
END_TEST

/* ---- rt_dataset_next -------------------------------------------------------------------- */

START_TEST(next_union_global_and_off)
{
    /* N = 97, GB = 12: 9 steps, the last has 1 row, so ranks 1.. get none */
    struct fspec s = fdefault(97, 3, 0);
    char *p = make_file("union.h5", &s);
    struct fspec t = fdefault(61, 2, 3);
    char *q = make_file("union_t.h5", &t);
    for (int mem = 0; mem < 2; mem++)
        for (int sh = 0; sh < 2; sh++) {
            enum rt_shuffle m = sh ? RT_SHUFFLE_OFF : RT_SHUFFLE_GLOBAL;
            check_union(p, m, 12, mem ? 100.0 : 0.0, 1);
            check_union(q, m, 12, mem ? 100.0 : 0.0, 0);
        }
    unlink(p);
    unlink(q);
    free(p);
    free(q);
}
END_TEST

START_TEST(next_off_is_file_order)
{
    struct fspec s = fdefault(23, 3, 0);
    char *p = make_file("off.h5", &s);
    struct rt_data_opts o = opts(1, 2, RT_SHUFFLE_OFF, 6, 0.0);
    struct rt_dataset *d = open_ok(p, &o);
    struct rec r;
    record(d, 0, 0, 6, &r);
    ck_assert_int_eq(r.steps, 4);
    for (int64_t k = 0; k < r.steps; k++)
        for (int i = 0; i < r.lr[k]; i++) {
            int64_t id = k * 6 + 1 + 2 * i;
            ck_assert_int_eq(rec_id(&r, k, i), id);
            int32_t lab;
            memcpy(&lab, r.y + ((size_t)k * 6 + i) * 4, 4);
            ck_assert_int_eq(lab, id % 10);
        }
    ck_assert_int_eq(r.lr[3], 2); /* rows 19, 21 of the tail 18..22 */
    ck_assert_int_eq(r.gr[3], 5);
    rec_free(&r);
    rt_dataset_close(d);
    unlink(p);
    free(p);
}
END_TEST

START_TEST(next_shard_covers_once)
{
    struct fspec s = fdefault(97, 3, 0);
    char *p = make_file("shard.h5", &s);
    for (int mem = 0; mem < 2; mem++)
        for (int world = 1; world <= 4; world++) {
            int64_t gb = 4 * world; /* lb = 4 */
            int *seen = calloc(97, sizeof(int));
            struct rec r[4];
            for (int q = 0; q < world; q++) {
                struct rt_data_opts o = opts(q, world, RT_SHUFFLE_SHARD, gb, mem ? 100.0 : 0.0);
                struct rt_dataset *d = open_ok(p, &o);
                ck_assert_int_eq(rt_dataset_info(d)->in_memory, mem);
                record(d, 5, 0, 4, &r[q]);
                rt_dataset_close(d);
                for (int64_t k = 0; k < r[q].steps; k++)
                    for (int i = 0; i < r[q].lr[k]; i++) {
                        int64_t id = rec_id(&r[q], k, i);
                        ck_assert_int_eq(id % world, q);
                        seen[id]++;
                    }
            }
            for (int i = 0; i < 97; i++)
                ck_assert_msg(seen[i] == 1, "world %d: row %d seen %d times", world, i, seen[i]);
            for (int64_t k = 0; k < r[0].steps; k++) {
                int64_t total = 0;
                for (int q = 0; q < world; q++) {
                    ck_assert_int_eq(r[q].steps, r[0].steps);
                    ck_assert_int_eq(r[q].gr[k], r[0].gr[k]);
                    total += r[q].lr[k];
                }
                ck_assert_int_eq(total, r[0].gr[k]);
            }
            for (int q = 0; q < world; q++)
                rec_free(&r[q]);
            free(seen);
        }
    unlink(p);
    free(p);
}
END_TEST

START_TEST(next_memory_equals_streaming)
{
    struct fspec s = fdefault(53, 5, 0);
    char *p = make_file("memstream.h5", &s);
    struct fspec t = fdefault(47, 3, 4);
    char *q = make_file("memstream_t.h5", &t);
    const char *srcs[] = {p, q, "synth:bigmodel"};
    for (int f = 0; f < 3; f++)
        for (int sh = 0; sh < 3; sh++)
            for (int world = 1; world <= 3; world++)
                for (int rank = 0; rank < world; rank++) {
                    int64_t gb = 6;
                    struct rt_data_opts om = opts(rank, world, (enum rt_shuffle)sh, gb, 1000.0);
                    struct rt_data_opts os = opts(rank, world, (enum rt_shuffle)sh, gb, 0.0);
                    struct rt_dataset *dm = open_ok(srcs[f], &om), *ds = open_ok(srcs[f], &os);
                    ck_assert(rt_dataset_info(dm)->in_memory);
                    ck_assert(!rt_dataset_info(ds)->in_memory);
                    for (int e = 0; e < 2; e++) {
                        struct rec a, b;
                        record(dm, e, 0, (int)gb, &a);
                        record(ds, e, 0, (int)gb, &b);
                        ck_assert_msg(rec_equal(&a, &b, 0), "%s shuffle %d world %d rank %d",
                                      srcs[f], sh, world, rank);
                        rec_free(&a);
                        rec_free(&b);
                    }
                    rt_dataset_close(dm);
                    rt_dataset_close(ds);
                }
    /* batches large enough for the selection to be built from merged halves */
    struct fspec u = fdefault(700, 3, 0);
    char *r = make_file("memstream_big.h5", &u);
    for (int world = 1; world <= 2; world++) {
        struct rt_data_opts om = opts(world - 1, world, RT_SHUFFLE_GLOBAL, 256, 1000.0);
        struct rt_data_opts os = opts(world - 1, world, RT_SHUFFLE_GLOBAL, 256, 0.0);
        struct rt_dataset *dm = open_ok(r, &om), *ds = open_ok(r, &os);
        struct rec a, b;
        record(dm, 1, 0, 256, &a);
        record(ds, 1, 0, 256, &b);
        ck_assert(rec_equal(&a, &b, 0));
        rec_free(&a);
        rec_free(&b);
        rt_dataset_close(dm);
        rt_dataset_close(ds);
    }
    unlink(r);
    free(r);
    unlink(p);
    unlink(q);
    free(p);
    free(q);
}
END_TEST

START_TEST(next_before_begin_fails)
{
    struct fspec s = fdefault(10, 2, 0);
    char *p = make_file("nobegin.h5", &s);
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_GLOBAL, 4, 0.0);
    struct rt_dataset *d = open_ok(p, &o);
    struct rt_batch b;
    ck_assert_int_eq(rt_dataset_next(d, &b), RT_ERR_INVAL);
    rt_dataset_close(d);
    unlink(p);
    free(p);
}
END_TEST

/* ---- rt_dataset_begin_epoch ------------------------------------------------------------- */

START_TEST(begin_epoch_orders)
{
    struct fspec s = fdefault(64, 2, 0);
    char *p = make_file("epochs.h5", &s);
    for (int sh = 0; sh < 2; sh++) {
        enum rt_shuffle m = sh ? RT_SHUFFLE_SHARD : RT_SHUFFLE_GLOBAL;
        struct rt_data_opts o = opts(1, 2, m, 8, 0.0);
        struct rt_dataset *d = open_ok(p, &o), *d2 = open_ok(p, &o);
        o.seed = 99;
        struct rt_dataset *d3 = open_ok(p, &o);
        struct rec e0, e1, e0b, e0c;
        record(d, 0, 0, 8, &e0);
        record(d, 1, 0, 8, &e1);
        record(d2, 0, 0, 8, &e0b);
        record(d3, 0, 0, 8, &e0c);
        ck_assert_msg(!rec_equal(&e0, &e1, 0), "epochs 0 and 1 share an order");
        ck_assert_msg(rec_equal(&e0, &e0b, 0), "same seed, different order");
        ck_assert_msg(!rec_equal(&e0, &e0c, 0), "different seeds, same order");
        /* a shuffled order is not the file order */
        int sorted = 1;
        for (int i = 1; i < e0.lr[0]; i++)
            sorted &= rec_id(&e0, 0, i) > rec_id(&e0, 0, i - 1);
        ck_assert(!sorted);
        rec_free(&e0);
        rec_free(&e1);
        rec_free(&e0b);
        rec_free(&e0c);
        rt_dataset_close(d);
        rt_dataset_close(d2);
        rt_dataset_close(d3);
    }
    unlink(p);
    free(p);
}
END_TEST

START_TEST(begin_epoch_first_step_skips)
{
    struct fspec s = fdefault(70, 3, 0);
    char *p = make_file("skip.h5", &s);
    for (int mem = 0; mem < 2; mem++)
        for (int sh = 0; sh < 3; sh++) {
            struct rt_data_opts o = opts(2, 3, (enum rt_shuffle)sh, 9, mem ? 100.0 : 0.0);
            struct rt_dataset *d = open_ok(p, &o);
            struct rec full, part;
            record(d, 4, 0, 9, &full);
            /* abandon an epoch half way (prefetch in flight), then resume at step 3 */
            struct rt_batch b;
            ck_assert_int_eq(rt_dataset_begin_epoch(d, 7, 0), RT_OK);
            ck_assert_int_eq(rt_dataset_next(d, &b), RT_OK);
            record(d, 4, 3, 9, &part);
            ck_assert(rec_equal(&full, &part, 3));
            rec_free(&full);
            rec_free(&part);
            /* first_step == steps: an empty remainder */
            ck_assert_int_eq(rt_dataset_begin_epoch(d, 4, rt_dataset_steps_per_epoch(d)), RT_OK);
            ck_assert_int_eq(rt_dataset_next(d, &b), RT_ERR_INVAL);
            ck_assert_int_eq(rt_dataset_begin_epoch(d, 4, rt_dataset_steps_per_epoch(d) + 1),
                             RT_ERR_INVAL);
            ck_assert_int_eq(rt_dataset_begin_epoch(d, -1, 0), RT_ERR_INVAL);
            rt_dataset_close(d);
        }
    unlink(p);
    free(p);
}
END_TEST

/* ---- rt_dataset_validate ---------------------------------------------------------------- */

/* Validates `p` on every rank of `world`; returns the failing ranks as a bit set and checks
 * the message of the failing rank. */
static unsigned validate_ranks(const char *p, int world, double mb, enum rt_shuffle sh, int in,
                               int out, enum rt_loss loss, int code, const char *needle)
{
    unsigned failed = 0;
    for (int q = 0; q < world; q++) {
        struct rt_data_opts o = opts(q, world, sh, world, mb);
        struct rt_dataset *d = open_ok(p, &o);
        rt_error_clear();
        int st = rt_dataset_validate(d, in, out, loss);
        if (st != RT_OK) {
            const char *msg = rt_error_message(st);
            failed |= 1u << q;
            ck_assert_msg(st == code, "rank %d: got %s (%s)", q, rt_status_name(st), msg);
            ck_assert_msg(strstr(msg, p), "message \"%s\" does not name the file", msg);
            ck_assert_msg(!needle || strstr(msg, needle), "message \"%s\" lacks \"%s\"", msg,
                          needle);
        }
        rt_dataset_close(d);
    }
    return failed;
}

START_TEST(validate_checks)
{
    struct fspec s = fdefault(40, 3, 0);
    char *good = make_file("val_good.h5", &s);
    s.bad_label_row = 17;
    char *badlab = make_file("val_lab.h5", &s);
    s = fdefault(40, 3, 0);
    s.nan_row = 22;
    s.nan_col = 1;
    char *nan = make_file("val_nan.h5", &s);
    s = fdefault(40, 3, 4);
    s.ynan_row = 5;
    char *tgt = make_file("val_tgt.h5", &s);
    s.ynan_row = -1;
    char *tgt_ok = make_file("val_tgt_ok.h5", &s);

    for (int mem = 0; mem < 2; mem++)
        for (int sh = 0; sh < 3; sh++) {
            double mb = mem ? 100.0 : 0.0;
            enum rt_shuffle m = (enum rt_shuffle)sh;
            ck_assert_uint_eq(validate_ranks(good, 2, mb, m, 3, 10, RT_LOSS_CE, 0, NULL), 0);
            /* row 17 belongs to rank 1 of 2 and rank 2 of 3 */
            ck_assert_uint_eq(validate_ranks(badlab, 2, mb, m, 3, 10, RT_LOSS_CE, RT_ERR_SHAPE,
                                             "/y row 17 = 12: expected a class label in [0, 10)"),
                              2u);
            ck_assert_uint_eq(
                validate_ranks(badlab, 3, mb, m, 3, 10, RT_LOSS_CE, RT_ERR_SHAPE, "row 17"), 4u);
            /* 13 classes allow label 12 */
            ck_assert_uint_eq(validate_ranks(badlab, 1, mb, m, 3, 13, RT_LOSS_CE, 0, NULL), 0);
            ck_assert_uint_eq(validate_ranks(nan, 1, mb, m, 3, 10, RT_LOSS_CE, RT_ERR_NONFINITE,
                                             "/X row 22 column 1 = nan"),
                              1u);
            ck_assert_uint_eq(validate_ranks(tgt, 2, mb, m, 3, 4, RT_LOSS_MSE, RT_ERR_NONFINITE,
                                             "/y row 5 column 1 = nan"),
                              2u);
            ck_assert_uint_eq(validate_ranks(tgt_ok, 3, mb, m, 3, 4, RT_LOSS_MSE, 0, NULL), 0);
            /* shapes */
            ck_assert_uint_eq(
                validate_ranks(good, 1, mb, m, 4, 10, RT_LOSS_CE, RT_ERR_SHAPE, "input width is 4"),
                1u);
            ck_assert_uint_eq(
                validate_ranks(good, 1, mb, m, 3, 10, RT_LOSS_MSE, RT_ERR_SHAPE, "mse"), 1u);
            ck_assert_uint_eq(
                validate_ranks(tgt_ok, 1, mb, m, 3, 4, RT_LOSS_CE, RT_ERR_SHAPE, "ce"), 1u);
            ck_assert_uint_eq(
                validate_ranks(tgt_ok, 1, mb, m, 3, 5, RT_LOSS_MSE, RT_ERR_SHAPE, "5 outputs"), 1u);
        }
    /* synth: shapes only */
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_GLOBAL, 4, 0.0);
    struct rt_dataset *d = open_ok("synth:bigmodel", &o);
    ck_assert_int_eq(rt_dataset_validate(d, 1000, 1000, RT_LOSS_MSE), RT_OK);
    ck_assert_int_eq(rt_dataset_validate(d, 1000, 10, RT_LOSS_CE), RT_ERR_SHAPE);
    rt_dataset_close(d);

    const char *all[] = {good, badlab, nan, tgt, tgt_ok};
    for (int i = 0; i < 5; i++) {
        unlink(all[i]);
        free((void *)all[i]);
    }
}
END_TEST

/* ---- synth:bigmodel --------------------------------------------------------------------- */

START_TEST(synth_rows_any_rank)
{
    /* 40 rows, GB = 12: union over ranks == one rank, streaming and in memory */
    check_union("synth:bigmodel", RT_SHUFFLE_GLOBAL, 12, 0.0, 0);
    check_union("synth:bigmodel", RT_SHUFFLE_OFF, 12, 100.0, 0);
}
END_TEST

START_TEST(synth_splits_and_stats)
{
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_OFF, 40, 0.0);
    struct rt_dataset *d0 = open_ok("synth:bigmodel", &o);
    o.split = 1;
    struct rt_dataset *d1 = open_ok("synth:bigmodel", &o);
    o.split = 2;
    open_fails("synth:bigmodel", &o, RT_ERR_INVAL, "split");
    struct rec a, b;
    record(d0, 0, 0, 40, &a);
    record(d1, 0, 0, 40, &b);
    ck_assert_int_eq(a.lr[0], 40);
    for (int i = 0; i < 40; i++)
        for (int j = 0; j < 40; j++)
            ck_assert(memcmp(a.x + i * 1000, b.x + j * 1000, 4000) != 0);
    /* x ~ N(0, 1), y = x T^T with T ~ N(0, 1/1000): both about unit variance */
    double sx = 0, sy = 0;
    const float *y = (const float *)a.y;
    for (int i = 0; i < 40 * 1000; i++) {
        sx += (double)a.x[i] * a.x[i];
        sy += (double)y[i] * y[i];
    }
    ck_assert_msg(fabs(sx / 40000 - 1) < 0.05, "var x = %g", sx / 40000);
    ck_assert_msg(fabs(sy / 40000 - 1) < 0.2, "var y = %g", sy / 40000);
    /* y is linear in x: y(x0 + x1) = y(x0) + y(x1) up to rounding is not checkable without
     * T, but rows with equal x would give equal y; spot-check determinism instead */
    struct rec c;
    record(d0, 1, 0, 40, &c);
    ck_assert(rec_equal(&a, &c, 0));
    rec_free(&a);
    rec_free(&b);
    rec_free(&c);
    rt_dataset_close(d0);
    rt_dataset_close(d1);
}
END_TEST

START_TEST(synth_write_matches_source)
{
    char *p = strdup(scratch_path("synth.h5"));
    ck_assert_int_eq(rt_synth_write(p, "bigmodel", 40, 1234, 1), RT_OK);
    ck_assert_int_ne(access(p, R_OK), -1);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    ck_assert_int_eq(access(tmp, F_OK), -1);
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_GLOBAL, 8, 0.0);
    o.split = 1;
    struct rt_dataset *ds = open_ok("synth:bigmodel", &o);
    o.split = 0; /* the file is split 1 already */
    struct rt_dataset *df = open_ok(p, &o);
    struct rec a, b;
    record(ds, 2, 0, 8, &a);
    record(df, 2, 0, 8, &b);
    ck_assert(rec_equal(&a, &b, 0));
    ck_assert_int_eq(rt_dataset_validate(df, 1000, 1000, RT_LOSS_MSE), RT_OK);
    rec_free(&a);
    rec_free(&b);
    rt_dataset_close(ds);
    rt_dataset_close(df);
    ck_assert_int_eq(rt_synth_write(p, "nosuch", 40, 1, 0), RT_ERR_INVAL);
    ck_assert_int_eq(rt_synth_write(p, "bigmodel", 0, 1, 0), RT_ERR_INVAL);
    unlink(p);
    free(p);
}
END_TEST

/* ---- rt_shuffle_parse ------------------------------------------------------------------- */

START_TEST(shuffle_names)
{
    enum rt_shuffle s;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(rt_shuffle_parse(rt_shuffle_name((enum rt_shuffle)i), &s), 0);
        ck_assert_int_eq(s, i);
    }
    ck_assert_int_eq(rt_shuffle_parse("sideways", &s), -1);
}
END_TEST

static Suite *dataset_suite(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc;
    tc = tcase_create("rt_dataset_open");
    tcase_add_test(tc, open_reports_info);
    tcase_add_test(tc, open_bad_files);
    tcase_add_test(tc, open_converts_types);
    tcase_add_test(tc, open_refuses_values_that_do_not_fit);
    tcase_add_test(tc, open_bad_options);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_dataset_next");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, next_union_global_and_off);
    tcase_add_test(tc, next_off_is_file_order);
    tcase_add_test(tc, next_shard_covers_once);
    tcase_add_test(tc, next_memory_equals_streaming);
    tcase_add_test(tc, next_before_begin_fails);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_dataset_begin_epoch");
    tcase_add_test(tc, begin_epoch_orders);
    tcase_add_test(tc, begin_epoch_first_step_skips);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_dataset_validate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, validate_checks);
    suite_add_tcase(s, tc);
    tc = tcase_create("synth");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, synth_rows_any_rank);
    tcase_add_test(tc, synth_splits_and_stats);
    tcase_add_test(tc, synth_write_matches_source);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_shuffle_parse");
    tcase_add_test(tc, shuffle_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return run_suite(dataset_suite());
}
