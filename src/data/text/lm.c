/* Language-model batches (kiln/text.h): documents shuffled per epoch and concatenated into bs
 * streams, read in consecutive windows of fastai 0.7's variable length (train) or bptt
 * (valid), x the window and y the window shifted by one token. With world ranks each keeps
 * only its bs / world rows of the stream (rows r0 .. r0 + bs / world - 1); the windows are
 * every rank's. */
#include "data/text/text_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LM_MAGIC 0x6b6c6d64u /* "klmd": tells kiln_lm_data_window an LM source's state */

typedef struct lm_split {
    int64_t *ids;      /* the documents' ids, one after another */
    int64_t *doc_off;  /* n_docs + 1 offsets into ids */
    int64_t n_docs, n_tok;
    int64_t bs, row;   /* rows (all ranks') and tokens per row */
    int64_t r0, nr;    /* this rank's rows: r0 .. r0 + nr - 1 */
    int64_t *stream;   /* (nr, row): this rank's rows of this epoch's concatenation */
    int64_t n_batches;
    int64_t *start, *len; /* per batch */
} lm_split;

typedef struct lm_state {
    uint32_t magic;
    kiln_lm_data_params p;
    lm_split s[2];
} lm_state;

kiln_lm_data_params kiln_lm_data_default_params(void)
{
    return (kiln_lm_data_params){.bs = 64, .valid_bs = 0, .bptt = 70, .variable_bptt = true, .rank = 0, .world = 1};
}

static void split_free(lm_split *s)
{
    free(s->ids);
    free(s->doc_off);
    free(s->stream);
    free(s->start);
    free(s->len);
}

static void lm_free(void *state)
{
    lm_state *st = state;
    if (!st) return;
    split_free(&st->s[0]);
    split_free(&st->s[1]);
    free(st);
}

/* this rank's rows of the stream of the documents in order perm (NULL: as given), cut into
 * rows: tokens [lo, hi) of the concatenation */
static void fill_stream(lm_split *s, const int64_t *perm)
{
    int64_t lo = s->r0 * s->row, hi = lo + s->nr * s->row;
    for (int64_t k = 0, pos = 0; k < s->n_docs && pos < hi; k++) {
        int64_t d = perm ? perm[k] : k;
        int64_t n = s->doc_off[d + 1] - s->doc_off[d], a = pos > lo ? pos : lo, b = pos + n < hi ? pos + n : hi;
        if (b > a) memcpy(s->stream + (a - lo), s->ids + s->doc_off[d] + (a - pos), (size_t)(b - a) * sizeof(int64_t));
        pos += n;
    }
}

/* fixed windows of bptt, the last one shorter */
static void fixed_windows(lm_split *s, int64_t bptt)
{
    for (int64_t i = 0; i < s->n_batches; i++) {
        s->start[i] = i * bptt;
        s->len[i] = s->row - 1 - s->start[i] < bptt ? s->row - 1 - s->start[i] : bptt;
    }
}

/* fastai 0.7's LanguageModelLoader lengths, from (seed, epoch); scaled down to fit the row */
static void variable_windows(lm_split *s, int64_t bptt, uint64_t seed, int64_t epoch)
{
    uint64_t base = ((uint64_t)epoch << 40) | (1ull << 39); /* apart from the permutation's counters */
    int64_t total = 0;
    for (int64_t i = 0; i < s->n_batches; i++) {
        int64_t len;
        if (i == 0) {
            len = bptt + 25;
        } else {
            double u = kiln_philox_uniform(seed, base + 3 * (uint64_t)i);
            double b = u < 0.95 ? (double)bptt : (double)bptt / 2;
            double u1 = kiln_philox_uniform(seed, base + 3 * (uint64_t)i + 1) + 0x1p-25;
            double u2 = kiln_philox_uniform(seed, base + 3 * (uint64_t)i + 2);
            double z = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
            len = (int64_t)(b + 5 * z);
            if (len < 5) len = 5;
        }
        s->len[i] = len;
        total += len;
    }
    int64_t room = s->row - 1;
    if (total > room) { /* scale down: floor, at least 1, then hand out what rounding left */
        int64_t sum = 0;
        for (int64_t i = 0; i < s->n_batches; i++) {
            s->len[i] = s->len[i] * room / total;
            if (s->len[i] < 1) s->len[i] = 1;
            sum += s->len[i];
        }
        for (int64_t i = s->n_batches - 1; sum > room && i >= 0; i--)
            while (sum > room && s->len[i] > 1) s->len[i]--, sum--;
    }
    for (int64_t i = 0, at = 0; i < s->n_batches; i++) {
        s->start[i] = at;
        at += s->len[i];
    }
}

