/* data_util.h - helpers shared by the tests of src/data (test_dataset.c, test_text.c). */
#ifndef RT_TEST_DATA_UTIL_H
#define RT_TEST_DATA_UTIL_H

#include "ringtrain/dataset.h"

#include <stddef.h>

/* Opens src with o and fails the test unless that works; the dataset is the caller's. */
struct rt_dataset *open_ok(const char *src, const struct rt_data_opts *o);

/* Fails the test unless st is code with a one-line message that names `name` and contains
 * needle (NULL: anything). */
void expect_error(int st, int code, const char *name, const char *needle);

/* Expects opening src to fail as expect_error says, with no dataset left (*out NULL). */
void open_fails(const char *src, const struct rt_data_opts *o, int code, const char *needle);

/* Unlinks and frees paths[0..n) (strdup'd scratch files). */
void remove_files(char **paths, size_t n);

#endif
