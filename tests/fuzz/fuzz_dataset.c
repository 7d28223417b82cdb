/* fuzz_dataset.c - the dataset reader and validator (src/data/dataset.c over HDF5).
 *
 * Each input is a dataset file, opened four ways (no MPI: rank and world are plain ints):
 *   A  rank 0 of 1, global shuffle, rows held in memory (memory_mb = 64)
 *   B  the same, streamed (memory_mb = 0: prefetch thread and one HDF5 selection per batch)
 *   C  rank 1 of 2, shard shuffle, in memory     D  the same, streamed
 * and each opened dataset is validated against a small model of the file's shape (and once
 * against a wrong input width, which must fail with RT_ERR_SHAPE) and then read for one
 * epoch with rt_dataset_next. Properties checked on every batch: row counts within bounds,
 * row ids in range and, over the epoch, each of the rank's rows exactly once. A and B (and
 * C and D) must agree on every batch, byte for byte, and on what validation found.
 *
 * Files that declare more rows than a fuzz iteration should read (a tiny file may declare
 * 2^40 rows of a chunked dataset whose chunks were never written) are skipped before the
 * dataset code sees them: memory proportional to the declared rows is by design. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "ringtrain/dataset.h"

#define MAX_ROWS   2048
#define MAX_VALUES (1 << 18) /* rows * (D + K) */
#define BATCH      16

static struct fuzz_file input;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    fuzz_file_open(&input, "rt-fuzz-dataset");
    return 0;
}

/* What one epoch of one variant produced: every batch's ids, x and y, concatenated. */
struct epoch {
    int opened, validated, complete;
    int64_t rows, steps;
    int dim, targets;
    enum rt_label_kind labels;
    int64_t *ids;
    float *x;
    unsigned char *y;
    size_t n; /* rows recorded */
};

static void epoch_free(struct epoch *e)
{
    free(e->ids);
    free(e->x);
    free(e->y);
    memset(e, 0, sizeof *e);
}

static void check(int ok, const char *what)
{
    if (!ok) fuzz_die(what);
}

static void run_variant(const char *path, int rank, int world, enum rt_shuffle shuffle,
                        double memory_mb, struct epoch *e)
{
    memset(e, 0, sizeof *e);
    struct rt_data_opts o = {.rank = rank,
                             .world = world,
                             .shuffle = shuffle,
                             .seed = 7,
                             .global_batch = BATCH,
                             .memory_mb = memory_mb};
    struct rt_dataset *d = NULL;
    rt_error_clear();
    int st = FUZZ_CALL(rt_dataset_open(&d, path, &o));
    if (st != RT_OK) {
        check(d == NULL, "rt_dataset_open failed but returned a dataset");
        return;
    }
    e->opened = 1;
    const struct rt_dataset_info *info = rt_dataset_info(d);
    e->rows = info->rows;
    e->dim = info->dim;
    e->labels = info->labels;
    e->targets = info->targets;
    e->steps = rt_dataset_steps_per_epoch(d);
    check(info->rows >= world && info->dim >= 1 && info->targets >= 1, "bad dataset info");
    check(info->positions >= 1, "bad dataset info: positions");
    double rowb =
        4.0 * info->dim + 4.0 * (info->labels == RT_LABELS_CLASS ? info->positions : info->targets);
    int64_t shard = (info->rows - rank + world - 1) / world; /* rows of this rank, any shuffle */
    double held = rowb * (double)(shuffle == RT_SHUFFLE_SHARD ? shard : info->rows);
    /* a text source (vocab > 0) always holds its bytes */
    check(info->in_memory == (info->vocab > 0 || held <= memory_mb * 1024.0 * 1024.0),
          "rows held in memory against memory_mb");
    check(e->steps == (info->rows + BATCH - 1) / BATCH, "steps per epoch");

    /* the model of the file's shape; then a wrong input width */
    int outputs = info->labels == RT_LABELS_CLASS ? 4 : info->targets;
    enum rt_loss loss = info->labels == RT_LABELS_CLASS ? RT_LOSS_CE : RT_LOSS_MSE;
    rt_error_clear();
    st = FUZZ_CALL(rt_dataset_validate(d, info->dim, outputs, loss));
    e->validated = st;
    rt_error_clear();
    check(rt_dataset_validate(d, info->dim + 1, outputs, loss) == RT_ERR_SHAPE,
          "validate against a wrong input width did not fail with RT_ERR_SHAPE");

    /* one epoch */
    int64_t expect = shard;
    e->ids = malloc(sizeof(int64_t) * (size_t)(expect + 1));
    e->x = malloc(sizeof(float) * (size_t)(expect + 1) * (size_t)info->dim);
    size_t yrow = 4 * (size_t)(info->labels == RT_LABELS_CLASS ? info->positions : info->targets);
    e->y = malloc(yrow * (size_t)(expect + 1));
    unsigned char *seen = calloc((size_t)info->rows, 1);
    check(e->ids && e->x && e->y && seen, "malloc");
    rt_error_clear();
    st = rt_dataset_begin_epoch(d, 0, 0);
    check(st == RT_OK, "rt_dataset_begin_epoch failed");
    int64_t k = 0;
    for (; k < e->steps; k++) {
        struct rt_batch b;
        rt_error_clear();
        st = FUZZ_CALL(rt_dataset_next(d, &b));
        if (st != RT_OK) {
            check(st == RT_ERR_IO, "rt_dataset_next failed with something else than RT_ERR_IO");
            break;
        }
        check(b.step == k, "batch step");
        check(b.local_rows >= 0 && b.local_rows <= BATCH / world, "local rows");
        check(b.global_rows >= b.local_rows && b.global_rows <= BATCH, "global rows");
        check((size_t)b.local_rows <= (size_t)expect - e->n, "more rows than the rank has");
        for (int i = 0; i < b.local_rows; i++) {
            int64_t id = b.ids[i];
            check(id >= 0 && id < info->rows, "row id out of range");
            check(shuffle != RT_SHUFFLE_SHARD || id % world == rank, "row of another shard");
            check(!seen[id], "a row twice in one epoch");
            seen[id] = 1;
        }
        memcpy(e->ids + e->n, b.ids, sizeof(int64_t) * (size_t)b.local_rows);
        memcpy(e->x + e->n * (size_t)info->dim, b.x,
               sizeof(float) * (size_t)b.local_rows * (size_t)info->dim);
        memcpy(e->y + e->n * yrow, b.y, yrow * (size_t)b.local_rows);
        e->n += (size_t)b.local_rows;
    }
    if (k == e->steps) {
        e->complete = 1;
        check(e->n == (size_t)expect, "the epoch did not give every row of the rank");
        struct rt_batch b;
        rt_error_clear();
        check(rt_dataset_next(d, &b) == RT_ERR_INVAL, "a step past the end of the epoch");
    }
    free(seen);
    rt_error_clear();
    rt_dataset_close(d);
}

