/* test_accum.c - gradient accumulation over micro-batches (rt_model_set_grad_accumulate).
 *
 * A step of B rows gives one gradient when run as one backward, and the same gradient (up to
 * float rounding) when run as K micro-batches of its rows, the first overwriting grads and
 * the others adding, every loss divided by the same global norm (that of all B rows). Models:
 * an MLP (dense + relu), a CNN (conv2d, maxpool, flatten, dense), two small GPTs (tied head,
 * untied head) and an MLP with dropout in training mode (masks from the rows' global ids,
 * which each micro-batch passes for its own rows). Also: overwrite leaves nothing of what
 * grads held, an empty micro-batch adds nothing, and the key bias of attention's q|k|v stays
 * exactly 0 while accumulating.
 *
 * Dimension letters: B rows (samples) of the step, P positions per sample. */
#include "check_util.h"
#include "ref.h"

#include "ringtrain/model.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 8, MAXIN = 128, V = 11, T = 5 };

/* Agreement of the one-pass and the micro-batch gradients: |a - b| <= RTOL max(1, |a|).
 * Both sides sum the same per-row terms: the bias, layer-norm and embedding sums even in
 * the same order; what differs is the grouping of the dW GEMMs' sums over rows (one GEMM of
 * B rows against K of fewer, blocked differently by BLAS) and the rounding of forward GEMMs
 * over fewer rows, which reaches the gradients through dy. Each is a few float roundings
 * (u = 2^-24 = 6e-8) of the sums' magnitudes, which are O(1) or below here since the loss is
 * a mean: so about 1e-7 where RTOL allows 1e-6, and what a missing micro-batch would change
 * is of the size of the gradient itself (accum_two_halves_match_one_pass checks that it is
 * above 1e-3, so this comparison can fail). */
#define RTOL 1e-6

struct accum_spec {
    const char *text;
    struct rt_shape input;
    int tokens;  /* input rows are token ids in [0, V) */
    int dropout; /* run in training mode (dropout active) */
};

static const struct accum_spec cases[] = {
    {"dense(9), relu, dense(6), relu, dense(4)", {1, {7}}, 0, 0},
    {"conv(3, 3, pad=1), relu, maxpool(2), flatten, dense(5), relu, dense(3)",
     {3, {2, 8, 8}},
     0,
     0},
    {"embed(11, 8), posembed, block(8, heads=2) * 2, layernorm, unembed", {1, {T}}, 1, 0},
    {"embed(11, 6), posembed, block(6, heads=1, mlp=10), layernorm, dense(11)", {1, {T}}, 1, 0},
    {"dense(9), relu, dropout(0.3), dense(6), tanh, dense(4)", {1, {7}}, 0, 1},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])
enum { FIRST_GPT = 2, END_GPT = 4 }; /* the cases with attention */

struct accum_case {
    const struct accum_spec *spec;
    struct rt_model m;
    float x[B * MAXIN];
    int32_t y[B * T];
    int64_t rows[B]; /* the rows' global ids (dropout masks) */
    double norm;     /* rt_model_loss_norm of all B rows: every micro-batch's divisor */
    float *want, *got, *other;
};

static void case_init(struct accum_case *c, int i)
{
    struct rt_model_spec s;
    char err[256];
    memset(&s, 0, sizeof s);
    c->spec = &cases[i];
    ck_assert_msg(rt_model_spec_parse(&s, c->spec->text, err, sizeof err) == 0, "%s", err);
    s.input = c->spec->input;
    s.loss = RT_LOSS_CE;
    s.init = RT_INIT_TORCH;
    int rc = rt_model_init(&c->m, &s, B);
    ck_assert_msg(rc == RT_OK, "%s: %s", c->spec->text, rt_error_message(rc));
    ck_assert_int_le(c->m.inputs, MAXIN);
    ck_assert_int_le(c->m.positions, T);
    rt_model_init_params(&c->m, 17 + (uint64_t)i);
    struct rt_rng rng;
    rt_rng_seed(&rng, 40 + (uint64_t)i);
    for (int k = 0; k < B * c->m.inputs; k++)
        c->x[k] =
            c->spec->tokens ? (float)rt_rng_below(&rng, V) : (float)(2 * rt_rng_uniform(&rng) - 1);
    for (int k = 0; k < B * c->m.positions; k++)
        c->y[k] = (int32_t)rt_rng_below(&rng, (uint64_t)c->m.outputs);
    for (int r = 0; r < B; r++)
        c->rows[r] = 1000 + 3 * r;
    c->norm = rt_model_loss_norm(&c->m, B);
    size_t bytes = c->m.n_params * sizeof(float);
    c->want = malloc(bytes), c->got = malloc(bytes), c->other = malloc(bytes);
    ck_assert(c->want && c->got && c->other);
}

