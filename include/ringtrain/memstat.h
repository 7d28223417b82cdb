/* memstat.h - this process's memory as the kernel counts it (Linux /proc/self). */
#ifndef RT_MEMSTAT_H
#define RT_MEMSTAT_H

#include <stddef.h>

/* Resets the peak resident set size to the current one (writes 5 to /proc/self/clear_refs),
 * so that rt_mem_peak_bytes measures from here on. 0, or -1 where the kernel does not allow
 * it (then the peak counts from the process's start). */
int rt_mem_peak_reset(void);
/* Peak resident set size in bytes (VmHWM of /proc/self/status; getrusage's ru_maxrss where
 * /proc is missing). */
double rt_mem_peak_bytes(void);

#endif
