/* phase.c - the names of the phases a job runs (phase.h). */
#include "ringtrain/phase.h"

#include <string.h>

int rt_phase_parse(const char *name, enum rt_phase *out)
{
    if (strcmp(name, "train") == 0)
        *out = RT_PHASE_TRAIN;
    else if (strcmp(name, "prune") == 0)
        *out = RT_PHASE_PRUNE;
    else if (strcmp(name, "distill") == 0)
        *out = RT_PHASE_DISTILL;
    else
        return -1;
    return 0;
}

const char *rt_phase_name(enum rt_phase p)
{
    return p == RT_PHASE_PRUNE ? "prune" : p == RT_PHASE_DISTILL ? "distill" : "train";
}
