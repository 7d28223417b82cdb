/* model_file.c - save and load a model as one HDF5 file (layout in model_file.h).
 *
 * Writing is atomic through rt_h5_create_tmp/rt_h5_commit (path.tmp, flush, close, fsync,
 * rename, fsync dir). Reading checks, in order: the file opens as HDF5, the `format`
 * attribute says "ringtrain-model" (or "ringtrain-checkpoint", whose /model group holds the
 * same layout), `format_version` is one we know, the architecture attributes parse, and
 * only then the parameter datasets (float32, exact shapes, Fletcher32 checksums). */
#include "ringtrain/model_file.h"
#include "h5/h5io.h"
#include "ckpt/model_io.h"
#include "h5/h5util.h"
#include "ringtrain/dense.h"
#include "ringtrain/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_ 256 /* longest attribute string we read back (names, not the config) */

/* The group layers/<i> with its kind attribute. */
static hid_t layer_group(hid_t layers, const struct rt_model *m, int i)
{
    char name[16];
    snprintf(name, sizeof name, "%d", i);
    hid_t g = rt_h5_group(layers, name);
    if (g >= 0 && rt_h5_put_str(g, "kind", rt_model_layer_kind(m, i)) < 0) {
        rt_h5_close(g);
        return -1;
    }
    return g;
}

/* Writes layer i as group <i> under layers: weight in PyTorch's layout and, for kinds
 * with one (not the embeddings), the bias (dims[0]). */
static int put_layer(hid_t layers, const struct rt_model *m, int i)
{
    int64_t dims[4];
    int rank = rt_model_layer_weight_dims(m, i, dims);
    if (rank == 0) return 0; /* nothing stored for layers without parameters */
    hid_t g = layer_group(layers, m, i);
    if (g < 0) return -1;
    float *w, *b;
    rt_model_layer_view(m, i, &w, &b, NULL, NULL);
    hsize_t wd[4];
    for (int k = 0; k < rank; k++)
        wd[k] = (hsize_t)dims[k];
    int has_bias = rt_model_layer_bias_count(m, i) > 0;
    int rc = rt_h5_put_f32(g, "weight", w, rank, wd) < 0 ||
                     (has_bias && rt_h5_put_f32(g, "bias", b, 1, wd) < 0)
                 ? -1
                 : 0;
    rt_h5_close(g);
    return rc;
}

/* The architecture attributes: the layer list in the job-file syntax and the input shape. */
static int put_architecture(hid_t loc, const struct rt_model *m)
{
    const struct rt_model_spec *s = &m->spec;
    struct rt_model_spec list = *s;
    list.widths_form = 0; /* the file always says each layer's kind */
    char text[RT_MAX_LAYERS * 48];
    rt_model_spec_format(text, sizeof text, &list);
    int version = RT_MODEL_FORMAT_VERSION;
    return rt_h5_put_str(loc, "format", RT_MODEL_FORMAT) < 0 ||
                   rt_h5_put_i32s(loc, "format_version", &version, 1) < 0 ||
                   rt_h5_put_str(loc, "architecture", text) < 0 ||
                   rt_h5_put_i32s(loc, "input_shape", s->input.d, s->input.rank) < 0 ||
                   rt_h5_put_str(loc, "loss", rt_loss_name(s->loss)) < 0 ||
                   rt_h5_put_str(loc, "init", rt_init_name(s->init)) < 0
               ? -1
               : 0;
}

int rt_model_write_loc(hid_t loc, const struct rt_model *m, const char *config_text)
{
    if (put_architecture(loc, m) < 0 ||
        (config_text && rt_h5_put_str(loc, "config", config_text) < 0))
        return -1;
    hid_t layers = rt_h5_group(loc, "layers");
    int rc = layers < 0 ? -1 : 0;
    for (int i = 0; rc == 0 && i < m->n_layers; i++)
        rc = put_layer(layers, m, i);
    rt_h5_close(layers);
    return rc;
}

