/* test_text.c - rt_text_import and the text-bytes source of src/data/dataset.c: the file it
 * writes, the rows of both splits, batches over simulated ranks, validation and the error
 * paths, on small texts written here. */
#include "check_util.h"
#include "data_util.h"
#include "ringtrain/dataset.h"
#include "ringtrain/status.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { NTEXT = 1000, T = 8 };

/* ---- test files ------------------------------------------------------------------------- */

/* Byte i of the test text: printable ASCII with newlines, no period shorter than the text. */
static uint8_t text_byte(int64_t i)
{
    return i % 61 == 60 ? '\n' : (uint8_t)(' ' + (i * 7 + i / 95) % 95);
}

static char *write_bytes(const char *hint, const uint8_t *b, size_t n)
{
    char *path = strdup(scratch_path(hint));
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, n, f), n);
    fclose(f);
    return path;
}

static char *write_text(const char *hint, size_t n)
{
    uint8_t *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        b[i] = text_byte((int64_t)i);
    char *path = write_bytes(hint, b, n);
    free(b);
    return path;
}

/* Imports an NTEXT-byte text with val fraction 0.1: 900 train bytes, 100 val bytes. */
static char *import_ok(const char *hint)
{
    char *in = write_text("in.txt", NTEXT);
    char *out = strdup(scratch_path(hint));
    int st = rt_text_import(in, out, 0.1);
    ck_assert_msg(st == RT_OK, "import: %s", rt_error_message(st));
    unlink(in);
    free(in);
    return out;
}

/* Reads the uint8 dataset name of path into a malloc'd buffer; *n its length. */
static uint8_t *read_split(const char *path, const char *name, size_t *n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    ck_assert(ds >= 0);
    hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
    ck_assert_int_eq(H5Sget_simple_extent_ndims(sp), 1);
    ck_assert(H5Tequal(t, H5T_STD_U8LE) > 0);
    *n = (size_t)H5Sget_simple_extent_npoints(sp);
    uint8_t *b = malloc(*n + 1);
    if (*n) ck_assert(H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) >= 0);
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
    return b;
}

/* An imported text (import_ok) and the bytes of one of its splits, as most tests start. */
struct imported {
    char *path;     /* the text-bytes file, strdup'd */
    uint8_t *bytes; /* (n) the split's bytes, malloc'd */
    size_t n;
};

static struct imported import_split(const char *hint, const char *split)
{
    struct imported t = {.path = import_ok(hint)};
    t.bytes = read_split(t.path, split, &t.n);
    return t;
}

static void imported_free(struct imported *t)
{
    free(t->bytes);
    remove_files(&t->path, 1);
}

static int int_attr(hid_t f, const char *name)
{
    int v = -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    ck_assert(a >= 0);
    ck_assert(H5Aread(a, H5T_NATIVE_INT, &v) >= 0);
    H5Aclose(a);
    return v;
}

static void str_attr(hid_t f, const char *name, char *buf, size_t cap)
{
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    ck_assert(a >= 0);
    hid_t t = H5Aget_type(a);
    ck_assert_int_eq(H5Tget_class(t), H5T_STRING);
    if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        ck_assert(H5Aread(a, t, &s) >= 0);
        snprintf(buf, cap, "%s", s);
        H5free_memory(s);
    } else {
        size_t n = H5Tget_size(t);
        ck_assert_uint_lt(n, cap);
        ck_assert(H5Aread(a, t, buf) >= 0);
        buf[n] = '\0';
    }
    H5Tclose(t);
    H5Aclose(a);
}

/* A text-bytes file written with HDF5 directly: format as given, format_version, 64 bytes of
 * /train and /val. */
static char *write_h5_text(const char *hint, const char *format, int version)
{
    char *path = strdup(scratch_path(hint));
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t st = H5Tcopy(H5T_C_S1), sc = H5Screate(H5S_SCALAR);
    H5Tset_size(st, strlen(format) + 1);
    hid_t a = H5Acreate2(f, "format", st, sc, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0 && H5Awrite(a, st, format) >= 0);
    H5Aclose(a);
    a = H5Acreate2(f, "format_version", H5T_STD_I32LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_INT, &version) >= 0);
    H5Aclose(a);
    uint8_t b[64];
    for (int i = 0; i < 64; i++)
        b[i] = text_byte(i);
    hsize_t n = 64;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    for (int k = 0; k < 2; k++) {
        hid_t ds = H5Dcreate2(f, k ? "val" : "train", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT);
        ck_assert(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) >= 0);
        H5Dclose(ds);
    }
    H5Sclose(sp);
    H5Sclose(sc);
    H5Tclose(st);
    H5Fclose(f);
    return path;
}

