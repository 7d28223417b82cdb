/* data_util.c - helpers shared by the tests of src/data (see data_util.h). */
#include "data_util.h"
#include "check_util.h"
#include "ringtrain/status.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rt_dataset *open_ok(const char *src, const struct rt_data_opts *o)
{
    struct rt_dataset *d = NULL;
    int st = rt_dataset_open(&d, src, o);
    ck_assert_msg(st == RT_OK, "open %s: %s", src, rt_error_message(st));
    ck_assert_ptr_nonnull(d);
    return d;
}

void expect_error(int st, int code, const char *name, const char *needle)
{
    const char *msg = rt_error_message(st);
    ck_assert_msg(st == code, "%s: got %s (%s), expected %s", name, rt_status_name(st), msg,
                  rt_status_name(code));
    ck_assert_msg(strstr(msg, name) != NULL, "message \"%s\" does not name %s", msg, name);
    ck_assert_msg(!needle || strstr(msg, needle), "message \"%s\" lacks \"%s\"", msg, needle);
    ck_assert_msg(strchr(msg, '\n') == NULL, "message has a newline");
}

void open_fails(const char *src, const struct rt_data_opts *o, int code, const char *needle)
{
    rt_error_clear();
    struct rt_dataset *d = (struct rt_dataset *)1;
    expect_error(rt_dataset_open(&d, src, o), code, src, needle);
    ck_assert_ptr_null(d);
}

void remove_files(char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
}
