/* buckets.c - gradient buckets averaged while backprop goes on (see buckets.h).
 *
 * Ordering is the whole game: every rank must start the same allreduces in the same order,
 * whatever the timing of its own backward pass. So buckets are started strictly in bucket
 * order, and a bucket starts only when every layer it touches is ready; the thread (or the
 * request queue) then runs them one after another in that order. */
#include "ringtrain/buckets.h"
#include "ringtrain/shard.h"
#include "ringtrain/status.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bucket {
    size_t lo, hi;               /* range of grads */
    size_t plo, pn;              /* sparse: its kept coordinates, idx[plo .. plo + pn) */
    size_t *part;                /* sparse: (N + 1) cut of them at the dense shards' ends */
    size_t state_off;            /* sharded: where this rank's shard starts in its state */
    int first_layer, last_layer; /* layers whose blocks intersect [lo, hi) */
    int reduce_scatter;          /* sharded and the ring's: reduce-scatter, not allreduce */
    rt_comm_req *req;            /* RT_OVERLAP_POLL: in flight */
    rt_comm_req *gather;         /* sharded: the parameters' allgather in flight */
};

struct rt_buckets {
    rt_comm_t *comm;
    float *grads;
    float scale;
    enum rt_overlap overlap;
    int n_layers, n_buckets;
    struct bucket *bucket; /* (n_buckets) owned */
    unsigned char *ready;  /* (n_layers) owned: layer finished backward this step */
    int started, returned; /* buckets started / handed back this step */
    int completed;         /* RT_OVERLAP_POLL: buckets whose request has completed */
    /* RT_OVERLAP_THREAD */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int reduced; /* buckets the thread has finished this step */
    int quit, has_thread;
    /* Sparse mode (rt_buckets_set_mask): only kept coordinates travel, gathered into
     * packed in bucket order; everyone knows the mask, so no index is sent. */
    int sparse;
    size_t n;      /* floats in grads */
    uint32_t *idx; /* (n) owned, allocated by the first rt_buckets_set_mask */
    float *packed; /* (n) owned, same */
    size_t *parts; /* (n_buckets (N + 1)) owned, same: the buckets' cuts */
    /* Sharded mode (rt_buckets_set_sharded): gradients are reduce-scattered, parameters
     * allgathered; gathers[0 .. n_gathers) are in issue order (last bucket first). */
    int sharded, rank, size;
    float *params;
    size_t shard_elems;
    int n_gathers, gathered; /* gathers started this round, completed so far */
};

static const char *const overlap_names[] = {"thread", "poll", "off"};

int rt_overlap_parse(const char *name, enum rt_overlap *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, overlap_names[i]) == 0) {
            *out = (enum rt_overlap)i;
            return 0;
        }
    return -1;
}

const char *rt_overlap_name(enum rt_overlap o)
{
    return (unsigned)o < 3 ? overlap_names[o] : "?";
}

int rt_sparse_comm_parse(const char *name, enum rt_sparse_comm *out)
{
    if (strcmp(name, "auto") == 0)
        *out = RT_SPARSE_AUTO;
    else if (strcmp(name, "on") == 0)
        *out = RT_SPARSE_ON;
    else if (strcmp(name, "off") == 0)
        *out = RT_SPARSE_OFF;
    else
        return -1;
    return 0;
}

const char *rt_sparse_comm_name(enum rt_sparse_comm s)
{
    return s == RT_SPARSE_ON ? "on" : s == RT_SPARSE_OFF ? "off" : "auto";
}

static int layer_of(const size_t *offset, int n_layers, size_t pos)
{
    int i = n_layers - 1;
    while (i > 0 && offset[i] > pos)
        i--;
    return i;
}

/* Cuts [0, n) from the end into pieces of cap floats (the lowest one shorter). Layers
 * decide only when a piece is ready, not where it ends: equal pieces keep the ring's
 * segments full and the layout independent of the architecture's quirks. */
