/* h5io.h - typed attributes and checksummed datasets for our HDF5 files (private to
 * src/h5, used by src/ckpt for model files and checkpoints and by src/data for text files).
 *
 * Writers return 0 or -1 without a message (the caller names the file being written, which
 * is where a failure is reported: disk full, quota). Readers return RT_OK or a negative
 * status with a message "<path>: <object> ..." naming what is missing or wrong, because a
 * bad file is the user's problem and the message is all they get.
 *
 * Every float dataset is chunked (at most 1 MiB per chunk) with HDF5's Fletcher32 filter:
 * a flipped bit or a torn write in any chunk fails the read of that chunk instead of
 * quietly loading wrong numbers. */
#ifndef RT_H5_H5IO_H
#define RT_H5_H5IO_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* ---- writers: 0 or -1 ------------------------------------------------------------------ */
int rt_h5_put_str(hid_t obj, const char *name, const char *val);      /* variable-length UTF-8 */
int rt_h5_put_i32s(hid_t obj, const char *name, const int *v, int n); /* 1-D int32 (n) */
int rt_h5_put_i64(hid_t obj, const char *name, int64_t v);            /* scalar int64 */
int rt_h5_put_u64(hid_t obj, const char *name, uint64_t v);           /* scalar uint64 */
int rt_h5_put_f64(hid_t obj, const char *name, double v);             /* scalar float64 */
/* float32 dataset of rank 1 to 4 (dims), chunked with Fletcher32; n = 0 elements allowed. */
int rt_h5_put_f32(hid_t loc, const char *name, const float *v, int rank, const hsize_t *dims);
/* A 1-D float32 dataset of n elements written range by range (what a writer that never
 * holds the whole vector needs): f32 callback fills [lo, lo + len) of it into buf (at most
 * piece floats at a time, in increasing order) and returns 0, or -1 to stop. */
int rt_h5_put_f32_pieces(hid_t loc, const char *name, size_t n, float *buf, size_t piece,
                         int (*fill)(void *ctx, size_t lo, size_t len, float *buf), void *ctx);
/* 1-D integer datasets (chunked with Fletcher32 like the floats), n >= 0. */
int rt_h5_put_i64v(hid_t loc, const char *name, const int64_t *v, size_t n);
int rt_h5_put_i32v(hid_t loc, const char *name, const int32_t *v, size_t n);
int rt_h5_put_u8v(hid_t loc, const char *name, const uint8_t *v, size_t n);
/* Reads a 1-D float32 dataset of exactly n elements range by range into buf (piece floats
 * at a time, in increasing order), handing each to put (RT_OK, or a failure that stops the
 * read and is returned). Errors as rt_h5_get_f32. */
int rt_h5_get_f32_pieces(hid_t loc, const char *path, const char *name, size_t n, float *buf,
                         size_t piece,
                         int (*put)(void *ctx, size_t lo, size_t len, const float *buf), void *ctx);
/* Reads a 1-D integer dataset of exactly n values (converted). Errors as rt_h5_get_f32. */
int rt_h5_get_intv(hid_t loc, const char *path, const char *name, hid_t mtype, void *v, size_t n);
/* Number of elements of dataset `name`, or -1 when it is missing. */
int64_t rt_h5_dataset_size(hid_t loc, const char *name);
/* Creates group `name` under loc; returns its id or -1. */
hid_t rt_h5_group(hid_t loc, const char *name);

/* ---- readers ---------------------------------------------------------------------------- */
/* 1 when attribute `name` of obj exists, 0 when it does not, -1 when HDF5 cannot tell. */
int rt_h5_has_attr(hid_t obj, const char *name);
/* String attribute into buf (cap bytes, truncated). RT_ERR_FORMAT "<path>: attribute
 * <where><name> missing or not a string" (where: "" or "optim/"...). */
int rt_h5_get_str(hid_t obj, const char *path, const char *where, const char *name, char *buf,
                  size_t cap);
/* Integer attribute, scalar or 1-D of at most cap values, into v; *n values. */
int rt_h5_get_i32s(hid_t obj, const char *path, const char *where, const char *name, int *v,
                   int cap, int *n);
int rt_h5_get_i64(hid_t obj, const char *path, const char *where, const char *name, int64_t *v);
int rt_h5_get_u64(hid_t obj, const char *path, const char *where, const char *name, uint64_t *v);
int rt_h5_get_f64(hid_t obj, const char *path, const char *where, const char *name, double *v);
/* float32 dataset `name` (a path relative to loc) of exactly `rank` and dims into v. Errors:
 * RT_ERR_FORMAT (missing, not float32), RT_ERR_SHAPE (other shape, both named), RT_ERR_IO
 * ("checksum mismatch or unreadable chunk": Fletcher32 caught corruption). */
int rt_h5_get_f32(hid_t loc, const char *path, const char *name, float *v, int rank,
                  const hsize_t *dims);

/* The `format` and `format_version` attributes of loc: format must be equal, the version
 * from 1 to max_version. RT_ERR_FORMAT ("not a ringtrain <what>", another format),
 * RT_ERR_INCOMPAT ("format_version = 9 is newer than this ringtrain reads (1)"). */
int rt_h5_check_format(hid_t loc, const char *path, const char *format, int max_version,
                       const char *what);

#endif
