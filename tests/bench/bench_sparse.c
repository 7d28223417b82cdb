/* bench_sparse.c - the packed (sparse) gradient allreduce against the dense one, on the real
 * gradient buffer of a job's model: the same buckets the trainer uses, a global magnitude mask
 * decided as the pruning phase decides it, and the whole of one step's gradient
 * communication (pack, allreduce, unpack) timed, dense and sparse alternating so that machine
 * noise hits both. Prints wire bytes and median times per sparsity. Run by hand under mpirun;
 * it asserts nothing.
 *   mpirun -np 2 bench_sparse JOB.ini [iters] [section.key=value ...]   (default 200 iters) */
#include "ringtrain/buckets.h"
#include "ringtrain/comm.h"
#include "ringtrain/config.h"
#include "ringtrain/log.h"
#include "ringtrain/model.h"
#include "ringtrain/prune.h"
#include "ringtrain/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One step's gradient communication: every layer reports ready (last first), every bucket
 * is collected. */
static double one_step(rt_comm_t *c, struct rt_buckets *b, const struct rt_model *m)
{
    rt_comm_barrier(c);
    double t0 = rt_comm_wtime();
    rt_buckets_begin(b);
    for (int i = m->n_layers - 1; i >= 0; i--)
        rt_buckets_layer_ready(b, i, rt_model_layer_offset(m, i), rt_model_layer_count(m, i));
    struct rt_bucket_view v;
    while (rt_buckets_next(b, &v))
        ;
    double dt = rt_comm_wtime() - t0;
    rt_comm_max_f64(c, &dt, 1);
    return dt;
}

int main(int argc, char **argv)
{
    rt_comm_t *comm;
    rt_comm_init(&comm, &argc, &argv);
    rt_log_set_rank(rt_comm_rank(comm), rt_comm_size(comm));
    static struct rt_config cfg;
    rt_config_defaults(&cfg);
    int st = argc > 1 ? rt_config_load(&cfg, argv[1]) : rt_errorf(RT_ERR_INVAL, "usage");
    long iters = argc > 2 ? atol(argv[2]) : 200;
    for (int i = 3; i < argc && st == RT_OK; i++)
        st = rt_config_override(&cfg, argv[i]);
    struct rt_model m = {0};
    struct rt_masks k = {0};
    if (st == RT_OK) st = rt_model_init(&m, &cfg.model, 1);
    if (st == RT_OK) st = rt_masks_init(&k, &m);
    if (st != RT_OK || iters < 1) {
        if (rt_comm_rank(comm) == 0)
            fprintf(stderr, "bench_sparse JOB.ini [iters] [key=value ...]: %s\n",
                    rt_error_message(st));
        rt_comm_finalize(comm);
        return 1;
    }
    rt_model_init_params(&m, cfg.seed);
    size_t offset[RT_MAX_LAYERS];
    for (int i = 0; i < m.n_layers; i++)
        offset[i] = rt_model_layer_offset(&m, i);
    struct rt_comm_opts o = {.algorithm = cfg.algorithm,
                             .segment_bytes = (size_t)cfg.segment_kb * 1024};
    rt_comm_configure(comm, &o);
    struct rt_buckets *b;
    st = rt_buckets_init(&b, comm, m.grads, m.n_params, offset, m.n_layers,
                         (size_t)cfg.bucket_kb * 1024, cfg.overlap, 1.0f);
    double *dense = malloc((size_t)iters * sizeof *dense),
           *sparse = malloc((size_t)iters * sizeof *sparse);
    if (st != RT_OK || !dense || !sparse) return 1;
    rt_log0("# %s: %zu parameters, %zu prunable weights, %d ranks, bucket %lld KiB, overlap %s\n",
            argv[1], m.n_params, k.n_weights, rt_comm_size(comm), (long long)cfg.bucket_kb,
            rt_overlap_name(cfg.overlap));
    rt_log0("%-9s %12s %12s %8s %12s %12s %8s\n", "sparsity", "dense_MB", "sparse_MB", "bytes",
            "dense_us", "sparse_us", "time");
    const double targets[] = {0.5, 0.8, 0.9, 0.95};
    for (size_t s = 0; s < sizeof targets / sizeof targets[0]; s++) {
        rt_masks_keep_all(&k);
        rt_masks_compute(&k, m.params, RT_PRUNE_GLOBAL, targets[s]);
        for (long i = -10; i < iters; i++) { /* 10 warm-up rounds */
            for (size_t j = 0; j < m.n_params; j++)
                m.grads[j] = (float)((j * 7 + (size_t)i) % 13) - 6.0f;
            rt_buckets_set_mask(b, NULL);
            double d = one_step(comm, b, &m);
            rt_buckets_set_mask(b, k.keep);
            double sp = one_step(comm, b, &m);
            if (i >= 0) {
                dense[i] = d;
                sparse[i] = sp;
            }
        }
        qsort(dense, (size_t)iters, sizeof *dense, by_double);
        qsort(sparse, (size_t)iters, sizeof *sparse, by_double);
        double dn = (double)m.n_params * 4, sn = (double)rt_buckets_wire_floats(b) * 4;
        rt_log0("%-9.2f %12.3f %12.3f %8.3f %12.1f %12.1f %8.3f\n", targets[s], dn / 1e6, sn / 1e6,
                sn / dn, dense[iters / 2] * 1e6, sparse[iters / 2] * 1e6,
                sparse[iters / 2] / dense[iters / 2]);
    }
    free(dense);
    free(sparse);
    rt_buckets_free(b);
    rt_masks_free(&k);
    rt_model_free(&m);
    rt_comm_finalize(comm);
    return 0;
}