static void case_free(struct accum_case *c)
{
    free(c->want), free(c->got), free(c->other);
    rt_model_free(&c->m);
}

/* Forward, loss and backward of rows [lo, hi) of the step, adding into grads when
 * accumulate. */
static void micro_batch(struct accum_case *c, int lo, int hi, int accumulate)
{
    struct rt_model *m = &c->m;
    const float *x = c->x + (size_t)lo * m->inputs;
    if (c->spec->dropout) rt_model_set_training(m, 1, 99, 7, c->rows + lo);
    rt_model_forward(m, x, hi - lo);
    rt_model_loss(m, c->y + (size_t)lo * m->positions, hi - lo, c->norm);
    rt_model_set_grad_accumulate(m, accumulate);
    rt_model_backward(m, x, hi - lo, NULL, NULL);
}

/* The step's gradient from `parts` micro-batches (rows B j / parts .. B (j+1) / parts) into
 * g; accumulation is off again afterwards. */
static void step_grads(struct accum_case *c, int parts, float *g)
{
    for (int j = 0; j < parts; j++)
        micro_batch(c, B * j / parts, B * (j + 1) / parts, j > 0);
    rt_model_set_grad_accumulate(&c->m, 0);
    memcpy(g, c->m.grads, c->m.n_params * sizeof *g);
}

/* The layer whose block holds coordinate k. */
static int layer_of(const struct rt_model *m, size_t k)
{
    int i = 0;
    while (i + 1 < m->n_layers && k >= rt_model_layer_offset(m, i) + rt_model_layer_count(m, i))
        i++;
    return i;
}

/* max over k of |got - want| / max(1, |want|); *at receives the k. */
static double max_rel_diff(const float *want, const float *got, size_t n, size_t *at)
{
    double worst = 0;
    *at = 0;
    for (size_t k = 0; k < n; k++) {
        double d = fabs((double)got[k] - want[k]) / fmax(1.0, fabs((double)want[k]));
        if (d > worst || isnan(d)) {
            worst = isnan(d) ? INFINITY : d;
            *at = k;
        }
    }
    return worst;
}

static void assert_agree(const struct accum_case *c, const float *want, const float *got,
                         const char *what)
{
    size_t k;
    double worst = max_rel_diff(want, got, c->m.n_params, &k);
    int l = layer_of(&c->m, k);
    printf("accum %s (%s): max rel diff %.2e at %zu (layer %d %s)\n", what, c->spec->text, worst, k,
           l, rt_model_layer_kind(&c->m, l));
    ck_assert_msg(worst <= RTOL, "%s (%s): coordinate %zu (layer %d %s): %.9g, one pass %.9g", what,
                  c->spec->text, k, l, rt_model_layer_kind(&c->m, l), got[k], want[k]);
}

/* Every layer with parameters has a nonzero gradient somewhere: no comparison is vacuous. */
static void assert_every_layer_has_gradient(const struct accum_case *c, const float *g)
{
    for (int i = 0; i < c->m.n_layers; i++) {
        size_t off = rt_model_layer_offset(&c->m, i), n = rt_model_layer_count(&c->m, i);
        double mx = 0;
        for (size_t k = 0; k < n; k++)
            mx = fmax(mx, fabs(g[off + k]));
        ck_assert_msg(n == 0 || mx > 1e-6, "%s: layer %d has no gradient", c->spec->text, i);
    }
}

START_TEST(accum_two_halves_match_one_pass)
{
    struct accum_case c;
    case_init(&c, _i);
    step_grads(&c, 1, c.want);
    assert_every_layer_has_gradient(&c, c.want);
    step_grads(&c, 2, c.got);
    assert_agree(&c, c.want, c.got, "2 micro-batches");
    /* What ignoring the flag would leave: the second half alone. It must be far off, or the
     * comparison above could not tell accumulation from overwriting. */
    micro_batch(&c, B / 2, B, 0);
    size_t k;
    double off = max_rel_diff(c.want, c.m.grads, c.m.n_params, &k);
    ck_assert_msg(off > 1e-3, "%s: half a batch differs by only %g", c.spec->text, off);
    case_free(&c);
}
END_TEST

