/* test_attn.c - the transformer kernels (attention and layer norm) against the double
 * references of ref.h: forward values, causality, and backward by random-direction checks
 * (the directional derivative of sum(y * R) by central differences in double against
 * <grad, d> from our float backward). Kept and recomputed probabilities must give the same
 * bits in backward.
 *
 * Dimension letters: B sequences, T positions, D width, H heads. */
#include "check_util.h"
#include "ref.h"

#include "nn/transformer_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 7, D = 12, H = 3 };
#define QKV_N (B * T * 3 * D)
#define Y_N   (B * T * D)

static const struct rt_attn_geom geom = {.T = T, .D = D, .heads = H};

static void ref_attention_batch(double *y, const double *qkv)
{
    for (int b = 0; b < B; b++)
        ref_attention(y + b * T * D, qkv + b * T * 3 * D, T, D, H);
}

struct attn_case {
    float qkv[QKV_N], y[Y_N], dy[Y_N], dqkv[QKV_N];
    float *probs, *scratch;
};

static void attn_case_init(struct attn_case *c, uint64_t seed)
{
    struct rt_rng rng;
    rt_rng_seed(&rng, seed);
    fill_uniform_f(c->qkv, QKV_N, -2, 2, &rng);
    fill_uniform_f(c->dy, Y_N, -1, 1, &rng);
    c->probs = malloc(rt_attn_probs_floats(&geom, B) * sizeof(float));
    c->scratch = malloc(rt_attn_scratch_floats(&geom, B) * sizeof(float));
}

static void attn_case_free(struct attn_case *c)
{
    free(c->probs);
    free(c->scratch);
}

START_TEST(attention_forward_matches_reference)
{
    struct attn_case c;
    attn_case_init(&c, 1);
    double q[QKV_N], want[Y_N];
    to_double(q, c.qkv, QKV_N);
    ref_attention_batch(want, q);
    rt_attn_forward(&geom, c.qkv, c.y, c.probs, c.scratch, B);
    float wantf[Y_N];
    for (int i = 0; i < Y_N; i++)
        wantf[i] = (float)want[i];
    check_close(c.y, wantf, Y_N, 1e-6, 1e-5, "attention y");
    float again[Y_N];
    rt_attn_forward(&geom, c.qkv, again, NULL, c.scratch, B);
    ck_assert_msg(!memcmp(again, c.y, sizeof again), "forward without kept probs differs");
    attn_case_free(&c);
}
END_TEST

/* Changing position s (q, k and v) of sequence 0 leaves every output before s bitwise
 * unchanged, changes some output at s, and leaves sequence 1 alone. */
START_TEST(attention_is_causal)
{
    struct attn_case c;
    attn_case_init(&c, 2);
    rt_attn_forward(&geom, c.qkv, c.y, c.probs, c.scratch, B);
    for (int s = 0; s < T; s++) {
        float qkv[QKV_N], y[Y_N];
        memcpy(qkv, c.qkv, sizeof qkv);
        for (int i = 0; i < 3 * D; i++)
            qkv[s * 3 * D + i] += 0.5f;
        rt_attn_forward(&geom, qkv, y, NULL, c.scratch, B);
        ck_assert_msg(!memcmp(y, c.y, (size_t)s * D * sizeof *y), "position %d leaks back", s);
        ck_assert_msg(memcmp(y + s * D, c.y + s * D, D * sizeof *y), "position %d unseen", s);
        ck_assert_msg(!memcmp(y + T * D, c.y + T * D, T * D * sizeof *y), "sequence 1 changed");
    }
    attn_case_free(&c);
}
END_TEST

static double attn_objective(const double *qkv, void *dy)
{
    const float *r = dy;
    double y[Y_N], f = 0;
    ref_attention_batch(y, qkv);
    for (int i = 0; i < Y_N; i++)
        f += y[i] * r[i];
    return f;
}

START_TEST(attention_backward_random_direction)
{
    struct attn_case c;
    attn_case_init(&c, 3 + (uint64_t)_i);
    rt_attn_forward(&geom, c.qkv, c.y, c.probs, c.scratch, B);
    rt_attn_backward(&geom, c.qkv, c.probs, c.dy, c.dqkv, c.scratch, B);
    float recomputed[QKV_N];
    rt_attn_backward(&geom, c.qkv, NULL, c.dy, recomputed, c.scratch, B);
    ck_assert_msg(!memcmp(recomputed, c.dqkv, sizeof recomputed),
                  "recomputed probabilities give other gradients");
    double p[QKV_N];
    to_double(p, c.qkv, QKV_N);
    double worst = ref_gradcheck(p, c.dqkv, QKV_N, attn_objective, c.dy, 4, 99 + (uint64_t)_i);
    ck_assert_msg(worst < 1e-4, "attention gradient: relative error %g", worst);
    attn_case_free(&c);
}
END_TEST

