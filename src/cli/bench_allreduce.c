/* bench_allreduce.c - `ringtrain bench allreduce`: ring, rd, auto and MPI_Allreduce side by
 * side, nccl-tests columns, OSU timing loop.
 *
 * For each size (min..max bytes, doubling) and each algorithm: `warmup` untimed then `iters`
 * timed iterations, each one: reset the buffer to x[i] = 1000*rank + i % 997 (exact in
 * float), barrier, time the allreduce alone, then check every element against the exact sum
 * (outside the timed region). A rank's time is the mean over its timed iterations; the table
 * shows avg/min/max of that over ranks, and bandwidths use the max (the slowest rank is when
 * the collective is done everywhere): algbw = bytes / t_max, busbw = algbw * 2(N-1)/N, the
 * traffic per link of an optimal allreduce, so busbw compares across rank counts.
 *
 * Does not: run training, or include <mpi.h> (everything goes through rt_comm). */
#include "ringtrain/bench.h"
#include "ringtrain/comm.h"
#include "ringtrain/status.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };
enum { MAX_ALGOS = 4 };

static const char usage[] =
    "usage: mpirun -np N ringtrain bench allreduce [options]\n"
    "\n"
    "Times the gradient allreduce (float sum, in place) for each size from --min-bytes to\n"
    "--max-bytes (doubling) and each algorithm, verifying every result exactly.\n"
    "\n"
    "options:\n"
    "  --csv              print CSV: algorithm,bytes,count,time_us,algbw_gbs,busbw_gbs,wrong\n"
    "                     (time_us is the max over ranks of the mean time, as the bw)\n"
    "  --iters N          timed iterations per size and algorithm (default 20)\n"
    "  --warmup N         untimed iterations before them (default 5)\n"
    "  --min-bytes B      smallest message, a multiple of 4 (default 4096; K/M/G suffixes)\n"
    "  --max-bytes B      largest message (default 64M)\n"
    "  --algos LIST       comma-separated subset of ring,rd,auto,mpi (default all four)\n"
    "  --segment-kb K     ring pipeline segment in KiB (default: the measured one)\n"
    "\n"
    "Exit status: 0 when every element of every result was right, 1 otherwise.\n";

struct bench_opts {
    int csv;
    long long iters, warmup, min_bytes, max_bytes, segment_kb;
    enum rt_allreduce_algo algos[MAX_ALGOS];
    int n_algos;
};

struct result {
    double t_avg, t_min, t_max; /* seconds */
    double wrong;               /* wrong elements, summed over ranks and iterations */
};

/* "123", "64K", "4M", "1G" -> value; -1 on anything else. */
static long long parse_size(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0) return -1;
    long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1ll << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1ll << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1ll << 30, end++;
    if (*end || v > (1ll << 40) / mul) return -1;
    return v * mul;
}

static int parse_algos(char *list, struct bench_opts *o)
{
    o->n_algos = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (o->n_algos == MAX_ALGOS || rt_allreduce_algo_parse(tok, &o->algos[o->n_algos]))
            return -1;
        o->n_algos++;
    }
    return o->n_algos ? 0 : -1;
}

