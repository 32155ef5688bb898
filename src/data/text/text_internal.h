/* Internal to the text data code (src/data/text/): a growable buffer of code points, a byte
 * buffer, Unicode classes as Python's re module sees them (\s, \w), and the string hash map the
 * vocabulary counts with. Names start with kiln__ and are not API. */
#ifndef KILN_TEXT_INTERNAL_H
#define KILN_TEXT_INTERNAL_H

#include "data/data_internal.h"
#include "kiln/text.h"

#include <stdint.h>

/* Code points (UTF-32), malloc'd; oom is set (and the content dropped) when growing fails. */
typedef struct kiln__cps {
    int32_t *c;
    int64_t n, cap;
    bool oom;
} kiln__cps;

bool kiln__cps_grow(kiln__cps *b, int64_t need); /* false (and oom set) when out of memory */
static inline void kiln__cps_push(kiln__cps *b, int32_t c)
{
    if (b->n < b->cap || kiln__cps_grow(b, b->n + 1)) b->c[b->n++] = c;
}
void kiln__cps_push_ascii(kiln__cps *b, const char *s);
void kiln__cps_push_int(kiln__cps *b, int64_t v);
void kiln__cps_free(kiln__cps *b);

/* Bytes, NUL-terminated when len > 0, malloc'd; oom as above. */
typedef struct kiln__bytes {
    char *s;
    size_t len, cap;
    bool oom;
} kiln__bytes;

bool kiln__bytes_grow(kiln__bytes *b, size_t need); /* room for need bytes and a NUL */
static inline void kiln__bytes_put(kiln__bytes *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap && !kiln__bytes_grow(b, b->len + n)) return;
    for (size_t i = 0; i < n; i++) b->s[b->len + i] = s[i];
    b->len += n;
    b->s[b->len] = 0;
}
static inline void kiln__bytes_putc(kiln__bytes *b, char c)
{
    if (b->len + 2 > b->cap && !kiln__bytes_grow(b, b->len + 1)) return;
    b->s[b->len++] = c;
    b->s[b->len] = 0;
}
void kiln__bytes_free(kiln__bytes *b);

/* Decodes UTF-8 into code points; each byte that is not part of valid UTF-8 (and each NUL)
 * becomes U+FFFD and is counted in *n_replaced. */
void kiln__utf8_decode(const char *s, size_t n, kiln__cps *out, int64_t *n_replaced);
/* Bytes of c in UTF-8. */
static inline int kiln__cp_len(int32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }
/* Encodes code points as UTF-8 into out (appending). */
void kiln__utf8_encode(const int32_t *c, int64_t n, kiln__bytes *out);

/* Python's str.isspace (what \s matches in a str pattern). */
bool kiln__is_space(int32_t c);
/* Python's \w for str patterns: letters, numbers and '_'. */
bool kiln__is_word(int32_t c);
/* Simple lowercase mapping (Python's str.lower but for its few one-to-many mappings). */
int32_t kiln__lower(int32_t c);
/* Python's str.lower of c[0..n) appended to out: kiln__lower, plus U+0130 -> "i\u0307" and
 * the final sigma (ς) rule, with the slice as its context. */
void kiln__lower_into(const int32_t *c, int64_t n, kiln__cps *out);

/* fastai's rules (rules.c) on decoded text: returns the rewritten code points. */
void kiln__text_rules(const kiln__cps *in, kiln__cps *out);
/* Splits one whitespace-free chunk into tokens (split.c), appending each token's bytes and a
 * NUL to out and counting tokens in *n_tok. */
void kiln__text_split_chunk(const char *chunk, size_t n, kiln__bytes *out, int64_t *n_tok);

/* String -> int64 hash map with keys copied in (strmap.c). */
typedef struct kiln__strmap kiln__strmap;
kiln__strmap *kiln__strmap_new(void);
void kiln__strmap_free(kiln__strmap *m);
/* The value slot of key, inserted with *inserted = true and value init when absent; NULL
 * when out of memory. */
int64_t *kiln__strmap_slot(kiln__strmap *m, const char *key, int64_t init, bool *inserted);
/* The value of key, or -1 when absent. */
int64_t kiln__strmap_get(const kiln__strmap *m, const char *key);

/* The ids of tok[0..n) under v into ids[i] (malloc'd; the caller frees each) and lens[i], counted
 * into info per split (documents before n_train are train). NOMEM naming who. (corpus.c) */
kiln_status kiln__text_numericalize_all(const kiln_vocab *v, const kiln_tokens *tok, int64_t n, int64_t n_train,
                                        int64_t **ids, int64_t *lens, kiln_text_corpus_info *info, const char *who);

/* The LM's and the classifier's rank and world (issue 13): *world 0 becomes 1 (params from
 * before rank and world); INVALID naming who and the field unless 0 <= *rank < *world and the
 * world divides bs and valid_bs (each rank takes `share` / world of a batch). (lm.c) */
kiln_status kiln__text_check_ranks(const char *who, int *rank, int *world, int64_t bs, int64_t valid_bs,
                                   const char *share);

#endif
