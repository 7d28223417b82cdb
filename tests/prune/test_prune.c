/* test_prune.c - pruning masks and schedule (prune.h): mask layout, magnitude selection on
 * hand-set tensors per layer and over all layers (|w|, ties by lower flat index, biases never
 * pruned), a brute-force reference on random tied values, monotone masks (pruned positions
 * count as 0, masks never shrink), bit packing round trips, rt_masks_apply ranges, sparsity
 * reports, the Zhu & Gupta / one-shot schedule, name round trips, determinism and a
 * full-size model. */
#include "check_util.h"
#include "ringtrain/model.h"
#include "ringtrain/prune.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixtures ----------------------------------------------------------------------------- */

static struct rt_model_spec spec_of(int n_sizes, const int *sizes)
{
    struct rt_model_spec s;
    memset(&s, 0, sizeof s);
    rt_model_spec_widths(&s, sizes, n_sizes, RT_ACT_RELU);
    s.loss = RT_LOSS_CE;
    s.init = RT_INIT_TORCH;
    return s;
}

/* A zeroed model of the given widths (rt_model_init leaves the parameters at zero). */
static void model_fresh(struct rt_model *m, int n_sizes, const int *sizes)
{
    struct rt_model_spec s = spec_of(n_sizes, sizes);
    memset(m, 0, sizeof *m);
    int rc = rt_model_init(m, &s, 1);
    ck_assert_msg(rc == RT_OK, "rt_model_init: %s", rt_error_message(rc));
}

static void masks_ok(struct rt_masks *k, const struct rt_model *m)
{
    int rc = rt_masks_init(k, m);
    ck_assert_msg(rc == RT_OK, "rt_masks_init: %s", rt_error_message(rc));
}

static size_t n_weights_of(const struct rt_model *m, int i)
{
    return rt_model_layer_weights(m, i);
}

/* Sets layer i's weights (OUT*IN values, row-major) and biases (OUT values). */
static void set_layer(struct rt_model *m, int i, const float *w, const float *b)
{
    float *p = m->params + rt_model_layer_offset(m, i);
    size_t nw = n_weights_of(m, i);
    memcpy(p, w, nw * sizeof *w);
    memcpy(p + nw, b, (size_t)m->spec.layers[i].units * sizeof *b);
}

static int is_weight(const struct rt_model *m, size_t j)
{
    for (int i = 0; i < m->n_layers; i++) {
        size_t off = rt_model_layer_offset(m, i);
        if (j >= off && j < off + n_weights_of(m, i)) return 1;
    }
    return 0;
}

/* keep[] must equal want[] (n_params each); lists the first few differences. */
static void expect_keep(const struct rt_masks *k, const uint8_t *want, const char *label)
{
    size_t bad = 0;
    for (size_t j = 0; j < k->n_params; j++) {
        if (k->keep[j] == want[j]) continue;
        if (bad < 8)
            fprintf(stderr, "%s: keep[%zu] = %d, expected %d\n", label, j, k->keep[j], want[j]);
        bad++;
    }
    ck_assert_msg(bad == 0, "%s: %zu of %zu keep entries differ", label, bad, k->n_params);
}

/* A keep pattern of n_params ones with the listed flat positions pruned. */
static void keep_with_pruned(uint8_t *want, size_t n_params, const size_t *pruned, size_t n)
{
    memset(want, 1, n_params);
    for (size_t i = 0; i < n; i++)
        want[pruned[i]] = 0;
}

static size_t count_pruned(const struct rt_masks *k, int layer)
{
    size_t c = 0;
    for (int i = 0; i < k->n_layers; i++) {
        if (layer >= 0 && i != layer) continue;
        for (size_t j = 0; j < k->w_len[i]; j++)
            c += !k->keep[k->w_off[i] + j];
    }
    return c;
}

static void expect_biases_kept(const struct rt_masks *k, const struct rt_model *m)
{
    for (size_t j = 0; j < k->n_params; j++)
        if (!is_weight(m, j)) ck_assert_msg(k->keep[j] == 1, "bias keep[%zu] = %d", j, k->keep[j]);
}

/* splitmix64: the tests' own generator, independent of the library's. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Values drawn from a small set (+-0.25, +-0.5, ..., +-2) so that ties are common. No exact
 * zeros: a kept weight that is exactly 0 is the case of kept_zero_does_not_overprune. */
static void fill_tied(float *v, size_t n, uint64_t *s)
{
    for (size_t j = 0; j < n; j++) {
        uint64_t r = next_u64(s);
        float mag = 0.25f * (float)(r % 8 + 1);
        v[j] = (r >> 8) & 1 ? -mag : mag;
    }
}

/* Brute-force reference of the contract: within each group (one layer, or all weights), with
 * previously pruned positions counted as |w| = 0, a weight is pruned when fewer than k weights
 * of the group come before it in (|w|, flat index) order, k = round(s * group size); earlier
 * pruned weights stay pruned. want gets the expected keep (n_params). */
static void reference_masks(const struct rt_model *m, const uint8_t *prev, const float *params,
                            enum rt_prune_scope scope, double s, uint8_t *want)
{
    size_t nw = 0, pos[512];
    int grp[512];
    for (int i = 0; i < m->n_layers; i++)
        for (size_t j = 0; j < n_weights_of(m, i); j++) {
            ck_assert_uint_lt(nw, sizeof pos / sizeof pos[0]);
            pos[nw] = rt_model_layer_offset(m, i) + j;
            grp[nw++] = scope == RT_PRUNE_GLOBAL ? 0 : i;
        }
    memcpy(want, prev, m->n_params);
    for (size_t a = 0; a < nw; a++) {
        size_t n_group = 0, before = 0;
        double ma = prev[pos[a]] ? fabs((double)params[pos[a]]) : 0.0;
        for (size_t b = 0; b < nw; b++) {
            if (grp[b] != grp[a]) continue;
            n_group++;
            double mb = prev[pos[b]] ? fabs((double)params[pos[b]]) : 0.0;
            if (mb < ma || (mb == ma && pos[b] < pos[a])) before++;
        }
        if (before < (size_t)llround(s * (double)n_group)) want[pos[a]] = 0;
    }
}

/* ---- layout ------------------------------------------------------------------------------- */

START_TEST(init_layout)
{
    const int sizes[] = {7, 3, 2};
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes);
    masks_ok(&k, &m);
    ck_assert_int_eq(k.n_layers, 2);
    ck_assert_uint_eq(k.n_params, m.n_params);
    ck_assert_uint_eq(k.n_params, 21 + 3 + 6 + 2);
    ck_assert_uint_eq(k.n_weights, 27);
    ck_assert_uint_eq(k.w_off[0], 0);
    ck_assert_uint_eq(k.w_len[0], 21);
    ck_assert_uint_eq(k.w_off[1], 24);
    ck_assert_uint_eq(k.w_off[1], rt_model_layer_offset(&m, 1));
    ck_assert_uint_eq(k.w_len[1], 6);
    ck_assert_uint_eq(k.packed_bytes, 4);
    for (size_t j = 0; j < k.n_params; j++)
        ck_assert_int_eq(k.keep[j], 1);
    /* every weight kept: 27 one bits, LSB first, and the 5 padding bits zero */
    ck_assert_uint_eq(k.packed[0], 0xFF);
    ck_assert_uint_eq(k.packed[1], 0xFF);
    ck_assert_uint_eq(k.packed[2], 0xFF);
    ck_assert_uint_eq(k.packed[3], 0x07);
    ck_assert_double_eq(rt_masks_sparsity(&k, -1), 0.0);
    rt_masks_free(&k);
    rt_masks_free(&k); /* freed masks are zeroed: a second free is harmless */
    rt_model_free(&m);
}
END_TEST

