/* distill.c - the frozen teacher and its cached outputs (distill.h).
 *
 * Cache rows are laid out rank-major: the rows of rank q (ids q, q + world, ...) occupy
 * cache rows offsets[q] .. offsets[q+1] - 1 in id order, so row id lives at
 * offsets[id % world] + id / world. Each rank's own block is contiguous, which makes the
 * exchange one broadcast per chunk of a block. Under shuffle = shard only the rank's own
 * block exists (offsets all 0 for it). */
#include "ringtrain/distill.h"
#include "ringtrain/ckpt.h"
#include "ringtrain/model_file.h"
#include "ringtrain/status.h"

#include <stdlib.h>
#include <string.h>

#define EXCHANGE_BYTES ((size_t)4 << 20) /* per broadcast of the exchange */

int rt_teacher_cache_parse(const char *name, enum rt_teacher_cache *out)
{
    static const char *names[] = {"off", "on", "memory", "file"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (enum rt_teacher_cache)i;
            return 0;
        }
    return -1;
}

const char *rt_teacher_cache_name(enum rt_teacher_cache c)
{
    static const char *names[] = {"off", "on", "memory", "file"};
    return (unsigned)c < 4 ? names[c] : "?";
}

static int output_width(const struct rt_teacher *t)
{
    return t->model.outputs * t->model.positions; /* a row of a sequence model: (P, K) */
}

int rt_teacher_adopt(struct rt_teacher *t, struct rt_model *m, int rank, int world)
{
    memset(t, 0, sizeof *t);
    t->model = *m; /* the struct holds no pointer into itself */
    memset(m, 0, sizeof *m);
    t->rank = rank;
    t->world = world;
    int st = rt_model_use_rowwise(&t->model, 1);
    if (st != RT_OK) rt_teacher_free(t);
    return st;
}

static int read_spec(const char *path, enum rt_teacher_source from, struct rt_model_spec *spec)
{
    if (from == RT_TEACHER_FILE) return rt_model_file_spec(path, spec);
    int found = 0;
    RT_TRY(rt_ckpt_read_teacher_spec(path, spec, &found));
    return found ? RT_OK : rt_errorf(RT_ERR_FORMAT, "%s: no /distill/teacher", path);
}

int rt_teacher_load(struct rt_teacher *t, rt_comm_t *comm, const char *path,
                    enum rt_teacher_source from, int max_batch)
{
    int rank = rt_comm_rank(comm);
    struct rt_model_spec spec;
    memset(&spec, 0, sizeof spec);
    struct rt_model m;
    memset(&m, 0, sizeof m);
    RT_TRY(rt_comm_agree(comm, rank == 0 ? read_spec(path, from, &spec) : RT_OK));
    rt_comm_bcast(comm, &spec, sizeof spec, 0);
    int st = rt_model_init(&m, &spec, max_batch);
    if (st == RT_OK && rank == 0)
        st =
            from == RT_TEACHER_FILE ? rt_model_file_load(path, &m) : rt_ckpt_read_teacher(path, &m);
    st = rt_comm_agree(comm, st);
    if (st != RT_OK) {
        rt_model_free(&m);
        return st;
    }
    rt_comm_bcast(comm, m.params, m.n_params * sizeof(float), 0);
    return rt_comm_agree(comm, rt_teacher_adopt(t, &m, rank, rt_comm_size(comm)));
}

/* Rows of rank q among n: ids q, q + world, ... below n. */
static int64_t rank_rows(int64_t n, int q, int world)
{
    return n > q ? (n - q + world - 1) / world : 0;
}

static int64_t cache_row(const struct rt_teacher *t, int64_t id)
{
    if (t->shard) return id / t->world;
    return t->offsets[id % t->world] + id / t->world;
}

double rt_teacher_cache_bytes(const struct rt_teacher *t, int64_t rows, enum rt_shuffle shuffle)
{
    int64_t n = shuffle == RT_SHUFFLE_SHARD ? rank_rows(rows, t->rank, t->world) : rows;
    return (double)n * output_width(t) * (double)sizeof(float);
}

/* The index and the staging buffer, sized for the model's largest batch. */
static int alloc_cache_index(struct rt_teacher *t, int64_t rows, enum rt_shuffle shuffle)
{
    t->shard = shuffle == RT_SHUFFLE_SHARD;
    t->offsets = calloc((size_t)t->world + 1, sizeof *t->offsets);
    t->index = malloc((size_t)t->model.max_batch * sizeof *t->index);
    t->out = malloc((size_t)t->model.max_batch * (size_t)output_width(t) * sizeof *t->out);
    if (!t->offsets || !t->index || !t->out)
        return rt_errorf(RT_ERR_NOMEM, "teacher cache index for %lld rows", (long long)rows);
    for (int q = 0; q < t->world; q++)
        t->offsets[q + 1] = t->offsets[q] + (t->shard ? 0 : rank_rows(rows, q, t->world));
    return RT_OK;
}

