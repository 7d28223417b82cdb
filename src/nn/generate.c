/* generate.c - sampling from a language model (contract in generate.h).
 *
 * Each token costs one forward over the whole window (no key/value cache): at the T = 128,
 * d = 128 of the example job that is a few milliseconds, and the model's forward stays the
 * one path that training, evaluation and generation share.
 *
 * Dimension letters: T context, V vocabulary. */
#include "ringtrain/generate.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int rt_model_is_language_model(const struct rt_model *m, char *why, size_t cap)
{
    const struct rt_model_spec *s = &m->spec;
    char shape[64];
    rt_shape_text(shape, sizeof shape, &s->input);
    if (s->input.rank != 1 || s->n_layers < 1 || s->layers[0].kind != RT_LAYER_EMBED) {
        snprintf(why, cap, "its input is %s into %s, not token ids (T) into embed", shape,
                 rt_model_layer_kind(m, 0));
        return 0;
    }
    if (m->positions != s->input.d[0] || m->outputs != s->layers[0].vocab ||
        s->loss != RT_LOSS_CE) {
        snprintf(why, cap, "it does not predict one of its %d tokens at each position",
                 s->layers[0].vocab);
        return 0;
    }
    return 1;
}

int rt_generator_init(struct rt_generator *g, struct rt_model *m, const struct rt_sample_opts *o)
{
    memset(g, 0, sizeof *g);
    char why[160];
    if (!rt_model_is_language_model(m, why, sizeof why))
        return rt_errorf(RT_ERR_FORMAT, "not a language model: %s", why);
    if (!(o->temperature >= 0) || !isfinite(o->temperature) || o->top_k < 0)
        return rt_errorf(RT_ERR_INVAL, "temperature = %g, top-k = %d: expected >= 0",
                         o->temperature, o->top_k);
    g->model = m;
    g->opts = *o;
    g->T = m->spec.input.d[0];
    g->V = m->outputs;
    rt_rng_seed(&g->rng, o->seed);
    g->window = calloc((size_t)g->T, sizeof *g->window);
    g->p = malloc((size_t)g->V * sizeof *g->p);
    g->order = malloc((size_t)g->V * sizeof *g->order);
    if (!g->window || !g->p || !g->order) {
        rt_generator_free(g);
        return rt_errorf(RT_ERR_NOMEM, "cannot allocate the generator");
    }
    rt_model_set_training(m, 0, 0, 0, NULL);
    return RT_OK;
}

void rt_generator_free(struct rt_generator *g)
{
    free(g->window);
    free(g->p);
    free(g->order);
    memset(g, 0, sizeof *g);
}

static void push(struct rt_generator *g, int token)
{
    if (g->filled == g->T) {
        memmove(g->window, g->window + 1, (size_t)(g->T - 1) * sizeof *g->window);
        g->filled--;
    }
    g->window[g->filled++] = (float)token;
}

int rt_generator_prompt(struct rt_generator *g, const int *tokens, int n)
{
    if (g->filled + n > g->T)
        return rt_errorf(RT_ERR_INVAL,
                         "the prompt is %d tokens: longer than the model's context "
                         "of %d",
                         g->filled + n, g->T);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= g->V)
            return rt_errorf(RT_ERR_INVAL, "prompt token %d = %d: expected 0 to %d", i, tokens[i],
                             g->V - 1);
        push(g, tokens[i]);
    }
    return RT_OK;
}

/* order[0 .. k) = the k largest logits' indices, largest first (ties: lower index first),
 * by k selection passes: V is a byte vocabulary, and this keeps the order fully determined
 * without a comparator's global state. */
static void top_k(int *order, const float *z, int V, int k)
{
    for (int i = 0; i < V; i++)
        order[i] = i;
    for (int r = 0; r < k; r++) {
        int best = r;
        for (int i = r + 1; i < V; i++)
            if (z[order[i]] > z[order[best]] ||
                (z[order[i]] == z[order[best]] && order[i] < order[best]))
                best = i;
        int t = order[r];
        order[r] = order[best];
        order[best] = t;
    }
}

int rt_generator_next(struct rt_generator *g)
{
    const float *z = rt_model_forward(g->model, g->window, 1) + (size_t)(g->filled - 1) * g->V;
    int V = g->V, k = g->opts.top_k > 0 && g->opts.top_k < V ? g->opts.top_k : V;
    double t = g->opts.temperature;
    /* greedy needs the largest only; sampling the k largest, or all V in index order */
    top_k(g->order, z, V, t == 0 ? 1 : k < V ? k : 0);
    int token = g->order[0];
    if (t > 0) {
        double sum = 0, zmax = z[0];
        for (int i = 1; i < V; i++) /* the largest of all is among the k kept */
            zmax = z[i] > zmax ? z[i] : zmax;
        for (int r = 0; r < k; r++)
            sum += g->p[r] = exp((z[g->order[r]] - zmax) / t);
        double u = rt_rng_uniform(&g->rng) * sum, acc = 0;
        int r = 0;
        while (r + 1 < k && (acc += g->p[r]) <= u)
            r++;
        token = g->order[r];
    }
    push(g, token);
    return token;
}