/* ---- selection on hand-set tensors -------------------------------------------------------- */

/* 4-3-2: layer 0 W at flat 0..11, b at 12..14; layer 1 W at 15..20, b at 21..22. */
static const int sizes432[] = {4, 3, 2};

/* Ties (0.1 three times with both signs, 0.3 three times at the cut), negative values larger
 * in magnitude than the pruned ones, and zero / tiny / negative-zero biases. */
static void set_known_layer(struct rt_model *m)
{
    const float w0[12] = {0.5f,   -0.1f, 0.3f,  -0.3f, 0.1f, 2.0f,
                          -0.05f, 0.3f,  -1.0f, 0.7f,  0.1f, -0.2f};
    const float b0[3] = {0.0f, 1e-9f, -0.0f};
    const float w1[6] = {-4.0f, 0.25f, 0.25f, 3.0f, -0.25f, 0.01f};
    const float b1[2] = {0.0f, -1e-30f};
    set_layer(m, 0, w0, b0);
    set_layer(m, 1, w1, b1);
}

START_TEST(layer_known_values)
{
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes432);
    ck_assert_uint_eq(m.n_params, 23);
    set_known_layer(&m);
    float before[23];
    memcpy(before, m.params, sizeof before);
    masks_ok(&k, &m);
    rt_masks_compute(&k, m.params, RT_PRUNE_LAYER, 0.5);

    /* layer 0: 0.05 (6), 0.1 x3 (1, 4, 10), 0.2 (11), then the 0.3 tie {2, 3, 7} gives 2;
     * layer 1: 0.01 (5), then the 0.25 tie {1, 2, 4} gives 1, 2 -> flat 20, 16, 17 */
    const size_t pruned[] = {1, 2, 4, 6, 10, 11, 16, 17, 20};
    uint8_t want[23];
    keep_with_pruned(want, 23, pruned, sizeof pruned / sizeof pruned[0]);
    expect_keep(&k, want, "layer 0.5");
    ck_assert_uint_eq(count_pruned(&k, 0), 6); /* round(0.5 * 12) */
    ck_assert_uint_eq(count_pruned(&k, 1), 3); /* round(0.5 * 6) */
    expect_biases_kept(&k, &m);
    ck_assert_double_eq(rt_masks_sparsity(&k, 0), 0.5);
    ck_assert_double_eq(rt_masks_sparsity(&k, 1), 0.5);
    ck_assert_double_eq(rt_masks_sparsity(&k, -1), 0.5);
    ck_assert_msg(memcmp(before, m.params, sizeof before) == 0, "compute changed params");

    /* compute packs: clearing keep and unpacking gives the same mask back */
    memset(k.keep, 0, k.n_params);
    rt_masks_unpack(&k);
    expect_keep(&k, want, "layer 0.5 unpacked");
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

/* Sparsity 0 prunes nothing, sparsity 1 (and above, clamped) every weight but no bias. */
START_TEST(layer_extremes)
{
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes432);
    set_known_layer(&m);
    masks_ok(&k, &m);
    rt_masks_compute(&k, m.params, RT_PRUNE_LAYER, 0.0);
    ck_assert_uint_eq(count_pruned(&k, -1), 0);
    rt_masks_compute(&k, m.params, RT_PRUNE_LAYER, -0.5);
    ck_assert_uint_eq(count_pruned(&k, -1), 0);
    rt_masks_compute(&k, m.params, RT_PRUNE_GLOBAL, 1.5);
    ck_assert_uint_eq(count_pruned(&k, -1), 18);
    expect_biases_kept(&k, &m);
    ck_assert_double_eq(rt_masks_sparsity(&k, -1), 1.0);
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

/* Layer 1 is small everywhere, layer 0 large but for a 0.55 and a 0.6 tie that crosses the
 * layers: global k = round(0.5 * 18) = 9 takes all of layer 1 but its 0.6 (flat 20, last in
 * index order among the four 0.6), the per-layer answer is 6 + 3 different positions. */
static void set_known_global(struct rt_model *m)
{
    const float w0[12] = {0.6f,  1.5f,  -1.25f, 0.6f,  3.0f,  -2.0f,
                          1.75f, 0.55f, 2.5f,   -0.6f, -1.1f, 4.0f};
    const float b0[3] = {0.0f, 0.0f, 0.0f};
    const float w1[6] = {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, 0.6f};
    const float b1[2] = {1e-12f, 0.0f};
    set_layer(m, 0, w0, b0);
    set_layer(m, 1, w1, b1);
}

START_TEST(global_known_values)
{
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes432);
    set_known_global(&m);
    masks_ok(&k, &m);
    uint8_t want[23];

    rt_masks_compute(&k, m.params, RT_PRUNE_GLOBAL, 0.5);
    const size_t pruned_global[] = {0, 3, 7, 9, 15, 16, 17, 18, 19};
    keep_with_pruned(want, 23, pruned_global, 9);
    expect_keep(&k, want, "global 0.5");
    ck_assert_uint_eq(count_pruned(&k, -1), 9); /* round(0.5 * 18) */
    ck_assert_uint_eq(count_pruned(&k, 0), 4);
    ck_assert_uint_eq(count_pruned(&k, 1), 5);
    expect_biases_kept(&k, &m);
    rt_masks_free(&k);

    masks_ok(&k, &m);
    rt_masks_compute(&k, m.params, RT_PRUNE_LAYER, 0.5);
    const size_t pruned_layer[] = {0, 2, 3, 7, 9, 10, 15, 16, 17};
    keep_with_pruned(want, 23, pruned_layer, 9);
    expect_keep(&k, want, "layer 0.5 (same values)");
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

/* Global k rounds over the total, not per layer: 4-3-2 at 0.25 is round(4.5) = 5 over all
 * 18 weights (half away from zero), where per layer it is round(3) + round(1.5) = 3 + 2. */
START_TEST(global_k_over_total)
{
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes432);
    for (size_t j = 0; j < m.n_params; j++) /* all distinct, increasing with the index */
        m.params[j] = 1.0f + (float)j;
    masks_ok(&k, &m);
    rt_masks_compute(&k, m.params, RT_PRUNE_GLOBAL, 0.25);
    ck_assert_uint_eq(count_pruned(&k, -1), 5);
    for (size_t j = 0; j < 5; j++) /* the five smallest are layer 0's first five */
        ck_assert_int_eq(k.keep[j], 0);
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

/* Random values drawn from 8 magnitudes with both signs, on two layouts, both scopes,
 * a range of sparsities, each step on top of the last: the mask equals the brute-force
 * reference of the contract. */