static kiln_status lm_set_epoch(void *state, uint64_t seed, int64_t epoch)
{
    lm_state *st = state;
    lm_split *t = &st->s[KILN_DATA_SPLIT_TRAIN];
    int64_t *perm = malloc((size_t)(t->n_docs ? t->n_docs : 1) * sizeof *perm);
    if (!perm) return kiln__err(KILN_STATUS_NOMEM, "lm_data: out of memory shuffling %lld documents", (long long)t->n_docs);
    kiln_data_permutation(seed, epoch, t->n_docs, perm);
    fill_stream(t, perm);
    free(perm);
    if (st->p.variable_bptt) variable_windows(t, st->p.bptt, seed, epoch);
    return KILN_STATUS_OK;
}

/* documents, shared out among ranks as kiln_data_shard's valid rule does (a count only) */
static int64_t lm_n_items(void *state, kiln_data_split split)
{
    lm_state *st = state;
    return kiln_data_shard(st->s[split].n_docs, st->p.rank, st->p.world, false, NULL, NULL);
}

static int64_t lm_n_batches(void *state, kiln_data_split split)
{
    lm_state *st = state;
    return st->s[split].n_batches;
}

static kiln_status lm_get_batch(void *state, kiln_data_split split, int64_t i, kiln_ctx *ctx, kiln_tensor **x,
                                kiln_tensor **y)
{
    lm_state *st = state;
    lm_split *s = &st->s[split];
    int64_t shape[2] = {s->nr, s->len[i]};
    kiln_tensor *tx = kiln_empty(ctx, KILN_DTYPE_I64, 2, shape), *ty = kiln_empty(ctx, KILN_DTYPE_I64, 2, shape);
    if (!tx || !ty) return kiln_last_status();
    int64_t *px = tx->data, *py = ty->data;
    for (int64_t r = 0; r < s->nr; r++) {
        const int64_t *row = s->stream + r * s->row + s->start[i];
        memcpy(px + r * s->len[i], row, (size_t)s->len[i] * sizeof(int64_t));
        memcpy(py + r * s->len[i], row + 1, (size_t)s->len[i] * sizeof(int64_t));
    }
    *x = tx;
    *y = ty;
    return KILN_STATUS_OK;
}

static kiln_status split_init(lm_split *s, const char *name, const int64_t *const *docs, const int64_t *lens,
                              int64_t n, int64_t vocab, int64_t bs, int64_t bptt, int rank, int world)
{
    s->bs = bs;
    s->nr = bs / world, s->r0 = rank * s->nr;
    s->n_docs = n;
    for (int64_t i = 0; i < n; i++) {
        if (lens[i] < 0 || (lens[i] && !docs[i]))
            return kiln__err(KILN_STATUS_INVALID, "lm_data_new: %s document %lld has no ids", name, (long long)i);
        s->n_tok += lens[i];
    }
    s->row = s->n_tok / bs;
    if (s->row < 2)
        return kiln__err(KILN_STATUS_INVALID,
                         "lm_data_new: the %s documents hold %lld tokens, too few for %lld rows of at least 2 tokens",
                         name, (long long)s->n_tok, (long long)bs);
    s->ids = malloc((size_t)s->n_tok * sizeof *s->ids);
    s->doc_off = malloc((size_t)(n + 1) * sizeof *s->doc_off);
    s->stream = malloc((size_t)(s->nr * s->row) * sizeof *s->stream);
    int64_t room = s->row - 1;
    s->n_batches = (room + bptt - 1) / bptt;
    s->start = malloc((size_t)s->n_batches * sizeof *s->start);
    s->len = malloc((size_t)s->n_batches * sizeof *s->len);
    if (!s->ids || !s->doc_off || !s->stream || !s->start || !s->len)
        return kiln__err(KILN_STATUS_NOMEM, "lm_data_new: out of memory for %lld %s tokens", (long long)s->n_tok, name);
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        s->doc_off[i] = at;
        for (int64_t k = 0; k < lens[i]; k++) {
            int64_t id = docs[i][k];
            if (id < 0 || id >= vocab)
                return kiln__err(KILN_STATUS_INVALID, "lm_data_new: %s document %lld, token %lld: id %lld is outside the vocabulary [0, %lld)",
                                 name, (long long)i, (long long)k, (long long)id, (long long)vocab);
            s->ids[at++] = id;
        }
    }
    s->doc_off[n] = at;
    return KILN_STATUS_OK;
}

