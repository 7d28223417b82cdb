/* h5util.c - HDF5 helpers shared by src/data and src/ckpt: quiet errors, clean open
 * failures, atomic commit. See h5util.h. */
#define _GNU_SOURCE /* fallocate(2) with FALLOC_FL_KEEP_SIZE */
#include "h5/h5util.h"
#include "ringtrain/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void rt_h5_quiet(void)
{
    static _Thread_local int done;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

int rt_h5_threadsafe(void)
{
    hbool_t ts = 0;
    if (H5is_library_threadsafe(&ts) < 0) return 0;
    return ts ? 1 : 0;
}

hid_t rt_h5_close(hid_t id)
{
    if (id < 0) return -1;
    switch (H5Iget_type(id)) {
    case H5I_FILE:
        H5Fclose(id);
        break;
    case H5I_GROUP:
        H5Gclose(id);
        break;
    case H5I_DATASET:
        H5Dclose(id);
        break;
    case H5I_DATASPACE:
        H5Sclose(id);
        break;
    case H5I_DATATYPE:
        H5Tclose(id);
        break;
    case H5I_ATTR:
        H5Aclose(id);
        break;
    case H5I_GENPROP_LST:
        H5Pclose(id);
        break;
    default:
        break;
    }
    return -1;
}

/* The open()/fstat() check behind rt_h5_open_read: errno-based messages beat HDF5's. */
static int check_readable(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rt_errorf(RT_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat stt;
    int rc = fstat(fd, &stt);
    int err = errno;
    close(fd);
    if (rc != 0) return rt_errorf(RT_ERR_IO, "%s: %s", path, strerror(err));
    if (S_ISDIR(stt.st_mode))
        return rt_errorf(RT_ERR_IO, "%s: is a directory, expected an HDF5 file", path);
    return RT_OK;
}

int rt_h5_open_read(const char *path, hid_t *out)
{
    *out = -1;
    rt_h5_quiet();
    RT_TRY(check_readable(path));
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) return rt_errorf(RT_ERR_FORMAT, "%s: not an HDF5 file", path);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return rt_errorf(RT_ERR_HDF5, "%s: H5Pcreate failed", path);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1); /* advisory only; failure is harmless */
#endif
    /* No data sieve: streamed batches read scattered rows, and a 64 KiB sieve read per row
     * doubled the time of a shuffled epoch (measured, 60000 x 784). Runs are read directly. */
    H5Pset_sieve_buf_size(fapl, 0);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: HDF5 cannot open it (truncated or corrupt?)", path);
    *out = f;
    return RT_OK;
}

int rt_h5_create_tmp(const char *path, char *tmp, size_t tmp_cap, hid_t *out)
{
    *out = -1;
    rt_h5_quiet();
    if ((size_t)snprintf(tmp, tmp_cap, "%s.tmp", path) >= tmp_cap)
        return rt_errorf(RT_ERR_INVAL, "%s: path too long", path);
    /* open() first: its errno says why ("Permission denied", "No such file or directory"). */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return rt_errorf(RT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    close(fd);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) {
        unlink(tmp);
        return rt_errorf(RT_ERR_HDF5, "%s: H5Pcreate failed", tmp);
    }
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 1, 1); /* lock where the file system can, go on where not */
#endif
    errno = 0;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int err = errno;
    H5Pclose(fapl);
    if (f < 0) {
        const char *why = rt_h5_write_error(tmp, err);
        unlink(tmp);
        return rt_errorf(RT_ERR_IO, "%s: cannot create: %s", tmp, why);
    }
    *out = f;
    return RT_OK;
}

int rt_h5_create_reserved(const char *path, size_t data_bytes, char *tmp, size_t tmp_cap,
                          hid_t *out, int *mem)
{
    /* HDF5's own: object headers, chunk indexes, checksums (a few KiB per object measured,
     * files of about 40 objects) */
    size_t bound = data_bytes + data_bytes / 16 + ((size_t)256 << 10);
    *mem = 0;
    RT_TRY(rt_h5_create_tmp(path, tmp, tmp_cap, out));
    int fd = open(tmp, O_WRONLY);
    int err = fd < 0 ? errno : fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)bound) ? errno : 0;
    if (fd >= 0) close(fd);
    if (err == 0) return RT_OK;
    rt_h5_discard(*out, tmp);
    *out = -1;
    if (err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) { /* cannot reserve here */
        *mem = 1;
        return rt_h5_create_mem(path, bound, out);
    }
    return rt_errorf(RT_ERR_IO, "%s: cannot reserve %zu bytes for it: %s", tmp, bound,
                     strerror(err));
}

