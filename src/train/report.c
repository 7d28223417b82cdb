/* report.c - evaluating model files, and the end-of-job report of a multi-phase job.
 *
 * Each phase leaves its model as a file in the run directory (model-<phase>.h5, CSR when
 * pruned). At the end every phase's file is evaluated on the test set and timed in the
 * same run, so the inference figures compare like with like: same machine, same moment,
 * same rows, the kernel each file is stored for (GEMM for dense, CSR for pruned). */
#include "ringtrain/log.h"
#include "ringtrain/model_file.h"
#include "ringtrain/status.h"
#include "ringtrain/train.h"
#include "train/phases.h"
#include "train/trainer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TIMING_SECONDS  0.3 /* per model, per rank: enough repeats for a stable minimum */
#define TIMING_MIN_REPS 5

/* Where the evaluation rows come from besides the path: a synth: source is generated from
 * (seed, rows), a file's datasets are [data] x and y. The training job's, for the report;
 * the built-in defaults for `ringtrain eval`. */
struct synth_opts {
    uint64_t seed;
    int64_t rows;
    const char *x_name, *y_name;
};

static int eval_open(rt_comm_t *comm, const char *model_path, const char *data_path, int64_t batch,
                     double memory_mb, const struct synth_opts *so, struct rt_model *m,
                     struct rt_dataset **d)
{
    int rank = rt_comm_rank(comm), world = rt_comm_size(comm);
    struct rt_model_spec spec;
    memset(&spec, 0, sizeof spec);
    /* Rank 0 reads the model file and broadcasts it: one reader, one verdict. */
    int st = rank == 0 ? rt_model_file_spec(model_path, &spec) : RT_OK;
    RT_TRY(rt_comm_agree(comm, st));
    rt_comm_bcast(comm, &spec, sizeof spec, 0);
    int64_t gb = eval_global_batch(batch, world);
    st = rt_model_init(m, &spec, (int)local_rows_max(gb, world));
    if (st == RT_OK && rank == 0) st = rt_model_file_load(model_path, m);
    RT_TRY(rt_comm_agree(comm, st));
    rt_comm_bcast(comm, m->params, m->n_params * sizeof(float), 0);
    /* A model stored sparse is evaluated sparse: the kernel the file was made for. */
    int csr = rank == 0 ? rt_model_file_is_csr(model_path) : 0;
    rt_comm_bcast(comm, &csr, sizeof csr, 0);
    RT_TRY(rt_comm_agree(comm, csr ? rt_model_use_csr(m, 1) : RT_OK));
    struct rt_data_opts o = {.rank = rank,
                             .world = world,
                             .shuffle = RT_SHUFFLE_OFF,
                             .global_batch = gb,
                             .memory_mb = memory_mb,
                             .seed = so->seed,
                             .synth_rows = so->rows,
                             .split = 1,
                             .context = spec.input.rank == 1 ? spec.input.d[0] : 0,
                             .x_name = so->x_name,
                             .y_name = so->y_name};
    st = rt_dataset_open(d, data_path, &o);
    if (st == RT_OK)
        st = rt_dataset_validate(*d, (int)rt_shape_size(&spec.input), rt_model_spec_outputs(&spec),
                                 spec.loss);
    return rt_comm_agree(comm, st);
}

/* Forward time per row on this rank's first evaluation batch: the minimum over repeats
 * (the least disturbed run on a shared machine), then the slowest rank's. Every rank times
 * at once, so each sees the load it would see serving. */
static int time_inference(struct rt_model *m, struct rt_dataset *d, rt_comm_t *comm, double *us)
{
    struct rt_batch b;
    memset(&b, 0, sizeof b);
    int st = rt_dataset_begin_epoch(d, 0, 0);
    if (st == RT_OK) st = rt_dataset_next(d, &b);
    RT_TRY(rt_comm_agree(comm, st));
    double best = 1e30, start = rt_comm_wtime();
    for (int rep = 0; rep < TIMING_MIN_REPS || rt_comm_wtime() - start < TIMING_SECONDS; rep++) {
        double t0 = rt_comm_wtime();
        rt_model_forward(m, b.x, b.local_rows);
        double dt = rt_comm_wtime() - t0;
        best = dt < best ? dt : best;
    }
    double v = b.local_rows > 0 ? best / b.local_rows * 1e6 : 0;
    rt_comm_max_f64(comm, &v, 1);
    *us = v;
    return RT_OK;
}