/* ---- layer norm ---- */

enum { ROWS = 5, W = 9 };

struct ln_case {
    float x[ROWS * W], w[W], b[W], y[ROWS * W], dy[ROWS * W], dx[ROWS * W], dw[W], db[W];
    float mean[ROWS], rstd[ROWS];
};

static void ln_case_init(struct ln_case *c)
{
    struct rt_rng rng;
    rt_rng_seed(&rng, 17);
    fill_uniform_f(c->x, ROWS * W, -3, 5, &rng);
    fill_uniform_f(c->w, W, 0.5, 1.5, &rng);
    fill_uniform_f(c->b, W, -1, 1, &rng);
    fill_uniform_f(c->dy, ROWS * W, -1, 1, &rng);
    rt_layernorm_forward(c->y, c->mean, c->rstd, c->x, c->w, c->b, ROWS, W, 1e-5f);
    rt_layernorm_backward(c->dx, c->dw, c->db, c->dy, c->x, c->mean, c->rstd, c->w, ROWS, W, 0);
}

/* sum(layernorm(x; w, b) * R) for the parameters packed as x | w | b. */
static double ln_objective(const double *xwb, void *dy)
{
    const float *r = dy;
    double y[ROWS * W], f = 0;
    ref_layernorm(y, xwb, xwb + ROWS * W, xwb + ROWS * W + W, ROWS, W);
    for (int i = 0; i < ROWS * W; i++)
        f += y[i] * r[i];
    return f;
}

START_TEST(layernorm_matches_reference)
{
    struct ln_case c;
    ln_case_init(&c);
    double x[ROWS * W], w[W], b[W], want[ROWS * W];
    to_double(x, c.x, ROWS * W);
    to_double(w, c.w, W);
    to_double(b, c.b, W);
    ref_layernorm(want, x, w, b, ROWS, W);
    float wantf[ROWS * W];
    for (int i = 0; i < ROWS * W; i++)
        wantf[i] = (float)want[i];
    check_close(c.y, wantf, ROWS * W, 1e-6, 1e-5, "layernorm y");
}
END_TEST

START_TEST(layernorm_backward_random_direction)
{
    struct ln_case c;
    ln_case_init(&c);
    enum { N = ROWS * W + 2 * W };
    double p[N];
    float g[N];
    to_double(p, c.x, ROWS * W);
    to_double(p + ROWS * W, c.w, W);
    to_double(p + ROWS * W + W, c.b, W);
    memcpy(g, c.dx, sizeof c.dx);
    memcpy(g + ROWS * W, c.dw, sizeof c.dw);
    memcpy(g + ROWS * W + W, c.db, sizeof c.db);
    double worst = ref_gradcheck(p, g, N, ln_objective, c.dy, 6, 5);
    ck_assert_msg(worst < 1e-4, "layernorm gradient: relative error %g", worst);
}
END_TEST

/* Each output of the backward is optional and overwritten, not accumulated. */
START_TEST(layernorm_backward_overwrites)
{
    struct ln_case c;
    ln_case_init(&c);
    float dx[ROWS * W], dw[W], db[W];
    for (int i = 0; i < ROWS * W; i++)
        dx[i] = 1e3f;
    for (int i = 0; i < W; i++)
        dw[i] = db[i] = -7.0f;
    rt_layernorm_backward(dx, NULL, NULL, c.dy, c.x, c.mean, c.rstd, c.w, ROWS, W, 0);
    rt_layernorm_backward(NULL, dw, db, c.dy, c.x, c.mean, c.rstd, c.w, ROWS, W, 0);
    ck_assert(!memcmp(dx, c.dx, sizeof dx));
    ck_assert(!memcmp(dw, c.dw, sizeof dw));
    ck_assert(!memcmp(db, c.db, sizeof db));
}
END_TEST

static Suite *attn_suite(void)
{
    Suite *s = suite_create("transformer kernels");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, attention_forward_matches_reference);
    tcase_add_test(tc, attention_is_causal);
    tcase_add_loop_test(tc, attention_backward_random_direction, 0, 3);
    tcase_add_test(tc, layernorm_matches_reference);
    tcase_add_test(tc, layernorm_backward_random_direction);
    tcase_add_test(tc, layernorm_backward_overwrites);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(attn_suite());
}
