/* test_idx.c - rt_idx_import on small IDX files written here (gzip and plain). */
#include "check_util.h"
#include "ringtrain/dataset.h"
#include "ringtrain/status.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

enum { N = 37, ROWS = 5, COLS = 4 };

static unsigned char pixel(int i, int p)
{
    return (unsigned char)((i * 31 + p * 7) % 256);
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes an IDX file of `len` bytes, gzip-compressed when gz. */
static char *write_file(const char *hint, const unsigned char *buf, size_t len, int gz)
{
    char *path = strdup(scratch_path(hint));
    if (gz) {
        gzFile g = gzopen(path, "wb");
        ck_assert_ptr_nonnull(g);
        ck_assert_int_eq(gzwrite(g, buf, (unsigned)len), (int)len);
        ck_assert_int_eq(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
        fclose(f);
    }
    return path;
}

/* images: magic, n, rows, cols, pixels; labels: magic, n, labels. n_img/n_lab may differ. */
static char *write_images(const char *hint, uint32_t magic, int n, int gz, size_t cut)
{
    size_t len = 16 + (size_t)n * ROWS * COLS;
    unsigned char *b = malloc(len);
    be32(b, magic);
    be32(b + 4, (uint32_t)n);
    be32(b + 8, ROWS);
    be32(b + 12, COLS);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < ROWS * COLS; p++)
            b[16 + (size_t)i * ROWS * COLS + p] = pixel(i, p);
    char *path = write_file(hint, b, len - cut, gz);
    free(b);
    return path;
}

static char *write_labels(const char *hint, uint32_t magic, int n, int gz)
{
    unsigned char *b = malloc(8 + (size_t)n);
    be32(b, magic);
    be32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++)
        b[8 + i] = (unsigned char)(i % 10);
    char *path = write_file(hint, b, 8 + (size_t)n, gz);
    free(b);
    return path;
}

static void check_import(int gz)
{
    char *img = write_images(gz ? "img.gz" : "img.idx", 0x803, N, gz, 0);
    char *lab = write_labels(gz ? "lab.gz" : "lab.idx", 0x801, N, gz);
    char *out = strdup(scratch_path("mnist.h5"));
    int st = rt_idx_import(img, lab, out);
    ck_assert_msg(st == RT_OK, "import: %s", rt_error_message(st));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    ck_assert_int_eq(access(tmp, F_OK), -1);

    /* raw HDF5 view: exact dtypes and values */
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t dx = H5Dopen2(f, "X", H5P_DEFAULT), dy = H5Dopen2(f, "y", H5P_DEFAULT);
    ck_assert(dx >= 0 && dy >= 0);
    hid_t tx = H5Dget_type(dx), ty = H5Dget_type(dy);
    ck_assert(H5Tequal(tx, H5T_IEEE_F32LE) > 0);
    ck_assert(H5Tequal(ty, H5T_STD_I32LE) > 0);
    hid_t sx = H5Dget_space(dx);
    hsize_t dims[2];
    ck_assert_int_eq(H5Sget_simple_extent_dims(sx, dims, NULL), 2);
    ck_assert_uint_eq(dims[0], N);
    ck_assert_uint_eq(dims[1], ROWS * COLS);
    float *x = malloc(sizeof(float) * N * ROWS * COLS);
    int32_t y[N];
    ck_assert(H5Dread(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    ck_assert(H5Dread(dy, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(y[i], i % 10);
        for (int p = 0; p < ROWS * COLS; p++)
            ck_assert(x[i * ROWS * COLS + p] == (float)pixel(i, p) / 255.0f);
    }
    free(x);
    H5Sclose(sx);
    H5Tclose(tx);
    H5Tclose(ty);
    H5Dclose(dx);
    H5Dclose(dy);
    H5Fclose(f);

    /* and it is a valid dataset for a 10-class model */
    struct rt_data_opts o = {0, 1, RT_SHUFFLE_OFF, 1, 8, 0.0, 0, 0, NULL, NULL, 0};
    struct rt_dataset *d;
    ck_assert_int_eq(rt_dataset_open(&d, out, &o), RT_OK);
    ck_assert_int_eq(rt_dataset_validate(d, ROWS * COLS, 10, RT_LOSS_CE), RT_OK);
    rt_dataset_close(d);
    unlink(img);
    unlink(lab);
    unlink(out);
    free(img);
    free(lab);
    free(out);
}

START_TEST(import_gzip)
{
    check_import(1);
}
END_TEST

START_TEST(import_plain)
{
    check_import(0);
}
END_TEST

static void import_fails(const char *img, const char *lab, int code, const char *name,
                         const char *needle)
{
    char *out = strdup(scratch_path("bad.h5"));
    rt_error_clear();
    int st = rt_idx_import(img, lab, out);
    const char *msg = rt_error_message(st);
    ck_assert_msg(st == code, "got %s (%s), expected %s", rt_status_name(st), msg,
                  rt_status_name(code));
    ck_assert_msg(strstr(msg, name), "message \"%s\" does not name %s", msg, name);
    ck_assert_msg(strstr(msg, needle), "message \"%s\" lacks \"%s\"", msg, needle);
    ck_assert_int_eq(access(out, F_OK), -1); /* nothing written */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    ck_assert_int_eq(access(tmp, F_OK), -1);
    free(out);
}

START_TEST(import_rejects_bad_input)
{
    char *img = write_images("img.gz", 0x803, N, 1, 0);
    char *lab = write_labels("lab.gz", 0x801, N, 1);
    char *img_magic = write_images("img_magic.gz", 0x801, N, 1, 0);
    char *lab_magic = write_labels("lab_magic.gz", 0x803, N, 1);
    char *lab_short = write_labels("lab_short.gz", 0x801, N - 1, 1);
    char *img_cut = write_images("img_cut.idx", 0x803, N, 0, 7);
    char *missing = strdup(scratch_path("missing.gz"));

    import_fails(img_magic, lab, RT_ERR_FORMAT, img_magic, "magic 0x00000801");
    import_fails(img, lab_magic, RT_ERR_FORMAT, lab_magic, "magic 0x00000803");
    import_fails(img, lab_short, RT_ERR_FORMAT, lab_short, "36 labels");
    import_fails(img_cut, lab, RT_ERR_FORMAT, img_cut, "truncated");
    import_fails(missing, lab, RT_ERR_IO, missing, "No such file");
    import_fails(img, missing, RT_ERR_IO, missing, "No such file");
    /* an unwritable output directory */
    rt_error_clear();
    ck_assert_int_eq(rt_idx_import(img, lab, "/nonexistent-dir/x.h5"), RT_ERR_IO);
    ck_assert(strstr(rt_error_message(RT_ERR_IO), "/nonexistent-dir/x.h5"));

    char *all[] = {img, lab, img_magic, lab_magic, lab_short, img_cut, missing};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        unlink(all[i]);
        free(all[i]);
    }
}
END_TEST

static Suite *idx_suite(void)
{
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("rt_idx_import");
    tcase_add_test(tc, import_gzip);
    tcase_add_test(tc, import_plain);
    tcase_add_test(tc, import_rejects_bad_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return run_suite(idx_suite());
}
