/* text.c - byte-level text: rt_text_import (`ringtrain data import-text`), which turns a text
 * file into a "text-bytes" dataset file, and the helpers the dataset source uses to recognise
 * such a file and cut its bytes into rows (layout and rows: see text.h).
 *
 * Not here: tokenisers (a token is a byte), the in-memory copy of a split (dataset.c holds it
 * in its arena), batches and shuffling (dataset.c's sampler, as for every source).
 *
 * Import is a one-off single-process command: plain malloc, the whole text in memory (the
 * King James Bible is 4.4 MB). Dimension letters: T tokens per sample, n bytes. */
#include "data/text.h"
#include "h5/h5io.h"
#include "h5/h5util.h"
#include "ringtrain/dataset.h"
#include "ringtrain/status.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VAL_FRACTION 0.5
#define MAX_CONTROL_PER  100 /* more than 1 control byte in 100 and it is not text */

/* ---- the source side -------------------------------------------------------------------- */

/* The root attribute `format` into buf when it is a string; "" when it is missing or of
 * another type (a foreign file's business, not an error of ours). */
static int read_format(hid_t file, const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (rt_h5_has_attr(file, "format") != 1) return RT_OK;
    hid_t a = H5Aopen(file, "format", H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    int is_str = t >= 0 && H5Tget_class(t) == H5T_STRING;
    rt_h5_close(t);
    rt_h5_close(a);
    return is_str ? rt_h5_get_str(file, path, "", "format", buf, cap) : RT_OK;
}

int rt_text_probe(hid_t file, const char *path, int *is_text)
{
    char format[64];
    *is_text = 0;
    RT_TRY(read_format(file, path, format, sizeof format));
    if (strcmp(format, RT_TEXT_FORMAT) != 0) return RT_OK;
    int version = 0, n = 0;
    RT_TRY(rt_h5_get_i32s(file, path, "", "format_version", &version, 1, &n));
    if (version > RT_TEXT_FORMAT_VERSION)
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: text format_version %d is newer than this ringtrain reads (%d)", path,
                         version, RT_TEXT_FORMAT_VERSION);
    if (version < 1)
        return rt_errorf(RT_ERR_FORMAT, "%s: text format_version %d: expected 1 to %d", path,
                         version, RT_TEXT_FORMAT_VERSION);
    *is_text = 1;
    return RT_OK;
}

const char *rt_text_split_name(int split)
{
    return split == 0 ? "train" : split == 1 ? "val" : NULL;
}

int rt_text_init(struct rt_text *t, const char *path, int split, int64_t n, int T)
{
    *t = (struct rt_text){.n = n, .T = T, .stride = split ? T : 1};
    if (n < (int64_t)T + 1)
        return rt_errorf(RT_ERR_SHAPE,
                         "%s: the %s split has %lld bytes: model.context = %d needs at least %lld",
                         path, rt_text_split_name(split), (long long)n, T, (long long)T + 1);
    return RT_OK;
}

int64_t rt_text_rows_count(const struct rt_text *t)
{
    return t->stride == 1 ? t->n - t->T : (t->n - 1) / t->T;
}

void rt_text_rows(const struct rt_text *t, float *x, int32_t *y, const int64_t *ids, int64_t n)
{
    size_t T = (size_t)t->T;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *b = t->bytes + ids[i] * t->stride;
        float *xr = x + (size_t)i * T;
        int32_t *yr = y + (size_t)i * T;
        for (size_t p = 0; p < T; p++) {
            xr[p] = (float)b[p];
            yr[p] = b[p + 1];
        }
    }
}

/* ---- import ----------------------------------------------------------------------------- */

/* The whole file into *out (malloc'd, *n bytes). RT_ERR_IO with strerror when it cannot be
 * opened or read (a directory reads as "Is a directory"). */
