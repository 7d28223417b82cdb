/* check_util.h - helpers shared by the Check unit tests. */
#ifndef RT_CHECK_UTIL_H
#define RT_CHECK_UTIL_H

#include <check.h>
#include <stddef.h>

/* Fails the test (ck_assert) if |a-b| > atol + rtol*|b| anywhere; prints the first few
 * mismatches and the largest difference first. */
void check_close(const float *a, const float *b, size_t n, double atol, double rtol,
                 const char *label);

/* Runs one suite and returns the process exit code (0 when everything passed). */
int run_suite(Suite *s);

/* A fresh path under $TMPDIR (or /tmp) for a scratch file; name is a short hint. The
 * returned string is static per call site and is valid until the next call. */
const char *scratch_path(const char *name);

#endif
