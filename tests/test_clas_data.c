/* Classifier batches (kiln_clas_data_new): padding in front with xxpad, labels, fastai's
 * SortishSampler (lengths falling within each batch, the longest document's batch first,
 * whole batches only, every document at most once, the order a function of (seed, epoch)),
 * length-sorted validation keeping every document, and bad input refused; with world ranks the
 * ranks' items of train batch k are the one-rank batch k's and the valid shards partition the split. */
#include <stdlib.h>
#include <string.h>

#include "util/ku.h"

typedef struct docs {
    int64_t **ids, *len, *y, n;
} docs;

static docs make(int64_t n, uint64_t seed)
{
    docs d = {calloc((size_t)n, sizeof(int64_t *)), calloc((size_t)n, sizeof(int64_t)), calloc((size_t)n, sizeof(int64_t)), n};
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        d.len[i] = 1 + (int64_t)(seed >> 35) % 40;
        d.y[i] = i % 3;
        d.ids[i] = malloc((size_t)d.len[i] * sizeof(int64_t));
        for (int64_t k = 0; k < d.len[i]; k++) d.ids[i][k] = 9 + (i * 31 + k) % 90; /* never xxpad */
    }
    return d;
}

static void free_docs(docs *d)
{
    for (int64_t i = 0; i < d->n; i++) free(d->ids[i]);
    free(d->ids), free(d->len), free(d->y);
}

/* checks every batch of split against the documents; returns how often each document came.
 * whole: one rank's data (its first train batch holds the longest document). */
static int64_t *check_split(kiln_data *data, kiln_data_split split, const docs *d, bool whole)
{
    kiln_ctx *ctx = ku_ctx();
    int64_t *seen = calloc((size_t)d->n, sizeof *seen), nb = kiln_data_n_batches(data, split), prev_max = -1;
    for (int64_t b = 0; b < nb; b++) {
        kiln_tensor *x, *y;
        cr_assert_eq(kiln_data_get_batch(data, split, b, ctx, &x, &y), KILN_STATUS_OK, "%s", kiln_last_error());
        int64_t n;
        const int64_t *items = kiln_clas_data_batch_items(data, split, b, &n);
        cr_assert_not_null(items);
        cr_assert_eq(x->shape[0], n);
        int64_t L = x->shape[1], maxlen = 0;
        for (int64_t k = 0; k < n; k++) {
            int64_t i = items[k], l = d->len[i];
            seen[i]++;
            if (l > maxlen) maxlen = l;
            if (k) cr_expect_leq(l, d->len[items[k - 1]], "lengths fall within a batch");
            const int64_t *row = (const int64_t *)x->data + k * L;
            for (int64_t t = 0; t < L - l; t++) cr_assert_eq(row[t], KILN_TOK_PAD, "padding first");
            cr_assert(!memcmp(row + L - l, d->ids[i], (size_t)l * sizeof(int64_t)), "document %lld's ids", (long long)i);
            cr_assert_eq(((const int64_t *)y->data)[k], d->y[i]);
        }
        cr_expect_eq(L, maxlen);
        if (split == KILN_DATA_SPLIT_VALID && b) cr_expect_leq(maxlen, prev_max, "valid: longest first");
        if (split == KILN_DATA_SPLIT_TRAIN && b && whole) cr_expect_leq(maxlen, prev_max, "the first train batch holds the longest document");
        if (b == 0 || split == KILN_DATA_SPLIT_VALID) prev_max = maxlen;
        kiln_step_reset(ctx);
    }
    ku_ctx_free(ctx);
    return seen;
}

