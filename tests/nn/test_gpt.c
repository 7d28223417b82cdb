/* test_gpt.c - whole GPT models (embed, posembed, pre-LN blocks, final layer norm, tied
 * head) against a double-precision reference of the same layer list written here from the
 * PyTorch definitions: logits, and the gradient of the mean token loss by random-direction
 * checks over all parameters; the tied head's gradient is the sum of its two uses; the
 * spec round-trips through block(...) text.
 *
 * Dimension letters: B sequences, T positions, V vocabulary, D width. */
#include "check_util.h"
#include "ref.h"

#include "ringtrain/generate.h"
#include "ringtrain/model.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 3, T = 5, V = 11, MAXW = 64 };

/* ---- the reference: one sequence through the layer list, in double ---- */

struct ref_state {
    double a[T * MAXW], next[T * MAXW], kept[4][T * MAXW];
    int width, depth;
    const double *wte; /* the embedding's weight, for the tied head */
};

static void ref_layer(struct ref_state *s, const struct rt_layer_spec *l, const double **pp,
                      const float *ids)
{
    const double *p = *pp;
    int Dn = s->width;
    switch (l->kind) {
    case RT_LAYER_EMBED:
        s->wte = p;
        Dn = l->units;
        for (int t = 0; t < T; t++)
            memcpy(s->next + t * Dn, p + (int)ids[t] * Dn, (size_t)Dn * sizeof(double));
        p += (size_t)l->vocab * Dn;
        break;
    case RT_LAYER_POSEMBED:
        for (int i = 0; i < T * Dn; i++)
            s->next[i] = s->a[i] + p[i];
        p += (size_t)T * Dn;
        break;
    case RT_LAYER_LAYERNORM:
        ref_layernorm(s->next, s->a, p, p + Dn, T, Dn);
        p += 2 * (size_t)Dn;
        break;
    case RT_LAYER_DENSE:
        Dn = l->units;
        ref_dense(s->next, s->a, p, p + (size_t)Dn * s->width, l->act, T, s->width, Dn, NULL);
        p += (size_t)Dn * s->width + Dn;
        break;
    case RT_LAYER_ACT:
        for (int i = 0; i < T * Dn; i++)
            s->next[i] = ref_act(l->act, s->a[i]);
        break;
    case RT_LAYER_ATTENTION:
        Dn = s->width / 3;
        ref_attention(s->next, s->a, T, Dn, l->heads);
        break;
    case RT_LAYER_RESIDUAL:
        memcpy(s->kept[s->depth++], s->a, (size_t)T * Dn * sizeof(double));
        memcpy(s->next, s->a, (size_t)T * Dn * sizeof(double));
        break;
    case RT_LAYER_ADD:
        s->depth--;
        for (int i = 0; i < T * Dn; i++)
            s->next[i] = s->a[i] + s->kept[s->depth][i];
        break;
    case RT_LAYER_UNEMBED:
        Dn = l->vocab;
        ref_dense(s->next, s->a, s->wte, (double[MAXW]){0}, RT_ACT_IDENTITY, T, s->width, Dn, NULL);
        break;
    default:
        ck_abort_msg("kind %d not in the GPT reference", l->kind);
    }
    *pp = p;
    s->width = Dn;
    memcpy(s->a, s->next, sizeof s->a);
}

/* Summed CE over the B T tokens under parameters p. */
static double ref_gpt_loss(const double *p, const struct rt_model_spec *spec, const float *x,
                           const int32_t *y, double *logits)
{
    static struct ref_state s;
    double total = 0;
    for (int b = 0; b < B; b++) {
        memset(&s, 0, sizeof s);
        const double *q = p;
        for (int i = 0; i < spec->n_layers; i++)
            ref_layer(&s, &spec->layers[i], &q, x + b * T);
        total += ref_ce(s.a, y + b * T, T, s.width);
        if (logits) memcpy(logits + b * T * V, s.a, (size_t)T * V * sizeof(double));
    }
    return total;
}

/* ---- the cases ---- */

