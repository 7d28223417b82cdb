/* dataset.c - a rank's batches from an HDF5 file, a text-bytes file or a synthetic task (see
 * dataset.h).
 *
 * Order and batches. An epoch has S = ceil(N / GB) steps on every rank; lb = GB / world.
 *   global/off: `order` is a permutation of 0..N-1 (Fisher-Yates from
 *               rt_rng_derive(seed, RT_STREAM_SHUFFLE, epoch), or the identity). Step k
 *               covers positions [k*GB, end = min((k+1)*GB, N)); rank r takes positions
 *               k*GB + r, k*GB + r + world, ... < end:
 *
 *                 positions  | k*GB    +1    +2    +3    +4    +5  ...  end
 *                 world = 3  |  r0     r1    r2    r0    r1    r2  ...
 *
 *   shard:      rank r owns rows r, r + world, ... (n_r of them, local index j is row
 *               r + j*world); `order` is a permutation of 0..n_r-1 from
 *               rt_rng_derive(seed, RT_STREAM_SHARD, epoch * 2^20 + rank). Step k takes
 *               local positions [k*lb, min((k+1)*lb, n_r)); global_rows adds up what every
 *               rank takes, which each rank computes from N and world alone.
 * Fisher-Yates, exactly: p = identity; for i = n-1 down to 1: j = rt_rng_below(i + 1),
 * swap p[i], p[j].
 *
 * Where rows come from. When the rows this rank can touch (N for global/off, n_r for shard)
 * fit in memory_mb they are read (or generated) once at open and batches are gathered from
 * memory on the calling thread. Otherwise a prefetch thread fills step k+1 into one of two
 * slots while the caller computes on step k from the other:
 *
 *     caller:   next(k) -> compute k ............ next(k+1) -> compute k+1 ...
 *     prefetch:     fill k+1 into slot B ...          fill k+2 into slot A ...
 *
 * A file batch is ONE HDF5 read: the batch's row ids are sorted, runs of consecutive ids
 * become a union of hyperslabs, the rows arrive in file order in a scratch buffer and are
 * then copied back into batch order. While the thread owns a request it is the only user of
 * the scratch buffers and of the HDF5 handles of this dataset; begin_epoch, validate and
 * close wait for it to go idle first. If the HDF5 library is not thread-safe, file batches
 * are read on the calling thread instead (synthetic rows still use the thread).
 *
 * A text-bytes file (format attribute, see text.h) is always "in memory": the split's bytes are
 * read once at open and each batch's rows are cut from them on the calling thread (T floats
 * and T int32 labels per row); row ids are window numbers, so the sampler above is the same.
 *
 * Memory: every buffer comes from one arena sized at open; rt_dataset_next allocates
 * nothing (HDF5 allocates internally while selecting and reading).
 *
 * Dimension letters: N rows, D input width, K target width (1 for class labels), P labels per
 * row (T for text, else 1), GB global batch, lb local batch, cap the most rows a rank can get
 * in one step. */
#include "ringtrain/dataset.h"
#include "h5/h5util.h"
#include "h5/h5io.h"
#include "data/synth.h"
#include "data/text.h"
#include "ringtrain/arena.h"
#include "ringtrain/rng.h"
#include "ringtrain/status.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VALIDATE_CHUNK_BYTES ((size_t)4 << 20) /* rows checked per read in validate */

enum source_kind { SRC_FILE, SRC_SYNTH, SRC_TEXT };

struct slot {
    float *x;     /* (cap, D) */
    void *y;      /* (cap, P) int32 or (cap, K) float */
    int64_t *ids; /* (cap) row ids in batch order */
    int rows;     /* rows filled */
    int64_t step; /* the step they belong to, -1 if none */
};

struct rt_dataset {
    char *source; /* (strlen + 1) owned, in the arena */
    struct rt_data_opts o;
    struct rt_dataset_info info;
    enum source_kind kind;

    int64_t N;       /* rows */
    int D, K;        /* input width; targets width (1 for class labels) */
    int P;           /* labels per row (info.positions): T for text, else 1 */
    size_t xrow;     /* bytes of one X row */
    size_t yrow;     /* bytes of one y row: P int32 labels or K float targets */
    int64_t lb;      /* local batch = GB / world */
    int64_t steps;   /* ceil(N / GB) */
    int64_t n_shard; /* rows of this rank's shard: rank, rank + world, ... */
    int64_t n_order; /* length of order: N, or n_shard in shard mode */
    int cap;         /* most rows this rank gets in one step */

    /* file source */
    char xname[RT_DATA_NAME_MAX], yname[RT_DATA_NAME_MAX]; /* [data] x, y: dataset paths */
    hid_t file, dx, dy;                                    /* open while streaming; -1 otherwise */
    hid_t fsx, fsy;                                        /* file dataspaces of /X and /y */
    int x_rank;       /* 2 (N, D), 3 (N, H, W) or 4 (N, C, H, W) */
    hsize_t x_row[3]; /* /X's dims after N */
    hid_t dxpl;       /* transfer: HDF5 converts the stored types, and aborts when a
                         value does not fit (range_error is then set) */
    int range_error;
    hid_t msx, msy; /* memory dataspaces (cap, D) and (cap[, K]) */
    hid_t ytype;    /* native memory type of y: H5T_NATIVE_INT32 or FLOAT */
    int y_rank;     /* 1 (labels) or 2 (targets) */

    /* synthetic source */
    struct rt_synth synth;

    /* text source: the split's bytes, read once at open; rows are cut from them on demand */
    struct rt_text text;
    uint8_t *tbytes; /* (text.n) in the arena; text.bytes points here */

    /* rows in memory (in_memory): global/off row id i at index i; shard local index j */
    float *mx;
    void *my;

    int64_t *order; /* (n_order) this epoch's order */
    struct slot slot[2];
    struct rt_row_pair *pairs; /* (cap) prefetch scratch: the batch sorted by row id */
    float *sx;                 /* (cap, D) prefetch scratch: rows in file order */
    void *sy;                  /* (cap, yrow) */
    float *vx;                 /* (vrows, D) validation chunk */
    void *vy;                  /* (vrows, yrow) */
    int64_t vrows;

    int64_t epoch;     /* current epoch, -1 before the first begin_epoch */
    int64_t next_step; /* the step rt_dataset_next returns next */

    /* prefetch thread (streaming only) */
    int threaded; /* 1 when the thread runs */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy; /* a request is pending or running */
    int quit;
    int64_t req_step; /* pending request, -1 when none */
    int req_slot;
    int64_t done_step; /* last finished request (-1 none) and its outcome */
    int done_slot, done_status;

    struct rt_arena arena;
};

/* ---- names ------------------------------------------------------------------------------ */

int rt_shuffle_parse(const char *name, enum rt_shuffle *out)
{
    if (strcmp(name, "global") == 0)
        *out = RT_SHUFFLE_GLOBAL;
    else if (strcmp(name, "shard") == 0)
        *out = RT_SHUFFLE_SHARD;
    else if (strcmp(name, "off") == 0 || strcmp(name, "none") == 0)
        *out = RT_SHUFFLE_OFF;
    else
        return -1;
    return 0;
}