START_TEST(matches_reference_random)
{
    const int layouts[2][4] = {{7, 3, 2, 0}, {5, 9, 4, 3}};
    const int n_sizes[2] = {3, 4};
    const double steps[] = {0.1, 0.3, 0.3, 0.5, 0.65, 0.8, 0.95};
    uint64_t seed = 42;
    for (int l = 0; l < 2; l++)
        for (int sc = 0; sc < 2; sc++)
            for (int rep = 0; rep < 5; rep++) {
                enum rt_prune_scope scope = sc ? RT_PRUNE_GLOBAL : RT_PRUNE_LAYER;
                struct rt_model m;
                struct rt_masks k;
                model_fresh(&m, n_sizes[l], layouts[l]);
                masks_ok(&k, &m);
                uint8_t *prev = malloc(m.n_params), *want = malloc(m.n_params);
                ck_assert_ptr_nonnull(prev);
                ck_assert_ptr_nonnull(want);
                for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
                    /* fresh values every update, as training moves the kept weights; the
                     * pruned ones are zero as rt_masks_apply leaves them */
                    fill_tied(m.params, m.n_params, &seed);
                    rt_masks_apply(&k, m.params, 0, m.n_params);
                    memcpy(prev, k.keep, m.n_params);
                    reference_masks(&m, prev, m.params, scope, steps[s], want);
                    rt_masks_compute(&k, m.params, scope, steps[s]);
                    char label[64];
                    snprintf(label, sizeof label, "layout %d %s rep %d s=%.2f", l,
                             rt_prune_scope_name(scope), rep, steps[s]);
                    expect_keep(&k, want, label);
                    expect_biases_kept(&k, &m);
                }
                free(prev);
                free(want);
                rt_masks_free(&k);
                rt_model_free(&m);
            }
}
END_TEST

/* ---- monotone masks ----------------------------------------------------------------------- */

static void monotone_case(enum rt_prune_scope scope)
{
    const int sizes[] = {5, 7, 3};
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes);
    uint64_t seed = 7;
    for (size_t j = 0; j < m.n_params; j++) /* distinct magnitudes in [0.5, 1.5) */
        m.params[j] = (j % 2 ? -1.0f : 1.0f) * (0.5f + (float)(next_u64(&seed) >> 40) / 0x1p24f);
    masks_ok(&k, &m);
    const size_t nw = k.n_weights, n = k.n_params; /* 35 + 21 = 56 weights, 66 params */
    uint8_t *at50 = malloc(n), *at75 = malloc(n), *want = malloc(n);
    ck_assert_ptr_nonnull(at50);
    ck_assert_ptr_nonnull(at75);
    ck_assert_ptr_nonnull(want);

    rt_masks_compute(&k, m.params, scope, 0.5);
    memcpy(at50, k.keep, n);
    ck_assert_uint_eq(count_pruned(&k, -1), scope == RT_PRUNE_GLOBAL ? 28 : 18 + 11);

    /* the pruned positions grow large again (no apply): they must still count as 0 */
    for (size_t j = 0; j < n; j++)
        if (!at50[j]) m.params[j] = 1000.0f + (float)j;
    reference_masks(&m, at50, m.params, scope, 0.75, want);
    rt_masks_compute(&k, m.params, scope, 0.75);
    for (size_t j = 0; j < n; j++)
        ck_assert_msg(at50[j] || !k.keep[j], "position %zu pruned at 0.5 is kept at 0.75", j);
    if (scope == RT_PRUNE_GLOBAL)
        ck_assert_uint_eq(count_pruned(&k, -1), (size_t)llround(0.75 * (double)nw));
    else {
        ck_assert_uint_eq(count_pruned(&k, 0), 26); /* round(0.75 * 35) */
        ck_assert_uint_eq(count_pruned(&k, 1), 16); /* round(0.75 * 21) */
    }
    expect_keep(&k, want, "0.75 after 0.5");
    memcpy(at75, k.keep, n);

    /* a lower sparsity, or the same one again, never un-prunes: the mask stays as it is */
    rt_masks_compute(&k, m.params, scope, 0.25);
    expect_keep(&k, at75, "0.25 after 0.75");
    rt_masks_compute(&k, m.params, scope, 0.75);
    expect_keep(&k, at75, "0.75 again");
    rt_masks_compute(&k, m.params, scope, 0.0);
    expect_keep(&k, at75, "0 after 0.75");
    /* and the packed bits follow */
    memset(k.keep, 1, n);
    rt_masks_unpack(&k);
    expect_keep(&k, at75, "unpacked after 0");

    free(at50);
    free(at75);
    free(want);
    rt_masks_free(&k);
    rt_model_free(&m);
}

START_TEST(monotone_layer)
{
    monotone_case(RT_PRUNE_LAYER);
}
END_TEST

START_TEST(monotone_global)
{
    monotone_case(RT_PRUNE_GLOBAL);
}
END_TEST

/* A kept weight that is exactly 0 must not tie with the pruned ones: at a lower index it
 * would take one of the k slots while the pruned weight it displaces stays pruned, so more
 * than k = round(s * n) would end up pruned (the first version did: 4 of 12 at 0.25). */
START_TEST(kept_zero_does_not_overprune)
{
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes432);
    for (int sc = 0; sc < 2; sc++) {
        enum rt_prune_scope scope = sc ? RT_PRUNE_GLOBAL : RT_PRUNE_LAYER;
        double s = sc ? 1.0 / 3.0 : 0.25;
        for (size_t j = 0; j < 12; j++) /* decreasing: the highest indices are pruned */
            m.params[j] = (float)(12 - j);
        for (size_t j = 0; j < 6; j++)
            m.params[15 + j] = (float)(6 - j);
        masks_ok(&k, &m);
        rt_masks_compute(&k, m.params, scope, s);
        size_t n0 = count_pruned(&k, 0), n_all = count_pruned(&k, -1);
        uint8_t *before = malloc(k.n_params);
        ck_assert_ptr_nonnull(before);
        memcpy(before, k.keep, k.n_params);
        rt_masks_apply(&k, m.params, 0, m.n_params);
        m.params[0] = 0.0f; /* kept, below every pruned index */
        m.params[1] = -0.0f;
        rt_masks_compute(&k, m.params, scope, s);
        for (size_t j = 0; j < k.n_params; j++)
            ck_assert_msg(before[j] || !k.keep[j], "%s: %zu un-pruned", rt_prune_scope_name(scope),
                          j);
        if (scope == RT_PRUNE_LAYER)
            ck_assert_msg(count_pruned(&k, 0) == n0, "layer: %zu pruned in layer 0, expected %zu",
                          count_pruned(&k, 0), n0);
        ck_assert_msg(count_pruned(&k, -1) == n_all, "%s: %zu pruned, expected %zu",
                      rt_prune_scope_name(scope), count_pruned(&k, -1), n_all);
        free(before);
        rt_masks_free(&k);
    }
    rt_model_free(&m);
}
END_TEST

