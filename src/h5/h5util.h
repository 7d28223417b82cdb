/* h5util.h - HDF5 helpers shared by src/data and src/ckpt (private: not installed).
 *
 * What lives here is the part of HDF5 handling that every reader and writer needs to get
 * right in the same way: no automatic error stack on stderr, clean one-line messages for
 * files that are missing, unreadable or not HDF5 at all, and the atomic write protocol
 * (write path.tmp, flush, close, fsync, rename, fsync the directory). */
#ifndef RT_H5_H5UTIL_H
#define RT_H5_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* A row id and where it goes: the batch or gather position of a row read in file order. */
struct rt_row_pair {
    int64_t id;
    int64_t pos;
};

/* Sorts a[0..n) by id: heapsort, in place, no allocation (glibc's qsort may malloc), so
 * that readers can sort a batch's rows for one HDF5 selection inside the step loop. */
void rt_sort_row_pairs(struct rt_row_pair *a, int64_t n);

/* Turns off HDF5's automatic error printing for the calling thread (thread-safe builds keep
 * one error stack per thread, so every thread that calls HDF5 must do this once). Cheap. */
void rt_h5_quiet(void);

/* 1 when the HDF5 library may be called from two threads at once. */
int rt_h5_threadsafe(void);

/* Opens an existing file read-only. Checks first, so that the message is clear: RT_ERR_IO
 * "<path>: <strerror>" when it is missing, unreadable or a directory; RT_ERR_FORMAT
 * "<path>: not an HDF5 file" when HDF5 does not recognise it. File locking is not used for
 * readers (our writers never modify a file in place: they rename a finished one). */
int rt_h5_open_read(const char *path, hid_t *out);

/* Creates `tmp` (path + ".tmp", written into tmp of tmp_cap bytes) for writing, truncating
 * any leftover. RT_ERR_IO with strerror when the directory is not writable. */
int rt_h5_create_tmp(const char *path, char *tmp, size_t tmp_cap, hid_t *out);

/* Finishes an atomic write: H5Fflush, H5Fclose, fsync(tmp), rename(tmp, path), fsync of the
 * directory. On failure tmp is removed and RT_ERR_IO/RT_ERR_HDF5 is returned. file is closed
 * in every case. */
int rt_h5_commit(hid_t file, const char *tmp, const char *path);

/* Checkpoints go straight to disk, piece by piece (the sharded moments are never whole on
 * one rank): rt_h5_create_tmp, then room reserved for tmp (fallocate, keeping its size):
 * data_bytes, at least the arrays the file will hold, plus a margin for HDF5's metadata. A
 * full disk is refused here, with its errno, before HDF5 writes anything, and not inside
 * HDF5, which (1.10.8) crashed when it could not close a file after a failed write. Where the file
 * system cannot reserve, *mem = 1 and the file is built in memory instead (rt_h5_create_mem: finish
 * it with rt_h5_commit_mem); else finish with rt_h5_commit, which gives back what was reserved and
 * not used. */
int rt_h5_create_reserved(const char *path, size_t data_bytes, char *tmp, size_t tmp_cap,
                          hid_t *out, int *mem);
/* Ends what rt_h5_create_reserved began: commits when ok, else discards it and reports that
 * HDF5 refused to write the `what` ("checkpoint"). file is closed in every case. */
int rt_h5_finish_reserved(hid_t file, const char *tmp, const char *path, int mem, int ok,
                          const char *what);

/* Whole small files (models) are built in memory and written in one go:
 * rt_h5_create_mem makes an in-memory HDF5 file (path only names it); rt_h5_commit_mem
 * takes its image, closes it, and writes path atomically with plain POSIX calls (path.tmp,
 * write, fsync, rename, fsync of the directory), so a full disk or a read-only directory
 * is an errno with its own message ("No space left on device") and HDF5 is never left
 * holding a file it cannot close. file is closed in every case. */
int rt_h5_create_mem(const char *path, size_t size_hint, hid_t *out); /* hint: bytes expected */
int rt_h5_commit_mem(hid_t file, const char *path);

/* Why a write to path failed, for messages: strerror(err) when the caller's errno says,
 * else "No space left on device" when path's file system is (nearly) full, else a generic
 * text. Call right after the failure, with errno. */
const char *rt_h5_write_error(const char *path, int err);

/* Closes file (if >= 0) and removes tmp: the failure path of a write. */
void rt_h5_discard(hid_t file, const char *tmp);

/* A dataset file (/X and /y) being written atomically: created as path.tmp by
 * rt_h5_xy_begin, filled by the caller, renamed into place (or removed) by rt_h5_xy_end. */
struct rt_h5_xy_writer {
    hid_t file;     /* path.tmp, open for writing; -1 once ended */
    hid_t dx, dy;   /* /X and /y; -1 until rt_h5_xy_create */
    hid_t sx, sy;   /* their file dataspaces */
    char tmp[4096]; /* path.tmp */
};

/* Creates path.tmp (rt_h5_create_tmp, same errors) and sets every other id to -1. */
int rt_h5_xy_begin(struct rt_h5_xy_writer *w, const char *path);

/* Creates /X float32 (xdims[0], xdims[1]) and /y of file type ytype and rank yrank (ydims),
 * with dataset creation properties xcpl and ycpl (H5P_DEFAULT: contiguous). Returns -1
 * without a message when HDF5 refuses: the caller words it. */
int rt_h5_xy_create(struct rt_h5_xy_writer *w, const hsize_t *xdims, hid_t xcpl, hid_t ytype,
                    int yrank, const hsize_t *ydims, hid_t ycpl);

/* Writes rows [r0, r0 + n) of the 2-D dataset ds (file dataspace fs, rows of width values)
 * from buf (n, width) of memory type mtype. Returns -1 without a message when HDF5 refuses. */
int rt_h5_write_rows(hid_t ds, hid_t fs, hid_t mtype, hsize_t r0, hsize_t n, hsize_t width,
                     const void *buf);

/* Ends the write begun by rt_h5_xy_begin: closes the datasets, then commits path.tmp to path
 * (rt_h5_commit) when st == RT_OK, or removes it otherwise, and closes the dataspaces.
 * Returns st, or the commit's status. */
int rt_h5_xy_end(struct rt_h5_xy_writer *w, const char *path, int st);

/* A short name of an HDF5 datatype for messages: "float32", "float64", "int32", "uint8",
 * "string", "compound", ... Writes into buf and returns it. */
const char *rt_h5_type_name(hid_t type, char *buf, size_t cap);

/* Closes an HDF5 identifier of any kind if it is valid (>= 0); returns -1 for reuse as the
 * "closed" value: `id = rt_h5_close(id);`. */
hid_t rt_h5_close(hid_t id);

#endif
