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
#include <string.h>

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