/* rt_masks_keep_all resets the mask (and its bits) to every weight kept. */
START_TEST(keep_all_resets)
{
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes432);
    set_known_layer(&m);
    masks_ok(&k, &m);
    rt_masks_compute(&k, m.params, RT_PRUNE_GLOBAL, 0.5);
    ck_assert_uint_eq(count_pruned(&k, -1), 9);
    rt_masks_keep_all(&k);
    for (size_t j = 0; j < k.n_params; j++)
        ck_assert_int_eq(k.keep[j], 1);
    memset(k.keep, 0, k.n_params);
    rt_masks_unpack(&k);
    for (size_t j = 0; j < k.n_params; j++)
        ck_assert_int_eq(k.keep[j], 1);
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

/* ---- packing ------------------------------------------------------------------------------ */

/* Random keep on every position (biases too: they must not leak into the bits), pack, check
 * each bit against the weight order (LSB first) and the padding, clear, unpack. */
static void pack_case(int n_sizes, const int *sizes, size_t n_weights)
{
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, n_sizes, sizes);
    masks_ok(&k, &m);
    ck_assert_uint_eq(k.n_weights, n_weights);
    ck_assert_uint_eq(k.packed_bytes, (n_weights + 7) / 8);
    uint8_t *want = malloc(k.n_params);
    ck_assert_ptr_nonnull(want);
    uint64_t seed = 1000 + n_weights;
    for (int rep = 0; rep < 20; rep++) {
        for (size_t j = 0; j < k.n_params; j++)
            k.keep[j] = (uint8_t)(next_u64(&seed) & 1);
        if (rep == 0) memset(k.keep, 0, k.n_params); /* all pruned */
        if (rep == 1) memset(k.keep, 1, k.n_params); /* all kept */
        for (size_t j = 0; j < k.n_params; j++)
            want[j] = is_weight(&m, j) ? k.keep[j] : 1;
        memset(k.packed, 0xA5, k.packed_bytes); /* pack must overwrite, padding included */
        rt_masks_pack(&k);

        size_t bit = 0;
        for (int i = 0; i < m.n_layers; i++)
            for (size_t j = 0; j < n_weights_of(&m, i); j++, bit++) {
                int b = (k.packed[bit / 8] >> (bit % 8)) & 1;
                ck_assert_msg(b == want[rt_model_layer_offset(&m, i) + j],
                              "rep %d: bit %zu (layer %d, weight %zu) is %d", rep, bit, i, j, b);
            }
        ck_assert_uint_eq(bit, n_weights);
        for (; bit < 8 * k.packed_bytes; bit++)
            ck_assert_msg(((k.packed[bit / 8] >> (bit % 8)) & 1) == 0, "padding bit %zu set", bit);

        memset(k.keep, rep % 2 ? 0 : 1, k.n_params);
        rt_masks_unpack(&k);
        expect_keep(&k, want, "unpacked");
    }
    free(want);
    rt_masks_free(&k);
    rt_model_free(&m);
}

START_TEST(pack_5_3_3)
{
    const int sizes[] = {5, 3, 3};
    pack_case(3, sizes, 15 + 9); /* 24 bits; layer 1 starts at bit 15, mid-byte */
}
END_TEST

START_TEST(pack_7_3_2)
{
    const int sizes[] = {7, 3, 2};
    pack_case(3, sizes, 21 + 6); /* 27 bits: 5 padding bits */
}
END_TEST

START_TEST(pack_5_3_2_4)
{
    const int sizes[] = {5, 3, 2, 4};
    pack_case(4, sizes, 15 + 6 + 8); /* 29 bits over three layers */
}
END_TEST

/* Bits beyond n_weights in the received buffer are ignored by unpack. */
START_TEST(unpack_ignores_padding)
{
    const int sizes[] = {7, 3, 2};
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes);
    masks_ok(&k, &m);
    memset(k.packed, 0, k.packed_bytes);
    k.packed[3] = 0xF8; /* bits 27..31 only */
    rt_masks_unpack(&k);
    for (size_t j = 0; j < k.n_params; j++)
        ck_assert_int_eq(k.keep[j], is_weight(&m, j) ? 0 : 1);
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

/* ---- apply -------------------------------------------------------------------------------- */

START_TEST(apply_ranges)
{
    const int sizes[] = {5, 3, 2};
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes);
    masks_ok(&k, &m);
    const size_t n = k.n_params; /* 15 + 3 + 6 + 2 = 26 */
    ck_assert_uint_eq(n, 26);
    uint64_t seed = 99;
    for (size_t j = 0; j < n; j++)
        k.keep[j] = is_weight(&m, j) ? (uint8_t)(next_u64(&seed) & 1) : 1;
    k.keep[0] = 0; /* the ends of the block */
    k.keep[23] = 0;
    const size_t ranges[][2] = {{0, 26}, {0, 0},   {5, 5},       {3, 17},       {17, 26},
                                {0, 1},  {23, 24}, {10, 26 + 8}, {20, SIZE_MAX}};
    float v[26 + 8];
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        size_t lo = ranges[r][0], hi = ranges[r][1];
        for (size_t j = 0; j < 26 + 8; j++)
            v[j] = 1.0f + (float)j;
        rt_masks_apply(&k, v, lo, hi);
        for (size_t j = 0; j < 26 + 8; j++) {
            int zero = j >= lo && j < hi && j < n && !k.keep[j];
            float expect = zero ? 0.0f : 1.0f + (float)j;
            ck_assert_msg(v[j] == expect, "[%zu, %zu): v[%zu] = %g, expected %g", lo, hi, j,
                          (double)v[j], (double)expect);
        }
    }
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

/* ---- reported sparsity -------------------------------------------------------------------- */