const char *rt_shuffle_name(enum rt_shuffle s)
{
    switch (s) {
    case RT_SHUFFLE_GLOBAL:
        return "global";
    case RT_SHUFFLE_SHARD:
        return "shard";
    case RT_SHUFFLE_OFF:
        return "off";
    }
    return "?";
}

/* ---- sampler ---------------------------------------------------------------------------- */

static int64_t shard_rows(int64_t N, int world, int rank)
{
    return (N - rank + world - 1) / world;
}

static void permute(int64_t *p, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = i;
    struct rt_rng r;
    rt_rng_seed(&r, seed);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rt_rng_below(&r, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

/* Row ids of this rank at `step`, in batch order; returns how many. */
static int step_ids(const struct rt_dataset *d, int64_t step, int64_t *ids)
{
    int n = 0;
    int rank = d->o.rank, world = d->o.world;
    if (d->o.shuffle == RT_SHUFFLE_SHARD) {
        int64_t lo = step * d->lb;
        int64_t hi = lo + d->lb < d->n_shard ? lo + d->lb : d->n_shard;
        for (int64_t p = lo; p < hi; p++)
            ids[n++] = rank + d->order[p] * world;
    } else {
        int64_t lo = step * d->o.global_batch;
        int64_t end = lo + d->o.global_batch < d->N ? lo + d->o.global_batch : d->N;
        for (int64_t p = lo + rank; p < end; p += world)
            ids[n++] = d->order[p];
    }
    return n;
}

static int64_t step_global_rows(const struct rt_dataset *d, int64_t step)
{
    if (d->o.shuffle != RT_SHUFFLE_SHARD) {
        int64_t lo = step * d->o.global_batch;
        int64_t end = lo + d->o.global_batch < d->N ? lo + d->o.global_batch : d->N;
        return end - lo;
    }
    int64_t sum = 0;
    for (int q = 0; q < d->o.world; q++) {
        int64_t left = shard_rows(d->N, d->o.world, q) - step * d->lb;
        sum += left <= 0 ? 0 : left < d->lb ? left : d->lb;
    }
    return sum;
}

/* ---- reading rows ----------------------------------------------------------------------- */

/* A copy of `base` with rows a[lo..hi) (sorted by id) selected: a union of hyperslabs,
 * one per run of consecutive ids (a rank-1 space uses only the first of start/count).
 * HDF5 1.10 merges each OR into the whole selection so far, which makes one long chain of
 * ORs quadratic (measured: 4096 rows, 170 ms); merging halves recursively keeps it near
 * linear (2.3 ms). Returns the new dataspace (close it) or -1. */
static hid_t select_rows(hid_t base, const struct rt_row_pair *a, int64_t lo, int64_t hi,
                         const hsize_t *row)
{
    if (hi - lo <= 32) {
        hid_t s = H5Scopy(base);
        if (s < 0) return -1;
        for (int64_t i = lo; i < hi;) {
            int64_t j = i + 1;
            while (j < hi && a[j].id == a[j - 1].id + 1)
                j++;
            hsize_t start[4] = {(hsize_t)a[i].id, 0, 0, 0},
                    count[4] = {(hsize_t)(j - i), row[0], row[1], row[2]};
            if (H5Sselect_hyperslab(s, i == lo ? H5S_SELECT_SET : H5S_SELECT_OR, start, NULL, count,
                                    NULL) < 0) {
                H5Sclose(s);
                return -1;
            }
            i = j;
        }
        return s;
    }
    int64_t mid = lo + (hi - lo) / 2;
    hid_t l = select_rows(base, a, lo, mid, row);
    if (l < 0) return -1;
    hid_t r = select_rows(base, a, mid, hi, row);
    herr_t e = r < 0 ? -1 : H5Smodify_select(l, H5S_SELECT_OR, r);
    rt_h5_close(r);
    if (e < 0) {
        H5Sclose(l);
        return -1;
    }
    return l;
}

/* Row i of a y buffer (rows of yrow bytes). y buffers stay untyped: they hold int32 labels or
 * float targets, whichever the file has. */
static void *y_row(void *y, size_t yrow, int64_t i)
{
    return (char *)y + (size_t)i * yrow;
}

/* Reads the rows d->pairs[0..n) (sorted by id) of dataset ds (file dataspace fs, rows of
 * row[] dims, width values) into buf in file order, through memory dataspace ms (n, width).
 * -1 when HDF5 refuses. */
static int read_pairs(const struct rt_dataset *d, hid_t ds, hid_t fs, hid_t ms, hid_t mtype, int n,
                      const hsize_t *row, hsize_t width, void *buf)
{
    hsize_t zero[2] = {0, 0}, count[2] = {(hsize_t)n, width};
    hid_t sel = select_rows(fs, d->pairs, 0, n, row);
    int rc = sel < 0 || H5Sselect_hyperslab(ms, H5S_SELECT_SET, zero, NULL, count, NULL) < 0 ||
                     H5Dread(ds, mtype, ms, sel, d->dxpl, buf) < 0
                 ? -1
                 : 0;
    rt_h5_close(sel);
    return rc;
}

/* HDF5's conversion calls this for a stored value the memory type cannot hold (a float64
 * beyond float32's range, an int64 label beyond int32): the read then fails, and
 * read_failed finds the value. Infinities and NaN pass, for the finite check to name. */
static H5T_conv_ret_t on_conv_except(H5T_conv_except_t e, hid_t src, hid_t dst, void *src_buf,
                                     void *dst_buf, void *user)
{
    (void)dst;
    (void)dst_buf;
    if (e != H5T_CONV_EXCEPT_RANGE_HI && e != H5T_CONV_EXCEPT_RANGE_LOW) return H5T_CONV_UNHANDLED;
    /* HDF5 1.10 reports a stored float64 infinity as out of range too: let it through as
     * inf, for the finite check to name with its row */
    if (src_buf && H5Tget_class(src) == H5T_FLOAT && H5Tget_size(src) == sizeof(double) &&
        H5Tequal(src, H5T_NATIVE_DOUBLE) > 0 && isinf(*(const double *)src_buf))
        return H5T_CONV_UNHANDLED;
    *(int *)user = 1;
    return H5T_CONV_ABORT;
}

/* The first value of row `id` of X (which 0) or y (1) that does not fit its memory type, as
 * a message; RT_OK when the row fits. One row read as double or int64: the error path. */
static int check_row_range(const struct rt_dataset *d, int which, int64_t id)
{
    hid_t ds = which ? d->dy : d->dx, fs = which ? d->fsy : d->fsx;
    int rank = which ? d->y_rank : d->x_rank, labels = which && d->info.labels == RT_LABELS_CLASS;
    size_t width = which ? (size_t)d->K : (size_t)d->D;
    hsize_t start[4] = {(hsize_t)id, 0, 0, 0}, count[4] = {1, 1, 1, 1}, mdim = width;
    for (int k = 1; k < rank; k++)
        count[k] = which ? (hsize_t)d->K : d->x_row[k - 1];
    double *v = malloc(width * sizeof *v);
    long long *l = (long long *)v;
    hid_t sel = H5Scopy(fs), ms = H5Screate_simple(1, &mdim, NULL);
    int rc = !v || sel < 0 || ms < 0 ||
                     H5Sselect_hyperslab(sel, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                     H5Dread(ds, labels ? H5T_NATIVE_LLONG : H5T_NATIVE_DOUBLE, ms, sel,
                             H5P_DEFAULT, v) < 0
                 ? -1
                 : 0;
    int st = rc < 0 ? rt_errorf(RT_ERR_IO, "%s: reading row %lld failed", d->source, (long long)id)
                    : RT_OK;
    const char *key = which ? "y" : "x", *name = which ? d->yname : d->xname;
    for (size_t c = 0; st == RT_OK && c < width; c++) {
        if (labels && (l[c] < INT32_MIN || l[c] > INT32_MAX))
            st = rt_errorf(RT_ERR_SHAPE,
                           "%s: [data] %s = '%s' row %lld = %lld: expected a class "
                           "label that fits int32",
                           d->source, key, name, (long long)id, l[c]);
        else if (!labels && isfinite(v[c]) && fabs(v[c]) > FLT_MAX)
            st = rt_errorf(RT_ERR_SHAPE,
                           "%s: [data] %s = '%s' row %lld column %zu = %g: beyond "
                           "float32's range",
                           d->source, key, name, (long long)id, c, v[c]);
    }
    rt_h5_close(sel);
    rt_h5_close(ms);
    free(v);
    return st;
}

/* A failed read of rows (pairs[i].id, or first + i stride) of X (which 0) or y (1): the
 * value that did not convert, named with its row, or a plain I/O error. */
static int read_failed(struct rt_dataset *d, int which, int64_t first, int64_t stride, int64_t n)
{
    const char *key = which ? "y" : "x", *name = which ? d->yname : d->xname;
    if (d->range_error) {
        d->range_error = 0;
        for (int64_t i = 0; i < n; i++)
            RT_TRY(check_row_range(d, which, stride ? first + i * stride : d->pairs[i].id));
    }
    return rt_errorf(RT_ERR_IO, "%s: [data] %s = '%s': reading %lld rows from row %lld failed",
                     d->source, key, name, (long long)n, (long long)first);
}

/* Reads rows ids[0..n) of the file into x, y in the order given: one selection per
 * dataset, rows sorted for locality, then put back in batch order. */
static int read_file_rows(struct rt_dataset *d, const int64_t *ids, int n, float *x, void *y)
{
    if (n == 0) return RT_OK;
    for (int i = 0; i < n; i++) {
        d->pairs[i].id = ids[i];
        d->pairs[i].pos = i;
    }
    rt_sort_row_pairs(d->pairs, n);
    hsize_t y_dims[3] = {(hsize_t)d->K, 1, 1};
    if (read_pairs(d, d->dx, d->fsx, d->msx, H5T_NATIVE_FLOAT, n, d->x_row, (hsize_t)d->D, d->sx) <
        0)
        return read_failed(d, 0, d->pairs[0].id, 0, n);
    if (read_pairs(d, d->dy, d->fsy, d->msy, d->ytype, n, y_dims, (hsize_t)d->K, d->sy) < 0)
        return read_failed(d, 1, d->pairs[0].id, 0, n);
    for (int s = 0; s < n; s++) {
        int64_t p = d->pairs[s].pos;
        memcpy(x + (size_t)p * d->D, d->sx + (size_t)s * d->D, d->xrow);
        memcpy(y_row(y, d->yrow, p), y_row(d->sy, d->yrow, s), d->yrow);
    }
    return RT_OK;
}

/* Index in mx/my of row id. */
static int64_t mem_index(const struct rt_dataset *d, int64_t id)
{
    return d->o.shuffle == RT_SHUFFLE_SHARD ? (id - d->o.rank) / d->o.world : id;
}

/* Fills slot s with this rank's rows of `step`. Runs on the prefetch thread when
 * streaming, on the caller's thread otherwise. */
static int fill_slot(struct rt_dataset *d, int64_t step, int s)
{
    struct slot *sl = &d->slot[s];
    sl->step = -1;
    int n = step_ids(d, step, sl->ids);
    if (d->kind == SRC_TEXT) {
        rt_text_rows(&d->text, sl->x, sl->y, sl->ids, n);
    } else if (d->info.in_memory) {
        for (int i = 0; i < n; i++) {
            int64_t m = mem_index(d, sl->ids[i]);
            memcpy(sl->x + (size_t)i * d->D, d->mx + (size_t)m * d->D, d->xrow);
            memcpy(y_row(sl->y, d->yrow, i), y_row(d->my, d->yrow, m), d->yrow);
        }
    } else if (d->kind == SRC_SYNTH) {
        rt_synth_rows(&d->synth, sl->x, sl->y, sl->ids, n);
    } else {
        RT_TRY(read_file_rows(d, sl->ids, n, sl->x, sl->y));
    }
    sl->rows = n;
    sl->step = step;
    return RT_OK;
}

/* ---- prefetch thread -------------------------------------------------------------------- */

static void *prefetch_main(void *arg)
{
    struct rt_dataset *d = arg;
    rt_h5_quiet();
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->quit && d->req_step < 0)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->quit) break;
        int64_t step = d->req_step;
        int s = d->req_slot;
        d->req_step = -1;
        pthread_mutex_unlock(&d->mu);
        int st = fill_slot(d, step, s);
        pthread_mutex_lock(&d->mu);
        d->done_step = step;
        d->done_slot = s;
        d->done_status = st;
        d->busy = 0;
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static void prefetch_post(struct rt_dataset *d, int64_t step, int s)
{
    pthread_mutex_lock(&d->mu);
    d->req_step = step;
    d->req_slot = s;
    d->busy = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Waits until the thread has nothing pending or running. */
static void prefetch_wait(struct rt_dataset *d)
{
    if (!d->threaded) return;
    pthread_mutex_lock(&d->mu);
    while (d->busy)
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

/* ---- open ------------------------------------------------------------------------------- */

static int check_opts(const char *source, const struct rt_data_opts *o)
{
    if (o->world < 1)
        return rt_errorf(RT_ERR_INVAL, "%s: world = %d: expected at least 1 rank", source,
                         o->world);
    if (o->rank < 0 || o->rank >= o->world)
        return rt_errorf(RT_ERR_INVAL, "%s: rank = %d: expected 0 <= rank < %d", source, o->rank,
                         o->world);
    if (o->shuffle != RT_SHUFFLE_GLOBAL && o->shuffle != RT_SHUFFLE_SHARD &&
        o->shuffle != RT_SHUFFLE_OFF)
        return rt_errorf(RT_ERR_INVAL, "%s: shuffle = %d: not a shuffle mode", source,
                         (int)o->shuffle);
    if (o->global_batch < 1)
        return rt_errorf(RT_ERR_INVAL, "%s: train.batch = %lld: expected at least 1", source,
                         (long long)o->global_batch);
    if (o->global_batch % o->world != 0)
        return rt_errorf(RT_ERR_INVAL, "%s: train.batch = %lld is not divisible by %d ranks",
                         source, (long long)o->global_batch, o->world);
    if (o->global_batch / o->world > (1 << 30))
        return rt_errorf(RT_ERR_INVAL, "%s: train.batch = %lld: %lld rows per rank is too many",
                         source, (long long)o->global_batch,
                         (long long)(o->global_batch / o->world));
    if (!(o->memory_mb >= 0.0))
        return rt_errorf(RT_ERR_INVAL, "%s: memory_mb = %g: expected >= 0", source, o->memory_mb);
    return RT_OK;
}

/* The type of a dataset, for checks and messages. */
struct dtype {
    H5T_class_t cls;
    size_t size;   /* bytes */
    char name[32]; /* rt_h5_type_name: "float32", "int64", ... */
};

/* Opens dataset `name` ([data] `key`) of d->file into *out, with a chunk cache for random
 * batches. */
static int open_member(struct rt_dataset *d, const char *name, const char *key, hid_t *out)
{
    const char *path = d->source;
    /* H5Lexists checks one link at a time: each group on the way must exist first */
    char part[RT_DATA_NAME_MAX];
    htri_t ex = 1;
    for (const char *p = name; ex > 0 && (p = strchr(p + 1, '/')) != NULL;) {
        snprintf(part, sizeof part, "%.*s", (int)(p - name), name);
        ex = H5Lexists(d->file, part, H5P_DEFAULT);
    }
    if (ex > 0) ex = H5Lexists(d->file, name, H5P_DEFAULT);
    if (ex <= 0)
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: [data] %s = '%s': no such dataset in the file (expected inputs "
                         "(N, D) or (N, C, H, W) and labels (N) or targets (N, K))",
                         path, key, name);
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl < 0) return rt_errorf(RT_ERR_HDF5, "%s: H5Pcreate failed", path);
    /* a larger chunk cache helps random batches of chunked (compressed) files */
    H5Pset_chunk_cache(dapl, 12421, (size_t)32 << 20, 0.75);
    hid_t ds = H5Dopen2(d->file, name, dapl);
    H5Pclose(dapl);
    if (ds < 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: [data] %s = '%s' is not a dataset", path, key, name);
    *out = ds;
    return RT_OK;
}

/* The type of dataset /name, open as ds. */
static int read_dtype(const struct rt_dataset *d, hid_t ds, const char *name, struct dtype *t)
{
    *t = (struct dtype){.cls = H5T_NO_CLASS}; /* defined on every path, failures included */
    hid_t id = H5Dget_type(ds);
    if (id < 0) return rt_errorf(RT_ERR_FORMAT, "%s: cannot read the type of /%s", d->source, name);
    t->cls = H5Tget_class(id);
    t->size = H5Tget_size(id);
    rt_h5_type_name(id, t->name, sizeof t->name);
    H5Tclose(id);
    return RT_OK;
}

/* The file dataspace of dataset /name (open as ds) into *space, its extent into dims and
 * *rank (negative when HDF5 cannot tell). */
static int read_dims(const struct rt_dataset *d, hid_t ds, const char *name, hid_t *space,
                     hsize_t *dims, int *rank)
{
    *rank = -1;
    *space = H5Dget_space(ds);
    if (*space < 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: cannot read the shape of /%s", d->source, name);
    *rank = H5Sget_simple_extent_dims(*space, dims, NULL);
    return RT_OK;
}

/* Inputs: any float (float16, 32, 64) or integer type, read as float32 through HDF5's
 * conversion; (N, D), (N, H, W) as one channel, or (N, C, H, W). Sets fsx, x_rank, x_row
 * and the sample shape; the extent goes to xd. */
static int check_x(struct rt_dataset *d, hsize_t *xd)
{
    struct dtype t;
    int rank;
    RT_TRY(read_dtype(d, d->dx, d->xname, &t));
    if (t.cls != H5T_FLOAT && t.cls != H5T_INTEGER)
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: [data] x = '%s' is %s: expected numbers (float or integer)",
                         d->source, d->xname, t.name);
    RT_TRY(read_dims(d, d->dx, d->xname, &d->fsx, xd, &rank));
    if (rank < 2 || rank > 4)
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: [data] x = '%s' has %d dimensions: expected 2 (N, D), 3 (N, H, W) "
                         "or 4 (N, C, H, W)",
                         d->source, d->xname, rank);
    struct rt_shape *sh = &d->info.shape;
    hsize_t flat = 1;
    for (int k = 1; k < rank; k++) {
        if (xd[k] < 1 || xd[k] > (1u << 24))
            return rt_errorf(RT_ERR_SHAPE,
                             "%s: [data] x = '%s': dimension %d is %llu: expected "
                             "1 to 2^24",
                             d->source, d->xname, k, (unsigned long long)xd[k]);
        d->x_row[k - 1] = xd[k];
        flat *= xd[k];
    }
    for (int k = rank - 1; k < 3; k++)
        d->x_row[k] = 1;
    d->x_rank = rank;
    if (rank == 2)
        *sh = (struct rt_shape){.rank = 1, .d = {(int)xd[1]}};
    else
        *sh = (struct rt_shape){
            .rank = 3, .d = {rank == 4 ? (int)xd[1] : 1, (int)xd[rank - 2], (int)xd[rank - 1]}};
    xd[1] = flat; /* rows are read flat */
    return RT_OK;
}

/* /y: int32 (N) class labels or float32 (N, K) targets. Sets fsy, labels, ytype, K and
 * y_rank; the extent goes to yd. */
static int check_y(struct rt_dataset *d, hsize_t *yd)
{
    const char *path = d->source;
    struct dtype t;
    int yr;
    RT_TRY(read_dtype(d, d->dy, d->yname, &t));
    RT_TRY(read_dims(d, d->dy, d->yname, &d->fsy, yd, &yr));
    if (t.cls == H5T_INTEGER) { /* any width, signed or not: converted to int32 */
        if (yr != 1)
            return rt_errorf(RT_ERR_FORMAT,
                             "%s: [data] y = '%s' is %s with %d dimensions: class labels "
                             "must be 1-D (N)",
                             path, d->yname, t.name, yr);
        d->info.labels = RT_LABELS_CLASS;
        d->ytype = H5T_NATIVE_INT32;
        d->K = 1;
    } else if (t.cls == H5T_FLOAT) { /* float16, 32 or 64: converted to float32 */
        if (yr != 2)
            return rt_errorf(RT_ERR_FORMAT,
                             "%s: [data] y = '%s' is %s with %d dimensions: targets "
                             "must be 2-D (N, K)",
                             path, d->yname, t.name, yr);
        d->info.labels = RT_LABELS_TARGET;
        d->ytype = H5T_NATIVE_FLOAT;
        d->K = (int)(yd[1] > 0x7fffffff ? 0 : yd[1]);
    } else {
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: [data] y = '%s' is %s: expected integer (N) class labels or "
                         "float (N, K) targets",
                         path, d->yname, t.name);
    }
    d->y_rank = yr;
    return RT_OK;
}

/* Opens /X and /y of d->file and checks dtype, rank and shape. Sets N, D, K, labels. */
static int open_file_source(struct rt_dataset *d)
{
    const char *path = d->source;
    hsize_t xd[H5S_MAX_RANK] = {0}, yd[H5S_MAX_RANK] = {0};
    RT_TRY(open_member(d, d->xname, "x", &d->dx));
    RT_TRY(open_member(d, d->yname, "y", &d->dy));
    RT_TRY(check_x(d, xd));
    RT_TRY(check_y(d, yd));
    d->dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (d->dxpl < 0 || H5Pset_type_conv_cb(d->dxpl, on_conv_except, &d->range_error) < 0)
        return rt_errorf(RT_ERR_HDF5, "%s: cannot set up HDF5's type conversion", path);
    if (xd[0] != yd[0])
        return rt_errorf(RT_ERR_FORMAT, "%s: /%s has %llu rows but /%s has %llu", path, d->xname,
                         (unsigned long long)xd[0], d->yname, (unsigned long long)yd[0]);
    if (xd[1] < 1 || xd[1] > 0x7fffffff)
        return rt_errorf(RT_ERR_SHAPE, "%s: /%s has %llu values per row: expected 1 to 2^31-1",
                         path, d->xname, (unsigned long long)xd[1]);
    if (d->info.labels == RT_LABELS_TARGET && d->K < 1)
        return rt_errorf(RT_ERR_SHAPE, "%s: /y has %llu columns: expected 1 to 2^31-1", path,
                         (unsigned long long)yd[1]);
    d->N = (int64_t)xd[0];
    d->D = (int)xd[1];
    return RT_OK;
}

static int check_split(const struct rt_dataset *d)
{
    if (d->o.split != 0 && d->o.split != 1)
        return rt_errorf(RT_ERR_INVAL, "%s: split = %d: expected 0 (train) or 1 (test)", d->source,
                         d->o.split);
    return RT_OK;
}

/* A text file (d->file): the size of the split's byte dataset, and the rows it gives with
 * context T. Its bytes are read by prepare_rows, once the arena is there. */
static int open_text_source(struct rt_dataset *d)
{
    const char *path = d->source;
    int T = d->o.context;
    RT_TRY(check_split(d));
    if (T < 1 || T > (1 << 24))
        return rt_errorf(RT_ERR_INVAL,
                         "%s: model.context = %d: a text dataset needs 1 to 16777216 tokens "
                         "per sample",
                         path, T);
    const char *name = rt_text_split_name(d->o.split);
    int64_t n = rt_h5_dataset_size(d->file, name);
    if (n < 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: a text-bytes file without a readable /%s dataset",
                         path, name);
    RT_TRY(rt_text_init(&d->text, path, d->o.split, n, T));
    snprintf(d->xname, sizeof d->xname, "%s", name);
    snprintf(d->yname, sizeof d->yname, "%s", name);
    d->N = rt_text_rows_count(&d->text);
    d->D = T;
    d->K = 1;
    d->info.labels = RT_LABELS_CLASS;
    d->info.shape = (struct rt_shape){.rank = 1, .d = {T}};
    d->info.positions = T;
    d->info.vocab = RT_TEXT_VOCAB;
    return RT_OK;
}

static int open_synth_source(struct rt_dataset *d)
{
    const char *task = d->source + strlen("synth:");
    if (rt_synth_known(task) != 0)
        return rt_errorf(RT_ERR_INVAL, "%s: unknown synthetic task \"%s\" (known: bigmodel)",
                         d->source, task);
    RT_TRY(check_split(d));
    d->N = d->o.synth_rows;
    d->D = RT_SYNTH_DIM;
    d->K = RT_SYNTH_DIM;
    d->info.labels = RT_LABELS_TARGET;
    d->info.shape = (struct rt_shape){.rank = 1, .d = {RT_SYNTH_DIM}};
    return RT_OK;
}

/* Reads n rows first, first + stride, ... of X (which 0) or y (1) into buf, as one strided
 * selection in the file's rank; memory holds flat rows. -1 when HDF5 refuses. */
static int read_strided(const struct rt_dataset *d, int which, int64_t first, int64_t stride,
                        int64_t n, void *buf)
{
    hid_t ds = which ? d->dy : d->dx, fs = which ? d->fsy : d->fsx;
    hid_t mtype = which ? d->ytype : H5T_NATIVE_FLOAT;
    int rank = which ? d->y_rank : d->x_rank;
    hsize_t width = which ? (hsize_t)d->K : (hsize_t)d->D;
    hsize_t start[4] = {(hsize_t)first, 0, 0, 0}, step[4] = {(hsize_t)stride, 1, 1, 1};
    hsize_t count[4] = {(hsize_t)n, 1, 1, 1}, block[4] = {1, 1, 1, 1};
    for (int k = 1; k < rank; k++)
        block[k] = which ? (hsize_t)d->K : d->x_row[k - 1];
    hsize_t mdims[2] = {(hsize_t)n, width};
    hid_t ms = H5Screate_simple(which ? d->y_rank : 2, mdims, NULL);
    int rc = ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, step, count, block) < 0 ||
                     H5Dread(ds, mtype, ms, fs, d->dxpl, buf) < 0
                 ? -1
                 : 0;
    rt_h5_close(ms);
    return rc;
}

/* Reads this rank's rows into mx/my: all rows, or the shard as one strided selection. */
static int load_file_rows(struct rt_dataset *d)
{
    int shard = d->o.shuffle == RT_SHUFFLE_SHARD;
    int64_t n = d->n_order;
    int64_t first = shard ? d->o.rank : 0, stride = shard ? d->o.world : 1;
    if (read_strided(d, 0, first, stride, n, d->mx) < 0) return read_failed(d, 0, first, stride, n);
    if (read_strided(d, 1, first, stride, n, d->my) < 0) return read_failed(d, 1, first, stride, n);
    return RT_OK;
}

/* Generates this rank's rows into mx/my, cap rows at a time through slot 0's id buffer. */
static void load_synth_rows(struct rt_dataset *d)
{
    int64_t *ids = d->slot[0].ids;
    for (int64_t j0 = 0; j0 < d->n_order; j0 += d->cap) {
        int64_t n = d->n_order - j0 < d->cap ? d->n_order - j0 : d->cap;
        for (int64_t i = 0; i < n; i++)
            ids[i] = d->o.shuffle == RT_SHUFFLE_SHARD ? d->o.rank + (j0 + i) * d->o.world : j0 + i;
        rt_synth_rows(&d->synth, d->mx + (size_t)j0 * d->D, y_row(d->my, d->yrow, j0), ids, n);
    }
}

static int check_row_count(const struct rt_dataset *d)
{
    if (d->N < 1)
        return rt_errorf(RT_ERR_SHAPE, "%s: %lld rows: the dataset is empty", d->source,
                         (long long)d->N);
    if (d->N < d->o.world)
        return rt_errorf(RT_ERR_SHAPE,
                         "%s: %lld rows for %d ranks: every rank needs at least "
                         "one row",
                         d->source, (long long)d->N, d->o.world);
    return RT_OK;
}

/* Row sizes, steps, this rank's shard, the most rows of one step, whether the rows fit in
 * memory_mb, and the rows of one validation read. */
static void plan_rows(struct rt_dataset *d)
{
    const struct rt_data_opts *o = &d->o;
    d->xrow = sizeof(float) * (size_t)d->D;
    d->P = d->info.positions;
    d->yrow = d->info.labels == RT_LABELS_CLASS ? sizeof(int32_t) * (size_t)d->P
                                                : sizeof(float) * (size_t)d->K;
    d->lb = o->global_batch / o->world;
    d->steps = (d->N + o->global_batch - 1) / o->global_batch;
    d->n_shard = shard_rows(d->N, o->world, o->rank);
    int shard = o->shuffle == RT_SHUFFLE_SHARD;
    d->n_order = shard ? d->n_shard : d->N;
    /* most rows one step gives this rank: its shard, or ceil(min(GB, N) / world) */
    int64_t span = d->N < o->global_batch ? d->N : o->global_batch;
    int64_t per_step = shard ? d->n_shard : (span + o->world - 1) / o->world;
    d->cap = (int)(per_step < d->lb ? per_step : d->lb);

    size_t rowb = d->xrow + d->yrow;
    double held = (double)d->n_order * (double)rowb;
    /* text rows are cut from the split's bytes, which are always held */
    d->info.in_memory = d->kind == SRC_TEXT || held <= o->memory_mb * 1024.0 * 1024.0;
    d->info.rows = d->N;
    d->info.dim = d->D;
    d->info.targets = d->info.labels == RT_LABELS_CLASS ? 1 : d->K;

    d->vrows = (int64_t)(VALIDATE_CHUNK_BYTES / rowb);
    if (d->vrows < 1) d->vrows = 1;
    if (d->vrows > d->n_shard) d->vrows = d->n_shard;
}

/* One block of the dataset arena: its footprint is added to *need, and when a is not NULL it
 * is also carved from a. carve_buffers runs once to size the arena and once to carve it, so
 * the two cannot list different blocks. */
static void *arena_block(struct rt_arena *a, size_t *need, size_t bytes)
{
    *need += rt_arena_footprint(bytes);
    return a ? rt_arena_alloc(a, bytes) : NULL;
}

/* Every buffer of the dataset, in arena order. Only sizes when a is NULL. Returns the synth
 * teacher block (NULL for files and when sizing). */
static float *carve_buffers(struct rt_dataset *d, struct rt_arena *a, size_t *need)
{
    size_t cap = (size_t)d->cap, n_order = (size_t)d->n_order, vrows = (size_t)d->vrows;
    size_t srcb = strlen(d->source) + 1;
    int stream_file = !d->info.in_memory && d->kind == SRC_FILE;
    int file_rows = d->kind == SRC_FILE; /* validate reads a chunk when streaming */
    char *src = arena_block(a, need, srcb);
    if (src) {
        memcpy(src, d->source, srcb);
        d->source = src;
    }
    d->order = arena_block(a, need, sizeof(int64_t) * n_order);
    for (int s = 0; s < 2; s++) {
        d->slot[s].x = arena_block(a, need, d->xrow * cap);
        d->slot[s].y = arena_block(a, need, d->yrow * cap);
        d->slot[s].ids = arena_block(a, need, sizeof(int64_t) * cap);
        d->slot[s].step = -1;
    }
    if (d->kind == SRC_TEXT) {
        d->tbytes = arena_block(a, need, (size_t)d->text.n);
        d->text.bytes = d->tbytes;
    } else if (d->info.in_memory) {
        d->mx = arena_block(a, need, d->xrow * n_order);
        d->my = arena_block(a, need, d->yrow * n_order);
    }
    if (stream_file) {
        d->pairs = arena_block(a, need, sizeof(struct rt_row_pair) * cap);
        d->sx = arena_block(a, need, d->xrow * cap);
        d->sy = arena_block(a, need, d->yrow * cap);
    }
    if (file_rows && !d->info.in_memory) {
        d->vx = arena_block(a, need, d->xrow * vrows);
        d->vy = arena_block(a, need, d->yrow * vrows);
    }
    return d->kind == SRC_SYNTH ? arena_block(a, need, rt_synth_teacher_bytes()) : NULL;
}

/* One arena for every buffer; *teacher gets the synth teacher block. */
static int alloc_buffers(struct rt_dataset *d, float **teacher)
{
    size_t need = 0, carved = 0;
    carve_buffers(d, NULL, &need);
    if (rt_arena_init(&d->arena, "dataset", need) < 0)
        return rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate %zu bytes of data buffers", d->source,
                         need);
    *teacher = carve_buffers(d, &d->arena, &carved);
    if (d->arena.used != need) /* every block carved is counted in need */
        return rt_errorf(RT_ERR_INTERNAL, "%s: dataset arena sized wrongly", d->source);
    return RT_OK;
}

