/* Fuzz target: the text tokenizer (src/data/text/: fastai's rules, the Treebank split, UTF-8
 * repair) and the vocabulary file reader.
 * 1. The input as a document: kiln_text_tokenize never fails on any bytes; every token is
 *    non-empty, valid UTF-8 and holds no ASCII whitespace; the bytes replaced are at most the
 *    input's; the rules alone give valid UTF-8 starting "xxbos"; tokenizing the same bytes on
 *    two threads (three copies) gives the same tokens; decoding the tokens back
 *    (kiln_text_decode) gives valid UTF-8.
 * 2. The input as a vocabulary file: kiln_vocab_load either refuses it with a message or
 *    loads a vocabulary whose first tokens are the specials and that saves and loads back
 *    the same. */
#include "fuzz.h"

#include "core/internal.h"
#include "kiln.h"

#include <stdlib.h>
#include <string.h>

static void check_tokens(const kiln_tokens *t, size_t size)
{
    if (t->n_replaced < 0 || (size_t)t->n_replaced > size) kf_bug("more bytes replaced than the input has");
    for (int64_t i = 0; i < t->n; i++) {
        size_t n = strlen(t->tok[i]);
        if (!n) kf_bug("an empty token");
        if (kiln__utf8_invalid_at(t->tok[i], n) >= 0) kf_bug("a token is not valid UTF-8");
        for (size_t k = 0; k < n; k++)
            if (strchr(" \t\n\r\v\f", t->tok[i][k])) kf_bug("a token holds whitespace");
    }
}

static void document(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    kiln_tokens t;
    if (kiln_text_tokenize(s, size, &t)) kf_bug("kiln_text_tokenize failed");
    check_tokens(&t, size);
    if (t.n < 1 || strcmp(t.tok[0], "xxbos")) kf_bug("the first token is not xxbos");
    char *r = NULL;
    int64_t rep = 0;
    if (kiln_text_rules(s, size, &r, &rep)) kf_bug("kiln_text_rules failed");
    if (strncmp(r, "xxbos", 5) || kiln__utf8_invalid_at(r, strlen(r)) >= 0 || rep != t.n_replaced)
        kf_bug("the rules' text is not valid UTF-8 starting xxbos");
    free(r);
    const char *texts[3] = {s, s, s};
    size_t lens[3] = {size, size, size};
    kiln_tokens many[3];
    if (kiln_text_tokenize_many(texts, lens, 3, 2, many)) kf_bug("kiln_text_tokenize_many failed");
    for (int k = 0; k < 3; k++) {
        if (many[k].n != t.n) kf_bug("threads gave another number of tokens");
        for (int64_t i = 0; i < t.n; i++)
            if (strcmp(many[k].tok[i], t.tok[i])) kf_bug("threads gave other tokens");
        kiln_tokens_free(&many[k]);
    }
    char *back = NULL; /* the tokens decoded back: valid UTF-8, never a failure */
    if (kiln_text_decode((const char *const *)t.tok, t.n, &back)) kf_bug("kiln_text_decode failed");
    if (kiln__utf8_invalid_at(back, strlen(back)) >= 0) kf_bug("the decoded text is not valid UTF-8");
    free(back);
    kiln_tokens_free(&t);
}

static void vocab_file(const uint8_t *data, size_t size)
{
    const char *path = kf_memfile(data, size);
    if (!path) return;
    kiln_vocab *v;
    kiln_clear_error();
    if (kiln_vocab_load(path, &v)) {
        kf_refused("vocab_load");
        return;
    }
    for (int i = 0; i < KILN_TOK_N_SPECIAL; i++)
        if (strcmp(kiln_vocab_token(v, i), kiln_text_special(i))) kf_bug("a loaded vocabulary without the specials first");
    const char *out = kf_write(kf_tmpdir(), "vocab.txt", (const uint8_t *)"", 0);
    if (!out) abort();
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", out);
    if (kiln_vocab_save(v, copy)) kf_bug("cannot save a loaded vocabulary");
    kiln_vocab *w;
    if (kiln_vocab_load(copy, &w)) kf_bug("a saved vocabulary does not load");
    if (kiln_vocab_size(w) != kiln_vocab_size(v)) kf_bug("save + load changed the size");
    for (int64_t i = 0; i < kiln_vocab_size(v); i++)
        if (strcmp(kiln_vocab_token(v, i), kiln_vocab_token(w, i))) kf_bug("save + load changed a token");
    kiln_vocab_free(w);
    kiln_vocab_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16) return KF_SKIP;
    document(data, size);
    vocab_file(data, size);
    return 0;
}
