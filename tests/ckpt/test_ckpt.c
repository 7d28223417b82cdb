/* test_ckpt.c - checkpoints (ckpt.h): write/read round trips for each optimizer state layout,
 * the metrics table, refusals (architecture, optimizer kind, newer format, a model file,
 * missing and truncated files), Fletcher32 corruption caught on read and inspect, the
 * directory naming/listing/pruning rules, and the inspect summary. */
#include "check_util.h"
#include "ringtrain/ckpt.h"
#include "ringtrain/model.h"
#include "ringtrain/model_file.h"
#include "ringtrain/optim.h"
#include "ringtrain/status.h"

#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_METRICS 3
#define OPT_STEP  1201 /* updates done: distinct from the global step on purpose */

/* ---- fixtures ----------------------------------------------------------------------------- */

/* 5-7-3 by default; every enum away from its zero value so that a dropped field shows. */
static struct rt_model_spec spec3(int in, int hidden, int out)
{
    struct rt_model_spec s;
    memset(&s, 0, sizeof s);
    int w[3] = {in, hidden, out};
    rt_model_spec_widths(&s, w, 3, RT_ACT_TANH);
    s.loss = RT_LOSS_MSE;
    s.init = RT_INIT_HE;
    return s;
}

static void model_ok(struct rt_model *m, const struct rt_model_spec *s, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    ck_assert_int_eq(rt_model_init(m, s, 4), RT_OK);
    rt_model_init_params(m, seed);
    for (size_t i = 0; i < m->n_params; i++) /* He biases are zero: make them nonzero too */
        m->params[i] += 0.001f * (float)(i % 13 + 1);
}

/* A zeroed model of spec s (rt_model_init leaves the parameters at zero). */
static void model_fresh(struct rt_model *m, const struct rt_model_spec *s)
{
    memset(m, 0, sizeof *m);
    ck_assert_int_eq(rt_model_init(m, s, 4), RT_OK);
}

static const struct rt_optim_cfg adam_cfg = {.kind = RT_OPTIM_ADAM,
                                             .lr = 1e-3,
                                             .weight_decay = 0.01,
                                             .beta1 = 0.9,
                                             .beta2 = 0.999,
                                             .eps = 1e-8};
static const struct rt_optim_cfg sgd_cfg = {.kind = RT_OPTIM_SGD, .lr = 0.1};
static const struct rt_optim_cfg sgd_mom_cfg = {
    .kind = RT_OPTIM_SGD, .lr = 0.1, .momentum = 0.9, .nesterov = 1};

/* An optimizer of cfg over n floats with known, distinct state: m and v never share a value. */
static void optim_ok(struct rt_optim *o, const struct rt_optim_cfg *cfg, size_t n)
{
    ck_assert_int_eq(rt_optim_init(o, cfg, n), RT_OK);
    for (size_t i = 0; i < n; i++) {
        if (o->m) o->m[i] = (i % 2 ? -1.0f : 1.0f) * (0.5f + 0.01f * (float)i);
        if (o->v) o->v[i] = 2.0f + 0.003f * (float)i;
    }
    o->step = OPT_STEP;
}

/* Every field set, none to its zero/default value, all different from each other. */
static struct rt_ckpt_state state_ok(void)
{
    struct rt_ckpt_state s;
    memset(&s, 0, sizeof s);
    strcpy(s.phase, "train");
    s.step = 1234; /* = epoch * steps_per_epoch + step_in_epoch */
    s.epoch = 3;
    s.step_in_epoch = 34;
    s.steps_per_epoch = 400;
    s.total_steps = 4000;
    s.world_size = 6;
    s.optim_step = OPT_STEP; /* the writer stores the optimizer's own o->step (optim/step) */
    s.shuffle = RT_SHUFFLE_SHARD;
    s.seed = 0xF00DFACE12345678ULL; /* above INT64_MAX: must survive as uint64 */
    s.global_batch = 96;
    s.rows = 38400;
    s.samples = 118464.0;
    s.train_seconds = 12.375;
    s.epoch_loss_sum = 41.8125;
    s.epoch_rows = 3264.0;
    s.last_lr = 3.0517578125e-4;
    s.wall_seconds = 19.625;
    s.n_metrics = N_METRICS;
    s.phase_index = 0;
    s.phase_step = 1234;
    s.phase_epoch0 = 0;
    return s;
}

static void metrics_ok(struct rt_ckpt_metric *r)
{
    memset(r, 0, N_METRICS * sizeof *r);
    for (int i = 0; i < N_METRICS; i++) {
        strcpy(r[i].phase, "train");
        r[i].epoch = i;
        r[i].step = 400 * (i + 1);
        r[i].loss = 1.5 - 0.25 * i;
        r[i].test_loss = 1.75 - 0.125 * i;
        r[i].test_acc = 0.5 + 0.0625 * i;
        r[i].lr = 1e-3 / (i + 1);
        r[i].samples_per_s = 10000.5 + 100 * i;
        r[i].seconds = 3.25 * (i + 1);
    }
    strcpy(r[1].phase, "phase-15-chars!"); /* RT_CKPT_PHASE_MAX - 1 characters: no room left */
    r[2].test_acc = -1.0;                  /* regression or no test set */
}

