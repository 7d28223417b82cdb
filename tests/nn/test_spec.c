/* test_spec.c - model specs: the layer-list syntax (parse, canonical text), shape
 * inference with its errors, and binding the input shape to the data's. */
#include "check_util.h"

#include "ringtrain/model.h"
#include "ringtrain/status.h"

#include <string.h>

#define CNN                                                                                        \
    "conv(32, 3, pad=1), relu, maxpool(2), conv(64, 3, pad=1), relu, maxpool(2), flatten, "        \
    "dense(128), relu, dense(10)"

static struct rt_model_spec parse_ok(const char *text)
{
    struct rt_model_spec s;
    memset(&s, 0, sizeof s);
    char err[256] = "";
    int rc = rt_model_spec_parse(&s, text, err, sizeof err);
    ck_assert_msg(rc == 0, "parse '%s': %s", text, err);
    return s;
}

static void parse_fails(const char *text, const char *want)
{
    struct rt_model_spec s;
    memset(&s, 0, sizeof s);
    char err[256] = "";
    ck_assert_msg(rt_model_spec_parse(&s, text, err, sizeof err) < 0, "'%s' parsed", text);
    ck_assert_msg(strstr(err, want), "'%s': message '%s' lacks '%s'", text, err, want);
}

START_TEST(spec_parse_cnn)
{
    struct rt_model_spec s = parse_ok(CNN);
    ck_assert_int_eq(s.n_layers, 7); /* relus folded into the conv and dense layers */
    ck_assert(!s.widths_form);
    ck_assert_int_eq(s.input.rank, 0);
    ck_assert_int_eq(s.layers[0].kind, RT_LAYER_CONV2D);
    ck_assert_int_eq(s.layers[0].units, 32);
    ck_assert_int_eq(s.layers[0].kernel[1], 3);
    ck_assert_int_eq(s.layers[0].stride[0], 1);
    ck_assert_int_eq(s.layers[0].pad[1], 1);
    ck_assert_int_eq(s.layers[0].act, RT_ACT_RELU);
    ck_assert_int_eq(s.layers[1].kind, RT_LAYER_MAXPOOL2D);
    ck_assert_int_eq(s.layers[1].stride[0], 2); /* pooling stride defaults to its kernel */
    ck_assert_int_eq(s.layers[4].kind, RT_LAYER_FLATTEN);
    ck_assert_int_eq(s.layers[6].act, RT_ACT_IDENTITY);
    char text[512];
    rt_model_spec_format(text, sizeof text, &s);
    ck_assert_str_eq(text, CNN);
}
END_TEST

START_TEST(spec_parse_round_trips)
{
    const char *texts[] = {
        "conv(8, 3x5, stride=2x1, pad=2x0), tanh, avgpool(3, stride=2), dropout(0.25), "
        "flatten, relu, dense(4)",
        "flatten, dense(16), gelu, dropout(0.5), dense(3)",
        "maxpool(2x3), flatten, sigmoid, dense(2)",
        "dense(5), relu, tanh, dense(2)", /* a second activation stays a layer */
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct rt_model_spec s = parse_ok(texts[i]), t;
        char a[512], b[512];
        rt_model_spec_format(a, sizeof a, &s);
        ck_assert_str_eq(a, texts[i]);
        t = parse_ok(a);
        rt_model_spec_format(b, sizeof b, &t);
        ck_assert_str_eq(a, b);
        ck_assert(rt_model_spec_same_layers(&s, &t));
    }
    /* spellings and spaces that are accepted, with their canonical form */
    struct rt_model_spec s = parse_ok(" Conv2d( 4 ,3, padding = 1 ) ,ReLU, MaxPool2d(2), dropout");
    char a[256];
    rt_model_spec_format(a, sizeof a, &s);
    ck_assert_str_eq(a, "conv(4, 3, pad=1), relu, maxpool(2), dropout(0.5)");
}
END_TEST