START_TEST(masks_sparsity_values)
{
    struct rt_model m;
    struct rt_masks k;
    model_fresh(&m, 3, sizes432);
    masks_ok(&k, &m);
    const size_t pruned[] = {0, 5, 11, 15, 18, 20}; /* 3 of 12 in layer 0, 3 of 6 in layer 1 */
    keep_with_pruned(k.keep, k.n_params, pruned, 6);
    ck_assert_double_eq(rt_masks_sparsity(&k, 0), 0.25);
    ck_assert_double_eq(rt_masks_sparsity(&k, 1), 0.5);
    ck_assert_double_eq(rt_masks_sparsity(&k, -1), 6.0 / 18.0);
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

START_TEST(weights_sparsity_values)
{
    struct rt_model m;
    model_fresh(&m, 3, sizes432);
    /* a fresh model is all zeros */
    ck_assert_double_eq(rt_weights_sparsity(&m, m.params, -1), 1.0);
    const float w0[12] = {0.0f, 1.0f,   -0.0f, 2.0f, 1e-30f, 3.0f,
                          0.0f, -1e-7f, 4.0f,  0.0f, 5.0f,   6.0f};
    const float b0[3] = {0.0f, 0.0f, 0.0f};
    const float w1[6] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
    const float b1[2] = {0.0f, 0.0f};
    set_layer(&m, 0, w0, b0);
    set_layer(&m, 1, w1, b1);
    /* exact zeros only (-0 counts, tiny values don't), weights only (zero biases don't) */
    ck_assert_double_eq(rt_weights_sparsity(&m, m.params, 0), 4.0 / 12.0);
    ck_assert_double_eq(rt_weights_sparsity(&m, m.params, 1), 0.0);
    ck_assert_double_eq(rt_weights_sparsity(&m, m.params, -1), 4.0 / 18.0);
    /* after masking, the zeros are the pruned weights plus the ones already zero */
    struct rt_masks k;
    masks_ok(&k, &m);
    const size_t pruned[] = {1, 15, 16};
    keep_with_pruned(k.keep, k.n_params, pruned, 3);
    rt_masks_apply(&k, m.params, 0, m.n_params);
    ck_assert_double_eq(rt_weights_sparsity(&m, m.params, 0), 5.0 / 12.0);
    ck_assert_double_eq(rt_weights_sparsity(&m, m.params, 1), 2.0 / 6.0);
    ck_assert_double_eq(rt_weights_sparsity(&m, m.params, -1), 7.0 / 18.0);
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

/* ---- schedule ----------------------------------------------------------------------------- */

static const struct rt_prune_sched gradual = {.kind = RT_PRUNE_GRADUAL,
                                              .initial = 0.0,
                                              .target = 0.9,
                                              .start = 100,
                                              .every = 10,
                                              .updates = 10};

static double closed_form(const struct rt_prune_sched *s, int64_t t)
{
    double x = (double)(t - s->start) / (double)(s->every * s->updates);
    return s->target + (s->initial - s->target) * pow(1.0 - x, 3);
}

START_TEST(gradual_sparsity)
{
    const struct rt_prune_sched *s = &gradual;
    ck_assert_double_eq(rt_prune_sparsity_at(s, 0), 0.0);
    ck_assert_double_eq(rt_prune_sparsity_at(s, 99), 0.0);
    ck_assert_double_eq(rt_prune_sparsity_at(s, 100), 0.0);
    ck_assert_double_eq(rt_prune_sparsity_at(s, 200), 0.9);
    ck_assert_double_eq(rt_prune_sparsity_at(s, 201), 0.9);
    ck_assert_double_eq(rt_prune_sparsity_at(s, 1000000), 0.9);
    const int64_t mids[] = {101, 110, 137, 150, 163, 190, 199};
    for (size_t i = 0; i < sizeof mids / sizeof mids[0]; i++)
        ck_assert_double_eq_tol(rt_prune_sparsity_at(s, mids[i]), closed_form(s, mids[i]), 1e-12);
    /* x = 1/2: 0.9 - 0.9/8 */
    ck_assert_double_eq_tol(rt_prune_sparsity_at(s, 150), 0.7875, 1e-12);
    double prev = -1.0;
    for (int64_t t = 0; t <= 300; t++) {
        double v = rt_prune_sparsity_at(s, t);
        ck_assert_msg(v >= prev, "s(%lld) = %.17g < s(t-1) = %.17g", (long long)t, v, prev);
        ck_assert_msg(v >= 0.0 && v <= 0.9, "s(%lld) = %.17g out of [0, 0.9]", (long long)t, v);
        prev = v;
    }
}
END_TEST

/* With s_i > 0 the curve starts from s_i at (and before) t0. */
START_TEST(gradual_sparsity_initial)
{
    struct rt_prune_sched s = gradual;
    s.initial = 0.2;
    s.target = 0.8;
    ck_assert_double_eq_tol(rt_prune_sparsity_at(&s, 50), 0.2, 1e-15);
    ck_assert_double_eq_tol(rt_prune_sparsity_at(&s, 100), 0.2, 1e-15);
    ck_assert_double_eq_tol(rt_prune_sparsity_at(&s, 125), closed_form(&s, 125), 1e-12);
    ck_assert_double_eq(rt_prune_sparsity_at(&s, 200), 0.8);
}
END_TEST

START_TEST(gradual_updates)
{
    const struct rt_prune_sched *s = &gradual;
    ck_assert_int_eq(rt_prune_last_update(s), 200);
    int n_updates = 0;
    for (int64_t t = -20; t <= 400; t++) {
        int want = t >= 100 && t <= 200 && (t - 100) % 10 == 0;
        ck_assert_msg(!!rt_prune_is_update(s, t) == want, "is_update(%lld) = %d, expected %d",
                      (long long)t, rt_prune_is_update(s, t), want);
        n_updates += want;
    }
    ck_assert_int_eq(n_updates, 11); /* t0 + k dt, k = 0..n */
    ck_assert(!rt_prune_is_update(s, 99));
    ck_assert(rt_prune_is_update(s, 100));
    ck_assert(!rt_prune_is_update(s, 101));
    ck_assert(rt_prune_is_update(s, 110));
    ck_assert(rt_prune_is_update(s, 200));
    ck_assert(!rt_prune_is_update(s, 210)); /* t0 + (n+1) dt */
    ck_assert(!rt_prune_is_update(s, 90));  /* t0 - dt */
    /* the last update reaches s_f exactly */
    ck_assert_double_eq(rt_prune_sparsity_at(s, rt_prune_last_update(s)), s->target);
}
END_TEST

START_TEST(oneshot_schedule)
{
    struct rt_prune_sched s = gradual;
    s.kind = RT_PRUNE_ONESHOT;
    s.initial = 0.3; /* ignored by oneshot */
    ck_assert_double_eq(rt_prune_sparsity_at(&s, 0), 0.0);
    ck_assert_double_eq(rt_prune_sparsity_at(&s, 99), 0.0);
    ck_assert_double_eq(rt_prune_sparsity_at(&s, 100), 0.9);
    ck_assert_double_eq(rt_prune_sparsity_at(&s, 150), 0.9);
    ck_assert_double_eq(rt_prune_sparsity_at(&s, 100000), 0.9);
    for (int64_t t = 0; t <= 400; t++)
        ck_assert_msg(!!rt_prune_is_update(&s, t) == (t == 100), "oneshot is_update(%lld) = %d",
                      (long long)t, rt_prune_is_update(&s, t));
    ck_assert_int_eq(rt_prune_last_update(&s), 100);
}
END_TEST

/* ---- names -------------------------------------------------------------------------------- */

START_TEST(names_round_trip)
{
    const enum rt_prune_scope scopes[] = {RT_PRUNE_LAYER, RT_PRUNE_GLOBAL};
    for (int i = 0; i < 2; i++) {
        enum rt_prune_scope out = scopes[1 - i];
        ck_assert_int_eq(rt_prune_scope_parse(rt_prune_scope_name(scopes[i]), &out), 0);
        ck_assert_int_eq(out, scopes[i]);
    }
    const enum rt_prune_schedule kinds[] = {RT_PRUNE_GRADUAL, RT_PRUNE_ONESHOT};
    for (int i = 0; i < 2; i++) {
        enum rt_prune_schedule out = kinds[1 - i];
        ck_assert_int_eq(rt_prune_schedule_parse(rt_prune_schedule_name(kinds[i]), &out), 0);
        ck_assert_int_eq(out, kinds[i]);
    }
    ck_assert_str_eq(rt_prune_scope_name(RT_PRUNE_LAYER), "layer");
    ck_assert_str_eq(rt_prune_scope_name(RT_PRUNE_GLOBAL), "global");
    ck_assert_str_eq(rt_prune_schedule_name(RT_PRUNE_GRADUAL), "gradual");
    ck_assert_str_eq(rt_prune_schedule_name(RT_PRUNE_ONESHOT), "oneshot");

    const char *bad[] = {"", "Layer", "globals", "glob", "layer ", "gradual", "l1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum rt_prune_scope out = RT_PRUNE_GLOBAL;
        ck_assert_msg(rt_prune_scope_parse(bad[i], &out) == -1, "scope \"%s\" accepted", bad[i]);
        ck_assert_int_eq(out, RT_PRUNE_GLOBAL); /* untouched on failure */
    }
    const char *bad_kind[] = {"", "Gradual", "one-shot", "once", "layer", "oneshot\n"};
    for (size_t i = 0; i < sizeof bad_kind / sizeof bad_kind[0]; i++) {
        enum rt_prune_schedule out = RT_PRUNE_ONESHOT;
        ck_assert_msg(rt_prune_schedule_parse(bad_kind[i], &out) == -1, "schedule \"%s\" accepted",
                      bad_kind[i]);
        ck_assert_int_eq(out, RT_PRUNE_ONESHOT);
    }
}
END_TEST

/* ---- determinism and size ----------------------------------------------------------------- */

START_TEST(deterministic)
{
    const int sizes[] = {7, 3, 2};
    struct rt_model m;
    struct rt_masks a, b;
    model_fresh(&m, 3, sizes);
    uint64_t seed = 5;
    fill_tied(m.params, m.n_params, &seed);
    masks_ok(&a, &m);
    masks_ok(&b, &m);
    for (int sc = 0; sc < 2; sc++) {
        enum rt_prune_scope scope = sc ? RT_PRUNE_GLOBAL : RT_PRUNE_LAYER;
        rt_masks_keep_all(&a);
        rt_masks_keep_all(&b);
        rt_masks_compute(&a, m.params, scope, 0.6);
        rt_masks_compute(&b, m.params, scope, 0.6);
        ck_assert_uint_eq(a.packed_bytes, b.packed_bytes);
        ck_assert_msg(memcmp(a.packed, b.packed, a.packed_bytes) == 0, "%s: packed bytes differ",
                      rt_prune_scope_name(scope));
        ck_assert_msg(memcmp(a.keep, b.keep, a.n_params) == 0, "%s: keep differs",
                      rt_prune_scope_name(scope));
    }
    rt_masks_free(&a);
    rt_masks_free(&b);
    rt_model_free(&m);
}
END_TEST

/* Every kept weight is larger than every pruned one in (|w|, flat index) order. */
static void expect_threshold(const struct rt_masks *k, const float *params, int layer)
{
    double max_p = -1.0, min_k = INFINITY;
    size_t max_p_pos = 0, min_k_pos = SIZE_MAX;
    for (int i = 0; i < k->n_layers; i++) {
        if (layer >= 0 && i != layer) continue;
        for (size_t j = 0; j < k->w_len[i]; j++) {
            size_t p = k->w_off[i] + j;
            double a = fabs((double)params[p]);
            if (!k->keep[p] && (a > max_p || (a == max_p && p > max_p_pos))) {
                max_p = a;
                max_p_pos = p;
            }
            if (k->keep[p] && (a < min_k || (a == min_k && p < min_k_pos))) {
                min_k = a;
                min_k_pos = p;
            }
        }
    }
    ck_assert_msg(max_p < min_k || (max_p == min_k && max_p_pos < min_k_pos),
                  "layer %d: pruned |w| %.9g at %zu vs kept %.9g at %zu", layer, max_p, max_p_pos,
                  min_k, min_k_pos);
}

START_TEST(mnist_size_global)
{
    const int sizes[] = {784, 512, 256, 10};
    struct rt_model m;
    struct rt_masks k, k2;
    model_fresh(&m, 4, sizes);
    rt_model_init_params(&m, 1234);
    masks_ok(&k, &m);
    const size_t nw = 784 * 512 + 512 * 256 + 256 * 10;
    ck_assert_uint_eq(k.n_weights, nw);
    ck_assert_uint_eq(k.packed_bytes, (nw + 7) / 8);
    rt_masks_compute(&k, m.params, RT_PRUNE_GLOBAL, 0.9);
    ck_assert_uint_eq(count_pruned(&k, -1), (size_t)llround(0.9 * (double)nw));
    expect_threshold(&k, m.params, -1);
    expect_biases_kept(&k, &m);

    masks_ok(&k2, &m);
    rt_masks_compute(&k2, m.params, RT_PRUNE_GLOBAL, 0.9);
    ck_assert_msg(memcmp(k.packed, k2.packed, k.packed_bytes) == 0, "packed bytes differ");
    rt_masks_free(&k2);

    /* per layer on the same values: each layer at round(0.9 * its size) */
    masks_ok(&k2, &m);
    rt_masks_compute(&k2, m.params, RT_PRUNE_LAYER, 0.9);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(count_pruned(&k2, i), (size_t)llround(0.9 * (double)k2.w_len[i]));
        expect_threshold(&k2, m.params, i);
    }
    rt_masks_free(&k2);
    rt_masks_free(&k);
    rt_model_free(&m);
}
END_TEST

/* Structured shrink: the narrow model computes what the wide one computes when the dropped
 * neurons' outgoing weights are zeroed (so they contribute nothing, whatever the
 * activation); the kept neurons are the highest-scoring ones, listed ascending. */
static void shrink_case(enum rt_act act, double keep)
{
    int sizes[4] = {9, 12, 7, 3};
    struct rt_model_spec spec = {.loss = RT_LOSS_CE, .init = RT_INIT_TORCH};
    rt_model_spec_widths(&spec, sizes, 4, act);
    struct rt_model wide, narrow;
    ck_assert_int_eq(rt_model_init(&wide, &spec, 5), RT_OK);
    rt_model_init_params(&wide, 7);
    int32_t kept[19];
    int counts[3] = {0}; /* one per layer */
    ck_assert_int_eq(rt_prune_neurons(&wide, keep, 1.0, kept, counts), RT_OK);
    ck_assert_int_eq(counts[0], (int)llround(keep * 12));
    ck_assert_int_eq(counts[1], (int)llround(keep * 7) < 1 ? 1 : (int)llround(keep * 7));
    struct rt_model_spec ns;
    rt_model_shrunk_spec(&wide, counts, &ns);
    ck_assert_int_eq(ns.layers[0].units, counts[0]);
    ck_assert_int_eq(ns.layers[1].units, counts[1]);
    ck_assert_int_eq(rt_model_init(&narrow, &ns, 5), RT_OK);
    rt_model_shrink_copy(&wide, kept, counts, &narrow);
    /* zero the outgoing weights of the dropped neurons of each hidden layer */
    const int32_t *k = kept;
    for (int h = 0; h < 2; h++) {
        for (int j = 1; j < counts[h]; j++)
            ck_assert_int_lt(k[j - 1], k[j]);
        float *w_out;
        rt_model_layer_view(&wide, h + 1, &w_out, NULL, NULL, NULL);
        int width = sizes[h + 1], next = sizes[h + 2];
        for (int j = 0; j < width; j++) {
            int is_kept = 0;
            for (int q = 0; q < counts[h]; q++)
                is_kept |= k[q] == j;
            for (int o = 0; !is_kept && o < next; o++)
                w_out[(size_t)o * width + j] = 0.0f;
        }
        k += counts[h];
    }
    float x[5 * 9];
    for (int i = 0; i < 5 * 9; i++)
        x[i] = (float)sin(0.37 * i);
    float a[5 * 3], b[5 * 3];
    memcpy(a, rt_model_forward(&wide, x, 5), sizeof a);
    memcpy(b, rt_model_forward(&narrow, x, 5), sizeof b);
    for (int i = 0; i < 5 * 3; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) <= 1e-5f * (1 + fabsf(a[i])),
                      "%s keep %.2f: logit %d %g vs %g", rt_act_name(act), keep, i, a[i], b[i]);
    rt_model_free(&wide);
    rt_model_free(&narrow);
}

