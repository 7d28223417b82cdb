/* trace.c - the process-wide event buffer behind trace.h. */
#include "ringtrain/trace.h"
#include "ringtrain/status.h"

#include <stdlib.h>
#include <time.h>

static struct rt_trace_event *events;
static size_t cap, count, dropped;

int rt_trace_start(size_t capacity)
{
    rt_trace_stop();
    events = malloc((capacity ? capacity : 1) * sizeof *events);
    if (!events) return rt_errorf(RT_ERR_NOMEM, "--trace: cannot hold %zu events", capacity);
    cap = capacity;
    return RT_OK;
}

void rt_trace_stop(void)
{
    free(events);
    events = NULL;
    cap = count = dropped = 0;
}

int rt_trace_on(void)
{
    return events != NULL;
}

double rt_trace_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void record(enum rt_trace_name name, int arg, double t0, double dur)
{
    if (!events) return;
    if (count == cap) {
        dropped++;
        return;
    }
    events[count++] = (struct rt_trace_event){t0, dur, (int32_t)name, arg};
}

void rt_trace_span(enum rt_trace_name name, int arg, double t0, double t1)
{
    record(name, arg, t0, t1 >= t0 ? t1 - t0 : 0);
}

void rt_trace_instant(enum rt_trace_name name, int arg, double t)
{
    record(name, arg, t, -1);
}

const struct rt_trace_event *rt_trace_events(size_t *n, size_t *lost)
{
    *n = count;
    *lost = dropped;
    return events;
}

/* Names as Perfetto shows them; the arg goes into the name where it identifies the span. */
static void event_name(char *buf, size_t size, const struct rt_trace_event *e,
                       const char *const *phase_names)
{
    static const char *const names[RT_TR_N] = {"forward",
                                               "loss",
                                               "backward layer %d",
                                               "reduce-scatter bucket %d",
                                               "allgather bucket %d",
                                               "recursive doubling bucket %d",
                                               "MPI_Allreduce bucket %d",
                                               "waiting for gradients",
                                               "optimizer",
                                               "mask update",
                                               "checkpoint",
                                               "evaluate",
                                               "teacher cache",
                                               "phase %s"};
    int k = e->name >= 0 && e->name < RT_TR_N ? e->name : RT_TR_FORWARD;
    if (k == RT_TR_PHASE)
        snprintf(buf, size, names[k], phase_names ? phase_names[e->arg] : "?");
    else
        snprintf(buf, size, names[k], e->arg);
}

static const char *category(int name)
{
    switch (name) {
    case RT_TR_REDUCE_SCATTER:
    case RT_TR_ALLGATHER:
    case RT_TR_RD:
    case RT_TR_MPI_ALLREDUCE:
    case RT_TR_COMM_WAIT:
        return "comm";
    case RT_TR_CHECKPOINT:
    case RT_TR_EVALUATE:
    case RT_TR_TEACHER_CACHE:
        return "io";
    case RT_TR_PHASE:
    case RT_TR_MASK_UPDATE:
        return "control";
    default:
        return "compute";
    }
}

void rt_trace_write(FILE *f, int rank, const struct rt_trace_event *ev, size_t n, double t0,
                    const char *const *phase_names, int *first)
{
    char name[96];
    for (size_t i = 0; i < n; i++) {
        const struct rt_trace_event *e = &ev[i];
        event_name(name, sizeof name, e, phase_names);
        fprintf(f, "%s{\"name\": \"%s\", \"cat\": \"%s\", \"pid\": %d, \"tid\": 0, \"ts\": %.3f",
                *first ? "" : ",\n", name, category(e->name), rank, (e->ts - t0) * 1e6);
        if (e->dur >= 0)
            fprintf(f, ", \"ph\": \"X\", \"dur\": %.3f}", e->dur * 1e6);
        else
            fprintf(f, ", \"ph\": \"i\", \"s\": \"p\"}");
        *first = 0;
    }
}
