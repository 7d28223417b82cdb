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

/* Collective, in place: buf (n floats) becomes the element-wise sum over ranks. n may
 * exceed INT_MAX. Placeholder over MPI_Allreduce until the ring allreduce lands. */
void rt_comm_allreduce_sum(rt_comm_t *c, float *buf, size_t n);
/* Collective, in place: element-wise sum / max of n doubles (metrics). */
void rt_comm_sum_f64(rt_comm_t *c, double *vals, int n);
void rt_comm_max_f64(rt_comm_t *c, double *vals, int n);
/* Collective: root's bytes to everyone. */
void rt_comm_bcast(rt_comm_t *c, void *buf, size_t bytes, int root);
void rt_comm_barrier(rt_comm_t *c);

/* Seconds since an arbitrary point (MPI_Wtime). */
double rt_comm_wtime(void);

/* The one fatal path: prints "ringtrain: error: [rank r/N] <msg>" and MPI_Abort(code).
 * For failures after which ranks cannot agree (inside a collective). Never returns. */
_Noreturn void rt_comm_abort(rt_comm_t *c, int exit_code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
