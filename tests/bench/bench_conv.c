/* bench_conv.c - the conv2d plans (conv.h, rt_conv_plan_) on the convolutions of the
 * Fashion-MNIST CNN, and the CSR forward against the dense one. Run by hand; asserts nothing.
 *   bench_conv [iters]   (default 30; the machine's other load is why medians are shown)
 *
 * Table 1, per shape, batch and BLAS thread count: the median times of forward,
 * backward_params and backward_data under each plan and of their sum (step_ms); then the
 * best step of all iterations (min_ms: other load on the machine only ever adds time) and
 * its GFLOP/s (3 x 2 OC K P B flops), and the same for the plan's bare cblas_sgemm calls
 * (rt_conv2d_plan_gemms_: same shapes and transposes, no im2col or layout pass) timed in the
 * same loop, so that eff = sgemm_ms / min_ms is the share of the step that is GEMM. Plans
 * run interleaved, every iteration once each, so that machine noise hits all of them.
 *
 * Table 2, one BLAS thread, best of all iterations: rt_conv2d_forward (per-sample GEMM),
 * the batched plan's forward and rt_conv2d_forward_csr, on a random weight with the given
 * share of zeros; csr/fwd < 1 is where the sparse kernel pays. */
#include "ringtrain/conv.h"
#include "ringtrain/model.h"
#include "ringtrain/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct shape {
    const char *name;
    int C, H, W, OC;
};

static const struct shape shapes[] = {{"1->32@28", 1, 28, 28, 32}, {"32->64@14", 32, 14, 14, 64}};
static const char *plan_name[RT_CONV_PLAN_COUNT_] = {"sample", "sample-keep", "batch",
                                                     "batch-keep"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double minimum(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_double);
    return v[n / 2];
}

static float *rand_floats(size_t n, struct rt_rng *rng)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(2.0 * rt_rng_uniform(rng) - 1.0);
    return v;
}

/* Operands of one shape at batch B, sized for every plan and for the sgemm reference. */
struct bufs {
    struct rt_conv2d_geom g;
    int B;
    size_t nx, ny, nw, ns;
    float *x, *y, *w, *b, *dy, *dx, *dw, *db, *scr, *c, *cols;
};

static void bufs_init(struct bufs *u, const struct shape *s, int B, struct rt_rng *rng)
{
    rt_conv2d_geom_init(&u->g, s->C, s->H, s->W, s->OC, 3, 3, 1, 1, 1, 1);
    u->B = B;
    size_t K = (size_t)s->C * 9, P = (size_t)u->g.OH * u->g.OW;
    u->nx = (size_t)B * s->C * s->H * s->W;
    u->ny = (size_t)B * s->OC * P;
    u->nw = (size_t)s->OC * K;
    u->ns = 0;
    for (int p = 0; p < RT_CONV_PLAN_COUNT_; p++) {
        size_t n = rt_conv2d_plan_scratch_floats_(&u->g, B, p);
        u->ns = n > u->ns ? n : u->ns;
    }
    u->x = rand_floats(u->nx, rng), u->dx = rand_floats(u->nx, rng);
    u->y = rand_floats(u->ny, rng), u->dy = rand_floats(u->ny, rng);
    u->w = rand_floats(u->nw, rng), u->dw = rand_floats(u->nw, rng);
    u->b = rand_floats((size_t)s->OC, rng), u->db = rand_floats((size_t)s->OC, rng);
    u->scr = rand_floats(u->ns, rng);
    u->c = rand_floats(u->ny + u->nw, rng), u->cols = rand_floats(K * P * B, rng);
}

static void bufs_free(struct bufs *u)
{
    free(u->x), free(u->dx), free(u->y), free(u->dy), free(u->w), free(u->dw);
    free(u->b), free(u->db), free(u->scr), free(u->c), free(u->cols);
}

static double step_flops(const struct bufs *u)
{
    const struct rt_conv2d_geom *g = &u->g;
    return 3.0 * 2.0 * g->OC * g->C * g->KH * g->KW * (double)g->OH * g->OW * u->B;
}

/* t[plan][phase][iter]: phases forward, params, data, sgemm. */
enum { PHASES = 4, MAX_ITERS = 1000 };
static double t[RT_CONV_PLAN_COUNT_][PHASES][MAX_ITERS];

static void time_plan(struct bufs *u, enum rt_conv_plan_ p, int it)
{
    double t0 = now();
    rt_conv2d_plan_forward_(u->y, u->scr, u->x, u->w, u->b, &u->g, u->B, p);
    double t1 = now();
    rt_conv2d_plan_backward_params_(u->dw, u->db, u->scr, u->dy, u->x, &u->g, u->B, 0, p);
    double t2 = now();
    rt_conv2d_plan_backward_data_(u->dx, u->scr, u->dy, u->w, &u->g, u->B, p);
    double t3 = now();
    rt_conv2d_plan_gemms_(u->c, u->cols, u->w, &u->g, u->B, p);
    double t4 = now();
    if (it < 0) return;
    t[p][0][it] = t1 - t0, t[p][1][it] = t2 - t1, t[p][2][it] = t3 - t2, t[p][3][it] = t4 - t3;
}