static int lay_out(struct rt_buckets *b, size_t n, const size_t *offset, size_t cap)
{
    /* Every bucket may be in flight at once (poll mode starts each as its layers finish),
     * and the request queue has RT_MAX_INFLIGHT slots: a small bucket size on a
     * large model is raised until the buckets fit. */
    if (n > 0 && (n + cap - 1) / cap > RT_MAX_BUCKETS)
        cap = (n + RT_MAX_BUCKETS - 1) / RT_MAX_BUCKETS;
    size_t nb = n == 0 ? 0 : (n + cap - 1) / cap;
    b->bucket = calloc(nb ? nb : 1, sizeof *b->bucket);
    if (!b->bucket)
        return rt_errorf(RT_ERR_NOMEM, "gradient buckets: cannot allocate %zu buckets", nb);
    for (size_t k = 0; k < nb; k++) {
        struct bucket *bk = &b->bucket[k];
        bk->hi = n - k * cap;
        bk->lo = bk->hi > cap ? bk->hi - cap : 0;
        bk->first_layer = layer_of(offset, b->n_layers, bk->lo);
        bk->last_layer = layer_of(offset, b->n_layers, bk->hi - 1);
    }
    b->n_buckets = (int)nb;
    return RT_OK;
}

/* The gradient reduction of a bucket: its range of grads, or (sparse) its kept coordinates
 * gathered into packed and cut where the dense shards end, so that shard = on and off add
 * the same numbers in the same order. Called once the bucket's layers are final. */
static struct rt_coll_args bucket_args(struct rt_buckets *b, const struct bucket *bk)
{
    struct rt_coll_args a = {bk->reduce_scatter ? RT_OP_REDUCE_SCATTER : RT_OP_ALLREDUCE,
                             RT_ALLREDUCE_AUTO,
                             b->grads + bk->lo,
                             bk->hi - bk->lo,
                             b->scale,
                             NULL,
                             RT_TYPE_F32};
    if (!b->sparse) return a;
    const uint32_t *idx = b->idx + bk->plo;
    float *dst = b->packed + bk->plo;
    for (size_t j = 0; j < bk->pn; j++)
        dst[j] = b->grads[idx[j]];
    a.buf = dst;
    a.n = bk->pn;
    a.part = bk->part;
    return a;
}

/* The coordinates of a sparse bucket whose sum this rank holds after the reduction: all of
 * them, or its own part after a reduce-scatter. */
static void own_packed(const struct rt_buckets *b, const struct bucket *bk, size_t *j0, size_t *j1)
{
    *j0 = 0;
    *j1 = bk->pn;
    if (bk->reduce_scatter) {
        *j0 = bk->part[b->rank];
        *j1 = bk->part[b->rank + 1];
    }
}

/* Sparse: scatters the averaged kept coordinates back. Pruned ones keep this rank's own
 * values: the trainer masks gradients in any case (dense communication too), and zeroing
 * them here as well doubled the cost of a 90%-sparse bucket. */
static void bucket_finish(struct rt_buckets *b, const struct bucket *bk)
{
    if (!b->sparse) return;
    const uint32_t *idx = b->idx + bk->plo;
    const float *src = b->packed + bk->plo;
    size_t j0, j1;
    own_packed(b, bk, &j0, &j1);
    for (size_t j = j0; j < j1; j++)
        b->grads[idx[j]] = src[j];
}

/* The thread's allreduce. A blocking MPI wait spins, and a spinning thread on a node
 * whose cores are all computing steals the core from backprop (measured on BigModel, 2
 * ranks on 2 cores: 5864 samples/s with MPI's blocking wait against 6861 polling from the
 * compute thread). So the thread advances the request and naps between attempts: the
 * ring's segments take ~100 us each, and a 20 us nap costs it little. */
