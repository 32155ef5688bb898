/* Language-model batches (kiln_lm_data_new): the stream is the documents in the epoch's order
 * cut into bs rows, windows follow each other and y is x shifted by one; train order changes
 * with the epoch and not with anything else, valid keeps its order; fastai 0.7's variable
 * window lengths (first bptt + 25, then N(bptt, 5) or N(bptt / 2, 5) with p 0.05, at least
 * 5) fit the rows; bad ids and short data are clear errors; with world ranks each rank's
 * batch is its rows of the one-rank batch, bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/ku.h"

/* n documents, document d holding len(d) ids: d * 1000 + k (so an id tells where it came from) */
typedef struct docs {
    int64_t **ids;
    int64_t *lens;
    int64_t n;
} docs;

static docs make_docs(int64_t n, int64_t base_len)
{
    docs d = {calloc((size_t)n, sizeof(int64_t *)), calloc((size_t)n, sizeof(int64_t)), n};
    for (int64_t i = 0; i < n; i++) {
        d.lens[i] = base_len + (i * 7) % 5;
        d.ids[i] = malloc((size_t)d.lens[i] * sizeof(int64_t));
        for (int64_t k = 0; k < d.lens[i]; k++) d.ids[i][k] = i * 1000 + k;
    }
    return d;
}

static void free_docs(docs *d)
{
    for (int64_t i = 0; i < d->n; i++) free(d->ids[i]);
    free(d->ids);
    free(d->lens);
}

/* the stream the epoch's order gives, cut to bs * row */
static int64_t *expected_stream(const docs *d, const int64_t *perm, int64_t bs, int64_t *row)
{
    int64_t total = 0;
    for (int64_t i = 0; i < d->n; i++) total += d->lens[i];
    *row = total / bs;
    int64_t *s = malloc((size_t)total * sizeof *s), at = 0;
    for (int64_t k = 0; k < d->n; k++) {
        int64_t i = perm ? perm[k] : k;
        memcpy(s + at, d->ids[i], (size_t)d->lens[i] * sizeof *s);
        at += d->lens[i];
    }
    return s;
}

static void expect_batches(kiln_data *data, kiln_data_split split, const int64_t *stream, int64_t bs, int64_t row)
{
    kiln_ctx *ctx = ku_ctx();
    int64_t nb = kiln_data_n_batches(data, split), next = 0;
    cr_assert_gt(nb, 0);
    for (int64_t i = 0; i < nb; i++) {
        kiln_tensor *x, *y;
        cr_assert_eq(kiln_data_get_batch(data, split, i, ctx, &x, &y), KILN_STATUS_OK, "%s", kiln_last_error());
        int64_t start, len;
        cr_assert_eq(kiln_lm_data_window(data, split, i, &start, &len), KILN_STATUS_OK);
        cr_expect_eq(start, next, "batch %lld starts where the last ended", (long long)i);
        next = start + len;
        cr_assert_leq(next, row - 1, "batch %lld reads past its row (y needs one more token)", (long long)i);
        cr_assert_eq(x->ndim, 2);
        cr_assert_eq(x->shape[0], bs);
        cr_assert_eq(x->shape[1], len);
        cr_assert_eq(x->dtype, KILN_DTYPE_I64);
        const int64_t *px = x->data, *py = y->data;
        for (int64_t r = 0; r < bs; r++)
            for (int64_t t = 0; t < len; t++) {
                cr_assert_eq(px[r * len + t], stream[r * row + start + t], "%s batch %lld row %lld t %lld",
                             kiln_data_split_name(split), (long long)i, (long long)r, (long long)t);
                cr_assert_eq(py[r * len + t], stream[r * row + start + t + 1]);
            }
        kiln_step_reset(ctx);
    }
    ku_ctx_free(ctx);
}