static void plan_rows(const struct shape *s, int B, int threads, int iters, struct rt_rng *rng)
{
    struct bufs u;
    bufs_init(&u, s, B, rng);
    rt_nn_set_threads(threads);
    for (int it = -3; it < iters; it++) /* 3 warm-up rounds */
        for (int p = 0; p < RT_CONV_PLAN_COUNT_; p++)
            time_plan(&u, p, it);
    double f = step_flops(&u);
    for (int p = 0; p < RT_CONV_PLAN_COUNT_; p++) {
        double m[PHASES], best = 1e30, gbest = 1e30;
        for (int it = 0; it < iters; it++) {
            double step = t[p][0][it] + t[p][1][it] + t[p][2][it];
            best = step < best ? step : best;
            gbest = t[p][3][it] < gbest ? t[p][3][it] : gbest;
        }
        for (int ph = 0; ph < PHASES; ph++)
            m[ph] = median(t[p][ph], iters);
        printf("%-10s %4d %3d %-12s %8.3f %8.3f %8.3f %8.3f %8.3f %7.1f %8.3f %7.1f %6.2f %7.1f\n",
               s->name, B, threads, plan_name[p], m[0] * 1e3, m[1] * 1e3, m[2] * 1e3,
               (m[0] + m[1] + m[2]) * 1e3, best * 1e3, f / best / 1e9, gbest * 1e3, f / gbest / 1e9,
               gbest / best, (double)rt_conv2d_plan_scratch_floats_(&u.g, B, p) * 4 / 1e6);
        fflush(stdout);
    }
    bufs_free(&u);
}

/* w = dense with round(sparsity nw) entries zeroed at random places, and c = w in CSR. */
static void make_csr(struct rt_csr *c, float *w, const float *dense, int OC, int K, double sparsity,
                     struct rt_rng *rng)
{
    int n = OC * K, zeros = (int)(sparsity * n + 0.5);
    int *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rt_rng_below(rng, (uint64_t)i + 1), k = order[i];
        order[i] = order[j], order[j] = k;
    }
    memcpy(w, dense, (size_t)n * sizeof *w);
    for (int i = 0; i < zeros; i++)
        w[order[i]] = 0.0f;
    free(order);
    c->rows = OC, c->cols = K, c->nnz = 0;
    for (int o = 0; o < OC; o++) {
        c->indptr[o] = c->nnz;
        for (int k = 0; k < K; k++)
            if (w[o * K + k] != 0.0f) c->indices[c->nnz] = k, c->data[c->nnz++] = w[o * K + k];
    }
    c->indptr[OC] = c->nnz;
}

static void csr_rows(const struct shape *s, int B, int iters, struct rt_rng *rng)
{
    static const double sparsity[] = {0.0, 0.5, 0.8, 0.9, 0.95};
    struct bufs u;
    bufs_init(&u, s, B, rng);
    rt_nn_set_threads(1);
    int K = s->C * 9;
    float *dense = malloc(u.nw * sizeof *dense);
    memcpy(dense, u.w, u.nw * sizeof *dense);
    struct rt_csr c = {0};
    c.indptr = malloc(((size_t)s->OC + 1) * sizeof *c.indptr);
    c.indices = malloc(u.nw * sizeof *c.indices);
    c.data = malloc(u.nw * sizeof *c.data);
    for (size_t i = 0; i < sizeof sparsity / sizeof sparsity[0]; i++) {
        make_csr(&c, u.w, dense, s->OC, K, sparsity[i], rng);
        for (int it = -3; it < iters; it++) {
            double t0 = now();
            rt_conv2d_forward(u.y, u.scr, u.x, u.w, u.b, &u.g, B);
            double t1 = now();
            rt_conv2d_plan_forward_(u.y, u.scr, u.x, u.w, u.b, &u.g, B, RT_CONV_PLAN_BATCH_KEEP_);
            double t2 = now();
            rt_conv2d_forward_csr(u.y, u.scr, u.x, &c, u.b, &u.g, B);
            double t3 = now();
            if (it >= 0) t[0][0][it] = t1 - t0, t[0][1][it] = t2 - t1, t[0][2][it] = t3 - t2;
        }
        double fwd = minimum(t[0][0], iters), bat = minimum(t[0][1], iters);
        double csr = minimum(t[0][2], iters);
        printf("%-10s %4d %8.2f %8lld %8.3f %10.3f %8.3f %8.2f %8.2f\n", s->name, B, sparsity[i],
               (long long)c.nnz, fwd * 1e3, bat * 1e3, csr * 1e3, csr / fwd, csr / bat);
        fflush(stdout);
    }
    free(c.indptr), free(c.indices), free(c.data), free(dense);
    bufs_free(&u);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 30;
    if (iters < 1 || iters > MAX_ITERS) {
        fprintf(stderr, "usage: bench_conv [iters (1..%d)]\n", MAX_ITERS);
        return 2;
    }
    struct rt_rng rng;
    rt_rng_seed(&rng, 1);
    printf("# ringtrain conv2d plans  3x3 pad 1 stride 1  iters=%d  warmup=3  medians\n", iters);
    printf("# %-8s %4s %3s %-12s %8s %8s %8s %8s %8s %7s %8s %7s %6s %7s\n", "shape", "B", "thr",
           "plan", "fwd_ms", "dw_ms", "dx_ms", "step_ms", "min_ms", "GF/s", "sgemm_ms", "GF/s",
           "eff", "scr_MB");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int threads = 1; threads <= 2; threads++)
            for (int B = 64; B <= 128; B *= 2)
                plan_rows(&shapes[s], B, threads, iters, &rng);
    printf("#\n# ringtrain conv2d sparse forward  1 BLAS thread  random zeros  best of iters\n");
    printf("# %-8s %4s %8s %8s %8s %10s %8s %8s %8s\n", "shape", "B", "sparsity", "nnz", "fwd_ms",
           "batch_ms", "csr_ms", "csr/fwd", "csr/bat");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int B = 64; B <= 128; B *= 2)
            csr_rows(&shapes[s], B, iters, &rng);
    return 0;
}