static const char *config_text = "[model]\nlayers = 5,7,3\n[optim]\nname = adam\n";

/* Writes a checkpoint of model m, optimizer o, state_ok() and metrics_ok() to path. */
static void write_ok(const char *path, const struct rt_model *m, const struct rt_optim *o)
{
    struct rt_ckpt_state st = state_ok();
    struct rt_ckpt_metric rows[N_METRICS];
    metrics_ok(rows);
    struct rt_ckpt_content c = {
        .model = m, .optim = o, .state = &st, .metrics = rows, .config_text = config_text};
    rt_error_clear();
    int rc = rt_ckpt_write(path, &c);
    ck_assert_msg(rc == RT_OK, "rt_ckpt_write: %s", rt_error_message(rc));
}

/* A complete good checkpoint (5-7-3, Adam) at a fresh scratch path; caller frees. */
static char *good_ckpt(const char *hint)
{
    struct rt_model_spec s = spec3(5, 7, 3);
    struct rt_model m;
    struct rt_optim o;
    model_ok(&m, &s, 11);
    optim_ok(&o, &adam_cfg, m.n_params);
    char *p = strdup(scratch_path(hint));
    write_ok(p, &m, &o);
    rt_optim_free(&o);
    rt_model_free(&m);
    return p;
}

static void expect_fail(int st, int code, const char *path, const char *n1, const char *n2)
{
    const char *msg = rt_error_message(st);
    ck_assert_msg(st == code, "got %s (%s), expected %s", rt_status_name(st), msg,
                  rt_status_name(code));
    ck_assert_msg(!path || strstr(msg, path), "message \"%s\" does not name %s", msg, path);
    ck_assert_msg(!n1 || strstr(msg, n1), "message \"%s\" lacks \"%s\"", msg, n1);
    ck_assert_msg(!n2 || strstr(msg, n2), "message \"%s\" lacks \"%s\"", msg, n2);
}

static void assert_spec_eq(const struct rt_model_spec *a, const struct rt_model_spec *b)
{
    ck_assert(rt_model_spec_same_layers(a, b));
    ck_assert_int_eq(a->act, b->act);
    ck_assert_int_eq(a->loss, b->loss);
    ck_assert_int_eq(a->init, b->init);
}

static void assert_state_eq(const struct rt_ckpt_state *a, const struct rt_ckpt_state *b)
{
    ck_assert_str_eq(a->phase, b->phase);
    ck_assert_int_eq(a->step, b->step);
    ck_assert_int_eq(a->epoch, b->epoch);
    ck_assert_int_eq(a->step_in_epoch, b->step_in_epoch);
    ck_assert_int_eq(a->steps_per_epoch, b->steps_per_epoch);
    ck_assert_int_eq(a->total_steps, b->total_steps);
    ck_assert_int_eq(a->world_size, b->world_size);
    ck_assert_int_eq(a->optim_step, b->optim_step);
    ck_assert_int_eq(a->shuffle, b->shuffle);
    ck_assert_uint_eq(a->seed, b->seed);
    ck_assert_int_eq(a->global_batch, b->global_batch);
    ck_assert_int_eq(a->rows, b->rows);
    ck_assert_double_eq(a->samples, b->samples);
    ck_assert_double_eq(a->train_seconds, b->train_seconds);
    ck_assert_double_eq(a->epoch_loss_sum, b->epoch_loss_sum);
    ck_assert_double_eq(a->epoch_rows, b->epoch_rows);
    ck_assert_double_eq(a->last_lr, b->last_lr);
    ck_assert_double_eq(a->wall_seconds, b->wall_seconds);
    ck_assert_int_eq(a->n_metrics, b->n_metrics);
    ck_assert_int_eq(a->phase_index, b->phase_index);
    ck_assert_int_eq(a->phase_step, b->phase_step);
    ck_assert_int_eq(a->phase_epoch0, b->phase_epoch0);
    /* both sides are memset before being filled, so equal fields mean equal bytes: this
     * catches a field added to the struct but not to the file */
    ck_assert_msg(memcmp(a, b, sizeof *a) == 0, "rt_ckpt_state differs beyond the fields above");
}

static void assert_metrics_eq(const struct rt_ckpt_metric *a, const struct rt_ckpt_metric *b,
                              int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        ck_assert_str_eq(a[i].phase, b[i].phase);
        ck_assert_int_eq(a[i].epoch, b[i].epoch);
        ck_assert_int_eq(a[i].step, b[i].step);
        ck_assert_double_eq(a[i].loss, b[i].loss);
        ck_assert_double_eq(a[i].test_loss, b[i].test_loss);
        ck_assert_double_eq(a[i].test_acc, b[i].test_acc);
        ck_assert_double_eq(a[i].lr, b[i].lr);
        ck_assert_double_eq(a[i].samples_per_s, b[i].samples_per_s);
        ck_assert_double_eq(a[i].seconds, b[i].seconds);
    }
}