kiln_status kiln__text_check_ranks(const char *who, int *rank, int *world, int64_t bs, int64_t valid_bs,
                                   const char *share)
{
    if (!*world) *world = 1;
    if (*world < 1 || *rank < 0 || *rank >= *world)
        return kiln__err(KILN_STATUS_INVALID, "%s: rank %d of world %d: need world >= 1 and 0 <= rank < world", who, *rank,
                         *world);
    const char *field = bs % *world ? "bs" : valid_bs % *world ? "valid_bs" : NULL;
    if (field)
        return kiln__err(KILN_STATUS_INVALID, "%s: %s %lld is not divisible by world %d (each rank takes %s / world of %s)",
                         who, field, (long long)(bs % *world ? bs : valid_bs), *world, field, share);
    return KILN_STATUS_OK;
}

kiln_data *kiln_lm_data_new(const int64_t *const *train, const int64_t *train_lens, int64_t n_train,
                            const int64_t *const *valid, const int64_t *valid_lens, int64_t n_valid,
                            int64_t vocab_size, const kiln_lm_data_params *p)
{
    kiln_lm_data_params d = p ? *p : kiln_lm_data_default_params();
    if (d.bs < 1 || d.bptt < 1 || d.valid_bs < 0 || vocab_size < 1 || n_train < 1 || !train || !train_lens ||
        n_valid < 0 || (n_valid && (!valid || !valid_lens)))
        return kiln__errp(KILN_STATUS_INVALID, "lm_data_new: bs %lld, bptt %lld, vocabulary %lld, %lld train documents: "
                                               "all must be at least 1",
                          (long long)d.bs, (long long)d.bptt, (long long)vocab_size, (long long)n_train);
    if (kiln__text_check_ranks("lm_data_new", &d.rank, &d.world, d.bs, d.valid_bs, "the rows")) return NULL;
    lm_state *st = calloc(1, sizeof *st);
    if (!st) return kiln__errp(KILN_STATUS_NOMEM, "lm_data_new: out of memory");
    st->magic = LM_MAGIC;
    st->p = d;
    kiln_status e = split_init(&st->s[0], "train", train, train_lens, n_train, vocab_size, d.bs, d.bptt, d.rank, d.world);
    if (!e && n_valid)
        e = split_init(&st->s[1], "valid", valid, valid_lens, n_valid, vocab_size, d.valid_bs ? d.valid_bs : d.bs, d.bptt,
                       d.rank, d.world);
    if (e) {
        lm_free(st);
        return NULL;
    }
    /* train has whole windows only; the valid split's last window may be short */
    lm_split *t = &st->s[0];
    t->n_batches = (t->row - 1) / d.bptt;
    if (t->n_batches < 1) {
        kiln__err(KILN_STATUS_INVALID, "lm_data_new: train rows of %lld tokens (%lld tokens / bs %lld) hold no window of bptt %lld",
                  (long long)t->row, (long long)t->n_tok, (long long)d.bs, (long long)d.bptt);
        lm_free(st);
        return NULL;
    }
    fixed_windows(t, d.bptt);
    fill_stream(t, NULL);
    if (n_valid) {
        fixed_windows(&st->s[1], d.bptt);
        fill_stream(&st->s[1], NULL);
    }
    kiln_data_ops ops = {.n_items = lm_n_items, .n_batches = lm_n_batches, .set_epoch = lm_set_epoch,
                         .get_batch = lm_get_batch, .free = lm_free};
    return kiln_data_new(&ops, st);
}

kiln_status kiln_lm_data_window(kiln_data *d, kiln_data_split split, int64_t i, int64_t *start, int64_t *len)
{
    lm_state *st = d ? kiln_data_state(d) : NULL;
    if (!st || st->magic != LM_MAGIC || (split != KILN_DATA_SPLIT_TRAIN && split != KILN_DATA_SPLIT_VALID))
        return kiln__err(KILN_STATUS_INVALID, "lm_data_window: not a language-model data source");
    lm_split *s = &st->s[split];
    if (i < 0 || i >= s->n_batches)
        return kiln__err(KILN_STATUS_INVALID, "lm_data_window: %s batch %lld of %lld", kiln_data_split_name(split),
                         (long long)i, (long long)s->n_batches);
    if (start) *start = s->start[i];
    if (len) *len = s->len[i];
    return KILN_STATUS_OK;
}