/* Layer i in CSR under layers/<i>: indptr, indices, data, bias, and its shape; layers that
 * pruning never thins (embeddings, layer norms) stay dense. */
static int put_layer_csr(hid_t layers, const struct rt_model *m, int i)
{
    int64_t dims[4];
    int rank = rt_model_layer_weight_dims(m, i, dims);
    if (rank == 0) return 0;
    if (!rt_model_layer_prunable(m, i)) return put_layer(layers, m, i);
    hid_t g = layer_group(layers, m, i);
    if (g < 0) return -1;
    const struct rt_csr *c = &m->csr[i];
    float *w, *b;
    rt_model_layer_view(m, i, &w, &b, NULL, NULL);
    int shape[2] = {c->rows, c->cols}, wshape[4];
    for (int k = 0; k < rank; k++)
        wshape[k] = (int)dims[k];
    hsize_t nb = (hsize_t)c->rows, nd = (hsize_t)c->nnz;
    int rc = rt_h5_put_i32s(g, "shape", shape, 2) < 0 ||
                     rt_h5_put_i32s(g, "weight_shape", wshape, rank) < 0 ||
                     rt_h5_put_i64v(g, "indptr", c->indptr, (size_t)c->rows + 1) < 0 ||
                     rt_h5_put_i32v(g, "indices", c->indices, (size_t)c->nnz) < 0 ||
                     rt_h5_put_f32(g, "data", c->data, 1, &nd) < 0 ||
                     rt_h5_put_f32(g, "bias", b, 1, &nb) < 0
                 ? -1
                 : 0;
    rt_h5_close(g);
    return rc;
}

int rt_model_save_csr(const char *path, struct rt_model *m, const char *config_text)
{
    RT_TRY(rt_model_use_csr(m, 1));
    int64_t nnz = rt_model_weight_nonzeros(m);
    hid_t f = -1;
    /* In memory: its size is harder to bound, and it holds parameters only, once. */
    RT_TRY(rt_h5_create_mem(path, (size_t)nnz * 8 + (1 << 20), &f));
    hid_t layers = -1;
    int rc = put_architecture(f, m) < 0 || rt_h5_put_str(f, "storage", "csr") < 0 ||
                     (config_text && rt_h5_put_str(f, "config", config_text) < 0) ||
                     (layers = rt_h5_group(f, "layers")) < 0
                 ? -1
                 : 0;
    for (int i = 0; rc == 0 && i < m->n_layers; i++)
        rc = put_layer_csr(layers, m, i);
    rt_h5_close(layers);
    rt_model_use_csr(m, 0);
    if (rc < 0) {
        H5Fclose(f);
        return rt_errorf(RT_ERR_HDF5, "%s: HDF5 refused to build the model file", path);
    }
    return rt_h5_commit_mem(f, path);
}

int rt_model_save(const char *path, const struct rt_model *m, const char *config_text)
{
    hid_t f = -1;
    char tmp[4096];
    int mem = 0;
    size_t bytes = m->n_params * sizeof(float) + (config_text ? 2 * strlen(config_text) : 0);
    RT_TRY(rt_h5_create_reserved(path, bytes, tmp, sizeof tmp, &f, &mem));
    int ok = rt_model_write_loc(f, m, config_text) >= 0;
    return rt_h5_finish_reserved(f, tmp, path, mem, ok, "model file");
}

/* ---- reading --------------------------------------------------------------------------- */

