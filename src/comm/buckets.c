/* buckets.c - gradient buckets averaged while backprop goes on (see buckets.h).
 *
 * Ordering is the whole game: every rank must start the same allreduces in the same order,
 * whatever the timing of its own backward pass. So buckets are started strictly in bucket
 * order, and a bucket starts only when every layer it touches is ready; the thread (or the
 * request queue) then runs them one after another in that order. */
#include "ringtrain/buckets.h"
#include "ringtrain/status.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bucket {
    size_t lo, hi;               /* range of grads */
    size_t plo, pn;              /* sparse: its kept coordinates, idx[plo .. plo + pn) */
    int first_layer, last_layer; /* layers whose blocks intersect [lo, hi) */
    rt_allreduce_req *req;       /* RT_OVERLAP_POLL: in flight */
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
    if (n > 0 && (n + cap - 1) / cap > RT_MAX_INFLIGHT)
        cap = (n + RT_MAX_INFLIGHT - 1) / RT_MAX_INFLIGHT;
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

/* What a bucket's allreduce runs on: its range of grads, or (sparse) its kept coordinates
 * gathered into packed. Called once the bucket's layers are final. */
static float *bucket_data(struct rt_buckets *b, const struct bucket *bk, size_t *count)
{
    if (!b->sparse) {
        *count = bk->hi - bk->lo;
        return b->grads + bk->lo;
    }
    const uint32_t *idx = b->idx + bk->plo;
    float *dst = b->packed + bk->plo;
    for (size_t j = 0; j < bk->pn; j++)
        dst[j] = b->grads[idx[j]];
    *count = bk->pn;
    return dst;
}

/* Sparse: scatters the averaged kept coordinates back. Pruned ones keep this rank's own
 * values: the trainer masks gradients in any case (dense communication too), and zeroing
 * them here as well doubled the cost of a 90%-sparse bucket. */
static void bucket_finish(struct rt_buckets *b, const struct bucket *bk)
{
    if (!b->sparse) return;
    const uint32_t *idx = b->idx + bk->plo;
    const float *src = b->packed + bk->plo;
    for (size_t j = 0; j < bk->pn; j++)
        b->grads[idx[j]] = src[j];
}

/* The thread's allreduce. A blocking MPI wait spins, and a spinning thread on a node
 * whose cores are all computing steals the core from backprop (measured on BigModel, 2
 * ranks on 2 cores: 5864 samples/s with MPI's blocking wait against 6861 polling from the
 * compute thread). So the thread advances the request and naps between attempts: the
 * ring's segments take ~100 us each, and a 20 us nap costs it little. */
static void reduce_politely(struct rt_buckets *b, const struct bucket *bk)
{
    size_t count;
    float *data = bucket_data(b, bk, &count);
    rt_comm_label_next(b->comm, (int)(bk - b->bucket));
    rt_allreduce_req *req = rt_comm_iallreduce(b->comm, data, count, b->scale);
    const struct timespec nap = {0, 20000};
    double t0 = rt_comm_wtime(), timeout = rt_comm_timeout(b->comm);
    while (!rt_comm_test(b->comm, req)) {
        nanosleep(&nap, NULL);
        if (timeout > 0 && rt_comm_wtime() - t0 > timeout)
            rt_comm_abort(b->comm, 1,
                          "hang: the communication thread waited %.1f s in the allreduce of "
                          "bucket %d (%zu floats); ending the job ([comm] timeout_s = %g)",
                          rt_comm_wtime() - t0, (int)(bk - b->bucket), count, timeout);
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

void rt_buckets_free(struct rt_buckets *b)
{
    if (!b) return;
    if (b->has_thread) {
        pthread_mutex_lock(&b->mu);
        b->quit = 1;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
    if (b->overlap == RT_OVERLAP_THREAD) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
    }
    free(b->bucket);
    free(b->ready);
    free(b->idx);
    free(b->packed);
    free(b);
}

int rt_buckets_reserve_sparse(struct rt_buckets *b)
{
    if (b->idx) return RT_OK;
    b->idx = malloc((b->n ? b->n : 1) * sizeof *b->idx);
    b->packed = malloc((b->n ? b->n : 1) * sizeof *b->packed);
    if (!b->idx || !b->packed)
        return rt_errorf(RT_ERR_NOMEM, "sparse gradients: cannot allocate %zu indices", b->n);
    return RT_OK;
}

int rt_buckets_set_mask(struct rt_buckets *b, const uint8_t *keep)
{
    b->sparse = 0;
    if (!keep) return RT_OK;
    if (b->n > UINT32_MAX)
        return rt_errorf(RT_ERR_INVAL, "sparse gradients: %zu parameters exceed 32-bit indices",
                         b->n);
    RT_TRY(rt_buckets_reserve_sparse(b));
    /* Buckets are laid out from the end; kept indices are listed bucket by bucket. */
    size_t p = 0;
    for (int k = 0; k < b->n_buckets; k++) {
        struct bucket *bk = &b->bucket[k];
        bk->plo = p;
        for (size_t i = bk->lo; i < bk->hi; i++)
            if (keep[i]) b->idx[p++] = (uint32_t)i;
        bk->pn = p - bk->plo;
    }
    b->sparse = 1;
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
            size_t count;
            float *data = bucket_data(b, bk, &count);
            rt_comm_label_next(b->comm, k);
            bk->req = rt_comm_iallreduce(b->comm, data, count, b->scale);
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

int rt_buckets_next(struct rt_buckets *b, size_t *lo, size_t *hi)
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
        size_t count;
        float *data = bucket_data(b, bk, &count);
        rt_comm_allreduce(b->comm, data, count, b->scale);
    }
    bucket_finish(b, bk);
    *lo = bk->lo;
    *hi = bk->hi;
    b->returned++;
    return 1;
}