Test(clas_data, sortish_train_sorted_valid_padding_first)
{
    docs tr = make(230, 1), va = make(37, 2);
    kiln_clas_data_params p = {.bs = 4, .valid_bs = 8};
    kiln_data *d = kiln_clas_data_new((const int64_t *const *)tr.ids, tr.len, tr.y, tr.n, (const int64_t *const *)va.ids,
                                      va.len, va.y, va.n, 100, 3, &p);
    cr_assert_not_null(d, "%s", kiln_last_error());
    cr_expect_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), 57, "230 / 4 whole batches");
    cr_expect_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID), 5);
    int64_t first[2][4];
    for (int epoch = 0; epoch < 2; epoch++) {
        cr_assert_eq(kiln_data_set_epoch(d, 9, epoch), KILN_STATUS_OK);
        int64_t *seen = check_split(d, KILN_DATA_SPLIT_TRAIN, &tr, true), total = 0;
        for (int64_t i = 0; i < tr.n; i++) {
            cr_assert_leq(seen[i], 1);
            total += seen[i];
        }
        cr_expect_eq(total, 228);
        int64_t n;
        const int64_t *b0 = kiln_clas_data_batch_items(d, KILN_DATA_SPLIT_TRAIN, 0, &n);
        memcpy(first[epoch], b0, sizeof first[epoch]);
        free(seen);
        seen = check_split(d, KILN_DATA_SPLIT_VALID, &va, true);
        for (int64_t i = 0; i < va.n; i++) cr_assert_eq(seen[i], 1, "valid keeps every document");
        free(seen);
    }
    /* the same (seed, epoch) gives the same order, another epoch another */
    int64_t order0[4], n;
    cr_assert_eq(kiln_data_set_epoch(d, 9, 0), KILN_STATUS_OK);
    memcpy(order0, kiln_clas_data_batch_items(d, KILN_DATA_SPLIT_TRAIN, 5, &n), sizeof order0);
    cr_assert_eq(kiln_data_set_epoch(d, 9, 1), KILN_STATUS_OK);
    cr_assert_eq(kiln_data_set_epoch(d, 9, 0), KILN_STATUS_OK);
    cr_expect(!memcmp(order0, kiln_clas_data_batch_items(d, KILN_DATA_SPLIT_TRAIN, 5, &n), sizeof order0));
    cr_assert_eq(kiln_data_set_epoch(d, 9, 1), KILN_STATUS_OK);
    cr_expect(memcmp(order0, kiln_clas_data_batch_items(d, KILN_DATA_SPLIT_TRAIN, 5, &n), sizeof order0),
              "epochs 0 and 1 gave batch 5 the same documents");
    cr_expect_null(kiln_clas_data_batch_items(d, KILN_DATA_SPLIT_TRAIN, 57, &n));
    kiln_data_free(d);
    free_docs(&tr);
    free_docs(&va);
}

Test(clas_data, bad_input_is_refused)
{
    docs tr = make(10, 3);
    kiln_clas_data_params p = {.bs = 4};
    tr.y[6] = 3;
    cr_expect_null(kiln_clas_data_new((const int64_t *const *)tr.ids, tr.len, tr.y, tr.n, NULL, NULL, NULL, 0, 100, 3, &p));
    ku_expect_error("train document 6: label 3 is outside [0, 3)", "a bad label");
    tr.y[6] = 0;
    tr.ids[2][0] = 100;
    cr_expect_null(kiln_clas_data_new((const int64_t *const *)tr.ids, tr.len, tr.y, tr.n, NULL, NULL, NULL, 0, 100, 3, &p));
    ku_expect_error("train document 2, token 0: id 100 is outside the vocabulary [0, 100)", "a bad id");
    tr.ids[2][0] = 10;
    int64_t keep = tr.len[4];
    tr.len[4] = 0;
    cr_expect_null(kiln_clas_data_new((const int64_t *const *)tr.ids, tr.len, tr.y, tr.n, NULL, NULL, NULL, 0, 100, 3, &p));
    ku_expect_error("train document 4 has no token", "an empty document");
    tr.len[4] = keep;
    p.bs = 16;
    cr_expect_null(kiln_clas_data_new((const int64_t *const *)tr.ids, tr.len, tr.y, tr.n, NULL, NULL, NULL, 0, 100, 3, &p));
    ku_expect_error("10 train documents, fewer than one batch of 16", "too few documents");
    free_docs(&tr);
}

/* Data-parallel (issue 13): world 2 and 3 with bs 6: rank r's train batch k holds items r,
 * r + world, ... of the one-rank batch k (so together exactly its items), padded to its own
 * longest; the valid shards partition the split (each document once over the ranks, longest
 * first on each); kiln_clas_data_whole gives the one-rank batches back; a bs the ranks do not
 * divide is refused. */
