/* names.c - the spellings of activations, losses and init schemes in job files and logs.
 *
 * Parsing is case-insensitive and accepts the aliases people type (PyTorch's and ours);
 * the name functions return the one canonical spelling, which the parser accepts back. */
#include "ringtrain/model.h"

#include <stddef.h>
#include <stdio.h>
#include <strings.h>

struct name_map {
    const char *name;
    int value;
};

/* Canonical names first: name lookups take the first entry with the value. */
static const struct name_map act_names[] = {
    {"identity", RT_ACT_IDENTITY}, {"relu", RT_ACT_RELU}, {"tanh", RT_ACT_TANH},
    {"sigmoid", RT_ACT_SIGMOID},   {"gelu", RT_ACT_GELU}, {"linear", RT_ACT_IDENTITY},
    {"none", RT_ACT_IDENTITY},
};
static const struct name_map loss_names[] = {
    {"ce", RT_LOSS_CE},           {"mse", RT_LOSS_MSE},       {"cross_entropy", RT_LOSS_CE},
    {"crossentropy", RT_LOSS_CE}, {"softmax_ce", RT_LOSS_CE},
};
static const struct name_map init_names[] = {
    {"torch", RT_INIT_TORCH},   {"xavier", RT_INIT_XAVIER},         {"he", RT_INIT_HE},
    {"default", RT_INIT_TORCH}, {"xavier_uniform", RT_INIT_XAVIER}, {"glorot", RT_INIT_XAVIER},
    {"kaiming", RT_INIT_HE},    {"he_normal", RT_INIT_HE},          {"kaiming_normal", RT_INIT_HE},
    {"gpt2", RT_INIT_GPT2},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static int map_parse(const struct name_map *map, size_t n, const char *name, int *out)
{
    if (!name) return -1;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(map[i].name, name) == 0) {
            *out = map[i].value;
            return 0;
        }
    }
    return -1;
}

static const char *map_name(const struct name_map *map, size_t n, int value)
{
    for (size_t i = 0; i < n; i++)
        if (map[i].value == value) return map[i].name;
    return "unknown";
}

int rt_act_parse(const char *name, enum rt_act *out)
{
    int v;
    if (map_parse(act_names, N_OF(act_names), name, &v) != 0) return -1;
    *out = (enum rt_act)v;
    return 0;
}

int rt_loss_parse(const char *name, enum rt_loss *out)
{
    int v;
    if (map_parse(loss_names, N_OF(loss_names), name, &v) != 0) return -1;
    *out = (enum rt_loss)v;
    return 0;
}

int rt_init_parse(const char *name, enum rt_init *out)
{
    int v;
    if (map_parse(init_names, N_OF(init_names), name, &v) != 0) return -1;
    *out = (enum rt_init)v;
    return 0;
}

const char *rt_act_name(enum rt_act a)
{
    return map_name(act_names, N_OF(act_names), (int)a);
}

const char *rt_loss_name(enum rt_loss l)
{
    return map_name(loss_names, N_OF(loss_names), (int)l);
}

const char *rt_init_name(enum rt_init i)
{
    return map_name(init_names, N_OF(init_names), (int)i);
}