/* Rows in memory are generated or read now (and the file let go); streamed files get the
 * memory dataspaces of one batch. */
static int prepare_rows(struct rt_dataset *d, float *teacher)
{
    if (d->kind == SRC_SYNTH) {
        rt_synth_init(&d->synth, teacher, d->o.seed, d->o.split);
        if (d->info.in_memory) load_synth_rows(d);
        return RT_OK;
    }
    if (d->kind == SRC_TEXT) {
        RT_TRY(rt_h5_get_intv(d->file, d->source, d->xname, H5T_NATIVE_UINT8, d->tbytes,
                              (size_t)d->text.n));
        d->file = rt_h5_close(d->file);
        return RT_OK;
    }
    if (d->info.in_memory) {
        RT_TRY(load_file_rows(d));
        /* everything is in memory: let go of the file */
        d->fsx = rt_h5_close(d->fsx);
        d->fsy = rt_h5_close(d->fsy);
        d->dx = rt_h5_close(d->dx);
        d->dy = rt_h5_close(d->dy);
        d->file = rt_h5_close(d->file);
        return RT_OK;
    }
    hsize_t mdx[2] = {(hsize_t)d->cap, (hsize_t)d->D}, mdy[2] = {(hsize_t)d->cap, (hsize_t)d->K};
    d->msx = H5Screate_simple(2, mdx, NULL);
    d->msy = H5Screate_simple(d->y_rank, mdy, NULL);
    if (d->msx < 0 || d->msy < 0)
        return rt_errorf(RT_ERR_HDF5, "%s: H5Screate_simple failed", d->source);
    return RT_OK;
}

