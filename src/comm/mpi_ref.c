/* mpi_ref.c - MPI's own allreduce as an algorithm of the table, for comparison.
 *
 * Blocking calls use MPI_Allreduce; queued ones MPI_Iallreduce, which Open MPI runs through
 * libnbc, a different and (measured, algos.c) slower algorithm that also adds in another
 * order. Messages beyond 2^30 floats go as consecutive pieces (MPI counts are int). */
#include "comm/comm_impl.h"
#include "ringtrain/trace.h"

#define MPI_MAX_COUNT ((size_t)1 << 30)

struct mpi_state {
    size_t off; /* start of the current piece */
    int posted;
    MPI_Request req;
};
_Static_assert(sizeof(struct mpi_state) <= RT_ALGO_STATE_BYTES, "mpi state too large");

static struct mpi_state *state(const struct rt_comm_req *r)
{
    return (struct mpi_state *)(void *)r->state_bytes;
}

static void mpi_start(struct rt_comm *c, struct rt_comm_req *r)
{
    (void)c;
    struct mpi_state *m = state(r);
    m->off = 0;
    m->posted = 0;
}

static int mpi_progress(struct rt_comm *c, struct rt_comm_req *r, int block)
{
    (void)c;
    struct mpi_state *m = state(r);
    while (m->off < r->a.n) {
        size_t len = r->a.n - m->off < MPI_MAX_COUNT ? r->a.n - m->off : MPI_MAX_COUNT;
        void *p = rt_elem_at_(r, m->off);
        MPI_Datatype type = rt_elem_mpi_(r->a.type);
        if (r->blocking) {
            MPI_Allreduce(MPI_IN_PLACE, p, (int)len, type, MPI_SUM, r->g->comm);
        } else {
            if (!m->posted) {
                MPI_Iallreduce(MPI_IN_PLACE, p, (int)len, type, MPI_SUM, r->g->comm, &m->req);
                m->posted = 1;
            }
            int flag = 0;
            if (block)
                MPI_Wait(&m->req, MPI_STATUS_IGNORE), flag = 1;
            else
                MPI_Test(&m->req, &flag, MPI_STATUS_IGNORE);
            if (!flag) return 0;
            m->posted = 0;
        }
        if (r->a.type == RT_TYPE_F32) rt_scale_(p, len, r->a.scale);
        m->off += len;
    }
    return 1;
}

static void mpi_trace(const struct rt_comm_req *r, double end)
{
    rt_trace_span(RT_TR_MPI_ALLREDUCE, r->label, r->t_start, end);
}

const struct rt_coll_algo rt_algo_mpi_ = {
    .name = "mpi",
    .ops = 1u << RT_OP_ALLREDUCE,
    .types = 1u << RT_TYPE_F32 | 1u << RT_TYPE_I64,
    .start = mpi_start,
    .progress = mpi_progress,
    .trace = mpi_trace,
};
