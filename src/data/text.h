/* text.h - byte-level text files ("text-bytes") behind a dataset source (private to src/data).
 *
 * The file: root attributes format = "text-bytes", format_version = 1, vocab_size = 256, and
 * two uint8 (n) datasets, /train and /val, the text's bytes in order (/val is its tail). A
 * token is a byte, so the vocabulary is the 256 byte values.
 *
 * Rows of a split of n bytes with T tokens per sample (model.context): row i starts at byte
 * s = i * stride; x = bytes[s .. s+T) as floats, y = bytes[s+1 .. s+T+1) as int32 (the next
 * byte at every position).
 *   train (split 0): stride 1, every window: n - T rows;
 *   val (split 1):   stride T, non-overlapping windows: floor((n - 1) / T) rows.
 *
 * Dimension letters: T tokens per sample, n bytes of a split. */
#ifndef RT_DATA_TEXT_H
#define RT_DATA_TEXT_H

#include <hdf5.h>
#include <stdint.h>

#define RT_TEXT_FORMAT         "text-bytes"
#define RT_TEXT_FORMAT_VERSION 1
#define RT_TEXT_VOCAB          256

struct rt_text {
    const uint8_t *bytes; /* (n) borrowed: the split's bytes */
    int64_t n;            /* bytes of the split */
    int T;                /* tokens per sample */
    int64_t stride;       /* bytes between row starts: 1 (train) or T (val) */
};

/* *is_text = 1 when file's root attribute `format` is the string "text-bytes" (and its
 * format_version is one we read), 0 when the attribute is missing or anything else. Reads
 * attributes only. RT_ERR_FORMAT "<path>: text format_version 2 is newer than this
 * ringtrain reads (1)", or for a missing or non-positive version. */
int rt_text_probe(hid_t file, const char *path, int *is_text);

/* The dataset name of split 0 ("train") or 1 ("val"); NULL for any other split. */
const char *rt_text_split_name(int split);

/* Checks that a split of n bytes holds a sample of T tokens and sets t (bytes stay NULL until
 * the caller has them). RT_ERR_SHAPE "<path>: the train split has 10 bytes: model.context =
 * 16 needs at least 17". */
int rt_text_init(struct rt_text *t, const char *path, int split, int64_t n, int T);

/* Rows of the split: n - T (train) or floor((n - 1) / T) (val). */
int64_t rt_text_rows_count(const struct rt_text *t);

/* Rows ids[0..n) of the split: x (n, T) float token ids, y (n, T) int32 next tokens,
 * overwritten. ids must be below rt_text_rows_count. No allocation, cannot fail. */
void rt_text_rows(const struct rt_text *t, float *x, int32_t *y, const int64_t *ids, int64_t n);

#endif
