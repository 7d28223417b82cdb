/* progress.c - what a run says while it runs: progress lines (loss, rate, ETA, the step
 * time split and the straggler), the end of each epoch (mean loss, test metrics, a metrics
 * row) and evaluation. Metrics are reduced across ranks only here, when printed. */
#include "ringtrain/log.h"
#include "ringtrain/status.h"
#include "ringtrain/trace.h"
#include "train/phases.h"
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>

/* Loss and accuracy over every row of d exactly once: the order is file order and the
 * last short batch is split between ranks like any other, so sums over ranks count each
 * sample once. The loop itself has no collectives; one agreement and one reduction end it. */
int trainer_evaluate(struct rt_model *m, struct rt_dataset *d, rt_comm_t *comm,
                     struct rt_eval_result *r)
{
    double sums[3] = {0, 0, 0}; /* loss sum, correct, rows */
    const int classify = m->spec.loss == RT_LOSS_CE;
    rt_model_set_training(m, 0, 0, 0, NULL); /* dropout off */
    int st = rt_dataset_begin_epoch(d, 0, 0);
    for (int64_t k = 0; st == RT_OK && k < rt_dataset_steps_per_epoch(d); k++) {
        struct rt_batch b;
        st = rt_dataset_next(d, &b);
        if (st != RT_OK) break;
        rt_model_forward(m, b.x, b.local_rows);
        sums[0] += rt_model_loss(m, b.y, b.local_rows, 1.0);
        if (classify) sums[1] += (double)rt_model_count_correct(m, b.y, b.local_rows);
        sums[2] += b.local_rows;
    }
    RT_TRY(rt_comm_agree(comm, st));
    rt_comm_sum_f64(comm, sums, 3);
    r->samples = (int64_t)sums[2];
    r->loss = sums[0] / rt_model_loss_norm(m, r->samples);
    r->acc = classify ? sums[1] / (sums[2] * m->positions) : -1.0; /* per token */
    return RT_OK;
}

static void format_eta(char *buf, size_t size, double seconds)
{
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else
        snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
}

/* "epoch 3/15" in the training phase, "prune epoch 2/6" in others (epochs of the phase). */
static void epoch_label(const struct trainer *t, char *buf, size_t cap)
{
    const struct phase_ops *ph = trainer_phase(t);
    int64_t e = t->epoch - t->phase_epoch0 + 1;
    snprintf(buf, cap, "%sepoch %lld/%lld", ph->label, (long long)e, (long long)ph->epochs(t));
}

/* " | sparsity 0.900" while masks are in force; with per_layer, each layer's too. */
static void sparsity_label(const struct trainer *t, char *buf, size_t cap, int per_layer)
{
    const struct rt_masks *mk = trainer_masks(t);
    buf[0] = '\0';
    if (!mk) return;
    size_t n = (size_t)snprintf(buf, cap, " | sparsity %.3f", rt_masks_sparsity(mk, -1));
    int shown = 0; /* layers with weights only: pooling and the like have none to prune */
    for (int i = 0; per_layer && i < t->model.n_layers && n < cap; i++)
        if (rt_model_layer_prunable(&t->model, i))
            n += (size_t)snprintf(buf + n, cap - n, "%s%.3f", shown++ ? "/" : " (layers ",
                                  rt_masks_sparsity(mk, i));
    if (per_layer && n < cap) snprintf(buf + n, cap - n, ")");
}

/* The slowest rank by compute time and the rank that waited most for its left neighbour,
 * from every rank's (compute, comm, wait) sums of the interval: raw step time cannot name
 * a straggler (every rank's step ends together), waiting time does. */
static void find_stragglers(struct trainer *t, struct metrics_step *r)
{
    struct progress *p = &t->prog;
    double mine[3] = {p->compute_s, p->comm_s, p->wait_s}, steps = p->steps > 0 ? p->steps : 1;
    rt_comm_allgather_f64(t->comm, mine, 3, t->timings);
    r->slowest_rank = r->max_wait_rank = 0;
    for (int q = 1; q < t->world; q++) {
        if (t->timings[3 * q] > t->timings[3 * r->slowest_rank]) r->slowest_rank = q;
        if (t->timings[3 * q + 2] > t->timings[3 * r->max_wait_rank + 2]) r->max_wait_rank = q;
    }
    r->compute_s = mine[0] / steps;
    r->comm_s = mine[1] / steps;
    r->wait_s = mine[2] / steps;
    r->slowest_compute_s = t->timings[3 * r->slowest_rank] / steps;
    r->max_wait_s = t->timings[3 * r->max_wait_rank + 2] / steps;
}

/* " | compute 2.10 ms comm 0.31 wait 0.05 | slowest r1 +8% | waits r0 0.40 ms" */
static void timing_label(const struct trainer *t, const struct metrics_step *r, char *buf,
                         size_t cap)
{
    double mean = 0;
    for (int q = 0; q < t->world; q++)
        mean += t->timings[3 * q];
    mean /= t->world;
    double excess = mean > 0 ? 100.0 * (t->timings[3 * r->slowest_rank] / mean - 1) : 0;
    size_t n = (size_t)snprintf(buf, cap, " | step ms: compute %.2f comm %.2f wait %.2f",
                                1e3 * r->compute_s, 1e3 * r->comm_s, 1e3 * r->wait_s);
    if (t->world > 1 && n < cap)
        snprintf(buf + n, cap - n, " | slowest r%d +%.0f%% compute, r%d waits %.2f ms",
                 r->slowest_rank, excess, r->max_wait_rank, 1e3 * r->max_wait_s);
}

