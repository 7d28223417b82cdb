/* model_file.c - save and load a model as one HDF5 file (layout in model_file.h).
 *
 * Writing is atomic through rt_h5_create_tmp/rt_h5_commit (path.tmp, flush, close, fsync,
 * rename, fsync dir). Reading checks, in order: the file opens as HDF5, the `format`
 * attribute says "ringtrain-model", `format_version` is one we know, the architecture
 * attributes parse, and only then the parameter datasets (type float32 and exact shapes).
 * Every HDF5 identifier is checked and closed on one cleanup path per function.
 *
 * Not here: training checkpoints (optimizer state, RNG, sampler position). */
#include "ringtrain/model_file.h"
#include "data/h5util.h"
#include "ringtrain/status.h"

#include <stdio.h>
#include <string.h>

#define STR_MAX 256 /* longest attribute string we read back (names, not the config) */

/* ---- attribute writers ----------------------------------------------------------------- */

/* Attribute `name` of file type ftype from val of memory type mtype. */
static int put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, hid_t space,
                    const void *val)
{
    hid_t a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, mtype, val) < 0 ? -1 : 0;
    rt_h5_close(a);
    return rc;
}

static int put_str(hid_t obj, const char *name, const char *val)
{
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    int rc = -1;
    if (t >= 0 && sp >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 &&
        H5Tset_cset(t, H5T_CSET_UTF8) >= 0)
        rc = put_attr(obj, name, t, t, sp, &val);
    rt_h5_close(t);
    rt_h5_close(sp);
    return rc;
}

static int put_ints(hid_t obj, const char *name, const int *v, int n, int scalar)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    int32_t buf[RT_MAX_LAYERS + 1];
    for (int i = 0; i < n; i++)
        buf[i] = v[i];
    int rc = sp < 0 ? -1 : put_attr(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, sp, buf);
    rt_h5_close(sp);
    return rc;
}

/* Writes a float32 dataset of rank 1 or 2 under group g. */
static int put_floats(hid_t g, const char *name, const float *v, int rank, const hsize_t *dims)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = sp < 0
                   ? -1
                   : H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc =
        ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0 ? -1 : 0;
    rt_h5_close(ds);
    rt_h5_close(sp);
    return rc;
}

