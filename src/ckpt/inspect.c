/* inspect.c - `ringtrain inspect CKPT`: a human summary of a checkpoint that also proves it
 * reads back clean (every dataset is read, so every Fletcher32 checksum is verified). */
#include "h5/h5io.h"
#include "ckpt/model_io.h"
#include "h5/h5util.h"
#include "ringtrain/ckpt.h"
#include "ringtrain/model_file.h"
#include "ringtrain/status.h"

#include <stdlib.h>
#include <string.h>

/* Reads optim/m and optim/v when present, for their checksums; reports which exist. */
static int verify_moments(const char *path, size_t n, char *which, size_t cap)
{
    hid_t f;
    RT_TRY(rt_h5_open_read(path, &f));
    float *buf = malloc((n ? n : 1) * sizeof *buf);
    int st = buf ? RT_OK : rt_errorf(RT_ERR_NOMEM, "cannot allocate %zu floats", n);
    hsize_t dim = (hsize_t)n;
    which[0] = '\0';
    const char *names[] = {"optim/m", "optim/v"};
    for (int i = 0; i < 2 && st == RT_OK; i++) {
        if (H5Lexists(f, "optim", H5P_DEFAULT) <= 0 || H5Lexists(f, names[i], H5P_DEFAULT) <= 0)
            continue;
        st = rt_h5_get_f32(f, path, names[i], buf, 1, &dim);
        size_t len = strlen(which);
        snprintf(which + len, cap - len, "%s%s", len ? ", " : "", names[i] + 6);
    }
    free(buf);
    H5Fclose(f);
    return st;
}

/* "32x1x3x3" */
static void dims_text(char *buf, size_t cap, const int64_t *d, int rank)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < rank && used < cap; k++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", k ? "x" : "", (long long)d[k]);
}

static void print_sparsity(const struct rt_model *m, FILE *out)
{
    size_t zeros_all = 0, total = 0, rows = 0;
    int shown = 0;
    for (int i = 0; i < m->n_layers; i++) {
        int64_t dims[4];
        int rank = rt_model_layer_weight_dims(m, i, dims);
        if (rank == 0) continue;
        float *w;
        rt_model_layer_view(m, i, &w, NULL, NULL, NULL);
        size_t n = rt_model_layer_weights(m, i), z = 0;
        for (size_t k = 0; k < n; k++)
            z += w[k] == 0.0f;
        char d[64];
        dims_text(d, sizeof d, dims, rank);
        fprintf(out, "%s layer %d %s weight %s: %.2f%% zero\n",
                shown++ ? "          " : "sparsity  ", i, rt_model_layer_kind(m, i), d,
                100.0 * (double)z / (double)n);
        zeros_all += z;
        total += n;
        rows += (size_t)dims[0] + 1;
    }
    fprintf(out, "           all weights: %.2f%% zero (biases are never pruned)\n",
            total ? 100.0 * (double)zeros_all / (double)total : 0.0);
    /* CSR: 4 bytes per value and per column index, 8 per row offset, biases dense. */
    size_t nnz = total - zeros_all, biases = m->n_params - total;
    fprintf(out, "size       %zu parameters, %zu nonzero weights: %.2f MB dense, %.2f MB as CSR\n",
            m->n_params, nnz, (double)m->n_params * 4 / 1e6,
            ((double)nnz * 8 + (double)rows * 8 + (double)biases * 4) / 1e6);
}

/* Each layer with its output shape, for models that are not plain MLPs. */
static void print_layers(const struct rt_model *m, FILE *out)
{
    if (m->spec.widths_form) return;
    char in[64];
    rt_shape_text(in, sizeof in, &m->spec.input);
    fprintf(out, "layers     input %s\n", in);
    for (int i = 0; i < m->n_layers; i++) {
        char text[160], shape[64];
        rt_model_layer_text(m, i, text, sizeof text);
        rt_shape_text(shape, sizeof shape, rt_model_layer_shape(m, i));
        fprintf(out, "           %d %s -> %s, %zu parameters\n", i, text, shape,
                rt_model_layer_count(m, i));
    }
}

static void print_metrics(const struct rt_ckpt_state *s, const struct rt_ckpt_metric *rows,
                          const struct rt_model_spec *spec, int K, FILE *out)
{
    if (s->n_metrics == 0) fprintf(out, "metrics    no finished epoch yet\n");
    for (int64_t i = 0; i < s->n_metrics; i++) {
        const struct rt_ckpt_metric *r = &rows[i];
        fprintf(out, "%s %s epoch %lld (step %lld): loss %.4f", i ? "          " : "metrics   ",
                r->phase, (long long)r->epoch + 1, (long long)r->step, r->loss);
        if (r->test_acc >= 0)
            fprintf(out, ", test_loss %.4f, test_acc %.4f", r->test_loss, r->test_acc);
        else if (r->test_loss >= 0)
            fprintf(out, ", test_loss %.6f", r->test_loss);
        fprintf(out, ", lr %.3g, %.0f samples/s\n", r->lr, r->samples_per_s);
    }
    if (s->epoch_rows > 0)
        fprintf(out, "           epoch %lld so far: loss %.4f after %lld steps; last lr %.3g\n",
                (long long)s->epoch + 1,
                s->epoch_loss_sum / rt_loss_norm(spec->loss,
                                                 (int64_t)s->epoch_rows * rt_model_spec_positions(spec), K),
                (long long)s->step_in_epoch, s->last_lr);
}