/* A GPT's structured units are its MLP neurons (fc1's rows, fc2's columns) and its heads
 * (the q|k|v layer's rows of a head, the projection's columns that read it). Shrunk, the
 * GPT computes what the wide one computes with the consumers' columns of the dropped units
 * zeroed; residual and layer-norm widths stay. Cases: neurons, heads, both. */
static const double gpt_keep[][2] = {{0.5, 1.0}, {1.0, 0.5}, {0.5, 0.5}};
static const char *const gpt_shrunk[] = {
    "embed(9, 8), posembed, block(8, heads=4, mlp=16) * 2, layernorm, unembed",
    "embed(9, 8), posembed, block(8, heads=2, head_dim=2) * 2, layernorm, unembed",
    "embed(9, 8), posembed, block(8, heads=2, mlp=16, head_dim=2) * 2, layernorm, unembed"};

/* Zeroes the columns of consumer c (its `units` column groups) that read the units not in
 * kept[0 .. n). */
static void zero_dropped(struct rt_model *m, int c, int units, const int32_t *kept, int n)
{
    float *w;
    rt_model_layer_view(m, c, &w, NULL, NULL, NULL);
    int rows = 8; /* fc2 and the projection both write the width D = 8 */
    int cols = (int)(rt_model_layer_weights(m, c) / (size_t)rows), group = cols / units;
    for (int u = 0; u < units; u++) {
        int is_kept = 0;
        for (int q = 0; q < n; q++)
            is_kept |= kept[q] == u;
        for (int o = 0; !is_kept && o < rows; o++)
            for (int k = 0; k < group; k++)
                w[(size_t)o * cols + u * group + k] = 0.0f;
    }
}