START_TEST(spec_parse_widths)
{
    struct rt_model_spec s;
    memset(&s, 0, sizeof s);
    s.act = RT_ACT_TANH;
    char err[128];
    ck_assert_int_eq(rt_model_spec_parse(&s, "784, 512, 256, 10", err, sizeof err), 0);
    ck_assert(s.widths_form);
    ck_assert_int_eq(s.n_layers, 3);
    ck_assert_int_eq(s.input.rank, 1);
    ck_assert_int_eq(s.input.d[0], 784);
    ck_assert_int_eq(s.layers[1].act, RT_ACT_TANH);
    ck_assert_int_eq(s.layers[2].act, RT_ACT_IDENTITY);
    rt_model_spec_set_act(&s, RT_ACT_GELU); /* [model] activation after [model] layers */
    ck_assert_int_eq(s.layers[0].act, RT_ACT_GELU);
    ck_assert_int_eq(s.layers[2].act, RT_ACT_IDENTITY);
    char text[128];
    rt_model_spec_format(text, sizeof text, &s);
    ck_assert_str_eq(text, "784, 512, 256, 10");
    rt_model_sizes_text(text, sizeof text, &s);
    ck_assert_str_eq(text, "784-512-256-10");
    /* the same MLP written as a layer list is recognised as one */
    struct rt_model_spec l = parse_ok("dense(512), gelu, dense(256), gelu, dense(10)");
    l.input = (struct rt_shape){.rank = 1, .d = {784}};
    rt_model_spec_normalize(&l);
    ck_assert(l.widths_form);
    ck_assert_int_eq(l.act, RT_ACT_GELU);
    ck_assert(rt_model_spec_same_layers(&l, &s));
}
END_TEST

START_TEST(spec_parse_errors)
{
    parse_fails("conv(32, 3), relu, maxpol(2)", "unknown layer kind 'maxpol'");
    parse_fails("conv(32, 3), relu, maxpol(2)", "item 2");
    parse_fails("conv(32)", "conv(CHANNELS, KERNEL");
    parse_fails("conv(32, 3, strid=2)", "item 0 'conv(32, 3, strid=2)'");
    parse_fails("conv(stride=2, 32, 3)", "expected conv(");
    parse_fails("dense(0)", "dense(OUT) with OUT >= 1");
    parse_fails("dense(10", "parentheses");
    parse_fails("dense((10))", "parentheses");
    parse_fails("dropout(1.5)", "0 <= P < 1");
    parse_fails("flatten(2)", "no arguments");
    parse_fails("relu(3)", "no arguments");
    parse_fails("784", "2 to 129");
    parse_fails("784, 0, 10", "whole-number widths");
    parse_fails("identity", "no layer");
}
END_TEST

static void infer_ok(const char *text, struct rt_shape in, int n, const struct rt_shape *want)
{
    struct rt_model_spec s = parse_ok(text);
    s.input = in;
    struct rt_shape out[RT_MAX_LAYERS];
    int rc = rt_model_spec_infer(&s, out);
    ck_assert_msg(rc == RT_OK, "%s: %s", text, rt_error_message(rc));
    ck_assert_int_eq(s.n_layers, n);
    for (int i = 0; i < n; i++) {
        char a[64], b[64];
        rt_shape_text(a, sizeof a, &out[i]);
        rt_shape_text(b, sizeof b, &want[i]);
        ck_assert_msg(rt_shape_equal(&out[i], &want[i]), "%s layer %d: %s, want %s", text, i, a, b);
    }
}

#define SH1(a)       ((struct rt_shape){.rank = 1, .d = {a}})
#define SH3(a, b, c) ((struct rt_shape){.rank = 3, .d = {a, b, c}})

