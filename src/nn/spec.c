/* spec.c - model specs: the layer-list syntax of job files (parse and canonical text),
 * shapes, and shape inference through each kind's table (contract in model.h).
 *
 * Syntax (README "Layer lists"): items separated by commas outside parentheses; an item is
 * a kind name, optionally with arguments in parentheses, positional first, then key=value.
 * A list of plain integers is the widths form. Square sizes are one integer, others HxW.
 *   dense(OUT)  conv(OC, K[, stride=S][, pad=P])  maxpool(K[, stride=S])
 *   avgpool(K[, stride=S])  flatten  relu | tanh | sigmoid | gelu | identity  dropout[(P)]
 *   embed(V, D)  posembed  layernorm  attention(H)  residual  add  unembed
 *   block(D, heads=H[, mlp=M][, head_dim=HD])   ITEM * N  (the item N times)
 * An activation right after a dense or conv layer without one is folded into that layer;
 * the canonical text writes it back as its own item, so text -> spec -> text is stable.
 * block(...) is GPT-2's pre-LayerNorm block, expanded into the primitive layers:
 *   residual, layernorm, dense(3 H HD), attention(H), dense(D), add,
 *   residual, layernorm, dense(M), gelu, dense(D), add
 * (HD = D / H and M = 4 D unless given); the canonical text finds such runs again and
 * writes them as block(...), consecutive equal ones as block(...) * N. unembed is tied to
 * the first embed: it takes its V and D from it. */
#include "ringtrain/model.h"
#include "ringtrain/status.h"
#include "nn/layer.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITEM_MAX 128 /* longest item we parse */
#define ARGS_MAX 4

int64_t rt_shape_size(const struct rt_shape *s)
{
    if (s->rank == 0) return 0;
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        n *= s->d[i];
    return n;
}

int rt_shape_equal(const struct rt_shape *a, const struct rt_shape *b)
{
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->d[i] != b->d[i]) return 0;
    return 1;
}

void rt_shape_text(char *buf, size_t cap, const struct rt_shape *s)
{
    if (s->rank == 1)
        snprintf(buf, cap, "(%d)", s->d[0]);
    else if (s->rank == 2)
        snprintf(buf, cap, "(%d, %d)", s->d[0], s->d[1]);
    else if (s->rank == 3)
        snprintf(buf, cap, "(%d, %d, %d)", s->d[0], s->d[1], s->d[2]);
    else
        snprintf(buf, cap, "(?)");
}

/* ---- parsing ---- */

struct arg {
    char key[16]; /* "" for a positional argument */
    char val[32];
};

struct item {
    char name[24];
    int has_parens;
    int n_args;
    struct arg args[ARGS_MAX];
};

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= cap) return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

/* One argument "v" or "key=v" into a. */
static int split_arg(struct arg *a, char *text)
{
    char *eq = strchr(text, '=');
    a->key[0] = '\0';
    if (eq) {
        *eq = '\0';
        if (copy_field(a->key, sizeof a->key, trim(text)) < 0) return -1;
        text = eq + 1;
    }
    return copy_field(a->val, sizeof a->val, trim(text));
}

