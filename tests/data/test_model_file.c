/* test_model_file.c - rt_model_save / rt_model_file_spec / rt_model_file_load. */
#include "check_util.h"
#include "ringtrain/model.h"
#include "ringtrain/model_file.h"
#include "ringtrain/status.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct rt_model_spec spec3(int hidden)
{
    struct rt_model_spec s;
    memset(&s, 0, sizeof s);
    int w[4] = {7, hidden, 5, 3};
    rt_model_spec_widths(&s, w, 4, RT_ACT_TANH);
    s.loss = RT_LOSS_MSE;
    s.init = RT_INIT_XAVIER;
    return s;
}

static void model_ok(struct rt_model *m, const struct rt_model_spec *s, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    ck_assert_int_eq(rt_model_init(m, s, 4), RT_OK);
    rt_model_init_params(m, seed);
    for (size_t i = 0; i < m->n_params; i++) /* make biases nonzero too */
        m->params[i] += 0.001f * (float)(i % 13);
}

static void expect_fail(int st, int code, const char *path, const char *needle)
{
    const char *msg = rt_error_message(st);
    ck_assert_msg(st == code, "got %s (%s), expected %s", rt_status_name(st), msg,
                  rt_status_name(code));
    ck_assert_msg(strstr(msg, path), "message \"%s\" does not name %s", msg, path);
    ck_assert_msg(!needle || strstr(msg, needle), "message \"%s\" lacks \"%s\"", msg, needle);
}

START_TEST(save_load_round_trip)
{
    struct rt_model_spec s = spec3(6);
    struct rt_model a, b;
    model_ok(&a, &s, 11);
    char *p = strdup(scratch_path("model.h5"));
    ck_assert_int_eq(rt_model_save(p, &a, "[model]\nlayers = 7,6,5,3\n"), RT_OK);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    ck_assert_int_eq(access(tmp, F_OK), -1);

    struct rt_model_spec got;
    ck_assert_int_eq(rt_model_file_spec(p, &got), RT_OK);
    ck_assert(rt_model_spec_same_layers(&got, &s));
    ck_assert(got.widths_form);
    ck_assert_int_eq(got.act, s.act);
    ck_assert_int_eq(got.loss, s.loss);
    ck_assert_int_eq(got.init, s.init);

    model_ok(&b, &got, 99);
    ck_assert(memcmp(a.params, b.params, sizeof(float) * a.n_params) != 0);
    ck_assert_int_eq(rt_model_file_load(p, &b), RT_OK);
    ck_assert(memcmp(a.params, b.params, sizeof(float) * a.n_params) == 0);

    /* the layout h5py users see: weight (OUT, IN) of layer 1 and the attributes */
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t d = H5Dopen2(f, "/layers/1/weight", H5P_DEFAULT);
    ck_assert(d >= 0);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2];
    ck_assert_int_eq(H5Sget_simple_extent_dims(sp, dims, NULL), 2);
    ck_assert_uint_eq(dims[0], 5);
    ck_assert_uint_eq(dims[1], 6);
    float w[30], *wv;
    ck_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) >= 0);
    rt_model_layer_view(&a, 1, &wv, NULL, NULL, NULL);
    ck_assert(memcmp(w, wv, sizeof w) == 0);
    ck_assert(H5Aexists(f, "config") > 0);
    ck_assert(H5Aexists(f, "format_version") > 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);

    /* overwrite in place (atomic rename over the old file), without config */
    ck_assert_int_eq(rt_model_save(p, &b, NULL), RT_OK);
    ck_assert_int_eq(rt_model_file_spec(p, &got), RT_OK);

    rt_model_free(&a);
    rt_model_free(&b);
    unlink(p);
    free(p);
}
END_TEST

/* Floats stored under /layers of a model file: every dataset's element count summed. */
static herr_t count_floats(hid_t loc, const char *name, const H5O_info_t *info, void *sum)
{
    if (info->type != H5O_TYPE_DATASET) return 0;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    *(int64_t *)sum += H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    H5Dclose(d);
    return 0;
}

