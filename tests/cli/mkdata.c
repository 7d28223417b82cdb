/* mkdata.c - writes small dataset files, good and deliberately broken, for the
 * command-line tests. Not part of ringtrain: it writes HDF5 directly so that it can make
 * files ringtrain would never write.
 *
 *   mkdata OUT KIND [ROWS [DIM [CLASSES]]]
 * KIND: blobs (classification: CLASSES Gaussian blobs in DIM dimensions, int32 labels),
 *       regress (float targets, K = CLASSES), nan, inf, label-range, no-x, no-y, x-1d,
 *       x-f64, y-rows, text (not HDF5), truncated (an HDF5 file cut in half),
 *       x-f64-big (float64 inputs, row 3 column 1 = 1e300), y-i64-big (int64 labels, row 5 =
 *       2^40), y-u8-range (uint8 labels, row 5 = 200), x-string (inputs stored as strings),
 *       images (blobs with /X written (N, 1, H, W), DIM = H W, H = W). */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t state = 88172645463325252ULL;
static double uniform(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) * 0x1.0p-53;
}
static double normal(void)
{
    return sqrt(-2 * log(1 - uniform())) * cos(2 * M_PI * uniform());
}

static void write_dataset(hid_t f, const char *name, hid_t type, int rank, hsize_t d0, hsize_t d1,
                          const void *data)
{
    hsize_t dims[2] = {d0, d1};
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        fprintf(stderr, "mkdata: cannot write %s\n", name);
        exit(1);
    }
    H5Dclose(ds);
    H5Sclose(space);
}

/* Labels (rows) stored as `type`, converted by HDF5 from v. */
static void write_converted(hid_t f, const char *name, hid_t type, long rows, const long long *v)
{
    hsize_t n = (hsize_t)rows;
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        fprintf(stderr, "mkdata: cannot write %s\n", name);
        exit(1);
    }
    H5Dclose(ds);
    H5Sclose(space);
}

/* /X as fixed-length strings: not numbers. */
static void write_strings(hid_t f, const char *name, long rows)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 8);
    char *buf = calloc((size_t)(rows ? rows : 1), 8);
    for (long i = 0; i < rows; i++)
        snprintf(buf + 8 * i, 8, "%ld", i % 1000000);
    write_dataset(f, name, t, 1, (hsize_t)rows, 0, buf);
    free(buf);
    H5Tclose(t);
}

/* /X (rows, 1, side, side) float32 from the flat rows x (rows, dim = side^2). */
static void write_images(hid_t f, long rows, long dim, const float *x)
{
    long side = lround(sqrt((double)dim));
    hsize_t dims[4] = {(hsize_t)rows, 1, (hsize_t)side, (hsize_t)side};
    hid_t space = H5Screate_simple(4, dims, NULL);
    hid_t ds = H5Dcreate2(f, "X", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (side * side != dim || ds < 0 ||
        H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
        fprintf(stderr, "mkdata: cannot write images (DIM must be a square)\n");
        exit(1);
    }
    H5Dclose(ds);
    H5Sclose(space);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: mkdata OUT KIND [ROWS [DIM [CLASSES]]]\n");
        return 2;
    }
    const char *out = argv[1], *kind = argv[2];
    long rows = argc > 3 ? atol(argv[3]) : 512, dim = argc > 4 ? atol(argv[4]) : 16;
    long classes = argc > 5 ? atol(argv[5]) : 4;
    if (strcmp(kind, "text") == 0) {
        FILE *t = fopen(out, "w");
        fputs("this is not an HDF5 file\n", t);
        return fclose(t) != 0;
    }
    float *x = malloc(sizeof(float) * (rows ? rows : 1) * dim);
    double *x64 = malloc(sizeof(double) * (rows ? rows : 1) * dim);
    int32_t *y = malloc(sizeof(int32_t) * (rows ? rows : 1));
    long long *y64 = malloc(sizeof(long long) * (rows ? rows : 1));
    float *t = malloc(sizeof(float) * (rows ? rows : 1) * classes);
    for (long i = 0; i < rows; i++) {
        y[i] = (int32_t)(i % classes);
        for (long j = 0; j < dim; j++) {
            /* class c has its mean at +2 on coordinate c mod dim */
            x[i * dim + j] = (float)(normal() + (j == y[i] % dim ? 2.0 : 0.0));
            x64[i * dim + j] = x[i * dim + j];
        }
        for (long k = 0; k < classes; k++)
            t[i * classes + k] = x[i * dim + k % dim] * 0.5f;
    }
    if (strcmp(kind, "nan") == 0 && rows > 3) x[3 * dim + 1] = NAN;
    if (strcmp(kind, "inf") == 0 && rows > 3) x[3 * dim] = INFINITY;
    if (strcmp(kind, "label-range") == 0 && rows > 5) y[5] = (int32_t)classes;
    if (strcmp(kind, "x-f64-big") == 0 && rows > 3) x64[3 * dim + 1] = 1e300;
    for (long i = 0; i < rows; i++)
        y64[i] = y[i];
    if (strcmp(kind, "y-i64-big") == 0 && rows > 5) y64[5] = 1LL << 40;
    if (strcmp(kind, "y-u8-range") == 0 && rows > 5) y64[5] = 200;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "mkdata: cannot create %s\n", out);
        return 1;
    }
    if (strcmp(kind, "x-1d") == 0)
        write_dataset(f, "X", H5T_NATIVE_FLOAT, 1, (hsize_t)(rows * dim), 0, x);
    else if (strcmp(kind, "x-f64") == 0 || strcmp(kind, "x-f64-big") == 0)
        write_dataset(f, "X", H5T_NATIVE_DOUBLE, 2, rows, dim, x64);
    else if (strcmp(kind, "x-string") == 0)
        write_strings(f, "X", rows);
    else if (strcmp(kind, "images") == 0)
        write_images(f, rows, dim, x);
    else if (strcmp(kind, "no-x") != 0)
        write_dataset(f, "X", H5T_NATIVE_FLOAT, 2, rows, dim, x);
    if (strcmp(kind, "regress") == 0)
        write_dataset(f, "y", H5T_NATIVE_FLOAT, 2, rows, classes, t);
    else if (strcmp(kind, "y-i64-big") == 0)
        write_converted(f, "y", H5T_STD_I64LE, rows, y64);
    else if (strcmp(kind, "y-u8-range") == 0)
        write_converted(f, "y", H5T_STD_U8LE, rows, y64);
    else if (strcmp(kind, "y-rows") == 0)
        write_dataset(f, "y", H5T_NATIVE_INT32, 1, rows - 1, 0, y);
    else if (strcmp(kind, "no-y") != 0)
        write_dataset(f, "y", H5T_NATIVE_INT32, 1, rows, 0, y);
    H5Fclose(f);
    if (strcmp(kind, "truncated") == 0) {
        FILE *h = fopen(out, "r+");
        fseek(h, 0, SEEK_END);
        long size = ftell(h);
        fclose(h);
        if (truncate(out, size / 2) != 0) return 1;
    }
    free(x);
    free(x64);
    free(y);
    free(y64);
    free(t);
    return 0;
}
