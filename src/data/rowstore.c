/* rowstore.c - a table of fixed-width float32 rows in memory or in an HDF5 scratch file
 * (see rowstore.h).
 *
 * Memory kind: one block of N*W floats; put/read are one memcpy, gather a memcpy per row.
 *
 * File kind: dataset /rows float32 (N, W) of a file created at open and removed at close,
 * contiguous, no filters. put/read select one hyperslab of rows. A gather is ONE
 * H5Dread, as dataset.c reads a batch:
 *
 *     index  = [ 7  2  9  3  2 ]            (requested order, repeats allowed)
 *     sorted = [ 2  2  3  7  9 ]  pos = [1 4 3 0 2]
 *     runs   = [2,4) [7,8) [9,10)           one hyperslab each, OR-ed into one selection
 *     buf    = rows 2 3 7 9                 (file order, each distinct row once)
 *     dst[pos] = buf[slot]                  scatter back; both 2s copy buf row 0
 *
 * Reading each distinct row once matters: HDF5 merges overlapping hyperslabs, so a
 * selection of n rows with repeats holds fewer than n rows and would not match an n-row
 * memory selection.
 *
 * Cost (HDF5 1.10.8, 65536 x 1000 file store in the page cache, 128 random rows): a gather
 * takes about 0.25 ms contiguous, against 0.06-0.1 ms for the memory kind. Chunked, it took
 * 9 ms: a union of hyperslabs read into a compact buffer is not "the same shape" as the
 * file selection, so HDF5 maps the memory side to chunks one float at a time (u*W calls),
 * and a chunk that fits the chunk cache is read whole on a miss. (One H5Dread per run of a
 * chunked dataset without a cache: 0.5 ms.) Scratch needs no chunks, so it has none.
 *
 * What it does not do: no compression or checksums (the file is scratch and dies with the
 * store), no locking (the file is private to one store), no MPI.
 *
 * Dimension letters: N rows, W width (floats per row), G max_gather, n rows of one call,
 * u distinct rows of one gather. */
#include "ringtrain/rowstore.h"
#include "h5/h5util.h"
#include "ringtrain/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SELECT_LEAF_RUNS 32 /* runs OR-ed in a row before halving */

#define MEMORY_NAME "row store (memory)" /* what messages call a memory store */

struct run {
    hsize_t first, count; /* rows [first, first + count) */
};

struct rt_rowstore {
    enum rt_rowstore_kind kind;
    int64_t rows;     /* N */
    int width;        /* W */
    int max_gather;   /* G */
    size_t row_bytes; /* W * sizeof(float) */
    const char *name; /* path, or MEMORY_NAME: for messages */

    float *mem; /* (N, W) memory kind; owned */

    char *path;                /* (strlen + 1) owned; file kind only */
    int created;               /* path was created by open: close removes it */
    hid_t file;                /* -1 when not open */
    hid_t ds;                  /* /rows */
    hid_t fs;                  /* its file dataspace (N, W); each call sets its selection */
    hid_t ms;                  /* memory dataspace (G, W) of buf */
    struct rt_row_pair *pairs; /* (G) gather scratch: (row, position), sorted by row */
    struct run *runs;          /* (G) runs of consecutive distinct rows */
    float *buf;                /* (G, W) distinct rows of a gather in file order */
};

/* ---- validation ------------------------------------------------------------------------- */

static int check_range(const struct rt_rowstore *s, const char *what, int64_t first, int64_t n,
                       const void *ptr)
{
    if (n < 0)
        return rt_errorf(RT_ERR_INVAL, "%s: %s of n = %lld rows: expected n >= 0", s->name, what,
                         (long long)n);
    if (first < 0 || first > s->rows || n > s->rows - first)
        return rt_errorf(RT_ERR_INVAL,
                         "%s: %s of %lld rows from row %lld: outside the table's %lld rows",
                         s->name, what, (long long)n, (long long)first, (long long)s->rows);
    if (n > 0 && !ptr)
        return rt_errorf(RT_ERR_INVAL, "%s: %s of %lld rows: NULL buffer", s->name, what,
                         (long long)n);
    return RT_OK;
}

static int check_index(const struct rt_rowstore *s, const int64_t *index, int n, const float *dst)
{
    if (n < 0 || n > s->max_gather)
        return rt_errorf(RT_ERR_INVAL, "%s: gather of n = %d rows: expected 0 <= n <= %d", s->name,
                         n, s->max_gather);
    if (n > 0 && (!index || !dst))
        return rt_errorf(RT_ERR_INVAL, "%s: gather of %d rows: NULL %s", s->name, n,
                         index ? "dst" : "index");
    for (int i = 0; i < n; i++)
        if (index[i] < 0 || index[i] >= s->rows)
            return rt_errorf(RT_ERR_INVAL, "%s: gather: index[%d] = %lld is outside [0, %lld)",
                             s->name, i, (long long)index[i], (long long)s->rows);
    return RT_OK;
}

