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

/* `ringtrain bench train JOB.ini [section.key=value ...] [--steps N]`: trains the job's
 * first phase for N steps (default 100, after 10 of warm-up) writing nothing, and prints per
 * rank samples/s, model GFLOP/s, the sgemm GFLOP/s of the same GEMMs measured in the same
 * run, MFU, the step time split (compute, comm, wait), the communication share and peak
 * memory (max RSS). Collective; returns the exit code (0, 1 failure, 2 usage). */
int rt_cli_bench_train(rt_comm_t *c, int argc, char **argv);

/* `ringtrain generate MODEL.h5 [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]
 * [--seed S]` (src/cli/generate.c): rank 0 prints the prompt and N sampled bytes. Collective;
 * returns the agreed status (RT_ERR_INVAL for usage errors, naming the option). */
int rt_cli_generate(rt_comm_t *c, int argc, char **argv);

#endif
