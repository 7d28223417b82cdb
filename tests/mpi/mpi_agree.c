/* mpi_agree.c - rt_comm_agree and the collective helpers at any rank count. Assertions are
 * made on agreed values only; the exit code is the failure count summed over ranks. */
#include "check_util.h"
#include "ringtrain/comm.h"
#include "ringtrain/status.h"

#include <stdio.h>
#include <string.h>

static rt_comm_t *comm;

START_TEST(agree_all_ok)
{
    ck_assert_int_eq(rt_comm_agree(comm, RT_OK), RT_OK);
}
END_TEST

START_TEST(agree_lowest_failing_rank_wins)
{
    int rank = rt_comm_rank(comm), size = rt_comm_size(comm);
    /* The last rank and (when there are 3+) rank 1 fail, with different codes. */
    int st = RT_OK;
    rt_error_clear();
    if (rank == size - 1) st = rt_errorf(RT_ERR_IO, "rank %d: disk gone", rank);
    if (size >= 3 && rank == 1) st = rt_errorf(RT_ERR_SHAPE, "rank %d: bad shape", rank);
    int agreed = rt_comm_agree(comm, st);
    int first = size >= 3 ? 1 : size - 1;
    char want[64];
    snprintf(want, sizeof want, "rank %d: %s", first,
             first == 1 && size >= 3 ? "bad shape" : "disk gone");
    ck_assert_int_eq(agreed, first == 1 && size >= 3 ? RT_ERR_SHAPE : RT_ERR_IO);
    ck_assert_str_eq(rt_error_message(agreed), want);
    rt_error_clear();
}
END_TEST

START_TEST(allreduce_sums_exactly)
{
    int rank = rt_comm_rank(comm), size = rt_comm_size(comm);
    enum { N = 1000003 };
    static float buf[N];
    for (int i = 0; i < N; i++)
        buf[i] = (float)(1000 * rank + i % 997); /* exact in float when summed */
    rt_comm_allreduce(comm, buf, N, 1.0f);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += buf[i] != (float)(1000.0 * size * (size - 1) / 2 + (double)size * (i % 997));
    double d = bad;
    rt_comm_sum_f64(comm, &d, 1);
    ck_assert_int_eq((int)d, 0);
}
END_TEST

START_TEST(bcast_and_max)
{
    int rank = rt_comm_rank(comm), size = rt_comm_size(comm);
    char text[32] = "";
    if (rank == size - 1) snprintf(text, sizeof text, "from the last rank");
    rt_comm_bcast(comm, text, sizeof text, size - 1);
    ck_assert_str_eq(text, "from the last rank");
    double v = rank;
    rt_comm_max_f64(comm, &v, 1);
    ck_assert_int_eq((int)v, size - 1);
}
END_TEST

int main(int argc, char **argv)
{
    rt_comm_init(&comm, &argc, &argv);
    Suite *s = suite_create("mpi_agree");
    TCase *tc = tcase_create("rt_comm_agree");
    tcase_add_test(tc, agree_all_ok);
    tcase_add_test(tc, agree_lowest_failing_rank_wins);
    suite_add_tcase(s, tc);
    tc = tcase_create("rt_comm_collectives");
    tcase_add_test(tc, allreduce_sums_exactly);
    tcase_add_test(tc, bcast_and_max);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, rt_comm_rank(comm) ? CK_SILENT : CK_NORMAL);
    double failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rt_comm_sum_f64(comm, &failed, 1);
    rt_comm_finalize(comm);
    return failed == 0 ? 0 : 1;
}