/* ---- open and close --------------------------------------------------------------------- */

/* Creates (truncates) s->path. open() first, so that the message says why it failed
 * ("No such file or directory", "Permission denied"); then HDF5 over it. */
static int create_file(struct rt_rowstore *s)
{
    int fd = open(s->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return rt_errorf(RT_ERR_IO, "%s: cannot create: %s", s->path, strerror(errno));
    close(fd);
    s->created = 1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return rt_errorf(RT_ERR_HDF5, "%s: H5Pcreate failed", s->path);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1); /* private scratch: nobody else opens it */
#endif
    /* No data sieve: a gather reads scattered rows, and a sieve would read 64 KiB per row
     * (dataset.c measured the same for shuffled batches). Runs are read directly. */
    H5Pset_sieve_buf_size(fapl, 0);
    errno = 0;
    s->file = H5Fcreate(s->path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int err = errno;
    H5Pclose(fapl);
    if (s->file < 0)
        return rt_errorf(RT_ERR_IO, "%s: cannot create: %s", s->path,
                         rt_h5_write_error(s->path, err));
    return RT_OK;
}

/* Creates /rows float32 (N, W), contiguous, allocated at creation (a fresh file's space
 * reads as zeros until written) and never filled: a scratch table needs no chunking, and a
 * contiguous layout lets HDF5 read a union of row runs straight into the buffer (see the
 * file header for the measured difference). */
static int create_rows(struct rt_rowstore *s)
{
    hsize_t dims[2] = {(hsize_t)s->rows, (hsize_t)s->width};
    s->fs = H5Screate_simple(2, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = s->fs < 0 || dcpl < 0 || H5Pset_layout(dcpl, H5D_CONTIGUOUS) < 0 ||
                     H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) < 0 ||
                     H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0
                 ? -1
                 : 0;
    if (rc == 0)
        s->ds = H5Dcreate2(s->file, "rows", H5T_IEEE_F32LE, s->fs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    rt_h5_close(dcpl);
    if (rc < 0 || s->ds < 0)
        return rt_errorf(RT_ERR_IO, "%s: cannot create /rows float32 (%lld, %d)", s->path,
                         (long long)s->rows, s->width);
    return RT_OK;
}

/* The file kind's file, dataset and gather scratch. */
static int open_file(struct rt_rowstore *s, const char *path)
{
    size_t len = strlen(path);
    s->path = malloc(len + 1);
    if (!s->path) return rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate the path", path);
    memcpy(s->path, path, len + 1);
    s->name = s->path;
    if ((uint64_t)s->rows > (uint64_t)INT64_MAX / s->row_bytes)
        return rt_errorf(RT_ERR_INVAL, "%s: %lld rows x %d floats: more bytes than a file holds",
                         path, (long long)s->rows, s->width);
    RT_TRY(create_file(s));
    RT_TRY(create_rows(s));
    size_t G = (size_t)s->max_gather;
    if (G == 0) return RT_OK;
    if (G > SIZE_MAX / s->row_bytes)
        return rt_errorf(RT_ERR_NOMEM, "%s: gather buffer of %d rows x %d floats: too large",
                         s->path, s->max_gather, s->width);
    hsize_t mdims[2] = {(hsize_t)G, (hsize_t)s->width};
    s->ms = H5Screate_simple(2, mdims, NULL);
    if (s->ms < 0) return rt_errorf(RT_ERR_HDF5, "%s: H5Screate_simple failed", s->path);
    s->pairs = malloc(G * sizeof *s->pairs);
    s->runs = malloc(G * sizeof *s->runs);
    s->buf = malloc(G * s->row_bytes);
    if (!s->pairs || !s->runs || !s->buf)
        return rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate the gather buffer (%.1f MB)", s->path,
                         ((double)G * (double)s->row_bytes + (double)G * 32.0) / (1 << 20));
    return RT_OK;
}

static int open_memory(struct rt_rowstore *s)
{
    double mb = (double)s->rows * (double)s->row_bytes / (1 << 20);
    if ((uint64_t)s->rows > SIZE_MAX / s->row_bytes)
        return rt_errorf(RT_ERR_NOMEM,
                         "%s: %lld rows x %d floats (%.1f MB) exceed the address space", s->name,
                         (long long)s->rows, s->width, mb);
    /* calloc: rows never put read as zeros, as in the file kind; the pages stay untouched
     * (and unallocated) until written. */
    s->mem = calloc((size_t)s->rows, s->row_bytes);
    if (!s->mem)
        return rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate %lld rows x %d floats (%.1f MB)",
                         s->name, (long long)s->rows, s->width, mb);
    return RT_OK;
}

