/* loss.c - softmax cross-entropy and mean squared error, forward and backward in one pass
 * per row, their distillation variants, plus arg-max accuracy.
 *
 * Losses are SUMS over rows, so that a rank's contribution adds up across ranks; the
 * caller's norm (rt_loss_norm of the global batch) turns the gradient into that of the
 * global mean. Row sums are accumulated in double: a float sum of thousands of rows loses
 * digits the loss curve shows. The per-element work stays float, since it is exact enough
 * and the rows are in cache.
 *
 * Not here: the norm policy of the trainer.
 *
 * Dimension letters: B rows, K outputs (classes for CE). */
#include "ringtrain/model.h"
#include "nn/loss.h"

#include <assert.h>
#include <math.h>

/* One CE row: dr = (softmax(zr) - onehot(y)) / norm; returns -log softmax(zr)_y.
 * Subtracting the row max keeps every expf in (0, 1]: no overflow for any finite logits.
 * The sum starts from the first term (K >= 1) instead of 0.0: the same bits (0.0 + e0 is e0
 * exactly), and it lets static analysis see that log() never gets 0 (the max gives 1). */
static double ce_row(float *dr, const float *zr, int32_t y, int K, double norm)
{
    float mx = zr[0];
    for (int k = 1; k < K; k++)
        mx = zr[k] > mx ? zr[k] : mx;
    dr[0] = expf(zr[0] - mx);
    double sum = dr[0];
    for (int k = 1; k < K; k++) {
        float e = expf(zr[k] - mx);
        dr[k] = e;
        sum += e;
    }
    float scale = (float)(1.0 / (sum * norm));
    for (int k = 0; k < K; k++)
        dr[k] *= scale;
    dr[y] -= (float)(1.0 / norm);
    return log(sum) + (double)mx - (double)zr[y];
}

double rt_loss_ce(float *dlogits, const float *logits, const int32_t *labels, int B, int K,
                  double norm)
{
    double total = 0.0;
    for (int r = 0; r < B; r++) {
        size_t row = (size_t)r * K;
        assert(labels[r] >= 0 && labels[r] < K); /* the data module validates labels */
        total += ce_row(dlogits + row, logits + row, labels[r], K, norm);
    }
    return total;
}

static float row_max(const float *z, int K, float scale)
{
    float mx = z[0] * scale;
    for (int k = 1; k < K; k++)
        mx = z[k] * scale > mx ? z[k] * scale : mx;
    return mx;
}

static double row_sumexp(const float *z, int K, float scale, float mx)
{
    double sum = 0.0;
    for (int k = 0; k < K; k++)
        sum += expf(z[k] * scale - mx);
    return sum;
}

/* One distillation row (see loss.h): three stable softmaxes from their row maxima. */
static double kd_row(float *dr, const float *sr, const float *tr, int32_t y, int K, double T,
                     double alpha, double norm)
{
    float inv = (float)(1.0 / T);
    float ms = row_max(sr, K, inv), mt = row_max(tr, K, inv), m1 = row_max(sr, K, 1.0f);
    double ss = row_sumexp(sr, K, inv, ms), st = row_sumexp(tr, K, inv, mt);
    double s1 = row_sumexp(sr, K, 1.0f, m1);
    double lss = log(ss), lst = log(st), kl = 0.0;
    for (int k = 0; k < K; k++) {
        double ls = (double)(sr[k] * inv - ms) - lss; /* log q_k */
        double lt = (double)(tr[k] * inv - mt) - lst; /* log p_k */
        double p = exp(lt), q = exp(ls), soft1 = exp((double)(sr[k] - m1)) / s1;
        kl += p * (lt - ls);
        double g = alpha * T * (q - p) + (1.0 - alpha) * (soft1 - (k == y ? 1.0 : 0.0));
        dr[k] = (float)(g / norm);
    }
    double ce = log(s1) + (double)m1 - (double)sr[y];
    return alpha * T * T * kl + (1.0 - alpha) * ce;
}

double rt_loss_kd(float *dlogits, const float *logits, const float *teacher, const int32_t *labels,
                  int B, int K, double T, double alpha, double norm)
{
    double total = 0.0;
    for (int r = 0; r < B; r++) {
        size_t row = (size_t)r * K;
        assert(labels[r] >= 0 && labels[r] < K);
        total += kd_row(dlogits + row, logits + row, teacher + row, labels[r], K, T, alpha, norm);
    }
    return total;
}

double rt_loss_mse(float *dlogits, const float *out, const float *targets, int B, int K,
                   double norm)
{
    float scale = (float)(2.0 / norm);
    size_t n = (size_t)B * K;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        float d = out[i] - targets[i];
        dlogits[i] = scale * d;
        total += (double)d * d;
    }
    return total;
}

/* The blend is formed in double and rounded once: with alpha = 1 it is the teacher exactly
 * (for finite targets). alpha = 0 is handed to rt_loss_mse, so that it is plain MSE bit for bit
 * whatever the teacher holds (0 * inf would be NaN). The rest mirrors rt_loss_mse. */
double rt_loss_kd_mse(float *dlogits, const float *out, const float *teacher, const float *targets,
                      int B, int K, double alpha, double norm)
{
    if (alpha == 0.0) return rt_loss_mse(dlogits, out, targets, B, K, norm);
    float scale = (float)(2.0 / norm);
    size_t n = (size_t)B * K;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        float t = (float)(alpha * teacher[i] + (1.0 - alpha) * targets[i]);
        float d = out[i] - t;
        dlogits[i] = scale * d;
        total += (double)d * d;
    }
    return total;
}

int64_t rt_loss_count_correct(const float *logits, const int32_t *labels, int B, int K)
{
    int64_t correct = 0;
    for (int r = 0; r < B; r++) {
        const float *zr = logits + (size_t)r * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (zr[k] > zr[best]) /* strict: ties keep the lowest index, as torch.argmax */
                best = k;
        correct += best == labels[r];
    }
    return correct;
}

double rt_loss_norm(enum rt_loss loss, int64_t rows, int K)
{
    return loss == RT_LOSS_MSE ? (double)rows * K : (double)rows;
}
