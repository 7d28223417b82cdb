/* bench.h - benchmark subcommands (`ringtrain bench ...`). */
#ifndef RT_BENCH_H
#define RT_BENCH_H

#include "ringtrain/comm.h"

/* `ringtrain bench allreduce [--csv] [--iters N] [--warmup N] [--min-bytes B]
 * [--max-bytes B] [--algos a,b,..] [--segment-kb K]`. Collective: every rank calls it with
 * the same argv, where argv[0] is the subcommand name ("allreduce") and the options follow.
 * Rank 0 prints an nccl-tests-style table (or CSV) on stdout. Returns the process exit
 * code, the same on every rank: 0 when every result was right, 1 when any element was
 * wrong or a setup step failed (message on stderr), 2 on a usage error. */
int rt_cli_bench_allreduce(rt_comm_t *c, int argc, char **argv);

#endif