Test(lm_data, streams_rows_windows_and_shuffling)
{
    docs tr = make_docs(40, 20), va = make_docs(9, 15);
    kiln_lm_data_params p = {.bs = 4, .bptt = 7, .variable_bptt = false};
    kiln_data *d = kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, (const int64_t *const *)va.ids,
                                    va.lens, va.n, 100000, &p);
    cr_assert_not_null(d, "%s", kiln_last_error());
    int64_t row, vrow;
    int64_t *vs = expected_stream(&va, NULL, 4, &vrow);
    /* train: (row - 1) / bptt whole windows; valid: the last one short */
    int64_t *s0 = expected_stream(&tr, NULL, 4, &row);
    cr_expect_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), (row - 1) / 7);
    cr_expect_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID), (vrow - 1 + 6) / 7);
    free(s0);
    int64_t perm[40], perm2[40];
    for (int epoch = 0; epoch < 2; epoch++) {
        cr_assert_eq(kiln_data_set_epoch(d, 5, epoch), KILN_STATUS_OK);
        kiln_data_permutation(5, epoch, tr.n, epoch ? perm2 : perm);
        int64_t *s = expected_stream(&tr, epoch ? perm2 : perm, 4, &row);
        expect_batches(d, KILN_DATA_SPLIT_TRAIN, s, 4, row);
        free(s);
        expect_batches(d, KILN_DATA_SPLIT_VALID, vs, 4, vrow);
    }
    cr_expect(memcmp(perm, perm2, sizeof perm), "epochs 0 and 1 have the same order");
    int64_t st, len;
    cr_expect_eq(kiln_lm_data_window(d, KILN_DATA_SPLIT_VALID, kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID) - 1, &st, &len), 0);
    cr_expect_eq(st + len, vrow - 1, "the valid windows cover the rows");
    cr_expect_lt(kiln_lm_data_window(d, KILN_DATA_SPLIT_TRAIN, 10000, &st, &len), 0);
    free(vs);
    kiln_data_free(d);
    free_docs(&tr);
    free_docs(&va);
}

Test(lm_data, variable_bptt_as_fastai_0_7)
{
    docs tr = make_docs(2000, 60); /* ~124k tokens: bs 8 rows of ~15.5k, ~220 windows */
    kiln_lm_data_params p = {.bs = 8, .bptt = 70, .variable_bptt = true};
    kiln_data *d = kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, NULL, NULL, 0, 1 << 30, &p);
    cr_assert_not_null(d, "%s", kiln_last_error());
    int64_t nb = kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN);
    int64_t n = 0, half = 0, first[2] = {0, 0};
    double sum = 0, sum_full = 0;
    int64_t n_full = 0;
    int64_t lens0[400];
    cr_assert_lt(nb, 400);
    for (int epoch = 0; epoch < 4; epoch++) {
        cr_assert_eq(kiln_data_set_epoch(d, 11, epoch), KILN_STATUS_OK);
        for (int64_t i = 0; i < nb; i++) {
            int64_t st, len;
            cr_assert_eq(kiln_lm_data_window(d, KILN_DATA_SPLIT_TRAIN, i, &st, &len), 0);
            cr_assert_geq(len, 5);
            if (epoch == 0) lens0[i] = len;
            if (epoch == 1 && i < 2) first[i] = len;
            if (i == 0) {
                cr_expect_eq(len, 95, "the first window is bptt + 25");
                continue;
            }
            n++;
            sum += (double)len;
            if (len < 52) half++;
            else sum_full += (double)len, n_full++;
        }
    }
    /* lengths: N(70, 5) w.p. 0.95 and N(35, 5) w.p. 0.05 (floored, so means 69.5 and 34.5) */
    double frac_half = (double)half / (double)n, mean_full = sum_full / (double)n_full;
    cr_expect(frac_half > 0.02 && frac_half < 0.09, "share of half-length windows %.3f (0.05 expected)", frac_half);
    cr_expect(fabs(mean_full - 69.5) < 0.8, "mean full-length window %.2f (69.5 expected)", mean_full);
    /* the same (seed, epoch) gives the same lengths; another epoch others */
    cr_assert_eq(kiln_data_set_epoch(d, 11, 0), KILN_STATUS_OK);
    bool same = true;
    for (int64_t i = 0; i < nb; i++) {
        int64_t st, len;
        kiln_lm_data_window(d, KILN_DATA_SPLIT_TRAIN, i, &st, &len);
        same &= len == lens0[i];
    }
    cr_expect(same, "epoch 0 again gave other lengths");
    cr_expect(first[1] != lens0[1] || memcmp(lens0, first, sizeof first), "epochs 0 and 1 drew the same lengths");
    /* every batch still matches the stream */
    int64_t perm[2000], row;
    kiln_data_permutation(11, 0, tr.n, perm);
    int64_t *s = expected_stream(&tr, perm, 8, &row);
    expect_batches(d, KILN_DATA_SPLIT_TRAIN, s, 8, row);
    free(s);
    kiln_data_free(d);
    free_docs(&tr);
}

