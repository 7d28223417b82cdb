/* attn_kernels.c - causal multi-head attention over cblas_sgemm (contract and formulas in
 * transformer_kernels.h).
 *
 * One head of one sequence at a time: Q, K, V are strided views into qkv (leading dimension
 * 3D), so no copy is made; S and dP (T, T) live in scratch and stay in L2 (64 KiB at
 * T = 128). The softmax runs in float with the row maximum shifted out; exp of the masked
 * entries is never taken.
 *
 * Dimension letters: B sequences, T positions, D width, H heads, hd head width. */
#include "nn/transformer_kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

size_t rt_attn_probs_floats(const struct rt_attn_geom *g, int B)
{
    return (size_t)B * g->heads * g->T * g->T;
}

/* S (or the recomputed P) and dP, one head at a time. */
size_t rt_attn_scratch_floats(const struct rt_attn_geom *g, int B)
{
    (void)B;
    return 2 * (size_t)g->T * g->T;
}

/* p (T, T) = causal softmax(scale q k^T), q and k with leading dimension ld. */
static void causal_probs(float *p, const float *q, const float *k, int T, int hd, int ld,
                         float scale)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.0f, p, T);
    for (int t = 0; t < T; t++) {
        float *row = p + (size_t)t * T, mx = row[0], sum = 0.0f;
        for (int j = 1; j <= t; j++)
            mx = row[j] > mx ? row[j] : mx;
        for (int j = 0; j <= t; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j <= t; j++)
            row[j] *= inv;
        if (t + 1 < T) memset(row + t + 1, 0, (size_t)(T - 1 - t) * sizeof *row);
    }
}

void rt_attn_forward(const struct rt_attn_geom *g, const float *qkv, float *y, float *probs,
                     float *scratch, int B)
{
    int T = g->T, D = g->D, H = g->heads, hd = D / H, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd;
            float *p = probs ? probs + ((size_t)b * H + h) * T * T : scratch;
            causal_probs(p, q, q + D, T, hd, ld, scale);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, q + 2 * D,
                        ld, 0.0f, y + (size_t)b * T * D + (size_t)h * hd, D);
        }
}

/* dp (T, T) <- dS = p * (dp - rowsum(p * dp)) * scale, over the causal half (the rest of
 * dS is 0, as p is). */
static void softmax_backward(float *dp, const float *p, int T, float scale)
{
    for (int t = 0; t < T; t++) {
        float *drow = dp + (size_t)t * T;
        const float *prow = p + (size_t)t * T;
        float dot = 0.0f;
        for (int j = 0; j <= t; j++)
            dot += prow[j] * drow[j];
        for (int j = 0; j <= t; j++)
            drow[j] = prow[j] * (drow[j] - dot) * scale;
        if (t + 1 < T) memset(drow + t + 1, 0, (size_t)(T - 1 - t) * sizeof *drow);
    }
}

static void head_backward(const struct rt_attn_geom *g, const float *q, const float *p,
                          const float *dyh, float *dq, float *dp)
{
    int T = g->T, D = g->D, hd = D / g->heads, ld = 3 * D;
    const float *k = q + D, *v = q + 2 * D;
    float *dk = dq + D, *dv = dq + 2 * D;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, dyh, D, 0.0f, dv,
                ld);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dyh, D, v, ld, 0.0f, dp,
                T);
    softmax_backward(dp, p, T, 1.0f / sqrtf((float)hd));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dp, T, k, ld, 0.0f, dq,
                ld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dp, T, q, ld, 0.0f, dk,
                ld);
}

void rt_attn_backward(const struct rt_attn_geom *g, const float *qkv, const float *probs,
                      const float *dy, float *dqkv, float *scratch, int B)
{
    int T = g->T, D = g->D, H = g->heads, hd = D / H, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    float *dp = scratch, *p_again = scratch + (size_t)T * T;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t at = (size_t)b * T * ld + (size_t)h * hd;
            const float *p = probs + ((size_t)b * H + h) * T * T;
            if (!probs) {
                causal_probs(p_again, qkv + at, qkv + at + D, T, hd, ld, scale);
                p = p_again;
            }
            head_backward(g, qkv + at, p, dy + (size_t)b * T * D + (size_t)h * hd, dqkv + at, dp);
        }
}