/* "name" or "name(a, b, k=v)" into it. */
static int split_item(struct item *it, char *text)
{
    memset(it, 0, sizeof *it);
    char *open = strchr(text, '(');
    if (open) {
        size_t n = strlen(open);
        if (open[n - 1] != ')') return -1;
        open[n - 1] = '\0';
        *open = '\0';
        it->has_parens = 1;
        char *args = open + 1;
        if (*trim(args)) {
            for (char *save = NULL, *tok = strtok_r(args, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                if (it->n_args == ARGS_MAX || split_arg(&it->args[it->n_args++], tok) < 0)
                    return -1;
            }
        }
    }
    if (strchr(text, ')')) return -1;
    if (copy_field(it->name, sizeof it->name, trim(text)) < 0) return -1;
    for (char *p = it->name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* "3" -> (3, 3); "3x2" -> (3, 2). */
static int parse_pair(const char *s, long lo, int out[2])
{
    char buf[32];
    snprintf(buf, sizeof buf, "%s", s);
    char *x = strchr(buf, 'x');
    if (!x) {
        if (parse_int(buf, lo, 1 << 20, &out[0]) < 0) return -1;
        out[1] = out[0];
        return 0;
    }
    *x = '\0';
    return parse_int(buf, lo, 1 << 20, &out[0]) < 0 || parse_int(x + 1, lo, 1 << 20, &out[1]) < 0
               ? -1
               : 0;
}

/* conv(OC, K[, stride=S][, pad=P]) and pooling (K[, stride=S]); positional first. */
static int parse_window(struct rt_layer_spec *l, const struct item *it, int conv)
{
    int pos = conv ? 2 : 1, seen_stride = 0;
    if (it->n_args < pos) return -1;
    for (int i = 0; i < it->n_args; i++) {
        const struct arg *a = &it->args[i];
        if ((i < pos) != (a->key[0] == '\0')) return -1; /* positional exactly first */
        int st;
        if (i == 0 && conv)
            st = parse_int(a->val, 1, 1 << 24, &l->units);
        else if (i == pos - 1)
            st = parse_pair(a->val, 1, l->kernel);
        else if (strcmp(a->key, "stride") == 0)
            st = parse_pair(a->val, 1, l->stride), seen_stride = 1;
        else if (conv && (strcmp(a->key, "pad") == 0 || strcmp(a->key, "padding") == 0))
            st = parse_pair(a->val, 0, l->pad);
        else
            st = -1;
        if (st < 0) return -1;
    }
    if (!seen_stride) { /* PyTorch: conv stride 1, pooling stride = kernel */
        l->stride[0] = conv ? 1 : l->kernel[0];
        l->stride[1] = conv ? 1 : l->kernel[1];
    }
    return 0;
}

static const char *usage(enum rt_layer_kind k)
{
    switch (k) {
    case RT_LAYER_DENSE:
        return "dense(OUT) with OUT >= 1";
    case RT_LAYER_CONV2D:
        return "conv(CHANNELS, KERNEL[, stride=S][, pad=P]), sizes N or HxW";
    case RT_LAYER_MAXPOOL2D:
        return "maxpool(KERNEL[, stride=S])";
    case RT_LAYER_AVGPOOL2D:
        return "avgpool(KERNEL[, stride=S])";
    case RT_LAYER_DROPOUT:
        return "dropout or dropout(P) with 0 <= P < 1";
    case RT_LAYER_EMBED:
        return "embed(VOCAB, WIDTH) with both >= 1";
    case RT_LAYER_ATTENTION:
        return "attention(HEADS) with HEADS >= 1";
    default:
        return "no arguments";
    }
}

static int kind_of(const char *name, enum rt_layer_kind *k, enum rt_act *act)
{
    static const struct {
        const char *name;
        enum rt_layer_kind kind;
    } names[] = {{"dense", RT_LAYER_DENSE},         {"linear", RT_LAYER_DENSE},
                 {"conv", RT_LAYER_CONV2D},         {"conv2d", RT_LAYER_CONV2D},
                 {"maxpool", RT_LAYER_MAXPOOL2D},   {"maxpool2d", RT_LAYER_MAXPOOL2D},
                 {"avgpool", RT_LAYER_AVGPOOL2D},   {"avgpool2d", RT_LAYER_AVGPOOL2D},
                 {"flatten", RT_LAYER_FLATTEN},     {"dropout", RT_LAYER_DROPOUT},
                 {"embed", RT_LAYER_EMBED},         {"embedding", RT_LAYER_EMBED},
                 {"posembed", RT_LAYER_POSEMBED},   {"pos_embed", RT_LAYER_POSEMBED},
                 {"layernorm", RT_LAYER_LAYERNORM}, {"ln", RT_LAYER_LAYERNORM},
                 {"attention", RT_LAYER_ATTENTION}, {"attn", RT_LAYER_ATTENTION},
                 {"residual", RT_LAYER_RESIDUAL},   {"add", RT_LAYER_ADD},
                 {"unembed", RT_LAYER_UNEMBED}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) {
            *k = names[i].kind;
            return 0;
        }
    if (rt_act_parse(name, act) == 0) {
        *k = RT_LAYER_ACT;
        return 0;
    }
    return -1;
}

static int parse_args(struct rt_layer_spec *l, const struct item *it)
{
    switch (l->kind) {
    case RT_LAYER_DENSE:
        return it->n_args == 1 && !it->args[0].key[0]
                   ? parse_int(it->args[0].val, 1, 1 << 24, &l->units)
                   : -1;
    case RT_LAYER_CONV2D:
        return parse_window(l, it, 1);
    case RT_LAYER_MAXPOOL2D:
    case RT_LAYER_AVGPOOL2D:
        return parse_window(l, it, 0);
    case RT_LAYER_EMBED:
        return it->n_args == 2 && !it->args[0].key[0] && !it->args[1].key[0] &&
                       parse_int(it->args[0].val, 1, 1 << 24, &l->vocab) == 0 &&
                       parse_int(it->args[1].val, 1, 1 << 24, &l->units) == 0
                   ? 0
                   : -1;
    case RT_LAYER_ATTENTION:
        return it->n_args == 1 && !it->args[0].key[0]
                   ? parse_int(it->args[0].val, 1, 1 << 16, &l->heads)
                   : -1;
    case RT_LAYER_DROPOUT: {
        l->p = 0.5; /* nn.Dropout's default */
        if (!it->has_parens) return 0;
        char *end;
        if (it->n_args != 1 || it->args[0].key[0]) return -1;
        l->p = strtod(it->args[0].val, &end);
        return *end || !(l->p >= 0 && l->p < 1) ? -1 : 0;
    }
    default:
        return it->has_parens ? -1 : 0;
    }
}

#define BLOCK_LAYERS 11 /* layers of one block(...) */

struct block_args {
    int D, heads, mlp, head_dim;
};

/* block(D, heads=H[, mlp=M][, head_dim=HD]) into b; -1 when it does not parse, -2 when D
 * is not divisible by heads (and no head_dim is given). */
static int parse_block_args(struct block_args *b, const struct item *it)
{
    memset(b, 0, sizeof *b);
    if (it->n_args < 2 || it->args[0].key[0] || parse_int(it->args[0].val, 1, 1 << 20, &b->D) < 0)
        return -1;
    for (int i = 1; i < it->n_args; i++) {
        const struct arg *a = &it->args[i];
        int *dst = strcmp(a->key, "heads") == 0      ? &b->heads
                   : strcmp(a->key, "mlp") == 0      ? &b->mlp
                   : strcmp(a->key, "head_dim") == 0 ? &b->head_dim
                                                     : NULL;
        if (!dst || *dst || parse_int(a->val, 1, 1 << 20, dst) < 0) return -1;
    }
    if (!b->heads) return -1;
    if (!b->mlp) b->mlp = 4 * b->D;
    if (!b->head_dim) {
        if (b->D % b->heads) return -2;
        b->head_dim = b->D / b->heads;
    }
    return 0;
}

/* The primitive layers of a block (see the top of the file). */
static void expand_block(struct rt_layer_spec *out, const struct block_args *b)
{
    static const enum rt_layer_kind kinds[BLOCK_LAYERS] = {
        RT_LAYER_RESIDUAL, RT_LAYER_LAYERNORM, RT_LAYER_DENSE,    RT_LAYER_ATTENTION,
        RT_LAYER_DENSE,    RT_LAYER_ADD,       RT_LAYER_RESIDUAL, RT_LAYER_LAYERNORM,
        RT_LAYER_DENSE,    RT_LAYER_DENSE,     RT_LAYER_ADD};
    for (int i = 0; i < BLOCK_LAYERS; i++)
        out[i] = (struct rt_layer_spec){.kind = kinds[i], .act = RT_ACT_IDENTITY};
    out[2].units = 3 * b->heads * b->head_dim;
    out[3].heads = b->heads;
    out[4].units = b->D;
    out[8].units = b->mlp;
    out[8].act = RT_ACT_GELU;
    out[9].units = b->D;
}

/* A block(...) item into out (BLOCK_LAYERS); returns BLOCK_LAYERS or -1 (err set). */
static int parse_block(struct rt_layer_spec *out, const struct item *it, const char *shown,
                       int index, char *err, size_t cap)
{
    struct block_args b;
    int st = parse_block_args(&b, it);
    if (st == -2)
        snprintf(err, cap, "item %d '%s': width %d is not divisible by heads = %d", index, shown,
                 b.D, b.heads);
    else if (st < 0)
        snprintf(err, cap, "item %d '%s': expected block(WIDTH, heads=H[, mlp=M][, head_dim=HD])",
                 index, shown);
    if (st < 0) return -1;
    expand_block(out, &b);
    return BLOCK_LAYERS;
}

/* Splits "ITEM * N" into the item (text is cut) and N (1 without a star); -1 on a bad N. */
static int split_repeat(char *text, int *times)
{
    char *close = strrchr(text, ')'), *star = strrchr(text, '*');
    *times = 1;
    if (!star || (close && star < close)) return 0;
    *star = '\0';
    return parse_int(trim(star + 1), 1, RT_MAX_LAYERS, times);
}

/* One item into out (up to BLOCK_LAYERS layers, repeats not counted); returns how many
 * layers, or -1 with the reason in err. */
static int parse_item(struct rt_layer_spec *out, char *text, int index, char *err, size_t cap)
{
    char shown[ITEM_MAX];
    snprintf(shown, sizeof shown, "%s", trim(text));
    struct item it;
    struct rt_layer_spec *l = out;
    memset(l, 0, sizeof *l);
    l->act = RT_ACT_IDENTITY;
    if (split_item(&it, text) < 0) {
        snprintf(err, cap, "item %d '%s': expected NAME or NAME(ARGS)", index, shown);
        return -1;
    }
    if (strcmp(it.name, "block") == 0) return parse_block(out, &it, shown, index, err, cap);
    if (kind_of(it.name, &l->kind, &l->act) < 0) {
        snprintf(err, cap,
                 "item %d '%s': unknown layer kind '%s' (expected dense, conv, maxpool, "
                 "avgpool, flatten, dropout, relu, tanh, sigmoid, gelu, identity, embed, "
                 "posembed, layernorm, attention, residual, add, unembed, block)",
                 index, shown, it.name);
        return -1;
    }
    if (parse_args(l, &it) < 0) {
        snprintf(err, cap, "item %d '%s': expected %s", index, shown, usage(l->kind));
        return -1;
    }
    return 1;
}

/* Splits at commas outside parentheses; calls back for each item. */
static int split_items(char *text, char **items, int cap, int *n)
{
    int depth = 0;
    *n = 0;
    char *start = text;
    for (char *p = text;; p++) {
        if (*p == '(') depth++;
        if (*p == ')') depth--;
        if (depth < 0 || depth > 1) return -1;
        if ((*p == ',' && depth == 0) || *p == '\0') {
            int end = *p == '\0';
            if (*n == cap) return -2;
            *p = '\0';
            items[(*n)++] = start;
            start = p + 1;
            if (end) break;
        }
    }
    return depth == 0 ? 0 : -1;
}

static int all_integers(char **items, int n)
{
    for (int i = 0; i < n; i++) {
        int v;
        if (parse_int(trim(items[i]), LONG_MIN, LONG_MAX, &v) < 0) return 0;
    }
    return 1;
}

static int parse_widths(struct rt_model_spec *spec, char **items, int n, char *err, size_t cap)
{
    if (n < 2 || n > RT_MAX_LAYERS + 1) {
        snprintf(err, cap, "expected 2 to %d comma-separated layer widths, e.g. 784, 256, 10",
                 RT_MAX_LAYERS + 1);
        return -1;
    }
    int w[RT_MAX_LAYERS + 1];
    for (int i = 0; i < n; i++)
        if (parse_int(trim(items[i]), 1, 1 << 24, &w[i]) < 0) {
            snprintf(err, cap, "expected whole-number widths from 1 to 16777216");
            return -1;
        }
    rt_model_spec_widths(spec, w, n, spec->act);
    return 0;
}

void rt_model_spec_widths(struct rt_model_spec *spec, const int *widths, int n, enum rt_act act)
{
    spec->act = act;
    spec->input = (struct rt_shape){.rank = 1, .d = {widths[0]}};
    spec->n_layers = n - 1;
    for (int i = 0; i + 1 < n; i++)
        spec->layers[i] = (struct rt_layer_spec){.kind = RT_LAYER_DENSE,
                                                 .units = widths[i + 1],
                                                 .act = i + 2 < n ? act : RT_ACT_IDENTITY};
    spec->widths_form = 1;
}

void rt_model_spec_normalize(struct rt_model_spec *spec)
{
    int L = spec->n_layers, mlp = spec->input.rank == 1 && L >= 1 && L + 1 <= RT_MAX_LAYERS + 1;
    enum rt_act act = L > 1 ? spec->layers[0].act : spec->act;
    for (int i = 0; mlp && i < L; i++)
        mlp = spec->layers[i].kind == RT_LAYER_DENSE &&
              spec->layers[i].act == (i + 1 < L ? act : RT_ACT_IDENTITY);
    if (!mlp) return;
    spec->widths_form = 1;
    spec->act = act;
}

/* Folds an activation into a dense or conv layer written just before it. */
static int fold_act(struct rt_model_spec *spec, const struct rt_layer_spec *l)
{
    if (l->kind != RT_LAYER_ACT || spec->n_layers == 0) return 0;
    struct rt_layer_spec *prev = &spec->layers[spec->n_layers - 1];
    if ((prev->kind != RT_LAYER_DENSE && prev->kind != RT_LAYER_CONV2D) ||
        prev->act != RT_ACT_IDENTITY)
        return 0;
    prev->act = l->act;
    return 1;
}

/* Appends the n layers of one item to s; -1 when they do not fit. */
static int append_layers(struct rt_model_spec *s, const struct rt_layer_spec *l, int n)
{
    for (int k = 0; k < n; k++) {
        if (fold_act(s, &l[k])) continue;
        if (l[k].kind == RT_LAYER_ACT && l[k].act == RT_ACT_IDENTITY) continue; /* no effect */
        if (s->n_layers == RT_MAX_LAYERS) return -1;
        s->layers[s->n_layers++] = l[k];
    }
    return 0;
}

/* unembed takes its vocabulary and width from the first embed before it. */
static void tie_unembed(struct rt_model_spec *s)
{
    const struct rt_layer_spec *embed = NULL;
    for (int i = 0; i < s->n_layers; i++) {
        struct rt_layer_spec *l = &s->layers[i];
        if (l->kind == RT_LAYER_EMBED && !embed) embed = l;
        if (l->kind == RT_LAYER_UNEMBED && embed) {
            l->vocab = embed->vocab;
            l->units = embed->units;
        }
    }
}

static int parse_list(struct rt_model_spec *spec, char **items, int n, char *err, size_t cap)
{
    struct rt_model_spec s = *spec;
    s.n_layers = 0;
    for (int i = 0; i < n; i++) {
        struct rt_layer_spec l[BLOCK_LAYERS];
        int times, got;
        if (split_repeat(items[i], &times) < 0) {
            snprintf(err, cap, "item %d '%s': expected ITEM * N with N from 1 to %d", i,
                     trim(items[i]), RT_MAX_LAYERS);
            return -1;
        }
        if ((got = parse_item(l, items[i], i, err, cap)) < 0) return -1;
        for (int r = 0; r < times; r++)
            if (append_layers(&s, l, got) < 0) {
                snprintf(err, cap, "more than %d layers", RT_MAX_LAYERS);
                return -1;
            }
    }
    tie_unembed(&s);
    if (s.n_layers == 0) {
        snprintf(err, cap, "no layer with an effect: expected e.g. flatten, dense(10)");
        return -1;
    }
    s.widths_form = 0;
    s.input = (struct rt_shape){0};
    *spec = s;
    return 0;
}

int rt_model_spec_parse(struct rt_model_spec *spec, const char *text, char *err, size_t err_cap)
{
    size_t len = strlen(text);
    char *buf = malloc(len + 1), *items[RT_MAX_LAYERS * 2 + 1];
    if (!buf) {
        snprintf(err, err_cap, "out of memory");
        return -1;
    }
    memcpy(buf, text, len + 1);
    int n, st = split_items(buf, items, RT_MAX_LAYERS * 2 + 1, &n);
    if (st == -2)
        snprintf(err, err_cap, "more than %d layers", RT_MAX_LAYERS);
    else if (st < 0)
        snprintf(err, err_cap, "unbalanced or nested parentheses");
    else if (all_integers(items, n))
        st = parse_widths(spec, items, n, err, err_cap);
    else
        st = n > RT_MAX_LAYERS * 2 ? (snprintf(err, err_cap, "too many items"), -1)
                                   : parse_list(spec, items, n, err, err_cap);
    if (st == 0 && spec->n_layers > RT_MAX_LAYERS) {
        snprintf(err, err_cap, "%d layers: at most %d", spec->n_layers, RT_MAX_LAYERS);
        st = -1;
    }
    free(buf);
    return st < 0 ? -1 : 0;
}

/* ---- text ---- */

static int put_pair(char *buf, size_t cap, const int v[2])
{
    return v[0] == v[1] ? snprintf(buf, cap, "%d", v[0]) : snprintf(buf, cap, "%dx%d", v[0], v[1]);
}

static void window_text(char *buf, size_t cap, const struct rt_layer_spec *l, const char *name)
{
    char k[32], s[32], p[32];
    put_pair(k, sizeof k, l->kernel);
    put_pair(s, sizeof s, l->stride);
    put_pair(p, sizeof p, l->pad);
    int conv = l->kind == RT_LAYER_CONV2D;
    int default_stride = conv ? l->stride[0] == 1 && l->stride[1] == 1
                              : l->stride[0] == l->kernel[0] && l->stride[1] == l->kernel[1];
    int n = conv ? snprintf(buf, cap, "%s(%d, %s", name, l->units, k)
                 : snprintf(buf, cap, "%s(%s", name, k);
    if (n < 0 || (size_t)n >= cap) return;
    if (!default_stride) n += snprintf(buf + n, cap - (size_t)n, ", stride=%s", s);
    if ((size_t)n < cap && conv && (l->pad[0] || l->pad[1]))
        n += snprintf(buf + n, cap - (size_t)n, ", pad=%s", p);
    if ((size_t)n < cap) snprintf(buf + n, cap - (size_t)n, ")");
}

void rt_layer_spec_text(char *buf, size_t cap, const struct rt_layer_spec *l)
{
    char core[96];
    switch (l->kind) {
    case RT_LAYER_DENSE:
        snprintf(core, sizeof core, "dense(%d)", l->units);
        break;
    case RT_LAYER_CONV2D:
        window_text(core, sizeof core, l, "conv");
        break;
    case RT_LAYER_MAXPOOL2D:
        window_text(core, sizeof core, l, "maxpool");
        break;
    case RT_LAYER_AVGPOOL2D:
        window_text(core, sizeof core, l, "avgpool");
        break;
    case RT_LAYER_FLATTEN:
        snprintf(core, sizeof core, "flatten");
        break;
    case RT_LAYER_ACT:
        snprintf(core, sizeof core, "%s", rt_act_name(l->act));
        break;
    case RT_LAYER_DROPOUT:
        snprintf(core, sizeof core, "dropout(%g)", l->p);
        break;
    case RT_LAYER_EMBED:
        snprintf(core, sizeof core, "embed(%d, %d)", l->vocab, l->units);
        break;
    case RT_LAYER_ATTENTION:
        snprintf(core, sizeof core, "attention(%d)", l->heads);
        break;
    case RT_LAYER_POSEMBED:
    case RT_LAYER_LAYERNORM:
    case RT_LAYER_RESIDUAL:
    case RT_LAYER_ADD:
    case RT_LAYER_UNEMBED: {
        const struct rt_layer_ops *ops = rt_layer_kind_ops(l->kind);
        snprintf(core, sizeof core, "%s", ops->name);
        break;
    }
    default:
        snprintf(core, sizeof core, "?");
        break;
    }
    int fused =
        (l->kind == RT_LAYER_DENSE || l->kind == RT_LAYER_CONV2D) && l->act != RT_ACT_IDENTITY;
    if (fused)
        snprintf(buf, cap, "%s, %s", core, rt_act_name(l->act));
    else
        snprintf(buf, cap, "%s", core);
}

static int same_layer(const struct rt_layer_spec *a, const struct rt_layer_spec *b);

#define APPEND(buf, cap, used, ...)                                                                \
    ((used) += (size_t)snprintf((used) < (cap) ? (buf) + (used) : NULL,                            \
                                (used) < (cap) ? (cap) - (used) : 0, __VA_ARGS__))

/* 1 when layers i .. i + BLOCK_LAYERS of s are a block(...), whose arguments go to b. */
static int match_block(const struct rt_model_spec *s, int i, struct block_args *b)
{
    struct rt_layer_spec want[BLOCK_LAYERS];
    if (i + BLOCK_LAYERS > s->n_layers) return 0;
    const struct rt_layer_spec *l = &s->layers[i];
    if (l[2].kind != RT_LAYER_DENSE || l[3].kind != RT_LAYER_ATTENTION || l[3].heads < 1 ||
        l[2].units % (3 * l[3].heads))
        return 0;
    *b = (struct block_args){.D = l[4].units,
                             .heads = l[3].heads,
                             .mlp = l[8].units,
                             .head_dim = l[2].units / (3 * l[3].heads)};
    expand_block(want, b);
    for (int k = 0; k < BLOCK_LAYERS; k++)
        if (!same_layer(&want[k], &l[k])) return 0;
    return 1;
}

/* block(D, heads=H) with mlp and head_dim only where they are not the defaults. */
static void block_text(char *buf, size_t cap, const struct block_args *b, int times)
{
    size_t used = 0;
    APPEND(buf, cap, used, "block(%d, heads=%d", b->D, b->heads);
    if (b->mlp != 4 * b->D) APPEND(buf, cap, used, ", mlp=%d", b->mlp);
    if (b->head_dim * b->heads != b->D) APPEND(buf, cap, used, ", head_dim=%d", b->head_dim);
    APPEND(buf, cap, used, ")");
    if (times > 1) APPEND(buf, cap, used, " * %d", times);
}

/* snprintf at buf + used, which may be past cap: then only counts. */

size_t rt_model_spec_format(char *buf, size_t cap, const struct rt_model_spec *s)
{
    size_t used = 0;
    if (cap) buf[0] = '\0';
    if (s->widths_form) {
        APPEND(buf, cap, used, "%d", s->input.d[0]);
        for (int i = 0; i < s->n_layers; i++)
            APPEND(buf, cap, used, ", %d", s->layers[i].units);
        return used;
    }
    for (int i = 0; i < s->n_layers;) {
        char item[160];
        struct block_args b;
        int times = 1;
        if (match_block(s, i, &b)) {
            struct block_args next;
            while (match_block(s, i + times * BLOCK_LAYERS, &next) && !memcmp(&next, &b, sizeof b))
                times++;
            block_text(item, sizeof item, &b, times);
            i += times * BLOCK_LAYERS;
        } else {
            rt_layer_spec_text(item, sizeof item, &s->layers[i++]);
        }
        APPEND(buf, cap, used, "%s%s", used ? ", " : "", item);
    }
    return used;
}

void rt_model_spec_set_act(struct rt_model_spec *spec, enum rt_act act)
{
    spec->act = act;
    if (!spec->widths_form) return;
    for (int i = 0; i + 1 < spec->n_layers; i++)
        spec->layers[i].act = act;
}

void rt_model_sizes_text(char *buf, size_t cap, const struct rt_model_spec *s)
{
    if (!s->widths_form) {
        rt_model_spec_format(buf, cap, s);
        return;
    }
    size_t used = (size_t)snprintf(buf, cap, "%d", s->input.d[0]);
    for (int i = 0; i < s->n_layers && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "-%d", s->layers[i].units);
}

static int same_layer(const struct rt_layer_spec *a, const struct rt_layer_spec *b)
{
    if (a->kind != b->kind || a->act != b->act) return 0;
    switch (a->kind) {
    case RT_LAYER_DENSE:
        return a->units == b->units;
    case RT_LAYER_CONV2D:
        if (a->units != b->units || a->pad[0] != b->pad[0] || a->pad[1] != b->pad[1]) return 0;
        /* fall through */
    case RT_LAYER_MAXPOOL2D:
    case RT_LAYER_AVGPOOL2D:
        return a->kernel[0] == b->kernel[0] && a->kernel[1] == b->kernel[1] &&
               a->stride[0] == b->stride[0] && a->stride[1] == b->stride[1];
    case RT_LAYER_DROPOUT:
        return a->p == b->p;
    case RT_LAYER_EMBED:
    case RT_LAYER_UNEMBED:
        return a->vocab == b->vocab && a->units == b->units;
    case RT_LAYER_ATTENTION:
        return a->heads == b->heads;
    default:
        return 1;
    }
}

int rt_model_spec_same_layers(const struct rt_model_spec *a, const struct rt_model_spec *b)
{
    if (a->input.rank && b->input.rank && !rt_shape_equal(&a->input, &b->input)) return 0;
    if (a->n_layers != b->n_layers) return 0;
    for (int i = 0; i < a->n_layers; i++)
        if (!same_layer(&a->layers[i], &b->layers[i])) return 0;
    return 1;
}

int rt_model_spec_narrower(const struct rt_model_spec *a, const struct rt_model_spec *b)
{
    if (a->input.rank && b->input.rank && !rt_shape_equal(&a->input, &b->input)) return 0;
    if (a->n_layers != b->n_layers) return 0;
    for (int i = 0; i < a->n_layers; i++) {
        struct rt_layer_spec l = a->layers[i];
        int last = i + 1 == a->n_layers;
        if (l.units > b->layers[i].units || (last && l.units != b->layers[i].units)) return 0;
        if (l.heads > b->layers[i].heads) return 0; /* attention heads pruned */
        l.units = b->layers[i].units;
        l.heads = b->layers[i].heads;
        if (!same_layer(&l, &b->layers[i])) return 0;
    }
    return 1;
}

/* ---- shapes ---- */

/* The checks that span layers: every add closes a residual and gets the shape the
 * residual kept, every residual is closed, an unembed is tied to an embed before it of its
 * vocabulary and width. `shapes` (n_layers) are the inferred outputs. */
static int check_links(const struct rt_model_spec *spec, const struct rt_shape *shapes)
{
    int open[RT_MAX_LAYERS], depth = 0, embed = -1;
    for (int i = 0; i < spec->n_layers; i++) {
        const struct rt_layer_spec *l = &spec->layers[i];
        char a[64], b[64];
        if (l->kind == RT_LAYER_RESIDUAL) open[depth++] = i;
        if (l->kind == RT_LAYER_EMBED && embed < 0) embed = i;
        if (l->kind == RT_LAYER_ADD) {
            if (depth == 0)
                return rt_errorf(RT_ERR_SHAPE, "model: layer %d add: no residual before it to add",
                                 i);
            int r = open[--depth];
            rt_shape_text(a, sizeof a, &shapes[i]);
            rt_shape_text(b, sizeof b, r ? &shapes[r - 1] : &spec->input);
            if (!rt_shape_equal(&shapes[i], r ? &shapes[r - 1] : &spec->input))
                return rt_errorf(RT_ERR_SHAPE,
                                 "model: layer %d add: the branch gives %s but the residual at "
                                 "layer %d kept %s",
                                 i, a, r, b);
        }
        if (l->kind == RT_LAYER_UNEMBED && (embed < 0 || spec->layers[embed].vocab != l->vocab ||
                                            spec->layers[embed].units != l->units))
            return rt_errorf(RT_ERR_SHAPE,
                             "model: layer %d unembed: expected an embed before it to tie to", i);
    }
    if (depth)
        return rt_errorf(RT_ERR_SHAPE, "model: the residual at layer %d is never closed by add",
                         open[depth - 1]);
    return RT_OK;
}

int rt_model_spec_infer(const struct rt_model_spec *spec, struct rt_shape *out)
{
    struct rt_shape shapes[RT_MAX_LAYERS];
    if (spec->n_layers < 1 || spec->n_layers > RT_MAX_LAYERS)
        return rt_errorf(RT_ERR_INVAL, "model: %d layers, expected 1 to %d", spec->n_layers,
                         RT_MAX_LAYERS);
    if (spec->input.rank != 1 && spec->input.rank != 3)
        return rt_errorf(RT_ERR_INVAL, "model: the input shape is not known");
    for (int k = 0; k < spec->input.rank; k++)
        if (spec->input.d[k] < 1 || spec->input.d[k] > (1 << 24))
            return rt_errorf(RT_ERR_INVAL, "model: input size %d: expected 1 to 2^24",
                             spec->input.d[k]);
    struct rt_shape in = spec->input;
    for (int i = 0; i < spec->n_layers; i++) {
        struct rt_layer l;
        char err[256] = "", text[160], a[64], b[64];
        memset(&l, 0, sizeof l);
        l.spec = spec->layers[i];
        l.in_shape = in;
        l.ops = rt_layer_kind_ops(l.spec.kind);
        rt_layer_spec_text(text, sizeof text, &l.spec);
        rt_shape_text(a, sizeof a, &in);
        if (!l.ops) return rt_errorf(RT_ERR_INVAL, "model: layer %d: unknown kind", i);
        if (l.ops->infer(&l, err, sizeof err) < 0)
            return rt_errorf(RT_ERR_SHAPE, "model: layer %d %s on input %s: %s", i, text, a, err);
        int64_t n = rt_shape_size(&l.out_shape);
        rt_shape_text(b, sizeof b, &l.out_shape);
        if (n < 1 || n > (1 << 28))
            return rt_errorf(RT_ERR_SHAPE,
                             "model: layer %d %s on input %s gives %s: expected 1 to 2^28 values",
                             i, text, a, b);
        in = l.out_shape;
        shapes[i] = in;
        if (out) out[i] = in;
    }
    return check_links(spec, shapes);
}

/* The last layer's output shape; rank 0 when the spec does not infer. */
static struct rt_shape last_shape(const struct rt_model_spec *spec)
{
    struct rt_shape shapes[RT_MAX_LAYERS];
    if (rt_model_spec_infer(spec, shapes) != RT_OK) {
        rt_error_clear();
        return (struct rt_shape){0};
    }
    return shapes[spec->n_layers - 1];
}

int rt_model_spec_outputs(const struct rt_model_spec *spec)
{
    struct rt_shape s = last_shape(spec);
    return s.rank == 2 ? s.d[1] : (int)rt_shape_size(&s);
}

int rt_model_spec_positions(const struct rt_model_spec *spec)
{
    struct rt_shape s = last_shape(spec);
    return s.rank == 0 ? 0 : s.rank == 2 ? s.d[0] : 1;
}

int rt_model_spec_bind_input(struct rt_model_spec *spec, const struct rt_shape *data,
                             const char *what)
{
    if (spec->input.rank == 0) {
        spec->input = *data;
        return RT_OK;
    }
    if (rt_shape_size(&spec->input) == rt_shape_size(data)) return RT_OK;
    char a[64], b[64];
    rt_shape_text(a, sizeof a, &spec->input);
    rt_shape_text(b, sizeof b, data);
    return rt_errorf(RT_ERR_SHAPE, "%s: the model's input %s does not fit the data's samples %s",
                     what, a, b);
}
