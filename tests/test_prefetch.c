/* The prefetch ring (src/data/prefetch.c) on its own, with a make callback that writes
 * (epoch, split, batch) into the batch: batches come back right in order and out of order,
 * synchronous and with workers; the ring really makes batches ahead; an error from make reaches
 * the consumer naming the batch; state changed between pause and seek is never mixed with the
 * old state; free stops workers that are busy. */
#include <criterion/criterion.h>

#include "kiln.h"
#include "util/ku.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { XN = 64 };

typedef struct src {
    int64_t epoch;       /* changed only while paused */
    int64_t fail_batch;  /* train batch that fails, or -1 */
    int sleep_us;        /* per make, to keep workers busy */
    atomic_int calls;
} src;

static kiln_status make(void *user, kiln_data_split split, int64_t batch, void *xv, void *yv)
{
    src *s = user;
    atomic_fetch_add(&s->calls, 1);
    if (s->sleep_us) usleep((useconds_t)s->sleep_us);
    if (split == KILN_DATA_SPLIT_TRAIN && batch == s->fail_batch)
        return kiln_error(KILN_STATUS_FORMAT, "boom in item %lld", (long long)batch * 10 + 7);
    int64_t *x = xv, *y = yv;
    for (int i = 0; i < XN; i++) x[i] = s->epoch * 1000000 + split * 100000 + batch * 100 + i;
    y[0] = batch;
    return KILN_STATUS_OK;
}

static kiln_prefetch *ring(src *s, int workers, int slots)
{
    kiln_prefetch_params p = {.n_workers = workers, .n_slots = slots, .x_bytes = XN * sizeof(int64_t),
                              .y_bytes = sizeof(int64_t), .n_batches = {10, 4}};
    kiln_prefetch *r = kiln_prefetch_new(&p, make, s);
    cr_assert(r, "%s", kiln_last_error());
    return r;
}

static void expect_batch(kiln_prefetch *r, const src *s, kiln_data_split split, int64_t b)
{
    const void *x, *y;
    cr_assert_eq(kiln_prefetch_get(r, split, b, &x, &y), KILN_STATUS_OK, "%s", kiln_last_error());
    const int64_t *px = x;
    for (int i = 0; i < XN; i++)
        cr_assert_eq(px[i], s->epoch * 1000000 + split * 100000 + b * 100 + i, "%s batch %lld item %d",
                     kiln_data_split_name(split), (long long)b, i);
    cr_assert_eq(*(const int64_t *)y, b);
    kiln_prefetch_release(r);
}

Test(prefetch, batches_in_order_and_jumps)
{
    for (int w = 0; w <= 3; w++) {
        src s = {.fail_batch = -1};
        kiln_prefetch *r = ring(&s, w, 3);
        for (int64_t b = 0; b < 10; b++) expect_batch(r, &s, KILN_DATA_SPLIT_TRAIN, b);
        for (int64_t b = 0; b < 4; b++) expect_batch(r, &s, KILN_DATA_SPLIT_VALID, b);
        /* jumps the ring did not foresee */
        int64_t jumps[][2] = {{0, 5}, {0, 2}, {1, 3}, {0, 9}, {1, 0}, {0, 0}, {0, 1}};
        for (size_t k = 0; k < sizeof jumps / sizeof *jumps; k++) expect_batch(r, &s, (kiln_data_split)jumps[k][0], jumps[k][1]);
        kiln_prefetch_free(r);
    }
}

Test(prefetch, makes_batches_ahead)
{
    src s = {.fail_batch = -1};
    kiln_prefetch *r = ring(&s, 2, 4);
    expect_batch(r, &s, KILN_DATA_SPLIT_TRAIN, 0);
    /* with batch 0 given back, the 4 slots hold batches 1-4: made without being asked */
    for (int t = 0; t < 500 && atomic_load(&s.calls) < 5; t++) usleep(10000);
    cr_expect_eq(atomic_load(&s.calls), 5, "make ran %d times, not 1 + 4 ahead", atomic_load(&s.calls));
    for (int64_t b = 1; b <= 4; b++) expect_batch(r, &s, KILN_DATA_SPLIT_TRAIN, b);
    kiln_prefetch_free(r);
    /* synchronous: nothing ahead */
    src z = {.fail_batch = -1};
    r = ring(&z, 0, 4);
    expect_batch(r, &z, KILN_DATA_SPLIT_TRAIN, 0);
    usleep(20000);
    cr_expect_eq(atomic_load(&z.calls), 1);
    kiln_prefetch_free(r);
}

Test(prefetch, errors_name_the_batch)
{
    for (int w = 0; w <= 2; w += 2) {
        src s = {.fail_batch = 3};
        kiln_prefetch *r = ring(&s, w, 4);
        for (int64_t b = 0; b < 3; b++) expect_batch(r, &s, KILN_DATA_SPLIT_TRAIN, b);
        const void *x, *y;
        cr_expect_eq(kiln_prefetch_get(r, KILN_DATA_SPLIT_TRAIN, 3, &x, &y), KILN_STATUS_FORMAT);
        ku_expect_error("prefetch: train batch 3: boom in item 37", "make's error");
        expect_batch(r, &s, KILN_DATA_SPLIT_TRAIN, 4); /* the ring goes on */
        cr_expect_eq(kiln_prefetch_get(r, KILN_DATA_SPLIT_VALID, 4, &x, &y), KILN_STATUS_INVALID);
        ku_expect_error("valid batch 4 out of range", "a batch past the end");
        kiln_prefetch_free(r);
    }
    kiln_prefetch_params bad = {.n_workers = 65, .n_batches = {1, 1}};
    src s = {.fail_batch = -1};
    cr_expect_null(kiln_prefetch_new(&bad, make, &s));
    ku_expect_error("n_workers 65", "too many workers");
}

/* A new epoch while workers are making the old one's batches: every batch after the seek is
 * the new epoch's (the pause waited for the running makes). */
Test(prefetch, epoch_change_never_mixes_states)
{
    src s = {.fail_batch = -1, .sleep_us = 300};
    kiln_prefetch *r = ring(&s, 3, 6);
    for (int64_t e = 0; e < 12; e++) {
        kiln_prefetch_pause(r);
        s.epoch = e;
        kiln_prefetch_seek(r, KILN_DATA_SPLIT_TRAIN, 0);
        for (int64_t b = 0; b < (e % 3 == 0 ? 10 : 2 + e % 5); b++) expect_batch(r, &s, KILN_DATA_SPLIT_TRAIN, b);
    }
    kiln_prefetch_free(r);
}

Test(prefetch, free_stops_busy_workers)
{
    src s = {.fail_batch = -1, .sleep_us = 200000};
    kiln_prefetch *r = ring(&s, 4, 8);
    kiln_prefetch_seek(r, KILN_DATA_SPLIT_TRAIN, 0);
    usleep(5000);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    kiln_prefetch_free(r); /* the running makes finish, the pending ones are dropped */
    clock_gettime(CLOCK_MONOTONIC, &b);
    double dt = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    /* 4 makes were running; had free waited for the 8 scheduled, make would have run 8 times */
    cr_expect_lt(atomic_load(&s.calls), 8, "free made every scheduled batch (%d) instead of stopping",
                 atomic_load(&s.calls));
    cr_expect_lt(dt, 5.0);
}