static struct rt_data_opts opts(int rank, int world, enum rt_shuffle sh, int64_t gb, int split,
                                int context)
{
    struct rt_data_opts o;
    memset(&o, 0, sizeof o);
    o.rank = rank;
    o.world = world;
    o.shuffle = sh;
    o.seed = 1234;
    o.global_batch = gb;
    o.memory_mb = 0.0; /* text is held whatever memory_mb says */
    o.split = split;
    o.context = context;
    return o;
}

static void import_fails(const char *in, double val, int code, const char *needle)
{
    rt_error_clear();
    const char *out = scratch_path("out.h5");
    expect_error(rt_text_import(in, out, val), code, in, needle);
    ck_assert_int_ne(access(out, F_OK), 0);
}

/* Every row of the batch is the window its id names: x = bytes[s .. s+T), y shifted by one. */
static void check_batch_rows(const struct rt_batch *b, const uint8_t *bytes, int64_t stride)
{
    const int32_t *y = b->y;
    for (int i = 0; i < b->local_rows; i++) {
        int64_t s = b->ids[i] * stride;
        for (int p = 0; p < T; p++) {
            ck_assert_float_eq(b->x[(size_t)i * T + p], (float)bytes[s + p]);
            ck_assert_int_eq(y[(size_t)i * T + p], bytes[s + p + 1]);
        }
    }
}

/* Runs epoch 0 of d in file order (shuffle = off): ids 0, 1, 2, ..., every row the window
 * its id names. Returns the rows seen. */
static int64_t walk_epoch(struct rt_dataset *d, const uint8_t *bytes, int64_t stride)
{
    ck_assert_int_eq(rt_dataset_begin_epoch(d, 0, 0), RT_OK);
    int64_t rows = 0;
    for (int64_t k = 0; k < rt_dataset_steps_per_epoch(d); k++) {
        struct rt_batch b;
        ck_assert_int_eq(rt_dataset_next(d, &b), RT_OK);
        for (int i = 0; i < b.local_rows; i++)
            ck_assert_int_eq(b.ids[i], rows++);
        check_batch_rows(&b, bytes, stride);
    }
    return rows;
}

/* ---- rt_text_import --------------------------------------------------------------------- */

START_TEST(import_writes_splits)
{
    char *out = import_ok("text.h5");
    size_t nt, nv;
    uint8_t *tr = read_split(out, "train", &nt), *va = read_split(out, "val", &nv);
    ck_assert_uint_eq(nt, 900);
    ck_assert_uint_eq(nv, 100);
    for (size_t i = 0; i < nt; i++)
        ck_assert_uint_eq(tr[i], text_byte((int64_t)i));
    for (size_t i = 0; i < nv; i++)
        ck_assert_uint_eq(va[i], text_byte((int64_t)(nt + i)));
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    char fmt[64];
    str_attr(f, "format", fmt, sizeof fmt);
    ck_assert_str_eq(fmt, "text-bytes");
    ck_assert_int_eq(int_attr(f, "format_version"), 1);
    ck_assert_int_eq(int_attr(f, "vocab_size"), 256);
    H5Fclose(f);
    free(tr);
    free(va);
    unlink(out);
    free(out);
}
END_TEST

START_TEST(import_split_sizes)
{
    /* floor(val * n) bytes of val: 0.25 of 999 is 249.75 -> 249; 0 leaves val empty */
    struct {
        size_t n;
        double val;
        size_t n_val;
    } c[] = {{999, 0.25, 249}, {1000, 0.0, 0}, {10, 0.5, 5}, {3, 0.0, 0}};
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        char *in = write_text("in.txt", c[k].n);
        char *out = strdup(scratch_path("sizes.h5"));
        int st = rt_text_import(in, out, c[k].val);
        ck_assert_msg(st == RT_OK, "case %zu: %s", k, rt_error_message(st));
        size_t nt, nv;
        free(read_split(out, "train", &nt));
        free(read_split(out, "val", &nv));
        ck_assert_uint_eq(nv, c[k].n_val);
        ck_assert_uint_eq(nt, c[k].n - c[k].n_val);
        unlink(in);
        unlink(out);
        free(in);
        free(out);
    }
}
END_TEST

