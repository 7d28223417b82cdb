/* test_loss.c - the loss kernels (src/nn/loss.h) and rt_loss_norm.
 *
 * Gradient checks compare dlogits * norm with central differences of an independent double
 * reference of the summed loss (ref.h), and print `gradcheck <name> max_rel_err=<e>`.
 *
 * Dimension letters: B rows, K outputs. */
#include "check_util.h"
#include "ref.h"

#include "nn/loss.h"

#include <math.h>
#include <string.h>

enum { GB = 5, GK = 7 };

struct loss_case {
    float z[GB * GK], t[GB * GK];
    double zd[GB * GK];
    int32_t labels[GB];
};

static void draw_case(struct loss_case *c, uint64_t seed)
{
    struct rt_rng rng;
    rt_rng_seed(&rng, seed);
    fill_uniform_f(c->z, GB * GK, -3, 3, &rng);
    fill_uniform_f(c->t, GB * GK, -1, 1, &rng);
    to_double(c->zd, c->z, GB * GK);
    for (int r = 0; r < GB; r++)
        c->labels[r] = (int32_t)rt_rng_below(&rng, GK);
}

static double ref_loss(const struct loss_case *c, enum rt_loss loss)
{
    return loss == RT_LOSS_CE ? ref_ce(c->zd, c->labels, GB, GK) : ref_mse(c->zd, c->t, GB, GK);
}

/* dlogits against central differences of the reference SUM divided by norm. */
static double gradcheck_loss(enum rt_loss loss, double norm, const char *label)
{
    struct loss_case c;
    draw_case(&c, 7 + (uint64_t)loss);
    float d[GB * GK];
    double sum = loss == RT_LOSS_CE ? rt_loss_ce(d, c.z, c.labels, GB, GK, norm)
                                    : rt_loss_mse(d, c.z, c.t, GB, GK, norm);
    double ref = ref_loss(&c, loss);
    ck_assert_msg(fabs(sum - ref) <= 1e-5 * fabs(ref), "%s: loss %.9g vs reference %.9g", label,
                  sum, ref);
    double worst = 0.0;
    for (int i = 0; i < GB * GK; i++) {
        double keep = c.zd[i];
        c.zd[i] = keep + GRADCHECK_EPS;
        double fp = ref_loss(&c, loss);
        c.zd[i] = keep - GRADCHECK_EPS;
        double fm = ref_loss(&c, loss);
        c.zd[i] = keep;
        double num = (fp - fm) / (2.0 * GRADCHECK_EPS) / norm;
        double e = rel_err(d[i], num, 1e-2 / norm);
        worst = e > worst || isnan(e) ? e : worst;
    }
    printf("gradcheck loss-%s max_rel_err=%.2g\n", label, worst);
    fflush(stdout);
    return worst;
}

START_TEST(loss_ce_gradcheck)
{
    double worst = gradcheck_loss(RT_LOSS_CE, GB, "ce");
    ck_assert_msg(worst < 1e-5, "ce: max rel err %.3g", worst);
}
END_TEST

/* CE of equal logits is log K for every row, whatever the label. */
START_TEST(loss_ce_uniform_is_log_k)
{
    enum { B = 3, K = 10 };
    float z[B * K], d[B * K];
    int32_t labels[B] = {0, 4, 9};
    for (int i = 0; i < B * K; i++)
        z[i] = 2.5f;
    double sum = rt_loss_ce(d, z, labels, B, K, 1.0);
    ck_assert_double_eq_tol(sum, B * log((double)K), 1e-6);
    /* gradient: 1/K everywhere, 1/K - 1 at the label */
    for (int r = 0; r < B; r++)
        for (int k = 0; k < K; k++)
            ck_assert_float_eq_tol(d[r * K + k], (k == labels[r] ? -0.9f : 0.1f), 1e-6f);
}
END_TEST

