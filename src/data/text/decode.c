/* Tokens back to readable text (kiln/text.h, kiln_text_decode): fastai v2's decode_spec_tokens
 * (xxmaj w -> W, xxup w -> W in capitals, xxrep n c -> c n times, xxwrep n w -> w n times),
 * xxbos and xxpad dropped, the rest joined with single spaces. Case mapping through utf8proc. */
#include "text_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* tok with its first code point (maj) or every code point (up) in capitals, the rest of a
 * maj word in lower case, appended to out */
static void put_cased(kiln__bytes *out, const char *tok, bool up)
{
    kiln__cps cps = {0};
    int64_t nr = 0;
    kiln__utf8_decode(tok, strlen(tok), &cps, &nr);
    for (int64_t i = 0; i < cps.n; i++)
        cps.c[i] = up || i == 0 ? utf8proc_toupper(cps.c[i]) : kiln__lower(cps.c[i]);
    kiln__utf8_encode(cps.c, cps.n, out);
    if (cps.oom) out->oom = true;
    kiln__cps_free(&cps);
}

/* n parsed from tok when it is a count in [1, 10000]; else 0 */
static int64_t count_of(const char *tok)
{
    char *end;
    long v = strtol(tok, &end, 10);
    return *tok >= '0' && *tok <= '9' && !*end && v >= 1 && v <= 10000 ? (int64_t)v : 0;
}

kiln_status kiln_text_decode(const char *const *tokens, int64_t n, char **out)
{
    if (!out || n < 0 || (n && !tokens)) return kiln__err(KILN_STATUS_INVALID, "text_decode: NULL argument");
    *out = NULL;
    kiln__bytes b = {0};
    enum { NONE, MAJ, UP, REP, WREP } rule = NONE;
    int64_t arg = 0;
    if (kiln__bytes_grow(&b, 16)) b.s[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *t = tokens[i];
        if (!t) return kiln__bytes_free(&b), kiln__err(KILN_STATUS_INVALID, "text_decode: token %lld is NULL", (long long)i);
        if (!strcmp(t, "xxbos") || !strcmp(t, "xxpad")) continue;
        int r = !strcmp(t, "xxmaj") ? MAJ : !strcmp(t, "xxup") ? UP : !strcmp(t, "xxrep") ? REP : !strcmp(t, "xxwrep") ? WREP : NONE;
        if (r != NONE) { /* a rule token: the last one before a word wins, as fastai's */
            rule = r, arg = 0;
            continue;
        }
        int64_t reps = 1;
        if (rule == REP || rule == WREP) {
            if (!arg) { /* the count: a token that is not one drops the rule (fastai) */
                arg = count_of(t);
                if (!arg) rule = NONE; /* and t is dropped, as fastai's */
                continue;
            } else {
                reps = arg;
            }
        }
        for (int64_t k = 0; k < reps; k++) {
            if (b.len && !(rule == REP && k)) kiln__bytes_putc(&b, ' ');
            if (rule == MAJ || rule == UP) put_cased(&b, t, rule == UP);
            else kiln__bytes_put(&b, t, strlen(t));
        }
        rule = NONE, arg = 0;
    }
    if (b.oom || !b.s) {
        kiln__bytes_free(&b);
        return kiln__err(KILN_STATUS_NOMEM, "text_decode: out of memory");
    }
    *out = b.s;
    return KILN_STATUS_OK;
}