START_TEST(accum_four_micro_batches_match_one_pass)
{
    struct accum_case c;
    case_init(&c, _i);
    step_grads(&c, 1, c.want);
    step_grads(&c, 4, c.got);
    assert_agree(&c, c.want, c.got, "4 micro-batches");
    step_grads(&c, 3, c.got); /* 2, 3 and 3 rows: micro-batches need not be equal */
    assert_agree(&c, c.want, c.got, "3 uneven micro-batches");
    case_free(&c);
}
END_TEST

/* Accumulate off overwrites: a second backward gives the bytes of the first although grads
 * held them when it began, and so does one that follows an accumulated step. */
START_TEST(accum_off_overwrites_bytes)
{
    struct accum_case c;
    case_init(&c, _i);
    size_t bytes = c.m.n_params * sizeof(float);
    step_grads(&c, 1, c.want);
    step_grads(&c, 1, c.got);
    ck_assert_msg(!memcmp(c.want, c.got, bytes), "%s: off twice != off once", c.spec->text);
    step_grads(&c, 4, c.other);
    step_grads(&c, 1, c.got);
    ck_assert_msg(!memcmp(c.want, c.got, bytes), "%s: leftover after accumulating", c.spec->text);
    case_free(&c);
}
END_TEST

/* A micro-batch of 0 rows, accumulating, leaves grads as they are (bit for bit). */
START_TEST(accum_empty_micro_batch_adds_nothing)
{
    struct accum_case c;
    case_init(&c, _i);
    step_grads(&c, 1, c.want);
    micro_batch(&c, B, B, 1);
    rt_model_set_grad_accumulate(&c.m, 0);
    ck_assert_msg(!memcmp(c.want, c.m.grads, c.m.n_params * sizeof(float)), "%s", c.spec->text);
    case_free(&c);
}
END_TEST

/* The key third of the q|k|v bias has a gradient of exactly 0 by the math (dense.c writes
 * it as 0): it must stay +0.0 through every micro-batch, while the query and value thirds
 * have gradients of their own. */
static void assert_key_bias_zero(const struct accum_case *c, const float *g, int parts)
{
    int heads = 0;
    for (int i = 1; i < c->m.n_layers; i++) {
        if (strcmp(rt_model_layer_kind(&c->m, i), "attention")) continue;
        const float *db =
            g + rt_model_layer_offset(&c->m, i - 1) + rt_model_layer_weights(&c->m, i - 1);
        int width = (int)rt_model_layer_bias_count(&c->m, i - 1) / 3;
        double live = 0;
        for (int k = 0; k < 3 * width; k++) {
            int key = k >= width && k < 2 * width;
            if (key)
                ck_assert_msg(db[k] == 0.0f && !signbit(db[k]), "%d parts: layer %d bias %d: %g",
                              parts, i - 1, k, db[k]);
            else
                live = fmax(live, fabs(db[k]));
        }
        ck_assert_msg(live > 0, "layer %d: q and v biases have no gradient", i - 1);
        heads++;
    }
    ck_assert_int_gt(heads, 0);
}

START_TEST(accum_key_bias_stays_zero)
{
    struct accum_case c;
    case_init(&c, _i);
    for (int parts = 1; parts <= 4; parts *= 2) {
        step_grads(&c, parts, c.got);
        assert_key_bias_zero(&c, c.got, parts);
    }
    case_free(&c);
}
END_TEST

static Suite *accum_suite(void)
{
    Suite *s = suite_create("accum");
    TCase *tc = tcase_create("rt_model_set_grad_accumulate");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, accum_two_halves_match_one_pass, 0, N_CASES);
    tcase_add_loop_test(tc, accum_four_micro_batches_match_one_pass, 0, N_CASES);
    tcase_add_loop_test(tc, accum_off_overwrites_bytes, 0, N_CASES);
    tcase_add_loop_test(tc, accum_empty_micro_batch_adds_nothing, 0, N_CASES);
    tcase_add_loop_test(tc, accum_key_bias_stays_zero, FIRST_GPT, END_GPT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(accum_suite());
}