static void reduce_politely(struct rt_buckets *b, const struct bucket *bk)
{
    struct rt_coll_args a = bucket_args(b, bk);
    rt_comm_label_next(b->comm, (int)(bk - b->bucket));
    rt_comm_req *req = rt_comm_start(b->comm, &a);
    const struct timespec nap = {0, 20000};
    double t0 = rt_comm_wtime(), timeout = rt_comm_timeout(b->comm);
    while (!rt_comm_test(b->comm, req)) {
        nanosleep(&nap, NULL);
        if (timeout > 0 && rt_comm_wtime() - t0 > timeout)
            rt_comm_abort(b->comm, 1,
                          "hang: the communication thread waited %.1f s in the allreduce of "
                          "bucket %d (%zu floats); ending the job ([comm] timeout_s = %g)",
                          rt_comm_wtime() - t0, (int)(bk - b->bucket), a.n, timeout);
    }
}

static void *comm_thread_main(void *arg)
{
    struct rt_buckets *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->quit && b->reduced >= b->started)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->quit) break;
        struct bucket *bk = &b->bucket[b->reduced];
        pthread_mutex_unlock(&b->mu);
        reduce_politely(b, bk);
        pthread_mutex_lock(&b->mu);
        b->reduced++;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int rt_buckets_init(struct rt_buckets **out, rt_comm_t *c, float *grads, size_t n,
                    const size_t *offset, int n_layers, size_t bucket_bytes,
                    enum rt_overlap overlap, float scale)
{
    *out = NULL;
    if (n_layers < 1 || bucket_bytes < sizeof(float))
        return rt_errorf(RT_ERR_INVAL, "gradient buckets: %d layers, %zu-byte buckets", n_layers,
                         bucket_bytes);
    struct rt_buckets *b = calloc(1, sizeof *b);
    if (!b) return rt_errorf(RT_ERR_NOMEM, "gradient buckets: out of memory");
    b->comm = c;
    b->rank = rt_comm_rank(c);
    b->size = rt_comm_size(c);
    b->grads = grads;
    b->n = n;
    b->scale = scale;
    b->n_layers = n_layers;
    /* One rank has nothing to overlap; an MPI without SERIALIZED cannot host the thread. */
    if (rt_comm_size(c) == 1) overlap = RT_OVERLAP_OFF;
    if (overlap == RT_OVERLAP_THREAD && !rt_comm_threads_ok(c)) overlap = RT_OVERLAP_POLL;
    b->overlap = overlap;
    size_t cap = overlap == RT_OVERLAP_OFF ? (n ? n : 1) : bucket_bytes / sizeof(float);
    b->ready = calloc((size_t)n_layers, 1);
    int st = b->ready ? lay_out(b, n, offset, cap)
                      : rt_errorf(RT_ERR_NOMEM, "gradient buckets: out of memory");
    if (st == RT_OK && overlap == RT_OVERLAP_THREAD) {
        pthread_mutex_init(&b->mu, NULL);
        pthread_cond_init(&b->cv, NULL);
        b->has_thread = pthread_create(&b->thread, NULL, comm_thread_main, b) == 0;
        if (!b->has_thread)
            st = rt_errorf(RT_ERR_NOMEM, "gradient buckets: cannot start the comm thread");
    }
    if (st != RT_OK) {
        rt_buckets_free(b);
        return st;
    }
    *out = b;
    return RT_OK;
}

/* Ends the communication thread (RT_OVERLAP_THREAD), if any; the buckets then poll. */
static void stop_thread(struct rt_buckets *b)
{
    if (b->has_thread) {
        pthread_mutex_lock(&b->mu);
        b->quit = 1;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
        b->has_thread = 0;
    }
    if (b->overlap == RT_OVERLAP_THREAD) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        b->overlap = RT_OVERLAP_POLL;
    }
}

void rt_buckets_free(struct rt_buckets *b)
{
    if (!b) return;
    rt_buckets_wait_gather(b, -1); /* every rank frees at the same point */
    stop_thread(b);
    free(b->bucket);
    free(b->ready);
    free(b->idx);
    free(b->packed);
    free(b->parts);
    free(b);
}

