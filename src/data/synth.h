/* synth.h - the synthetic tasks behind "synth:NAME" sources (private to src/data).
 *
 * synth:bigmodel is a noiseless linear teacher in 1000 dimensions:
 *   x ~ N(0, 1)^1000, row i drawn from its own stream rt_rng_derive(seed, RT_STREAM_SYNTH_X,
 *       id) with id = i (train split) or i + 2^40 (test split), element by element;
 *   T (1000, 1000) ~ N(0, 1/1000) from rt_rng_derive(seed, RT_STREAM_SYNTH_TEACHER, 0),
 *       drawn row-major (T[j][k], j = output), the same for both splits;
 *   y = x T^T, y[j] = sum_k x[k] T[j][k] accumulated in float in increasing k.
 * The product is plain C with a fixed order of operations rather than BLAS: BLAS results for
 * one row depend on the other rows of the call (measured with OpenBLAS 0.3.21: most rows of
 * a 16-row call differ in the last bits from the same rows in another call), and a row must
 * have the same bytes whichever rank, batch or file produces it. Under ISO C (-std=c11,
 * no FP contraction) the bytes are also the same with and without -march=native.
 *
 * Dimension letters: D = K = 1000. */
#ifndef RT_DATA_SYNTH_H
#define RT_DATA_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#define RT_SYNTH_DIM         1000
#define RT_SYNTH_TEST_OFFSET ((int64_t)1 << 40) /* row id offset of split 1 */

struct rt_synth {
    uint64_t seed;
    int64_t row_offset; /* 0 or RT_SYNTH_TEST_OFFSET */
    float *tt;          /* (D, K) borrowed: T transposed, tt[k*K + j] = T[j][k] */
};

/* 0 when name is a known task ("bigmodel"), -1 otherwise. */
int rt_synth_known(const char *name);

/* Bytes of the teacher buffer handed to rt_synth_init. */
size_t rt_synth_teacher_bytes(void);

/* Draws the teacher into tt (rt_synth_teacher_bytes() bytes, borrowed) and fills s. */
void rt_synth_init(struct rt_synth *s, float *tt, uint64_t seed, int split);

/* Rows ids[0..n) of the task: x (n, D) and y (n, K), overwritten. ids are row numbers of
 * the split (0-based). No allocation, cannot fail. */
void rt_synth_rows(const struct rt_synth *s, float *x, float *y, const int64_t *ids, int64_t n);

#endif