/* Logits (0, ln 3): p = (1/4, 3/4), so label 0 costs ln 4 and label 1 costs ln(4/3). */
START_TEST(loss_ce_hand_case)
{
    float z[4] = {0.0f, (float)log(3.0), 0.0f, (float)log(3.0)}, d[4];
    int32_t labels[2] = {0, 1};
    double sum = rt_loss_ce(d, z, labels, 2, 2, 2.0);
    ck_assert_double_eq_tol(sum, log(4.0) + log(4.0 / 3.0), 1e-6);
    float want[4] = {(0.25f - 1.0f) / 2, 0.75f / 2, 0.25f / 2, (0.75f - 1.0f) / 2};
    check_close(d, want, 4, 1e-6, 0, "dlogits");
}
END_TEST

/* Huge logits must not overflow: the max is shifted out before expf. */
START_TEST(loss_ce_stable)
{
    float z[3] = {1000.0f, 0.0f, -1000.0f}, d[3];
    int32_t label = 1;
    double sum = rt_loss_ce(d, z, &label, 1, 3, 1.0);
    ck_assert_double_eq_tol(sum, 1000.0, 1e-3);
    for (int k = 0; k < 3; k++)
        ck_assert(isfinite(d[k]));
    ck_assert_float_eq_tol(d[0], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(d[1], -1.0f, 1e-6f);
}
END_TEST

/* dlogits scale as 1/norm; the returned sum does not depend on norm. */
START_TEST(loss_dlogits_scale_with_norm)
{
    struct loss_case c;
    draw_case(&c, 3);
    float d1[GB * GK], d4[GB * GK];
    for (int l = 0; l < 2; l++) {
        double s1, s4;
        if (l == 0) {
            s1 = rt_loss_ce(d1, c.z, c.labels, GB, GK, 1.0);
            s4 = rt_loss_ce(d4, c.z, c.labels, GB, GK, 4.0);
        } else {
            s1 = rt_loss_mse(d1, c.z, c.t, GB, GK, 1.0);
            s4 = rt_loss_mse(d4, c.z, c.t, GB, GK, 4.0);
        }
        ck_assert_double_eq(s1, s4);
        for (int i = 0; i < GB * GK; i++)
            d4[i] *= 4.0f;
        check_close(d4, d1, GB * GK, 1e-7, 1e-6, l == 0 ? "ce" : "mse");
    }
}
END_TEST

START_TEST(loss_b0)
{
    float d[1] = {9.0f}, z[1] = {0.0f};
    int32_t label = 0;
    ck_assert_double_eq(rt_loss_ce(d, z, &label, 0, 1, 1.0), 0.0);
    ck_assert_double_eq(rt_loss_mse(d, z, z, 0, 1, 1.0), 0.0);
    ck_assert_float_eq(d[0], 9.0f);
}
END_TEST

START_TEST(loss_mse_gradcheck)
{
    double worst = gradcheck_loss(RT_LOSS_MSE, GB * GK, "mse");
    ck_assert_msg(worst < 1e-5, "mse: max rel err %.3g", worst);
}
END_TEST

/* out (1, 2, 3), (0, -1, 0.5) against t = 0, (0, 1, 0.5): 1 + 4 + 9 + 0 + 4 + 0 = 18. */
START_TEST(loss_mse_hand_case)
{
    float out[6] = {1, 2, 3, 0, -1, 0.5f}, t[6] = {0, 0, 0, 0, 1, 0.5f}, d[6];
    double sum = rt_loss_mse(d, out, t, 2, 3, 6.0);
    ck_assert_double_eq_tol(sum, 18.0, 1e-12);
    float want[6] = {2.0f / 6, 4.0f / 6, 6.0f / 6, 0, -4.0f / 6, 0};
    check_close(d, want, 6, 1e-7, 1e-6, "dlogits");
}
END_TEST

START_TEST(loss_count_correct_ties)
{
    /* rows: a tie between 0 and 1 (argmax 0), a clear 2, a three-way tie (argmax 0),
     * a tie between 1 and 2 (argmax 1) */
    float z[12] = {1, 1, 0, 0, 0, 5, 3, 3, 3, -1, 2, 2};
    int32_t hit[4] = {0, 2, 0, 1}, miss[4] = {1, 1, 2, 2};
    int32_t mixed[4] = {0, 0, 1, 1};
    ck_assert_int_eq(rt_loss_count_correct(z, hit, 4, 3), 4);
    ck_assert_int_eq(rt_loss_count_correct(z, miss, 4, 3), 0);
    ck_assert_int_eq(rt_loss_count_correct(z, mixed, 4, 3), 2);
    ck_assert_int_eq(rt_loss_count_correct(z, hit, 0, 3), 0);
}
END_TEST

START_TEST(loss_norm_values)
{
    ck_assert_double_eq(rt_loss_norm(RT_LOSS_CE, 256, 10), 256.0);
    ck_assert_double_eq(rt_loss_norm(RT_LOSS_MSE, 256, 10), 2560.0);
    ck_assert_double_eq(rt_loss_norm(RT_LOSS_MSE, 3000000000LL, 1000), 3e12);
}
END_TEST

/* Double reference of the distillation loss SUM (loss.h), written from the definition:
 * alpha T^2 sum_k p_k (log p_k - log q_k) + (1 - alpha)(-log softmax(s)_y). */
static double ref_log_softmax(const double *z, int k, int K, double T)
{
    double mx = z[0] / T, sum = 0.0;
    for (int j = 1; j < K; j++)
        mx = z[j] / T > mx ? z[j] / T : mx;
    for (int j = 0; j < K; j++)
        sum += exp(z[j] / T - mx);
    return z[k] / T - mx - log(sum);
}

static double ref_kd(const double *s, const float *t, const int32_t *y, int B, int K, double T,
                     double alpha)
{
    double total = 0.0;
    for (int r = 0; r < B; r++) {
        const double *sr = s + (size_t)r * K;
        double tr[GK], kl = 0.0;
        for (int k = 0; k < K; k++)
            tr[k] = 3.0 * t[(size_t)r * K + k]; /* teacher logits in [-3, 3] */
        for (int k = 0; k < K; k++) {
            double lp = ref_log_softmax(tr, k, K, T), lq = ref_log_softmax(sr, k, K, T);
            kl += exp(lp) * (lp - lq);
        }
        total += alpha * T * T * kl + (1 - alpha) * -ref_log_softmax(sr, y[r], K, 1.0);
    }
    return total;
}

/* kd's loss and dlogits against the reference, for a (T, alpha); returns the worst
 * relative gradient error and leaves the gradient in d. */
static double gradcheck_kd(double T, double alpha, float *d)
{
    struct loss_case c;
    draw_case(&c, 11);
    float teacher[GB * GK];
    for (int i = 0; i < GB * GK; i++)
        teacher[i] = 3.0f * c.t[i];
    double norm = GB;
    double sum = rt_loss_kd(d, c.z, teacher, c.labels, GB, GK, T, alpha, norm);
    double ref = ref_kd(c.zd, c.t, c.labels, GB, GK, T, alpha);
    ck_assert_msg(fabs(sum - ref) <= 1e-5 * fabs(ref) + 1e-6, "kd T=%g a=%g: %.9g vs %.9g", T,
                  alpha, sum, ref);
    double worst = 0.0;
    for (int i = 0; i < GB * GK; i++) {
        double keep = c.zd[i];
        c.zd[i] = keep + GRADCHECK_EPS;
        double fp = ref_kd(c.zd, c.t, c.labels, GB, GK, T, alpha);
        c.zd[i] = keep - GRADCHECK_EPS;
        double fm = ref_kd(c.zd, c.t, c.labels, GB, GK, T, alpha);
        c.zd[i] = keep;
        double e = rel_err(d[i], (fp - fm) / (2.0 * GRADCHECK_EPS) / norm, 1e-2 / norm);
        worst = e > worst || isnan(e) ? e : worst;
    }
    return worst;
}

START_TEST(loss_kd_gradcheck)
{
    const double Ts[] = {1, 2, 4, 8}, alphas[] = {0, 0.5, 0.9, 1};
    double worst = 0.0;
    float d[GB * GK];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double e = gradcheck_kd(Ts[i], alphas[j], d);
            worst = e > worst ? e : worst;
        }
    printf("gradcheck loss-kd max_rel_err=%.2g\n", worst);
    ck_assert_msg(worst < 1e-4, "kd: max rel err %.3g", worst);
}
END_TEST