/* Sharded: a bucket the ring would allreduce is reduce-scattered instead (the same
 * additions); one that AUTO gives recursive doubling (or MPI) is allreduced as unsharded, so
 * shard = on and off agree bit for bit whatever the algorithm. Either way a rank updates its
 * shard only, and every bucket's parameters are allgathered. */
static void choose_operations(struct rt_buckets *b)
{
    enum rt_allreduce_algo algo = rt_comm_algorithm(b->comm);
    for (int k = 0; k < b->n_buckets; k++) {
        struct bucket *bk = &b->bucket[k];
        size_t n = b->sparse ? bk->pn : bk->hi - bk->lo;
        bk->reduce_scatter =
            b->sharded && rt_comm_allreduce_pick(b->comm, algo, n) == RT_ALLREDUCE_RING;
    }
}

/* This rank's shard of bucket k in dense coordinates, and of rank r's state. */
static void shard_of(const struct rt_buckets *b, const struct bucket *bk, int r, size_t *lo,
                     size_t *len)
{
    size_t n = bk->hi - bk->lo;
    *lo = bk->lo + rt_shard_off(n, b->size, r);
    *len = rt_shard_len(n, b->size, r);
}

int rt_buckets_set_sharded(struct rt_buckets *b, float *params)
{
    /* The parameter gathers and the updates between them are driven from the compute
     * thread; a comm thread would only add a second MPI caller. */
    stop_thread(b);
    b->sharded = 1;
    b->params = params;
    b->shard_elems = 0;
    for (int k = 0; k < b->n_buckets; k++) {
        size_t lo, len;
        shard_of(b, &b->bucket[k], b->rank, &lo, &len);
        b->bucket[k].state_off = b->shard_elems;
        b->shard_elems += len;
    }
    choose_operations(b);
    return RT_OK;
}

size_t rt_buckets_shard_elems(const struct rt_buckets *b)
{
    return b->sharded ? b->shard_elems : b->n;
}

void rt_buckets_view(const struct rt_buckets *b, int k, struct rt_bucket_view *v)
{
    const struct bucket *bk = &b->bucket[k];
    v->lo = bk->lo;
    v->hi = bk->hi;
    v->own_lo = bk->lo;
    v->own_hi = bk->hi;
    v->state_off = bk->lo;
    if (!b->sharded) return;
    size_t len;
    shard_of(b, bk, b->rank, &v->own_lo, &len);
    v->own_hi = v->own_lo + len;
    v->state_off = bk->state_off;
}

void rt_buckets_piece(const struct rt_buckets *b, int k, int r, struct rt_shard_piece *p)
{
    size_t len, off = 0;
    for (int j = 0; j < k; j++) {
        size_t lo;
        shard_of(b, &b->bucket[j], r, &lo, &len);
        off += len;
    }
    shard_of(b, &b->bucket[k], r, &p->lo, &p->len);
    p->state_off = off;
}

/* ---- Parameter allgathers (sharded) -------------------------------------------------------
 * Every bucket's, issued from the bucket of the first layers to that of the last, the
 * order the next forward needs them in; requests complete in FIFO order, so "bucket k's
 * parameters are here" is "the first i gathers are done". Sparse buckets move their kept
 * coordinates, packed where their gradients travelled (free again once those were scattered back).
 */

static struct rt_coll_args gather_args(struct rt_buckets *b, const struct bucket *bk)
{
    struct rt_coll_args a = {
        RT_OP_ALLGATHER, RT_ALLREDUCE_AUTO, b->params + bk->lo, bk->hi - bk->lo, 1.0f, NULL,
        RT_TYPE_F32};
    if (!b->sparse) return a;
    const uint32_t *idx = b->idx + bk->plo;
    float *dst = b->packed + bk->plo;
    for (size_t j = bk->part[b->rank]; j < bk->part[b->rank + 1]; j++)
        dst[j] = b->params[idx[j]];
    a.buf = dst;
    a.n = bk->pn;
    a.part = bk->part;
    return a;
}

