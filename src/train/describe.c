/* describe.c - the shapes of a job's models for --print-config: each layer's output shape
 * and parameters, inferred from the input shape ([model] input_shape, or the training data's
 * dimensions). Printed as INI comments, so the output stays a valid job file. */
#include "ringtrain/config.h"
#include "ringtrain/dataset.h"
#include "ringtrain/model.h"
#include "ringtrain/status.h"
#include "ringtrain/train.h"
#include "train/phases.h"

#include <string.h>

/* One model: its input, then one line per layer. */
static int describe_spec(FILE *out, const char *key, struct rt_model_spec *spec,
                         const struct rt_shape *data, const char *train)
{
    char what[RT_PATH_MAX + 64], shape[64], text[160];
    snprintf(what, sizeof what, "%s: %s", train, key);
    if (data->rank) RT_TRY(rt_model_spec_bind_input(spec, data, what));
    struct rt_model m;
    RT_TRY(rt_model_init(&m, spec, 1));
    rt_shape_text(shape, sizeof shape, &spec->input);
    fprintf(out, "; %s: input %s%s\n", key, shape,
            spec->widths_form ? ""
            : data->rank      ? " (from data.train)"
                              : "");
    for (int i = 0; i < m.n_layers; i++) {
        rt_model_layer_text(&m, i, text, sizeof text);
        rt_shape_text(shape, sizeof shape, rt_model_layer_shape(&m, i));
        fprintf(out, ";   %d %s -> %s, %zu parameters\n", i, text, shape,
                rt_model_layer_count(&m, i));
    }
    fprintf(out, ";   %zu parameters, %.3g MFLOP per sample forward\n", m.n_params,
            rt_model_forward_flops_per_sample(&m) / 1e6);
    rt_model_free(&m);
    return RT_OK;
}

int rt_train_describe(const struct rt_config *c, FILE *out)
{
    struct rt_model_spec model, student;
    struct rt_shape data = {0};
    rt_config_model_spec(c, &model);
    rt_config_student_spec(c, &student);
    int distill = 0; /* a phase that brings its own model: the student */
    for (int i = 0; i < c->n_phases; i++)
        distill |= phase_ops_of(c->phases[i])->spec != NULL;
    int needs_data = model.input.rank == 0 || (distill && student.input.rank == 0);
    if (needs_data) RT_TRY(rt_dataset_peek_shape(c->train, c->data_x, &data));
    if (data.rank == 1 && data.d[0] == 0) data.d[0] = (int)c->context; /* text: (T) */
    RT_TRY(describe_spec(out, "[model] layers", &model, &data, c->train));
    if (distill) RT_TRY(describe_spec(out, "[distill] student_layers", &student, &data, c->train));
    return RT_OK;
}