/* alpha = 0 is plain cross-entropy, loss and gradient, whatever T and the teacher. */
START_TEST(loss_kd_alpha0_is_ce)
{
    struct loss_case c;
    draw_case(&c, 3);
    float d_ce[GB * GK], d_kd[GB * GK];
    double ce = rt_loss_ce(d_ce, c.z, c.labels, GB, GK, GB);
    double kd = rt_loss_kd(d_kd, c.z, c.t, c.labels, GB, GK, 4.0, 0.0, GB);
    ck_assert_msg(fabs(ce - kd) <= 1e-6 * fabs(ce), "%.9g vs %.9g", ce, kd);
    check_close(d_kd, d_ce, GB * GK, 1e-6, 1e-6, "alpha=0 gradient");
}
END_TEST

/* The T^2 factor keeps the soft term's gradient on one scale: from T = 4 to T = 16 its norm
 * changes by less than 2x (without T^2 it would shrink about 16x). */
START_TEST(loss_kd_t2_keeps_scale)
{
    float d4[GB * GK], d16[GB * GK];
    gradcheck_kd(4.0, 1.0, d4);
    gradcheck_kd(16.0, 1.0, d16);
    double n4 = 0, n16 = 0;
    for (int i = 0; i < GB * GK; i++) {
        n4 += (double)d4[i] * d4[i];
        n16 += (double)d16[i] * d16[i];
    }
    double ratio = sqrt(n4 / n16);
    printf("kd soft-gradient norm T=4 / T=16: %.3f\n", ratio);
    ck_assert_msg(ratio > 0.5 && ratio < 2.0, "ratio %.3f", ratio);
}
END_TEST