static void gather_finish(struct rt_buckets *b, const struct bucket *bk)
{
    if (!b->sparse) return;
    const uint32_t *idx = b->idx + bk->plo;
    const float *src = b->packed + bk->plo;
    for (size_t j = 0; j < bk->pn; j++)
        b->params[idx[j]] = src[j];
}

void rt_buckets_start_gather(struct rt_buckets *b)
{
    if (!b->sharded) return;
    rt_buckets_wait_gather(b, -1); /* one round at a time */
    b->n_gathers = b->gathered = 0;
    for (int k = b->n_buckets - 1; k >= 0; k--) {
        struct bucket *bk = &b->bucket[k];
        struct rt_coll_args a = gather_args(b, bk);
        rt_comm_label_next(b->comm, k);
        if (b->overlap == RT_OVERLAP_OFF) {
            rt_comm_run(b->comm, &a);
            gather_finish(b, bk);
            continue;
        }
        bk->gather = rt_comm_start(b->comm, &a);
        b->n_gathers++;
    }
}

/* Gather i (in issue order) is bucket n_buckets - 1 - i. */
static struct bucket *gather_bucket(struct rt_buckets *b, int i)
{
    return &b->bucket[b->n_buckets - 1 - i];
}

/* How many gathers, in issue order, layer needs: first_layer rises along that order. */
static int gathers_needed(struct rt_buckets *b, int layer)
{
    int need = 0;
    while (need < b->n_gathers && (layer < 0 || gather_bucket(b, need)->first_layer <= layer))
        need++;
    return need;
}

void rt_buckets_wait_gather(struct rt_buckets *b, int layer)
{
    if (!b->sharded) return;
    int need = gathers_needed(b, layer);
    while (b->gathered < b->n_gathers) {
        struct bucket *bk = gather_bucket(b, b->gathered);
        if (b->gathered < need)
            rt_comm_wait(b->comm, bk->gather);
        else if (!rt_comm_test(b->comm, bk->gather))
            break; /* the rest keep moving while the layer computes */
        gather_finish(b, bk);
        b->gathered++;
    }
}

int rt_buckets_reserve_sparse(struct rt_buckets *b)
{
    if (b->idx) return RT_OK;
    b->idx = malloc((b->n ? b->n : 1) * sizeof *b->idx);
    b->packed = malloc((b->n ? b->n : 1) * sizeof *b->packed);
    b->parts = malloc(((size_t)b->n_buckets + 1) * ((size_t)b->size + 1) * sizeof *b->parts);
    if (!b->idx || !b->packed || !b->parts)
        return rt_errorf(RT_ERR_NOMEM, "sparse gradients: cannot allocate %zu indices", b->n);
    return RT_OK;
}

int rt_buckets_set_mask(struct rt_buckets *b, const uint8_t *keep)
{
    rt_buckets_wait_gather(b, -1); /* the packing changes under the gathers */
    b->sparse = 0;
    choose_operations(b);
    if (!keep) return RT_OK;
    if (b->n > UINT32_MAX)
        return rt_errorf(RT_ERR_INVAL, "sparse gradients: %zu parameters exceed 32-bit indices",
                         b->n);
    RT_TRY(rt_buckets_reserve_sparse(b));
    /* Buckets are laid out from the end; kept indices are listed bucket by bucket, and
     * each bucket's list is cut where the dense shards end. */
    size_t p = 0;
    for (int k = 0; k < b->n_buckets; k++) {
        struct bucket *bk = &b->bucket[k];
        size_t len = bk->hi - bk->lo;
        bk->plo = p;
        bk->part = b->parts + (size_t)k * ((size_t)b->size + 1);
        for (int j = 0; j < b->size; j++) {
            bk->part[j] = p - bk->plo;
            size_t end = bk->lo + rt_shard_off(len, b->size, j) + rt_shard_len(len, b->size, j);
            for (size_t i = bk->lo + rt_shard_off(len, b->size, j); i < end; i++)
                if (keep[i]) b->idx[p++] = (uint32_t)i;
        }
        bk->pn = p - bk->plo;
        bk->part[b->size] = bk->pn;
    }
    b->sparse = 1;
    choose_operations(b);
    return RT_OK;
}

