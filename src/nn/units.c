/* units.c - structured pruning as the layers see it: which layers produce units (dense
 * neurons, conv filters) that a later layer reads, their scores, and the shrunk copy
 * (contract in model.h).
 *
 * A producer's weight is (UNITS, FAN) row-major with one bias per unit: dense (OUT, IN),
 * conv2d (OC, C KH KW). Its consumer is the next layer with parameters, reached through
 * layers that keep units apart and in order (activations, pooling, dropout, flatten); in
 * NCHW each unit then spans `group` consecutive inputs of every row of the consumer's
 * weight: 1 for dense after dense, H W for dense after flatten, KH KW for conv after conv.
 * So one rule shrinks every pair: keep the producer's rows and the consumer's column
 * groups, with no case per kind.
 *
 * Attention heads are units of the same rule one level up: the dense q|k|v layer before an
 * attention layer is the producer, its unit h is head h, owning `span` = hd rows in each
 * of its 3 `parts` (q, k, v), and the projection after the attention reads head h as the
 * column group h (of hd columns). A unit of a dense layer or conv is 1 part of span 1. */
#include "ringtrain/model.h"
#include "nn/layer.h"

#include <math.h>
#include <string.h>

/* (rows, cols) of layer l's weight as a matrix; rows 0 without weights. */
static int matrix(const struct rt_layer *l, size_t *cols)
{
    int64_t dims[4];
    size_t nw = l->ops->weight_count(l);
    *cols = 0;
    if (!nw || !l->ops->weight_dims) return 0;
    l->ops->weight_dims(l, dims);
    *cols = nw / (size_t)dims[0];
    return (int)dims[0];
}

/* The layer that reads layer i's units, or -1. Heads are made only right after i. */
static int consumer_of(const struct rt_model *m, int i)
{
    if (m->layers[i].ops->unit_role != RT_UNITS_MAKE) return -1;
    for (int j = i + 1; j < m->n_layers; j++) {
        int role = m->layers[j].ops->unit_role;
        if (role == RT_UNITS_MAKE) return j;
        if (role == RT_UNITS_HEADS && j == i + 1) continue;
        if (role != RT_UNITS_PASS) return -1;
    }
    return -1;
}

/* How layer i's units own its weight rows: unit u has rows p units span + u span + k for
 * p < parts, k < span. */
struct unit_map {
    int units, parts, span;
};

static struct unit_map unit_map(const struct rt_model *m, int i)
{
    size_t cols;
    int rows = matrix(&m->layers[i], &cols);
    if (i + 1 < m->n_layers && m->layers[i + 1].ops->unit_role == RT_UNITS_HEADS) {
        const struct rt_attn_geom *g = &m->layers[i + 1].g.attn;
        return (struct unit_map){g->heads, 3, g->D / g->heads};
    }
    return (struct unit_map){rows, 1, 1};
}

int rt_model_units(const struct rt_model *m, int i)
{
    size_t cols;
    int j = consumer_of(m, i);
    struct unit_map u = unit_map(m, i);
    if (j < 0 || u.units < 1 || matrix(&m->layers[i], &cols) < 1) return 0;
    size_t ccols;
    matrix(&m->layers[j], &ccols);
    return ccols % (size_t)u.units == 0 ? u.units : 0;
}

int rt_model_units_are_heads(const struct rt_model *m, int i)
{
    return rt_model_units(m, i) > 0 && unit_map(m, i).parts == 3;
}

/* Weight row r of unit u's k-th row (k < parts span). */
static int unit_row(const struct unit_map *u, int unit, int k)
{
    return k / u->span * u->units * u->span + unit * u->span + k % u->span;
}

void rt_model_unit_scores(const struct rt_model *m, int i, double *score)
{
    const struct rt_layer *p = &m->layers[i], *c = &m->layers[consumer_of(m, i)];
    size_t fan, ccols;
    struct unit_map map = unit_map(m, i);
    int units = map.units, crows = matrix(c, &ccols);
    matrix(p, &fan);
    size_t group = ccols / (size_t)units;
    for (int u = 0; u < units; u++) {
        double sum = 0;
        for (int r = 0; r < map.parts * map.span; r++) {
            const float *row = p->w + (size_t)unit_row(&map, u, r) * fan;
            for (size_t k = 0; k < fan; k++)
                sum += (double)row[k] * row[k];
        }
        for (int o = 0; o < crows; o++) {
            const float *in = c->w + (size_t)o * ccols + (size_t)u * group;
            for (size_t k = 0; k < group; k++)
                sum += (double)in[k] * in[k];
        }
        score[u] = sqrt(sum);
    }
}

void rt_model_shrunk_spec(const struct rt_model *m, const int *counts, struct rt_model_spec *out)
{
    *out = m->spec;
    for (int i = 0; i < m->n_layers; i++) {
        if (rt_model_units(m, i) == 0) continue;
        struct unit_map u = unit_map(m, i);
        out->layers[i].units = counts[i] * u.parts * u.span;
        if (u.parts == 3) out->layers[i + 1].heads = counts[i];
    }
}

/* The source row of destination row r: the kept units' rows part after part (q, k, v
 * of the kept heads), each unit's span in order; every row when kept is NULL. */
struct kept_units {
    struct unit_map map;
    const int32_t *kept; /* NULL: all */
    int n;               /* kept units */
};

static int source_row(const struct kept_units *ku, int r)
{
    if (!ku->kept) return r;
    int span = ku->map.span, per_part = ku->n * span;
    return unit_row(&ku->map, ku->kept[r % per_part / span], r / per_part * span + r % span);
}

/* dst rows of layer i from src, the rows ku keeps, each with its columns in groups of
 * `group`, keeping the column groups in cols (or all). */
static void copy_weight(float *dw, const float *sw, size_t src_cols, const struct kept_units *ku,
                        int n_rows, const int32_t *cols, int n_groups, size_t group)
{
    size_t dst_cols = (size_t)n_groups * group;
    for (int r = 0; r < n_rows; r++) {
        const float *s = sw + (size_t)source_row(ku, r) * src_cols;
        float *d = dw + (size_t)r * dst_cols;
        for (int gi = 0; gi < n_groups; gi++)
            memcpy(d + (size_t)gi * group, s + (size_t)(cols ? cols[gi] : gi) * group,
                   group * sizeof *d);
    }
}

void rt_model_shrink_copy(const struct rt_model *src, const int32_t *kept, const int *counts,
                          struct rt_model *dst)
{
    const int32_t *cols = NULL; /* kept units that the next layer with weights reads */
    int n_groups = 0, src_units = 0;
    for (int i = 0; i < src->n_layers; i++) {
        const struct rt_layer *s = &src->layers[i];
        struct rt_layer *d = &dst->layers[i];
        size_t scols, dcols;
        int srows = matrix(s, &scols), drows = matrix(d, &dcols);
        if (!srows) continue;
        int units = rt_model_units(src, i);
        struct kept_units ku = {unit_map(src, i), units ? kept : NULL, units ? counts[i] : 0};
        /* without kept inputs every column stays: one group of all of them */
        size_t group = cols ? scols / (size_t)src_units : scols;
        copy_weight(d->w, s->w, scols, &ku, drows, cols, cols ? n_groups : 1, group);
        if (s->ops->bias_count(s) > 0) /* embeddings have none */
            for (int r = 0; r < drows; r++)
                d->b[r] = s->b[source_row(&ku, r)];
        cols = units ? kept : NULL;
        n_groups = units ? counts[i] : 0;
        src_units = units ? units : srows;
        if (units) kept += counts[i];
    }
}
