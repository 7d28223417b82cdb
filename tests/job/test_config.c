/* test_config.c - job file parsing, overrides, validation and the key table. */
#include "check_util.h"
#include "ringtrain/config.h"
#include "ringtrain/status.h"

#include <stdio.h>
#include <string.h>

static const char *write_job(const char *text)
{
    const char *path = scratch_path("job.ini");
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text as a job file and expects failure with a message containing every needle. */
static void expect_load_error(const char *text, int code, const char *n1, const char *n2)
{
    struct rt_config c;
    rt_config_defaults(&c);
    rt_error_clear();
    const char *path = write_job(text);
    int st = rt_config_load(&c, path);
    const char *msg = rt_error_message(st);
    ck_assert_msg(st == code, "status %d, expected %d (%s)", st, code, msg);
    ck_assert_msg(strstr(msg, path), "message lacks the file name: %s", msg);
    ck_assert_msg(strstr(msg, n1), "message lacks '%s': %s", n1, msg);
    ck_assert_msg(!n2 || strstr(msg, n2), "message lacks '%s': %s", n2, msg);
    ck_assert_msg(!strchr(msg, '\n'), "message spans lines: %s", msg);
}

START_TEST(defaults_are_the_fmnist_job)
{
    struct rt_config c;
    rt_config_defaults(&c);
    ck_assert_int_eq(c.model.n_layers, 3);
    ck_assert(c.model.widths_form);
    int want[] = {784, 512, 256, 10};
    ck_assert_int_eq(c.model.input.d[0], want[0]);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(c.model.layers[i].units, want[i + 1]);
    ck_assert_int_eq(c.model.act, RT_ACT_RELU);
    ck_assert_int_eq(c.optim.kind, RT_OPTIM_ADAM);
    ck_assert_double_eq(c.optim.lr, 0.001);
    ck_assert_double_eq(c.optim.beta2, 0.999);
    ck_assert_int_eq(c.batch, 256);
    ck_assert_int_eq(c.epochs, 15);
    ck_assert_int_eq(rt_config_validate(&c), RT_OK);
}
END_TEST

START_TEST(load_sets_every_kind_of_value)
{
    struct rt_config c;
    rt_config_defaults(&c);
    const char *path = write_job("; comment\n[model]\nlayers = 10, 20 ,3\nactivation = gelu\n"
                                 "loss = mse\n[optim]\nname = sgd\nmomentum = 0.9\n"
                                 "nesterov = on\nbetas = 0.8, 0.99\n[train]\nseed = 7\n"
                                 "out =\n[data]\ntrain = synth:bigmodel\n");
    ck_assert_int_eq(rt_config_load(&c, path), RT_OK);
    ck_assert_int_eq(c.model.n_layers, 2);
    ck_assert_int_eq(c.model.layers[0].units, 20);
    ck_assert_int_eq(c.model.layers[0].act, RT_ACT_GELU); /* activation came after layers */
    ck_assert_int_eq(c.model.layers[1].act, RT_ACT_IDENTITY);
    ck_assert_int_eq(c.model.act, RT_ACT_GELU);
    ck_assert_int_eq(c.model.loss, RT_LOSS_MSE);
    ck_assert_int_eq(c.optim.kind, RT_OPTIM_SGD);
    ck_assert_int_eq(c.optim.nesterov, 1);
    ck_assert_double_eq(c.optim.beta1, 0.8);
    ck_assert_int_eq(c.seed, 7);
    ck_assert_str_eq(c.out, "");
    ck_assert_str_eq(c.train, "synth:bigmodel");
    ck_assert_str_eq(c.source, path);
    ck_assert_int_eq(rt_config_validate(&c), RT_OK);
}
END_TEST

START_TEST(load_rejects_bad_input)
{
    expect_load_error("[model]\nlayerz = 1, 2\n", RT_ERR_INVAL, ":2:", "layerz");
    expect_load_error("[modle]\nlayers = 1, 2\n", RT_ERR_INVAL, ":1:", "[modle]");
    expect_load_error("[optim]\nlr = fast\n", RT_ERR_INVAL, "lr = 'fast'", "expected a number");
    expect_load_error("[optim]\nlr = 1e-3x\n", RT_ERR_INVAL, "lr", "1e-3x");
    expect_load_error("[train]\nbatch = -4\n", RT_ERR_INVAL, "batch = '-4'", "whole number");
    expect_load_error("[train]\nepochs = 2.5\n", RT_ERR_INVAL, "epochs", "whole number");
    expect_load_error("[model]\nlayers = 784\n", RT_ERR_INVAL, "layers", "2 to 129");
    expect_load_error("[model]\nlayers = 784, 0, 10\n", RT_ERR_INVAL, "layers", "from 1");
    expect_load_error("[model]\nactivation = swish\n", RT_ERR_INVAL, "swish", "relu");
    expect_load_error("[optim]\nname = lion\n", RT_ERR_INVAL, "lion", "adamw");
    expect_load_error("[optim]\nbetas = 0.9, 1.0\n", RT_ERR_INVAL, "betas", "[0, 1)");
    expect_load_error("[data]\nshuffle = maybe\n", RT_ERR_INVAL, "maybe", "global");
    expect_load_error("[train]\nbatch = 2\nbatch = 4\n", RT_ERR_INVAL, ":3:", "twice");
    expect_load_error("[train]\nthis line has no equals sign\n", RT_ERR_INVAL, ":2:", "syntax");
    expect_load_error("[train\n", RT_ERR_INVAL, ":1:", "syntax");
    expect_load_error("[optim]\nnesterov = perhaps\n", RT_ERR_INVAL, "nesterov", "on or off");
}
END_TEST

START_TEST(load_reports_missing_file)
{
    struct rt_config c;
    rt_config_defaults(&c);
    rt_error_clear();
    int st = rt_config_load(&c, "/nonexistent/job.ini");
    ck_assert_int_eq(st, RT_ERR_IO);
    ck_assert_ptr_nonnull(strstr(rt_error_message(st), "/nonexistent/job.ini"));
}
END_TEST

START_TEST(override_applies_after_file)
{
    struct rt_config c;
    rt_config_defaults(&c);
    ck_assert_int_eq(rt_config_override(&c, "optim.lr=0.25"), RT_OK);
    ck_assert_int_eq(rt_config_override(&c, "train.epochs = 3"), RT_OK);
    ck_assert_double_eq(c.optim.lr, 0.25);
    ck_assert_int_eq(c.epochs, 3);
    rt_error_clear();
    ck_assert_int_eq(rt_config_override(&c, "optim.lr"), RT_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(rt_error_message(RT_ERR_INVAL), "section.key=value"));
    rt_error_clear();
    ck_assert_int_eq(rt_config_override(&c, "optim.speed=3"), RT_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(rt_error_message(RT_ERR_INVAL), "unknown key 'speed'"));
    rt_error_clear();
    ck_assert_int_eq(rt_config_override(&c, "train.batch=0"), RT_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(rt_error_message(RT_ERR_INVAL), "command line"));
}
END_TEST

START_TEST(validate_checks_across_keys)
{
    struct rt_config c;
    rt_config_defaults(&c);
    rt_error_clear();
    ck_assert_int_eq(rt_config_override(&c, "optim.nesterov=on"), RT_OK);
    ck_assert_int_eq(rt_config_validate(&c), RT_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(rt_error_message(RT_ERR_INVAL), "nesterov"));
    rt_config_defaults(&c);
    ck_assert_int_eq(rt_config_override(&c, "data.train="), RT_OK);
    ck_assert_int_eq(rt_config_validate(&c), RT_ERR_INVAL);
}
END_TEST

START_TEST(format_round_trips)
{
    struct rt_config a, b;
    rt_config_defaults(&a);
    ck_assert_int_eq(rt_config_override(&a, "model.layers=5,6,7"), RT_OK);
    ck_assert_int_eq(rt_config_override(&a, "optim.lr=0.0123456789"), RT_OK);
    ck_assert_int_eq(rt_config_override(&a, "train.seed=18446744073"), RT_OK);
    char text[8192], again[8192];
    size_t n = rt_config_format(&a, text, sizeof text);
    ck_assert_uint_lt(n, sizeof text);
    ck_assert_uint_eq(rt_config_format(&a, NULL, 0), n);
    rt_config_defaults(&b);
    ck_assert_int_eq(rt_config_load(&b, write_job(text)), RT_OK);
    rt_config_format(&b, again, sizeof again);
    ck_assert_str_eq(text, again);
    ck_assert_double_eq(b.optim.lr, 0.0123456789);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc;
    tc = tcase_create("rt_config_defaults");
    tcase_add_test(tc, defaults_are_the_fmnist_job);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_config_load");
    tcase_add_test(tc, load_sets_every_kind_of_value);
    tcase_add_test(tc, load_rejects_bad_input);
    tcase_add_test(tc, load_reports_missing_file);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_config_override");
    tcase_add_test(tc, override_applies_after_file);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_config_validate");
    tcase_add_test(tc, validate_checks_across_keys);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_config_format");
    tcase_add_test(tc, format_round_trips);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