START_TEST(gpt_shrink_equals_masked)
{
    enum { T = 4, V = 9, B = 2, H = 4 };
    double kn = gpt_keep[_i][0], kh = gpt_keep[_i][1];
    struct rt_model_spec spec = {.loss = RT_LOSS_CE, .init = RT_INIT_GPT2};
    char err[256];
    ck_assert_msg(rt_model_spec_parse(&spec,
                                      "embed(9, 8), posembed, block(8, heads=4) * 2, "
                                      "layernorm, unembed",
                                      err, sizeof err) == 0,
                  "%s", err);
    spec.input = (struct rt_shape){.rank = 1, .d = {T}};
    struct rt_model wide, narrow;
    ck_assert_int_eq(rt_model_init(&wide, &spec, B), RT_OK);
    rt_model_init_params(&wide, 5);
    for (size_t i = 0; i < wide.n_params; i++) /* biases too, so their copy is checked */
        wide.params[i] += 0.01f * (float)((i * 7) % 5);
    int32_t kept[128];
    int counts[RT_MAX_LAYERS] = {0};
    ck_assert_int_eq(rt_prune_neurons(&wide, kn, kh, kept, counts), RT_OK);
    struct rt_model_spec ns;
    rt_model_shrunk_spec(&wide, counts, &ns);
    char text[512];
    rt_model_spec_format(text, sizeof text, &ns);
    ck_assert_str_eq(text, gpt_shrunk[_i]);
    ck_assert_int_eq(rt_model_init(&narrow, &ns, B), RT_OK);
    rt_model_shrink_copy(&wide, kept, counts, &narrow);
    const int32_t *k = kept;
    int unit_layers = 0;
    for (int i = 0; i < wide.n_layers; i++) {
        int units = rt_model_units(&wide, i), heads = rt_model_units_are_heads(&wide, i);
        int fc1 = spec.layers[i].kind == RT_LAYER_DENSE && spec.layers[i].act == RT_ACT_GELU;
        ck_assert_int_eq(units > 0, fc1 || heads);
        if (!units) continue;
        unit_layers++;
        ck_assert_int_eq(units, heads ? H : 32);
        ck_assert_int_eq(counts[i], (int)llround((heads ? kh : kn) * units));
        zero_dropped(&wide, heads ? i + 2 : i + 1, units, k, counts[i]);
        k += counts[i];
    }
    ck_assert_int_eq(unit_layers, 4);
    float x[B * T] = {1, 4, 2, 8, 0, 3, 3, 7}, a[B * T * V], b[B * T * V];
    memcpy(a, rt_model_forward(&wide, x, B), sizeof a);
    memcpy(b, rt_model_forward(&narrow, x, B), sizeof b);
    for (int i = 0; i < B * T * V; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) <= 1e-5f * (1 + fabsf(a[i])), "logit %d %g vs %g", i, a[i],
                      b[i]);
    rt_model_free(&wide);
    rt_model_free(&narrow);
}
END_TEST

START_TEST(shrink_equals_masked)
{
    const enum rt_act acts[] = {RT_ACT_RELU, RT_ACT_TANH, RT_ACT_SIGMOID, RT_ACT_GELU};
    for (int i = 0; i < 4; i++) {
        shrink_case(acts[i], 0.25);
        shrink_case(acts[i], 0.5);
        shrink_case(acts[i], 1.0);
    }
}
END_TEST

/* Channel pruning: conv filters (read by a conv, and by a dense layer after flatten) and
 * hidden neurons go; the shrunk CNN computes what the wide one computes with the weights
 * that read the dropped units zeroed, and its GEMMs are smaller. */