static int start_prefetch(struct rt_dataset *d)
{
    if (pthread_mutex_init(&d->mu, NULL) != 0)
        return rt_errorf(RT_ERR_INTERNAL, "%s: pthread_mutex_init failed", d->source);
    if (pthread_cond_init(&d->cv, NULL) != 0) {
        pthread_mutex_destroy(&d->mu);
        return rt_errorf(RT_ERR_INTERNAL, "%s: pthread_cond_init failed", d->source);
    }
    if (pthread_create(&d->thread, NULL, prefetch_main, d) != 0) {
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
        return rt_errorf(RT_ERR_NOMEM, "%s: cannot start the prefetch thread", d->source);
    }
    d->threaded = 1;
    return RT_OK;
}

static int open_impl(struct rt_dataset *d)
{
    float *teacher = NULL;
    d->info.positions = 1;
    if (strncmp(d->source, "synth:", 6) == 0) {
        d->kind = SRC_SYNTH;
        RT_TRY(open_synth_source(d));
    } else {
        int text = 0;
        RT_TRY(rt_h5_open_read(d->source, &d->file));
        RT_TRY(rt_text_probe(d->file, d->source, &text));
        d->kind = text ? SRC_TEXT : SRC_FILE;
        RT_TRY(text ? open_text_source(d) : open_file_source(d));
    }
    RT_TRY(check_row_count(d));
    plan_rows(d);
    RT_TRY(alloc_buffers(d, &teacher));
    RT_TRY(prepare_rows(d, teacher));
    if (d->o.shuffle == RT_SHUFFLE_OFF)
        for (int64_t i = 0; i < d->n_order; i++)
            d->order[i] = i;
    /* file batches stay on the calling thread when HDF5 is not thread-safe */
    if (!d->info.in_memory && (d->kind == SRC_SYNTH || rt_h5_threadsafe()))
        RT_TRY(start_prefetch(d));
    return RT_OK;
}