size_t rt_buckets_wire_floats(const struct rt_buckets *b)
{
    size_t n = 0;
    for (int k = 0; k < b->n_buckets; k++)
        n += b->sparse ? b->bucket[k].pn : b->bucket[k].hi - b->bucket[k].lo;
    return n;
}

int rt_buckets_count(const struct rt_buckets *b)
{
    return b->n_buckets;
}

enum rt_overlap rt_buckets_overlap(const struct rt_buckets *b)
{
    return b->overlap;
}

void rt_buckets_begin(struct rt_buckets *b)
{
    rt_buckets_wait_gather(b, -1); /* the updates of this step write the parameters */
    memset(b->ready, 0, (size_t)b->n_layers);
    b->returned = b->completed = 0;
    if (b->overlap == RT_OVERLAP_THREAD) {
        pthread_mutex_lock(&b->mu);
        b->started = b->reduced = 0;
        pthread_mutex_unlock(&b->mu);
    } else {
        b->started = 0;
    }
}

static int bucket_ready(const struct rt_buckets *b, const struct bucket *bk)
{
    for (int i = bk->first_layer; i <= bk->last_layer; i++)
        if (!b->ready[i]) return 0;
    return 1;
}

/* Starts, in bucket order, every bucket whose layers are all ready. */
static void start_ready(struct rt_buckets *b)
{
    int k = b->started;
    while (k < b->n_buckets && bucket_ready(b, &b->bucket[k])) {
        struct bucket *bk = &b->bucket[k];
        if (b->overlap == RT_OVERLAP_POLL) {
            struct rt_coll_args a = bucket_args(b, bk);
            rt_comm_label_next(b->comm, k);
            bk->req = rt_comm_start(b->comm, &a);
        }
        k++;
    }
    if (b->overlap == RT_OVERLAP_THREAD && k != b->started) {
        pthread_mutex_lock(&b->mu);
        b->started = k;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
    } else {
        b->started = k;
    }
}

void rt_buckets_layer_ready(void *ctx, int layer, size_t offset, size_t count)
{
    struct rt_buckets *b = ctx;
    (void)offset;
    (void)count;
    b->ready[layer] = 1;
    if (b->overlap == RT_OVERLAP_OFF) return;
    start_ready(b);
    /* Polling: this is the only moment a compute thread can push the ring forward. A
     * request is completed exactly once (test returning 1, or wait), oldest first. */
    while (b->overlap == RT_OVERLAP_POLL && b->completed < b->started &&
           rt_comm_test(b->comm, b->bucket[b->completed].req))
        b->completed++;
}

int rt_buckets_next(struct rt_buckets *b, struct rt_bucket_view *v)
{
    if (b->returned == b->n_buckets) return 0;
    if (b->started < b->n_buckets) {
        memset(b->ready, 1, (size_t)b->n_layers);
        start_ready(b);
    }
    struct bucket *bk = &b->bucket[b->returned];
    if (b->overlap == RT_OVERLAP_THREAD) {
        pthread_mutex_lock(&b->mu);
        while (b->reduced <= b->returned)
            pthread_cond_wait(&b->cv, &b->mu);
        pthread_mutex_unlock(&b->mu);
    } else if (b->overlap == RT_OVERLAP_POLL) {
        if (b->completed <= b->returned) {
            rt_comm_wait(b->comm, bk->req);
            b->completed = b->returned + 1;
        }
    } else {
        struct rt_coll_args a = bucket_args(b, bk);
        rt_comm_run(b->comm, &a);
    }
    bucket_finish(b, bk);
    rt_buckets_view(b, b->returned, v);
    b->returned++;
    return 1;
}

void rt_buckets_layer_params(void *ctx, int layer)
{
    rt_buckets_wait_gather(ctx, layer);
}