/* The [model] layers line of the job text, when the checkpoint's model is narrower. */
static void print_job_layers(const char *path, const struct rt_model_spec *spec, FILE *out)
{
    char *text = NULL;
    if (rt_ckpt_read_config(path, &text) != RT_OK || !text) {
        rt_error_clear();
        free(text);
        return;
    }
    const char *sec = strstr(text, "[model]"), *line = sec ? strstr(sec, "\nlayers = ") : NULL;
    struct rt_model_spec job = *spec;
    char value[RT_MAX_LAYERS * 48], err[256];
    if (line) {
        line += 10;
        size_t n = strcspn(line, "\n");
        snprintf(value, sizeof value, "%.*s", (int)n, line);
        job.input.rank = 0; /* compared by layers: a layer list's input comes from the data */
        if (rt_model_spec_parse(&job, value, err, sizeof err) == 0 &&
            !rt_model_spec_same_layers(&job, spec)) {
            char sizes[RT_MAX_LAYERS * 48];
            rt_model_sizes_text(sizes, sizeof sizes, &job);
            fprintf(out, "structure  shrunk from the job's %s (structured pruning)\n", sizes);
        }
    }
    free(text);
}

static void print_header(const char *path, const struct rt_model_spec *spec,
                         const struct rt_ckpt_state *s, const struct rt_model *m, FILE *out)
{
    int format_version = RT_CKPT_FORMAT_VERSION;
    char sizes[RT_MAX_LAYERS * 48], created[64] = "?", version[64] = "?";
    hid_t f;
    if (rt_h5_open_read(path, &f) == RT_OK) {
        rt_h5_get_str(f, path, "", "created", created, sizeof created);
        rt_h5_get_str(f, path, "", "ringtrain_version", version, sizeof version);
        int n = 0;
        rt_h5_get_i32s(f, path, "", "format_version", &format_version, 1, &n);
        H5Fclose(f);
    }
    rt_model_sizes_text(sizes, sizeof sizes, spec);
    fprintf(out, "checkpoint %s\n", path);
    fprintf(out, "format     %s v%d, written %s by ringtrain %s on %d rank%s\n", RT_CKPT_FORMAT,
            format_version, created, version, s->world_size, s->world_size == 1 ? "" : "s");
    fprintf(out,
            "phase      %s (phase %d of the job): step %lld of %lld in the phase, %lld in all; "
            "epoch %lld (%lld of %lld steps done)\n",
            s->phase, s->phase_index + 1, (long long)s->phase_step, (long long)s->total_steps,
            (long long)s->step, (long long)s->epoch + 1, (long long)s->step_in_epoch,
            (long long)s->steps_per_epoch);
    if (spec->widths_form)
        fprintf(out, "model      %s, %s hidden, %s loss: %zu parameters, %.2f MiB as float32\n",
                sizes, rt_act_name(spec->act), rt_loss_name(spec->loss), m->n_params,
                (double)m->n_params * 4 / (1 << 20));
    else
        fprintf(out, "model      %s, %s loss: %zu parameters, %.2f MiB as float32\n", sizes,
                rt_loss_name(spec->loss), m->n_params, (double)m->n_params * 4 / (1 << 20));
    print_layers(m, out);
    /* A distillation checkpoint's model is the student, not [model] shrunk. */
    if (strcmp(s->phase, "distill") != 0) print_job_layers(path, spec, out);
    fprintf(out, "sampler    shuffle %s, seed %llu, global batch %lld, %lld training rows\n",
            rt_shuffle_name(s->shuffle), (unsigned long long)s->seed, (long long)s->global_batch,
            (long long)s->rows);
}

int rt_ckpt_inspect(const char *path, FILE *out)
{
    struct rt_model_spec spec;
    struct rt_ckpt_state s;
    RT_TRY(rt_ckpt_read_header(path, &spec, &s));
    struct rt_model m;
    memset(&m, 0, sizeof m);
    struct rt_ckpt_metric *rows = calloc((size_t)(s.n_metrics ? s.n_metrics : 1), sizeof *rows);
    if (!rows) return rt_errorf(RT_ERR_NOMEM, "%s: cannot allocate the metrics table", path);
    int st = rt_model_init(&m, &spec, 1);
    if (st == RT_OK) st = rt_model_file_load(path, &m); /* reads a checkpoint's /model */
    char moments[32] = "";
    if (st == RT_OK) st = verify_moments(path, m.n_params, moments, sizeof moments);
    if (st == RT_OK) st = rt_ckpt_read_metrics(path, rows, s.n_metrics, &s.n_metrics);
    if (st == RT_OK) {
        print_header(path, &spec, &s, &m, out);
        fprintf(out, "optimizer  %lld updates; state stored: %s\n", (long long)s.optim_step,
                moments[0] ? moments : "none");
        print_sparsity(&m, out);
        print_metrics(&s, rows, &spec, m.outputs, out);
        fprintf(out, "checksums  every dataset read back and verified\n");
    }
    free(rows);
    rt_model_free(&m);
    return st;
}
