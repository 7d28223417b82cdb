/* ckpt.c - checkpoint files: write, read, list, prune (layout and contract in ckpt.h).
 *
 * A checkpoint is written once, to path.tmp, and renamed into place only when complete and
 * on disk (rt_h5_commit), so a crash, a full disk or a kill during the write leaves the
 * previous checkpoints untouched. Reading verifies every chunk's Fletcher32 checksum, which
 * is how `--resume auto` tells a damaged newest file from a good older one. */
#include "ringtrain/ckpt.h"
#include "h5/h5io.h"
#include "ckpt/model_io.h"
#include "h5/h5util.h"
#include "ringtrain/status.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef RT_VERSION
#define RT_VERSION "unknown"
#endif

/* ---- the metrics table as an HDF5 compound -------------------------------------------- */

static hid_t metric_type(void)
{
    hid_t s = H5Tcopy(H5T_C_S1), t = H5Tcreate(H5T_COMPOUND, sizeof(struct rt_ckpt_metric));
    if (s < 0 || t < 0 || H5Tset_size(s, RT_CKPT_PHASE_MAX) < 0 ||
        H5Tinsert(t, "phase", HOFFSET(struct rt_ckpt_metric, phase), s) < 0) {
        rt_h5_close(s);
        rt_h5_close(t);
        return -1;
    }
    rt_h5_close(s);
    struct {
        const char *name;
        size_t off;
        hid_t type;
    } f[] = {
        {"epoch", HOFFSET(struct rt_ckpt_metric, epoch), H5T_NATIVE_INT64},
        {"step", HOFFSET(struct rt_ckpt_metric, step), H5T_NATIVE_INT64},
        {"loss", HOFFSET(struct rt_ckpt_metric, loss), H5T_NATIVE_DOUBLE},
        {"test_loss", HOFFSET(struct rt_ckpt_metric, test_loss), H5T_NATIVE_DOUBLE},
        {"test_acc", HOFFSET(struct rt_ckpt_metric, test_acc), H5T_NATIVE_DOUBLE},
        {"lr", HOFFSET(struct rt_ckpt_metric, lr), H5T_NATIVE_DOUBLE},
        {"samples_per_s", HOFFSET(struct rt_ckpt_metric, samples_per_s), H5T_NATIVE_DOUBLE},
        {"seconds", HOFFSET(struct rt_ckpt_metric, seconds), H5T_NATIVE_DOUBLE},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (H5Tinsert(t, f[i].name, f[i].off, f[i].type) < 0) return rt_h5_close(t);
    return t;
}

static int put_metrics(hid_t f, const struct rt_ckpt_metric *rows, int64_t n)
{
    hid_t g = rt_h5_group(f, "metrics"), mt = metric_type(), ft = mt < 0 ? -1 : H5Tcopy(mt);
    hsize_t dim = (hsize_t)n, chunk = n > 0 ? (hsize_t)n : 1;
    hid_t sp = H5Screate_simple(1, &dim, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = g < 0 || ft < 0 || sp < 0 || dcpl < 0 || H5Tpack(ft) < 0 ||
                     H5Pset_chunk(dcpl, 1, &chunk) < 0 || H5Pset_fletcher32(dcpl) < 0
                 ? -1
                 : 0;
    hid_t ds = rc < 0 ? -1 : H5Dcreate2(g, "epochs", ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0 || (n > 0 && H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) < 0)) rc = -1;
    rt_h5_close(ds);
    rt_h5_close(dcpl);
    rt_h5_close(sp);
    rt_h5_close(ft);
    rt_h5_close(mt);
    rt_h5_close(g);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------------- */

static int put_root(hid_t f, const struct rt_ckpt_state *s, const char *config_text)
{
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    int version = RT_CKPT_FORMAT_VERSION, world = s->world_size, phase_index = s->phase_index;
    if (rt_h5_put_str(f, "format", RT_CKPT_FORMAT) < 0 ||
        rt_h5_put_i32s(f, "format_version", &version, 1) < 0 ||
        rt_h5_put_str(f, "created", created) < 0 ||
        rt_h5_put_str(f, "ringtrain_version", RT_VERSION) < 0 ||
        rt_h5_put_i32s(f, "world_size", &world, 1) < 0 || rt_h5_put_str(f, "phase", s->phase) < 0 ||
        rt_h5_put_i32s(f, "phase_index", &phase_index, 1) < 0 ||
        rt_h5_put_i64(f, "phase_step", s->phase_step) < 0 ||
        rt_h5_put_i64(f, "phase_epoch0", s->phase_epoch0) < 0 ||
        rt_h5_put_i64(f, "step", s->step) < 0 || rt_h5_put_i64(f, "epoch", s->epoch) < 0 ||
        rt_h5_put_i64(f, "step_in_epoch", s->step_in_epoch) < 0 ||
        rt_h5_put_i64(f, "steps_per_epoch", s->steps_per_epoch) < 0 ||
        rt_h5_put_i64(f, "total_steps", s->total_steps) < 0)
        return -1;
    return config_text ? rt_h5_put_str(f, "config", config_text) : 0;
}

/* Sharded moments, piece by piece through the caller's fill. */
struct moment_io {
    const struct rt_ckpt_moments *mo;
    int which;
};

static int fill_piece(void *ctx, size_t lo, size_t len, float *buf)
{
    const struct moment_io *io = ctx;
    return io->mo->fill(io->mo->ctx, io->which, lo, len, buf) == RT_OK ? 0 : -1;
}

static int put_piece(void *ctx, size_t lo, size_t len, const float *buf)
{
    const struct moment_io *io = ctx;
    return io->mo->put(io->mo->ctx, io->which, lo, len, buf);
}

static int put_moment(hid_t g, const char *name, const float *full, int which,
                      const struct rt_ckpt_moments *mo, hsize_t n)
{
    if (!mo) return rt_h5_put_f32(g, name, full, 1, &n);
    float *buf = malloc(RT_CKPT_PIECE * sizeof *buf);
    struct moment_io io = {mo, which};
    int rc = buf ? rt_h5_put_f32_pieces(g, name, mo->n, buf, RT_CKPT_PIECE, fill_piece, &io) : -1;
    free(buf);
    return rc;
}

static int put_optim(hid_t f, const struct rt_optim *o, const struct rt_ckpt_state *s,
                     const struct rt_ckpt_moments *mo)
{
    hid_t g = rt_h5_group(f, "optim");
    const struct rt_optim_cfg *c = &o->cfg;
    hsize_t n = (hsize_t)(mo ? mo->n : o->n);
    int nesterov = c->nesterov;
    int rc =
        g < 0 || rt_h5_put_str(g, "name", rt_optim_name(c->kind)) < 0 ||
                rt_h5_put_i64(g, "step", o->step) < 0 || rt_h5_put_f64(g, "lr", s->last_lr) < 0 ||
                rt_h5_put_f64(g, "momentum", c->momentum) < 0 ||
                rt_h5_put_i32s(g, "nesterov", &nesterov, 1) < 0 ||
                rt_h5_put_f64(g, "weight_decay", c->weight_decay) < 0 ||
                rt_h5_put_f64(g, "beta1", c->beta1) < 0 ||
                rt_h5_put_f64(g, "beta2", c->beta2) < 0 || rt_h5_put_f64(g, "eps", c->eps) < 0 ||
                (o->m && put_moment(g, "m", o->m, 0, mo, n) < 0) ||
                (o->v && put_moment(g, "v", o->v, 1, mo, n) < 0)
            ? -1
            : 0;
    rt_h5_close(g);
    return rc;
}

static int put_sampler_rng_progress(hid_t f, const struct rt_ckpt_state *s)
{
    hid_t g = rt_h5_group(f, "sampler"), r = rt_h5_group(f, "rng"), p = rt_h5_group(f, "progress");
    int rc =
        g < 0 || r < 0 || p < 0 || rt_h5_put_str(g, "shuffle", rt_shuffle_name(s->shuffle)) < 0 ||
                rt_h5_put_u64(g, "seed", s->seed) < 0 || rt_h5_put_i64(g, "epoch", s->epoch) < 0 ||
                rt_h5_put_i64(g, "step_in_epoch", s->step_in_epoch) < 0 ||
                rt_h5_put_i64(g, "global_batch", s->global_batch) < 0 ||
                rt_h5_put_i64(g, "rows", s->rows) < 0 ||
                rt_h5_put_str(r, "generator",
                              "xoshiro256** seeded by rt_rng_derive(seed, stream, index)") < 0 ||
                rt_h5_put_u64(r, "seed", s->seed) < 0 ||
                rt_h5_put_f64(p, "samples", s->samples) < 0 ||
                rt_h5_put_f64(p, "train_seconds", s->train_seconds) < 0 ||
                rt_h5_put_f64(p, "wall_seconds", s->wall_seconds) < 0 ||
                rt_h5_put_f64(p, "epoch_loss_sum", s->epoch_loss_sum) < 0 ||
                rt_h5_put_f64(p, "epoch_rows", s->epoch_rows) < 0 ||
                rt_h5_put_f64(p, "last_lr", s->last_lr) < 0
            ? -1
            : 0;
    rt_h5_close(g);
    rt_h5_close(r);
    rt_h5_close(p);
    return rc;
}

/* The mask as uint8 bytes, chunked with Fletcher32 like every other dataset. */
static int put_mask(hid_t f, const struct rt_ckpt_content *c)
{
    if (!c->mask) return 0;
    hid_t g = rt_h5_group(f, "prune");
    hsize_t n = (hsize_t)c->mask_bytes, chunk = n < (1u << 20) ? (n ? n : 1) : 1u << 20;
    hid_t sp = H5Screate_simple(1, &n, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = g < 0 || sp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 1, &chunk) < 0 ||
                     H5Pset_fletcher32(dcpl) < 0 ||
                     rt_h5_put_f64(g, "sparsity", c->mask_sparsity) < 0 ||
                     rt_h5_put_i64(g, "weights", c->mask_weights) < 0
                 ? -1
                 : 0;
    hid_t ds =
        rc < 0 ? -1 : H5Dcreate2(g, "mask", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0 ||
        (n > 0 && H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->mask) < 0))
        rc = -1;
    rt_h5_close(ds);
    rt_h5_close(dcpl);
    rt_h5_close(sp);
    rt_h5_close(g);
    return rc;
}

static int put_exact(hid_t f, const struct rt_ckpt_content *c)
{
    if (!c->exact_ref) return 0;
    hid_t g = rt_h5_group(f, "comm");
    hsize_t n = (hsize_t)c->exact_blocks;
    int rc = g < 0 || rt_h5_put_f32(g, "exact_ref", c->exact_ref, 1, &n) < 0 ? -1 : 0;
    rt_h5_close(g);
    return rc;
}

int rt_ckpt_read_exact(const char *path, float *ref, size_t blocks, int *found)
{
    *found = 0;
    hid_t f;
    RT_TRY(rt_h5_open_read(path, &f));
    int st = RT_OK;
    if (H5Lexists(f, "comm", H5P_DEFAULT) > 0 && H5Lexists(f, "comm/exact_ref", H5P_DEFAULT) > 0) {
        hsize_t n = (hsize_t)blocks;
        st = rt_h5_get_f32(f, path, "comm/exact_ref", ref, 1, &n);
        *found = st == RT_OK;
    }
    H5Fclose(f);
    return st;
}

int rt_ckpt_read_mask(const char *path, uint8_t *buf, size_t bytes, int *found)
{
    *found = 0;
    hid_t f;
    RT_TRY(rt_h5_open_read(path, &f));
    int st = RT_OK;
    if (H5Lexists(f, "prune", H5P_DEFAULT) > 0 && H5Lexists(f, "prune/mask", H5P_DEFAULT) > 0) {
        hid_t ds = H5Dopen2(f, "prune/mask", H5P_DEFAULT);
        hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
        hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
        if (n != (hssize_t)bytes)
            st = rt_errorf(RT_ERR_SHAPE, "%s: prune/mask has %lld bytes, the model needs %zu", path,
                           (long long)n, bytes);
        else if (H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            st =
                rt_errorf(RT_ERR_IO, "%s: prune/mask: checksum mismatch or unreadable chunk", path);
        else
            *found = 1;
        rt_h5_close(sp);
        rt_h5_close(ds);
    }
    H5Fclose(f);
    return st;
}

/* The frozen teacher of a distillation phase, in the model layout under /distill/teacher. */
static int put_teacher(hid_t f, const struct rt_model *teacher)
{
    if (!teacher) return 0;
    hid_t d = rt_h5_group(f, "distill");
    hid_t g = d < 0 ? -1 : rt_h5_group(d, "teacher");
    int rc = g < 0 || rt_model_write_loc(g, teacher, NULL) < 0 ? -1 : 0;
    rt_h5_close(g);
    rt_h5_close(d);
    return rc;
}

/* Opens /distill/teacher of a checkpoint: *loc < 0 when there is none. */
static int open_teacher(const char *path, hid_t *file, hid_t *loc)
{
    *loc = -1;
    RT_TRY(rt_h5_open_read(path, file));
    if (H5Lexists(*file, "distill", H5P_DEFAULT) > 0 &&
        H5Lexists(*file, "distill/teacher", H5P_DEFAULT) > 0)
        *loc = H5Gopen2(*file, "distill/teacher", H5P_DEFAULT);
    return RT_OK;
}

int rt_ckpt_read_teacher_spec(const char *path, struct rt_model_spec *spec, int *found)
{
    hid_t f, g;
    RT_TRY(open_teacher(path, &f, &g));
    *found = g >= 0;
    int st = g >= 0 ? rt_model_read_spec_loc(g, path, spec) : RT_OK;
    rt_h5_close(g);
    H5Fclose(f);
    return st;
}

int rt_ckpt_read_teacher(const char *path, struct rt_model *m)
{
    hid_t f, g;
    RT_TRY(open_teacher(path, &f, &g));
    int st = g >= 0 ? rt_model_read_params_loc(g, path, m)
                    : rt_errorf(RT_ERR_FORMAT, "%s: no /distill/teacher", path);
    rt_h5_close(g);
    H5Fclose(f);
    return st;
}

/* The bytes of the arrays a checkpoint holds, at least (rt_h5_create_reserved). */
static size_t data_bytes(const struct rt_ckpt_content *c)
{
    size_t arrays = 1 + (c->optim->m != NULL || c->moments) + (c->optim->v != NULL || c->moments);
    size_t bytes = c->model->n_params * sizeof(float) * arrays;
    bytes += c->teacher ? c->teacher->n_params * sizeof(float) : 0;
    bytes += (c->mask ? c->mask_bytes : 0) + c->exact_blocks * sizeof(float);
    bytes += (size_t)c->state->n_metrics * sizeof(struct rt_ckpt_metric) * 2;
    bytes += c->config_text ? 2 * strlen(c->config_text) : 0;
    return bytes;
}

int rt_ckpt_write(const char *path, const struct rt_ckpt_content *c)
{
    hid_t f = -1;
    char tmp[4096];
    int mem = 0;
    RT_TRY(rt_h5_create_reserved(path, data_bytes(c), tmp, sizeof tmp, &f, &mem));
    hid_t g = rt_h5_group(f, "model");
    int rc = g < 0 || put_root(f, c->state, c->config_text) < 0 ||
                     rt_model_write_loc(g, c->model, NULL) < 0 ||
                     put_optim(f, c->optim, c->state, c->moments) < 0 ||
                     put_sampler_rng_progress(f, c->state) < 0 ||
                     put_metrics(f, c->metrics, c->state->n_metrics) < 0 || put_mask(f, c) < 0 ||
                     put_exact(f, c) < 0 || put_teacher(f, c->teacher) < 0
                 ? -1
                 : 0;
    rt_h5_close(g);
    return rt_h5_finish_reserved(f, tmp, path, mem, rc == 0, "checkpoint");
}

/* ---- reading ---------------------------------------------------------------------------- */

static int check_format(hid_t f, const char *path)
{
    return rt_h5_check_format(f, path, RT_CKPT_FORMAT, RT_CKPT_FORMAT_VERSION, "checkpoint");
}

static int get_state(hid_t f, const char *path, struct rt_ckpt_state *s)
{
    char name[32];
    int world = 0, n = 0, phase_index = 0;
    hid_t g = H5Gopen2(f, "sampler", H5P_DEFAULT), p = H5Gopen2(f, "progress", H5P_DEFAULT);
    hid_t o = H5Gopen2(f, "optim", H5P_DEFAULT);
    int st = g < 0 || p < 0 || o < 0
                 ? rt_errorf(RT_ERR_FORMAT, "%s: missing group /sampler, /progress or /optim", path)
                 : RT_OK;
#define GET(expr)                                                                                  \
    if (st == RT_OK) st = (expr)
    GET(rt_h5_get_str(f, path, "", "phase", s->phase, sizeof s->phase));
    GET(rt_h5_get_i32s(f, path, "", "world_size", &world, 1, &n));
    GET(rt_h5_get_i32s(f, path, "", "phase_index", &phase_index, 1, &n));
    GET(rt_h5_get_i64(f, path, "", "phase_step", &s->phase_step));
    GET(rt_h5_get_i64(f, path, "", "phase_epoch0", &s->phase_epoch0));
    GET(rt_h5_get_i64(f, path, "", "step", &s->step));
    GET(rt_h5_get_i64(f, path, "", "epoch", &s->epoch));
    GET(rt_h5_get_i64(f, path, "", "step_in_epoch", &s->step_in_epoch));
    GET(rt_h5_get_i64(f, path, "", "steps_per_epoch", &s->steps_per_epoch));
    GET(rt_h5_get_i64(f, path, "", "total_steps", &s->total_steps));
    GET(rt_h5_get_i64(o, path, "optim/", "step", &s->optim_step));
    GET(rt_h5_get_str(g, path, "sampler/", "shuffle", name, sizeof name));
    if (st == RT_OK && rt_shuffle_parse(name, &s->shuffle) != 0)
        st = rt_errorf(RT_ERR_FORMAT, "%s: sampler/shuffle = \"%s\": unknown", path, name);
    GET(rt_h5_get_u64(g, path, "sampler/", "seed", &s->seed));
    GET(rt_h5_get_i64(g, path, "sampler/", "global_batch", &s->global_batch));
    GET(rt_h5_get_i64(g, path, "sampler/", "rows", &s->rows));
    GET(rt_h5_get_f64(p, path, "progress/", "samples", &s->samples));
    GET(rt_h5_get_f64(p, path, "progress/", "train_seconds", &s->train_seconds));
    GET(rt_h5_get_f64(p, path, "progress/", "wall_seconds", &s->wall_seconds));
    GET(rt_h5_get_f64(p, path, "progress/", "epoch_loss_sum", &s->epoch_loss_sum));
    GET(rt_h5_get_f64(p, path, "progress/", "epoch_rows", &s->epoch_rows));
    GET(rt_h5_get_f64(p, path, "progress/", "last_lr", &s->last_lr));
#undef GET
    s->world_size = world;
    s->phase_index = phase_index;
    if (st == RT_OK && (s->step < 0 || s->epoch < 0 || s->step_in_epoch < 0 ||
                        s->steps_per_epoch < 1 || s->step_in_epoch > s->steps_per_epoch))
        st = rt_errorf(RT_ERR_FORMAT,
                       "%s: inconsistent position: step %lld, epoch %lld, step_in_epoch %lld of "
                       "%lld",
                       path, (long long)s->step, (long long)s->epoch, (long long)s->step_in_epoch,
                       (long long)s->steps_per_epoch);
    rt_h5_close(g);
    rt_h5_close(p);
    rt_h5_close(o);
    return st;
}

/* Number of rows of /metrics/epochs (0 when absent). */
static int64_t metric_rows(hid_t f)
{
    if (H5Lexists(f, "metrics", H5P_DEFAULT) <= 0) return 0;
    hid_t ds = H5Dopen2(f, "metrics/epochs", H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hssize_t n = sp < 0 ? 0 : H5Sget_simple_extent_npoints(sp);
    rt_h5_close(sp);
    rt_h5_close(ds);
    return n > 0 ? (int64_t)n : 0;
}

static int open_ckpt(const char *path, hid_t *f, struct rt_model_spec *spec,
                     struct rt_ckpt_state *s)
{
    RT_TRY(rt_h5_open_read(path, f));
    memset(s, 0, sizeof *s);
    int st = check_format(*f, path);
    hid_t g = st == RT_OK ? H5Gopen2(*f, "model", H5P_DEFAULT) : -1;
    if (st == RT_OK && g < 0) st = rt_errorf(RT_ERR_FORMAT, "%s: no /model group", path);
    if (st == RT_OK) st = rt_model_read_spec_loc(g, path, spec);
    if (st == RT_OK) st = get_state(*f, path, s);
    if (st == RT_OK) s->n_metrics = metric_rows(*f);
    rt_h5_close(g);
    if (st != RT_OK) *f = rt_h5_close(*f);
    return st;
}

int rt_ckpt_read_header(const char *path, struct rt_model_spec *spec, struct rt_ckpt_state *s)
{
    hid_t f;
    RT_TRY(open_ckpt(path, &f, spec, s));
    H5Fclose(f);
    return RT_OK;
}

static int get_moment(hid_t f, const char *path, const char *name, float *full, int which,
                      const struct rt_ckpt_moments *mo, hsize_t n)
{
    if (!mo) return rt_h5_get_f32(f, path, name, full, 1, &n);
    float *buf = malloc(RT_CKPT_PIECE * sizeof *buf);
    if (!buf) return rt_errorf(RT_ERR_NOMEM, "%s: %s: no memory for a piece", path, name);
    struct moment_io io = {mo, which};
    int st = rt_h5_get_f32_pieces(f, path, name, mo->n, buf, RT_CKPT_PIECE, put_piece, &io);
    free(buf);
    return st;
}

static int get_optim(hid_t f, const char *path, struct rt_optim *o,
                     const struct rt_ckpt_moments *mo)
{
    char name[32];
    hid_t g = H5Gopen2(f, "optim", H5P_DEFAULT);
    int st = rt_h5_get_str(g, path, "optim/", "name", name, sizeof name);
    enum rt_optim_kind kind = RT_OPTIM_SGD;
    if (st == RT_OK && rt_optim_parse(name, &kind) != 0)
        st = rt_errorf(RT_ERR_FORMAT, "%s: optim/name = \"%s\": unknown", path, name);
    if (st == RT_OK && kind != o->cfg.kind)
        st = rt_errorf(RT_ERR_INCOMPAT, "%s: the checkpoint's optimizer is %s, the job's is %s",
                       path, name, rt_optim_name(o->cfg.kind));
    /* SGD keeps a momentum buffer only with momentum > 0: a buffer on one side only would
     * be dropped or invented, and the continuation would not be the same run. */
    int file_m = H5Lexists(g, "m", H5P_DEFAULT) > 0, file_v = H5Lexists(g, "v", H5P_DEFAULT) > 0;
    if (st == RT_OK && (file_m != (o->m != NULL) || file_v != (o->v != NULL)))
        st = rt_errorf(RT_ERR_INCOMPAT,
                       "%s: the checkpoint's %s %s a momentum/moment buffer, the job's %s", path,
                       name, file_m ? "has" : "has no",
                       o->m ? "needs one (momentum > 0)" : "has none (momentum = 0)");
    hsize_t n = (hsize_t)(mo ? mo->n : o->n);
    if (st == RT_OK && o->m) st = get_moment(f, path, "optim/m", o->m, 0, mo, n);
    if (st == RT_OK && o->v) st = get_moment(f, path, "optim/v", o->v, 1, mo, n);
    if (st == RT_OK) st = rt_h5_get_i64(g, path, "optim/", "step", &o->step);
    rt_h5_close(g);
    return st;
}

static int get_metrics(hid_t f, const char *path, struct rt_ckpt_metric *rows, int64_t cap,
                       int64_t *n)
{
    int64_t have = *n;
    if (cap < 0) cap = 0;
    if (have == 0) return RT_OK;
    hid_t ds = H5Dopen2(f, "metrics/epochs", H5P_DEFAULT), mt = metric_type();
    hid_t fs = ds < 0 ? -1 : H5Dget_space(ds);
    hsize_t count = (hsize_t)(have < cap ? have : cap), start = 0;
    hid_t ms = H5Screate_simple(1, &count, NULL);
    /* start and count have one dimension: HDF5 would read as many as the file's rank */
    int rc = ds < 0 || mt < 0 || fs < 0 || ms < 0 || count == 0 ||
                     H5Sget_simple_extent_ndims(fs) != 1 ||
                     H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
                     H5Dread(ds, mt, ms, fs, H5P_DEFAULT, rows) < 0
                 ? -1
                 : 0;
    rt_h5_close(ms);
    rt_h5_close(fs);
    rt_h5_close(mt);
    rt_h5_close(ds);
    if (count == 0) {
        *n = 0;
        return RT_OK;
    }
    if (rc < 0)
        return rt_errorf(RT_ERR_IO, "%s: metrics/epochs: checksum mismatch or unreadable", path);
    for (hsize_t i = 0; i < count; i++)
        rows[i].phase[RT_CKPT_PHASE_MAX - 1] = '\0';
    *n = (int64_t)count;
    return RT_OK;
}

int rt_ckpt_read(const char *path, struct rt_model *m, struct rt_optim *o, struct rt_ckpt_state *s,
                 struct rt_ckpt_metric *metrics, int64_t metrics_cap)
{
    return rt_ckpt_read_sharded(path, m, o, s, metrics, metrics_cap, NULL);
}

int rt_ckpt_read_sharded(const char *path, struct rt_model *m, struct rt_optim *o,
                         struct rt_ckpt_state *s, struct rt_ckpt_metric *metrics,
                         int64_t metrics_cap, const struct rt_ckpt_moments *mo)
{
    hid_t f;
    struct rt_model_spec spec;
    RT_TRY(open_ckpt(path, &f, &spec, s));
    hid_t g = H5Gopen2(f, "model", H5P_DEFAULT);
    int st = g < 0 ? rt_errorf(RT_ERR_FORMAT, "%s: no /model group", path) : RT_OK;
    if (st == RT_OK) st = rt_model_read_params_loc(g, path, m);
    rt_h5_close(g);
    if (st == RT_OK) st = get_optim(f, path, o, mo);
    if (st == RT_OK) st = get_metrics(f, path, metrics, metrics_cap, &s->n_metrics);
    H5Fclose(f);
    return st;
}

int rt_ckpt_read_moments(const char *path, const struct rt_ckpt_moments *mo, int has_m, int has_v)
{
    hid_t f;
    RT_TRY(rt_h5_open_read(path, &f));
    int st = check_format(f, path);
    hsize_t n = (hsize_t)mo->n;
    if (st == RT_OK && has_m) st = get_moment(f, path, "optim/m", NULL, 0, mo, n);
    if (st == RT_OK && has_v) st = get_moment(f, path, "optim/v", NULL, 1, mo, n);
    H5Fclose(f);
    return st;
}

int rt_ckpt_read_config(const char *path, char **text)
{
    *text = NULL;
    hid_t f;
    RT_TRY(rt_h5_open_read(path, &f));
    int st = RT_OK;
    if (rt_h5_has_attr(f, "config") == 1) {
        size_t cap = 1 << 16;
        *text = malloc(cap);
        st = *text ? rt_h5_get_str(f, path, "", "config", *text, cap)
                   : rt_errorf(RT_ERR_NOMEM, "cannot allocate the config text");
    }
    H5Fclose(f);
    return st;
}

/* ---- the checkpoint directory ----------------------------------------------------------- */

int rt_ckpt_path(char *buf, size_t cap, const char *dir, int64_t step, const char *tag)
{
    int n = snprintf(buf, cap, "%s/ckpt-%08lld%s%s.h5", dir[0] ? dir : ".", (long long)step,
                     tag && tag[0] ? "-" : "", tag ? tag : "");
    if (n < 0 || (size_t)n >= cap)
        return rt_errorf(RT_ERR_INVAL, "checkpoint.dir = %s: path too long", dir);
    return RT_OK;
}

/* The step of a checkpoint file name, or -1 when name is not ckpt-<digits>[-tag].h5 (a
 * .tmp leftover is not a checkpoint). */
static int64_t name_step(const char *name)
{
    size_t len = strlen(name);
    if (strncmp(name, "ckpt-", 5) != 0 || len < 9 || strcmp(name + len - 3, ".h5") != 0) return -1;
    const char *p = name + 5;
    int64_t step = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 18; p++, digits++)
        step = step * 10 + (*p - '0');
    if (digits == 0 || (*p != '.' && *p != '-')) return -1;
    return step;
}

struct listed {
    int64_t step;
    char *path;
};

static int newest_first(const void *a, const void *b)
{
    const struct listed *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? 1 : -1;
    return -strcmp(x->path, y->path);
}

int rt_ckpt_list(const char *dir, char ***paths, int *n)
{
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir[0] ? dir : ".");
    if (!d) {
        if (errno == ENOENT) return RT_OK;
        return rt_errorf(RT_ERR_IO, "checkpoint.dir = %s: %s", dir, strerror(errno));
    }
    struct listed *v = NULL;
    int cap = 0, count = 0, st = RT_OK;
    for (struct dirent *e; st == RT_OK && (e = readdir(d));) {
        int64_t step = name_step(e->d_name);
        if (step < 0) continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            struct listed *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                st = rt_errorf(RT_ERR_NOMEM, "listing %s", dir);
                break;
            }
            v = nv;
        }
        size_t len = strlen(dir[0] ? dir : ".") + strlen(e->d_name) + 2;
        v[count].path = malloc(len);
        if (!v[count].path) {
            st = rt_errorf(RT_ERR_NOMEM, "listing %s", dir);
            break;
        }
        snprintf(v[count].path, len, "%s/%s", dir[0] ? dir : ".", e->d_name);
        v[count++].step = step;
    }
    closedir(d);
    if (count > 1) qsort(v, (size_t)count, sizeof *v, newest_first);
    char **out = count ? malloc((size_t)count * sizeof *out) : NULL;
    if (count && !out && st == RT_OK) st = rt_errorf(RT_ERR_NOMEM, "listing %s", dir);
    for (int i = 0; i < count; i++) {
        if (out && st == RT_OK)
            out[i] = v[i].path;
        else
            free(v[i].path);
    }
    free(v);
    if (st != RT_OK) {
        free(out);
        return st;
    }
    *paths = out;
    *n = count;
    return RT_OK;
}