/* Returns -1 after printing a usage error on rank 0, 1 for --help, 0 to run. */
static int parse_args(int rank, int argc, char **argv, struct bench_opts *o)
{
    *o = (struct bench_opts){
        .iters = 20,
        .warmup = 5,
        .min_bytes = 4096,
        .max_bytes = 64ll << 20,
        .segment_kb = 0,
        .algos = {RT_ALLREDUCE_RING, RT_ALLREDUCE_RD, RT_ALLREDUCE_AUTO, RT_ALLREDUCE_MPI},
        .n_algos = 4};
    const char *bad = NULL;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            if (rank == 0) fputs(usage, stdout);
            return 1;
        } else if (strcmp(a, "--csv") == 0) {
            o->csv = 1;
            continue;
        }
        long long v = val ? parse_size(val) : -1;
        if (strcmp(a, "--algos") == 0 && val) {
            char copy[64];
            snprintf(copy, sizeof copy, "%s", val);
            if (parse_algos(copy, o)) bad = a;
        } else if (strcmp(a, "--iters") == 0 && v >= 1 && v <= 1000000) {
            o->iters = v;
        } else if (strcmp(a, "--warmup") == 0 && v >= 0 && v <= 1000000) {
            o->warmup = v;
        } else if (strcmp(a, "--min-bytes") == 0 && v >= 4 && v % 4 == 0) {
            o->min_bytes = v;
        } else if (strcmp(a, "--max-bytes") == 0 && v >= 4 && v % 4 == 0) {
            o->max_bytes = v;
        } else if (strcmp(a, "--segment-kb") == 0 && v >= 1 && v <= 65536) {
            o->segment_kb = v;
        } else {
            bad = a;
        }
        i++; /* the value */
    }
    if (!bad && o->min_bytes > o->max_bytes) bad = "--min-bytes (larger than --max-bytes)";
    if (bad) {
        if (rank == 0)
            fprintf(stderr,
                    "ringtrain: error: bench allreduce: bad or incomplete option '%s' "
                    "(see ringtrain bench allreduce --help)\n",
                    bad);
        return -1;
    }
    return 0;
}

static void reset(float *x, size_t n, int rank)
{
    const float base = (float)(1000 * rank);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = base + (float)j;
        if (++j == 997) j = 0;
    }
}

/* Elements that differ from the exact sum over `size` ranks (scale 1). */
static long count_wrong(const float *x, size_t n, int size)
{
    const long base = 1000l * size * (size - 1) / 2;
    long bad = 0;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        bad += x[i] != (float)(base + (long)size * (long)j);
        if (++j == 997) j = 0;
    }
    return bad;
}

static struct result run_one(rt_comm_t *c, const struct bench_opts *o, enum rt_allreduce_algo algo,
                             float *x, size_t n)
{
    int rank = rt_comm_rank(c), size = rt_comm_size(c);
    double t_sum = 0;
    long bad = 0;
    for (long long it = 0; it < o->warmup + o->iters; it++) {
        reset(x, n, rank);
        rt_comm_barrier(c);
        double t0 = rt_comm_wtime();
        rt_comm_allreduce_with(c, algo, x, n, 1.0f);
        double t = rt_comm_wtime() - t0;
        if (it >= o->warmup) t_sum += t;
        bad += count_wrong(x, n, size);
    }
    double t = t_sum / (double)o->iters;
    double v[4] = {t, -t, t, (double)bad}; /* max, -min, then sums */
    rt_comm_max_f64(c, v, 2);
    rt_comm_sum_f64(c, v + 2, 2);
    return (struct result){.t_avg = v[2] / size, .t_min = -v[1], .t_max = v[0], .wrong = v[3]};
}

static double algbw(double bytes, const struct result *r)
{
    return r->t_max > 0 ? bytes / r->t_max / 1e9 : 0;
}

