/* loss.h - loss kernels on borrowed buffers (private to src/nn; tests use them directly).
 *
 * Shapes: logits/out (B, K) row-major, labels (B) int32 in [0, K), targets (B, K).
 * Each returns the SUM over rows of the per-row loss, accumulated in double, and OVERWRITES
 * dlogits (B, K) with d(sum)/dlogits divided by norm (see rt_model_loss in model.h).
 * B may be 0 (returns 0, writes nothing). No allocation, cannot fail. */
#ifndef RT_NN_LOSS_H
#define RT_NN_LOSS_H

#include <stdint.h>

/* Softmax cross-entropy: per row -log softmax(z)_y, through a stable log-sum-exp. */
double rt_loss_ce(float *dlogits, const float *logits, const int32_t *labels, int B, int K,
                  double norm);

/* Squared error: per row sum_k (out - t)^2. */
double rt_loss_mse(float *dlogits, const float *out, const float *targets, int B, int K,
                   double norm);

/* Knowledge distillation (Hinton et al. 2015), per row, with p = softmax(t/T) of the
 * teacher's logits t (B, K) and q = softmax(s/T) of the student's:
 *   alpha T^2 KL(p || q) + (1 - alpha) CE(s, y)
 * and dlogits = (alpha T (q - p) + (1 - alpha)(softmax(s) - onehot(y))) / norm, the exact
 * gradient. The KL term is a sum over a row's classes and the loss a sum over rows (the
 * caller's norm makes it a mean over rows, not over elements). T^2 keeps the soft term's
 * gradient on the same scale as T changes; alpha = 0 is plain cross-entropy. T > 0,
 * alpha in [0, 1]. */
double rt_loss_kd(float *dlogits, const float *logits, const float *teacher, const int32_t *labels,
                  int B, int K, double T, double alpha, double norm);

/* Regression distillation: squared error per row against the blend
 *   sum_k (out - (alpha * teacher + (1 - alpha) * target))^2
 * and dlogits its exact gradient / norm. alpha = 0 is rt_loss_mse, bit for bit. */
double rt_loss_kd_mse(float *dlogits, const float *out, const float *teacher, const float *targets,
                      int B, int K, double alpha, double norm);

/* Rows whose arg-max (lowest index on ties) equals the label. */
int64_t rt_loss_count_correct(const float *logits, const int32_t *labels, int B, int K);

#endif