START_TEST(import_errors)
{
    char *empty = write_bytes("empty.txt", (const uint8_t *)"", 0);
    import_fails(empty, 0.1, RT_ERR_FORMAT, "empty.txt: empty file: expected text");

    uint8_t b[400];
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = text_byte((int64_t)i);
    b[17] = 0;
    char *nul = write_bytes("nul.txt", b, sizeof b);
    import_fails(nul, 0.1, RT_ERR_FORMAT,
                 "nul.txt: looks binary (1 NUL/control bytes of 400): expected text");

    /* 4 control bytes in 400 are 1%: still text; 5 are not */
    b[17] = '\t';
    b[20] = b[40] = b[60] = b[80] = 0x01;
    char *few = write_bytes("few.txt", b, sizeof b);
    ck_assert_int_eq(rt_text_import(few, scratch_path("few.h5"), 0.1), RT_OK);
    b[100] = 0x1b;
    char *ctl = write_bytes("ctl.txt", b, sizeof b);
    import_fails(ctl, 0.1, RT_ERR_FORMAT, "looks binary (5 NUL/control bytes of 400)");

    char *good = write_text("good.txt", 100);
    import_fails(good, -0.1, RT_ERR_INVAL, "expected 0 to 0.5");
    import_fails(good, 0.6, RT_ERR_INVAL, "expected 0 to 0.5");
    import_fails(good, NAN, RT_ERR_INVAL, "expected 0 to 0.5");
    import_fails("/nonexistent/in.txt", 0.1, RT_ERR_IO, "No such file or directory");

    /* a split of one byte holds no sample */
    char *one = write_text("one.txt", 1);
    import_fails(one, 0.0, RT_ERR_SHAPE, "train split 1");
    char *small = write_text("small.txt", 15);
    import_fails(small, 0.1, RT_ERR_SHAPE, "val split 1");

    char *files[] = {empty, nul, few, ctl, good, one, small};
    remove_files(files, sizeof files / sizeof files[0]);
}
END_TEST

/* ---- the text source -------------------------------------------------------------------- */

START_TEST(open_train_rows_are_windows)
{
    struct imported t = import_split("train.h5", "train");
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_OFF, 64, 0, T);
    struct rt_dataset *d = open_ok(t.path, &o);
    const struct rt_dataset_info *in = rt_dataset_info(d);
    ck_assert_int_eq(in->rows, (int64_t)t.n - T);
    ck_assert_int_eq(in->dim, T);
    ck_assert_int_eq(in->shape.rank, 1);
    ck_assert_int_eq(in->shape.d[0], T);
    ck_assert_int_eq(in->labels, RT_LABELS_CLASS);
    ck_assert_int_eq(in->positions, T);
    ck_assert_int_eq(in->vocab, 256);
    ck_assert(in->in_memory);
    ck_assert_int_eq(rt_dataset_sample_shape(d).d[0], T);
    ck_assert_int_eq(rt_dataset_validate(d, T, 256, RT_LOSS_CE), RT_OK);
    ck_assert_int_eq(walk_epoch(d, t.bytes, 1), (int64_t)t.n - T); /* a window at every byte */
    rt_dataset_close(d);
    imported_free(&t);
}
END_TEST

START_TEST(open_val_rows_do_not_overlap)
{
    struct imported t = import_split("val.h5", "val");
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_OFF, 4, 1, T);
    struct rt_dataset *d = open_ok(t.path, &o);
    ck_assert_int_eq(rt_dataset_info(d)->rows, ((int64_t)t.n - 1) / T); /* 99 / 8 = 12 */
    ck_assert_int_eq(walk_epoch(d, t.bytes, T), 12);
    rt_dataset_close(d);
    imported_free(&t);
}
END_TEST

/* Step k of rank r holds positions r, r + world, ... of step k of the one-rank run: the same
 * ids and the same rows, for global and off. */
