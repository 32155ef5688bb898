/* Classifier batches (kiln/text.h): padded batches of documents, fastai's SortishSampler for the
 * train order of each epoch and length-sorted validation. */
#include "data/text/text_internal.h"

#include <stdlib.h>
#include <string.h>

#define CLAS_MAGIC 0x6b636c73u /* "kcls" */

typedef struct clas_split {
    int64_t *ids, *off, *y; /* documents back to back, n + 1 offsets, labels */
    int64_t n, bs, n_batches;
    int64_t *order;         /* this epoch's documents, batch after batch (n_batches * bs, or n for valid) */
} clas_split;

typedef struct clas_state {
    uint32_t magic;
    clas_split s[2];
} clas_state;

kiln_clas_data_params kiln_clas_data_default_params(void) { return (kiln_clas_data_params){.bs = 64, .valid_bs = 0}; }

static int64_t len_of(const clas_split *s, int64_t i) { return s->off[i + 1] - s->off[i]; }

static void clas_free(void *state)
{
    clas_state *st = state;
    if (!st) return;
    for (int k = 0; k < 2; k++) {
        free(st->s[k].ids), free(st->s[k].off), free(st->s[k].y), free(st->s[k].order);
    }
    free(st);
}

/* sort keys: longest first, then the lower index (a stable order) */
static int by_len(const void *a, const void *b, void *user)
{
    const clas_split *s = user;
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    int64_t li = len_of(s, i), lj = len_of(s, j);
    if (li != lj) return li > lj ? -1 : 1;
    return i < j ? -1 : i > j;
}

static void sort_by_len(clas_split *s, int64_t *idx, int64_t n)
{
    qsort_r(idx, (size_t)n, sizeof *idx, by_len, s);
}

static kiln_status clas_set_epoch(void *state, uint64_t seed, int64_t epoch)
{
    clas_state *st = state;
    clas_split *s = &st->s[KILN_DATA_SPLIT_TRAIN];
    int64_t *perm = malloc((size_t)s->n * sizeof *perm), nb = s->n / s->bs;
    int64_t *bperm = malloc((size_t)(nb ? nb : 1) * sizeof *bperm), *tmp = malloc((size_t)s->n * sizeof *tmp);
    if (!perm || !bperm || !tmp) {
        free(perm), free(bperm), free(tmp);
        return kiln__err(KILN_STATUS_NOMEM, "clas_data: out of memory");
    }
    kiln_data_permutation(seed, epoch, s->n, perm);
    int64_t chunk = 50 * s->bs;
    for (int64_t c = 0; c < s->n; c += chunk) sort_by_len(s, perm + c, s->n - c < chunk ? s->n - c : chunk);
    /* whole batches only; the one with the longest first document goes first, the rest shuffled */
    int64_t best = 0;
    for (int64_t b = 1; b < nb; b++)
        if (len_of(s, perm[b * s->bs]) > len_of(s, perm[best * s->bs])) best = b;
    kiln_data_permutation(seed ^ 0x5bd1e995u, epoch, nb > 1 ? nb - 1 : 0, bperm);
    int64_t at = 0;
    memcpy(tmp, perm + best * s->bs, (size_t)s->bs * sizeof *tmp);
    at += s->bs;
    for (int64_t k = 0; k + 1 < nb; k++) {
        int64_t b = bperm[k] + (bperm[k] >= best ? 1 : 0); /* the others, skipping best */
        memcpy(tmp + at, perm + b * s->bs, (size_t)s->bs * sizeof *tmp);
        at += s->bs;
    }
    memcpy(s->order, tmp, (size_t)(nb * s->bs) * sizeof *tmp);
    free(perm), free(bperm), free(tmp);
    return KILN_STATUS_OK;
}

static int64_t clas_n_items(void *state, kiln_data_split split) { return ((clas_state *)state)->s[split].n; }
static int64_t clas_n_batches(void *state, kiln_data_split split) { return ((clas_state *)state)->s[split].n_batches; }

static void batch_range(const clas_split *s, int64_t i, int64_t *first, int64_t *n)
{
    *first = i * s->bs;
    *n = s->n - *first < s->bs ? s->n - *first : s->bs;
}

static kiln_status clas_get_batch(void *state, kiln_data_split split, int64_t i, kiln_ctx *ctx, kiln_tensor **x,
                                  kiln_tensor **y)
{
    clas_state *st = state;
    const clas_split *s = &st->s[split];
    int64_t first, n, L = 0;
    batch_range(s, i, &first, &n);
    for (int64_t k = 0; k < n; k++) {
        int64_t l = len_of(s, s->order[first + k]);
        if (l > L) L = l;
    }
    kiln_tensor *tx = kiln_empty(ctx, KILN_DTYPE_I64, 2, (int64_t[]){n, L}), *ty = kiln_empty(ctx, KILN_DTYPE_I64, 1, &n);
    if (!tx || !ty) return kiln_last_status();
    int64_t *px = tx->data, *py = ty->data;
    for (int64_t k = 0; k < n; k++) {
        int64_t d = s->order[first + k], l = len_of(s, d);
        for (int64_t t = 0; t < L - l; t++) px[k * L + t] = KILN_TOK_PAD; /* padding first */
        memcpy(px + k * L + (L - l), s->ids + s->off[d], (size_t)l * sizeof *px);
        py[k] = s->y[d];
    }
    *x = tx;
    *y = ty;
    return KILN_STATUS_OK;
}

