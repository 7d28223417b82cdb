/* memstat.c - peak resident memory from /proc/self (contract in memstat.h). A benchmark's
 * own scaffolding (bench train times cblas_sgemm on buffers as large as the largest
 * weight) must not count as the trainer's memory, hence the reset. */
#include "ringtrain/memstat.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

int rt_mem_peak_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int rc = fputs("5", f) < 0 ? -1 : 0;
    return fclose(f) != 0 ? -1 : rc;
}

double rt_mem_peak_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0 && sscanf(line + 6, "%lf", &kb) == 1) break;
    if (f) fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = (double)ru.ru_maxrss;
    }
    return kb * 1024.0;
}