static int read_all(const char *path, uint8_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rt_errorf(RT_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = (size_t)1 << 20, len = 0;
    uint8_t *b = malloc(cap);
    int st = b ? RT_OK : rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap);
    while (st == RT_OK) {
        if (len == cap) {
            uint8_t *g = realloc(b, cap * 2);
            if (!g) {
                st = rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap * 2);
                break;
            }
            b = g;
            cap *= 2;
        }
        errno = 0;
        size_t got = fread(b + len, 1, cap - len, f);
        len += got;
        if (got == 0 && ferror(f))
            st = rt_errorf(RT_ERR_IO, "%s: %s", path, strerror(errno ? errno : EIO));
        if (got == 0) break;
    }
    fclose(f);
    if (st < 0) {
        free(b);
        return st;
    }
    *out = b;
    *n = len;
    return RT_OK;
}

/* Text has no NUL byte, and control bytes other than \t \n \r \f \v (and DEL) are rare in it.
 * RT_ERR_FORMAT otherwise, or for an empty file. */
static int check_text(const char *path, const uint8_t *b, size_t n)
{
    if (n == 0) return rt_errorf(RT_ERR_FORMAT, "%s: empty file: expected text", path);
    size_t nul = 0, control = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b[i];
        if (c == 0)
            nul++;
        else if ((c < 0x20 && !strchr("\t\n\r\f\v", c)) || c == 0x7f)
            control++;
    }
    if (nul > 0 || (nul + control) * MAX_CONTROL_PER > n)
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: looks binary (%zu NUL/control bytes of %zu): expected text", path,
                         nul + control, n);
    return RT_OK;
}

/* A split needs 2 bytes for one sample (an input and its next byte); an empty /val is what
 * val_fraction = 0 asks for. */
static int check_splits(const char *path, size_t n, size_t n_val, double val_fraction)
{
    if (n - n_val < 2)
        return rt_errorf(RT_ERR_SHAPE,
                         "%s: %zu bytes leave the train split %zu: expected at least 2 bytes", path,
                         n, n - n_val);
    if (val_fraction > 0 && n_val < 2)
        return rt_errorf(RT_ERR_SHAPE,
                         "%s: %zu bytes with val fraction %g leave the val split %zu: expected at "
                         "least 2 bytes (or --val 0)",
                         path, n, val_fraction, n_val);
    return RT_OK;
}

/* Attributes, /train and /val into out_path.tmp, then renamed into place. */
static int write_splits(const char *out_path, const uint8_t *b, size_t n_train, size_t n_val)
{
    char tmp[4096];
    hid_t f;
    int version = RT_TEXT_FORMAT_VERSION, vocab = RT_TEXT_VOCAB;
    RT_TRY(rt_h5_create_tmp(out_path, tmp, sizeof tmp, &f));
    errno = 0;
    if (rt_h5_put_str(f, "format", RT_TEXT_FORMAT) < 0 ||
        rt_h5_put_i32s(f, "format_version", &version, 1) < 0 ||
        rt_h5_put_i32s(f, "vocab_size", &vocab, 1) < 0 ||
        rt_h5_put_u8v(f, "train", b, n_train) < 0 ||
        rt_h5_put_u8v(f, "val", b + n_train, n_val) < 0) {
        const char *why = rt_h5_write_error(tmp, errno);
        rt_h5_discard(f, tmp);
        return rt_errorf(RT_ERR_IO, "%s: writing failed: %s", tmp, why);
    }
    return rt_h5_commit(f, tmp, out_path);
}

int rt_text_import(const char *in_path, const char *out_path, double val_fraction)
{
    if (!(val_fraction >= 0.0 && val_fraction <= MAX_VAL_FRACTION))
        return rt_errorf(RT_ERR_INVAL, "%s: val fraction %g: expected 0 to %g", in_path,
                         val_fraction, MAX_VAL_FRACTION);
    uint8_t *b = NULL;
    size_t n = 0;
    int st = read_all(in_path, &b, &n);
    if (st == RT_OK) st = check_text(in_path, b, n);
    size_t n_val = (size_t)floor(val_fraction * (double)n);
    if (st == RT_OK) st = check_splits(in_path, n, n_val, val_fraction);
    if (st == RT_OK) st = write_splits(out_path, b, n - n_val, n_val);
    free(b);
    return st;
}