/* format_version 1: an MLP as widths ("layers", int32) and one hidden activation. */
static int read_spec_v1(hid_t loc, const char *path, struct rt_model_spec *sp)
{
    char s[NAME_MAX_];
    int w[RT_MAX_LAYERS + 1], n = 0;
    RT_TRY(rt_h5_get_i32s(loc, path, "", "layers", w, RT_MAX_LAYERS + 1, &n));
    if (n < 2)
        return rt_errorf(RT_ERR_FORMAT, "%s: layers has %d width: expected 2 to %d", path, n,
                         RT_MAX_LAYERS + 1);
    for (int i = 0; i < n; i++)
        if (w[i] < 1)
            return rt_errorf(RT_ERR_FORMAT, "%s: layers[%d] = %d: expected a width >= 1", path, i,
                             w[i]);
    RT_TRY(rt_h5_get_str(loc, path, "", "activation", s, sizeof s));
    if (rt_act_parse(s, &sp->act) != 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: activation = \"%s\": unknown", path, s);
    rt_model_spec_widths(sp, w, n, sp->act);
    return RT_OK;
}

/* format_version 2: the layer list ("architecture") and the input shape. */
static int read_spec_v2(hid_t loc, const char *path, struct rt_model_spec *sp)
{
    char text[RT_MAX_LAYERS * 48], err[256];
    int d[3] = {0}, n = 0;
    RT_TRY(rt_h5_get_str(loc, path, "", "architecture", text, sizeof text));
    if (rt_model_spec_parse(sp, text, err, sizeof err) < 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: architecture = \"%s\": %s", path, text, err);
    RT_TRY(rt_h5_get_i32s(loc, path, "", "input_shape", d, 3, &n));
    if ((n != 1 && n != 3) || d[0] < 1 || (n == 3 && (d[1] < 1 || d[2] < 1)))
        return rt_errorf(RT_ERR_FORMAT, "%s: input_shape: expected (D) or (C, H, W) of sizes >= 1",
                         path);
    sp->input = (struct rt_shape){.rank = n, .d = {d[0], d[1], d[2]}};
    rt_model_spec_normalize(sp);
    int st = rt_model_spec_infer(sp, NULL);
    if (st != RT_OK) {
        char why[RT_ERROR_MAX];
        snprintf(why, sizeof why, "%s", rt_error_message(st));
        rt_error_clear();
        return rt_errorf(RT_ERR_FORMAT, "%s: the architecture does not fit input_shape: %s", path,
                         why);
    }
    return RT_OK;
}

int rt_model_read_spec_loc(hid_t loc, const char *path, struct rt_model_spec *out)
{
    char s[NAME_MAX_];
    RT_TRY(rt_h5_check_format(loc, path, RT_MODEL_FORMAT, RT_MODEL_FORMAT_VERSION, "model file"));
    int version = 0, n = 0;
    RT_TRY(rt_h5_get_i32s(loc, path, "", "format_version", &version, 1, &n));
    struct rt_model_spec sp;
    memset(&sp, 0, sizeof sp);
    RT_TRY(version == 1 ? read_spec_v1(loc, path, &sp) : read_spec_v2(loc, path, &sp));
    RT_TRY(rt_h5_get_str(loc, path, "", "loss", s, sizeof s));
    if (rt_loss_parse(s, &sp.loss) != 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: loss = \"%s\": unknown", path, s);
    RT_TRY(rt_h5_get_str(loc, path, "", "init", s, sizeof s));
    if (rt_init_parse(s, &sp.init) != 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: init = \"%s\": unknown", path, s);
    *out = sp;
    return RT_OK;
}

/* Checks CSR arrays (rows + 1 offsets from 0 to nnz, non-decreasing; columns in range and
 * increasing within a row) and scatters them into the dense weight w (OUT, IN). */
