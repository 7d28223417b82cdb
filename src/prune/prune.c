/* prune.c - magnitude masks and the Zhu & Gupta schedule (contract in prune.h). */
#include "ringtrain/prune.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int rt_prune_scope_parse(const char *name, enum rt_prune_scope *out)
{
    if (strcmp(name, "layer") == 0)
        *out = RT_PRUNE_LAYER;
    else if (strcmp(name, "global") == 0)
        *out = RT_PRUNE_GLOBAL;
    else
        return -1;
    return 0;
}

int rt_prune_schedule_parse(const char *name, enum rt_prune_schedule *out)
{
    if (strcmp(name, "gradual") == 0)
        *out = RT_PRUNE_GRADUAL;
    else if (strcmp(name, "oneshot") == 0)
        *out = RT_PRUNE_ONESHOT;
    else
        return -1;
    return 0;
}

const char *rt_prune_scope_name(enum rt_prune_scope s)
{
    return s == RT_PRUNE_GLOBAL ? "global" : "layer";
}

const char *rt_prune_schedule_name(enum rt_prune_schedule s)
{
    return s == RT_PRUNE_ONESHOT ? "oneshot" : "gradual";
}

double rt_prune_sparsity_at(const struct rt_prune_sched *s, int64_t t)
{
    if (s->kind == RT_PRUNE_ONESHOT) return t >= s->start ? s->target : 0.0;
    if (t < s->start) return s->initial;
    double span = (double)s->updates * (double)(s->every > 0 ? s->every : 1);
    double x = (double)(t - s->start) / span;
    if (x >= 1) return s->target;
    double r = 1 - x;
    return s->target + (s->initial - s->target) * r * r * r;
}

int rt_prune_is_update(const struct rt_prune_sched *s, int64_t t)
{
    if (t < s->start) return 0;
    if (s->kind == RT_PRUNE_ONESHOT) return t == s->start;
    int64_t every = s->every > 0 ? s->every : 1, d = t - s->start;
    return d % every == 0 && d / every <= s->updates;
}

int64_t rt_prune_last_update(const struct rt_prune_sched *s)
{
    if (s->kind == RT_PRUNE_ONESHOT) return s->start;
    return s->start + s->updates * (s->every > 0 ? s->every : 1);
}

int rt_masks_init(struct rt_masks *k, const struct rt_model *m)
{
    memset(k, 0, sizeof *k);
    k->n_layers = m->n_layers;
    k->n_params = m->n_params;
    for (int i = 0; i < m->n_layers; i++) {
        k->w_off[i] = rt_model_layer_offset(m, i);
        /* only weight matrices: embeddings and layer norms are never masked */
        k->w_len[i] = rt_model_layer_prunable(m, i) ? rt_model_layer_weights(m, i) : 0;
        k->n_weights += k->w_len[i];
    }
    k->packed_bytes = (k->n_weights + 7) / 8;
    size_t need = rt_arena_footprint(k->n_params) + rt_arena_footprint(k->packed_bytes) +
                  rt_arena_footprint(k->n_weights * sizeof *k->keys);
    RT_TRY(rt_arena_init(&k->arena, "pruning masks", need));
    k->keep = rt_arena_alloc(&k->arena, k->n_params);
    k->packed = rt_arena_alloc(&k->arena, k->packed_bytes);
    k->keys = rt_arena_alloc(&k->arena, k->n_weights * sizeof *k->keys);
    rt_masks_keep_all(k);
    return RT_OK;
}

void rt_masks_free(struct rt_masks *k)
{
    rt_arena_free(&k->arena);
    memset(k, 0, sizeof *k);
}

void rt_masks_keep_all(struct rt_masks *k)
{
    memset(k->keep, 1, k->n_params);
    rt_masks_pack(k);
}

/* Sort key: magnitude above, position below, so that ordering the keys orders by |w| and
 * breaks ties by position. |w| of a float compares like its bits as unsigned; kept weights
 * get bits + 1 so that a pruned weight (key 0 above) always ranks before a kept weight that
 * happens to be exactly zero: otherwise that zero would take one of the k slots and more
 * than k weights would end up pruned. */
static uint64_t key_of(float w, int kept, size_t pos)
{
    uint32_t bits;
    float a = fabsf(w);
    memcpy(&bits, &a, sizeof bits);
    uint64_t mag = kept ? (uint64_t)bits + 1 : 0;
    return mag << 32 | (uint64_t)(uint32_t)pos;
}