int rt_dataset_open(struct rt_dataset **out, const char *source, const struct rt_data_opts *o)
{
    *out = NULL;
    if (!source || !*source) return rt_errorf(RT_ERR_INVAL, "data source: empty name");
    RT_TRY(check_opts(source, o));
    struct rt_dataset *d = calloc(1, sizeof *d);
    if (!d) return rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate the dataset", source);
    d->source = (char *)source; /* borrowed until open_impl copies it into the arena */
    d->o = *o;
    d->file = d->dx = d->dy = d->fsx = d->fsy = d->msx = d->msy = d->dxpl = -1;
    snprintf(d->xname, sizeof d->xname, "%s", o->x_name && *o->x_name ? o->x_name : "X");
    snprintf(d->yname, sizeof d->yname, "%s", o->y_name && *o->y_name ? o->y_name : "y");
    d->epoch = -1;
    d->req_step = d->done_step = -1;
    int st = open_impl(d);
    if (st < 0) {
        rt_dataset_close(d);
        return st;
    }
    *out = d;
    return RT_OK;
}

void rt_dataset_close(struct rt_dataset *d)
{
    if (!d) return;
    if (d->threaded) {
        pthread_mutex_lock(&d->mu);
        d->quit = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
    }
    rt_h5_close(d->dxpl);
    rt_h5_close(d->msx);
    rt_h5_close(d->msy);
    rt_h5_close(d->fsx);
    rt_h5_close(d->fsy);
    rt_h5_close(d->dx);
    rt_h5_close(d->dy);
    rt_h5_close(d->file);
    rt_arena_free(&d->arena);
    free(d);
}