static int scatter_csr(const char *path, int layer, const int64_t *indptr, const int32_t *idx,
                       const float *data, int64_t nnz, float *w, int OUT, int IN)
{
    if (indptr[0] != 0 || indptr[OUT] != nnz)
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: layers/%d/indptr runs from %lld to %lld: expected 0 to %lld", path,
                         layer, (long long)indptr[0], (long long)indptr[OUT], (long long)nnz);
    memset(w, 0, (size_t)OUT * (size_t)IN * sizeof *w);
    for (int o = 0; o < OUT; o++) {
        /* the bound too: a later decrease back to nnz is seen only after this row is read */
        if (indptr[o + 1] < indptr[o] || indptr[o + 1] > nnz)
            return rt_errorf(RT_ERR_FORMAT,
                             "%s: layers/%d/indptr[%d] = %lld: expected non-decreasing offsets "
                             "from 0 to %lld",
                             path, layer, o + 1, (long long)indptr[o + 1], (long long)nnz);
        for (int64_t k = indptr[o]; k < indptr[o + 1]; k++) {
            if (idx[k] < 0 || idx[k] >= IN || (k > indptr[o] && idx[k] <= idx[k - 1]))
                return rt_errorf(RT_ERR_FORMAT,
                                 "%s: layers/%d/indices[%lld] = %d: expected increasing columns in "
                                 "[0, %d)",
                                 path, layer, (long long)k, idx[k], IN);
            w[(size_t)o * IN + (size_t)idx[k]] = data[k];
        }
    }
    return RT_OK;
}

/* Layer i's weight and bias as put_layer wrote them. */
static int read_dense_layer(hid_t loc, const char *path, struct rt_model *m, int i)
{
    char name[64];
    float *w, *b;
    int64_t dims[4];
    int rank = rt_model_layer_weight_dims(m, i, dims);
    if (rank == 0) return RT_OK;
    rt_model_layer_view(m, i, &w, &b, NULL, NULL);
    hsize_t wd[4];
    for (int k = 0; k < rank; k++)
        wd[k] = (hsize_t)dims[k];
    snprintf(name, sizeof name, "layers/%d/weight", i);
    RT_TRY(rt_h5_get_f32(loc, path, name, w, rank, wd));
    if (rt_model_layer_bias_count(m, i) == 0) return RT_OK;
    snprintf(name, sizeof name, "layers/%d/bias", i);
    return rt_h5_get_f32(loc, path, name, b, 1, wd);
}

static int read_csr_layer(hid_t loc, const char *path, struct rt_model *m, int i)
{
    int64_t dims[4];
    if (rt_model_layer_weight_dims(m, i, dims) == 0) return RT_OK;
    if (!rt_model_layer_prunable(m, i)) return read_dense_layer(loc, path, m, i);
    int OUT = (int)dims[0], IN = (int)(rt_model_layer_weights(m, i) / (size_t)dims[0]);
    char name[64];
    snprintf(name, sizeof name, "layers/%d/data", i);
    int64_t nnz = rt_h5_dataset_size(loc, name);
    if (nnz < 0 || nnz > (int64_t)OUT * IN)
        return rt_errorf(RT_ERR_FORMAT, "%s: %s missing or larger than the %dx%d layer", path, name,
                         OUT, IN);
    int64_t *indptr = malloc((size_t)(OUT + 1) * sizeof *indptr);
    int32_t *idx = malloc((size_t)(nnz ? nnz : 1) * sizeof *idx);
    float *data = malloc((size_t)(nnz ? nnz : 1) * sizeof *data);
    if (!indptr || !idx || !data) {
        free(indptr);
        free(idx);
        free(data);
        return rt_errorf(RT_ERR_NOMEM, "%s: CSR layer %d", path, i);
    }
    hsize_t n = (hsize_t)nnz, nb = (hsize_t)OUT;
    float *w, *b;
    rt_model_layer_view(m, i, &w, &b, NULL, NULL);
    int st = rt_h5_get_f32(loc, path, name, data, 1, &n);
    snprintf(name, sizeof name, "layers/%d/indptr", i);
    if (st == RT_OK)
        st = rt_h5_get_intv(loc, path, name, H5T_NATIVE_INT64, indptr, (size_t)OUT + 1);
    snprintf(name, sizeof name, "layers/%d/indices", i);
    if (st == RT_OK) st = rt_h5_get_intv(loc, path, name, H5T_NATIVE_INT32, idx, (size_t)nnz);
    snprintf(name, sizeof name, "layers/%d/bias", i);
    if (st == RT_OK) st = rt_h5_get_f32(loc, path, name, b, 1, &nb);
    if (st == RT_OK) st = scatter_csr(path, i, indptr, idx, data, nnz, w, OUT, IN);
    free(indptr);
    free(idx);
    free(data);
    return st;
}

