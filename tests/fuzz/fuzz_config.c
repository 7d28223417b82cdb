/* fuzz_config.c - the job-file parser (src/core/config.c over inih).
 *
 * Each input is a job file: defaults, load, validate. When it loads, the effective job is
 * formatted, the text loaded into a fresh config and formatted again: the two texts must be
 * identical (what --print-config and checkpoints store must read back as the same job), and
 * formatting into a short buffer must give the same length and a prefix of the text. The
 * first lines of the input are also tried as command-line overrides. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "ringtrain/config.h"

static struct fuzz_file input, again;
static struct rt_config c1, c2; /* ~10 KB each: static, not on the stack */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_file_open(&input, "rt-fuzz-config");
    fuzz_file_open(&again, "rt-fuzz-config-again");
    return 0;
}

static char *format_all(const struct rt_config *c, size_t *len)
{
    size_t n = rt_config_format(c, NULL, 0);
    char *buf = malloc(n + 1);
    if (!buf) fuzz_die("malloc");
    if (rt_config_format(c, buf, n + 1) != n || strlen(buf) != n)
        fuzz_die("rt_config_format: the two calls disagree on the length");
    /* a short buffer: same length returned, text cut and terminated */
    size_t cut = n / 2 + 1;
    char *part = malloc(cut);
    if (!part) fuzz_die("malloc");
    if (rt_config_format(c, part, cut) != n || strlen(part) != cut - 1 ||
        memcmp(part, buf, cut - 1) != 0)
        fuzz_die("rt_config_format: a short buffer does not get a prefix of the text");
    free(part);
    *len = n;
    return buf;
}

static void round_trip(void)
{
    size_t n1, n2;
    char *t1 = format_all(&c1, &n1);
    fuzz_file_set(&again, (const uint8_t *)t1, n1);
    rt_config_defaults(&c2);
    rt_error_clear();
    int st = rt_config_load(&c2, again.path);
    if (st != RT_OK) {
        fprintf(stderr, "formatted job does not load back: %s\n--- text ---\n%s------------\n",
                rt_error_message(st), t1);
        abort();
    }
    char *t2 = format_all(&c2, &n2);
    if (n1 != n2 || strcmp(t1, t2) != 0) {
        fprintf(stderr, "format(load(format(job))) differs:\n--- first ---\n%s--- second ---\n%s",
                t1, t2);
        abort();
    }
    free(t1);
    free(t2);
}

/* Up to 8 lines of the input as "section.key=value" overrides on the defaults. */
static void overrides(const uint8_t *data, size_t size)
{
    rt_config_defaults(&c2);
    size_t pos = 0;
    for (int i = 0; i < 8 && pos < size; i++) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - (data + pos)) : size - pos;
        char *line = malloc(len + 1);
        if (!line) fuzz_die("malloc");
        memcpy(line, data + pos, len);
        line[len] = '\0';
        rt_error_clear();
        rt_config_override(&c2, line);
        free(line);
        pos += len + 1;
    }
    rt_error_clear();
    rt_config_validate(&c2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file_set(&input, data, size);
    rt_config_defaults(&c1);
    rt_error_clear();
    if (rt_config_load(&c1, input.path) == RT_OK) {
        rt_error_clear();
        rt_config_validate(&c1);
        char dir[RT_PATH_MAX + 16];
        rt_config_run_dir(&c1, dir, sizeof dir);
        rt_config_ckpt_dir(&c1, dir, sizeof dir);
        round_trip();
    }
    overrides(data, size);
    rt_error_clear();
    return 0;
}
