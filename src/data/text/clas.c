/* Classifier batches (kiln/text.h): padded batches of documents, fastai's SortishSampler for the
 * train order of each epoch and length-sorted validation. With world ranks, rank r takes items
 * r, r + world, ... of each global train batch, and its kiln_data_shard of the sorted valid
 * split. */
#include "data/text/text_internal.h"

#include <stdlib.h>
#include <string.h>

#define CLAS_MAGIC 0x6b636c73u /* "kcls" */

typedef struct clas_split {
    int64_t *ids, *off, *y; /* documents back to back, n + 1 offsets, labels */
    int64_t n, bs, n_batches; /* documents, the global batch (all ranks'), batches */
    int64_t b, n_mine;      /* this rank's batch (bs / world) and items (n_batches * b for train) */
    int64_t *order;         /* this rank's documents this epoch, batch after batch */
} clas_split;

typedef struct clas_state {
    uint32_t magic;
    int rank, world;
    kiln_clas_data_params p;
    int64_t vocab, n_classes;
    clas_split s[2];
} clas_state;

kiln_clas_data_params kiln_clas_data_default_params(void)
{
    return (kiln_clas_data_params){.bs = 64, .valid_bs = 0, .rank = 0, .world = 1};
}

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
    /* this rank's share of each global batch: items rank, rank + world, ... */
    for (int64_t i = 0; i < nb; i++)
        for (int64_t k = 0; k < s->b; k++) s->order[i * s->b + k] = tmp[i * s->bs + st->rank + k * st->world];
    free(perm), free(bperm), free(tmp);
    return KILN_STATUS_OK;
}

/* documents as kiln_data_shard's valid rule shares them out (train: a count; valid: the shard) */
static int64_t clas_n_items(void *state, kiln_data_split split)
{
    clas_state *st = state;
    return kiln_data_shard(st->s[split].n, st->rank, st->world, false, NULL, NULL);
}
static int64_t clas_n_batches(void *state, kiln_data_split split) { return ((clas_state *)state)->s[split].n_batches; }

static void batch_range(const clas_split *s, int64_t i, int64_t *first, int64_t *n)
{
    *first = i * s->b;
    *n = s->n_mine - *first < s->b ? s->n_mine - *first : s->b;
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
                              const int64_t *y, int64_t n, int64_t vocab, int64_t n_classes, int64_t bs, int world)
{
    s->n = n, s->bs = bs, s->b = bs / world;
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
    if (kiln__text_check_ranks("clas_data_new", &q.rank, &q.world, q.bs, q.valid_bs, "a batch's documents"))
        return NULL;
    if (n_train < q.bs)
        return kiln__errp(KILN_STATUS_INVALID, "clas_data_new: %lld train documents, fewer than one batch of %lld",
                          (long long)n_train, (long long)q.bs);
    clas_state *st = calloc(1, sizeof *st);
    if (!st) return kiln__errp(KILN_STATUS_NOMEM, "clas_data_new: out of memory");
    st->magic = CLAS_MAGIC;
    st->rank = q.rank, st->world = q.world, st->p = q, st->vocab = vocab_size, st->n_classes = n_classes;
    if (split_init(&st->s[0], "train", train, train_lens, train_y, n_train, vocab_size, n_classes, q.bs, q.world) ||
        (n_valid && split_init(&st->s[1], "valid", valid, valid_lens, valid_y, n_valid, vocab_size, n_classes,
                               q.valid_bs ? q.valid_bs : q.bs, q.world))) {
        clas_free(st);
        return NULL;
    }
    st->s[0].n_batches = n_train / q.bs;
    st->s[0].n_mine = st->s[0].n_batches * st->s[0].b;
    if (n_valid) { /* sorted by length, then this rank's shard of that order, batched */
        clas_split *v = &st->s[1];
        sort_by_len(v, v->order, v->n);
        int64_t *sorted = malloc((size_t)n_valid * sizeof *sorted);
        if (!sorted) {
            clas_free(st);
            return kiln__errp(KILN_STATUS_NOMEM, "clas_data_new: out of memory");
        }
        memcpy(sorted, v->order, (size_t)n_valid * sizeof *sorted);
        v->n_mine = kiln_data_shard(n_valid, q.rank, q.world, false, sorted, v->order);
        free(sorted);
        v->n_batches = (v->n_mine + v->b - 1) / v->b;
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

kiln_data *kiln_clas_data_whole(kiln_data *d)
{
    clas_state *st = d ? kiln_data_state(d) : NULL;
    if (!st || st->magic != CLAS_MAGIC) return kiln__errp(KILN_STATUS_INVALID, "clas_data_whole: not a text classifier source");
    const int64_t **docs[2] = {NULL, NULL};
    int64_t *lens[2] = {NULL, NULL};
    kiln_data *out = NULL;
    for (int k = 0; k < 2; k++) { /* every document of the split as given */
        const clas_split *s = &st->s[k];
        docs[k] = malloc((size_t)(s->n ? s->n : 1) * sizeof *docs[k]);
        lens[k] = malloc((size_t)(s->n ? s->n : 1) * sizeof *lens[k]);
        if (!docs[k] || !lens[k]) goto done;
        for (int64_t i = 0; i < s->n; i++) docs[k][i] = s->ids + s->off[i], lens[k][i] = len_of(s, i);
    }
    kiln_clas_data_params q = st->p;
    q.rank = 0, q.world = 1;
    out = kiln_clas_data_new(docs[0], lens[0], st->s[0].y, st->s[0].n, docs[1], lens[1], st->s[1].y, st->s[1].n,
                             st->vocab, st->n_classes, &q);
done:
    if (!docs[0] || !docs[1] || !lens[0] || !lens[1]) kiln__err(KILN_STATUS_NOMEM, "clas_data_whole: out of memory");
    for (int k = 0; k < 2; k++) free(docs[k]), free(lens[k]);
    return out;
}