/* In memory and streamed must see the same file the same way. */
static void compare(const struct epoch *a, const struct epoch *b)
{
    if (!a->opened || !b->opened) return;
    check(a->rows == b->rows && a->dim == b->dim && a->targets == b->targets &&
              a->labels == b->labels && a->steps == b->steps,
          "in-memory and streamed opens disagree on the shape");
    if (a->validated == RT_OK || b->validated == RT_OK)
        check(a->validated == b->validated || a->validated == RT_ERR_IO ||
                  b->validated == RT_ERR_IO,
              "in-memory and streamed validation disagree");
    if (!a->complete || !b->complete) return;
    size_t yrow = a->labels == RT_LABELS_CLASS ? 4 : 4 * (size_t)a->targets;
    check(a->n == b->n && memcmp(a->ids, b->ids, sizeof(int64_t) * a->n) == 0,
          "in-memory and streamed epochs differ in row order");
    check(memcmp(a->x, b->x, sizeof(float) * a->n * (size_t)a->dim) == 0,
          "in-memory and streamed epochs differ in X");
    check(memcmp(a->y, b->y, yrow * a->n) == 0, "in-memory and streamed epochs differ in y");
}

static void one_input(const char *path)
{
    /* skip what declares too much to read in one iteration */
    hsize_t xd[H5S_MAX_RANK] = {0}, yd[H5S_MAX_RANK] = {0};
    int xr = fuzz_h5_dims(path, "X", xd), yr = fuzz_h5_dims(path, "y", yd);
    if (xr == 2 && (yr == 1 || yr == 2)) {
        double k = yr == 2 ? (double)yd[1] : 1.0;
        if ((double)xd[0] > MAX_ROWS || (double)xd[0] * ((double)xd[1] + k) > MAX_VALUES) return;
    }
    struct epoch a, b;
    run_variant(path, 0, 1, RT_SHUFFLE_GLOBAL, 64.0, &a);
    run_variant(path, 0, 1, RT_SHUFFLE_GLOBAL, 0.0, &b);
    compare(&a, &b);
    epoch_free(&a);
    epoch_free(&b);
    run_variant(path, 1, 2, RT_SHUFFLE_SHARD, 64.0, &a);
    run_variant(path, 1, 2, RT_SHUFFLE_SHARD, 0.0, &b);
    compare(&a, &b);
    epoch_free(&a);
    epoch_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file_set(&input, data, size);
    fuzz_run_checked(one_input, input.path);
    return 0;
}
