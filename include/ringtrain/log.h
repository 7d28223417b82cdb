/* log.h - rank-aware printing. Rank 0 speaks for the job; other ranks stay quiet unless
 * something is wrong on them. No MPI here: main() tells the module who it is. */
#ifndef RT_LOG_H
#define RT_LOG_H

void rt_log_set_rank(int rank, int world);
int rt_log_rank(void);
int rt_log_world(void);

/* printf to stdout on rank 0 only, flushed (progress and result lines). */
void rt_log0(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "ringtrain: warning: [rank r/N] ..." to stderr, from any rank. */
void rt_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
