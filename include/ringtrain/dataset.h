/* dataset.h - a rank's view of a training or test set, batch by batch.
 *
 * Sources: an HDF5 file with /X float32 (N, D) and /y either int32 (N) class labels or
 * float32 (N, K) regression targets; or "synth:bigmodel", the seed regression task generated
 * row by row from the seed (X ~ N(0,1) in 1000 dimensions, y = X T^T for a fixed random
 * 1000x1000 teacher T), each rank generating only the rows it uses; or a byte-level text
 * file (root attribute format = "text-bytes", written by rt_text_import) with uint8 /train
 * and /val, whose rows are windows of `context` bytes: x the bytes as float token ids, y the
 * next byte at each of the T positions (train: a window at every byte; val: non-overlapping).
 * A text split's bytes are held in memory on every rank and rows are cut from them on demand.
 *
 * Batches: step k of an epoch covers positions [k*GB, min((k+1)*GB, N)) of the epoch's order
 * (GB = global batch) and rank r takes positions k*GB + r, k*GB + r + world, ... of it, so
 * the union over ranks of step k is step k of a one-rank run (shuffle = global or off). The
 * last step of an epoch may be short; some ranks may then get fewer rows, even none, but
 * every rank runs the same number of steps. Orders:
 *   global: one permutation of all N rows per epoch, seeded from (seed, epoch)
 *           (PyTorch DistributedSampler semantics);
 *   off:    file order;
 *   shard:  rank r holds only rows r, r+world, ... (read once), and shuffles them within
 *           itself each epoch from (seed, epoch, rank); batches then differ from a one-rank
 *           run, in exchange for memory and I/O that shrink with the rank count.
 * Rows are held in memory when the rows this rank can touch fit in memory_mb; otherwise each
 * batch is read with one HDF5 selection by a prefetch thread while the step computes.
 *
 * No MPI: rank and world are plain integers. All buffers are allocated at open. */
#ifndef RT_DATASET_H
#define RT_DATASET_H

#include <stdint.h>

#include "ringtrain/model.h"

enum rt_shuffle { RT_SHUFFLE_GLOBAL, RT_SHUFFLE_SHARD, RT_SHUFFLE_OFF };
int rt_shuffle_parse(const char *name, enum rt_shuffle *out); /* 0, or -1 if unknown */
const char *rt_shuffle_name(enum rt_shuffle s);

struct rt_data_opts {
    int rank, world; /* 0 <= rank < world */
    enum rt_shuffle shuffle;
    uint64_t seed;
    int64_t global_batch; /* rows per step over all ranks; a multiple of world */
    double memory_mb;     /* hold the rank's rows in memory when they fit in this */
    int64_t synth_rows;   /* rows of a synth: source */
    int split;            /* 0 train, 1 test/validation: synth's disjoint row ids, or a text
                             file's /train or /val */
    const char *x_name;   /* dataset of the inputs in the file ([data] x); NULL = "X" */
    const char *y_name;   /* of the labels or targets ([data] y); NULL = "y" */
    int context;          /* tokens per sample (T, model.context) of a text source: >= 1 */
};

#define RT_DATA_NAME_MAX 1024 /* longest [data] x / y path, NUL included (RT_PATH_MAX) */

enum rt_label_kind { RT_LABELS_CLASS, RT_LABELS_TARGET };

struct rt_dataset_info {
    int64_t rows;              /* N */
    int dim;                   /* D: values per row (the product of the shape) */
    struct rt_shape shape;     /* per sample: (D), or (C, H, W) from /X (N, C, H, W) */
    enum rt_label_kind labels; /* int32 (N) or float32 (N, K) */
    int targets;               /* K for RT_LABELS_TARGET, 1 for classes */
    int positions;             /* labels per row: T for text, 1 for every other source */
    int vocab;                 /* token values of a text source (256), 0 otherwise */
    int in_memory;             /* 1 when rows are held in memory */
};