const struct rt_dataset_info *rt_dataset_info(const struct rt_dataset *d)
{
    return &d->info;
}

const char *rt_dataset_source(const struct rt_dataset *d)
{
    return d->source;
}

struct rt_shape rt_dataset_sample_shape(const struct rt_dataset *d)
{
    return d->info.shape;
}

int rt_dataset_peek_shape(const char *source, const char *x_name, struct rt_shape *out)
{
    if (strncmp(source, "synth:", 6) == 0) {
        *out = (struct rt_shape){.rank = 1, .d = {RT_SYNTH_DIM}};
        return RT_OK;
    }
    struct rt_dataset d;
    memset(&d, 0, sizeof d);
    d.source = (char *)source;
    d.file = d.dx = d.fsx = -1;
    snprintf(d.xname, sizeof d.xname, "%s", x_name && *x_name ? x_name : "X");
    hsize_t xd[H5S_MAX_RANK] = {0};
    int text = 0;
    int st = rt_h5_open_read(source, &d.file);
    if (st == RT_OK) st = rt_text_probe(d.file, source, &text);
    if (st == RT_OK && text) d.info.shape = (struct rt_shape){.rank = 1, .d = {0}};
    if (st == RT_OK && !text) st = open_member(&d, d.xname, "x", &d.dx);
    if (st == RT_OK && !text) st = check_x(&d, xd);
    if (st == RT_OK) *out = d.info.shape;
    rt_h5_close(d.fsx);
    rt_h5_close(d.dx);
    rt_h5_close(d.file);
    return st;
}

