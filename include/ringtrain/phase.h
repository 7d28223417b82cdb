/* phase.h - the phases a job runs, in order ([job] phases), and their names. Owned by
 * src/train (the phase controller); the job (config.h) holds a list of them. */
#ifndef RT_PHASE_H
#define RT_PHASE_H

/* The phases a job runs, in order ([job] phases). */
enum rt_phase { RT_PHASE_TRAIN, RT_PHASE_PRUNE, RT_PHASE_DISTILL };
int rt_phase_parse(const char *name, enum rt_phase *out); /* 0, or -1 if unknown */
const char *rt_phase_name(enum rt_phase p);

#endif