static int eval_file(rt_comm_t *comm, const char *model_path, const char *data_path, int64_t batch,
                     double memory_mb, const struct synth_opts *so, int timed,
                     struct rt_eval_result *res)
{
    struct rt_model m;
    memset(&m, 0, sizeof m);
    struct rt_dataset *d = NULL;
    res->infer_us_per_sample = -1;
    int st = eval_open(comm, model_path, data_path, batch, memory_mb, so, &m, &d);
    if (st == RT_OK) st = trainer_evaluate(&m, d, comm, res);
    if (st == RT_OK && timed) st = time_inference(&m, d, comm, &res->infer_us_per_sample);
    res->csr = m.csr != NULL;
    rt_model_kernels_text(&m, res->kernels, sizeof res->kernels);
    res->nonzeros = m.n_params ? rt_model_weight_nonzeros(&m) : 0;
    res->weights = m.n_params ? rt_model_weight_count(&m) : 0;
    res->params = (int64_t)m.n_params;
    res->positions = m.positions > 0 ? m.positions : 1;
    rt_dataset_close(d);
    rt_model_free(&m);
    return st;
}

int rt_eval_run(rt_comm_t *comm, const char *model_path, const char *data_path, int64_t batch,
                double memory_mb, int threads, struct rt_eval_result *res)
{
    trainer_choose_threads(threads, rt_comm_local_size(comm));
    struct rt_config defaults;
    rt_config_defaults(&defaults);
    struct synth_opts so = {defaults.seed, defaults.synth_test_rows, NULL, NULL};
    return eval_file(comm, model_path, data_path, batch, memory_mb, &so, 0, res);
}

void trainer_phase_model_path(const struct trainer *t, int i, char *buf, size_t cap)
{
    char dir[RT_PATH_MAX];
    rt_config_run_dir(t->cfg, dir, sizeof dir);
    snprintf(buf, cap, "%s/model-%s.h5", dir, rt_phase_name(t->cfg->phases[i]));
}

int trainer_save_phase_model(struct trainer *t, int i)
{
    int st = RT_OK;
    if (t->rank == 0) {
        char dir[RT_PATH_MAX], path[RT_PATH_MAX + 32];
        rt_config_run_dir(t->cfg, dir, sizeof dir);
        trainer_phase_model_path(t, i, path, sizeof path);
        st = trainer_make_dirs(dir, "[train] out");
        int sparse = rt_weights_sparsity(&t->model, t->model.params, -1) >= 0.5;
        if (st == RT_OK)
            st = sparse ? rt_model_save_csr(path, &t->model, t->config_text)
                        : rt_model_save(path, &t->model, t->config_text);
    }
    return rt_comm_agree(t->comm, st);
}

struct report_row {
    char phase[32];
    char path[RT_PATH_MAX + 32];
    struct rt_eval_result e;
    long long bytes;
};