/* ---- rt_loss_kd_mse ---- */

/* Double reference of the regression distillation SUM: squared error against the blend. */
static double ref_kd_mse(const double *out, const float *teacher, const float *t, int n,
                         double alpha)
{
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        double d = out[i] - (alpha * teacher[i] + (1.0 - alpha) * t[i]);
        total += d * d;
    }
    return total;
}

/* Loss and dlogits against the reference and its central differences, for several alphas;
 * the teacher is a second draw, away from both outputs and targets. */
START_TEST(loss_kd_mse_gradcheck)
{
    const double alphas[] = {0, 0.25, 0.5, 0.9, 1};
    struct loss_case c;
    draw_case(&c, 13);
    float teacher[GB * GK], d[GB * GK];
    struct rt_rng rng;
    rt_rng_seed(&rng, 14);
    fill_uniform_f(teacher, GB * GK, -2, 2, &rng);
    double norm = GB * GK, worst = 0.0;
    for (int a = 0; a < 5; a++) {
        double alpha = alphas[a];
        double sum = rt_loss_kd_mse(d, c.z, teacher, c.t, GB, GK, alpha, norm);
        double ref = ref_kd_mse(c.zd, teacher, c.t, GB * GK, alpha);
        ck_assert_msg(fabs(sum - ref) <= 1e-5 * fabs(ref), "a=%g: loss %.9g vs %.9g", alpha, sum,
                      ref);
        for (int i = 0; i < GB * GK; i++) {
            double keep = c.zd[i];
            c.zd[i] = keep + GRADCHECK_EPS;
            double fp = ref_kd_mse(c.zd, teacher, c.t, GB * GK, alpha);
            c.zd[i] = keep - GRADCHECK_EPS;
            double fm = ref_kd_mse(c.zd, teacher, c.t, GB * GK, alpha);
            c.zd[i] = keep;
            double e = rel_err(d[i], (fp - fm) / (2.0 * GRADCHECK_EPS) / norm, 1e-2 / norm);
            worst = e > worst || isnan(e) ? e : worst;
        }
    }
    printf("gradcheck loss-kd-mse max_rel_err=%.2g\n", worst);
    fflush(stdout);
    ck_assert_msg(worst < 1e-5, "kd-mse: max rel err %.3g", worst);
}
END_TEST

