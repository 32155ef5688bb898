/* Interpretation of a text classifier (kiln/apps.h, kiln_text_interpret): fastai's
 * ClassificationInterpretation over a split of its data. Predictions come in batch order (length
 * sorted); they are put back in document order so that an index is the document's place in the
 * split, and top_losses.csv shows each document's text, decoded from its tokens. */
#include "app_internal.h"

#include <stdlib.h>
#include <string.h>

#define TEXT_SHOWN 200 /* bytes of a document's text in top_losses.csv */

typedef struct doc_names {
    kiln_data *data;
    kiln_data_split split;
    const kiln_vocab *vocab;
    char *buf;
} doc_names;

/* document i's text, decoded and cut at TEXT_SHOWN bytes (on a UTF-8 boundary) */
static const char *doc_name(void *user, int64_t i)
{
    doc_names *dn = user;
    int64_t len = 0;
    const int64_t *ids = kiln_clas_data_item(dn->data, dn->split, i, &len);
    const char **toks = ids ? malloc((size_t)(len ? len : 1) * sizeof *toks) : NULL;
    free(dn->buf);
    dn->buf = NULL;
    if (!toks) return NULL;
    for (int64_t k = 0; k < len; k++) toks[k] = kiln_vocab_token(dn->vocab, ids[k]);
    if (kiln_text_decode(toks, len, &dn->buf)) dn->buf = NULL;
    free(toks);
    if (dn->buf && strlen(dn->buf) > TEXT_SHOWN) {
        size_t n = TEXT_SHOWN;
        while (n && ((unsigned char)dn->buf[n] & 0xC0) == 0x80) n--;
        memcpy(dn->buf + n, "...", 4);
    }
    return dn->buf;
}

/* p's rows put in document order: row r of batch order is document order[r] */
static kiln_status reorder(kiln_data *d, kiln_data_split split, kiln_preds *p)
{
    float *probs = malloc((size_t)(p->n * p->c) * sizeof *probs);
    int64_t *targets = malloc((size_t)(p->n * p->k) * sizeof *targets), r = 0;
    kiln_status st = probs && targets ? KILN_STATUS_OK : kiln__err(KILN_STATUS_NOMEM, "text_interpret: out of memory");
    for (int64_t b = 0; !st && b < kiln_data_n_batches(d, split); b++) {
        int64_t n = 0;
        const int64_t *items = kiln_clas_data_batch_items(d, split, b, &n);
        if (!items) st = kiln_last_status();
        for (int64_t j = 0; !st && j < n; j++, r++) {
            int64_t i = items[j];
            if (r >= p->n || i < 0 || i >= p->n) {
                st = kiln__err(KILN_STATUS_STATE, "text_interpret: the predictions do not match the split's documents "
                                                  "(a data-parallel rank's share? interpret kiln_clas_data_whole's copy)");
                break;
            }
            memcpy(probs + i * p->c, p->probs + r * p->c, (size_t)p->c * sizeof *probs);
            memcpy(targets + i * p->k, (const int64_t *)p->targets + r * p->k, (size_t)p->k * sizeof *targets);
        }
    }
    if (!st && r != p->n) st = kiln__err(KILN_STATUS_STATE, "text_interpret: %lld predictions for %lld documents", (long long)p->n, (long long)r);
    if (!st) {
        free(p->probs), free(p->targets);
        p->probs = probs, p->targets = targets;
    } else {
        free(probs), free(targets);
    }
    return st;
}

kiln_status kiln_text_interpret(kiln_learner *l, kiln_data_split split, const char *dir, int64_t k, kiln_interp *out)
{
    const kiln_text_classes *cl = kiln_text_learner_classes(l);
    kiln_data *d = l ? kiln_learner_data(l) : NULL;
    if (!cl || !d) return kiln__err(KILN_STATUS_INVALID, "text_interpret: needs a text classifier learner with data");
    if (k < 0) return kiln__err(KILN_STATUS_INVALID, "text_interpret: k %lld must be >= 0", (long long)k);
    if (kiln_data_n_items(d, split) < 1)
        return kiln__err(KILN_STATUS_INVALID, "text_interpret: the %s split has no document", kiln_data_split_name(split));
    kiln_preds p;
    kiln_interp it = {0};
    kiln_status st = kiln_learner_get_preds(l, split, &p);
    if (st) return st;
    if (p.target_dtype != KILN_DTYPE_I64 || p.k != 1) st = kiln__err(KILN_STATUS_STATE, "text_interpret: targets are not class indices");
    if (!st) st = reorder(d, split, &p);
    if (!st) st = kiln_interp_from_preds(&p, &it);
    kiln_preds_free(&p);
    doc_names dn = {.data = d, .split = split, .vocab = kiln_text_learner_vocab(l)};
    if (!st && dir) st = kiln__interp_write(&it, (const char *const *)cl->name, dir, k, doc_name, &dn);
    free(dn.buf);
    if (!st && out) *out = it;
    else kiln_interp_free(&it);
    return kiln__done(st);
}
