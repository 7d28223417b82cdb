/* generate.h - sampling text from a language model (a model whose input is T token ids
 * into an embed layer and whose rows of logits predict the next token at each position).
 *
 * The window: the model sees exactly T positions; the prompt fills the first ones and each
 * new token is predicted from the logits at the last filled position (causal attention makes
 * the unfilled positions after it irrelevant). Once T tokens are filled the window slides:
 * the oldest token is dropped, as nanoGPT crops to its block size.
 *
 * Sampling: logits / temperature, restricted to the top_k largest (0: all), softmax in
 * double, one uniform draw from the stream seeded with seed: the same (model, prompt,
 * options) give the same tokens on any machine. temperature 0 takes the arg-max.
 *
 * No MPI; everything is allocated in rt_generator_init. */
#ifndef RT_GENERATE_H
#define RT_GENERATE_H

#include <stdint.h>
#include <stdio.h>

#include "ringtrain/model.h"
#include "ringtrain/rng.h"

struct rt_sample_opts {
    double temperature; /* >= 0 */
    int top_k;          /* 0 = the whole vocabulary */
    uint64_t seed;
};

struct rt_generator {
    struct rt_model *model; /* borrowed; initialised with max_batch >= 1 */
    struct rt_sample_opts opts;
    struct rt_rng rng;
    int T, V;      /* context and vocabulary */
    int filled;    /* positions of window holding tokens */
    float *window; /* (T) token ids as the model reads them */
    double *p;     /* (V) probabilities */
    int *order;    /* (V) scratch for top-k */
};

/* 1 when m is a language model generate can drive (input (T) ids into an embed first,
 * logits of the embed's vocabulary at every position); 0 otherwise, with what it is instead
 * in why. */
int rt_model_is_language_model(const struct rt_model *m, char *why, size_t cap);

/* RT_ERR_FORMAT when m is not a language model, RT_ERR_INVAL when an option is out of
 * range (messages name them), RT_ERR_NOMEM. */
int rt_generator_init(struct rt_generator *g, struct rt_model *m, const struct rt_sample_opts *o);
void rt_generator_free(struct rt_generator *g);
/* Feeds n prompt tokens (each < V). RT_ERR_INVAL when more than T tokens would be in the
 * window before any was generated, or a token is out of range. */
int rt_generator_prompt(struct rt_generator *g, const int *tokens, int n);
/* The next token, appended to the window. Needs at least one token fed. */
int rt_generator_next(struct rt_generator *g);

#endif