int64_t rt_dataset_steps_per_epoch(const struct rt_dataset *d)
{
    return d->steps;
}

/* ---- epochs and batches ----------------------------------------------------------------- */

int rt_dataset_begin_epoch(struct rt_dataset *d, int64_t epoch, int64_t first_step)
{
    if (epoch < 0)
        return rt_errorf(RT_ERR_INVAL, "%s: epoch = %lld: expected >= 0", d->source,
                         (long long)epoch);
    if (first_step < 0 || first_step > d->steps)
        return rt_errorf(RT_ERR_INVAL, "%s: first step %lld of epoch %lld: expected 0..%lld",
                         d->source, (long long)first_step, (long long)epoch, (long long)d->steps);
    prefetch_wait(d); /* a prefetch of the old epoch may still run: let it finish, drop it */
    if (d->o.shuffle == RT_SHUFFLE_GLOBAL)
        permute(d->order, d->N, rt_rng_derive(d->o.seed, RT_STREAM_SHUFFLE, (uint64_t)epoch));
    else if (d->o.shuffle == RT_SHUFFLE_SHARD)
        permute(d->order, d->n_shard,
                rt_rng_derive(d->o.seed, RT_STREAM_SHARD,
                              ((uint64_t)epoch << 20) + (uint64_t)d->o.rank));
    d->epoch = epoch;
    d->next_step = first_step;
    d->slot[0].step = d->slot[1].step = -1;
    d->done_step = -1;
    if (d->threaded && first_step < d->steps) prefetch_post(d, first_step, 0);
    return RT_OK;
}

