/* faults.c - fault-injection test hooks (contract in faults.h). */
#include "train/faults.h"
#include "ringtrain/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void rt_faults_from_env(struct rt_faults *f)
{
    const char *fault = getenv("RINGTRAIN_FAULT_CORRUPT");
    f->corrupt_rank = -1;
    if (fault && sscanf(fault, "%d:%lld", &f->corrupt_rank, (long long *)&f->corrupt_step) != 2)
        f->corrupt_rank = -1;
    const char *nan = getenv("RINGTRAIN_FAULT_NAN"); /* RANK:STEP: a NaN loss gradient */
    f->nan_rank = -1;
    if (nan && sscanf(nan, "%d:%lld", &f->nan_rank, (long long *)&f->nan_step) != 2)
        f->nan_rank = -1;
    const char *slow = getenv("RINGTRAIN_FAULT_SLOW"); /* RANK:MS per step: a straggler */
    f->slow_rank = -1;
    if (slow && sscanf(slow, "%d:%lf", &f->slow_rank, &f->slow_ms) != 2) f->slow_rank = -1;
    const char *stall = getenv("RINGTRAIN_FAULT_STALL"); /* RANK:STEP:SECONDS, for hang tests */
    f->stall_rank = -1;
    if (stall && sscanf(stall, "%d:%lld:%lf", &f->stall_rank, (long long *)&f->stall_step,
                        &f->stall_seconds) != 3)
        f->stall_rank = -1;
    const char *grad = getenv("RINGTRAIN_FAULT_NAN_GRAD"); /* RANK:STEP:INDEX|pruned */
    char where[32] = "";
    f->grad_rank = -1;
    if (grad && sscanf(grad, "%d:%lld:%31s", &f->grad_rank, (long long *)&f->grad_step, where) == 3)
        f->grad_index = strcmp(where, "pruned") == 0 ? -1 : atoll(where);
    else
        f->grad_rank = -1;
}

void rt_faults_slow(const struct rt_faults *f, int rank)
{
    if (rank != f->slow_rank) return;
    struct timespec nap = {0, (long)(f->slow_ms * 1e6)};
    nanosleep(&nap, NULL);
}

void rt_faults_stall(const struct rt_faults *f, int rank, int64_t step)
{
    if (rank != f->stall_rank || step != f->stall_step) return;
    rt_warn("test hook: rank %d stalls for %g s at step %lld\n", rank, f->stall_seconds,
            (long long)step);
    struct timespec nap = {(time_t)f->stall_seconds,
                           (long)((f->stall_seconds - (double)(time_t)f->stall_seconds) * 1e9)};
    nanosleep(&nap, NULL);
}

void rt_faults_nan_step(const struct rt_faults *f, int rank, int64_t step, float *dlogits)
{
    if (rank == f->nan_rank && step == f->nan_step) dlogits[0] = NAN;
}

void rt_faults_nan_grad(const struct rt_faults *f, int rank, int64_t step, float *grads, size_t lo,
                        size_t hi, const uint8_t *keep)
{
    if (rank != f->grad_rank || step != f->grad_step) return;
    if (f->grad_index >= 0) {
        if ((size_t)f->grad_index >= lo && (size_t)f->grad_index < hi) grads[f->grad_index] = NAN;
        return;
    }
    for (size_t i = lo; keep && i < hi; i++)
        if (!keep[i]) {
            grads[i] = NAN;
            return;
        }
}

void rt_faults_corrupt(const struct rt_faults *f, int rank, int64_t step, float *params)
{
    if (rank == f->corrupt_rank && step == f->corrupt_step) params[0] += 1e-3f;
}