/* The sentinel byte pattern of metric rows the reader must not touch. */
static void fill_sentinel(struct rt_ckpt_metric *r, size_t n)
{
    memset(r, 0xAB, n * sizeof *r);
}

static int is_sentinel(const struct rt_ckpt_metric *r)
{
    const unsigned char *p = (const unsigned char *)r;
    for (size_t i = 0; i < sizeof *r; i++)
        if (p[i] != 0xAB) return 0;
    return 1;
}

static int has_link(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    htri_t g = H5Lexists(f, "optim", H5P_DEFAULT);
    htri_t e = g > 0 ? H5Lexists(f, name, H5P_DEFAULT) : 0;
    H5Fclose(f);
    return e > 0;
}

/* ---- round trips -------------------------------------------------------------------------- */

static void round_trip(const struct rt_optim_cfg *cfg, int want_m, int want_v)
{
    struct rt_model_spec s = spec3(5, 7, 3);
    struct rt_model a, b;
    struct rt_optim oa, ob;
    model_ok(&a, &s, 11);
    optim_ok(&oa, cfg, a.n_params);
    ck_assert_int_eq(oa.m != NULL, want_m);
    ck_assert_int_eq(oa.v != NULL, want_v);
    char *p = strdup(scratch_path("ckpt.h5"));
    write_ok(p, &a, &oa);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    ck_assert_int_eq(access(tmp, F_OK), -1); /* renamed into place */
    /* layout: m and v present exactly when the optimizer keeps them */
    ck_assert_int_eq(has_link(p, "optim/m"), want_m);
    ck_assert_int_eq(has_link(p, "optim/v"), want_v);

    struct rt_ckpt_state want = state_ok(), got;
    struct rt_ckpt_metric rows[N_METRICS];
    metrics_ok(rows);

    /* header */
    struct rt_model_spec gs;
    memset(&got, 0x5A, sizeof got);
    rt_error_clear();
    int rc = rt_ckpt_read_header(p, &gs, &got);
    ck_assert_msg(rc == RT_OK, "rt_ckpt_read_header: %s", rt_error_message(rc));
    assert_spec_eq(&gs, &s);
    assert_state_eq(&got, &want);

    /* everything, into a zeroed model and a zeroed optimizer of the same kind */
    model_fresh(&b, &gs);
    ck_assert_int_eq(rt_optim_init(&ob, cfg, b.n_params), RT_OK);
    ck_assert(memcmp(a.params, b.params, sizeof(float) * a.n_params) != 0);
    ck_assert_int_eq(ob.step, 0);
    struct rt_ckpt_metric gr[N_METRICS + 2];
    fill_sentinel(gr, N_METRICS + 2);
    memset(&got, 0x5A, sizeof got);
    rt_error_clear();
    rc = rt_ckpt_read(p, &b, &ob, &got, gr, N_METRICS + 2);
    ck_assert_msg(rc == RT_OK, "rt_ckpt_read: %s", rt_error_message(rc));
    ck_assert_uint_eq(b.n_params, a.n_params);
    ck_assert_msg(memcmp(a.params, b.params, sizeof(float) * a.n_params) == 0,
                  "parameters differ after the round trip");
    if (want_m)
        ck_assert_msg(memcmp(oa.m, ob.m, sizeof(float) * oa.n) == 0, "optim m differs");
    else
        ck_assert_ptr_null(ob.m);
    if (want_v)
        ck_assert_msg(memcmp(oa.v, ob.v, sizeof(float) * oa.n) == 0, "optim v differs");
    else
        ck_assert_ptr_null(ob.v);
    ck_assert_int_eq(ob.step, OPT_STEP);
    assert_state_eq(&got, &want);
    assert_metrics_eq(gr, rows, N_METRICS);
    ck_assert_msg(memcmp(gr, rows, sizeof rows) == 0, "metric rows differ beyond their fields");
    ck_assert(is_sentinel(&gr[N_METRICS]) && is_sentinel(&gr[N_METRICS + 1]));

    /* a smaller metrics buffer clips st->n_metrics */
    fill_sentinel(gr, N_METRICS + 2);
    rt_error_clear();
    ck_assert_int_eq(rt_ckpt_read(p, &b, &ob, &got, gr, 1), RT_OK);
    ck_assert_int_eq(got.n_metrics, 1);
    assert_metrics_eq(gr, rows, 1);
    ck_assert(is_sentinel(&gr[1]));

    char *text = NULL;
    ck_assert_int_eq(rt_ckpt_read_config(p, &text), RT_OK);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, config_text);
    free(text);

    rt_optim_free(&oa);
    rt_optim_free(&ob);
    rt_model_free(&a);
    rt_model_free(&b);
    unlink(p);
    free(p);
}

