/* The single-process communicator (include/kiln/dist.h): rank 0 of 1, sums and broadcasts
 * leave the buffer as it is, agree passes the caller's status through, argument checks, the
 * request pool and NULL handling. The MPI engine with 2 ranks is tests/mpi/test_dist_mpi.c
 * (ctest label mpi), since Criterion forks its tests and MPI does not survive a fork. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/dist.h"

Test(dist, single_rank_size_name)
{
    kiln_comm *c = kiln_comm_single();
    cr_assert_not_null(c, "%s", kiln_last_error());
    cr_assert_eq(kiln_comm_rank(c), 0);
    cr_assert_eq(kiln_comm_size(c), 1);
    cr_assert_str_eq(kiln_comm_name(c), "single");
    kiln_comm_abort(c, "returns for one process"); /* does nothing */
    kiln_comm_free(c);
}

/* ctest starts this without mpirun: the world is the single communicator, one object */
Test(dist, world_without_mpirun)
{
    cr_assert_null(getenv("OMPI_COMM_WORLD_SIZE"), "run under mpirun");
    kiln_comm *c = kiln_comm_world();
    cr_assert_not_null(c, "%s", kiln_last_error());
    cr_assert_eq(kiln_comm_world(), c);
    cr_assert_str_eq(kiln_comm_name(c), "single");
    cr_assert_eq(kiln_comm_size(c), 1);
    kiln_comm_free(c);
    kiln_comm *d = kiln_comm_world(); /* a new one after the free */
    cr_assert_not_null(d);
    cr_assert_eq(kiln_comm_rank(d), 0);
    kiln_comm_free(d);
    cr_assert_eq(kiln_comm_mpi_built(), KILN_TEST_MPI_BUILT, "KILN_MPI is %d", KILN_TEST_MPI_BUILT);
}

Test(dist, sums_unchanged)
{
    kiln_comm *c = kiln_comm_single();
    float f[5] = {1.5f, -2, 0, NAN, 1e30f};
    double d[3] = {1e-300, -7, 0.1};
    cr_assert_eq(kiln_comm_allreduce_sum_f32(c, f, 5), KILN_STATUS_OK);
    cr_assert_eq(kiln_comm_allreduce_sum_f64(c, d, 3), KILN_STATUS_OK);
    cr_assert(f[0] == 1.5f && f[1] == -2 && f[2] == 0 && isnan(f[3]) && f[4] == 1e30f);
    cr_assert(d[0] == 1e-300 && d[1] == -7 && d[2] == 0.1);
    cr_assert_eq(kiln_comm_allreduce_sum_f32(c, NULL, 0), KILN_STATUS_OK, "n 0 with no buffer");
    cr_assert_eq(kiln_comm_allreduce_sum_f64(c, NULL, 0), KILN_STATUS_OK);
    cr_assert_eq(kiln_comm_allreduce_sum_f32(c, NULL, 3), KILN_STATUS_INVALID);
    cr_assert(strstr(kiln_last_error(), "kiln_comm_allreduce_sum_f32") != NULL, "%s", kiln_last_error());
    cr_assert_eq(kiln_comm_allreduce_sum_f64(c, NULL, 1), KILN_STATUS_INVALID);
    kiln_comm_free(c);
}

Test(dist, buckets_and_pool)
{
    kiln_comm *c = kiln_comm_single();
    float b[64][2];
    kiln_comm_req *r[65];
    for (int i = 0; i < 64; i++) {
        b[i][0] = (float)i;
        b[i][1] = -(float)i;
        cr_assert_eq(kiln_comm_iallreduce_sum_f32(c, b[i], 2, &r[i]), KILN_STATUS_OK, "bucket %d", i);
        cr_assert_not_null(r[i]);
    }
    /* at most 64 in flight */
    cr_assert_eq(kiln_comm_iallreduce_sum_f32(c, b[0], 2, &r[64]), KILN_STATUS_STATE);
    cr_assert_null(r[64]);
    bool done = false;
    cr_assert_eq(kiln_comm_test(c, r[7], &done), KILN_STATUS_OK);
    cr_assert(done, "one process: a sum is done at once");
    cr_assert_eq(kiln_comm_test(c, r[7], NULL), KILN_STATUS_INVALID, "done NULL");
    cr_assert_eq(kiln_comm_test(c, NULL, &done), KILN_STATUS_INVALID, "req NULL");
    for (int i = 63; i >= 0; i--) {
        cr_assert_eq(kiln_comm_wait(c, r[i]), KILN_STATUS_OK);
        cr_assert(b[i][0] == (float)i && b[i][1] == -(float)i);
    }
    cr_assert_eq(kiln_comm_wait(c, r[5]), KILN_STATUS_INVALID, "a second wait");
    cr_assert_eq(kiln_comm_test(c, r[5], &done), KILN_STATUS_INVALID, "a test after the wait");
    cr_assert_eq(kiln_comm_iallreduce_sum_f32(c, NULL, 0, &r[0]), KILN_STATUS_OK, "free again, n 0");
    cr_assert_eq(kiln_comm_wait(c, r[0]), KILN_STATUS_OK);
    cr_assert_eq(kiln_comm_iallreduce_sum_f32(c, NULL, 4, &r[0]), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_iallreduce_sum_f32(c, b[0], 2, NULL), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_wait(c, NULL), KILN_STATUS_INVALID);
    /* another communicator's request */
    kiln_comm *d = kiln_comm_single();
    kiln_comm_req *rd;
    cr_assert_eq(kiln_comm_iallreduce_sum_f32(d, b[0], 2, &rd), KILN_STATUS_OK);
    cr_assert_eq(kiln_comm_wait(c, rd), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_wait(d, rd), KILN_STATUS_OK);
    kiln_comm_free(d);
    /* freeing with requests in flight is allowed */
    cr_assert_eq(kiln_comm_iallreduce_sum_f32(c, b[0], 2, &r[0]), KILN_STATUS_OK);
    kiln_comm_free(c);
}

