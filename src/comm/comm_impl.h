/* comm_impl.h - the communicator context, private to src/comm. */
#ifndef RT_COMM_IMPL_H
#define RT_COMM_IMPL_H

#include <mpi.h>

#include "ringtrain/comm.h"

/* ---- Allreduce requests (allreduce.c drives them, ring.c / rd.c implement them) -------- */

/* Ring windows: receives in flight (each owns one scratch segment, so RT_RING_RWIN = 2 is
 * the double buffering: segment k+1 is already arriving while segment k is reduced) and
 * sends in flight. */
#define RT_RING_RWIN 2
#define RT_RING_SWIN 4

/* Recursive doubling sends each vector as up to RT_RD_MAX_FRAGS fragments of at most
 * RT_RD_FRAG_ELEMS floats: small enough for Open MPI's eager protocol (4 KiB with header on
 * shared memory), so they need no rendezvous handshake (rd.c). */
#define RT_RD_FRAG_ELEMS 1008
#define RT_RD_MAX_FRAGS  32

/* Tags: request tag base = (sequence % RT_TAG_REQS) * RT_TAG_PHASES, plus the phase. */
#define RT_TAG_REQS   4096
#define RT_TAG_PHASES 4
enum { RT_TAG_RS = 0, RT_TAG_AG = 1 };                                 /* ring */
enum { RT_TAG_FOLD_IN = 0, RT_TAG_EXCHANGE = 1, RT_TAG_FOLD_OUT = 2 }; /* rd */

enum rt_req_state {
    RT_REQ_FREE,   /* slot unused */
    RT_REQ_QUEUED, /* in the FIFO, not started (scratch belongs to the head only) */
    RT_REQ_ACTIVE, /* the head, started */
    RT_REQ_DONE    /* finished; the slot is released when the caller sees it done */
};

struct rt_ring_state {
    int steps;                      /* 2(N-1): N-1 reduce-scatter then N-1 allgather steps */
    size_t seg;                     /* segment length (floats) of this request */
    int rt, rk;                     /* next receive to complete: (step, segment) */
    int pt, pk;                     /* next receive to post */
    int st, sk;                     /* next send to post */
    int ct, ck;                     /* next send to complete */
    int nr, rhead;                  /* receives in flight, oldest window slot */
    int ns, shead;                  /* sends in flight, oldest window slot */
    double t_gather;                /* trace clock: the reduce-scatter half ended */
    MPI_Request rreq[RT_RING_RWIN]; /* window slot i receives into scratch segment i */
    MPI_Request sreq[RT_RING_SWIN];
};

struct rt_rd_state {
    int peer;        /* partner of the phase in flight (hang reports) */
    size_t off, len; /* current piece of buf (pieces of scratch size) */
    int phase;       /* RD_* in rd.c */
    int step;        /* exchange step: partner = new rank ^ (1 << step) */
    int posted;      /* requests of the current phase are in flight */
    int nreq;        /* how many: fragments sent plus received */
    MPI_Request req[2 * RT_RD_MAX_FRAGS];
};

struct rt_mpi_state {
    size_t off; /* start of the current piece (<= 2^30 elements per MPI call) */
    int posted;
    MPI_Request req;
};

struct rt_allreduce_req {
    int label;      /* the caller's name for it (a bucket index), -1 if none: hang reports */
    double t_start; /* when it started (trace clock), when tracing */
    float *buf;     /* borrowed: n floats, reduced in place */
    size_t n;
    float scale;
    enum rt_allreduce_algo algo; /* resolved: never RT_ALLREDUCE_AUTO */
    int tag;                     /* base tag, distinct for the last RT_TAG_REQS requests */
    int blocking;                /* started by a blocking call: may block inside MPI */
    enum rt_req_state state;
    union {
        struct rt_ring_state ring;
        struct rt_rd_state rd;
        struct rt_mpi_state mpi;
    } u;
};

struct rt_comm {
    MPI_Comm world; /* owned: a duplicate, so our traffic never mixes with a library's */
    int rank, size, local_size;
    int thread_level; /* MPI_THREAD_* provided by MPI_Init_thread */
    struct rt_comm_opts opts;
    /* allreduce state (allreduce.c, ring.c, rd.c): scratch, request queue */
    MPI_Comm ar;          /* owned: a second duplicate for allreduce traffic only */
    float *scratch;       /* owned, 64-byte aligned: ring segments or one rd piece */
    size_t scratch_elems; /* floats in scratch */
    size_t seg_elems;     /* ring pipeline segment (floats) */
    unsigned seq;         /* requests started so far (same on every rank) */
    int rd_p2, rd_rem;    /* largest power of two <= size; size - rd_p2 */
    struct rt_allreduce_req slots[RT_MAX_INFLIGHT];
    int queue[RT_MAX_INFLIGHT]; /* FIFO of slot indices, oldest at queue[qhead] */
    int qhead, qlen;
    int slots_used;
    struct rt_allreduce_req breq;  /* the request of a blocking call */
    int next_label;                /* label of the next request started (rt_comm_label_next) */
    double timeout_s;              /* comm.timeout_s; 0 = wait forever */
    double blocked_s, wait_left_s; /* clocks: rt_comm_times */
};

/* What a blocking wait is waiting for, for the hang report. */
struct rt_wait_what {
    int peer;          /* rank waited for, or -1 */
    const char *role;  /* "left neighbour", "right neighbour", "partner" */
    const char *stage; /* "reduce-scatter", "allgather", "exchange", ... */
    int step, steps;   /* 1-based step of the stage and how many it has */
};

/* Waits for one (any = 1: returns its index) or all of reqs[0..n). Without a timeout this is
 * MPI_Waitany/MPI_Waitall; with one it polls, and past c->timeout_s prints what it waited
 * for (w, and r's label) and aborts the job. The time blocked goes to the clocks, to
 * wait_left_s too when w->peer is the left neighbour. */
int rt_wait_(struct rt_comm *c, int n, MPI_Request *reqs, int any, const struct rt_allreduce_req *r,
             const struct rt_wait_what *w);

/* Called by rt_comm_init after the fields above are set, and by rt_comm_finalize. */
int rt_allreduce_init_(struct rt_comm *c);
void rt_allreduce_free_(struct rt_comm *c);

/* Algorithm bodies: start initialises req->u and posts what it can; progress advances as
 * far as possible and returns 1 when the request is complete. With block = 0 progress never
 * waits inside MPI; with block = 1 it returns only when complete. */
void rt_ring_start_(struct rt_comm *c, struct rt_allreduce_req *r);
int rt_ring_progress_(struct rt_comm *c, struct rt_allreduce_req *r, int block);
void rt_rd_start_(struct rt_comm *c, struct rt_allreduce_req *r);
int rt_rd_progress_(struct rt_comm *c, struct rt_allreduce_req *r, int block);

/* buf[i] *= scale for n elements, a no-op when scale == 1. */
/* acc += in, and acc = (acc + in) * scale, over len floats in separate buffers. The
 * restrict lets -O2 vectorise without run-time alias checks (which it will not emit); the
 * scalar loops made the ring lose to MPI_Allreduce between 512 KiB and 8 MiB. */
void rt_add_into_(float *restrict acc, const float *restrict in, int len);
void rt_add_scaled_(float *restrict acc, const float *restrict in, int len, float scale);
void rt_scale_(float *buf, size_t n, float scale);

#endif