void rt_ckpt_list_free(char **paths, int n)
{
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

/* Removes ckpt-*.h5.tmp files: only rank 0 writes checkpoints, one at a time, so any such
 * file while no write is under way is a leftover of a killed writer. */
static int remove_leftovers(const char *dir)
{
    DIR *d = opendir(dir[0] ? dir : ".");
    if (!d) return RT_OK;
    int st = RT_OK;
    char path[4096];
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "ckpt-", 5) != 0 || len < 8 ||
            strcmp(e->d_name + len - 7, ".h5.tmp") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir[0] ? dir : ".", e->d_name);
        if (unlink(path) != 0 && errno != ENOENT && st == RT_OK)
            st = rt_errorf(RT_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    }
    closedir(d);
    return st;
}

int rt_ckpt_prune(const char *dir, int keep)
{
    char **paths;
    int n;
    RT_TRY(rt_ckpt_list(dir, &paths, &n));
    int st = RT_OK, periodic = 0;
    for (int i = 0; i < n; i++) {
        const char *base = strrchr(paths[i], '/');
        base = base ? base + 1 : paths[i];
        if (strchr(base + 5, '-')) continue; /* the end of a phase: kept */
        if (++periodic <= (keep < 1 ? 1 : keep)) continue;
        if (unlink(paths[i]) != 0 && errno != ENOENT && st == RT_OK)
            st = rt_errorf(RT_ERR_IO, "%s: cannot remove: %s", paths[i], strerror(errno));
    }
    rt_ckpt_list_free(paths, n);
    int st2 = remove_leftovers(dir);
    return st != RT_OK ? st : st2;
}

int rt_ckpt_read_metrics(const char *path, struct rt_ckpt_metric *rows, int64_t cap, int64_t *n)
{
    hid_t f;
    RT_TRY(rt_h5_open_read(path, &f));
    *n = metric_rows(f);
    int st = get_metrics(f, path, rows, cap, n);
    H5Fclose(f);
    return st;
}
