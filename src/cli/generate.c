/* generate.c - `ringtrain generate MODEL.h5 [options]`: a continuation of a prompt from a
 * language model (sampling in src/nn/generate.c). Single-process work: rank 0 loads the
 * model and prints; every rank returns the agreed status.
 *
 * Prints the prompt and its continuation, raw bytes (the byte-level vocabulary), then a
 * newline. */
#include "ringtrain/bench.h"
#include "ringtrain/generate.h"
#include "ringtrain/model_file.h"
#include "ringtrain/status.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct generate_args {
    const char *model, *prompt;
    long tokens;
    struct rt_sample_opts opts;
};

/* "--name VALUE" pairs after the model path; RT_ERR_INVAL naming a bad one. */
static int parse_args(struct generate_args *a, int argc, char **argv)
{
    *a = (struct generate_args){.prompt = "\n", .tokens = 256, .opts = {1.0, 0, 1234}};
    if (argc < 1 || argv[0][0] == '-')
        return rt_errorf(RT_ERR_INVAL, "generate: expected MODEL.h5 first");
    a->model = argv[0];
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return rt_errorf(RT_ERR_INVAL, "generate: %s needs a value", k);
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        int number = end != v && !*end && errno == 0 && isfinite(x);
        int whole = number && x == floor(x) && x >= 0 && x <= 1e9;
        if (strcmp(k, "--prompt") == 0)
            a->prompt = v;
        else if (strcmp(k, "--tokens") == 0 && whole)
            a->tokens = (long)x;
        else if (strcmp(k, "--temperature") == 0 && number && x >= 0)
            a->opts.temperature = x;
        else if (strcmp(k, "--top-k") == 0 && whole)
            a->opts.top_k = (int)x;
        else if (strcmp(k, "--seed") == 0 && whole)
            a->opts.seed = (uint64_t)x;
        else if (strcmp(k, "--tokens") == 0 || strcmp(k, "--temperature") == 0 ||
                 strcmp(k, "--top-k") == 0 || strcmp(k, "--seed") == 0)
            return rt_errorf(RT_ERR_INVAL, "generate: %s %s: expected a number >= 0", k, v);
        else
            return rt_errorf(RT_ERR_INVAL, "generate: unknown option '%s'", k);
    }
    if (!*a->prompt) return rt_errorf(RT_ERR_INVAL, "generate: --prompt is empty");
    return RT_OK;
}

static int feed_prompt(struct rt_generator *g, const char *model, const char *prompt)
{
    int n = (int)strlen(prompt), st = RT_OK;
    if (n > g->T)
        return rt_errorf(RT_ERR_INVAL,
                         "generate: --prompt is %d bytes: longer than %s's context of %d tokens", n,
                         model, g->T);
    int *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return rt_errorf(RT_ERR_NOMEM, "generate: prompt of %d bytes", n);
    for (int i = 0; i < n; i++)
        ids[i] = (unsigned char)prompt[i];
    st = rt_generator_prompt(g, ids, n);
    free(ids);
    return st;
}

static int generate(const struct generate_args *a)
{
    struct rt_model_spec spec;
    struct rt_model m;
    memset(&m, 0, sizeof m);
    RT_TRY(rt_model_file_spec(a->model, &spec));
    RT_TRY(rt_model_init(&m, &spec, 1));
    int st = rt_model_file_load(a->model, &m);
    struct rt_generator g;
    memset(&g, 0, sizeof g);
    char why[160];
    if (st == RT_OK && !rt_model_is_language_model(&m, why, sizeof why))
        st = rt_errorf(RT_ERR_FORMAT, "%s: not a language model: %s", a->model, why);
    if (st == RT_OK) st = rt_generator_init(&g, &m, &a->opts);
    if (st == RT_OK) st = feed_prompt(&g, a->model, a->prompt);
    if (st == RT_OK) {
        fputs(a->prompt, stdout);
        for (long i = 0; i < a->tokens; i++)
            putchar(rt_generator_next(&g));
        putchar('\n');
        fflush(stdout);
    }
    rt_generator_free(&g);
    rt_model_free(&m);
    return st;
}

int rt_cli_generate(rt_comm_t *comm, int argc, char **argv)
{
    struct generate_args a;
    int st = parse_args(&a, argc, argv);
    if (st == RT_OK && rt_comm_rank(comm) == 0) st = generate(&a);
    return rt_comm_agree(comm, st);
}