static int64_t stored_floats(const char *path, const char *group)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    int64_t sum = 0;
    ck_assert(H5Ovisit2(g, H5_INDEX_NAME, H5_ITER_NATIVE, count_floats, &sum, H5O_INFO_BASIC) >= 0);
    H5Gclose(g);
    H5Fclose(f);
    return sum;
}

/* A GPT with a tied head: the shared weight is stored once (as the embedding's, without a
 * bias), dense and CSR files load back exactly, and CSR thins only the prunable layers. */
START_TEST(gpt_round_trip_stores_the_tied_weight_once)
{
    struct rt_model_spec s;
    memset(&s, 0, sizeof s);
    char err[256];
    ck_assert_msg(rt_model_spec_parse(&s,
                                      "embed(13, 8), posembed, block(8, heads=2) * 2, "
                                      "layernorm, unembed",
                                      err, sizeof err) == 0,
                  "%s", err);
    s.input = (struct rt_shape){.rank = 1, .d = {6}};
    s.loss = RT_LOSS_CE;
    s.init = RT_INIT_GPT2;
    struct rt_model a, b;
    model_ok(&a, &s, 5);
    char *p = strdup(scratch_path("gpt.h5"));
    ck_assert_int_eq(rt_model_save(p, &a, NULL), RT_OK);
    ck_assert_int_eq(stored_floats(p, "/layers"), (int64_t)a.n_params);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(H5Lexists(f, "/layers/0/weight", H5P_DEFAULT) > 0);
    ck_assert(H5Lexists(f, "/layers/0/bias", H5P_DEFAULT) == 0);
    char last[32];
    snprintf(last, sizeof last, "/layers/%d", a.n_layers - 1);
    ck_assert(H5Lexists(f, last, H5P_DEFAULT) == 0);
    H5Fclose(f);
    struct rt_model_spec got;
    ck_assert_int_eq(rt_model_file_spec(p, &got), RT_OK);
    ck_assert(rt_model_spec_same_layers(&got, &s));
    model_ok(&b, &got, 6);
    ck_assert_int_eq(rt_model_file_load(p, &b), RT_OK);
    ck_assert(memcmp(a.params, b.params, sizeof(float) * a.n_params) == 0);

    for (int i = 0; i < a.n_layers; i++) { /* zero half of every weight, then store CSR */
        float *w;
        rt_model_layer_view(&a, i, &w, NULL, NULL, NULL);
        for (size_t k = 0; k < rt_model_layer_weights(&a, i); k += 2)
            w[k] = 0.0f;
    }
    ck_assert_int_eq(rt_model_save_csr(p, &a, NULL), RT_OK);
    ck_assert_int_eq(rt_model_file_load(p, &b), RT_OK);
    ck_assert(memcmp(a.params, b.params, sizeof(float) * a.n_params) == 0);
    f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(H5Lexists(f, "/layers/0/weight", H5P_DEFAULT) > 0); /* the embedding: dense */
    ck_assert(H5Lexists(f, "/layers/0/data", H5P_DEFAULT) == 0);
    ck_assert(H5Lexists(f, "/layers/4/data", H5P_DEFAULT) > 0); /* block 0's qkv: CSR */
    H5Fclose(f);
    rt_model_free(&a);
    rt_model_free(&b);
    unlink(p);
    free(p);
}
END_TEST

START_TEST(load_shape_mismatch)
{
    struct rt_model_spec s = spec3(6), t = spec3(8);
    struct rt_model a, b;
    model_ok(&a, &s, 1);
    model_ok(&b, &t, 1);
    char *p = strdup(scratch_path("shape.h5"));
    ck_assert_int_eq(rt_model_save(p, &a, NULL), RT_OK);
    rt_error_clear();
    expect_fail(rt_model_file_load(p, &b), RT_ERR_SHAPE, p,
                "7-6-5-3 do not match the model's 7-8-5-3");
    rt_model_free(&b);
    t = spec3(6);
    rt_model_spec_set_act(&t, RT_ACT_RELU);
    model_ok(&b, &t, 1);
    rt_error_clear();
    expect_fail(rt_model_file_load(p, &b), RT_ERR_SHAPE, p,
                "dense(6), tanh, dense(5), tanh, dense(3) do not match the model's dense(6), "
                "relu, dense(5), relu, dense(3)");
    rt_model_free(&a);
    rt_model_free(&b);
    unlink(p);
    free(p);
}
END_TEST

