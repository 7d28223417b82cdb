/* dense.c - dense layer kernels over cblas_sgemm.
 * Dimension letters: B rows, IN input width, OUT output width. */
#include "ringtrain/dense.h"

#include <cblas.h>

void rt_dense_linear(float *y, const float *x, const float *w, const float *b, int B, int IN,
                     int OUT)
{
    if (B == 0)
        return;
    for (int r = 0; r < B; r++)
        for (int o = 0; o < OUT; o++)
            y[(size_t)r * OUT + o] = b ? b[o] : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OUT, IN, 1.0f, x, IN, w, IN, 1.0f, y,
                OUT);
}