/* alpha = 0 is rt_loss_mse bit for bit, loss and gradient, whatever the teacher holds. */
START_TEST(loss_kd_mse_alpha0_is_mse)
{
    struct loss_case c;
    draw_case(&c, 15);
    float teacher[GB * GK], d_mse[GB * GK], d_kd[GB * GK];
    for (int i = 0; i < GB * GK; i++)
        teacher[i] = i % 2 ? INFINITY : NAN;
    double mse = rt_loss_mse(d_mse, c.z, c.t, GB, GK, GB * GK);
    double kd = rt_loss_kd_mse(d_kd, c.z, teacher, c.t, GB, GK, 0.0, GB * GK);
    ck_assert_double_eq(kd, mse);
    ck_assert_int_eq(memcmp(d_kd, d_mse, sizeof d_kd), 0);
}
END_TEST

/* alpha = 1 is MSE against the teacher, bit for bit: the blend rounds to the teacher. */
START_TEST(loss_kd_mse_alpha1_is_mse_on_teacher)
{
    struct loss_case c;
    draw_case(&c, 16);
    float teacher[GB * GK], d_mse[GB * GK], d_kd[GB * GK];
    struct rt_rng rng;
    rt_rng_seed(&rng, 17);
    fill_uniform_f(teacher, GB * GK, -2, 2, &rng);
    double mse = rt_loss_mse(d_mse, c.z, teacher, GB, GK, 3.0);
    double kd = rt_loss_kd_mse(d_kd, c.z, teacher, c.t, GB, GK, 1.0, 3.0);
    ck_assert_double_eq(kd, mse);
    ck_assert_int_eq(memcmp(d_kd, d_mse, sizeof d_kd), 0);
}
END_TEST

START_TEST(loss_kd_mse_b0)
{
    float d[1] = {9.0f}, z[1] = {0.0f};
    ck_assert_double_eq(rt_loss_kd_mse(d, z, z, z, 0, 1, 0.5, 1.0), 0.0);
    ck_assert_double_eq(rt_loss_kd_mse(d, z, z, z, 0, 1, 0.0, 1.0), 0.0);
    ck_assert_float_eq(d[0], 9.0f);
}
END_TEST

static Suite *loss_suite(void)
{
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("rt_loss_ce");
    tcase_add_test(tc, loss_ce_gradcheck);
    tcase_add_test(tc, loss_ce_uniform_is_log_k);
    tcase_add_test(tc, loss_ce_hand_case);
    tcase_add_test(tc, loss_ce_stable);
    tcase_add_test(tc, loss_dlogits_scale_with_norm);
    tcase_add_test(tc, loss_b0);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_loss_mse");
    tcase_add_test(tc, loss_mse_gradcheck);
    tcase_add_test(tc, loss_mse_hand_case);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_loss_count_correct");
    tcase_add_test(tc, loss_count_correct_ties);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_loss_norm");
    tcase_add_test(tc, loss_norm_values);
    tcase_add_test(tc, loss_kd_gradcheck);
    tcase_add_test(tc, loss_kd_alpha0_is_ce);
    tcase_add_test(tc, loss_kd_t2_keeps_scale);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_loss_kd_mse");
    tcase_add_test(tc, loss_kd_mse_gradcheck);
    tcase_add_test(tc, loss_kd_mse_alpha0_is_mse);
    tcase_add_test(tc, loss_kd_mse_alpha1_is_mse_on_teacher);
    tcase_add_test(tc, loss_kd_mse_b0);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(loss_suite());
}