Test(lm_data, lengths_scaled_down_to_fit_short_rows)
{
    /* rows of 100 tokens, bptt 40: 2 windows, the first drawn 65 long, so the draws must shrink */
    docs tr = make_docs(10, 20);
    for (int64_t i = 0; i < tr.n; i++) tr.lens[i] = 20;
    kiln_lm_data_params p = {.bs = 2, .bptt = 40, .variable_bptt = true};
    kiln_data *d = kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, NULL, NULL, 0, 1 << 20, &p);
    cr_assert_not_null(d, "%s", kiln_last_error());
    cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), 2);
    for (int epoch = 0; epoch < 20; epoch++) {
        cr_assert_eq(kiln_data_set_epoch(d, 3, epoch), KILN_STATUS_OK);
        int64_t perm[10], row;
        kiln_data_permutation(3, epoch, tr.n, perm);
        int64_t *s = expected_stream(&tr, perm, 2, &row);
        cr_assert_eq(row, 100);
        expect_batches(d, KILN_DATA_SPLIT_TRAIN, s, 2, row);
        free(s);
    }
    kiln_data_free(d);
    free_docs(&tr);
}

Test(lm_data, bad_input_is_a_clear_error)
{
    docs tr = make_docs(5, 20);
    kiln_lm_data_params p = {.bs = 2, .bptt = 5, .variable_bptt = false};
    cr_expect_null(kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, NULL, NULL, 0, 3500, &p));
    ku_expect_error("train document 4, token 0: id 4000 is outside the vocabulary [0, 3500)", "an id past the vocabulary");
    tr.ids[1][2] = -1;
    cr_expect_null(kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, NULL, NULL, 0, 1 << 20, &p));
    ku_expect_error("train document 1, token 2: id -1", "a negative id");
    tr.ids[1][2] = 1002;
    p.bs = 60;
    cr_expect_null(kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, NULL, NULL, 0, 1 << 20, &p));
    ku_expect_error("too few for 60 rows", "more rows than tokens");
    p.bs = 2;
    p.bptt = 200;
    cr_expect_null(kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, NULL, NULL, 0, 1 << 20, &p));
    ku_expect_error("hold no window of bptt 200", "bptt longer than a row");
    free_docs(&tr);
}

/* Data-parallel (issue 13): with world ranks, rank r's batch i is rows [r bs / world,
 * (r + 1) bs / world) of the one-rank batch i, bit for bit, with the same window, for
 * variable train windows over two epochs and for the valid split; n_items shares the
 * documents out; a bs or valid_bs the ranks do not divide, or a bad rank, is refused. */