struct rt_batch {
    const float *x;      /* (local_rows, D) borrowed, valid until the next rt_dataset_next */
    const void *y;       /* int32 (local_rows, positions) or float (local_rows, K), same
                            lifetime */
    const int64_t *ids;  /* (local_rows) the rows' ids (0-based row numbers of the source) */
    int local_rows;      /* this rank's rows; 0 is possible in an epoch's short tail */
    int64_t global_rows; /* rows of this step summed over all ranks */
    int64_t step;        /* index of this step within the epoch */
};

struct rt_dataset;

/* Opens source for this rank and allocates every buffer. Errors (message names the file):
 * RT_ERR_IO (missing, unreadable), RT_ERR_FORMAT (not HDF5, no /X or /y, wrong rank, dtype
 * or shape), RT_ERR_SHAPE (zero rows, fewer rows than ranks), RT_ERR_INVAL (bad opts),
 * RT_ERR_NOMEM. *out is NULL on failure. */
int rt_dataset_open(struct rt_dataset **out, const char *source, const struct rt_data_opts *o);
void rt_dataset_close(struct rt_dataset *d); /* NULL is a no-op; joins the prefetch thread */

const struct rt_dataset_info *rt_dataset_info(const struct rt_dataset *d);
const char *rt_dataset_source(const struct rt_dataset *d);
/* The per-sample shape of the rows: (D) for flat rows. */
struct rt_shape rt_dataset_sample_shape(const struct rt_dataset *d);
/* The per-sample shape of source's inputs (dataset x_name, NULL = "X") without opening it
 * for reading rows: a look at the dimensions only. Errors as rt_dataset_open's. A text file
 * gives rank 1 with d[0] = 0: its samples are model.context tokens, which the job knows and
 * the file does not, so the caller fills d[0] in. */
int rt_dataset_peek_shape(const char *source, const char *x_name, struct rt_shape *out);

/* Checks the data against a model: D == input width; CE needs class labels in [0, K);
 * MSE needs float targets of width K; every value finite. Text needs D = context, CE and
 * K >= 256 (its bytes need no further check). Each rank checks rows
 * rank, rank+world, ... so that together the ranks read every row once. RT_ERR_SHAPE,
 * RT_ERR_NONFINITE or RT_ERR_IO, with a message naming the file, the row and the value. */
int rt_dataset_validate(struct rt_dataset *d, int input_dim, int outputs, enum rt_loss loss);

/* ceil(N / global_batch): the same on every rank. */
int64_t rt_dataset_steps_per_epoch(const struct rt_dataset *d);

/* Starts epoch `epoch` at step first_step (0 unless resuming): fixes the order and starts
 * prefetching. */
int rt_dataset_begin_epoch(struct rt_dataset *d, int64_t epoch, int64_t first_step);

/* The next step's batch of this rank. Fails with RT_ERR_IO when a read fails or with
 * RT_ERR_INVAL past the end of the epoch. */
int rt_dataset_next(struct rt_dataset *d, struct rt_batch *b);

/* File conversions behind `ringtrain data ...` (single process). */
/* MNIST/Fashion-MNIST IDX (gzip or plain) to a dataset file, pixels scaled to [0, 1]. */
int rt_idx_import(const char *images_path, const char *labels_path, const char *out_path);
/* A text file's bytes to a "text-bytes" dataset file: the last floor(val_fraction * n) bytes
 * are /val, the rest /train. val_fraction in [0, 0.5] (RT_ERR_INVAL otherwise). Errors name
 * the file: RT_ERR_IO (missing, unreadable), RT_ERR_FORMAT (empty; a NUL byte or more than 1%
 * control bytes other than \t \n \r \f \v: "looks binary"), RT_ERR_SHAPE (a split of
 * fewer than 2 bytes; an empty /val is allowed when val_fraction is 0). Written atomically. */
int rt_text_import(const char *in_path, const char *out_path, double val_fraction);
/* The synth:NAME task's rows as a dataset file ("bigmodel" only, for now). */
int rt_synth_write(const char *out_path, const char *name, int64_t rows, uint64_t seed, int split);

#endif
