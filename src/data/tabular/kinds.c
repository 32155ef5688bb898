/* What a cell holds, as pandas' read_csv would type its column: a finite decimal number, an
 * integer literal, a bool. fastai's cont_cat_split decides a column's kind from these
 * (procs.c): float columns, and integer columns with more than max_card distinct values, are
 * continuous; the rest (text, bools, small integers) categorical. */
#include "data/tabular/tab_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_space(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

/* The text of a decimal number: [+-] digits [. digits] [(e|E) [+-] digits], at least one
 * digit in the mantissa; strtod alone would take hex, "inf", "nan" and locale forms. */
static bool decimal_syntax(const char *s, const char **end, bool *integral)
{
    const char *p = s;
    bool dig = false;
    *integral = true;
    if (*p == '+' || *p == '-') p++;
    while (*p >= '0' && *p <= '9') p++, dig = true;
    if (*p == '.') {
        *integral = false;
        p++;
        while (*p >= '0' && *p <= '9') p++, dig = true;
    }
    if (!dig) return false;
    if (*p == 'e' || *p == 'E') {
        *integral = false;
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return false;
        while (*p >= '0' && *p <= '9') p++;
    }
    *end = p;
    return true;
}

bool kiln__tab_number(const char *s, double *v)
{
    if (!s) return false;
    const char *b = skip_space(s), *e;
    bool integral;
    if (!decimal_syntax(b, &e, &integral) || *skip_space(e)) return false;
    char *end;
    double x = strtod(b, &end);
    if (end != e || !isfinite(x)) return false;
    if (v) *v = x;
    return true;
}

bool kiln__tab_integer(const char *s)
{
    if (!s) return false;
    const char *b = skip_space(s), *e;
    bool integral;
    if (!decimal_syntax(b, &e, &integral) || !integral || *skip_space(e)) return false;
    errno = 0;
    char *end;
    (void)strtoll(b, &end, 10);
    return errno != ERANGE && end == e;
}

bool kiln__tab_bool(const char *s)
{
    return s && (!strcmp(s, "True") || !strcmp(s, "False") || !strcmp(s, "true") || !strcmp(s, "false"));
}
