/* comm_impl.h - the communicator context, groups, requests and the algorithm table, private
 * to src/comm. */
#ifndef RT_COMM_IMPL_H
#define RT_COMM_IMPL_H

#include <mpi.h>

#include "ringtrain/comm.h"

/* ---- Groups ------------------------------------------------------------------------------
 * What an algorithm runs on: a communicator, this rank's place in it, and scratch that one
 * request at a time may use. The context owns one group over all ranks today; hierarchical
 * schemes compose groups per node and across nodes, each with its own scratch. */
struct rt_group {
    MPI_Comm comm; /* owned by whoever made the group */
    int rank, size;
    float *scratch;       /* owned, 64-byte aligned: ring segments or one rd piece */
    size_t scratch_elems; /* floats in scratch */
    size_t seg_elems;     /* ring pipeline segment (floats) */
    int rd_p2, rd_rem;    /* largest power of two <= size; size - rd_p2 */
};

/* ---- Requests ------------------------------------------------------------------------------ */

/* Tags: request tag base = (sequence % RT_TAG_REQS) * RT_TAG_PHASES, plus the phase. */
#define RT_TAG_REQS   4096
#define RT_TAG_PHASES 4

enum rt_req_state {
    RT_REQ_FREE,   /* slot unused */
    RT_REQ_QUEUED, /* in the FIFO, not started (scratch belongs to the head only) */
    RT_REQ_ACTIVE, /* the head, started */
    RT_REQ_DONE    /* finished; the slot is released when the caller sees it done */
};

/* An algorithm's private progress state lives in the request, as opaque bytes each
 * algorithm casts to its own struct (checked by a static assertion in its file). */
#define RT_ALGO_STATE_BYTES 640

struct rt_coll_algo;

struct rt_comm_req {
    struct rt_coll_args a;          /* resolved: a.algo is never AUTO */
    const struct rt_coll_algo *alg; /* the table entry running it */
    struct rt_group *g;
    int label;      /* the caller's name for it (a bucket index), -1 if none: hang reports */
    double t_start; /* when it started (trace clock), when tracing */
    int tag;        /* base tag, distinct for the last RT_TAG_REQS requests */
    int blocking;   /* started by a blocking call: may block inside MPI */
    enum rt_req_state state;
    _Alignas(16) unsigned char state_bytes[RT_ALGO_STATE_BYTES];
};

/* ---- The algorithm table (algos.c) ------------------------------------------------------
 * An algorithm is one file and one entry: start initialises its state and posts what it
 * can; progress advances as far as possible and returns 1 when the request is complete
 * (block = 0: never waits inside MPI; block = 1: returns only when complete); trace puts
 * the finished request on the timeline; ops and types say what it runs. N == 1
 * never reaches an algorithm (requests.c scales in place). */
struct rt_comm;
struct rt_coll_algo {
    const char *name;
    unsigned ops, types; /* sets of (1 << rt_coll_op) and (1 << rt_coll_type) */
    void (*start)(struct rt_comm *c, struct rt_comm_req *r);
    int (*progress)(struct rt_comm *c, struct rt_comm_req *r, int block);
    void (*trace)(const struct rt_comm_req *r, double end);
};
extern const struct rt_coll_algo rt_algo_ring_, rt_algo_rd_, rt_algo_mpi_;
/* The entry of algorithm a (never AUTO). */
const struct rt_coll_algo *rt_algo_(enum rt_allreduce_algo a);

/* ---- The context --------------------------------------------------------------------------- */

struct rt_comm {
    MPI_Comm world; /* owned: a duplicate, so our traffic never mixes with a library's */
    int rank, size, local_size;
    int thread_level; /* MPI_THREAD_* provided by MPI_Init_thread */
    struct rt_comm_opts opts;
    /* collective requests (requests.c and the algorithms) */
    MPI_Comm ar;         /* owned: a second duplicate for collective traffic only */
    struct rt_group all; /* every rank, over ar */
    unsigned seq;        /* requests started so far (same on every rank) */
    struct rt_comm_req slots[RT_MAX_INFLIGHT];
    int queue[RT_MAX_INFLIGHT]; /* FIFO of slot indices, oldest at queue[qhead] */
    int qhead, qlen;
    int slots_used;
    struct rt_comm_req breq;       /* the request of a blocking call */
    int next_label;                /* label of the next request started (rt_comm_label_next) */
    double timeout_s;              /* comm.timeout_s; 0 = wait forever */
    double blocked_s, wait_left_s; /* clocks: rt_comm_times */
};

/* What a blocking wait is waiting for, for the hang report. */
struct rt_wait_what {
    int peer;          /* rank waited for (in the request's group), or -1 */
    const char *role;  /* "left neighbour", "right neighbour", "partner" */
    const char *stage; /* "reduce-scatter", "allgather", "exchange", ... */
    int step, steps;   /* 1-based step of the stage and how many it has */
};

/* Waits for one (any = 1: returns its index) or all of reqs[0..n). Without a timeout this is
 * MPI_Waitany/MPI_Waitall; with one it polls, and past c->timeout_s prints what it waited
 * for (w, and r's label) and aborts the job. The time blocked goes to the clocks, to
 * wait_left_s too when w->peer is the left neighbour. */
int rt_wait_(struct rt_comm *c, int n, MPI_Request *reqs, int any, const struct rt_comm_req *r,
             const struct rt_wait_what *w);

/* Called by rt_comm_init after the fields above are set, and by rt_comm_finalize. */
int rt_requests_init_(struct rt_comm *c);
void rt_requests_free_(struct rt_comm *c);

/* Part j of request r: the even shard of shard.h or the caller's cut. */
static inline size_t rt_part_off_(const struct rt_comm_req *r, int j)
{
    return r->a.part ? r->a.part[j] : rt_shard_off(r->a.n, r->g->size, j);
}

static inline size_t rt_part_len_(const struct rt_comm_req *r, int j)
{
    return r->a.part ? r->a.part[j + 1] - r->a.part[j] : rt_shard_len(r->a.n, r->g->size, j);
}

static inline size_t rt_elem_bytes_(enum rt_coll_type t)
{
    return t == RT_TYPE_I64 ? sizeof(int64_t) : sizeof(float);
}

static inline MPI_Datatype rt_elem_mpi_(enum rt_coll_type t)
{
    return t == RT_TYPE_I64 ? MPI_INT64_T : MPI_FLOAT;
}

/* Element i of r's buffer. */
static inline void *rt_elem_at_(const struct rt_comm_req *r, size_t i)
{
    return (char *)r->a.buf + i * rt_elem_bytes_(r->a.type);
}

/* acc += in, and acc = (acc + in) * scale, over len floats in separate buffers. The
 * restrict lets -O2 vectorise without run-time alias checks (which it will not emit); the
 * scalar loops made the ring lose to MPI_Allreduce between 512 KiB and 8 MiB. */
void rt_add_into_(float *restrict acc, const float *restrict in, int len);
void rt_add_scaled_(float *restrict acc, const float *restrict in, int len, float scale);
void rt_add_into_i64_(int64_t *restrict acc, const int64_t *restrict in, int len);
/* buf[i] *= scale for n elements, a no-op when scale == 1. */
void rt_scale_(float *buf, size_t n, float scale);

#endif
