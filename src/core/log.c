/* log.c - rank-aware printing to stdout (rank 0) and stderr (anyone). */
#include "ringtrain/log.h"

#include <stdarg.h>
#include <stdio.h>

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

void rt_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ringtrain: warning: [rank %d/%d] ", log_rank, log_world);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}