int rt_h5_finish_reserved(hid_t file, const char *tmp, const char *path, int mem, int ok,
                          const char *what)
{
    if (!ok) {
        if (mem)
            H5Fclose(file);
        else
            rt_h5_discard(file, tmp);
        return rt_errorf(RT_ERR_HDF5, "%s: HDF5 refused to write the %s", path, what);
    }
    return mem ? rt_h5_commit_mem(file, path) : rt_h5_commit(file, tmp, path);
}

/* Gives back what a reservation left beyond the end of the file: ext4 frees blocks past
 * the end on any truncate, tmpfs only on one that shrinks, hence one byte up and down. */
static void drop_reservation(const char *tmp)
{
    struct stat st;
    if (stat(tmp, &st) != 0 || truncate(tmp, st.st_size + 1) != 0) return;
    /* a failed shrink leaves one byte past HDF5's end of file, which readers ignore */
    int rc = truncate(tmp, st.st_size);
    (void)rc;
}

void rt_h5_discard(hid_t file, const char *tmp)
{
    if (file >= 0) H5Fclose(file);
    unlink(tmp);
}

int rt_h5_xy_begin(struct rt_h5_xy_writer *w, const char *path)
{
    w->dx = w->dy = w->sx = w->sy = -1;
    return rt_h5_create_tmp(path, w->tmp, sizeof w->tmp, &w->file);
}

int rt_h5_xy_create(struct rt_h5_xy_writer *w, const hsize_t *xdims, hid_t xcpl, hid_t ytype,
                    int yrank, const hsize_t *ydims, hid_t ycpl)
{
    w->sx = H5Screate_simple(2, xdims, NULL);
    w->sy = H5Screate_simple(yrank, ydims, NULL);
    if (w->sx < 0 || w->sy < 0) return -1;
    w->dx = H5Dcreate2(w->file, "X", H5T_IEEE_F32LE, w->sx, H5P_DEFAULT, xcpl, H5P_DEFAULT);
    if (w->dx < 0) return -1;
    w->dy = H5Dcreate2(w->file, "y", ytype, w->sy, H5P_DEFAULT, ycpl, H5P_DEFAULT);
    return w->dy < 0 ? -1 : 0;
}

int rt_h5_write_rows(hid_t ds, hid_t fs, hid_t mtype, hsize_t r0, hsize_t n, hsize_t width,
                     const void *buf)
{
    hsize_t start[2] = {r0, 0}, count[2] = {n, width};
    hid_t ms = H5Screate_simple(2, count, NULL);
    int rc = ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                     H5Dwrite(ds, mtype, ms, fs, H5P_DEFAULT, buf) < 0
                 ? -1
                 : 0;
    rt_h5_close(ms);
    return rc;
}

int rt_h5_xy_end(struct rt_h5_xy_writer *w, const char *path, int st)
{
    /* Datasets first: HDF5 keeps a file open while any of its objects is. */
    w->dx = rt_h5_close(w->dx);
    w->dy = rt_h5_close(w->dy);
    if (st == RT_OK)
        st = rt_h5_commit(w->file, w->tmp, path);
    else
        rt_h5_discard(w->file, w->tmp);
    w->file = -1;
    w->sx = rt_h5_close(w->sx);
    w->sy = rt_h5_close(w->sy);
    return st;
}

static int fsync_path(const char *path, int dir)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    /* Some file systems refuse fsync on a directory (EINVAL): nothing more can be done. */
    if (rc != 0 && dir && (errno == EINVAL || errno == EBADF)) rc = 0;
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

static int rename_into_place(const char *tmp, const char *path)
{
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return rt_errorf(RT_ERR_IO, "%s: rename to %s: %s", tmp, path, strerror(err));
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (fsync_path(dir, 1) != 0)
        return rt_errorf(RT_ERR_IO, "%s: fsync of the directory: %s", dir, strerror(errno));
    return RT_OK;
}

const char *rt_h5_write_error(const char *path, int err)
{
    if (err != 0 && err != EINVAL && err != ENOENT) return strerror(err);
    /* HDF5 does not always leave errno set; an (almost) full file system is the usual cause
     * and the one the user can act on. */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    struct statvfs fs;
    if (statvfs(dir[0] ? dir : "/", &fs) == 0 && (double)fs.f_bavail * (double)fs.f_frsize < 1e6)
        return strerror(ENOSPC);
    return "the HDF5 library refused a write";
}

int rt_h5_commit(hid_t file, const char *tmp, const char *path)
{
    errno = 0;
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
        const char *why = rt_h5_write_error(tmp, errno);
        rt_h5_discard(file, tmp);
        return rt_errorf(RT_ERR_IO, "%s: writing failed: %s", tmp, why);
    }
    if (H5Fclose(file) < 0) {
        const char *why = rt_h5_write_error(tmp, errno);
        unlink(tmp);
        return rt_errorf(RT_ERR_IO, "%s: writing failed: %s", tmp, why);
    }
    drop_reservation(tmp);
    if (fsync_path(tmp, 0) != 0) {
        int err = errno;
        unlink(tmp);
        return rt_errorf(RT_ERR_IO, "%s: fsync: %s", tmp, strerror(err));
    }
    return rename_into_place(tmp, path);
}