int trainer_report_progress(struct trainer *t)
{
    struct progress *p = &t->prog;
    double sums[3] = {p->loss_sum, p->rows, p->correct};
    rt_comm_sum_f64(t->comm, sums, 3);
    struct metrics_step r;
    find_stragglers(t, &r);
    double loss = sums[0] / rt_model_loss_norm(&t->model, (int64_t)sums[1]);
    /* The reduced value is identical on every rank, so this branch needs no agreement. */
    if (!isfinite(loss))
        return rt_errorf(RT_ERR_NONFINITE, "step %lld (epoch %lld): training loss is %g",
                         (long long)t->step, (long long)t->epoch + 1, loss);
    double now = rt_comm_wtime(), dt = now - p->t_last;
    double rate = dt > 0 ? (t->samples - p->samples_last) / dt : 0;
    char eta[32], label[64], sp[32], timing[160];
    format_eta(eta, sizeof eta,
               rate > 0 ? (double)(t->total_steps - t->phase_step) * (double)t->cfg->batch / rate
                        : 0);
    epoch_label(t, label, sizeof label);
    sparsity_label(t, sp, sizeof sp, 0);
    timing_label(t, &r, timing, sizeof timing);
    rt_log0("%s | step %lld/%lld | loss %.4f | lr %.2e%s | %.0f samples/s | ETA %s%s\n", label,
            (long long)t->phase_step, (long long)t->total_steps, loss, t->lr, sp, rate, eta,
            timing);
    r.loss = loss;
    r.accuracy = t->model.spec.loss == RT_LOSS_CE && sums[1] > 0
                     ? sums[2] / (sums[1] * t->model.positions)
                     : -1;
    const struct rt_masks *mk = trainer_masks(t);
    r.sparsity = mk ? rt_masks_sparsity(mk, -1) : 0;
    r.samples_per_s = rate;
    trainer_metrics_step(t, &r);
    p->loss_sum = p->rows = p->correct = 0;
    p->compute_s = p->comm_s = p->wait_s = p->steps = 0;
    p->t_last = now;
    p->samples_last = t->samples;
    return RT_OK;
}

void trainer_result_from_metric(const struct rt_ckpt_metric *r, struct rt_train_result *res)
{
    res->loss = r->loss;
    res->has_test = r->test_loss >= 0;
    res->test_loss = r->test_loss;
    res->test_acc = r->test_acc;
}

/* The test set's loss and accuracy into row, and their part of the epoch line into test. */
static int evaluate_test(struct trainer *t, struct rt_ckpt_metric *row, char *test, size_t cap)
{
    if (!t->test) return RT_OK;
    struct rt_eval_result e;
    double te = rt_trace_now();
    RT_TRY(trainer_evaluate(&t->model, t->test, t->comm, &e));
    rt_trace_span(RT_TR_EVALUATE, 0, te, rt_trace_now());
    row->test_loss = e.loss;
    row->test_acc = e.acc;
    if (e.acc >= 0)
        snprintf(test, cap, " | test_loss %.4f | test_acc %.4f", e.loss, e.acc);
    else
        snprintf(test, cap, " | test_loss %.6f", e.loss);
    return RT_OK;
}

int trainer_report_eval(struct trainer *t)
{
    struct rt_ckpt_metric row = {.test_loss = -1, .test_acc = -1};
    char test[96] = "";
    RT_TRY(evaluate_test(t, &row, test, sizeof test));
    if (t->test)
        rt_log0("eval step %lld: %s%s\n", (long long)t->step, trainer_phase(t)->name, test);
    trainer_metrics_event(t, "eval", "step %lld test_loss %.6f", (long long)t->step, row.test_loss);
    return RT_OK;
}

/* The end of an epoch, or of the run inside one: mean loss, test metrics, a metrics row. */
int trainer_end_epoch(struct trainer *t, struct rt_train_result *res)
{
    struct progress *p = &t->prog;
    double sums[3] = {p->epoch_loss, p->epoch_rows, p->epoch_correct};
    rt_comm_sum_f64(t->comm, sums, 3);
    struct rt_ckpt_metric row = {
        .epoch = t->epoch, .step = t->step, .test_loss = -1, .test_acc = -1, .lr = t->lr};
    snprintf(row.phase, sizeof row.phase, "%s", trainer_phase(t)->name);
    row.loss = sums[0] / rt_model_loss_norm(&t->model, (int64_t)sums[1]);
    p->epoch_loss = p->epoch_rows = p->epoch_correct = 0;
    if (!isfinite(row.loss))
        return rt_errorf(RT_ERR_NONFINITE, "step %lld (epoch %lld): training loss is %g",
                         (long long)t->step, (long long)t->epoch + 1, row.loss);
    char test[96] = "";
    RT_TRY(evaluate_test(t, &row, test, sizeof test));
    /* This epoch's (or, resumed inside it, this run's part of it) training throughput. */
    double secs = t->train_seconds - p->epoch_seconds0;
    row.samples_per_s = secs > 0 ? (t->samples - p->epoch_samples0) / secs : 0;
    row.seconds = t->wall_before + rt_comm_wtime() - t->wall_start;
    trainer_add_metric(t, &row);
    trainer_result_from_metric(&row, res);
    double acc = t->model.spec.loss == RT_LOSS_CE && sums[1] > 0 ? sums[2] / sums[1] : -1;
    const struct rt_masks *mk = trainer_masks(t);
    trainer_metrics_epoch(t, &row, acc, mk ? rt_masks_sparsity(mk, -1) : 0);
    char label[64], sp[320];
    epoch_label(t, label, sizeof label);
    sparsity_label(t, sp, sizeof sp, 1);
    rt_log0("%s done | loss %.4f%s%s\n", label, row.loss, test, sp);
    return RT_OK;
}
