/* loss.c - softmax cross-entropy and mean squared error, forward and backward in one pass
 * per row, plus arg-max accuracy.
 *
 * Losses are SUMS over rows, so that a rank's contribution adds up across ranks; the
 * caller's norm (rt_loss_norm of the global batch) turns the gradient into that of the
 * global mean. Row sums are accumulated in double: a float sum of thousands of rows loses
 * digits the loss curve shows. The per-element work stays float, since it is exact enough
 * and the rows are in cache.
 *
 * Not here: distillation losses (to come), the norm policy of the trainer.
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