START_TEST(next_two_ranks_union_one_rank)
{
    struct imported t = import_split("union.h5", "train");
    enum rt_shuffle modes[] = {RT_SHUFFLE_GLOBAL, RT_SHUFFLE_OFF};
    for (int m = 0; m < 2; m++) {
        struct rt_data_opts o1 = opts(0, 1, modes[m], 16, 0, T);
        struct rt_data_opts o0 = opts(0, 2, modes[m], 16, 0, T),
                            oo = opts(1, 2, modes[m], 16, 0, T);
        struct rt_dataset *one = open_ok(t.path, &o1),
                          *r[2] = {open_ok(t.path, &o0), open_ok(t.path, &oo)};
        ck_assert_int_eq(rt_dataset_steps_per_epoch(one), rt_dataset_steps_per_epoch(r[0]));
        for (int64_t epoch = 0; epoch < 2; epoch++) {
            ck_assert_int_eq(rt_dataset_begin_epoch(one, epoch, 0), RT_OK);
            for (int q = 0; q < 2; q++)
                ck_assert_int_eq(rt_dataset_begin_epoch(r[q], epoch, 0), RT_OK);
            for (int64_t k = 0; k < rt_dataset_steps_per_epoch(one); k++) {
                struct rt_batch b1, b[2];
                ck_assert_int_eq(rt_dataset_next(one, &b1), RT_OK);
                for (int q = 0; q < 2; q++) {
                    ck_assert_int_eq(rt_dataset_next(r[q], &b[q]), RT_OK);
                    ck_assert_int_eq(b[q].global_rows, b1.global_rows);
                    check_batch_rows(&b[q], t.bytes, 1);
                }
                ck_assert_int_eq(b[0].local_rows + b[1].local_rows, b1.local_rows);
                const int32_t *y1 = b1.y;
                for (int p = 0; p < b1.local_rows; p++) {
                    const struct rt_batch *bq = &b[p % 2];
                    const int32_t *yq = bq->y;
                    int i = p / 2;
                    ck_assert_int_eq(bq->ids[i], b1.ids[p]);
                    ck_assert_mem_eq(bq->x + (size_t)i * T, b1.x + (size_t)p * T,
                                     sizeof(float) * T);
                    ck_assert_mem_eq(yq + (size_t)i * T, y1 + (size_t)p * T, sizeof(int32_t) * T);
                }
            }
        }
        rt_dataset_close(one);
        rt_dataset_close(r[0]);
        rt_dataset_close(r[1]);
    }
    imported_free(&t);
}
END_TEST

/* shard: each rank's rows r, r + world, ...; together every window once per epoch. */
START_TEST(next_shard_covers_once)
{
    struct imported t = import_split("shard.h5", "train");
    int64_t rows = (int64_t)t.n - T;
    char *seen = calloc((size_t)rows, 1);
    for (int q = 0; q < 3; q++) {
        struct rt_data_opts o = opts(q, 3, RT_SHUFFLE_SHARD, 24, 0, T);
        struct rt_dataset *d = open_ok(t.path, &o);
        ck_assert_int_eq(rt_dataset_begin_epoch(d, 1, 0), RT_OK);
        for (int64_t k = 0; k < rt_dataset_steps_per_epoch(d); k++) {
            struct rt_batch b;
            ck_assert_int_eq(rt_dataset_next(d, &b), RT_OK);
            check_batch_rows(&b, t.bytes, 1);
            for (int i = 0; i < b.local_rows; i++) {
                ck_assert_int_eq(b.ids[i] % 3, q);
                ck_assert_int_eq(seen[b.ids[i]]++, 0);
            }
        }
        rt_dataset_close(d);
    }
    for (int64_t i = 0; i < rows; i++)
        ck_assert_int_eq(seen[i], 1);
    free(seen);
    imported_free(&t);
}
END_TEST

