/* log.c - rank-aware printing to stdout (rank 0) and stderr (anyone). */
#include "ringtrain/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static int log_rank, log_world = 1;

void rt_log_set_rank(int rank, int world)
{
    log_rank = rank;
    log_world = world;
}

int rt_log_rank(void)
{
    return log_rank;
}

int rt_log_world(void)
{
    return log_world;
}

void rt_log0(const char *fmt, ...)
{
    if (log_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* The whole line goes out in one write: mpirun forwards each rank's stderr in the chunks it
 * reads, and a line written in pieces could be split by another line (seen: a warning's
 * prefix and its text on two different lines of the job's log). */
void rt_warn(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "ringtrain: warning: [rank %d/%d] ", log_rank, log_world);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
    while (len > 0 && line[len - 1] == '\n') /* one newline, whether fmt ends in one or not */
        len--;
    line[len++] = '\n';
    fflush(stderr);
    if (write(STDERR_FILENO, line, len) < 0) { /* nothing better to do with a failed warning */
    }
}