START_TEST(round_trip_adam)
{
    round_trip(&adam_cfg, 1, 1);
}
END_TEST

START_TEST(round_trip_sgd)
{
    round_trip(&sgd_cfg, 0, 0);
}
END_TEST

START_TEST(round_trip_sgd_momentum)
{
    round_trip(&sgd_mom_cfg, 1, 0);
}
END_TEST

START_TEST(no_metrics_no_config)
{
    struct rt_model_spec s = spec3(5, 7, 3);
    struct rt_model m;
    struct rt_optim o;
    model_ok(&m, &s, 3);
    optim_ok(&o, &adam_cfg, m.n_params);
    struct rt_ckpt_state st = state_ok();
    st.n_metrics = 0;
    struct rt_ckpt_content c = {.model = &m, .optim = &o, .state = &st};
    char *p = strdup(scratch_path("empty.h5"));
    ck_assert_int_eq(rt_ckpt_write(p, &c), RT_OK);
    struct rt_ckpt_metric row;
    fill_sentinel(&row, 1);
    int64_t n = 99;
    ck_assert_int_eq(rt_ckpt_read_metrics(p, &row, 1, &n), RT_OK);
    ck_assert_int_eq(n, 0);
    ck_assert(is_sentinel(&row));
    struct rt_ckpt_state got;
    ck_assert_int_eq(rt_ckpt_read(p, &m, &o, &got, &row, 1), RT_OK);
    ck_assert_int_eq(got.n_metrics, 0);
    char *text = (char *)&row; /* must become NULL: no config stored */
    ck_assert_int_eq(rt_ckpt_read_config(p, &text), RT_OK);
    ck_assert_ptr_null(text);
    rt_optim_free(&o);
    rt_model_free(&m);
    unlink(p);
    free(p);
}
END_TEST

/* ---- metrics ------------------------------------------------------------------------------ */

START_TEST(read_metrics_cap)
{
    char *p = good_ckpt("metrics.h5");
    struct rt_ckpt_metric want[N_METRICS], got[N_METRICS + 1];
    metrics_ok(want);

    fill_sentinel(got, N_METRICS + 1);
    int64_t n = -1;
    ck_assert_int_eq(rt_ckpt_read_metrics(p, got, 2, &n), RT_OK);
    ck_assert_int_eq(n, 2);
    assert_metrics_eq(got, want, 2); /* the first rows, in order */
    ck_assert(is_sentinel(&got[2]));

    fill_sentinel(got, N_METRICS + 1);
    ck_assert_int_eq(rt_ckpt_read_metrics(p, got, N_METRICS + 1, &n), RT_OK);
    ck_assert_int_eq(n, N_METRICS);
    assert_metrics_eq(got, want, N_METRICS);
    ck_assert(is_sentinel(&got[N_METRICS]));

    fill_sentinel(got, 1);
    ck_assert_int_eq(rt_ckpt_read_metrics(p, got, 0, &n), RT_OK);
    ck_assert_int_eq(n, 0);
    ck_assert(is_sentinel(&got[0]));
    unlink(p);
    free(p);
}
END_TEST

/* ---- refusals ----------------------------------------------------------------------------- */

START_TEST(refuses_other_architecture)
{
    char *p = good_ckpt("arch.h5");
    struct rt_model_spec t = spec3(5, 8, 3);
    struct rt_model m;
    struct rt_optim o;
    struct rt_ckpt_state st;
    struct rt_ckpt_metric rows[N_METRICS];
    model_fresh(&m, &t);
    optim_ok(&o, &adam_cfg, m.n_params);
    rt_error_clear();
    expect_fail(rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS), RT_ERR_SHAPE, p, "5-7-3", "5-8-3");
    rt_optim_free(&o);
    rt_model_free(&m);

    t = spec3(5, 7, 3); /* same widths, another activation */
    rt_model_spec_set_act(&t, RT_ACT_RELU);
    model_fresh(&m, &t);
    optim_ok(&o, &adam_cfg, m.n_params);
    rt_error_clear();
    expect_fail(rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS), RT_ERR_SHAPE, p, "dense(7), tanh", "dense(7), relu");
    rt_optim_free(&o);
    rt_model_free(&m);
    unlink(p);
    free(p);
}
END_TEST