static int by_key(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Pruned weights rank first whatever their value, so they stay pruned. */
static size_t collect(const struct rt_masks *k, const float *params, int i, uint64_t *keys,
                      size_t pos0)
{
    const float *w = params + k->w_off[i];
    const uint8_t *keep = k->keep + k->w_off[i];
    for (size_t j = 0; j < k->w_len[i]; j++)
        keys[j] = key_of(w[j], keep[j], pos0 + j);
    return k->w_len[i];
}

/* Prunes the n_prune smallest of keys (n of them, positions relative to the weight order). */
static void prune_smallest(struct rt_masks *k, uint64_t *keys, size_t n, size_t n_prune)
{
    qsort(keys, n, sizeof *keys, by_key);
    for (size_t j = 0; j < n_prune && j < n; j++) {
        size_t pos = (size_t)(uint32_t)keys[j];
        int i = 0;
        while (i + 1 < k->n_layers && pos >= k->w_len[i])
            pos -= k->w_len[i++];
        k->keep[k->w_off[i] + pos] = 0;
    }
}

void rt_masks_compute(struct rt_masks *k, const float *params, enum rt_prune_scope scope,
                      double sparsity)
{
    if (sparsity < 0) sparsity = 0;
    if (sparsity > 1) sparsity = 1;
    if (scope == RT_PRUNE_GLOBAL) {
        size_t n = 0;
        for (int i = 0; i < k->n_layers; i++)
            n += collect(k, params, i, k->keys + n, n);
        prune_smallest(k, k->keys, n, (size_t)llround(sparsity * (double)n));
    } else {
        size_t base = 0;
        for (int i = 0; i < k->n_layers; i++) {
            size_t n = collect(k, params, i, k->keys, base);
            prune_smallest(k, k->keys, n, (size_t)llround(sparsity * (double)n));
            base += n;
        }
    }
    rt_masks_pack(k);
}

void rt_masks_pack(struct rt_masks *k)
{
    memset(k->packed, 0, k->packed_bytes);
    size_t bit = 0;
    for (int i = 0; i < k->n_layers; i++)
        for (size_t j = 0; j < k->w_len[i]; j++, bit++)
            if (k->keep[k->w_off[i] + j]) k->packed[bit >> 3] |= (uint8_t)(1u << (bit & 7));
}

void rt_masks_unpack(struct rt_masks *k)
{
    memset(k->keep, 1, k->n_params);
    size_t bit = 0;
    for (int i = 0; i < k->n_layers; i++)
        for (size_t j = 0; j < k->w_len[i]; j++, bit++)
            k->keep[k->w_off[i] + j] = (uint8_t)((k->packed[bit >> 3] >> (bit & 7)) & 1u);
}

void rt_masks_apply(const struct rt_masks *k, float *v, size_t lo, size_t hi)
{
    if (hi > k->n_params) hi = k->n_params;
    for (size_t j = lo; j < hi; j++)
        v[j] = k->keep[j] ? v[j] : 0.0f;
}

void rt_masks_apply_at(const struct rt_masks *k, float *v, size_t lo, size_t hi)
{
    if (hi > k->n_params) hi = k->n_params;
    for (size_t j = lo; j < hi; j++)
        v[j - lo] = k->keep[j] ? v[j - lo] : 0.0f;
}

double rt_masks_sparsity(const struct rt_masks *k, int i)
{
    size_t pruned = 0, n = 0;
    for (int l = 0; l < k->n_layers; l++) {
        if (i >= 0 && l != i) continue;
        for (size_t j = 0; j < k->w_len[l]; j++)
            pruned += !k->keep[k->w_off[l] + j];
        n += k->w_len[l];
    }
    return n ? (double)pruned / (double)n : 0.0;
}

double rt_weights_sparsity(const struct rt_model *m, const float *params, int i)
{
    size_t zeros = 0, n = 0;
    for (int l = 0; l < m->n_layers; l++) {
        if (i >= 0 && l != i) continue;
        const float *w = params + rt_model_layer_offset(m, l);
        size_t len = rt_model_layer_prunable(m, l) ? rt_model_layer_weights(m, l) : 0;
        for (size_t j = 0; j < len; j++)
            zeros += w[j] == 0.0f;
        n += len;
    }
    return n ? (double)zeros / (double)n : 0.0;
}