int rt_rowstore_open(struct rt_rowstore **out, enum rt_rowstore_kind kind, const char *path,
                     int64_t rows, int width, int max_gather)
{
    *out = NULL;
    rt_h5_quiet();
    const char *name = kind == RT_ROWSTORE_FILE && path ? path : MEMORY_NAME;
    if (kind != RT_ROWSTORE_MEMORY && kind != RT_ROWSTORE_FILE)
        return rt_errorf(RT_ERR_INVAL, "row store: kind = %d: not a row store kind", (int)kind);
    if (kind == RT_ROWSTORE_FILE && (!path || !*path))
        return rt_errorf(RT_ERR_INVAL, "row store (file): no path given");
    if (rows < 1)
        return rt_errorf(RT_ERR_INVAL, "%s: rows = %lld: expected at least 1", name,
                         (long long)rows);
    if (width < 1)
        return rt_errorf(RT_ERR_INVAL, "%s: width = %d: expected at least 1", name, width);
    if (max_gather < 0)
        return rt_errorf(RT_ERR_INVAL, "%s: max_gather = %d: expected at least 0", name,
                         max_gather);

    struct rt_rowstore *s = calloc(1, sizeof *s);
    if (!s) return rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate the row store", name);
    s->kind = kind;
    s->rows = rows;
    s->width = width;
    s->max_gather = max_gather;
    s->row_bytes = (size_t)width * sizeof(float);
    s->name = MEMORY_NAME;
    s->file = s->ds = s->fs = s->ms = -1;
    int st = kind == RT_ROWSTORE_FILE ? open_file(s, path) : open_memory(s);
    if (st != RT_OK) {
        rt_rowstore_close(s);
        return st;
    }
    *out = s;
    return RT_OK;
}

void rt_rowstore_close(struct rt_rowstore *s)
{
    if (!s) return;
    /* Objects before the file: HDF5 keeps a file open while any of its objects is. */
    rt_h5_close(s->ds);
    rt_h5_close(s->fs);
    rt_h5_close(s->ms);
    rt_h5_close(s->file);
    if (s->created) unlink(s->path);
    free(s->path);
    free(s->pairs);
    free(s->runs);
    free(s->buf);
    free(s->mem);
    free(s);
}

/* ---- put and read ----------------------------------------------------------------------- */

