/* synth.c - synth:bigmodel rows (see synth.h for the task and why the product avoids BLAS),
 * and rt_synth_write, which stores them as a dataset file.
 *
 * Dimension letters: D input width, K target width (both 1000), n rows. */
#include "data/synth.h"
#include "data/h5util.h"
#include "ringtrain/dataset.h"
#include "ringtrain/rng.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define D         RT_SYNTH_DIM
#define K         RT_SYNTH_DIM
#define ROW_BLOCK 8 /* rows sharing one pass over the teacher: their y rows stay in L1 */

int rt_synth_known(const char *name)
{
    return strcmp(name, "bigmodel") == 0 ? 0 : -1;
}

size_t rt_synth_teacher_bytes(void)
{
    return (size_t)D * K * sizeof(float);
}

void rt_synth_init(struct rt_synth *s, float *tt, uint64_t seed, int split)
{
    struct rt_rng r;
    rt_rng_seed(&r, rt_rng_derive(seed, RT_STREAM_SYNTH_TEACHER, 0));
    double scale = 1.0 / sqrt((double)D);
    for (int j = 0; j < K; j++)
        for (int k = 0; k < D; k++)
            tt[(size_t)k * K + j] = (float)(rt_rng_normal(&r) * scale);
    s->seed = seed;
    s->row_offset = split ? RT_SYNTH_TEST_OFFSET : 0;
    s->tt = tt;
}

/* y (nb, K) = x (nb, D) T^T for nb <= ROW_BLOCK rows. Each y[r][j] is a float sum over k in
 * increasing order, whatever nb is and whichever rows share the block; the j loop is a
 * plain stream the compiler vectorises without reordering any single sum. */
static void teacher_block(float *restrict y, const float *restrict x, const float *restrict tt,
                          int nb)
{
    memset(y, 0, sizeof(float) * (size_t)nb * K);
    for (int k = 0; k < D; k++) {
        const float *t = tt + (size_t)k * K;
        for (int r = 0; r < nb; r++) {
            float a = x[(size_t)r * D + k];
            float *yr = y + (size_t)r * K;
            for (int j = 0; j < K; j++)
                yr[j] += a * t[j];
        }
    }
}

void rt_synth_rows(const struct rt_synth *s, float *x, float *y, const int64_t *ids, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        struct rt_rng r;
        rt_rng_seed(&r,
                    rt_rng_derive(s->seed, RT_STREAM_SYNTH_X, (uint64_t)(ids[i] + s->row_offset)));
        float *xr = x + (size_t)i * D;
        for (int k = 0; k < D; k++)
            xr[k] = (float)rt_rng_normal(&r);
    }
    for (int64_t i = 0; i < n; i += ROW_BLOCK) {
        int nb = n - i < ROW_BLOCK ? (int)(n - i) : ROW_BLOCK;
        teacher_block(y + (size_t)i * K, x + (size_t)i * D, s->tt, nb);
    }
}

/* Writes a scalar attribute of a native type on the root group. */
static int put_attr(hid_t file, const char *name, hid_t type, const void *val)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    if (sp < 0) return -1;
    hid_t a = H5Acreate2(file, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, type, val) < 0 ? -1 : 0;
    rt_h5_close(a);
    H5Sclose(sp);
    return rc;
}

static int put_str_attr(hid_t file, const char *name, const char *val)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    int rc = H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0
                 ? -1
                 : put_attr(file, name, t, &val);
    H5Tclose(t);
    return rc;
}

