/* h5io.c - typed attributes and checksummed datasets (contract in h5io.h). */
#include "h5/h5io.h"
#include "h5/h5util.h"
#include "ringtrain/model.h"
#include "ringtrain/status.h"

#include <stdio.h>
#include <string.h>

#define CHUNK_FLOATS                                                                               \
    ((hsize_t)256 * 1024) /* 1 MiB: Fletcher32 per chunk, and bounded read-ahead                   \
                           */

/* ---- writers ---------------------------------------------------------------------------- */

static int put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, hid_t space,
                    const void *val)
{
    hid_t a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, mtype, val) < 0 ? -1 : 0;
    rt_h5_close(a);
    return rc;
}

static int put_scalar(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    int rc = sp < 0 ? -1 : put_attr(obj, name, ftype, mtype, sp, val);
    rt_h5_close(sp);
    return rc;
}

int rt_h5_put_str(hid_t obj, const char *name, const char *val)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    int rc = -1;
    if (t >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0)
        rc = put_scalar(obj, name, t, t, &val);
    rt_h5_close(t);
    return rc;
}

int rt_h5_put_i32s(hid_t obj, const char *name, const int *v, int n)
{
    hsize_t dim = (hsize_t)n;
    int32_t buf[RT_MAX_LAYERS + 2];
    if (n < 1 || n > (int)(sizeof buf / sizeof buf[0])) return -1;
    for (int i = 0; i < n; i++)
        buf[i] = v[i];
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    int rc = sp < 0 ? -1 : put_attr(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, sp, buf);
    rt_h5_close(sp);
    return rc;
}