Test(clas_data, ranks_share_each_batch_and_partition_valid)
{
    docs tr = make(100, 4), va = make(23, 5);
    kiln_clas_data_params p = {.bs = 6, .valid_bs = 6, .rank = 0, .world = 1};
    kiln_data *one = kiln_clas_data_new((const int64_t *const *)tr.ids, tr.len, tr.y, tr.n,
                                        (const int64_t *const *)va.ids, va.len, va.y, va.n, 100, 3, &p);
    cr_assert_not_null(one, "%s", kiln_last_error());
    for (int world = 2; world <= 3; world++) {
        kiln_data *d[3] = {NULL};
        int64_t *vseen = calloc((size_t)va.n, sizeof *vseen), train_items = 0;
        for (int r = 0; r < world; r++) {
            p.rank = r, p.world = world;
            d[r] = kiln_clas_data_new((const int64_t *const *)tr.ids, tr.len, tr.y, tr.n, (const int64_t *const *)va.ids,
                                      va.len, va.y, va.n, 100, 3, &p);
            cr_assert_not_null(d[r], "rank %d of %d: %s", r, world, kiln_last_error());
            cr_assert_eq(kiln_data_n_batches(d[r], KILN_DATA_SPLIT_TRAIN), kiln_data_n_batches(one, KILN_DATA_SPLIT_TRAIN));
            train_items += kiln_data_n_items(d[r], KILN_DATA_SPLIT_TRAIN);
            int64_t *seen = check_split(d[r], KILN_DATA_SPLIT_VALID, &va, false), n_seen = 0;
            for (int64_t i = 0; i < va.n; i++) vseen[i] += seen[i], n_seen += seen[i];
            cr_expect_eq(n_seen, kiln_data_n_items(d[r], KILN_DATA_SPLIT_VALID), "rank %d: its valid items", r);
            free(seen);
        }
        cr_expect_eq(train_items, tr.n, "world %d: the ranks' train documents add up", world);
        for (int64_t i = 0; i < va.n; i++)
            cr_expect_eq(vseen[i], 1, "world %d: valid document %lld on %lld ranks", world, (long long)i, (long long)vseen[i]);
        free(vseen);
        for (int epoch = 0; epoch < 2; epoch++) {
            cr_assert_eq(kiln_data_set_epoch(one, 3, epoch), KILN_STATUS_OK);
            for (int r = 0; r < world; r++) {
                cr_assert_eq(kiln_data_set_epoch(d[r], 3, epoch), KILN_STATUS_OK);
                free(check_split(d[r], KILN_DATA_SPLIT_TRAIN, &tr, false)); /* padding, ids, labels of its items */
            }
            for (int64_t k = 0; k < kiln_data_n_batches(one, KILN_DATA_SPLIT_TRAIN); k++) {
                int64_t n1, n;
                const int64_t *all = kiln_clas_data_batch_items(one, KILN_DATA_SPLIT_TRAIN, k, &n1);
                cr_assert_eq(n1, 6);
                for (int r = 0; r < world; r++) {
                    const int64_t *mine = kiln_clas_data_batch_items(d[r], KILN_DATA_SPLIT_TRAIN, k, &n);
                    cr_assert_not_null(mine);
                    cr_assert_eq(n, 6 / world);
                    for (int64_t j = 0; j < n; j++)
                        cr_assert_eq(mine[j], all[r + j * world], "world %d epoch %d batch %lld: rank %d item %lld", world,
                                     epoch, (long long)k, r, (long long)j);
                }
            }
        }
        kiln_data *whole = kiln_clas_data_whole(d[world - 1]);
        cr_assert_not_null(whole, "%s", kiln_last_error());
        cr_assert_eq(kiln_data_set_epoch(whole, 3, 1), KILN_STATUS_OK);
        for (int k = 0; k < 2; k++) {
            kiln_data_split split = (kiln_data_split)k;
            cr_assert_eq(kiln_data_n_batches(whole, split), kiln_data_n_batches(one, split));
            for (int64_t b = 0; b < kiln_data_n_batches(one, split); b++) {
                int64_t n1, n;
                const int64_t *a = kiln_clas_data_batch_items(one, split, b, &n1), *w = kiln_clas_data_batch_items(whole, split, b, &n);
                cr_assert(n == n1 && !memcmp(a, w, (size_t)n * sizeof *a), "whole: %s batch %lld differs",
                          kiln_data_split_name(split), (long long)b);
            }
        }
        kiln_data_free(whole);
        for (int r = 0; r < world; r++) kiln_data_free(d[r]);
    }
    kiln_data_free(one);
    p.world = 4, p.rank = 0;
    cr_expect_null(kiln_clas_data_new((const int64_t *const *)tr.ids, tr.len, tr.y, tr.n, NULL, NULL, NULL, 0, 100, 3, &p));
    ku_expect_error("bs 6 is not divisible by world 4", "bs the ranks do not divide");
    p.world = 2, p.rank = -1;
    cr_expect_null(kiln_clas_data_new((const int64_t *const *)tr.ids, tr.len, tr.y, tr.n, NULL, NULL, NULL, 0, 100, 3, &p));
    ku_expect_error("rank -1 of world 2", "a negative rank");
    cr_expect_null(kiln_clas_data_whole(NULL));
    free_docs(&tr);
    free_docs(&va);
}
