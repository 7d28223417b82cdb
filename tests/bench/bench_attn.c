/* bench_attn.c - attention's two memory plans (transformer_kernels.h): probabilities kept
 * from forward for backward, or recomputed from q and k in backward. Run by hand; asserts
 * nothing.
 *   bench_attn [iters]   (default 30)
 *
 * Per shape: the best over iterations (other load only ever adds time) of forward and
 * backward under each plan, interleaved so that machine noise hits both, with GFLOP/s
 * counting the four T x T x hd products of forward and backward (2 T^2 hd each, the masked
 * half included) and the extra one recomputing adds, and the bytes the kept plan holds. */
#include "nn/transformer_kernels.h"
#include "ringtrain/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *random_floats(size_t n, struct rt_rng *rng)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; v && i < n; i++)
        v[i] = (float)(rt_rng_uniform(rng) * 2 - 1);
    return v;
}

static void bench_shape(int B, int T, int D, int H, int iters)
{
    struct rt_attn_geom g = {.T = T, .D = D, .heads = H};
    struct rt_rng rng;
    rt_rng_seed(&rng, 1);
    size_t nqkv = (size_t)B * T * 3 * D, ny = (size_t)B * T * D;
    float *qkv = random_floats(nqkv, &rng), *dy = random_floats(ny, &rng);
    float *y = malloc(ny * sizeof *y), *dqkv = malloc(nqkv * sizeof *dqkv);
    float *probs = malloc(rt_attn_probs_floats(&g, B) * sizeof *probs);
    float *scratch = malloc(rt_attn_scratch_floats(&g, B) * sizeof *scratch);
    if (!qkv || !dy || !y || !dqkv || !probs || !scratch) {
        fprintf(stderr, "bench_attn: out of memory\n");
        exit(1);
    }
    double best[2][2] = {{1e30, 1e30}, {1e30, 1e30}}; /* [plan][forward, backward] */
    for (int it = 0; it < iters; it++)
        for (int plan = 0; plan < 2; plan++) {
            float *p = plan == 0 ? probs : NULL;
            double t0 = now();
            rt_attn_forward(&g, qkv, y, p, scratch, B);
            double t1 = now();
            rt_attn_backward(&g, qkv, p, dy, dqkv, scratch, B);
            double t2 = now();
            best[plan][0] = t1 - t0 < best[plan][0] ? t1 - t0 : best[plan][0];
            best[plan][1] = t2 - t1 < best[plan][1] ? t2 - t1 : best[plan][1];
        }
    double gemm = 2.0 * T * T * (D / H) * H * B; /* one T x T x hd product, every head */
    const char *name[2] = {"keep", "recompute"};
    for (int plan = 0; plan < 2; plan++) {
        double step = best[plan][0] + best[plan][1], flops = gemm * (6 + plan);
        printf("%4d %4d %4d %3d  %-9s  %8.3f  %8.3f  %8.3f  %8.1f  %9.2f\n", B, T, D, H, name[plan],
               1e3 * best[plan][0], 1e3 * best[plan][1], 1e3 * step, flops / step / 1e9,
               plan == 0 ? rt_attn_probs_floats(&g, B) * 4.0 / (1 << 20) : 0.0);
    }
    free(qkv), free(dy), free(y), free(dqkv), free(probs), free(scratch);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 30;
    printf("   B    T    D   H  plan        fwd_ms    bwd_ms   step_ms   GFLOP/s  probs_MiB\n");
    bench_shape(16, 128, 128, 4, iters); /* kjv-gpt.ini, per rank at 2 ranks */
    bench_shape(32, 128, 128, 4, iters);
    bench_shape(8, 256, 256, 8, iters);
    bench_shape(4, 512, 384, 6, iters);
    return 0;
}
