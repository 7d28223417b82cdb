/* transformer_kernels.h - causal multi-head self-attention and layer normalisation over
 * cblas_sgemm and plain loops (private to src/nn; the layers are attention.c and
 * layernorm.c).
 *
 * Attention over B sequences of T positions, width D, `heads` heads of hd = D / heads:
 * qkv (B, T, 3D) holds q | k | v of each position (GPT-2's c_attn output, split in that
 * order), head h being the columns [h hd, (h+1) hd) of each third. Per sequence and head,
 *
 *     S = Q K^T / sqrt(hd)     P = softmax(S) over j <= t (0 for j > t)     Y = P V
 *
 * and y (B, T, D) takes Y of head h in columns [h hd, (h+1) hd) (the layout the output
 * projection nn.Linear(D, D) reads). Backward from dy (B, T, D):
 *
 *     dV = P^T dY   dP = dY V^T   dS = P * (dP - rowsum(P * dP)) / sqrt(hd)
 *     dQ = dS K     dK = dS^T Q
 *
 * S and dP are full T x T GEMMs: the masked half is computed and discarded (cblas has no
 * triangular-output GEMM, and at T = 128, hd = 32 splitting the products into blocks to skip
 * it would cost more in small calls than it saves; bench_attn measures).
 *
 * The probabilities are either kept from forward (probs non-NULL: B heads T T floats) or,
 * with probs NULL, recomputed from q and k in backward; bench_attn measures both. Scratch:
 * rt_attn_scratch_floats floats, independent of B (one head at a time).
 *
 * Layer norm over rows of d: y = (x - mean) rstd w + b, rstd = 1/sqrt(var + eps), var the
 * biased variance (nn.LayerNorm). mean and rstd (rows) are written by forward and read by
 * backward. Backward OVERWRITES each non-NULL output: dx (rows, d), dw and db (d); with
 * accumulate it ADDS to dw and db instead (gradient accumulation; dx is still overwritten).
 *
 * Dimension letters: B sequences, T positions, D width, hd head width. */
#ifndef RT_NN_TRANSFORMER_KERNELS_H
#define RT_NN_TRANSFORMER_KERNELS_H
#include <stddef.h>

struct rt_attn_geom {
    int T, D, heads;
};

size_t rt_attn_probs_floats(const struct rt_attn_geom *g, int B);
size_t rt_attn_scratch_floats(const struct rt_attn_geom *g, int B);
/* y (B, T, D) from qkv (B, T, 3D); probs (B, heads, T, T) or NULL. */
void rt_attn_forward(const struct rt_attn_geom *g, const float *qkv, float *y, float *probs,
                     float *scratch, int B);
/* dqkv (B, T, 3D), OVERWRITTEN, from dy (B, T, D); probs as forward left them, or NULL to
 * recompute. dy is read only. */
void rt_attn_backward(const struct rt_attn_geom *g, const float *qkv, const float *probs,
                      const float *dy, float *dqkv, float *scratch, int B);

void rt_layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int rows, int d, float eps);
void rt_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *w, int rows, int d,
                           int accumulate);
#endif