int rt_h5_put_i64(hid_t obj, const char *name, int64_t v)
{
    return put_scalar(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

int rt_h5_put_u64(hid_t obj, const char *name, uint64_t v)
{
    return put_scalar(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

int rt_h5_put_f64(hid_t obj, const char *name, double v)
{
    return put_scalar(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

hid_t rt_h5_group(hid_t loc, const char *name)
{
    return H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

#define F32_MAX_RANK 4 /* conv weights (OC, C, KH, KW) */

/* Floats of dims[0..rank). */
static hsize_t count_of(int rank, const hsize_t *dims)
{
    hsize_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    return n;
}

/* Chunks of whole rows (the trailing dims) up to CHUNK_FLOATS, or of CHUNK_FLOATS values
 * for rank 1; never larger than the data. */
static hid_t checksummed_layout(int rank, const hsize_t *dims)
{
    if (rank < 1 || rank > F32_MAX_RANK) return -1;
    hsize_t chunk[F32_MAX_RANK];
    for (int i = 0; i < rank; i++)
        chunk[i] = dims[i];
    hsize_t row = count_of(rank - 1, dims + 1);
    if (rank == 1) {
        if (chunk[0] > CHUNK_FLOATS) chunk[0] = CHUNK_FLOATS;
    } else {
        hsize_t rows = row ? CHUNK_FLOATS / row : dims[0];
        chunk[0] = rows < 1 ? 1 : rows < dims[0] ? rows : dims[0];
    }
    for (int i = 0; i < rank; i++)
        if (chunk[i] < 1) chunk[i] = 1; /* HDF5 refuses zero-sized chunks */
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0) return -1;
    if (H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0) {
        H5Pclose(dcpl);
        return -1;
    }
    return dcpl;
}

int rt_h5_put_f32(hid_t loc, const char *name, const float *v, int rank, const hsize_t *dims)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = checksummed_layout(rank, dims);
    hid_t ds = sp < 0 || dcpl < 0
                   ? -1
                   : H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    hsize_t n = count_of(rank, dims);
    int rc =
        ds < 0 || (n > 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
            ? -1
            : 0;
    rt_h5_close(ds);
    rt_h5_close(dcpl);
    rt_h5_close(sp);
    return rc;
}

/* The 1-D selection [lo, lo + len) of ds's space and a memory space of len. */
static int select_range(hid_t ds, size_t lo, size_t len, hid_t *fs, hid_t *ms)
{
    hsize_t start = (hsize_t)lo, count = (hsize_t)len;
    *fs = H5Dget_space(ds);
    *ms = H5Screate_simple(1, &count, NULL);
    return *fs < 0 || *ms < 0 ||
                   H5Sselect_hyperslab(*fs, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0
               ? -1
               : 0;
}

int rt_h5_put_f32_pieces(hid_t loc, const char *name, size_t n, float *buf, size_t piece,
                         int (*fill)(void *ctx, size_t lo, size_t len, float *buf), void *ctx)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL), dcpl = checksummed_layout(1, &dim);
    hid_t ds = sp < 0 || dcpl < 0
                   ? -1
                   : H5Dcreate2(loc, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc = ds < 0 ? -1 : 0;
    for (size_t lo = 0; rc == 0 && lo < n; lo += piece) {
        size_t len = n - lo < piece ? n - lo : piece;
        hid_t fs = -1, ms = -1;
        rc = fill(ctx, lo, len, buf) < 0 || select_range(ds, lo, len, &fs, &ms) < 0 ||
                     H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf) < 0
                 ? -1
                 : 0;
        rt_h5_close(ms);
        rt_h5_close(fs);
    }
    rt_h5_close(ds);
    rt_h5_close(dcpl);
    rt_h5_close(sp);
    return rc;
}

static int put_vector(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v,
                      size_t n)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL), dcpl = checksummed_layout(1, &dim);
    hid_t ds =
        sp < 0 || dcpl < 0 ? -1 : H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    int rc =
        ds < 0 || (n > 0 && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) ? -1 : 0;
    rt_h5_close(ds);
    rt_h5_close(dcpl);
    rt_h5_close(sp);
    return rc;
}

int rt_h5_put_i64v(hid_t loc, const char *name, const int64_t *v, size_t n)
{
    return put_vector(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, v, n);
}

int rt_h5_put_i32v(hid_t loc, const char *name, const int32_t *v, size_t n)
{
    return put_vector(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT32, v, n);
}

int rt_h5_put_u8v(hid_t loc, const char *name, const uint8_t *v, size_t n)
{
    return put_vector(loc, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, v, n);
}

int64_t rt_h5_dataset_size(hid_t loc, const char *name)
{
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    rt_h5_close(sp);
    rt_h5_close(ds);
    return n;
}

int rt_h5_get_intv(hid_t loc, const char *path, const char *name, hid_t mtype, void *v, size_t n)
{
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return rt_errorf(RT_ERR_FORMAT, "%s: no readable dataset %s", path, name);
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    int st = RT_OK;
    if (t < 0 || H5Tget_class(t) != H5T_INTEGER || sp < 0 || H5Sget_simple_extent_ndims(sp) != 1 ||
        H5Sget_simple_extent_npoints(sp) != (hssize_t)n)
        st = rt_errorf(RT_ERR_FORMAT, "%s: %s is not %zu integers", path, name, n);
    else if (n > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        st = rt_errorf(RT_ERR_IO, "%s: %s: checksum mismatch or unreadable chunk (corrupt file)",
                       path, name);
    rt_h5_close(t);
    rt_h5_close(sp);
    rt_h5_close(ds);
    return st;
}

/* ---- readers ---------------------------------------------------------------------------- */

int rt_h5_has_attr(hid_t obj, const char *name)
{
    htri_t ex = H5Aexists(obj, name);
    return ex > 0 ? 1 : ex == 0 ? 0 : -1;
}

static int missing(const char *path, const char *where, const char *name, const char *what)
{
    return rt_errorf(RT_ERR_FORMAT, "%s: attribute %s%s missing or not %s", path, where, name,
                     what);
}

/* Opens attribute `name` when it exists with a type of class cls; -1 otherwise. */
static hid_t open_attr(hid_t obj, const char *name, H5T_class_t cls, hssize_t max_points)
{
    if (rt_h5_has_attr(obj, name) != 1) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    hssize_t np = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    int ok = t >= 0 && H5Tget_class(t) == cls && np >= 1 && np <= max_points &&
             H5Sget_simple_extent_ndims(sp) <= 1;
    rt_h5_close(t);
    rt_h5_close(sp);
    if (!ok) a = rt_h5_close(a);
    return a;
}

int rt_h5_get_str(hid_t obj, const char *path, const char *where, const char *name, char *buf,
                  size_t cap)
{
    hid_t a = open_attr(obj, name, H5T_STRING, 1);
    if (a < 0) return missing(path, where, name, "a string");
    hid_t t = H5Aget_type(a), mt = -1;
    int ok = 0;
    htri_t vl = t < 0 ? -1 : H5Tis_variable_str(t);
    if (vl > 0) {
        char *s = NULL;
        mt = H5Tcopy(H5T_C_S1);
        if (mt >= 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0 && H5Tset_cset(mt, H5Tget_cset(t)) >= 0 &&
            H5Aread(a, mt, &s) >= 0) {
            snprintf(buf, cap, "%s", s ? s : "");
            H5free_memory(s);
            ok = 1;
        }
    } else if (vl == 0) {
        size_t n = H5Tget_size(t);
        char tmp[4096];
        mt = H5Tcopy(t);
        if (n > 0 && n < sizeof tmp && mt >= 0 && H5Aread(a, mt, tmp) >= 0) {
            tmp[n] = '\0';
            snprintf(buf, cap, "%s", tmp);
            ok = 1;
        }
    }
    rt_h5_close(mt);
    rt_h5_close(t);
    rt_h5_close(a);
    return ok ? RT_OK : missing(path, where, name, "a string");
}

/* Reads a numeric attribute of class cls, converting to mtype, into v (at most cap). */
static int get_numbers(hid_t obj, const char *path, const char *where, const char *name,
                       H5T_class_t cls, hid_t mtype, void *v, int cap, int *n, const char *what)
{
    hid_t a = open_attr(obj, name, cls, cap);
    if (a < 0) return missing(path, where, name, what);
    hid_t sp = H5Aget_space(a);
    hssize_t np = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    int rc = np < 1 || H5Aread(a, mtype, v) < 0 ? -1 : 0;
    rt_h5_close(sp);
    rt_h5_close(a);
    if (rc < 0) return missing(path, where, name, what);
    if (n) *n = (int)np;
    return RT_OK;
}

int rt_h5_get_i32s(hid_t obj, const char *path, const char *where, const char *name, int *v,
                   int cap, int *n)
{
    int32_t buf[RT_MAX_LAYERS + 2] = {0};
    if (cap > (int)(sizeof buf / sizeof buf[0])) cap = (int)(sizeof buf / sizeof buf[0]);
    RT_TRY(get_numbers(obj, path, where, name, H5T_INTEGER, H5T_NATIVE_INT32, buf, cap, n,
                       "integers"));
    for (int i = 0; i < *n; i++)
        v[i] = buf[i];
    return RT_OK;
}

int rt_h5_get_i64(hid_t obj, const char *path, const char *where, const char *name, int64_t *v)
{
    return get_numbers(obj, path, where, name, H5T_INTEGER, H5T_NATIVE_INT64, v, 1, NULL,
                       "an integer");
}

int rt_h5_get_u64(hid_t obj, const char *path, const char *where, const char *name, uint64_t *v)
{
    return get_numbers(obj, path, where, name, H5T_INTEGER, H5T_NATIVE_UINT64, v, 1, NULL,
                       "an integer");
}

int rt_h5_get_f64(hid_t obj, const char *path, const char *where, const char *name, double *v)
{
    return get_numbers(obj, path, where, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v, 1, NULL,
                       "a number");
}

static void shape_text(char *buf, size_t cap, int rank, const hsize_t *d)
{
    if (rank == 2)
        snprintf(buf, cap, "(%llu, %llu)", (unsigned long long)d[0], (unsigned long long)d[1]);
    else if (rank == 1)
        snprintf(buf, cap, "(%llu)", (unsigned long long)d[0]);
    else
        snprintf(buf, cap, "rank %d", rank);
}

/* Type and shape of an open dataset against what the caller needs. */
static int check_f32_shape(hid_t ds, const char *path, const char *name, int rank,
                           const hsize_t *dims)
{
    char want[64], have[64];
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    int st = RT_OK;
    hsize_t got[H5S_MAX_RANK] = {0};
    int r = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, got, NULL);
    if (t < 0 || H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4) {
        char tn[32];
        st = rt_errorf(RT_ERR_FORMAT, "%s: %s is %s: expected float32", path, name,
                       t < 0 ? "unreadable" : rt_h5_type_name(t, tn, sizeof tn));
    } else if (r != rank || memcmp(got, dims, (size_t)rank * sizeof *dims) != 0) {
        shape_text(want, sizeof want, rank, dims);
        shape_text(have, sizeof have, r, got);
        st = rt_errorf(RT_ERR_SHAPE, "%s: %s has shape %s but the model needs %s", path, name, have,
                       want);
    }
    rt_h5_close(t);
    rt_h5_close(sp);
    return st;
}

int rt_h5_get_f32(hid_t loc, const char *path, const char *name, float *v, int rank,
                  const hsize_t *dims)
{
    /* Error printing is off (rt_h5_quiet), so a failed open is just "not there". */
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return rt_errorf(RT_ERR_FORMAT, "%s: no readable dataset %s", path, name);
    int st = check_f32_shape(ds, path, name, rank, dims);
    hsize_t n = count_of(rank, dims);
    if (st == RT_OK && n > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        st = rt_errorf(RT_ERR_IO, "%s: %s: checksum mismatch or unreadable chunk (corrupt file)",
                       path, name);
    rt_h5_close(ds);
    return st;
}

int rt_h5_get_f32_pieces(hid_t loc, const char *path, const char *name, size_t n, float *buf,
                         size_t piece,
                         int (*put)(void *ctx, size_t lo, size_t len, const float *buf), void *ctx)
{
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) return rt_errorf(RT_ERR_FORMAT, "%s: no readable dataset %s", path, name);
    hsize_t dim = (hsize_t)n;
    int st = check_f32_shape(ds, path, name, 1, &dim);
    for (size_t lo = 0; st == RT_OK && lo < n; lo += piece) {
        size_t len = n - lo < piece ? n - lo : piece;
        hid_t fs = -1, ms = -1;
        if (select_range(ds, lo, len, &fs, &ms) < 0 ||
            H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf) < 0)
            st =
                rt_errorf(RT_ERR_IO, "%s: %s: checksum mismatch or unreadable chunk (corrupt file)",
                          path, name);
        rt_h5_close(ms);
        rt_h5_close(fs);
        if (st == RT_OK) st = put(ctx, lo, len, buf);
    }
    rt_h5_close(ds);
    return st;
}

int rt_h5_check_format(hid_t loc, const char *path, const char *format, int max_version,
                       const char *what)
{
    char s[64] = "";
    if (rt_h5_has_attr(loc, "format") != 1)
        return rt_errorf(RT_ERR_FORMAT, "%s: not a ringtrain %s (no \"format\" attribute)", path,
                         what);
    RT_TRY(rt_h5_get_str(loc, path, "", "format", s, sizeof s));
    if (strcmp(s, format) != 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: format = \"%s\": expected \"%s\"", path, s, format);
    int version = 0, n = 0;
    RT_TRY(rt_h5_get_i32s(loc, path, "", "format_version", &version, 1, &n));
    if (version > max_version)
        return rt_errorf(RT_ERR_INCOMPAT,
                         "%s: format_version = %d is newer than this ringtrain reads (%d): use "
                         "the ringtrain that wrote it",
                         path, version, max_version);
    if (version < 1)
        return rt_errorf(RT_ERR_FORMAT, "%s: format_version = %d: expected 1 to %d", path, version,
                         max_version);
    return RT_OK;
}