int rt_cli_bench_allreduce(rt_comm_t *c, int argc, char **argv)
{
    int rank = rt_comm_rank(c), size = rt_comm_size(c);
    struct bench_opts o;
    int p = parse_args(rank, argc, argv, &o);
    if (p) return p > 0 ? EXIT_OK : EXIT_USAGE;

    int st = RT_OK;
    if (o.segment_kb) {
        struct rt_comm_opts co = {.algorithm = RT_ALLREDUCE_AUTO,
                                  .segment_bytes = (size_t)o.segment_kb << 10};
        st = rt_comm_configure(c, &co);
    }
    size_t max_n = (size_t)o.max_bytes / sizeof(float);
    float *x = st ? NULL : malloc(max_n * sizeof *x);
    if (!st && !x)
        st = rt_errorf(RT_ERR_NOMEM, "bench allreduce: cannot allocate %lld bytes", o.max_bytes);
    st = rt_comm_agree(c, st);
    if (st) {
        if (rank == 0) fprintf(stderr, "ringtrain: error: %s\n", rt_error_message(st));
        free(x);
        return EXIT_FAILED;
    }

    const double bus = size > 1 ? 2.0 * (size - 1) / size : 0;
    int mpi_col = -1, ring_col = -1;
    for (int a = 0; a < o.n_algos; a++) {
        if (o.algos[a] == RT_ALLREDUCE_MPI) mpi_col = a;
        if (o.algos[a] == RT_ALLREDUCE_RING) ring_col = a;
    }
    if (rank == 0) {
        if (o.csv) {
            printf("algorithm,bytes,count,time_us,algbw_gbs,busbw_gbs,wrong\n");
        } else {
            char seg[32] = "default";
            if (o.segment_kb) snprintf(seg, sizeof seg, "%lldKiB", o.segment_kb);
            printf("# ringtrain allreduce  ranks=%d  warmup=%lld  iters=%lld  dtype=float  "
                   "segment=%s  bw uses time_max\n",
                   size, o.warmup, o.iters, seg);
            printf("# %11s %13s  %-10s %9s %9s %9s %8s %8s %7s %7s\n", "size", "count", "algorithm",
                   "t_avg", "t_min", "t_max", "algbw", "busbw", "vs_mpi", "#wrong");
            printf("# %11s %13s  %-10s %9s %9s %9s %8s %8s %7s %7s\n", "(B)", "(elements)", "",
                   "(us)", "(us)", "(us)", "(GB/s)", "(GB/s)", "(x)", "");
        }
        fflush(stdout);
    }

    double wrong_total = 0, busbw_sum[MAX_ALGOS] = {0}, log_ratio = 0, last_ratio = 0;
    int n_sizes = 0;
    long long last_bytes = 0;
    for (long long bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 2, n_sizes++) {
        last_bytes = bytes;
        size_t n = (size_t)bytes / sizeof(float);
        struct result r[MAX_ALGOS] = {0};
        for (int a = 0; a < o.n_algos; a++) {
            r[a] = run_one(c, &o, o.algos[a], x, n);
            wrong_total += r[a].wrong;
            busbw_sum[a] += algbw((double)bytes, &r[a]) * bus;
        }
        if (mpi_col >= 0 && ring_col >= 0 && r[ring_col].t_max > 0) {
            last_ratio = r[mpi_col].t_max / r[ring_col].t_max;
            log_ratio += log(last_ratio);
        }
        if (rank != 0) continue;
        for (int a = 0; a < o.n_algos; a++) {
            double bw = algbw((double)bytes, &r[a]);
            const char *name = rt_allreduce_algo_name(o.algos[a]);
            if (o.csv) {
                printf("%s,%lld,%zu,%.2f,%.4f,%.4f,%.0f\n", name, bytes, n, r[a].t_max * 1e6, bw,
                       bw * bus, r[a].wrong);
                continue;
            }
            char label[32];
            if (o.algos[a] == RT_ALLREDUCE_AUTO)
                snprintf(label, sizeof label, "auto(%s)",
                         rt_allreduce_algo_name(rt_comm_allreduce_pick(c, o.algos[a], n)));
            else
                snprintf(label, sizeof label, "%s", name);
            char vs[16] = "-";
            if (mpi_col >= 0 && r[a].t_max > 0)
                snprintf(vs, sizeof vs, "%.2f", r[mpi_col].t_max / r[a].t_max);
            printf("  %11lld %13zu  %-10s %9.1f %9.1f %9.1f %8.3f %8.3f %7s %7.0f\n", bytes, n,
                   label, r[a].t_avg * 1e6, r[a].t_min * 1e6, r[a].t_max * 1e6, bw, bw * bus, vs,
                   r[a].wrong);
        }
        fflush(stdout);
    }
    if (rank == 0 && !o.csv) {
        printf("# Out of bounds values : %.0f %s\n", wrong_total, wrong_total ? "FAILED" : "OK");
        printf("# Avg bus bandwidth    :");
        for (int a = 0; a < o.n_algos; a++)
            printf(" %s %.3f", rt_allreduce_algo_name(o.algos[a]),
                   n_sizes ? busbw_sum[a] / n_sizes : 0);
        printf("\n");
        if (mpi_col >= 0 && ring_col >= 0 && n_sizes)
            printf("# ring vs mpi          : %.2fx faster (geometric mean over sizes), %.2fx at "
                   "%lld B\n",
                   exp(log_ratio / n_sizes), last_ratio, last_bytes);
        fflush(stdout);
    }
    free(x);
    return wrong_total ? EXIT_FAILED : EXIT_OK;
}