static const char *const cases[] = {
    /* the shape, small: 2 blocks, tied head */
    "embed(11, 8), posembed, block(8, heads=2) * 2, layernorm, unembed",
    /* an untied head, one head, a narrower MLP */
    "embed(11, 6), posembed, block(6, heads=1, mlp=10), layernorm, dense(11)",
    /* heads of a width other than D / H, a layer norm between blocks */
    "embed(11, 8), posembed, block(8, heads=4, head_dim=3), layernorm, block(8, heads=2), "
    "layernorm, unembed",
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

struct gpt_case {
    struct rt_model_spec s;
    struct rt_model m;
    float x[B * T];
    int32_t y[B * T];
    double norm;
};

static double gpt_objective(const double *p, void *ctx)
{
    struct gpt_case *c = ctx;
    return ref_gpt_loss(p, &c->s, c->x, c->y, NULL) / c->norm;
}

static void gpt_case_init(struct gpt_case *c, int i, enum rt_init init)
{
    memset(&c->s, 0, sizeof c->s);
    char err[256];
    ck_assert_msg(rt_model_spec_parse(&c->s, cases[i], err, sizeof err) == 0, "%s", err);
    c->s.input = (struct rt_shape){.rank = 1, .d = {T}};
    c->s.loss = RT_LOSS_CE;
    c->s.init = init;
    int rc = rt_model_init(&c->m, &c->s, B);
    ck_assert_msg(rc == RT_OK, "%s: %s", cases[i], rt_error_message(rc));
    rt_model_init_params(&c->m, 31 + (uint64_t)i);
    /* layer norms away from (1, 0) so that their parameters matter to the check */
    struct rt_rng rng;
    rt_rng_seed(&rng, 8 + (uint64_t)i);
    for (int l = 0; l < c->m.n_layers; l++)
        if (c->s.layers[l].kind == RT_LAYER_LAYERNORM)
            fill_uniform_f(c->m.params + rt_model_layer_offset(&c->m, l),
                           (int)rt_model_layer_count(&c->m, l), 0.5, 1.5, &rng);
    for (int k = 0; k < B * T; k++) {
        c->x[k] = (float)rt_rng_below(&rng, V);
        c->y[k] = (int32_t)rt_rng_below(&rng, V);
    }
}

START_TEST(gpt_forward_matches_reference)
{
    struct gpt_case c;
    gpt_case_init(&c, _i, RT_INIT_GPT2);
    ck_assert_int_eq(c.m.positions, T);
    ck_assert_int_eq(c.m.outputs, V);
    const float *out = rt_model_forward(&c.m, c.x, B);
    double *p = malloc(c.m.n_params * sizeof *p), want[B * T * V];
    to_double(p, c.m.params, (int)c.m.n_params);
    ref_gpt_loss(p, &c.s, c.x, c.y, want);
    for (int k = 0; k < B * T * V; k++)
        ck_assert_msg(fabs(out[k] - want[k]) <= 1e-5 * (1 + fabs(want[k])),
                      "%s: logit %d: %g, reference %g", cases[_i], k, out[k], want[k]);
    free(p);
    rt_model_free(&c.m);
}
END_TEST

START_TEST(gpt_backward_random_direction)
{
    struct gpt_case c;
    gpt_case_init(&c, _i, RT_INIT_TORCH); /* N(0, 1) embeddings: large activations */
    double norm = rt_model_loss_norm(&c.m, B);
    ck_assert_double_eq(norm, B * T);
    rt_model_forward(&c.m, c.x, B);
    double loss = rt_model_loss(&c.m, c.y, B, norm);
    rt_model_backward(&c.m, c.x, B, NULL, NULL);
    size_t n = c.m.n_params;
    double *p = malloc(n * sizeof *p);
    to_double(p, c.m.params, (int)n);
    double ref = ref_gpt_loss(p, &c.s, c.x, c.y, NULL);
    ck_assert_msg(fabs(loss - ref) <= 1e-5 * ref, "loss %g, reference %g", loss, ref);
    c.norm = norm;
    double worst = ref_gradcheck(p, c.m.grads, n, gpt_objective, &c, 6, 4242);
    printf("gradcheck gpt case %d: max rel err %.2e (%s)\n", _i, worst, cases[_i]);
    ck_assert_msg(worst < 1e-3, "%s: relative error %g", cases[_i], worst);
    free(p);
    rt_model_free(&c.m);
}
END_TEST

/* The tied weight: one block of V D floats, whose gradient is the gradient through the
 * embedding plus the gradient through the head. Each part is found by perturbing the
 * reference with the weight taken apart: d/dE loss(E_embed = E + h u, E_head = E) and the
 * other way round. */
START_TEST(gpt_tied_head_gradient_is_the_sum_of_both_uses)
{
    struct gpt_case c;
    gpt_case_init(&c, 0, RT_INIT_GPT2);
    int D = c.s.layers[0].units;
    ck_assert_uint_eq(rt_model_layer_count(&c.m, 0), (size_t)V * D);
    ck_assert_uint_eq(rt_model_layer_count(&c.m, c.m.n_layers - 1), 0);
    double norm = rt_model_loss_norm(&c.m, B);
    rt_model_forward(&c.m, c.x, B);
    rt_model_loss(&c.m, c.y, B, norm);
    rt_model_backward(&c.m, c.x, B, NULL, NULL);
    /* A model with the head untied but holding the same weight, in the reference. */
    struct rt_model_spec untied = c.s;
    untied.layers[untied.n_layers - 1] =
        (struct rt_layer_spec){.kind = RT_LAYER_DENSE, .units = V, .act = RT_ACT_IDENTITY};
    size_t n = c.m.n_params, nu = n + (size_t)V * D + V;
    double *p = calloc(nu, sizeof *p), *q = malloc(nu * sizeof *q);
    to_double(p, c.m.params, (int)n);
    memcpy(p + n, p, (size_t)V * D * sizeof *p); /* head = embedding, bias 0 */
    struct rt_rng rng;
    rt_rng_seed(&rng, 3);
    double worst = 0;
    for (int trial = 0; trial < 4; trial++) {
        int k = (int)rt_rng_below(&rng, (uint64_t)V * D);
        double part[2];
        for (int use = 0; use < 2; use++) {
            double f[2];
            for (int side = 0; side < 2; side++) {
                memcpy(q, p, nu * sizeof *q);
                q[(use ? n : 0) + k] += side ? -1e-5 : 1e-5;
                f[side] = ref_gpt_loss(q, &untied, c.x, c.y, NULL) / norm;
            }
            part[use] = (f[0] - f[1]) / 2e-5;
        }
        double e = rel_err(c.m.grads[k], part[0] + part[1], 1e-3);
        worst = e > worst ? e : worst;
        ck_assert_msg(fabs(part[1]) > 1e-6, "the head's use of weight %d does not matter", k);
    }
    ck_assert_msg(worst < 1e-3, "tied gradient: relative error %g", worst);
    free(p);
    free(q);
    rt_model_free(&c.m);
}
END_TEST

/* block(...) text -> 11 layers each -> the same text; the tied head is not prunable. */
START_TEST(gpt_spec_round_trips)
{
    struct gpt_case c;
    gpt_case_init(&c, _i, RT_INIT_GPT2);
    char text[1024], err[256];
    ck_assert_uint_lt(rt_model_spec_format(text, sizeof text, &c.s), sizeof text);
    ck_assert_str_eq(text, cases[_i]);
    struct rt_model_spec again;
    memset(&again, 0, sizeof again);
    ck_assert_msg(rt_model_spec_parse(&again, text, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(again.n_layers, c.s.n_layers);
    for (int l = 0; l < c.m.n_layers; l++) {
        enum rt_layer_kind k = c.s.layers[l].kind;
        ck_assert_int_eq(rt_model_layer_prunable(&c.m, l), k == RT_LAYER_DENSE);
    }
    rt_model_free(&c.m);
}
END_TEST

/* Sampling: the same seed gives the same tokens, another seed other ones; temperature 0
 * takes the arg-max of the model's logits at the last filled position. */
START_TEST(gpt_generate_is_seeded_and_greedy_is_argmax)
{
    struct gpt_case c;
    gpt_case_init(&c, 0, RT_INIT_TORCH);
    int run[3][12], prompt[2] = {3, 7};
    uint64_t seeds[3] = {5, 5, 6};
    for (int r = 0; r < 3; r++) {
        struct rt_generator g;
        struct rt_sample_opts o = {.temperature = 1.0, .top_k = 4, .seed = seeds[r]};
        ck_assert_int_eq(rt_generator_init(&g, &c.m, &o), RT_OK);
        ck_assert_int_eq(rt_generator_prompt(&g, prompt, 2), RT_OK);
        for (int i = 0; i < 12; i++) /* past T: the window slides */
            run[r][i] = rt_generator_next(&g);
        rt_generator_free(&g);
    }
    ck_assert(!memcmp(run[0], run[1], sizeof run[0]));
    ck_assert(memcmp(run[0], run[2], sizeof run[0]));

    struct rt_generator g;
    struct rt_sample_opts greedy = {.temperature = 0, .seed = 1};
    ck_assert_int_eq(rt_generator_init(&g, &c.m, &greedy), RT_OK);
    ck_assert_int_eq(rt_generator_prompt(&g, prompt, 2), RT_OK);
    float x[T] = {3, 7};
    const float *z = rt_model_forward(&c.m, x, 1) + V; /* position 1 */
    int best = 0;
    for (int k = 1; k < V; k++)
        best = z[k] > z[best] ? k : best;
    ck_assert_int_eq(rt_generator_next(&g), best);
    int long_prompt[T] = {0};
    ck_assert_int_eq(rt_generator_prompt(&g, long_prompt, T), RT_ERR_INVAL);
    rt_generator_free(&g);
    rt_model_free(&c.m);
}
END_TEST

/* Row-wise inference (a teacher's mode): a sequence's logits are the same bits wherever it
 * sits in the batch and whatever else is in it. */
START_TEST(gpt_rowwise_logits_depend_on_the_sequence_alone)
{
    struct gpt_case c;
    gpt_case_init(&c, 0, RT_INIT_TORCH);
    ck_assert_int_eq(rt_model_use_rowwise(&c.m, 1), RT_OK);
    float swapped[B * T], a[B * T * V], b[B * T * V];
    for (int s = 0; s < B; s++)
        memcpy(swapped + s * T, c.x + (B - 1 - s) * T, T * sizeof *swapped);
    memcpy(a, rt_model_forward(&c.m, c.x, B), sizeof a);
    memcpy(b, rt_model_forward(&c.m, swapped, B), sizeof b);
    for (int s = 0; s < B; s++)
        ck_assert_msg(!memcmp(a + s * T * V, b + (B - 1 - s) * T * V, T * V * sizeof *a),
                      "sequence %d: other bits at another position", s);
    const float *one = rt_model_forward(&c.m, c.x + T, 1); /* sequence 1 alone */
    ck_assert(!memcmp(one, a + T * V, T * V * sizeof *a));
    rt_model_free(&c.m);
}
END_TEST

START_TEST(gpt_generate_refuses_other_models)
{
    struct rt_model_spec s;
    memset(&s, 0, sizeof s);
    int w[3] = {T, 4, V};
    rt_model_spec_widths(&s, w, 3, RT_ACT_RELU);
    s.loss = RT_LOSS_CE;
    struct rt_model m;
    ck_assert_int_eq(rt_model_init(&m, &s, 1), RT_OK);
    struct rt_generator g;
    struct rt_sample_opts o = {.temperature = 1};
    int st = rt_generator_init(&g, &m, &o);
    ck_assert_int_eq(st, RT_ERR_FORMAT);
    ck_assert_msg(strstr(rt_error_message(st), "not a language model"), "%s", rt_error_message(st));
    rt_model_free(&m);
}
END_TEST

static Suite *gpt_suite(void)
{
    Suite *s = suite_create("gpt");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, gpt_forward_matches_reference, 0, N_CASES);
    tcase_add_loop_test(tc, gpt_backward_random_direction, 0, N_CASES);
    tcase_add_test(tc, gpt_tied_head_gradient_is_the_sum_of_both_uses);
    tcase_add_loop_test(tc, gpt_spec_round_trips, 0, N_CASES);
    tcase_add_test(tc, gpt_generate_is_seeded_and_greedy_is_argmax);
    tcase_add_test(tc, gpt_generate_refuses_other_models);
    tcase_add_test(tc, gpt_rowwise_logits_depend_on_the_sequence_alone);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(gpt_suite());
}