Test(lm_data, ranks_rows_stack_to_the_one_rank_batch)
{
    docs tr = make_docs(300, 30), va = make_docs(40, 25);
    kiln_ctx *ctx = ku_ctx();
    kiln_lm_data_params p = {.bs = 12, .valid_bs = 8, .bptt = 20, .variable_bptt = true, .rank = 0, .world = 1};
    kiln_data *one = kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, (const int64_t *const *)va.ids,
                                      va.lens, va.n, 1 << 20, &p);
    cr_assert_not_null(one, "%s", kiln_last_error());
    for (int world = 2; world <= 4; world += 2) {
        kiln_data *d[4] = {NULL};
        int64_t items[2] = {0, 0};
        for (int r = 0; r < world; r++) {
            p.rank = r, p.world = world;
            d[r] = kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, (const int64_t *const *)va.ids,
                                    va.lens, va.n, 1 << 20, &p);
            cr_assert_not_null(d[r], "rank %d of %d: %s", r, world, kiln_last_error());
            for (int k = 0; k < 2; k++) items[k] += kiln_data_n_items(d[r], (kiln_data_split)k);
        }
        cr_expect_eq(items[0], tr.n, "world %d: the ranks' train documents add up", world);
        cr_expect_eq(items[1], va.n, "world %d: the ranks' valid documents add up", world);
        for (int epoch = 0; epoch < 2; epoch++) {
            cr_assert_eq(kiln_data_set_epoch(one, 17, epoch), KILN_STATUS_OK);
            for (int r = 0; r < world; r++) cr_assert_eq(kiln_data_set_epoch(d[r], 17, epoch), KILN_STATUS_OK);
            for (int k = 0; k < 2; k++) {
                kiln_data_split split = (kiln_data_split)k;
                int64_t nb = kiln_data_n_batches(one, split), rows = k ? 8 : 12, mine = rows / world;
                cr_assert_gt(nb, 1);
                for (int64_t i = 0; i < nb; i++) {
                    kiln_tensor *x1, *y1;
                    int64_t s1, l1;
                    cr_assert_eq(kiln_data_get_batch(one, split, i, ctx, &x1, &y1), KILN_STATUS_OK);
                    cr_assert_eq(kiln_lm_data_window(one, split, i, &s1, &l1), KILN_STATUS_OK);
                    for (int r = 0; r < world; r++) {
                        kiln_tensor *x, *y;
                        int64_t s, l;
                        cr_assert_eq(kiln_data_n_batches(d[r], split), nb);
                        cr_assert_eq(kiln_lm_data_window(d[r], split, i, &s, &l), KILN_STATUS_OK);
                        cr_assert(s == s1 && l == l1, "world %d rank %d %s batch %lld: window %lld+%lld, one rank's "
                                  "%lld+%lld", world, r, kiln_data_split_name(split), (long long)i, (long long)s,
                                  (long long)l, (long long)s1, (long long)l1);
                        cr_assert_eq(kiln_data_get_batch(d[r], split, i, ctx, &x, &y), KILN_STATUS_OK);
                        cr_assert(x->shape[0] == mine && x->shape[1] == l1 && y->shape[0] == mine);
                        size_t off = (size_t)(r * mine * l1), bytes = (size_t)(mine * l1) * sizeof(int64_t);
                        cr_assert(!memcmp(x->data, (const int64_t *)x1->data + off, bytes) &&
                                      !memcmp(y->data, (const int64_t *)y1->data + off, bytes),
                                  "world %d rank %d epoch %d %s batch %lld: not rows %lld.. of the one-rank batch",
                                  world, r, epoch, kiln_data_split_name(split), (long long)i, (long long)(r * mine));
                    }
                    kiln_step_reset(ctx);
                }
            }
        }
        for (int r = 0; r < world; r++) kiln_data_free(d[r]);
    }
    kiln_data_free(one);
    p.world = 5, p.rank = 0;
    cr_expect_null(kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, NULL, NULL, 0, 1 << 20, &p));
    ku_expect_error("bs 12 is not divisible by world 5", "bs the ranks do not divide");
    p.world = 3, p.valid_bs = 4;
    cr_expect_null(kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, NULL, NULL, 0, 1 << 20, &p));
    ku_expect_error("valid_bs 4 is not divisible by world 3", "valid_bs the ranks do not divide");
    p.rank = 3, p.valid_bs = 0;
    cr_expect_null(kiln_lm_data_new((const int64_t *const *)tr.ids, tr.lens, tr.n, NULL, NULL, 0, 1 << 20, &p));
    ku_expect_error("rank 3 of world 3", "a rank outside the world");
    ku_ctx_free(ctx);
    free_docs(&tr);
    free_docs(&va);
}
