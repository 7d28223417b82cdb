/* comm.h - everything that crosses ranks. The only module that includes <mpi.h>; callers
 * see an opaque handle, so the trainer and everything below it stay MPI-free.
 *
 * Error rule: a rank that fails locally keeps its status until the next agreement point
 * that every rank reaches unconditionally; rt_comm_agree() then gives every rank the same
 * verdict and the first failing rank's message. Where agreement is impossible (a failure
 * inside a collective) rt_comm_abort() ends the whole job at once. */
#ifndef RT_COMM_H
#define RT_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "ringtrain/shard.h"

typedef struct rt_comm rt_comm_t;

/* MPI_Init_thread (FUNNELED) and the world communicator; errors are fatal inside MPI. */
int rt_comm_init(rt_comm_t **out, int *argc, char ***argv);
/* MPI_Finalize. Collective: every rank must call it. */
void rt_comm_finalize(rt_comm_t *c);

int rt_comm_rank(const rt_comm_t *c);
int rt_comm_size(const rt_comm_t *c);
/* Ranks of this job on this node (MPI_COMM_TYPE_SHARED). */
int rt_comm_local_size(const rt_comm_t *c);

/* Collective. Returns RT_OK on every rank if st == RT_OK on every rank; otherwise the
 * status of the lowest failing rank, whose error message every rank adopts. */
int rt_comm_agree(rt_comm_t *c, int st);

/* rt_comm_agree that also takes the maximum of n (<= RT_AGREE_MAX_VALS) small integers
 * across ranks in the same single allreduce: how the step loop learns, at no extra cost,
 * whether any rank was signalled or a timed checkpoint is due. vals is replaced by the
 * maxima on every rank (also when the status is a failure). */
#define RT_AGREE_MAX_VALS 4
int rt_comm_agree_max(rt_comm_t *c, int st, int *vals, int n);

/* ---- Collectives on gradient and parameter buffers ----------------------------------------
 * Three operations, in place on the caller's buffer of n elements (n may exceed INT_MAX), which
 * is cut into one part per rank: the even shards of shard.h, or `part` (size + 1 offsets,
 * part[0] = 0, part[size] = n, non-decreasing; borrowed until the request completes) when the
 * caller needs another cut (sparse buckets cut their packed coordinates where the dense
 * shards end):
 *   RT_OP_ALLREDUCE       buf = scale * (element-wise sum over ranks), the same bytes on
 *                         every rank
 *   RT_OP_REDUCE_SCATTER  part `rank` of buf = scale * (sum over ranks of that part); the
 *                         other parts are left holding partial sums
 *   RT_OP_ALLGATHER       part j of buf, on every rank, = part j of rank j's buf
 * A reduce-scatter then an allgather of the same buffer gives the bytes of the ring
 * allreduce of the same cut (the sharded optimizer relies on it: shard = on equals off).
 * Results are deterministic: the same bytes for the same inputs at the same rank count.
 * Algorithms (one table in src/comm/algos.c; reduce-scatter and allgather run on the ring
 * unless the algorithm implements them):
 *   RT_ALLREDUCE_RING  bandwidth-optimal reduce-scatter + allgather, pipelined in segments
 *   RT_ALLREDUCE_RD    recursive doubling (latency-optimal, for small messages; allreduce)
 *   RT_ALLREDUCE_MPI   MPI's own collectives, for comparison (blocking and queued calls may
 *                      add in different orders and differ in the last bit, and MPI's sums
 *                      need not match the ring's: never used where bytes must agree)
 *   RT_ALLREDUCE_AUTO  rd or ring by size and rank count, measured thresholds (algos.c)
 * Requests run one at a time in the order they were started (the same order on every rank);
 * scratch belongs to the context and is allocated once in rt_comm_init / rt_comm_configure. */
enum rt_allreduce_algo { RT_ALLREDUCE_AUTO, RT_ALLREDUCE_RING, RT_ALLREDUCE_RD, RT_ALLREDUCE_MPI };
enum rt_coll_op { RT_OP_ALLREDUCE, RT_OP_REDUCE_SCATTER, RT_OP_ALLGATHER };
int rt_allreduce_algo_parse(const char *name, enum rt_allreduce_algo *out); /* 0 or -1 */
const char *rt_allreduce_algo_name(enum rt_allreduce_algo a);
const char *rt_coll_op_name(enum rt_coll_op op);
/* The algorithm a call of op with algorithm a and n floats runs: a itself if it implements
 * op, AUTO's choice for this message size and rank count, else the ring (the same on every
 * rank). */
enum rt_allreduce_algo rt_comm_pick(const rt_comm_t *c, enum rt_coll_op op,
                                    enum rt_allreduce_algo a, size_t n);
/* The same for an allreduce. */
enum rt_allreduce_algo rt_comm_allreduce_pick(const rt_comm_t *c, enum rt_allreduce_algo a,
                                              size_t n);

struct rt_comm_opts {
    enum rt_allreduce_algo algorithm; /* default RT_ALLREDUCE_AUTO */
    size_t segment_bytes;             /* ring pipeline segment; 0 = measured default */
};
/* Applies options (collective: same values on every rank). May reallocate scratch: call
 * it before training, never with requests in flight. RT_ERR_NOMEM / RT_ERR_INVAL. */
int rt_comm_configure(rt_comm_t *c, const struct rt_comm_opts *o);