START_TEST(refuses_other_optimizer)
{
    char *p = good_ckpt("optim.h5"); /* Adam */
    struct rt_model_spec s = spec3(5, 7, 3);
    struct rt_model m;
    struct rt_optim o;
    struct rt_ckpt_state st;
    struct rt_ckpt_metric rows[N_METRICS];
    model_fresh(&m, &s);
    ck_assert_int_eq(rt_optim_init(&o, &sgd_mom_cfg, m.n_params), RT_OK);
    rt_error_clear();
    expect_fail(rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS), RT_ERR_INCOMPAT, p,
                rt_optim_name(RT_OPTIM_ADAM), rt_optim_name(RT_OPTIM_SGD));
    rt_optim_free(&o);

    struct rt_optim_cfg adamw = adam_cfg;
    adamw.kind = RT_OPTIM_ADAMW; /* same state arrays, still another optimizer */
    ck_assert_int_eq(rt_optim_init(&o, &adamw, m.n_params), RT_OK);
    rt_error_clear();
    expect_fail(rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS), RT_ERR_INCOMPAT, p,
                rt_optim_name(RT_OPTIM_ADAMW), NULL);
    rt_optim_free(&o);

    /* SGD with momentum against plain SGD, both ways: a buffer on one side only would be
     * invented or dropped, and the continuation would not be the same run */
    {
        struct rt_optim plain, mom;
        optim_ok(&plain, &sgd_cfg, m.n_params);
        optim_ok(&mom, &sgd_mom_cfg, m.n_params);
        char *q = strdup(scratch_path("sgd-plain.h5"));
        write_ok(q, &m, &plain);
        rt_error_clear();
        expect_fail(rt_ckpt_read(q, &m, &mom, &st, rows, N_METRICS), RT_ERR_INCOMPAT, q, "has no",
                    "momentum > 0");
        write_ok(q, &m, &mom);
        rt_error_clear();
        expect_fail(rt_ckpt_read(q, &m, &plain, &st, rows, N_METRICS), RT_ERR_INCOMPAT, q, "has a",
                    "momentum = 0");
        rt_optim_free(&plain);
        rt_optim_free(&mom);
        unlink(q);
        free(q);
    }

    /* same kind, another size: the state arrays do not fit */
    ck_assert_int_eq(rt_optim_init(&o, &adam_cfg, m.n_params + 1), RT_OK);
    rt_error_clear();
    expect_fail(rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS), RT_ERR_SHAPE, p, "optim/m", NULL);
    rt_optim_free(&o);
    rt_model_free(&m);
    unlink(p);
    free(p);
}
END_TEST

static void set_root_version(const char *path, int32_t version)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    ck_assert(a >= 0);
    ck_assert(H5Awrite(a, H5T_NATIVE_INT32, &version) >= 0);
    H5Aclose(a);
    H5Fclose(f);
}

START_TEST(refuses_newer_format)
{
    char *p = good_ckpt("future.h5");
    set_root_version(p, 99);
    struct rt_model_spec gs;
    struct rt_ckpt_state st;
    rt_error_clear();
    expect_fail(rt_ckpt_read_header(p, &gs, &st), RT_ERR_INCOMPAT, p, "newer", "99");

    struct rt_model_spec s = spec3(5, 7, 3);
    struct rt_model m;
    struct rt_optim o;
    struct rt_ckpt_metric rows[N_METRICS];
    model_fresh(&m, &s);
    ck_assert_int_eq(rt_optim_init(&o, &adam_cfg, m.n_params), RT_OK);
    rt_error_clear();
    expect_fail(rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS), RT_ERR_INCOMPAT, p, "newer", NULL);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    rt_error_clear();
    expect_fail(rt_ckpt_inspect(p, out), RT_ERR_INCOMPAT, p, "newer", NULL);
    fclose(out);
    free(text);
    rt_optim_free(&o);
    rt_model_free(&m);

    /* the version we write reads back: the rewrite itself is not what fails */
    set_root_version(p, RT_CKPT_FORMAT_VERSION);
    ck_assert_int_eq(rt_ckpt_read_header(p, &gs, &st), RT_OK);
    unlink(p);
    free(p);
}
END_TEST

START_TEST(refuses_model_file)
{
    struct rt_model_spec s = spec3(5, 7, 3);
    struct rt_model m;
    struct rt_optim o;
    model_ok(&m, &s, 5);
    char *p = strdup(scratch_path("model.h5"));
    ck_assert_int_eq(rt_model_save(p, &m, NULL), RT_OK);
    struct rt_model_spec gs;
    struct rt_ckpt_state st;
    rt_error_clear();
    expect_fail(rt_ckpt_read_header(p, &gs, &st), RT_ERR_FORMAT, p, RT_CKPT_FORMAT, NULL);
    optim_ok(&o, &adam_cfg, m.n_params);
    struct rt_ckpt_metric rows[N_METRICS];
    rt_error_clear();
    expect_fail(rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS), RT_ERR_FORMAT, p, RT_CKPT_FORMAT,
                NULL);
    rt_optim_free(&o);
    rt_model_free(&m);
    unlink(p);
    free(p);
}
END_TEST

