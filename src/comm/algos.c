/* algos.c - the table of collective algorithms, their names, and AUTO's choice.
 *
 * A new algorithm is one file defining a struct rt_coll_algo and one line in `table`
 * (plus its name in the public enum, which is the table's index and the config's value).
 * Which algorithm runs is decided here only, from the operation, the message size and the
 * group: every rank computes the same answer from the same numbers.
 *
 * All on the team's 2-core machine, Open MPI 4.1.4 (vader BTL, CMA single copy, eager limit
 * 4 KiB), `ringtrain bench allreduce`, while other jobs shared the machine: figures are noisy
 * (+-20% run to run), so choices rest on repeated runs (best and median of 4-5).
 *
 * Segment size (ring), 2 ranks, busbw GB/s best / median of 4 runs:
 *   segment    16 MiB      32 MiB      64 MiB
 *    64 KiB   3.25/2.72   3.40/2.56   3.16/2.69   per-message overhead dominates
 *   128 KiB   3.73/3.46   3.58/3.24   3.47/2.48
 *   256 KiB   4.83/3.58   4.95/3.60   4.45/3.72
 *   512 KiB   4.42/4.17   4.59/3.83   4.68/3.81   <- default: best medians
 *     1 MiB   4.91/3.60   4.38/3.69   4.36/4.12
 *     2 MiB   4.42/4.26   4.22/3.63   4.48/3.69
 *     4 MiB   3.41/2.98   4.55/3.78   4.51/4.04   too few segments to pipeline at 16 MiB
 * Windows of 2-4 receives x 2-8 sends made no difference beyond the noise.
 *
 * Thresholds, time in us (best of 4 runs; mpi = MPI_Allreduce):
 *             2 ranks                  4 ranks (oversubscribed on 2 cores)
 *   size      rd     mpi    ring       rd      mpi     ring
 *   4 KiB     3.2    3.6    3.6        45      55     104
 *   16 KiB    5.3   16.1   13.4        50     119     164
 *   32 KiB    9.9   15.2   15.0        79     135     174
 *   64 KiB   11.6*  23.1   18.3       121     149     212     (* best of an earlier run)
 *   128 KiB   64     26     30        204     177     223
 *   256 KiB  105     45     45        400     304     340
 *   512 KiB  153     83     91        693     559     531
 *   1 MiB    273    159    176       1273    1006     891
 *   2 MiB    534    353    340       2956    1788    1460
 *   4 MiB   1187    715    732       7047    3603    3834
 *   8 MiB   2568   1807   1612      13207    9131    7624
 *   16 MiB  5752   5087   4336      25364   14613   16527
 *   32 MiB  9722 108334   7047      48765  219437   29342
 *   64 MiB 24096 210858  13755     105408  435583   58974
 * rd wins while its vector fits Open MPI's eager protocol as <= 32 fragments (rd.c); at 2
 * ranks our ring and MPI_Allreduce are within the noise of each other from 64 KiB to 8 MiB
 * (MPI slightly ahead at 128 KiB - 1 MiB in most runs), and MPI_Allreduce collapses from
 * 16-32 MiB on (0.35 GB/s busbw, NOTES.md). At 4 ranks the best-of-4 figures favour the
 * ring from 512 KiB, but a later single run had MPI 35-50% ahead at 1-2 MiB (4 ranks on
 * 2 cores measure time-sharing as much as the network).
 * AUTO nevertheless picks only our own algorithms: rd up to 32 KiB (2 ranks) or 64 KiB
 * (3+ ranks), the ring above. MPI_Allreduce would be 0-20% faster at 128 KiB - 2 MiB on
 * 2 ranks, but a queued request cannot use it (it blocks), Open MPI's MPI_Iallreduce is a
 * different algorithm that is 2x slower here (64 KiB - 8 MiB, measured) and, adding in a
 * different order, gives different bytes: AUTO through MPI would make a polled request and
 * a blocking call with the same inputs disagree in the last bit, breaking the determinism
 * promised in comm.h. rd and the ring give the same bytes in both modes. */
#include "comm/comm_impl.h"

#include <string.h>

static const struct rt_coll_algo *const table[] = {
    [RT_ALLREDUCE_RING] = &rt_algo_ring_,
    [RT_ALLREDUCE_RD] = &rt_algo_rd_,
    [RT_ALLREDUCE_MPI] = &rt_algo_mpi_,
};
#define N_ALGOS ((int)(sizeof table / sizeof table[0]))

static const char *const op_names[] = {"allreduce", "reduce-scatter", "allgather"};

const struct rt_coll_algo *rt_algo_(enum rt_allreduce_algo a)
{
    return (int)a > RT_ALLREDUCE_AUTO && (int)a < N_ALGOS ? table[a] : &rt_algo_ring_;
}

int rt_allreduce_algo_parse(const char *name, enum rt_allreduce_algo *out)
{
    for (int a = RT_ALLREDUCE_AUTO; a < N_ALGOS && name; a++)
        if (strcmp(name, rt_allreduce_algo_name((enum rt_allreduce_algo)a)) == 0) {
            *out = (enum rt_allreduce_algo)a;
            return 0;
        }
    return -1;
}

const char *rt_allreduce_algo_name(enum rt_allreduce_algo a)
{
    if (a == RT_ALLREDUCE_AUTO) return "auto";
    return (int)a > 0 && (int)a < N_ALGOS ? table[a]->name : "?";
}

const char *rt_coll_op_name(enum rt_coll_op op)
{
    return (unsigned)op <= RT_OP_ALLGATHER ? op_names[op] : "?";
}

enum rt_allreduce_algo rt_comm_pick(const rt_comm_t *c, enum rt_coll_op op,
                                    enum rt_allreduce_algo a, size_t n)
{
    if (a == RT_ALLREDUCE_AUTO && op == RT_OP_ALLREDUCE) {
        /* Thresholds from the measurements at the top of this file. */
        size_t bytes = n * sizeof(float);
        size_t rd_max = c->size <= 2 ? (size_t)32 << 10 : (size_t)64 << 10;
        return bytes <= rd_max ? RT_ALLREDUCE_RD : RT_ALLREDUCE_RING;
    }
    if (a == RT_ALLREDUCE_AUTO || !(rt_algo_(a)->ops & 1u << op)) return RT_ALLREDUCE_RING;
    return a;
}

enum rt_allreduce_algo rt_comm_allreduce_pick(const rt_comm_t *c, enum rt_allreduce_algo a,
                                              size_t n)
{
    return rt_comm_pick(c, RT_OP_ALLREDUCE, a, n);
}