static int read_csr(hid_t loc, const char *path, struct rt_model *m)
{
    for (int i = 0; i < m->n_layers; i++)
        RT_TRY(read_csr_layer(loc, path, m, i));
    return RT_OK;
}

int rt_model_read_params_loc(hid_t loc, const char *path, struct rt_model *m)
{
    struct rt_model_spec fs = {0};
    RT_TRY(rt_model_read_spec_loc(loc, path, &fs));
    const struct rt_model_spec *ms = &m->spec;
    if (!rt_model_spec_same_layers(&fs, ms)) {
        char a[RT_MAX_LAYERS * 48], b[RT_MAX_LAYERS * 48];
        rt_model_sizes_text(a, sizeof a, &fs);
        rt_model_sizes_text(b, sizeof b, ms);
        if (strcmp(a, b) == 0) { /* the widths agree: the activations do not */
            struct rt_model_spec la = fs, lb = *ms;
            la.widths_form = lb.widths_form = 0;
            rt_model_spec_format(a, sizeof a, &la);
            rt_model_spec_format(b, sizeof b, &lb);
        }
        return rt_errorf(RT_ERR_SHAPE, "%s: layers %s do not match the model's %s", path, a, b);
    }
    char storage[16] = "dense";
    if (rt_h5_has_attr(loc, "storage") == 1)
        RT_TRY(rt_h5_get_str(loc, path, "", "storage", storage, sizeof storage));
    if (strcmp(storage, "csr") == 0) return read_csr(loc, path, m);
    if (strcmp(storage, "dense") != 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: storage = \"%s\": expected dense or csr", path,
                         storage);
    for (int i = 0; i < m->n_layers; i++)
        RT_TRY(read_dense_layer(loc, path, m, i));
    return RT_OK;
}

/* The group holding the model: the root of a model file, /model of a checkpoint. */
static int open_model_loc(const char *path, hid_t *file, hid_t *loc)
{
    RT_TRY(rt_h5_open_read(path, file));
    if (H5Lexists(*file, "model", H5P_DEFAULT) > 0) { /* a checkpoint */
        *loc = H5Gopen2(*file, "model", H5P_DEFAULT);
        if (*loc < 0) {
            H5Fclose(*file);
            return rt_errorf(RT_ERR_FORMAT, "%s: /model is not a readable group", path);
        }
        return RT_OK;
    }
    *loc = *file;
    return RT_OK;
}

static void close_model_loc(hid_t file, hid_t loc)
{
    if (loc != file) rt_h5_close(loc);
    H5Fclose(file);
}

int rt_model_file_spec(const char *path, struct rt_model_spec *out)
{
    hid_t f, loc;
    RT_TRY(open_model_loc(path, &f, &loc));
    int st = rt_model_read_spec_loc(loc, path, out);
    close_model_loc(f, loc);
    return st;
}

int rt_model_file_load(const char *path, struct rt_model *m)
{
    hid_t f, loc;
    RT_TRY(open_model_loc(path, &f, &loc));
    int st = rt_model_read_params_loc(loc, path, m);
    close_model_loc(f, loc);
    return st;
}

int rt_model_file_is_csr(const char *path)
{
    hid_t f, loc;
    if (open_model_loc(path, &f, &loc) != RT_OK) {
        rt_error_clear();
        return 0;
    }
    char storage[16] = "";
    int csr = rt_h5_has_attr(loc, "storage") == 1 &&
              rt_h5_get_str(loc, path, "", "storage", storage, sizeof storage) == RT_OK &&
              strcmp(storage, "csr") == 0;
    close_model_loc(f, loc);
    return csr;
}