START_TEST(refuses_missing_and_garbage)
{
    struct rt_model_spec gs;
    struct rt_ckpt_state st;
    char *missing = strdup(scratch_path("missing.h5"));
    rt_error_clear();
    expect_fail(rt_ckpt_read_header(missing, &gs, &st), RT_ERR_IO, missing, "No such file", NULL);
    struct rt_ckpt_metric row;
    int64_t n;
    rt_error_clear();
    expect_fail(rt_ckpt_read_metrics(missing, &row, 1, &n), RT_ERR_IO, missing, NULL, NULL);
    char *text;
    rt_error_clear();
    expect_fail(rt_ckpt_read_config(missing, &text), RT_ERR_IO, missing, NULL, NULL);
    rt_error_clear();
    expect_fail(rt_ckpt_inspect(missing, stdout), RT_ERR_IO, missing, NULL, NULL);

    char *garbage = strdup(scratch_path("garbage.h5"));
    FILE *fp = fopen(garbage, "w");
    ck_assert_ptr_nonnull(fp);
    fputs("not a checkpoint\n", fp);
    fclose(fp);
    rt_error_clear();
    expect_fail(rt_ckpt_read_header(garbage, &gs, &st), RT_ERR_FORMAT, garbage, "not an HDF5",
                NULL);
    unlink(garbage);
    free(garbage);
    free(missing);
}
END_TEST

START_TEST(truncated_file_fails)
{
    char *p = good_ckpt("truncated.h5");
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_eq(truncate(p, sb.st_size / 2), 0);

    struct rt_model_spec s = spec3(5, 7, 3), gs;
    struct rt_model m;
    struct rt_optim o;
    struct rt_ckpt_state st;
    struct rt_ckpt_metric rows[N_METRICS];
    model_fresh(&m, &s);
    ck_assert_int_eq(rt_optim_init(&o, &adam_cfg, m.n_params), RT_OK);
    rt_error_clear();
    int rc = rt_ckpt_read_header(p, &gs, &st);
    ck_assert_msg(rc < 0, "read_header of a truncated file returned %d", rc);
    rt_error_clear();
    rc = rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS);
    ck_assert_msg(rc < 0, "read of a truncated file returned %d", rc);
    ck_assert_msg(strstr(rt_error_message(rc), p), "message \"%s\" does not name the file",
                  rt_error_message(rc));
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    rt_error_clear();
    rc = rt_ckpt_inspect(p, out);
    ck_assert_msg(rc < 0, "inspect of a truncated file returned %d", rc);
    fclose(out);
    free(text);
    rt_optim_free(&o);
    rt_model_free(&m);
    unlink(p);
    free(p);
}
END_TEST

/* ---- corruption --------------------------------------------------------------------------- */

/* Flips every bit of the byte in the middle of the first stored chunk of dataset name. */
static void corrupt_chunk(const char *path, const char *name)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "%s: no dataset %s", path, name);
    hid_t sp = H5Dget_space(d);
    hsize_t offset[2];
    unsigned mask = 0;
    haddr_t addr = 0;
    hsize_t size = 0;
    ck_assert(H5Dget_chunk_info(d, sp, 0, offset, &mask, &addr, &size) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    ck_assert_msg(size > 4, "%s: chunk of %llu bytes", name, (unsigned long long)size);

    FILE *fp = fopen(path, "r+b");
    ck_assert_ptr_nonnull(fp);
    long at = (long)(addr + size / 2); /* in the data: the checksum is the last 4 bytes */
    ck_assert_int_eq(fseek(fp, at, SEEK_SET), 0);
    int c = fgetc(fp);
    ck_assert_int_ne(c, EOF);
    ck_assert_int_eq(fseek(fp, at, SEEK_SET), 0);
    ck_assert_int_ne(fputc(c ^ 0xFF, fp), EOF);
    ck_assert_int_eq(fclose(fp), 0);
}

static void corrupt_and_read(const char *dataset, const char *needle)
{
    char *p = good_ckpt("corrupt.h5");
    struct rt_model_spec s = spec3(5, 7, 3);
    struct rt_model m;
    struct rt_optim o;
    struct rt_ckpt_state st;
    struct rt_ckpt_metric rows[N_METRICS];
    model_fresh(&m, &s);
    ck_assert_int_eq(rt_optim_init(&o, &adam_cfg, m.n_params), RT_OK);
    ck_assert_int_eq(rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS), RT_OK); /* good before */

    corrupt_chunk(p, dataset);
    rt_error_clear();
    expect_fail(rt_ckpt_read(p, &m, &o, &st, rows, N_METRICS), RT_ERR_IO, p, needle, "checksum");
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    rt_error_clear();
    expect_fail(rt_ckpt_inspect(p, out), RT_ERR_IO, p, needle, "checksum");
    fclose(out);
    free(text);
    rt_optim_free(&o);
    rt_model_free(&m);
    unlink(p);
    free(p);
}

START_TEST(corrupt_optim_m)
{
    corrupt_and_read("optim/m", "optim/m");
}
END_TEST

