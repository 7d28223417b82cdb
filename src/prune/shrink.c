/* shrink.c - structured pruning: the choice of whole units (hidden neurons, conv filters)
 * to keep, by the scores the layers give (contract in prune.h; the layers shrink
 * themselves: rt_model_shrink_copy in src/nn). */
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

int rt_prune_neurons(const struct rt_model *m, double keep_neurons, double keep_heads,
                     int32_t *kept, int *counts)
{
    int width_max = 0;
    for (int i = 0; i < m->n_layers; i++)
        width_max = rt_model_units(m, i) > width_max ? rt_model_units(m, i) : width_max;
    struct scored *s = malloc((size_t)(width_max ? width_max : 1) * sizeof *s);
    double *score = malloc((size_t)(width_max ? width_max : 1) * sizeof *score);
    if (!s || !score) {
        free(s);
        free(score);
        return rt_errorf(RT_ERR_NOMEM, "structured pruning: %d scores", width_max);
    }
    size_t at = 0;
    for (int i = 0; i < m->n_layers; i++) {
        int width = rt_model_units(m, i);
        counts[i] = 0;
        if (width == 0) continue;
        rt_model_unit_scores(m, i, score);
        for (int j = 0; j < width; j++)
            s[j] = (struct scored){score[j], j};
        double keep = rt_model_units_are_heads(m, i) ? keep_heads : keep_neurons;
        int k = (int)llround(keep * width);
        k = k < 1 ? 1 : k > width ? width : k;
        qsort(s, (size_t)width, sizeof *s, by_score);
        for (int j = 0; j < k; j++)
            kept[at + (size_t)j] = s[j].index;
        qsort(kept + at, (size_t)k, sizeof *kept, by_index);
        counts[i] = k;
        at += (size_t)k;
    }
    free(s);
    free(score);
    return RT_OK;
}
