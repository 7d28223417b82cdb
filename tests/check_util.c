/* check_util.c - helpers shared by the Check unit tests. */
#include "check_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void check_close(const float *a, const float *b, size_t n, double atol, double rtol,
                 const char *label)
{
    size_t bad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i]))) {
            if (bad < 5)
                fprintf(stderr, "%s[%zu]: %.9g vs %.9g (diff %.3g)\n", label, i, a[i], b[i], d);
            bad++;
        }
        if (d > worst || isnan(d)) worst = d;
    }
    ck_assert_msg(bad == 0, "%s: %zu of %zu values differ, max diff %.3g", label, bad, n, worst);
}

int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

const char *scratch_path(const char *name)
{
    static char buf[4096];
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    static unsigned counter;
    snprintf(buf, sizeof buf, "%s/rt-test-%d-%u-%s", dir, (int)getpid(), counter++, name);
    return buf;
}
