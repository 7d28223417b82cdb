/* faults.h - fault-injection test hooks of the step loop (private to src/train).
 *
 * Each hook is an environment variable read once at set-up; unset or malformed, it is off.
 *   RINGTRAIN_FAULT_CORRUPT=RANK:STEP          that rank's replica drifts after STEP
 *   RINGTRAIN_FAULT_NAN=RANK:STEP              a NaN loss gradient on that rank at STEP
 *   RINGTRAIN_FAULT_SLOW=RANK:MS               that rank sleeps MS every step: a straggler
 *   RINGTRAIN_FAULT_STALL=RANK:STEP:SECONDS    that rank stalls once, for hang tests
 *   RINGTRAIN_FAULT_NAN_GRAD=RANK:STEP:WHERE   a NaN in one coordinate of that rank's gradient
 *                                              before it is reduced: WHERE is an index into
 *                                              the flat block, or `pruned` for the first
 *                                              coordinate the pruning mask removed
 * tests/cli diverge.sh, nonfinite.sh and hang.sh use them; SLOW shows a straggler in the
 * progress lines. A normal run has none set and every call below does nothing. */
#ifndef RT_TRAIN_FAULTS_H
#define RT_TRAIN_FAULTS_H

#include <stddef.h>
#include <stdint.h>

struct rt_faults {
    int corrupt_rank; /* -1: off */
    int64_t corrupt_step;
    int nan_rank; /* -1: off */
    int64_t nan_step;
    int slow_rank; /* -1: off */
    double slow_ms;
    int stall_rank; /* -1: off */
    int64_t stall_step;
    double stall_seconds;
    int grad_rank; /* -1: off */
    int64_t grad_step;
    int64_t grad_index; /* -1: the first pruned coordinate */
};

/* Parses the four variables into f. Cannot fail: a malformed value turns its hook off. */
void rt_faults_from_env(struct rt_faults *f);

/* On the straggler rank: sleeps slow_ms. Every step. */
void rt_faults_slow(const struct rt_faults *f, int rank);

/* On the stalling rank at its step: warns, then sleeps stall_seconds. */
void rt_faults_stall(const struct rt_faults *f, int rank, int64_t step);

/* On the NaN rank at its step: dlogits[0] = NaN (dlogits borrowed, at least one value). */
void rt_faults_nan_step(const struct rt_faults *f, int rank, int64_t step, float *dlogits);

/* On the NaN-gradient rank at its step, when layer block [lo, hi) of grads holds the chosen
 * coordinate (keep: the mask, 1 = kept, or NULL): grads[it] = NaN. */
void rt_faults_nan_grad(const struct rt_faults *f, int rank, int64_t step, float *grads, size_t lo,
                        size_t hi, const uint8_t *keep);

/* On the corrupt rank when step (the steps done) is its step: params[0] += 1e-3. */
void rt_faults_corrupt(const struct rt_faults *f, int rank, int64_t step, float *params);

#endif
