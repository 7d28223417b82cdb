/* rowstore.h - a table of fixed-width float32 rows addressed by index, held in memory or
 * in a private HDF5 scratch file: one process's store, e.g. a rank's cache of a frozen
 * teacher's outputs (src/distill).
 *
 * The file kind keeps memory flat for tables larger than RAM should hold: the file is
 * created (truncated) at open, dataset /rows float32 (rows, width), contiguous, and
 * removed at close. Rows read back are the bytes written. Every call checks its indices
 * against the table and fails with RT_ERR_INVAL rather than touching memory out of range.
 *
 * No MPI. All buffers are allocated at open; put/read/gather never allocate. */
#ifndef RT_ROWSTORE_H
#define RT_ROWSTORE_H

#include <stdint.h>

enum rt_rowstore_kind { RT_ROWSTORE_MEMORY, RT_ROWSTORE_FILE };

struct rt_rowstore;

/* rows >= 1, width >= 1; max_gather >= 0: the most indices one rt_rowstore_gather takes.
 * path is used by the file kind only (may be NULL for memory); it is copied. Rows never put
 * read as zeros. *out is the store (owned, free with rt_rowstore_close) or NULL on failure:
 * RT_ERR_INVAL (bad kind, shape or missing path), RT_ERR_NOMEM (memory: the message says
 * how many MB were asked), RT_ERR_IO (file: cannot create, naming path). */
int rt_rowstore_open(struct rt_rowstore **out, enum rt_rowstore_kind kind, const char *path,
                     int64_t rows, int width, int max_gather);
/* Removes the file of a file store. NULL is a no-op. */
void rt_rowstore_close(struct rt_rowstore *s);

/* Rows [first, first + n) from src (n, width) / into dst (n, width), overwriting; src and dst
 * are borrowed. n = 0 does nothing. RT_ERR_INVAL when the range leaves [0, rows) (nothing is
 * touched), RT_ERR_IO on a file error. */
int rt_rowstore_put(struct rt_rowstore *s, int64_t first, const float *src, int64_t n);
int rt_rowstore_read(struct rt_rowstore *s, int64_t first, float *dst, int64_t n);

/* Rows index[0..n) (any order, repeats allowed, n <= max_gather) into dst (n, width) in the
 * order given, overwriting: one HDF5 read for the file kind. RT_ERR_INVAL, naming the first
 * bad index, when an index is outside [0, rows) or n is outside [0, max_gather] (dst is not
 * touched); RT_ERR_IO on a file error. */
int rt_rowstore_gather(struct rt_rowstore *s, const int64_t *index, int n, float *dst);

int64_t rt_rowstore_rows(const struct rt_rowstore *s);
int rt_rowstore_width(const struct rt_rowstore *s);
enum rt_rowstore_kind rt_rowstore_kind(const struct rt_rowstore *s);

#endif