static void cnn_shrink_case(const char *layers, double keep)
{
    struct rt_model_spec spec = {.loss = RT_LOSS_CE, .init = RT_INIT_TORCH};
    char err[256];
    ck_assert_msg(rt_model_spec_parse(&spec, layers, err, sizeof err) == 0, "%s", err);
    spec.input = (struct rt_shape){.rank = 3, .d = {2, 10, 9}};
    struct rt_model wide, narrow;
    ck_assert_int_eq(rt_model_init(&wide, &spec, 4), RT_OK);
    rt_model_init_params(&wide, 11);
    /* masks cover every weight of every kind (conv kernels included), and only weights */
    struct rt_masks mk;
    masks_ok(&mk, &wide);
    ck_assert_uint_eq(mk.n_weights, (size_t)rt_model_weight_count(&wide));
    ck_assert_uint_eq(mk.w_len[0], rt_model_layer_weights(&wide, 0));
    ck_assert_uint_eq(mk.w_len[1], 0); /* pooling */
    rt_masks_compute(&mk, wide.params, RT_PRUNE_GLOBAL, 0.9);
    ck_assert_double_eq_tol(rt_masks_sparsity(&mk, -1), 0.9, 5e-3);
    rt_masks_free(&mk);
    int counts[RT_MAX_LAYERS] = {0}, total = 0;
    for (int i = 0; i < wide.n_layers; i++)
        total += rt_model_units(&wide, i);
    int32_t *kept = malloc((size_t)total * sizeof *kept);
    ck_assert_int_eq(rt_prune_neurons(&wide, keep, 1.0, kept, counts), RT_OK);
    struct rt_model_spec ns;
    rt_model_shrunk_spec(&wide, counts, &ns);
    ck_assert_int_eq(rt_model_init(&narrow, &ns, 4), RT_OK);
    rt_model_shrink_copy(&wide, kept, counts, &narrow);
    const int32_t *k = kept;
    for (int i = 0; i < wide.n_layers; i++) {
        int units = rt_model_units(&wide, i);
        if (!units) continue;
        ck_assert_int_eq(counts[i],
                         (int)llround(keep * units) < 1 ? 1 : (int)llround(keep * units));
        int j = i + 1; /* the layer that reads the units */
        while (rt_model_layer_weights(&wide, j) == 0)
            j++;
        int64_t dims[4];
        rt_model_layer_weight_dims(&wide, j, dims);
        size_t cols = rt_model_layer_weights(&wide, j) / (size_t)dims[0], group = cols / units;
        float *w;
        rt_model_layer_view(&wide, j, &w, NULL, NULL, NULL);
        for (int u = 0; u < units; u++) {
            int is_kept = 0;
            for (int q = 0; q < counts[i]; q++)
                is_kept |= k[q] == u;
            for (int64_t o = 0; !is_kept && o < dims[0]; o++)
                memset(w + (size_t)o * cols + (size_t)u * group, 0, group * sizeof *w);
        }
        k += counts[i];
    }
    float x[4 * 180];
    for (int i = 0; i < 4 * 180; i++)
        x[i] = (float)sin(0.41 * i);
    float a[4 * 3], b[4 * 3];
    memcpy(a, rt_model_forward(&wide, x, 4), sizeof a);
    memcpy(b, rt_model_forward(&narrow, x, 4), sizeof b);
    for (int i = 0; i < 4 * 3; i++)
        ck_assert_msg(fabsf(a[i] - b[i]) <= 1e-5f * (1 + fabsf(a[i])), "%s keep %.2f: %g vs %g",
                      layers, keep, a[i], b[i]);
    ck_assert(keep == 1.0 ? narrow.n_params == wide.n_params : narrow.n_params < wide.n_params);
    ck_assert(rt_model_train_flops_per_sample(&narrow) <= rt_model_train_flops_per_sample(&wide));
    free(kept);
    rt_model_free(&wide);
    rt_model_free(&narrow);
}

START_TEST(shrink_cnn_channels)
{
    const char *nets[] = {
        "conv(6, 3, pad=1), relu, maxpool(2), conv(8, 3, pad=1), relu, maxpool(2), flatten, "
        "dense(7), relu, dense(3)",
        "conv(5, 3, stride=2), sigmoid, dropout(0.5), avgpool(2, stride=1), flatten, tanh, "
        "dense(3)",
    };
    for (int n = 0; n < 2; n++) {
        cnn_shrink_case(nets[n], 0.5);
        cnn_shrink_case(nets[n], 0.2);
        cnn_shrink_case(nets[n], 1.0);
    }
}
END_TEST

/* Scores: a neuron with large incoming and outgoing weights is kept over a small one. */
START_TEST(shrink_keeps_largest)
{
    int sizes[3] = {2, 4, 1};
    struct rt_model_spec spec = {.loss = RT_LOSS_MSE, .init = RT_INIT_TORCH};
    rt_model_spec_widths(&spec, sizes, 3, RT_ACT_RELU);
    struct rt_model m;
    ck_assert_int_eq(rt_model_init(&m, &spec, 1), RT_OK);
    float *w0, *w1;
    rt_model_layer_view(&m, 0, &w0, NULL, NULL, NULL);
    rt_model_layer_view(&m, 1, &w1, NULL, NULL, NULL);
    const float in[8] = {1, 1, 0.1f, 0.1f, 3, 0, 0.2f, 0.2f}, out[4] = {1, 5, 0.1f, 0.1f};
    memcpy(w0, in, sizeof in);
    memcpy(w1, out, sizeof out);
    int32_t kept[4];
    int counts[2]; /* one per layer */
    ck_assert_int_eq(rt_prune_neurons(&m, 0.5, 1.0, kept, counts), RT_OK);
    ck_assert_int_eq(counts[0], 2);
    ck_assert_int_eq(kept[0], 1); /* |0.1,0.1| + |5| */
    ck_assert_int_eq(kept[1], 2); /* |3,0| + |0.1| beats neuron 0's sqrt(2 + 1) */
    rt_model_free(&m);
}
END_TEST

static Suite *prune_suite(void)
{
    Suite *s = suite_create("prune");
    TCase *tc = tcase_create("select");
    tcase_add_test(tc, init_layout);
    tcase_add_test(tc, layer_known_values);
    tcase_add_test(tc, layer_extremes);
    tcase_add_test(tc, global_known_values);
    tcase_add_test(tc, global_k_over_total);
    tcase_add_test(tc, matches_reference_random);
    tcase_add_test(tc, monotone_layer);
    tcase_add_test(tc, monotone_global);
    tcase_add_test(tc, keep_all_resets);
    tcase_add_test(tc, kept_zero_does_not_overprune);
    suite_add_tcase(s, tc);
    tc = tcase_create("bits");
    tcase_add_test(tc, pack_5_3_3);
    tcase_add_test(tc, pack_7_3_2);
    tcase_add_test(tc, pack_5_3_2_4);
    tcase_add_test(tc, unpack_ignores_padding);
    tcase_add_test(tc, apply_ranges);
    tcase_add_test(tc, masks_sparsity_values);
    tcase_add_test(tc, weights_sparsity_values);
    suite_add_tcase(s, tc);
    tc = tcase_create("schedule");
    tcase_add_test(tc, gradual_sparsity);
    tcase_add_test(tc, gradual_sparsity_initial);
    tcase_add_test(tc, gradual_updates);
    tcase_add_test(tc, oneshot_schedule);
    tcase_add_test(tc, names_round_trip);
    suite_add_tcase(s, tc);
    tc = tcase_create("shrink");
    tcase_add_test(tc, shrink_equals_masked);
    tcase_add_loop_test(tc, gpt_shrink_equals_masked, 0, 3);
    tcase_add_test(tc, shrink_cnn_channels);
    tcase_add_test(tc, shrink_keeps_largest);
    suite_add_tcase(s, tc);
    tc = tcase_create("scale");
    tcase_add_test(tc, deterministic);
    tcase_add_test(tc, mnist_size_global);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(prune_suite());
}