const char *rt_h5_type_name(hid_t type, char *buf, size_t cap)
{
    size_t size = H5Tget_size(type);
    switch (H5Tget_class(type)) {
    case H5T_INTEGER:
        snprintf(buf, cap, "%s%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", size * 8);
        break;
    case H5T_FLOAT:
        snprintf(buf, cap, "float%zu", size * 8);
        break;
    case H5T_STRING:
        snprintf(buf, cap, "string");
        break;
    case H5T_COMPOUND:
        snprintf(buf, cap, "compound");
        break;
    case H5T_ENUM:
        snprintf(buf, cap, "enum");
        break;
    case H5T_ARRAY:
        snprintf(buf, cap, "array");
        break;
    case H5T_VLEN:
        snprintf(buf, cap, "vlen");
        break;
    case H5T_OPAQUE:
        snprintf(buf, cap, "opaque");
        break;
    case H5T_BITFIELD:
        snprintf(buf, cap, "bitfield");
        break;
    case H5T_REFERENCE:
        snprintf(buf, cap, "reference");
        break;
    default:
        snprintf(buf, cap, "unknown type");
        break;
    }
    return buf;
}

/* ---- whole files built in memory ---------------------------------------------------------- */

int rt_h5_create_mem(const char *path, size_t size_hint, hid_t *out)
{
    *out = -1;
    rt_h5_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* No backing store: HDF5 never touches the disk, so a full disk cannot leave it with a
     * file it fails to close (it crashed at exit when that happened, HDF5 1.10.8). */
    /* The image grows by `increment` bytes at a time, each growth a realloc and a memset: a
     * good hint makes it one allocation (a 50 MB checkpoint took 0.9 s with 1 MiB steps). */
    size_t increment = size_hint > ((size_t)1 << 20) ? size_hint : (size_t)1 << 20;
    if (fapl < 0 || H5Pset_fapl_core(fapl, increment, 0) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return rt_errorf(RT_ERR_HDF5, "%s: cannot set up an in-memory HDF5 file", path);
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return rt_errorf(RT_ERR_HDF5, "%s: HDF5 cannot create the file in memory", path);
    *out = f;
    return RT_OK;
}

/* Writes n bytes to tmp and fsyncs it; errno-based message on failure, tmp removed. */
static int write_file(const char *tmp, const void *buf, size_t n)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return rt_errorf(RT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int err = w < 0 ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            return rt_errorf(RT_ERR_IO, "%s: writing failed: %s", tmp, strerror(err));
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return rt_errorf(RT_ERR_IO, "%s: fsync: %s", tmp, strerror(err));
    }
    if (close(fd) != 0) {
        int err = errno;
        unlink(tmp);
        return rt_errorf(RT_ERR_IO, "%s: writing failed: %s", tmp, strerror(err));
    }
    return RT_OK;
}

int rt_h5_commit_mem(hid_t file, const char *path)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        H5Fclose(file);
        return rt_errorf(RT_ERR_INVAL, "%s: path too long", path);
    }
    ssize_t size = H5Fflush(file, H5F_SCOPE_GLOBAL) < 0 ? -1 : H5Fget_file_image(file, NULL, 0);
    void *image = size > 0 ? malloc((size_t)size) : NULL;
    int ok = image && H5Fget_file_image(file, image, (size_t)size) == size;
    H5Fclose(file);
    if (!ok) {
        free(image);
        return rt_errorf(size > 0 ? RT_ERR_NOMEM : RT_ERR_HDF5,
                         "%s: cannot take the file image (%zd bytes)", path, size);
    }
    int st = write_file(tmp, image, (size_t)size);
    free(image);
    RT_TRY(st);
    return rename_into_place(tmp, path);
}

static void sift_down(struct rt_row_pair *a, int64_t i, int64_t n)
{
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && a[c + 1].id > a[c].id) c++;
        if (a[i].id >= a[c].id) return;
        struct rt_row_pair t = a[i];
        a[i] = a[c];
        a[c] = t;
        i = c;
    }
}

void rt_sort_row_pairs(struct rt_row_pair *a, int64_t n)
{
    for (int64_t i = n / 2 - 1; i >= 0; i--)
        sift_down(a, i, n);
    for (int64_t i = n - 1; i > 0; i--) {
        struct rt_row_pair t = a[0];
        a[0] = a[i];
        a[i] = t;
        sift_down(a, 0, i);
    }
}