/* Writes a file holding root attributes as a model file would, with one thing wrong. */
static char *fake_model(const char *hint, const char *format, int version)
{
    char *p = strdup(scratch_path(hint));
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t sc = H5Screate(H5S_SCALAR);
    if (format) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, strlen(format)); /* fixed-length, as some writers do */
        hid_t a = H5Acreate2(f, "format", t, sc, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert(H5Awrite(a, t, format) >= 0);
        H5Aclose(a);
        H5Tclose(t);
    }
    hid_t a = H5Acreate2(f, "format_version", H5T_STD_I64LE, sc, H5P_DEFAULT, H5P_DEFAULT);
    long long v = version;
    ck_assert(H5Awrite(a, H5T_NATIVE_LLONG, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sc);
    H5Fclose(f);
    return p;
}

START_TEST(spec_rejects_bad_files)
{
    struct rt_model_spec got;
    char *missing = strdup(scratch_path("missing.h5"));
    rt_error_clear();
    expect_fail(rt_model_file_spec(missing, &got), RT_ERR_IO, missing, "No such file");

    char *garbage = strdup(scratch_path("garbage.h5"));
    FILE *fp = fopen(garbage, "w");
    fputs("not a model\n", fp);
    fclose(fp);
    rt_error_clear();
    expect_fail(rt_model_file_spec(garbage, &got), RT_ERR_FORMAT, garbage, "not an HDF5 file");

    char *noformat = fake_model("noformat.h5", NULL, 1);
    rt_error_clear();
    expect_fail(rt_model_file_spec(noformat, &got), RT_ERR_FORMAT, noformat,
                "not a ringtrain model");
    char *other = fake_model("other.h5", "ringtrain-checkpoint", 1);
    rt_error_clear();
    expect_fail(rt_model_file_spec(other, &got), RT_ERR_FORMAT, other, "ringtrain-checkpoint");
    char *future = fake_model("future.h5", "ringtrain-model", RT_MODEL_FORMAT_VERSION + 1);
    rt_error_clear();
    expect_fail(rt_model_file_spec(future, &got), RT_ERR_INCOMPAT, future,
                "format_version = 3 is newer");
    char *nolayers = fake_model("nolayers.h5", "ringtrain-model", 1);
    rt_error_clear();
    expect_fail(rt_model_file_spec(nolayers, &got), RT_ERR_FORMAT, nolayers, "layers");

    /* a data file is not a model file either */
    struct rt_model_spec s = spec3(6);
    struct rt_model m;
    model_ok(&m, &s, 1);
    rt_error_clear();
    expect_fail(rt_model_file_load(other, &m), RT_ERR_FORMAT, other, "format");
    rt_model_free(&m);

    char *all[] = {missing, garbage, noformat, other, future, nolayers};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        unlink(all[i]);
        free(all[i]);
    }
}
END_TEST

START_TEST(save_unwritable)
{
    struct rt_model_spec s = spec3(6);
    struct rt_model m;
    model_ok(&m, &s, 1);
    rt_error_clear();
    expect_fail(rt_model_save("/nonexistent-dir/m.h5", &m, NULL), RT_ERR_IO,
                "/nonexistent-dir/m.h5", "No such file");
    rt_model_free(&m);
}
END_TEST

static Suite *model_file_suite(void)
{
    Suite *s = suite_create("model_file");
    TCase *tc = tcase_create("rt_model_save");
    tcase_add_test(tc, save_load_round_trip);
    tcase_add_test(tc, save_unwritable);
    tcase_add_test(tc, gpt_round_trip_stores_the_tied_weight_once);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_file_load");
    tcase_add_test(tc, load_shape_mismatch);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_file_spec");
    tcase_add_test(tc, spec_rejects_bad_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return run_suite(model_file_suite());
}
