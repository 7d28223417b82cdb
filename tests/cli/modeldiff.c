/* modeldiff.c - the largest difference between the parameters of two model files.
 *   modeldiff A.h5 B.h5  ->  "max_abs=... max_rel=..." ; exit 1 if the architectures differ
 * max_rel is the largest, over the weight and bias tensors, of max|a - b| / max|a|: the
 * difference relative to the tensor's scale. Float rounding differences (the only kind a
 * changed summation order makes) scale with the magnitudes being added, not with each
 * element, so a per-element ratio would blow up on weights that happen to sit near 0. */
#include "ringtrain/model.h"
#include "ringtrain/model_file.h"
#include "ringtrain/status.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int load(const char *path, struct rt_model *m)
{
    struct rt_model_spec spec;
    memset(m, 0, sizeof *m);
    int st = rt_model_file_spec(path, &spec);
    if (st == RT_OK) st = rt_model_init(m, &spec, 1);
    if (st == RT_OK) st = rt_model_file_load(path, m);
    if (st != RT_OK) fprintf(stderr, "modeldiff: %s\n", rt_error_message(st));
    return st;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: modeldiff A.h5 B.h5\n");
        return 2;
    }
    struct rt_model a, b;
    if (load(argv[1], &a) != RT_OK || load(argv[2], &b) != RT_OK) return 1;
    if (a.n_params != b.n_params) {
        fprintf(stderr, "modeldiff: %zu vs %zu parameters\n", a.n_params, b.n_params);
        return 1;
    }
    double max_abs = 0, max_rel = 0;
    for (int l = 0; l < a.n_layers; l++) {
        float *wa, *ba, *wb, *bb;
        rt_model_layer_view(&a, l, &wa, &ba, NULL, NULL);
        rt_model_layer_view(&b, l, &wb, &bb, NULL, NULL);
        size_t nw = rt_model_layer_weights(&a, l);
        if (nw == 0) continue;
        const float *ta[2] = {wa, ba}, *tb[2] = {wb, bb};
        size_t len[2] = {nw, rt_model_layer_count(&a, l) - nw};
        for (int t = 0; t < 2; t++) {
            double diff = 0, scale = 0;
            for (size_t i = 0; i < len[t]; i++) {
                diff = fmax(diff, fabs((double)ta[t][i] - (double)tb[t][i]));
                scale = fmax(scale, fabs((double)ta[t][i]));
            }
            max_abs = fmax(max_abs, diff);
            max_rel = fmax(max_rel, scale > 0 ? diff / scale : diff);
        }
    }
    printf("max_abs=%.3g max_rel=%.3g params=%zu\n", max_abs, max_rel, a.n_params);
    rt_model_free(&a);
    rt_model_free(&b);
    return 0;
}
