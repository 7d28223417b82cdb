/* synth.c - synth:bigmodel rows (see synth.h for the task and why the product avoids BLAS),
 * and rt_synth_write, which stores them as a dataset file.
 *
 * Dimension letters: D input width, K target width (both 1000), n rows. */
#include "data/synth.h"
#include "h5/h5util.h"
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

enum { WRITE_CHUNK = 256 }; /* rows generated and written per pass by rt_synth_write */

/* Buffers of rt_synth_write (malloc: a one-off command, not the step loop). */
struct write_buf {
    float *tt;    /* teacher, rt_synth_teacher_bytes() */
    float *x, *y; /* (WRITE_CHUNK, D), (WRITE_CHUNK, K) */
    int64_t *ids; /* (WRITE_CHUNK) */
};

static int check_write_args(const char *task, int64_t rows, int split)
{
    if (rt_synth_known(task) != 0)
        return rt_errorf(RT_ERR_INVAL, "synth:%s: unknown synthetic task (known: bigmodel)", task);
    if (rows < 1)
        return rt_errorf(RT_ERR_INVAL, "synth:%s: rows = %lld: expected at least 1", task,
                         (long long)rows);
    if (split != 0 && split != 1)
        return rt_errorf(RT_ERR_INVAL, "synth:%s: split = %d: expected 0 (train) or 1 (test)", task,
                         split);
    return RT_OK;
}

/* /X and /y float32 (rows, D) in chunks of 64 rows, and the attributes that name the task
 * (synth, seed, split). -1 when HDF5 refuses. */
static int create_xy(struct rt_h5_xy_writer *w, const char *task, int64_t rows, uint64_t seed,
                     int split)
{
    hsize_t dims[2] = {(hsize_t)rows, D};
    hsize_t chunk[2] = {(hsize_t)(rows < 64 ? rows : 64), D};
    int32_t split32 = split;
    uint64_t seed64 = seed;
    int rc = -1;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0 || H5Pset_chunk(dcpl, 2, chunk) < 0) goto out;
    if (rt_h5_xy_create(w, dims, dcpl, H5T_IEEE_F32LE, 2, dims, dcpl) < 0) goto out;
    if (put_str_attr(w->file, "synth", task) < 0 ||
        put_attr(w->file, "seed", H5T_NATIVE_UINT64, &seed64) < 0 ||
        put_attr(w->file, "split", H5T_NATIVE_INT32, &split32) < 0)
        goto out;
    rc = 0;
out:
    rt_h5_close(dcpl);
    return rc;
}

/* Generates rows [0, rows) WRITE_CHUNK at a time and writes each chunk to /X and /y. */
static int write_rows(struct rt_h5_xy_writer *w, const struct rt_synth *s, int64_t rows,
                      struct write_buf *b)
{
    for (int64_t r0 = 0; r0 < rows; r0 += WRITE_CHUNK) {
        int64_t n = rows - r0 < WRITE_CHUNK ? rows - r0 : WRITE_CHUNK;
        for (int64_t i = 0; i < n; i++)
            b->ids[i] = r0 + i;
        rt_synth_rows(s, b->x, b->y, b->ids, n);
        hsize_t at = (hsize_t)r0, m = (hsize_t)n;
        if (rt_h5_write_rows(w->dx, w->sx, H5T_NATIVE_FLOAT, at, m, D, b->x) < 0 ||
            rt_h5_write_rows(w->dy, w->sy, H5T_NATIVE_FLOAT, at, m, K, b->y) < 0)
            return rt_errorf(RT_ERR_IO, "%s: writing rows %lld..%lld failed (disk full?)", w->tmp,
                             (long long)r0, (long long)(r0 + n - 1));
    }
    return RT_OK;
}

static int write_file(const char *out_path, const char *task, int64_t rows, uint64_t seed,
                      int split, struct write_buf *b)
{
    struct rt_synth s;
    rt_synth_init(&s, b->tt, seed, split);
    struct rt_h5_xy_writer w;
    RT_TRY(rt_h5_xy_begin(&w, out_path));
    int st = RT_OK;
    if (create_xy(&w, task, rows, seed, split) < 0)
        st = rt_errorf(RT_ERR_HDF5, "%s: HDF5 refused to create the datasets", w.tmp);
    if (st == RT_OK) st = write_rows(&w, &s, rows, b);
    return rt_h5_xy_end(&w, out_path, st);
}

int rt_synth_write(const char *out_path, const char *name, int64_t rows, uint64_t seed, int split)
{
    const char *task = strncmp(name, "synth:", 6) == 0 ? name + 6 : name;
    RT_TRY(check_write_args(task, rows, split));
    int st = RT_OK;
    struct write_buf b;
    b.tt = malloc(rt_synth_teacher_bytes());
    b.x = malloc(sizeof(float) * WRITE_CHUNK * D);
    b.y = malloc(sizeof(float) * WRITE_CHUNK * K);
    b.ids = malloc(sizeof(int64_t) * WRITE_CHUNK);
    if (!b.tt || !b.x || !b.y || !b.ids)
        st = rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate synth buffers", out_path);
    else
        st = write_file(out_path, task, rows, seed, split, &b);
    free(b.tt);
    free(b.x);
    free(b.y);
    free(b.ids);
    return st;
}
