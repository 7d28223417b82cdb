/* trace.h - a timeline of what this process does, for `ringtrain train --trace FILE`:
 * spans (forward, backward of each layer, each bucket's reduce-scatter and allgather,
 * optimizer, mask updates, checkpoint writes, evaluation) and instants (phase
 * transitions), recorded into one buffer allocated when tracing starts, so recording never
 * allocates and costs a clock read and a store. When the buffer is full, later events are
 * counted and dropped. The trainer gathers every rank's events on rank 0, which writes the
 * Chrome trace JSON (one track per rank) that Perfetto and chrome://tracing open.
 *
 * Process-wide, like the logger: the comm and train modules both record into it. Not
 * thread-safe: only the main thread records (the comm thread, when used, does not). */
#ifndef RT_TRACE_H
#define RT_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum rt_trace_name {
    RT_TR_FORWARD,
    RT_TR_LOSS,
    RT_TR_BACKWARD,       /* arg: layer */
    RT_TR_REDUCE_SCATTER, /* arg: bucket */
    RT_TR_ALLGATHER,      /* arg: bucket */
    RT_TR_RD,             /* arg: bucket; recursive doubling */
    RT_TR_MPI_ALLREDUCE,  /* arg: bucket */
    RT_TR_COMM_WAIT,      /* blocked waiting for buckets */
    RT_TR_OPTIMIZER,
    RT_TR_MASK_UPDATE,
    RT_TR_CHECKPOINT,
    RT_TR_EVALUATE,
    RT_TR_TEACHER_CACHE,
    RT_TR_PHASE, /* instant; arg: index into [job] phases */
    RT_TR_N
};

struct rt_trace_event {
    double ts, dur; /* seconds on rt_trace_now's clock; dur < 0: an instant */
    int32_t name;   /* enum rt_trace_name */
    int32_t arg;
};

/* Starts recording into a buffer of capacity events. RT_ERR_NOMEM. */
int rt_trace_start(size_t capacity);
void rt_trace_stop(void); /* frees the buffer */
int rt_trace_on(void);

double rt_trace_now(void); /* CLOCK_MONOTONIC seconds */
void rt_trace_span(enum rt_trace_name name, int arg, double t0, double t1);
void rt_trace_instant(enum rt_trace_name name, int arg, double t);

/* The events recorded so far, and how many were dropped for lack of room. */
const struct rt_trace_event *rt_trace_events(size_t *n, size_t *dropped);

/* Writes n events of track `rank` as Chrome trace JSON objects, each preceded by ",\n"
 * unless *first (then cleared); times relative to t0, in microseconds. phase_names names
 * RT_TR_PHASE's arg. */
void rt_trace_write(FILE *f, int rank, const struct rt_trace_event *ev, size_t n, double t0,
                    const char *const *phase_names, int *first);

#endif