START_TEST(validate_checks_the_model)
{
    char *path = import_ok("validate.h5");
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_GLOBAL, 8, 0, T);
    struct rt_dataset *d = open_ok(path, &o);
    ck_assert_int_eq(rt_dataset_validate(d, T, 300, RT_LOSS_CE), RT_OK);
    rt_error_clear();
    expect_error(rt_dataset_validate(d, 16, 256, RT_LOSS_CE), RT_ERR_SHAPE, path,
                 "samples are 8 tokens (model.context) but the model takes 16");
    rt_error_clear();
    expect_error(rt_dataset_validate(d, T, 255, RT_LOSS_CE), RT_ERR_SHAPE, path,
                 "the model predicts 255 classes but the text has 256 byte values");
    rt_error_clear();
    expect_error(rt_dataset_validate(d, T, 256, RT_LOSS_MSE), RT_ERR_SHAPE, path, "loss = ce");
    rt_dataset_close(d);
    remove_files(&path, 1);
}
END_TEST

START_TEST(open_errors)
{
    char *path = import_ok("errors.h5");
    /* 100 val bytes hold 99 / T windows; 900 train bytes none of 900 tokens */
    struct rt_data_opts o = opts(0, 1, RT_SHUFFLE_GLOBAL, 8, 0, 900);
    open_fails(path, &o, RT_ERR_SHAPE,
               "the train split has 900 bytes: model.context = 900 needs at least 901");
    o = opts(0, 1, RT_SHUFFLE_OFF, 8, 1, 100);
    open_fails(path, &o, RT_ERR_SHAPE,
               "the val split has 100 bytes: model.context = 100 needs at least 101");
    o = opts(0, 1, RT_SHUFFLE_GLOBAL, 8, 0, 0);
    open_fails(path, &o, RT_ERR_INVAL, "model.context = 0");
    o = opts(0, 1, RT_SHUFFLE_GLOBAL, 8, 2, T);
    open_fails(path, &o, RT_ERR_INVAL, "split = 2");
    /* T = 99: the val split holds exactly one window, too few for two ranks */
    o = opts(0, 2, RT_SHUFFLE_OFF, 2, 1, 99);
    open_fails(path, &o, RT_ERR_SHAPE, "1 rows for 2 ranks");

    char *future = write_h5_text("future.h5", "text-bytes", 2);
    o = opts(0, 1, RT_SHUFFLE_GLOBAL, 8, 0, T);
    open_fails(future, &o, RT_ERR_FORMAT,
               "text format_version 2 is newer than this ringtrain reads (1)");
    struct rt_shape sh;
    rt_error_clear();
    expect_error(rt_dataset_peek_shape(future, NULL, &sh), RT_ERR_FORMAT, future,
                 "format_version 2");

    /* a fixed-length format string, version 1, written by someone else: reads */
    char *v1 = write_h5_text("v1.h5", "text-bytes", 1);
    struct rt_dataset *d = open_ok(v1, &o);
    ck_assert_int_eq(rt_dataset_info(d)->rows, 64 - T);
    rt_dataset_close(d);

    /* another format stays a /X, /y file */
    char *other = write_h5_text("other.h5", "something-else", 1);
    open_fails(other, &o, RT_ERR_FORMAT, "[data] x = 'X': no such dataset");

    char *files[] = {path, future, v1, other};
    remove_files(files, sizeof files / sizeof files[0]);
}
END_TEST

START_TEST(peek_shape_leaves_context_to_the_job)
{
    char *path = import_ok("peek.h5");
    struct rt_shape sh = {.rank = 3, .d = {1, 2, 3}};
    ck_assert_int_eq(rt_dataset_peek_shape(path, NULL, &sh), RT_OK);
    ck_assert_int_eq(sh.rank, 1);
    ck_assert_int_eq(sh.d[0], 0);
    remove_files(&path, 1);
}
END_TEST

static Suite *text_suite(void)
{
    Suite *s = suite_create("text");
    TCase *tc = tcase_create("rt_text_import");
    tcase_add_test(tc, import_writes_splits);
    tcase_add_test(tc, import_split_sizes);
    tcase_add_test(tc, import_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_dataset_open");
    tcase_add_test(tc, open_train_rows_are_windows);
    tcase_add_test(tc, open_val_rows_do_not_overlap);
    tcase_add_test(tc, open_errors);
    tcase_add_test(tc, peek_shape_leaves_context_to_the_job);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_dataset_next");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, next_two_ranks_union_one_rank);
    tcase_add_test(tc, next_shard_covers_once);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_dataset_validate");
    tcase_add_test(tc, validate_checks_the_model);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(text_suite());
}
