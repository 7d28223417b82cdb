/* signals.h - stop requests from outside: SIGTERM, SIGINT and SIGUSR1 (what Slurm sends
 * before a time limit with --signal, and what mpirun forwards to every rank).
 *
 * The handler only records the signal; the trainer polls rt_signal_pending() at each step
 * boundary and agrees on it across ranks (one rank may be the only one signalled), then
 * finishes cleanly: checkpoint, exit code 75. A second signal of the same kind while the
 * first is being handled falls back to the default action, so a user who presses Ctrl-C
 * twice still gets out. */
#ifndef RT_SIGNALS_H
#define RT_SIGNALS_H

/* Installs the handlers (idempotent). 0, or -1 when sigaction fails. */
int rt_signals_install(void);

/* Restores the default actions, once the run is over. mpirun tears a job down that ends
 * with a non-zero code (75) by sending SIGTERM to the ranks still finalising; a handler
 * left in place would swallow it and mpirun would wait odls_base_sigkill_timeout seconds. */
void rt_signals_restore(void);

/* The first stop signal received since install (SIGTERM, SIGINT or SIGUSR1), or 0. */
int rt_signal_pending(void);

/* "SIGTERM", "SIGINT", "SIGUSR1", or "signal N". */
const char *rt_signal_name(int signo);

#endif