START_TEST(corrupt_optim_v)
{
    corrupt_and_read("optim/v", "optim/v");
}
END_TEST

START_TEST(corrupt_weight)
{
    /* the reader names the dataset relative to /model */
    corrupt_and_read("model/layers/0/weight", "layers/0/weight");
}
END_TEST

START_TEST(corrupt_bias)
{
    corrupt_and_read("model/layers/1/bias", "layers/1/bias");
}
END_TEST

START_TEST(corrupt_metrics)
{
    char *p = good_ckpt("corrupt-metrics.h5");
    corrupt_chunk(p, "metrics/epochs");
    struct rt_ckpt_metric rows[N_METRICS];
    int64_t n;
    rt_error_clear();
    expect_fail(rt_ckpt_read_metrics(p, rows, N_METRICS, &n), RT_ERR_IO, p, "metrics/epochs",
                "checksum");
    unlink(p);
    free(p);
}
END_TEST

/* ---- the checkpoint directory ------------------------------------------------------------- */

static void touch(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    ck_assert_msg(fp != NULL, "cannot create %s", path);
    fclose(fp);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted names in dir, as one ' '-separated string, for an exact comparison. */
static void dir_names(const char *dir, char *buf, size_t cap)
{
    char *names[64];
    int n = 0;
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        ck_assert_int_lt(n, 64);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, cap - used, "%s%s", i ? " " : "", names[i]);
        free(names[i]);
    }
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    char path[4200];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static const char *const dir_files[] = {
    "ckpt-00000005.h5", "ckpt-00000120.h5",     "ckpt-00000120-train.h5",
    "ckpt-00000013.h5", "ckpt-00000007.h5.tmp", /* an interrupted writer's leftover */
    "other.h5",         "ckpt-abc.h5",          "notes.txt",
};

static char *make_ckpt_dir(void)
{
    char *dir = strdup(scratch_path("ckptdir"));
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < sizeof dir_files / sizeof dir_files[0]; i++)
        touch(dir, dir_files[i]);
    return dir;
}

static void assert_list(const char *dir, const char *const *want, int n_want)
{
    char **paths = NULL;
    int n = -1;
    rt_error_clear();
    ck_assert_int_eq(rt_ckpt_list(dir, &paths, &n), RT_OK);
    for (int i = 0; i < n && i < n_want; i++) {
        char full[4200];
        snprintf(full, sizeof full, "%s/%s", dir, want[i]);
        ck_assert_str_eq(paths[i], full);
    }
    ck_assert_int_eq(n, n_want);
    rt_ckpt_list_free(paths, n);
}

START_TEST(path_format)
{
    char buf[256];
    ck_assert_int_eq(rt_ckpt_path(buf, sizeof buf, "DIR", 42, NULL), RT_OK);
    ck_assert_str_eq(buf, "DIR/ckpt-00000042.h5");
    ck_assert_int_eq(rt_ckpt_path(buf, sizeof buf, "DIR", 42, "train"), RT_OK);
    ck_assert_str_eq(buf, "DIR/ckpt-00000042-train.h5");
    ck_assert_int_eq(rt_ckpt_path(buf, sizeof buf, "DIR", 42, ""), RT_OK);
    ck_assert_str_eq(buf, "DIR/ckpt-00000042.h5");
    ck_assert_int_eq(rt_ckpt_path(buf, sizeof buf, "runs/a", 123456789, NULL), RT_OK);
    ck_assert_str_eq(buf, "runs/a/ckpt-123456789.h5"); /* 8+ digits: never cut */

    /* "DIR/ckpt-00000042.h5" is 20 characters: 21 bytes fit, 20 do not */
    ck_assert_int_eq(rt_ckpt_path(buf, 21, "DIR", 42, NULL), RT_OK);
    rt_error_clear();
    expect_fail(rt_ckpt_path(buf, 20, "DIR", 42, NULL), RT_ERR_INVAL, "DIR", "too long", NULL);
}
END_TEST

START_TEST(list_newest_first)
{
    char *dir = make_ckpt_dir();
    /* Newest first: larger step first; for the same step the contract says "then a later
     * name", and the later name in byte order is "ckpt-00000120.h5", because after
     * "ckpt-00000120" the '.' (0x2E) sorts after the '-' (0x2D) of "-train". */
    static const char *const want[] = {"ckpt-00000120.h5", "ckpt-00000120-train.h5",
                                       "ckpt-00000013.h5", "ckpt-00000005.h5"};
    assert_list(dir, want, 4);
    remove_dir(dir);
    free(dir);
}
END_TEST