/* The configured algorithm (comm.algorithm). */
enum rt_allreduce_algo rt_comm_algorithm(const rt_comm_t *c);

/* Element types. Float sums carry gradients and parameters; int64 sums carry the fixed-point
 * gradients of comm.deterministic, whose additions are exact, so that any order (any
 * algorithm) gives the same bytes. An int64 call runs on the ring unless the algorithm asked
 * for implements int64 (rd does not), and its scale must be 1. */
enum rt_coll_type { RT_TYPE_F32, RT_TYPE_I64 };

/* One collective call: what, how, on which buffer. */
struct rt_coll_args {
    enum rt_coll_op op;
    enum rt_allreduce_algo algo; /* RT_ALLREDUCE_AUTO: the configured algorithm's choice */
    void *buf;                   /* n elements of `type` */
    size_t n;
    float scale;            /* allreduce and reduce-scatter; ignored by allgather */
    const size_t *part;     /* NULL: the even shards of shard.h */
    enum rt_coll_type type; /* RT_TYPE_F32 unless set */
};

typedef struct rt_comm_req rt_comm_req; /* owned by the context; valid until done */

/* Blocking: runs the call after every request started before it. */
void rt_comm_run(rt_comm_t *c, const struct rt_coll_args *a);
/* Non-blocking: starts (or queues behind earlier requests) the call. At most
 * RT_MAX_INFLIGHT requests may be outstanding. buf must not be touched until done. */
#define RT_MAX_INFLIGHT 128
rt_comm_req *rt_comm_start(rt_comm_t *c, const struct rt_coll_args *a);

/* Shorthands: the configured algorithm, even shards. */
void rt_comm_allreduce(rt_comm_t *c, float *buf, size_t n, float scale);
void rt_comm_allreduce_with(rt_comm_t *c, enum rt_allreduce_algo algo, float *buf, size_t n,
                            float scale);
rt_comm_req *rt_comm_iallreduce(rt_comm_t *c, float *buf, size_t n, float scale);
rt_comm_req *rt_comm_iallreduce_with(rt_comm_t *c, enum rt_allreduce_algo algo, float *buf,
                                     size_t n, float scale);
/* Advances outstanding requests without blocking; returns 1 when req is complete. Every
 * request must be completed exactly once, by rt_comm_test returning 1 or by rt_comm_wait:
 * that releases its slot and req is invalid afterwards (even if a later request's wait
 * already finished it: requests complete in FIFO order). */
int rt_comm_test(rt_comm_t *c, rt_comm_req *req);
/* Blocks until req (and every request started before it) is complete. */
void rt_comm_wait(rt_comm_t *c, rt_comm_req *req);
/* Advances outstanding requests without blocking, completing none for the caller. */
void rt_comm_poke(rt_comm_t *c);

/* Hang detection: a blocking wait inside an allreduce or an agreement that lasts longer than
 * seconds prints what this rank waits for (which peer, which bucket, which ring step) and
 * ends the job through rt_comm_abort. 0 (the default) waits forever. */
void rt_comm_set_timeout(rt_comm_t *c, double seconds);
double rt_comm_timeout(const rt_comm_t *c);
/* Names the next request started (a bucket index) in hang reports and on the timeline. */
void rt_comm_label_next(rt_comm_t *c, int label);
/* Running totals since init: seconds this rank was blocked waiting inside allreduces, and
 * the part of them it waited for data from its left neighbour in the ring. */
struct rt_comm_times {
    double blocked_s, wait_left_s;
};
void rt_comm_times(const rt_comm_t *c, struct rt_comm_times *t);
/* Collective: n doubles of every rank to every rank; all (size * n), rank-major. */
void rt_comm_allgather_f64(rt_comm_t *c, const double *mine, int n, double *all);

/* Point to point on the job's communicator (bulk transfers at the end of a run, such as
 * the trace): bytes of any size, in pieces MPI can count. */
void rt_comm_send_bytes(rt_comm_t *c, const void *buf, size_t bytes, int dest);
void rt_comm_recv_bytes(rt_comm_t *c, void *buf, size_t bytes, int src);

/* Collective, in place: element-wise sum / max of n doubles (metrics). */
void rt_comm_sum_f64(rt_comm_t *c, double *vals, int n);
void rt_comm_max_f64(rt_comm_t *c, double *vals, int n);
/* Collective, in place, exact in any order: element-wise maximum of n floats. Blocking. */
void rt_comm_max_f32(rt_comm_t *c, float *vals, size_t n);
/* Collective: every rank's value to every rank; all (size) is indexed by rank. */
void rt_comm_allgather_u64(rt_comm_t *c, uint64_t mine, uint64_t *all);
/* Collective: root's bytes to everyone. */
void rt_comm_bcast(rt_comm_t *c, void *buf, size_t bytes, int root);
void rt_comm_barrier(rt_comm_t *c);

/* 1 when MPI allows a second thread to make MPI calls (MPI_THREAD_SERIALIZED or better). */
int rt_comm_threads_ok(const rt_comm_t *c);

/* Seconds since an arbitrary point (MPI_Wtime). */
double rt_comm_wtime(void);

/* The one fatal path: prints "ringtrain: error: [rank r/N] <msg>" and MPI_Abort(code).
 * For failures after which ranks cannot agree (inside a collective). Never returns. */
_Noreturn void rt_comm_abort(rt_comm_t *c, int exit_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