int rt_synth_write(const char *out_path, const char *name, int64_t rows, uint64_t seed, int split)
{
    const char *task = strncmp(name, "synth:", 6) == 0 ? name + 6 : name;
    if (rt_synth_known(task) != 0)
        return rt_errorf(RT_ERR_INVAL, "synth:%s: unknown synthetic task (known: bigmodel)", task);
    if (rows < 1)
        return rt_errorf(RT_ERR_INVAL, "synth:%s: rows = %lld: expected at least 1", task,
                         (long long)rows);
    if (split != 0 && split != 1)
        return rt_errorf(RT_ERR_INVAL, "synth:%s: split = %d: expected 0 (train) or 1 (test)", task,
                         split);

    enum { CHUNK = 256 }; /* rows generated and written per pass */
    int st = RT_OK;
    char tmp[4096];
    hid_t f = -1, sx = -1, sy = -1, dx = -1, dy = -1, ms = -1, dcpl = -1;
    float *tt = malloc(rt_synth_teacher_bytes());
    float *bx = malloc(sizeof(float) * CHUNK * D);
    float *by = malloc(sizeof(float) * CHUNK * K);
    int64_t *ids = malloc(sizeof(int64_t) * CHUNK);
    if (!tt || !bx || !by || !ids) {
        st = rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate synth buffers", out_path);
        goto out;
    }
    struct rt_synth s;
    rt_synth_init(&s, tt, seed, split);

    st = rt_h5_create_tmp(out_path, tmp, sizeof tmp, &f);
    if (st < 0) goto out;
    hsize_t dims[2] = {(hsize_t)rows, D};
    hsize_t chunk[2] = {(hsize_t)(rows < 64 ? rows : 64), D};
    sx = H5Screate_simple(2, dims, NULL);
    sy = H5Screate_simple(2, dims, NULL);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (sx < 0 || sy < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 2, chunk) < 0) goto hdf5_fail;
    dx = H5Dcreate2(f, "X", H5T_IEEE_F32LE, sx, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    dy = H5Dcreate2(f, "y", H5T_IEEE_F32LE, sy, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dx < 0 || dy < 0) goto hdf5_fail;
    int32_t split32 = split;
    uint64_t seed64 = seed;
    if (put_str_attr(f, "synth", task) < 0 || put_attr(f, "seed", H5T_NATIVE_UINT64, &seed64) < 0 ||
        put_attr(f, "split", H5T_NATIVE_INT32, &split32) < 0)
        goto hdf5_fail;
    for (int64_t r0 = 0; r0 < rows; r0 += CHUNK) {
        int64_t n = rows - r0 < CHUNK ? rows - r0 : CHUNK;
        for (int64_t i = 0; i < n; i++)
            ids[i] = r0 + i;
        rt_synth_rows(&s, bx, by, ids, n);
        hsize_t start[2] = {(hsize_t)r0, 0}, count[2] = {(hsize_t)n, D};
        ms = H5Screate_simple(2, count, NULL);
        if (ms < 0 || H5Sselect_hyperslab(sx, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Sselect_hyperslab(sy, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dwrite(dx, H5T_NATIVE_FLOAT, ms, sx, H5P_DEFAULT, bx) < 0 ||
            H5Dwrite(dy, H5T_NATIVE_FLOAT, ms, sy, H5P_DEFAULT, by) < 0) {
            st = rt_errorf(RT_ERR_IO, "%s: writing rows %lld..%lld failed (disk full?)", tmp,
                           (long long)r0, (long long)(r0 + n - 1));
            goto fail;
        }
        ms = rt_h5_close(ms);
    }
    dx = rt_h5_close(dx);
    dy = rt_h5_close(dy);
    st = rt_h5_commit(f, tmp, out_path);
    f = -1;
    goto out;

hdf5_fail:
    st = rt_errorf(RT_ERR_HDF5, "%s: HDF5 refused to create the datasets", tmp);
fail:
    rt_h5_close(ms);
    rt_h5_close(dx);
    rt_h5_close(dy);
    dx = dy = -1;
    rt_h5_discard(f, tmp);
    f = -1;
out:
    rt_h5_close(dx);
    rt_h5_close(dy);
    rt_h5_close(dcpl);
    rt_h5_close(sx);
    rt_h5_close(sy);
    free(tt);
    free(bx);
    free(by);
    free(ids);
    return st;
}