/* Reads rows [r0, r0 + n) of s->ds into buf (n, W). -1 when HDF5 refuses. */
static int read_rows(struct rt_rowstore *s, hsize_t r0, hsize_t n, void *buf)
{
    hsize_t start[2] = {r0, 0}, count[2] = {n, (hsize_t)s->width};
    hid_t ms = H5Screate_simple(2, count, NULL);
    int rc = ms < 0 || H5Sselect_hyperslab(s->fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                     H5Dread(s->ds, H5T_NATIVE_FLOAT, ms, s->fs, H5P_DEFAULT, buf) < 0
                 ? -1
                 : 0;
    rt_h5_close(ms);
    return rc;
}

int rt_rowstore_put(struct rt_rowstore *s, int64_t first, const float *src, int64_t n)
{
    RT_TRY(check_range(s, "put", first, n, src));
    if (n == 0) return RT_OK;
    if (s->kind == RT_ROWSTORE_MEMORY) {
        memcpy(s->mem + (size_t)first * (size_t)s->width, src, (size_t)n * s->row_bytes);
        return RT_OK;
    }
    rt_h5_quiet();
    errno = 0;
    if (rt_h5_write_rows(s->ds, s->fs, H5T_NATIVE_FLOAT, (hsize_t)first, (hsize_t)n,
                         (hsize_t)s->width, src) < 0)
        return rt_errorf(RT_ERR_IO, "%s: writing rows [%lld, %lld) failed: %s", s->path,
                         (long long)first, (long long)first + (long long)n,
                         rt_h5_write_error(s->path, errno));
    return RT_OK;
}

int rt_rowstore_read(struct rt_rowstore *s, int64_t first, float *dst, int64_t n)
{
    RT_TRY(check_range(s, "read", first, n, dst));
    if (n == 0) return RT_OK;
    if (s->kind == RT_ROWSTORE_MEMORY) {
        memcpy(dst, s->mem + (size_t)first * (size_t)s->width, (size_t)n * s->row_bytes);
        return RT_OK;
    }
    rt_h5_quiet();
    if (read_rows(s, (hsize_t)first, (hsize_t)n, dst) < 0)
        return rt_errorf(RT_ERR_IO, "%s: reading rows [%lld, %lld) failed", s->path,
                         (long long)first, (long long)first + (long long)n);
    return RT_OK;
}

/* ---- gather ----------------------------------------------------------------------------- */

/* Runs of consecutive distinct ids of a[0..n) (sorted) into runs; returns their number. */
static int make_runs(struct run *runs, const struct rt_row_pair *a, int n)
{
    int r = -1;
    for (int i = 0; i < n; i++) {
        if (i > 0 && a[i].id == a[i - 1].id) continue; /* a repeat: read once */
        if (r >= 0 && (hsize_t)a[i].id == runs[r].first + runs[r].count) {
            runs[r].count++;
        } else {
            r++;
            runs[r].first = (hsize_t)a[i].id;
            runs[r].count = 1;
        }
    }
    return r + 1;
}

/* A copy of base with runs[lo..hi) selected, W columns each. The runs are disjoint and
 * sorted. HDF5 1.10 merges each OR into the whole selection so far, so one long chain of ORs
 * is quadratic in the runs; OR-ing halves recursively keeps it near linear (dataset.c's
 * select_rows measured 170 ms vs 2.3 ms for 4096 rows). Returns the new dataspace or -1. */
static hid_t select_runs(hid_t base, const struct run *runs, int lo, int hi, hsize_t width)
{
    if (hi - lo <= SELECT_LEAF_RUNS) {
        hid_t sel = H5Scopy(base);
        if (sel < 0) return -1;
        for (int i = lo; i < hi; i++) {
            hsize_t start[2] = {runs[i].first, 0}, count[2] = {runs[i].count, width};
            if (H5Sselect_hyperslab(sel, i == lo ? H5S_SELECT_SET : H5S_SELECT_OR, start, NULL,
                                    count, NULL) < 0)
                return rt_h5_close(sel);
        }
        return sel;
    }
    int mid = lo + (hi - lo) / 2;
    hid_t l = select_runs(base, runs, lo, mid, width);
    if (l < 0) return -1;
    hid_t r = select_runs(base, runs, mid, hi, width);
    herr_t e = r < 0 ? -1 : H5Smodify_select(l, H5S_SELECT_OR, r);
    rt_h5_close(r);
    return e < 0 ? rt_h5_close(l) : l;
}

/* The u distinct rows of pairs[0..n) (sorted) into buf in file order: one H5Dread. */
static int read_distinct(struct rt_rowstore *s, int nruns, hsize_t u)
{
    hsize_t zero[2] = {0, 0}, count[2] = {u, (hsize_t)s->width};
    hid_t sel = select_runs(s->fs, s->runs, 0, nruns, (hsize_t)s->width);
    int rc = sel < 0 || H5Sselect_hyperslab(s->ms, H5S_SELECT_SET, zero, NULL, count, NULL) < 0 ||
                     H5Dread(s->ds, H5T_NATIVE_FLOAT, s->ms, sel, H5P_DEFAULT, s->buf) < 0
                 ? -1
                 : 0;
    rt_h5_close(sel);
    return rc;
}

static int gather_file(struct rt_rowstore *s, const int64_t *index, int n, float *dst)
{
    for (int i = 0; i < n; i++) {
        s->pairs[i].id = index[i];
        s->pairs[i].pos = i;
    }
    rt_sort_row_pairs(s->pairs, n);
    int nruns = make_runs(s->runs, s->pairs, n);
    hsize_t u = 0;
    for (int r = 0; r < nruns; r++)
        u += s->runs[r].count;
    rt_h5_quiet();
    if (read_distinct(s, nruns, u) < 0)
        return rt_errorf(RT_ERR_IO, "%s: gathering %d rows (%llu distinct, first row %lld) failed",
                         s->path, n, (unsigned long long)u, (long long)s->pairs[0].id);
    /* Scatter: slot is the position of the current distinct row in buf. */
    size_t slot = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && s->pairs[i].id != s->pairs[i - 1].id) slot++;
        memcpy(dst + (size_t)s->pairs[i].pos * (size_t)s->width, s->buf + slot * (size_t)s->width,
               s->row_bytes);
    }
    return RT_OK;
}

int rt_rowstore_gather(struct rt_rowstore *s, const int64_t *index, int n, float *dst)
{
    RT_TRY(check_index(s, index, n, dst));
    if (n == 0) return RT_OK;
    if (s->kind == RT_ROWSTORE_FILE) return gather_file(s, index, n, dst);
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)i * (size_t)s->width, s->mem + (size_t)index[i] * (size_t)s->width,
               s->row_bytes);
    return RT_OK;
}

/* ---- accessors -------------------------------------------------------------------------- */

int64_t rt_rowstore_rows(const struct rt_rowstore *s)
{
    return s->rows;
}

int rt_rowstore_width(const struct rt_rowstore *s)
{
    return s->width;
}

enum rt_rowstore_kind rt_rowstore_kind(const struct rt_rowstore *s)
{
    return s->kind;
}