/* Writes layer i as group <i> under layers: weight (OUT, IN) and bias (OUT). */
static int put_layer(hid_t layers, const struct rt_model *m, int i)
{
    char name[16];
    snprintf(name, sizeof name, "%d", i);
    hid_t g = H5Gcreate2(layers, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    float *w, *b;
    rt_model_layer_view(m, i, &w, &b, NULL, NULL);
    hsize_t wd[2] = {(hsize_t)m->spec.sizes[i + 1], (hsize_t)m->spec.sizes[i]};
    int rc = put_floats(g, "weight", w, 2, wd) < 0 || put_floats(g, "bias", b, 1, wd) < 0 ? -1 : 0;
    rt_h5_close(g);
    return rc;
}

int rt_model_save(const char *path, const struct rt_model *m, const char *config_text)
{
    char tmp[4096];
    hid_t f = -1, layers = -1;
    RT_TRY(rt_h5_create_tmp(path, tmp, sizeof tmp, &f));
    const struct rt_model_spec *s = &m->spec;
    int version = RT_MODEL_FORMAT_VERSION;
    if (put_str(f, "format", RT_MODEL_FORMAT) < 0 ||
        put_ints(f, "format_version", &version, 1, 1) < 0 ||
        put_ints(f, "layers", s->sizes, s->n_sizes, 0) < 0 ||
        put_str(f, "activation", rt_act_name(s->act)) < 0 ||
        put_str(f, "loss", rt_loss_name(s->loss)) < 0 ||
        put_str(f, "init", rt_init_name(s->init)) < 0 ||
        (config_text && put_str(f, "config", config_text) < 0))
        goto fail;
    layers = H5Gcreate2(f, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (layers < 0) goto fail;
    for (int i = 0; i < m->n_layers; i++)
        if (put_layer(layers, m, i) < 0) goto fail;
    rt_h5_close(layers);
    return rt_h5_commit(f, tmp, path);

fail:
    rt_h5_close(layers);
    rt_h5_discard(f, tmp);
    return rt_errorf(RT_ERR_IO, "%s: writing the model failed (disk full?)", tmp);
}

/* ---- reading --------------------------------------------------------------------------- */

/* Reads string attribute `name` of the root into buf (cap bytes). 1 when found and read,
 * 0 when absent, -1 when present but not a readable string. */
static int get_str(hid_t f, const char *name, char *buf, size_t cap)
{
    htri_t ex = H5Aexists(f, name);
    if (ex == 0) return 0;
    if (ex < 0) return -1;
    int rc = -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    hid_t mt = -1;
    if (t < 0 || sp < 0 || H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1)
        goto out;
    htri_t vl = H5Tis_variable_str(t);
    if (vl > 0) {
        char *s = NULL;
        mt = H5Tcopy(H5T_C_S1);
        if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 ||
            H5Aread(a, mt, &s) < 0)
            goto out;
        snprintf(buf, cap, "%s", s ? s : "");
        H5free_memory(s);
        rc = 1;
    } else if (vl == 0) {
        size_t n = H5Tget_size(t);
        if (n == 0 || n >= cap) /* longer than any name we store: not ours */
            goto out;
        mt = H5Tcopy(t);
        if (mt < 0 || H5Aread(a, mt, buf) < 0) goto out;
        buf[n] = '\0';
        rc = 1;
    }
out:
    rt_h5_close(mt);
    rt_h5_close(sp);
    rt_h5_close(t);
    rt_h5_close(a);
    return rc;
}

/* Reads integer attribute `name` (scalar or 1-D, at most cap values) as int32 into v; sets
 * *n. 1 found, 0 absent, -1 not integers or too many. */
static int get_ints(hid_t f, const char *name, int *v, int cap, int *n)
{
    htri_t ex = H5Aexists(f, name);
    if (ex == 0) return 0;
    if (ex < 0) return -1;
    int rc = -1;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    if (t < 0 || sp < 0 || H5Tget_class(t) != H5T_INTEGER) goto out;
    int rank = H5Sget_simple_extent_ndims(sp);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    if (rank < 0 || rank > 1 || np < 1 || np > cap) goto out;
    int32_t buf[RT_MAX_LAYERS + 2];
    if (np > (hssize_t)(sizeof buf / sizeof buf[0]) || H5Aread(a, H5T_NATIVE_INT32, buf) < 0)
        goto out;
    for (hssize_t i = 0; i < np; i++)
        v[i] = buf[i];
    *n = (int)np;
    rc = 1;
out:
    rt_h5_close(sp);
    rt_h5_close(t);
    rt_h5_close(a);
    return rc;
}

/* Checks format and version and reads the architecture of an open file. */
static int read_spec(hid_t f, const char *path, struct rt_model_spec *out)
{
    char s[STR_MAX];
    int rc = get_str(f, "format", s, sizeof s);
    if (rc <= 0)
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: not a ringtrain model file (no \"format\" "
                         "attribute)",
                         path);
    if (strcmp(s, RT_MODEL_FORMAT) != 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: format = \"%s\": expected \"%s\"", path, s,
                         RT_MODEL_FORMAT);
    int version = 0, n = 0;
    if (get_ints(f, "format_version", &version, 1, &n) <= 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: no integer \"format_version\" attribute", path);
    if (version > RT_MODEL_FORMAT_VERSION)
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: format_version = %d is newer than this ringtrain "
                         "reads (%d)",
                         path, version, RT_MODEL_FORMAT_VERSION);
    if (version < 1)
        return rt_errorf(RT_ERR_FORMAT, "%s: format_version = %d: expected 1", path, version);

    struct rt_model_spec sp;
    memset(&sp, 0, sizeof sp);
    rc = get_ints(f, "layers", sp.sizes, RT_MAX_LAYERS + 1, &sp.n_sizes);
    if (rc <= 0 || sp.n_sizes < 2)
        return rt_errorf(RT_ERR_FORMAT,
                         "%s: \"layers\" attribute missing or not 2 to %d "
                         "integers",
                         path, RT_MAX_LAYERS + 1);
    for (int i = 0; i < sp.n_sizes; i++)
        if (sp.sizes[i] < 1)
            return rt_errorf(RT_ERR_FORMAT, "%s: layers[%d] = %d: expected a width >= 1", path, i,
                             sp.sizes[i]);
    if (get_str(f, "activation", s, sizeof s) <= 0 || rt_act_parse(s, &sp.act) != 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: \"activation\" attribute missing or unknown", path);
    if (get_str(f, "loss", s, sizeof s) <= 0 || rt_loss_parse(s, &sp.loss) != 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: \"loss\" attribute missing or unknown", path);
    if (get_str(f, "init", s, sizeof s) <= 0 || rt_init_parse(s, &sp.init) != 0)
        return rt_errorf(RT_ERR_FORMAT, "%s: \"init\" attribute missing or unknown", path);
    *out = sp;
    return RT_OK;
}

