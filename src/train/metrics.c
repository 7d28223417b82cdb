/* metrics.c - metrics.jsonl: rank 0 appends one JSON object per progress line ("step"), per
 * finished epoch ("epoch") and per event (phase start and end, checkpoint, mask update,
 * stop), to the run directory. A resumed run appends to the same file: readers keep the
 * last line of a (kind, step). Each line is flushed as it is written, so a killed job keeps
 * everything up to its last line. Schema: README "Metrics". */
#include "ringtrain/log.h"
#include "ringtrain/status.h"
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringtrain/trace.h"

#define TRACE_CAPACITY ((size_t)1 << 20) /* events per rank: 24 MiB */

int trainer_metrics_open(struct trainer *t)
{
    if (t->rank != 0) return RT_OK;
    char dir[RT_PATH_MAX], path[RT_PATH_MAX + 32];
    rt_config_run_dir(t->cfg, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    RT_TRY(trainer_make_dirs(dir, "[train] out"));
    t->metrics_file = fopen(path, "a");
    if (!t->metrics_file)
        return rt_errorf(RT_ERR_IO, "%s: cannot open for appending: %s", path, strerror(errno));
    return RT_OK;
}

void trainer_metrics_close(struct trainer *t)
{
    if (t->metrics_file) fclose(t->metrics_file);
    t->metrics_file = NULL;
}

/* A number, or null when absent (negative markers, NaN). */
static void num(FILE *f, const char *key, double v, int present)
{
    if (present && isfinite(v))
        fprintf(f, ", \"%s\": %.6g", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

static void head(const struct trainer *t, const char *kind)
{
    fprintf(t->metrics_file,
            "{\"kind\": \"%s\", \"phase\": \"%s\", \"epoch\": %lld, \"step\": %lld, "
            "\"phase_step\": %lld, \"time\": %.3f",
            kind, rt_phase_name(t->cfg->phases[t->phase_index]),
            (long long)(t->epoch - t->phase_epoch0 + 1), (long long)t->step,
            (long long)t->phase_step, t->wall_before + rt_comm_wtime() - t->wall_start);
}

static void tail(const struct trainer *t)
{
    fputs("}\n", t->metrics_file);
    fflush(t->metrics_file);
}

void trainer_metrics_step(struct trainer *t, const struct metrics_step *r)
{
    if (!t->metrics_file) return;
    FILE *f = t->metrics_file;
    head(t, "step");
    num(f, "loss", r->loss, 1);
    num(f, "accuracy", r->accuracy, r->accuracy >= 0);
    num(f, "lr", t->lr, 1);
    num(f, "sparsity", r->sparsity, 1);
    num(f, "samples_per_s", r->samples_per_s, 1);
    num(f, "compute_s", r->compute_s, 1);
    num(f, "comm_s", r->comm_s, 1);
    num(f, "wait_s", r->wait_s, 1);
    fprintf(f, ", \"slowest_rank\": %d", r->slowest_rank);
    num(f, "slowest_compute_s", r->slowest_compute_s, 1);
    fprintf(f, ", \"max_wait_rank\": %d", r->max_wait_rank);
    num(f, "max_wait_s", r->max_wait_s, 1);
    tail(t);
}

void trainer_metrics_epoch(struct trainer *t, const struct rt_ckpt_metric *row, double accuracy,
                           double sparsity)
{
    if (!t->metrics_file) return;
    FILE *f = t->metrics_file;
    head(t, "epoch");
    num(f, "loss", row->loss, 1);
    num(f, "accuracy", accuracy, accuracy >= 0);
    num(f, "test_loss", row->test_loss, row->test_loss >= 0);
    num(f, "test_acc", row->test_acc, row->test_acc >= 0);
    num(f, "lr", row->lr, 1);
    num(f, "sparsity", sparsity, 1);
    num(f, "samples_per_s", row->samples_per_s, 1);
    tail(t);
}

void trainer_metrics_event(struct trainer *t, const char *event, const char *fmt, ...)
{
    if (!t->metrics_file) return;
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    for (char *c = detail; *c; c++) /* details are plain text: keep the JSON valid */
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '\'';
    head(t, "event");
    fprintf(t->metrics_file, ", \"event\": \"%s\", \"detail\": \"%s\"", event, detail);
    tail(t);
}

/* ---- the trace ------------------------------------------------------------------------ */

int trainer_trace_begin(struct trainer *t, const char *path)
{
    t->trace_path = path;
    if (!path) return RT_OK;
    RT_TRY(rt_comm_agree(t->comm, rt_trace_start(TRACE_CAPACITY)));
    rt_comm_barrier(t->comm); /* every rank's time 0 is this moment */
    t->trace_t0 = rt_trace_now();
    return RT_OK;
}

/* Rank 0's output: its own events, then each other rank's, received in turn. */
static int write_trace(struct trainer *t, FILE *f, size_t *total, size_t *lost_all)
{
    const char *phases[RT_MAX_PHASES];
    for (int i = 0; i < t->cfg->n_phases; i++)
        phases[i] = rt_phase_name(t->cfg->phases[i]);
    int first = 1;
    fputs("{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n", f);
    for (int q = 0; q < t->world; q++) {
        fprintf(f,
                "%s{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": "
                "{\"name\": \"rank %d\"}}",
                first ? "" : ",\n", q, q);
        fprintf(f,
                ",\n{\"name\": \"process_sort_index\", \"ph\": \"M\", \"pid\": %d, "
                "\"args\": {\"sort_index\": %d}}",
                q, q);
        first = 0;
    }
    size_t n, lost;
    const struct rt_trace_event *mine = rt_trace_events(&n, &lost);
    rt_trace_write(f, 0, mine, n, t->trace_t0, phases, &first);
    *total = n;
    *lost_all = lost;
    for (int q = 1; q < t->world; q++) {
        uint64_t head[3]; /* events, dropped, t0 as bits */
        rt_comm_recv_bytes(t->comm, head, sizeof head, q);
        struct rt_trace_event *ev = malloc((head[0] ? head[0] : 1) * sizeof *ev);
        if (!ev)
            return rt_errorf(RT_ERR_NOMEM, "--trace: %llu events of rank %d",
                             (unsigned long long)head[0], q);
        rt_comm_recv_bytes(t->comm, ev, head[0] * sizeof *ev, q);
        double t0;
        memcpy(&t0, &head[2], sizeof t0);
        rt_trace_write(f, q, ev, head[0], t0, phases, &first);
        free(ev);
        *total += head[0];
        *lost_all += head[1];
    }
    fputs("\n]}\n", f);
    return RT_OK;
}

int trainer_trace_end(struct trainer *t)
{
    if (!t->trace_path) return RT_OK;
    int st = RT_OK;
    if (t->rank != 0) {
        size_t n, lost;
        const struct rt_trace_event *ev = rt_trace_events(&n, &lost);
        uint64_t head[3] = {n, lost, 0};
        memcpy(&head[2], &t->trace_t0, sizeof t->trace_t0);
        rt_comm_send_bytes(t->comm, head, sizeof head, 0);
        rt_comm_send_bytes(t->comm, ev, n * sizeof *ev, 0);
    } else {
        char tmp[RT_PATH_MAX + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", t->trace_path);
        FILE *f = fopen(tmp, "w");
        size_t total = 0, lost = 0;
        /* Every other rank sends whatever happens here, so rank 0 receives even when it
         * cannot write. */
        FILE *out = f ? f : fopen("/dev/null", "w");
        st = out ? write_trace(t, out, &total, &lost) : RT_ERR_IO;
        if (!f) st = rt_errorf(RT_ERR_IO, "--trace %s: cannot write: %s", tmp, strerror(errno));
        int bad = out ? (ferror(out) || fclose(out) != 0) : 1;
        if (st == RT_OK && (bad || rename(tmp, t->trace_path) != 0))
            st = rt_errorf(RT_ERR_IO, "--trace %s: cannot write: %s", t->trace_path,
                           strerror(errno));
        if (st == RT_OK)
            rt_log0("trace: %s: %zu events from %d rank%s%s\n", t->trace_path, total, t->world,
                    t->world > 1 ? "s" : "", lost ? " (some dropped: the buffer was full)" : "");
    }
    rt_trace_stop();
    return rt_comm_agree(t->comm, st);
}