int rt_dataset_next(struct rt_dataset *d, struct rt_batch *b)
{
    if (d->epoch < 0)
        return rt_errorf(RT_ERR_INVAL, "%s: rt_dataset_next before rt_dataset_begin_epoch",
                         d->source);
    int64_t k = d->next_step;
    if (k >= d->steps)
        return rt_errorf(RT_ERR_INVAL, "%s: epoch %lld has %lld steps: no step %lld", d->source,
                         (long long)d->epoch, (long long)d->steps, (long long)k);
    int s;
    if (d->threaded) {
        prefetch_wait(d);
        if (d->done_step != k)
            return rt_errorf(RT_ERR_INTERNAL, "%s: prefetched step %lld, expected %lld", d->source,
                             (long long)d->done_step, (long long)k);
        if (d->done_status < 0) return d->done_status;
        s = d->done_slot;
        if (k + 1 < d->steps) prefetch_post(d, k + 1, 1 - s);
    } else {
        s = 0;
        RT_TRY(fill_slot(d, k, s));
    }
    b->x = d->slot[s].x;
    b->y = d->slot[s].y;
    b->ids = d->slot[s].ids;
    b->local_rows = d->slot[s].rows;
    b->global_rows = step_global_rows(d, k);
    b->step = k;
    d->next_step = k + 1;
    return RT_OK;
}

/* ---- validation ------------------------------------------------------------------------- */

/* Checks rows x (n, D) and y ((n, P) int32 labels, or (n, K) float targets) whose row ids
 * are first, first + stride, ... */
static int check_rows(const struct rt_dataset *d, const float *x, const void *y, int64_t n,
                      int64_t first, int64_t stride, int outputs)
{
    const int32_t *labels = y;
    const float *targets = y;
    for (int64_t i = 0; i < n; i++) {
        int64_t row = first + i * stride;
        const float *xr = x + (size_t)i * d->D;
        for (int c = 0; c < d->D; c++)
            if (!isfinite(xr[c]))
                return rt_errorf(RT_ERR_NONFINITE,
                                 "%s: /%s row %lld column %d = %g: expected a finite value",
                                 d->source, d->xname, (long long)row, c, (double)xr[c]);
        if (d->info.labels == RT_LABELS_CLASS) {
            for (int p = 0; p < d->P; p++) {
                int32_t v = labels[(size_t)i * d->P + p];
                if (v < 0 || v >= outputs)
                    return rt_errorf(RT_ERR_SHAPE,
                                     "%s: /%s row %lld = %d: expected a class label in [0, %d)",
                                     d->source, d->yname, (long long)row, (int)v, outputs);
            }
        } else {
            const float *yr = targets + (size_t)i * d->K;
            for (int c = 0; c < d->K; c++)
                if (!isfinite(yr[c]))
                    return rt_errorf(RT_ERR_NONFINITE,
                                     "%s: /%s row %lld column %d = %g: expected a finite value",
                                     d->source, d->yname, (long long)row, c, (double)yr[c]);
        }
    }
    return RT_OK;
}

/* A text source against a model: T tokens in, a class per byte value out, cross-entropy. */
static int check_text_fit(const struct rt_dataset *d, int input_dim, int outputs, enum rt_loss loss)
{
    if (d->D != input_dim)
        return rt_errorf(RT_ERR_SHAPE,
                         "%s: samples are %d tokens (model.context) but the model takes %d",
                         d->source, d->D, input_dim);
    if (loss != RT_LOSS_CE)
        return rt_errorf(RT_ERR_SHAPE,
                         "%s: text data has a next-byte class per position: expected loss = ce",
                         d->source);
    if (outputs < RT_TEXT_VOCAB)
        return rt_errorf(RT_ERR_SHAPE,
                         "%s: the model predicts %d classes but the text has %d byte values",
                         d->source, outputs, RT_TEXT_VOCAB);
    return RT_OK;
}

/* The model's input width, outputs and loss against the shapes and kind of /X and /y. */
static int check_model_fit(const struct rt_dataset *d, int input_dim, int outputs,
                           enum rt_loss loss)
{
    if (d->kind == SRC_TEXT) return check_text_fit(d, input_dim, outputs, loss);
    if (d->D != input_dim)
        return rt_errorf(RT_ERR_SHAPE,
                         "%s: /%s has %d values per row but the model's input width is %d",
                         d->source, d->xname, d->D, input_dim);
    if (loss == RT_LOSS_CE) {
        if (d->info.labels != RT_LABELS_CLASS)
            return rt_errorf(RT_ERR_SHAPE,
                             "%s: /y holds float32 targets (N, %d) but loss = ce "
                             "needs int32 class labels (N)",
                             d->source, d->K);
    } else {
        if (d->info.labels != RT_LABELS_TARGET)
            return rt_errorf(RT_ERR_SHAPE,
                             "%s: /y holds int32 class labels but loss = mse "
                             "needs float32 targets (N, %d)",
                             d->source, outputs);
        if (d->K != outputs)
            return rt_errorf(RT_ERR_SHAPE, "%s: /y has %d columns but the model has %d outputs",
                             d->source, d->K, outputs);
    }
    return RT_OK;
}

/* This rank's rows in memory: the shard itself in shard mode, every world-th row otherwise. */
static int validate_memory(struct rt_dataset *d, int outputs)
{
    int rank = d->o.rank, world = d->o.world;
    if (d->o.shuffle == RT_SHUFFLE_SHARD)
        return check_rows(d, d->mx, d->my, d->n_shard, rank, world, outputs);
    for (int64_t j = 0; j < d->n_shard; j++) {
        int64_t row = rank + j * world;
        RT_TRY(check_rows(d, d->mx + (size_t)row * d->D, y_row(d->my, d->yrow, row), 1, row, world,
                          outputs));
    }
    return RT_OK;
}

/* This rank's rows of a streamed file, read vrows at a time into vx/vy. */
static int validate_file(struct rt_dataset *d, int outputs)
{
    int rank = d->o.rank, world = d->o.world;
    prefetch_wait(d); /* the thread is idle from here on: HDF5 handles are ours */
    for (int64_t j0 = 0; j0 < d->n_shard; j0 += d->vrows) {
        int64_t n = d->n_shard - j0 < d->vrows ? d->n_shard - j0 : d->vrows;
        int64_t first = rank + j0 * world;
        if (read_strided(d, 0, first, world, n, d->vx) < 0)
            return read_failed(d, 0, first, world, n);
        if (read_strided(d, 1, first, world, n, d->vy) < 0)
            return read_failed(d, 1, first, world, n);
        RT_TRY(check_rows(d, d->vx, d->vy, n, first, world, outputs));
    }
    return RT_OK;
}

int rt_dataset_validate(struct rt_dataset *d, int input_dim, int outputs, enum rt_loss loss)
{
    RT_TRY(check_model_fit(d, input_dim, outputs, loss));
    /* generated values are finite by construction; bytes are finite and below 256 */
    if (d->kind == SRC_SYNTH || d->kind == SRC_TEXT) return RT_OK;
    if (d->info.in_memory) return validate_memory(d, outputs);
    return validate_file(d, outputs);
}