int rt_model_file_spec(const char *path, struct rt_model_spec *out)
{
    hid_t f;
    RT_TRY(rt_h5_open_read(path, &f));
    int st = read_spec(f, path, out);
    H5Fclose(f);
    return st;
}

static void sizes_text(char *buf, size_t cap, const struct rt_model_spec *s)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->n_sizes && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%d", i ? "-" : "", s->sizes[i]);
}

/* Reads float32 dataset `name` of exactly dims (rank 1 or 2) into v. */
static int get_floats(hid_t f, const char *path, const char *name, float *v, int rank,
                      const hsize_t *dims)
{
    char tn[32];
    int st = RT_OK;
    hid_t ds = -1, sp = -1, t = -1;
    if (H5Lexists(f, "layers", H5P_DEFAULT) <= 0 || H5Oexists_by_name(f, name, H5P_DEFAULT) <= 0) {
        st = rt_errorf(RT_ERR_FORMAT, "%s: no dataset %s", path, name);
        goto out;
    }
    ds = H5Dopen2(f, name, H5P_DEFAULT);
    t = ds < 0 ? -1 : H5Dget_type(ds);
    sp = ds < 0 ? -1 : H5Dget_space(ds);
    if (ds < 0 || t < 0 || sp < 0) {
        st = rt_errorf(RT_ERR_FORMAT, "%s: %s is not a readable dataset", path, name);
        goto out;
    }
    if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4) {
        st = rt_errorf(RT_ERR_FORMAT, "%s: %s is %s: expected float32", path, name,
                       rt_h5_type_name(t, tn, sizeof tn));
        goto out;
    }
    hsize_t got[H5S_MAX_RANK];
    int r = H5Sget_simple_extent_dims(sp, got, NULL);
    if (r != rank || got[0] != dims[0] || (rank == 2 && got[1] != dims[1])) {
        char want[64], have[64];
        if (rank == 2)
            snprintf(want, sizeof want, "(%llu, %llu)", (unsigned long long)dims[0],
                     (unsigned long long)dims[1]);
        else
            snprintf(want, sizeof want, "(%llu)", (unsigned long long)dims[0]);
        if (r == 2)
            snprintf(have, sizeof have, "(%llu, %llu)", (unsigned long long)got[0],
                     (unsigned long long)got[1]);
        else if (r == 1)
            snprintf(have, sizeof have, "(%llu)", (unsigned long long)got[0]);
        else
            snprintf(have, sizeof have, "rank %d", r);
        st = rt_errorf(RT_ERR_SHAPE, "%s: %s has shape %s but the model needs %s", path, name, have,
                       want);
        goto out;
    }
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        st = rt_errorf(RT_ERR_IO, "%s: reading %s failed", path, name);
out:
    rt_h5_close(sp);
    rt_h5_close(t);
    rt_h5_close(ds);
    return st;
}

int rt_model_file_load(const char *path, struct rt_model *m)
{
    hid_t f;
    /* read_spec fills fs on success; zeroed anyway because clang-analyzer cannot see that
     * rt_errorf (in another file) returns a negative code, and would follow a failure on. */
    struct rt_model_spec fs = {0};
    RT_TRY(rt_h5_open_read(path, &f));
    int st = read_spec(f, path, &fs);
    if (st < 0) goto out;
    const struct rt_model_spec *ms = &m->spec;
    int same = fs.n_sizes == ms->n_sizes;
    for (int i = 0; same && i < fs.n_sizes; i++)
        same = fs.sizes[i] == ms->sizes[i];
    if (!same) {
        char a[256], b[256];
        sizes_text(a, sizeof a, &fs);
        sizes_text(b, sizeof b, ms);
        st = rt_errorf(RT_ERR_SHAPE, "%s: layer widths %s do not match the model's %s", path, a, b);
        goto out;
    }
    if (fs.act != ms->act) {
        st = rt_errorf(RT_ERR_SHAPE, "%s: activation %s does not match the model's %s", path,
                       rt_act_name(fs.act), rt_act_name(ms->act));
        goto out;
    }
    for (int i = 0; i < m->n_layers && st == RT_OK; i++) {
        char name[64];
        float *w, *b;
        rt_model_layer_view(m, i, &w, &b, NULL, NULL);
        hsize_t wd[2] = {(hsize_t)ms->sizes[i + 1], (hsize_t)ms->sizes[i]};
        snprintf(name, sizeof name, "/layers/%d/weight", i);
        st = get_floats(f, path, name, w, 2, wd);
        if (st == RT_OK) {
            snprintf(name, sizeof name, "/layers/%d/bias", i);
            st = get_floats(f, path, name, b, 1, wd);
        }
    }
out:
    H5Fclose(f);
    return st;
}
