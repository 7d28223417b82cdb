/* shrink.c - structured pruning: whole hidden neurons out, layers physically smaller
 * (contract in prune.h). */
#include "ringtrain/prune.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct scored {
    double score;
    int32_t index;
};

/* Higher score first; equal scores keep the lower index, so the choice depends only on the
 * values. */
static int by_score(const void *a, const void *b)
{
    const struct scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

static int by_index(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int rt_prune_neurons(const struct rt_model *m, double keep, int32_t *kept, int *counts)
{
    int width_max = 0;
    for (int h = 0; h + 1 < m->n_layers; h++)
        width_max = m->spec.sizes[h + 1] > width_max ? m->spec.sizes[h + 1] : width_max;
    struct scored *s = malloc((size_t)(width_max ? width_max : 1) * sizeof *s);
    if (!s) return rt_errorf(RT_ERR_NOMEM, "structured pruning: %d scores", width_max);
    size_t at = 0;
    for (int h = 0; h + 1 < m->n_layers; h++) {
        int width = m->spec.sizes[h + 1], in = m->spec.sizes[h], next = m->spec.sizes[h + 2];
        float *w_in, *w_out;
        rt_model_layer_view(m, h, &w_in, NULL, NULL, NULL);
        rt_model_layer_view(m, h + 1, &w_out, NULL, NULL, NULL);
        for (int j = 0; j < width; j++) {
            double sum = 0;
            for (int i = 0; i < in; i++)
                sum += (double)w_in[(size_t)j * in + i] * w_in[(size_t)j * in + i];
            for (int o = 0; o < next; o++)
                sum += (double)w_out[(size_t)o * width + j] * w_out[(size_t)o * width + j];
            s[j].score = sqrt(sum);
            s[j].index = j;
        }
        int k = (int)llround(keep * width);
        k = k < 1 ? 1 : k > width ? width : k;
        qsort(s, (size_t)width, sizeof *s, by_score);
        for (int j = 0; j < k; j++)
            kept[at + (size_t)j] = s[j].index;
        qsort(kept + at, (size_t)k, sizeof *kept, by_index);
        counts[h] = k;
        at += (size_t)k;
    }
    free(s);
    return RT_OK;
}

void rt_model_shrink_copy(const struct rt_model *src, const int32_t *kept, const int *counts,
                          struct rt_model *dst)
{
    const int32_t *rows = kept, *cols = NULL; /* kept outputs / inputs of layer i */
    for (int i = 0; i < src->n_layers; i++) {
        int last = i + 1 == src->n_layers;
        int out = dst->spec.sizes[i + 1], in = dst->spec.sizes[i], src_in = src->spec.sizes[i];
        float *sw, *sb, *dw, *db;
        rt_model_layer_view(src, i, &sw, &sb, NULL, NULL);
        rt_model_layer_view(dst, i, &dw, &db, NULL, NULL);
        for (int o = 0; o < out; o++) {
            int so = last ? o : rows[o];
            for (int c = 0; c < in; c++)
                dw[(size_t)o * in + c] = sw[(size_t)so * src_in + (cols ? cols[c] : c)];
            db[o] = sb[so];
        }
        cols = rows;
        if (!last) rows += counts[i];
    }
}