START_TEST(list_by_step_not_name)
{
    char *dir = strdup(scratch_path("ckptdir-wide"));
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    touch(dir, "ckpt-99999999.h5");
    touch(dir, "ckpt-100000000.h5"); /* 9 digits: smaller by name, newer by step */
    touch(dir, "ckpt-00000999.h5");
    touch(dir, "ckpt-.h5");     /* no digits: not a checkpoint */
    touch(dir, "ckpt--1.h5");   /* no digits before the tag either */
    touch(dir, "ckpt-12x.h5");  /* digits then neither '.' nor '-' */
    touch(dir, "ckpt-12.h5.x"); /* not ending in .h5 */
    static const char *const want[] = {"ckpt-100000000.h5", "ckpt-99999999.h5", "ckpt-00000999.h5"};
    assert_list(dir, want, 3);
    remove_dir(dir);
    free(dir);
}
END_TEST

START_TEST(list_missing_dir)
{
    char *dir = strdup(scratch_path("no-such-dir"));
    char **paths = (char **)&dir; /* must be reset */
    int n = -1;
    rt_error_clear();
    ck_assert_int_eq(rt_ckpt_list(dir, &paths, &n), RT_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_null(paths);
    rt_ckpt_list_free(paths, n);
    ck_assert_int_eq(rt_ckpt_prune(dir, 2), RT_OK);
    free(dir);
}
END_TEST

START_TEST(prune_keeps_newest)
{
    char *dir = make_ckpt_dir();
    char names[1024];
    rt_error_clear();
    ck_assert_int_eq(rt_ckpt_prune(dir, 2), RT_OK);
    dir_names(dir, names, sizeof names);
    ck_assert_str_eq(names, "ckpt-00000013.h5 ckpt-00000120-train.h5 ckpt-00000120.h5 "
                            "ckpt-abc.h5 notes.txt other.h5");

    /* a phase's end (tagged) is not rotated: only periodic checkpoints count */
    ck_assert_int_eq(rt_ckpt_prune(dir, 1), RT_OK);
    dir_names(dir, names, sizeof names);
    ck_assert_str_eq(names,
                     "ckpt-00000120-train.h5 ckpt-00000120.h5 ckpt-abc.h5 notes.txt other.h5");

    /* keep beyond what exists: nothing more goes */
    ck_assert_int_eq(rt_ckpt_prune(dir, 5), RT_OK);
    dir_names(dir, names, sizeof names);
    ck_assert_str_eq(names,
                     "ckpt-00000120-train.h5 ckpt-00000120.h5 ckpt-abc.h5 notes.txt other.h5");
    remove_dir(dir);
    free(dir);
}
END_TEST

/* ---- inspect ------------------------------------------------------------------------------ */

START_TEST(inspect_summary)
{
    char *p = good_ckpt("inspect.h5");
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    rt_error_clear();
    int rc = rt_ckpt_inspect(p, out);
    ck_assert_msg(rc == RT_OK, "rt_ckpt_inspect: %s", rt_error_message(rc));
    ck_assert_int_eq(fclose(out), 0);
    ck_assert_ptr_nonnull(text);
    const char *needles[] = {RT_CKPT_FORMAT, "1234 in all",  "5-7-3", "train",
                             "checksums",    "1201 updates", "m, v",  p};
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++)
        ck_assert_msg(strstr(text, needles[i]), "inspect output lacks \"%s\":\n%s", needles[i],
                      text);
    free(text);
    unlink(p);
    free(p);
}
END_TEST

static Suite *ckpt_suite(void)
{
    Suite *s = suite_create("ckpt");
    TCase *tc = tcase_create("round_trip");
    tcase_add_test(tc, round_trip_adam);
    tcase_add_test(tc, round_trip_sgd);
    tcase_add_test(tc, round_trip_sgd_momentum);
    tcase_add_test(tc, no_metrics_no_config);
    tcase_add_test(tc, read_metrics_cap);
    suite_add_tcase(s, tc);
    tc = tcase_create("refusals");
    tcase_add_test(tc, refuses_other_architecture);
    tcase_add_test(tc, refuses_other_optimizer);
    tcase_add_test(tc, refuses_newer_format);
    tcase_add_test(tc, refuses_model_file);
    tcase_add_test(tc, refuses_missing_and_garbage);
    tcase_add_test(tc, truncated_file_fails);
    suite_add_tcase(s, tc);
    tc = tcase_create("corruption");
    tcase_add_test(tc, corrupt_optim_m);
    tcase_add_test(tc, corrupt_optim_v);
    tcase_add_test(tc, corrupt_weight);
    tcase_add_test(tc, corrupt_bias);
    tcase_add_test(tc, corrupt_metrics);
    suite_add_tcase(s, tc);
    tc = tcase_create("directory");
    tcase_add_test(tc, path_format);
    tcase_add_test(tc, list_newest_first);
    tcase_add_test(tc, list_by_step_not_name);
    tcase_add_test(tc, list_missing_dir);
    tcase_add_test(tc, prune_keeps_newest);
    suite_add_tcase(s, tc);
    tc = tcase_create("inspect");
    tcase_add_test(tc, inspect_summary);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return run_suite(ckpt_suite());
}