static kiln_status split_init(clas_split *s, const char *name, const int64_t *const *docs, const int64_t *lens,
                              const int64_t *y, int64_t n, int64_t vocab, int64_t n_classes, int64_t bs)
{
    s->n = n, s->bs = bs;
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (lens[i] < 1 || !docs[i])
            return kiln__err(KILN_STATUS_INVALID, "clas_data_new: %s document %lld has no token", name, (long long)i);
        if (y[i] < 0 || y[i] >= n_classes)
            return kiln__err(KILN_STATUS_INVALID, "clas_data_new: %s document %lld: label %lld is outside [0, %lld)", name,
                             (long long)i, (long long)y[i], (long long)n_classes);
        total += lens[i];
    }
    s->ids = malloc((size_t)(total ? total : 1) * sizeof *s->ids);
    s->off = malloc((size_t)(n + 1) * sizeof *s->off);
    s->y = malloc((size_t)(n ? n : 1) * sizeof *s->y);
    s->order = malloc((size_t)(n ? n : 1) * sizeof *s->order);
    if (!s->ids || !s->off || !s->y || !s->order)
        return kiln__err(KILN_STATUS_NOMEM, "clas_data_new: out of memory for %lld %s documents", (long long)n, name);
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        s->off[i] = at;
        for (int64_t k = 0; k < lens[i]; k++) {
            if (docs[i][k] < 0 || docs[i][k] >= vocab)
                return kiln__err(KILN_STATUS_INVALID, "clas_data_new: %s document %lld, token %lld: id %lld is outside the vocabulary [0, %lld)",
                                 name, (long long)i, (long long)k, (long long)docs[i][k], (long long)vocab);
            s->ids[at++] = docs[i][k];
        }
        s->y[i] = y[i];
        s->order[i] = i;
    }
    s->off[n] = at;
    return KILN_STATUS_OK;
}

kiln_data *kiln_clas_data_new(const int64_t *const *train, const int64_t *train_lens, const int64_t *train_y,
                              int64_t n_train, const int64_t *const *valid, const int64_t *valid_lens,
                              const int64_t *valid_y, int64_t n_valid, int64_t vocab_size, int64_t n_classes,
                              const kiln_clas_data_params *p)
{
    kiln_clas_data_params q = p ? *p : kiln_clas_data_default_params();
    if (q.bs < 1 || q.valid_bs < 0 || vocab_size < 1 || n_classes < 1 || n_train < 1 || !train || !train_lens ||
        !train_y || n_valid < 0 || (n_valid && (!valid || !valid_lens || !valid_y)))
        return kiln__errp(KILN_STATUS_INVALID, "clas_data_new: bs %lld, %lld train documents, vocabulary %lld and %lld "
                                               "classes: all must be at least 1",
                          (long long)q.bs, (long long)n_train, (long long)vocab_size, (long long)n_classes);
    if (n_train < q.bs)
        return kiln__errp(KILN_STATUS_INVALID, "clas_data_new: %lld train documents, fewer than one batch of %lld",
                          (long long)n_train, (long long)q.bs);
    clas_state *st = calloc(1, sizeof *st);
    if (!st) return kiln__errp(KILN_STATUS_NOMEM, "clas_data_new: out of memory");
    st->magic = CLAS_MAGIC;
    if (split_init(&st->s[0], "train", train, train_lens, train_y, n_train, vocab_size, n_classes, q.bs) ||
        (n_valid && split_init(&st->s[1], "valid", valid, valid_lens, valid_y, n_valid, vocab_size, n_classes,
                               q.valid_bs ? q.valid_bs : q.bs))) {
        clas_free(st);
        return NULL;
    }
    st->s[0].n_batches = n_train / q.bs;
    if (n_valid) {
        clas_split *v = &st->s[1];
        v->n_batches = (n_valid + v->bs - 1) / v->bs;
        sort_by_len(v, v->order, v->n);
    }
    if (clas_set_epoch(st, 0, 0)) {
        clas_free(st);
        return NULL;
    }
    kiln_data_ops ops = {.n_items = clas_n_items, .n_batches = clas_n_batches, .set_epoch = clas_set_epoch,
                         .get_batch = clas_get_batch, .free = clas_free};
    return kiln_data_new(&ops, st);
}

const int64_t *kiln_clas_data_batch_items(kiln_data *d, kiln_data_split split, int64_t i, int64_t *n)
{
    clas_state *st = d ? kiln_data_state(d) : NULL;
    if (!st || st->magic != CLAS_MAGIC || (split != KILN_DATA_SPLIT_TRAIN && split != KILN_DATA_SPLIT_VALID))
        return kiln__errp(KILN_STATUS_INVALID, "clas_data_batch_items: not a text classifier source");
    const clas_split *s = &st->s[split];
    if (i < 0 || i >= s->n_batches)
        return kiln__errp(KILN_STATUS_INVALID, "clas_data_batch_items: %s batch %lld of %lld", kiln_data_split_name(split),
                          (long long)i, (long long)s->n_batches);
    int64_t first;
    batch_range(s, i, &first, n);
    return s->order + first;
}

const int64_t *kiln_clas_data_item(kiln_data *d, kiln_data_split split, int64_t i, int64_t *len)
{
    clas_state *st = d ? kiln_data_state(d) : NULL;
    if (!st || st->magic != CLAS_MAGIC || (split != KILN_DATA_SPLIT_TRAIN && split != KILN_DATA_SPLIT_VALID) || !len)
        return kiln__errp(KILN_STATUS_INVALID, "clas_data_item: not a text classifier source");
    const clas_split *s = &st->s[split];
    if (i < 0 || i >= s->n)
        return kiln__errp(KILN_STATUS_INVALID, "clas_data_item: %s document %lld of %lld", kiln_data_split_name(split),
                          (long long)i, (long long)s->n);
    *len = len_of(s, i);
    return s->ids + s->off[i];
}