/* This rank's own rows, once each, in a shard-order pass over the training set. */
static int compute_own_rows(struct rt_teacher *t, struct rt_dataset *d)
{
    int K = output_width(t);
    int st = rt_dataset_begin_epoch(d, 0, 0);
    for (int64_t k = 0; st == RT_OK && k < rt_dataset_steps_per_epoch(d); k++) {
        struct rt_batch b;
        st = rt_dataset_next(d, &b);
        if (st != RT_OK) break;
        const float *y = rt_model_forward(&t->model, b.x, b.local_rows);
        for (int i = 0; st == RT_OK && i < b.local_rows; i++)
            st = rt_rowstore_put(t->cache, cache_row(t, b.ids[i]), y + (size_t)i * K, 1);
    }
    return st;
}

/* Every rank's block to every other rank, a chunk per broadcast. Every rank makes the same
 * broadcasts whatever failed, and the status is agreed at the end. */
static int exchange_blocks(struct rt_teacher *t, rt_comm_t *comm, int st)
{
    int K = output_width(t);
    int64_t chunk = (int64_t)(EXCHANGE_BYTES / ((size_t)K * sizeof(float)));
    chunk = chunk > 0 ? chunk : 1;
    float *buf = malloc((size_t)chunk * (size_t)K * sizeof *buf);
    st = rt_comm_agree(comm, buf ? st : rt_errorf(RT_ERR_NOMEM, "teacher cache exchange"));
    if (st != RT_OK) {
        free(buf);
        return st;
    }
    for (int q = 0; q < t->world; q++)
        for (int64_t first = t->offsets[q]; first < t->offsets[q + 1]; first += chunk) {
            int64_t n = t->offsets[q + 1] - first < chunk ? t->offsets[q + 1] - first : chunk;
            if (q == t->rank && st == RT_OK) st = rt_rowstore_read(t->cache, first, buf, n);
            rt_comm_bcast(comm, buf, (size_t)n * (size_t)K * sizeof *buf, q);
            if (q != t->rank && st == RT_OK) st = rt_rowstore_put(t->cache, first, buf, n);
        }
    free(buf);
    return rt_comm_agree(comm, st);
}

int rt_teacher_cache_build(struct rt_teacher *t, rt_comm_t *comm, const char *source,
                           const struct rt_data_opts *o, enum rt_rowstore_kind kind,
                           const char *file)
{
    struct rt_data_opts po = *o;
    po.shuffle = RT_SHUFFLE_SHARD; /* rank r reads rows r, r + world, ...: its own */
    struct rt_dataset *d = NULL;
    int st = rt_dataset_open(&d, source, &po);
    if (st == RT_OK) {
        int64_t rows = rt_dataset_info(d)->rows;
        st = alloc_cache_index(t, rows, o->shuffle);
        int64_t held = t->shard ? rank_rows(rows, t->rank, t->world) : rows;
        if (st == RT_OK)
            st = rt_rowstore_open(&t->cache, kind, file, held, output_width(t), t->model.max_batch);
    }
    st = rt_comm_agree(comm, st);
    if (st == RT_OK) st = rt_comm_agree(comm, compute_own_rows(t, d));
    rt_dataset_close(d);
    if (st == RT_OK && !t->shard) st = exchange_blocks(t, comm, st);
    if (st != RT_OK) {
        rt_rowstore_close(t->cache);
        t->cache = NULL;
    }
    return st;
}

int rt_teacher_outputs(struct rt_teacher *t, const struct rt_batch *b, const float **out)
{
    if (!t->cache) {
        *out = rt_model_forward(&t->model, b->x, b->local_rows);
        return RT_OK;
    }
    for (int i = 0; i < b->local_rows; i++)
        t->index[i] = cache_row(t, b->ids[i]);
    *out = t->out;
    return rt_rowstore_gather(t->cache, t->index, b->local_rows, t->out);
}

void rt_teacher_free(struct rt_teacher *t)
{
    rt_rowstore_close(t->cache);
    rt_model_free(&t->model);
    free(t->offsets);
    free(t->index);
    free(t->out);
    memset(t, 0, sizeof *t);
}