static void json_number(FILE *f, const char *key, double v, int present)
{
    if (present)
        fprintf(f, ", \"%s\": %.6g", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

/* report.json: written whole to a temporary name, then renamed, like every other file. */
static int write_json(const char *path, const struct report_row *rows, int n, int has_test)
{
    char tmp[RT_PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return rt_errorf(RT_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    fprintf(f, "[\n");
    for (int i = 0; i < n; i++) {
        const struct report_row *r = &rows[i];
        fprintf(f, "  {\"phase\": \"%s\", \"params\": %lld, \"nonzeros\": %lld, \"bytes\": %lld",
                r->phase, (long long)r->e.params,
                (long long)(r->e.params - (r->e.weights - r->e.nonzeros)), r->bytes);
        json_number(f, "test_acc", r->e.acc, has_test && r->e.acc >= 0);
        json_number(f, "test_loss", r->e.loss, has_test);
        json_number(f, "infer_us_per_sample", r->e.infer_us_per_sample, has_test);
        fprintf(f, ", \"storage\": \"%s\", \"kernels\": \"%s\", \"model\": \"%s\"}%s\n",
                r->e.csr ? "csr" : "dense", r->e.kernels, r->path, i + 1 < n ? "," : "");
    }
    fprintf(f, "]\n");
    int bad = ferror(f) != 0;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return rt_errorf(RT_ERR_IO, "%s: cannot write: %s", path, strerror(err));
    }
    return RT_OK;
}

static void print_table(const struct report_row *rows, int n, int has_test)
{
    int tokens = n > 0 && rows[0].e.positions > 1; /* a language model: tokens/s too */
    rt_log0("report: %-10s %10s %10s %10s %9s %11s %9s  %s%s\n", "phase", "params", "nonzeros",
            "bytes", "test_acc", "test_loss", "us/sample", "storage", tokens ? "  tokens/s" : "");
    for (int i = 0; i < n; i++) {
        const struct report_row *r = &rows[i];
        char acc[32] = "-", loss[32] = "-", us[32] = "-";
        if (has_test && r->e.acc >= 0) snprintf(acc, sizeof acc, "%.4f", r->e.acc);
        if (has_test) snprintf(loss, sizeof loss, "%.6g", r->e.loss);
        if (has_test) snprintf(us, sizeof us, "%.2f", r->e.infer_us_per_sample);
        char rate[32] = "";
        if (tokens && has_test && r->e.infer_us_per_sample > 0) /* per rank, forward only */
            snprintf(rate, sizeof rate, "  %8.0f", r->e.positions * 1e6 / r->e.infer_us_per_sample);
        rt_log0("report: %-10s %10lld %10lld %10lld %9s %11s %9s  %-7s%s\n", r->phase,
                (long long)r->e.params, (long long)(r->e.params - (r->e.weights - r->e.nonzeros)),
                r->bytes, acc, loss, us, r->e.csr ? "csr" : "dense", rate);
    }
    /* which kernel each layer ran, where some ran sparse: us/sample is theirs */
    for (int i = 0; i < n; i++)
        if (rows[i].e.csr) rt_log0("report: %-10s kernels %s\n", rows[i].phase, rows[i].e.kernels);
}

/* The report's rows: a teacher read from a file, then every phase's model. */
static int collect_rows(struct trainer *t, struct report_row *rows, int *n)
{
    const struct rt_config *c = t->cfg;
    *n = 0;
    for (int i = 0; i < c->n_phases; i++) {
        if (phase_ops_of(c->phases[i])->teacher && strcmp(c->teacher, RT_TEACHER_PREVIOUS) != 0) {
            snprintf(rows[*n].phase, sizeof rows[*n].phase, "teacher");
            snprintf(rows[(*n)++].path, sizeof rows[0].path, "%s", c->teacher);
        }
        snprintf(rows[*n].phase, sizeof rows[*n].phase, "%s", rt_phase_name(c->phases[i]));
        trainer_phase_model_path(t, i, rows[*n].path, sizeof rows[0].path);
        (*n)++;
    }
    /* A run resumed into another directory lacks the earlier phases' files: their rows
     * are left out, said once, rather than failing a finished job. */
    int kept = 0;
    for (int i = 0; i < *n; i++) {
        struct report_row *r = &rows[kept];
        if (kept != i) *r = rows[i];
        memset(&r->e, 0, sizeof r->e);
        r->e.infer_us_per_sample = -1;
        struct stat sb;
        r->bytes = t->rank == 0 && stat(r->path, &sb) == 0 ? (long long)sb.st_size : -1;
        rt_comm_bcast(t->comm, &r->bytes, sizeof r->bytes, 0);
        if (r->bytes < 0) {
            rt_log0("report: %s: no such file: the %s row is left out\n", r->path, r->phase);
            continue;
        }
        struct synth_opts so = {c->seed, c->synth_test_rows, c->data_x, c->data_y};
        if (t->test)
            RT_TRY(
                eval_file(t->comm, r->path, c->test, c->eval_batch, c->memory_mb, &so, 1, &r->e));
        kept++;
    }
    *n = kept;
    return RT_OK;
}

int trainer_report(struct trainer *t)
{
    struct report_row rows[2 * RT_MAX_PHASES];
    int n = 0;
    RT_TRY(collect_rows(t, rows, &n));
    int has_test = t->test != NULL;
    print_table(rows, n, has_test);
    int st = RT_OK;
    if (t->rank == 0) {
        char dir[RT_PATH_MAX], path[RT_PATH_MAX + 32];
        rt_config_run_dir(t->cfg, dir, sizeof dir);
        snprintf(path, sizeof path, "%s/report.json", dir);
        st = write_json(path, rows, n, has_test);
        if (st == RT_OK) rt_log0("report: %s\n", path);
    }
    return rt_comm_agree(t->comm, st);
}
