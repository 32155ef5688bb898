/* Classifier batches (kiln_clas_data_new): padding in front with xxpad, labels, fastai's
 * SortishSampler (lengths falling within each batch, the longest document's batch first,
 * whole batches only, every document at most once, the order a function of (seed, epoch)),
 * length-sorted validation keeping every document, and bad input refused. */
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

/* checks every batch of split against the documents; returns how often each document came */
static int64_t *check_split(kiln_data *data, kiln_data_split split, const docs *d)
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
        if (split == KILN_DATA_SPLIT_TRAIN && b) cr_expect_leq(maxlen, prev_max, "the first train batch holds the longest document");
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
        int64_t *seen = check_split(d, KILN_DATA_SPLIT_TRAIN, &tr), total = 0;
        for (int64_t i = 0; i < tr.n; i++) {
            cr_assert_leq(seen[i], 1);
            total += seen[i];
        }
        cr_expect_eq(total, 228);
        int64_t n;
        const int64_t *b0 = kiln_clas_data_batch_items(d, KILN_DATA_SPLIT_TRAIN, 0, &n);
        memcpy(first[epoch], b0, sizeof first[epoch]);
        free(seen);
        seen = check_split(d, KILN_DATA_SPLIT_VALID, &va);
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