Test(dist, gathers_single)
{
    kiln_comm *c = kiln_comm_single();
    float all[4] = {0}, mine[4] = {1, 2, 3, 4};
    size_t n = 4;
    cr_assert_eq(kiln_comm_allgatherv_f32(c, mine, all, &n), KILN_STATUS_OK);
    cr_assert(!memcmp(all, mine, sizeof all), "the one part lands in all");
    cr_assert_eq(kiln_comm_gatherv_f32(c, all, all, &n, 0), KILN_STATUS_OK); /* in place */
    cr_assert(!memcmp(all, mine, sizeof all));
    cr_assert_eq(kiln_comm_gatherv_f32(c, mine, all, &n, 1), KILN_STATUS_INVALID, "root 1 of 1");
    cr_assert(strstr(kiln_last_error(), "root 1") != NULL, "%s", kiln_last_error());
    cr_assert_eq(kiln_comm_allgatherv_f32(c, mine, all, NULL), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_allgatherv_f32(c, NULL, all, &n), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_allgatherv_f32(c, mine, NULL, &n), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_allgatherv_f32(NULL, mine, all, &n), KILN_STATUS_INVALID);
    n = 0;
    cr_assert_eq(kiln_comm_allgatherv_f32(c, NULL, NULL, &n), KILN_STATUS_OK);
    kiln_comm_free(c);
}

Test(dist, bcast_barrier)
{
    kiln_comm *c = kiln_comm_single();
    char s[6] = "hello";
    cr_assert_eq(kiln_comm_bcast(c, s, sizeof s, 0), KILN_STATUS_OK);
    cr_assert_str_eq(s, "hello");
    cr_assert_eq(kiln_comm_bcast(c, NULL, 0, 0), KILN_STATUS_OK);
    cr_assert_eq(kiln_comm_bcast(c, s, sizeof s, 1), KILN_STATUS_INVALID, "root 1 of 1");
    cr_assert(strstr(kiln_last_error(), "root 1") != NULL, "%s", kiln_last_error());
    cr_assert_eq(kiln_comm_bcast(c, s, sizeof s, -1), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_bcast(c, NULL, 3, 0), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_barrier(c), KILN_STATUS_OK);
    kiln_comm_free(c);
}

Test(dist, agree_passes_status_through)
{
    kiln_comm *c = kiln_comm_single();
    kiln_clear_error();
    cr_assert_eq(kiln_comm_agree(c, KILN_STATUS_OK), KILN_STATUS_OK);
    kiln_status st = kiln_error(KILN_STATUS_FORMAT, "x.csv: line 3: bad");
    cr_assert_eq(kiln_comm_agree(c, st), KILN_STATUS_FORMAT);
    cr_assert_str_eq(kiln_last_error(), "x.csv: line 3: bad", "the caller's message is kept");
    kiln_clear_error();
    cr_assert_eq(kiln_comm_agree(c, KILN_STATUS_NOMEM), KILN_STATUS_NOMEM);
    cr_assert_neq(kiln_last_error()[0], '\0', "a failure without a message gets one");
    kiln_comm_free(c);
}

Test(dist, timeout_setter)
{
    kiln_comm *c = kiln_comm_single();
    cr_assert_eq(kiln_comm_set_timeout(c, 2.5), KILN_STATUS_OK);
    cr_assert_eq(kiln_comm_set_timeout(c, 0), KILN_STATUS_OK, "0: forever");
    cr_assert_eq(kiln_comm_set_timeout(c, -1), KILN_STATUS_INVALID);
    cr_assert(strstr(kiln_last_error(), "kiln_comm_set_timeout") != NULL, "%s", kiln_last_error());
    cr_assert_eq(kiln_comm_set_timeout(c, NAN), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_set_timeout(c, INFINITY), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_set_timeout(NULL, 1), KILN_STATUS_INVALID);
    kiln_comm_free(c);
}

Test(dist, null_communicator)
{
    float f = 1;
    kiln_comm_req *r = (kiln_comm_req *)&f;
    cr_assert_eq(kiln_comm_rank(NULL), 0);
    cr_assert_eq(kiln_comm_size(NULL), 1);
    cr_assert_str_eq(kiln_comm_name(NULL), "single");
    cr_assert_eq(kiln_comm_allreduce_sum_f32(NULL, &f, 1), KILN_STATUS_INVALID);
    cr_assert(strstr(kiln_last_error(), "no communicator") != NULL, "%s", kiln_last_error());
    cr_assert_eq(kiln_comm_allreduce_sum_f64(NULL, NULL, 0), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_iallreduce_sum_f32(NULL, &f, 1, &r), KILN_STATUS_INVALID);
    cr_assert_null(r);
    cr_assert_eq(kiln_comm_wait(NULL, NULL), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_bcast(NULL, &f, sizeof f, 0), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_barrier(NULL), KILN_STATUS_INVALID);
    cr_assert_eq(kiln_comm_agree(NULL, KILN_STATUS_OK), KILN_STATUS_INVALID);
    kiln_comm_abort(NULL, "nothing"); /* does nothing */
    kiln_comm_free(NULL);
    cr_assert(f == 1);
}