START_TEST(spec_infer_shapes)
{
    const struct rt_shape cnn[] = {SH3(32, 28, 28), SH3(32, 14, 14), SH3(64, 14, 14), SH3(64, 7, 7),
                                   SH1(3136),       SH1(128),        SH1(10)};
    infer_ok(CNN, SH3(1, 28, 28), 7, cnn);
    /* stride 2, padding, non-square input and kernel, floor division, overlapping pools */
    const struct rt_shape odd[] = {SH3(5, 4, 3), SH3(5, 2, 2), SH1(20), SH1(3)};
    infer_ok("conv(5, 3x2, stride=2, pad=1), maxpool(3x2, stride=1), flatten, dense(3)",
             SH3(3, 7, 5), 4, odd);
    const struct rt_shape k1[] = {SH3(6, 9, 11), SH3(6, 4, 5), SH1(120)};
    infer_ok("conv(6, 1), avgpool(2), flatten", SH3(2, 9, 11), 3, k1);
}
END_TEST

static void infer_fails(const char *text, struct rt_shape in, int code, const char *w1,
                        const char *w2)
{
    struct rt_model_spec s = parse_ok(text);
    s.input = in;
    rt_error_clear();
    int rc = rt_model_spec_infer(&s, NULL);
    const char *msg = rt_error_message(rc);
    ck_assert_msg(rc == code, "%s: got %d (%s)", text, rc, msg);
    ck_assert_msg(strstr(msg, w1), "'%s' lacks '%s'", msg, w1);
    ck_assert_msg(!w2 || strstr(msg, w2), "'%s' lacks '%s'", msg, w2);
    ck_assert_msg(!strchr(msg, '\n'), "message spans lines: %s", msg);
}

START_TEST(spec_infer_errors)
{
    infer_fails("conv(4, 5), flatten, dense(2)", SH3(1, 3, 3), RT_ERR_SHAPE,
                "layer 0 conv(4, 5) on input (1, 3, 3)", "5x5 kernel is larger");
    infer_fails("conv(4, 3), maxpool(4), flatten, dense(2)", SH3(1, 5, 5), RT_ERR_SHAPE,
                "layer 1 maxpool(4) on input (4, 3, 3)", "leaves nothing");
    infer_fails("conv(4, 3), relu, dense(2)", SH3(1, 8, 8), RT_ERR_SHAPE,
                "layer 1 dense(2) on input (4, 6, 6)", "flatten");
    infer_fails("conv(4, 3), dense(2)", SH1(784), RT_ERR_SHAPE, "layer 0 conv(4, 3) on input (784)",
                "images");
    infer_fails("flatten, dense(2)", (struct rt_shape){0}, RT_ERR_INVAL, "input shape", NULL);
}
END_TEST

START_TEST(spec_bind_input)
{
    struct rt_model_spec s = parse_ok(CNN);
    struct rt_shape flat = SH1(784), img = SH3(1, 28, 28), other = SH3(3, 32, 32);
    ck_assert_int_eq(rt_model_spec_bind_input(&s, &img, "[model] layers"), RT_OK);
    ck_assert(rt_shape_equal(&s.input, &img));
    /* a spec with a shape reads a flat file of as many values as that shape */
    ck_assert_int_eq(rt_model_spec_bind_input(&s, &flat, "[model] layers"), RT_OK);
    ck_assert(rt_shape_equal(&s.input, &img));
    rt_error_clear();
    int rc = rt_model_spec_bind_input(&s, &other, "[model] layers");
    ck_assert_int_eq(rc, RT_ERR_SHAPE);
    ck_assert_str_eq(rt_error_message(rc), "[model] layers: the model's input (1, 28, 28) does "
                                           "not fit the data's samples (3, 32, 32)");
    ck_assert_int_eq(rt_model_spec_outputs(&s), 10);
}
END_TEST

static Suite *spec_suite(void)
{
    Suite *s = suite_create("spec");
    TCase *tc = tcase_create("rt_model_spec_parse");
    tcase_add_test(tc, spec_parse_cnn);
    tcase_add_test(tc, spec_parse_round_trips);
    tcase_add_test(tc, spec_parse_widths);
    tcase_add_test(tc, spec_parse_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_model_spec_infer");
    tcase_add_test(tc, spec_infer_shapes);
    tcase_add_test(tc, spec_infer_errors);
    tcase_add_test(tc, spec_bind_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(spec_suite());
}
