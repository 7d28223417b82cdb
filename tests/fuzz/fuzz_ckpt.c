/* fuzz_ckpt.c - the checkpoint and model-file readers (src/ckpt over HDF5).
 *
 * Each input is a file given to every reader a resumed or evaluating run uses:
 *   rt_ckpt_read_header; when it succeeds with a small architecture (< 1e6 parameters):
 *   rt_model_init + rt_optim_init (optimizer kind and buffers as the file says, so that the
 *   read goes past the kind check) + rt_ckpt_read, rt_ckpt_read_mask, rt_ckpt_read_metrics,
 *   rt_ckpt_read_config, the distillation teacher, and rt_ckpt_inspect;
 *   rt_model_file_spec; when small: rt_model_file_load and rt_model_file_is_csr.
 * Properties: metric row counts within the caps; no HDF5 identifier left open by any call
 * (fuzz_util.h); and the sanitizers' (ASan: out-of-bounds and use-after-free also inside
 * HDF5's memcpy/memset into our buffers; UBSan). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "ringtrain/ckpt.h"
#include "ringtrain/config.h"
#include "ringtrain/model_file.h"
#include "ringtrain/optim.h"

#define MAX_PARAMS  1000000.0
#define METRICS_CAP 64

static struct fuzz_file input;
static FILE *devnull;
static struct rt_optim_cfg default_optim;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    fuzz_file_open(&input, "rt-fuzz-ckpt");
    devnull = fopen("/dev/null", "w");
    if (!devnull) fuzz_die("/dev/null");
    static struct rt_config c;
    rt_config_defaults(&c);
    default_optim = c.optim;
    return 0;
}

static int small(const struct rt_model_spec *s)
{
    if (s->n_sizes < 2 || s->n_sizes > RT_MAX_LAYERS + 1) return 0;
    double params = 0;
    for (int i = 0; i < s->n_sizes; i++) {
        if (s->sizes[i] < 1 || s->sizes[i] > 1000000) return 0;
        if (i > 0) params += (double)s->sizes[i] * ((double)s->sizes[i - 1] + 1);
    }
    return params < MAX_PARAMS;
}

/* The optimizer the file holds, as a job would configure it: optim/name, and SGD momentum
 * when optim/m exists. Anything unreadable gives the defaults (the read then fails early). */
static struct rt_optim_cfg file_optim(const char *path)
{
    struct rt_optim_cfg cfg = default_optim;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return cfg;
    if (H5Lexists(f, "optim", H5P_DEFAULT) > 0 &&
        H5Aexists_by_name(f, "optim", "name", H5P_DEFAULT) > 0) {
        hid_t a = H5Aopen_by_name(f, "optim", "name", H5P_DEFAULT, H5P_DEFAULT);
        hid_t t = a < 0 ? -1 : H5Aget_type(a), sp = a < 0 ? -1 : H5Aget_space(a);
        hid_t mt = H5Tcopy(H5T_C_S1);
        char *s = NULL;
        if (t >= 0 && sp >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0 &&
            H5Sget_simple_extent_npoints(sp) == 1 && H5Tset_size(mt, H5T_VARIABLE) >= 0 &&
            H5Aread(a, mt, &s) >= 0 && s) {
            enum rt_optim_kind k;
            if (rt_optim_parse(s, &k) == 0) cfg.kind = k;
            H5free_memory(s);
        }
        H5Tclose(mt);
        if (sp >= 0) H5Sclose(sp);
        if (t >= 0) H5Tclose(t);
        if (a >= 0) H5Aclose(a);
    }
    if (cfg.kind == RT_OPTIM_SGD)
        cfg.momentum =
            H5Lexists(f, "optim", H5P_DEFAULT) > 0 && H5Lexists(f, "optim/m", H5P_DEFAULT) > 0
                ? 0.9
                : 0.0;
    H5Fclose(f);
    return cfg;
}

static void read_checkpoint(const char *path)
{
    struct rt_model_spec spec;
    struct rt_ckpt_state st;
    rt_error_clear();
    if (FUZZ_CALL(rt_ckpt_read_header(path, &spec, &st)) != RT_OK) return;
    if (!small(&spec)) return;
    struct rt_model m;
    memset(&m, 0, sizeof m);
    rt_error_clear();
    if (rt_model_init(&m, &spec, 1) != RT_OK) fuzz_die("rt_model_init of a small spec failed");
    struct rt_optim o;
    struct rt_optim_cfg cfg = file_optim(path);
    rt_error_clear();
    if (rt_optim_init(&o, &cfg, m.n_params) != RT_OK) fuzz_die("rt_optim_init failed");

    static struct rt_ckpt_metric rows[METRICS_CAP];
    struct rt_ckpt_state s2;
    rt_error_clear();
    if (FUZZ_CALL(rt_ckpt_read(path, &m, &o, &s2, rows, METRICS_CAP)) == RT_OK &&
        (s2.n_metrics < 0 || s2.n_metrics > METRICS_CAP))
        fuzz_die("rt_ckpt_read: n_metrics beyond the cap");

    size_t bytes = (size_t)(rt_model_weight_count(&m) + 7) / 8;
    uint8_t *mask = malloc(bytes ? bytes : 1);
    if (!mask) fuzz_die("malloc");
    int found = 0;
    rt_error_clear();
    FUZZ_CALL(rt_ckpt_read_mask(path, mask, bytes, &found));
    free(mask);

    int64_t n = -1;
    rt_error_clear();
    if (FUZZ_CALL(rt_ckpt_read_metrics(path, rows, METRICS_CAP, &n)) == RT_OK &&
        (n < 0 || n > METRICS_CAP))
        fuzz_die("rt_ckpt_read_metrics: n beyond the cap");

    char *text = NULL;
    rt_error_clear();
    FUZZ_CALL(rt_ckpt_read_config(path, &text));
    free(text);

    struct rt_model_spec ts;
    rt_error_clear();
    if (FUZZ_CALL(rt_ckpt_read_teacher_spec(path, &ts, &found)) == RT_OK && found && small(&ts)) {
        struct rt_model t;
        memset(&t, 0, sizeof t);
        rt_error_clear();
        if (rt_model_init(&t, &ts, 1) != RT_OK) fuzz_die("rt_model_init of a small teacher");
        rt_error_clear();
        FUZZ_CALL(rt_ckpt_read_teacher(path, &t));
        rt_model_free(&t);
    }

    /* inspect allocates the whole metrics table: only for tables of sane size */
    if (st.n_metrics <= 4096) {
        rt_error_clear();
        FUZZ_CALL(rt_ckpt_inspect(path, devnull));
    }
    rt_optim_free(&o);
    rt_model_free(&m);
}

static void read_model_file(const char *path)
{
    struct rt_model_spec spec;
    rt_error_clear();
    if (FUZZ_CALL(rt_model_file_spec(path, &spec)) != RT_OK || !small(&spec)) return;
    struct rt_model m;
    memset(&m, 0, sizeof m);
    rt_error_clear();
    if (rt_model_init(&m, &spec, 1) != RT_OK) fuzz_die("rt_model_init of a small spec failed");
    rt_error_clear();
    FUZZ_CALL(rt_model_file_load(path, &m));
    rt_error_clear();
    rt_model_file_is_csr(path);
    rt_model_free(&m);
}

static void one_input(const char *path)
{
    read_checkpoint(path);
    read_model_file(path);
    rt_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file_set(&input, data, size);
    fuzz_run_checked(one_input, input.path);
    return 0;
}
