/* Categorify's category lists: the sorted unique training values of a categorical column
 * (numerically when every value is a number, else by bytes, which for UTF-8 is Python's
 * code-point order), "#na#" first with code 0 for missing and unseen values; and the lookups
 * from a value to its code (binary search over the sorted list). */
#include "data/tabular/tab_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct numtext {
    double v;
    const char *s;
    int64_t i; /* position in the input, to keep the first text of equal numbers */
} numtext;

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int cmp_num(const void *a, const void *b)
{
    const numtext *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

kiln_status kiln__tab_cat_set(kiln__tab_cat *c, const char **texts, int64_t n, bool numeric)
{
    size_t cap = (size_t)n + 1;
    c->cats = calloc(cap, sizeof *c->cats);
    c->numeric = numeric;
    c->n = 0;
    if (!c->cats) return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
    if (!(c->cats[c->n++] = kiln__tab_strdup("#na#"))) return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
    if (numeric) {
        numtext *v = malloc((n ? (size_t)n : 1) * sizeof *v);
        c->vals = malloc(cap * sizeof *c->vals);
        if (!v || !c->vals) {
            free(v);
            return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
        }
        for (int64_t i = 0; i < n; i++) {
            v[i].s = texts[i], v[i].i = i;
            kiln__tab_number(texts[i], &v[i].v);
        }
        qsort(v, (size_t)n, sizeof *v, cmp_num);
        c->vals[0] = 0;
        for (int64_t i = 0; i < n; i++) {
            if (i && v[i].v == v[i - 1].v) continue;
            c->vals[c->n] = v[i].v;
            if (!(c->cats[c->n++] = kiln__tab_strdup(v[i].s))) {
                free(v);
                return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
            }
        }
        free(v);
        return KILN_STATUS_OK;
    }
    const char **s = malloc((n ? (size_t)n : 1) * sizeof *s);
    if (!s) return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
    memcpy(s, texts, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_str);
    for (int64_t i = 0; i < n; i++) {
        if (i && !strcmp(s[i], s[i - 1])) continue;
        if (!(c->cats[c->n++] = kiln__tab_strdup(s[i]))) {
            free(s);
            return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
        }
    }
    free(s);
    return KILN_STATUS_OK;
}

kiln_status kiln__tab_cat_index(kiln__tab_cat *c, const char *who)
{
    if (c->n < 1 || strcmp(c->cats[0], "#na#"))
        return kiln__err(KILN_STATUS_FORMAT, "%s: column \"%s\": categories must start with \"#na#\"", who, c->name);
    if (c->numeric) {
        free(c->vals);
        if (!(c->vals = malloc((size_t)c->n * sizeof *c->vals)))
            return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", who);
        c->vals[0] = 0;
        for (int64_t k = 1; k < c->n; k++) {
            if (!kiln__tab_number(c->cats[k], &c->vals[k]))
                return kiln__err(KILN_STATUS_FORMAT, "%s: column \"%s\": category %lld is not a number", who, c->name,
                                 (long long)k);
            if (k > 1 && !(c->vals[k] > c->vals[k - 1]))
                return kiln__err(KILN_STATUS_FORMAT, "%s: column \"%s\": categories are not in ascending order", who,
                                 c->name);
        }
        return KILN_STATUS_OK;
    }
    for (int64_t k = 2; k < c->n; k++)
        if (strcmp(c->cats[k], c->cats[k - 1]) <= 0)
            return kiln__err(KILN_STATUS_FORMAT, "%s: column \"%s\": categories are not sorted and unique", who, c->name);
    return KILN_STATUS_OK;
}

int64_t kiln__tab_cat_code_num(const kiln__tab_cat *c, double v)
{
    if (!c->numeric) return 0;
    int64_t lo = 1, hi = c->n - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (c->vals[mid] == v) return mid;
        if (c->vals[mid] < v) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

int64_t kiln__tab_cat_code_text(const kiln__tab_cat *c, const char *text)
{
    if (!text) return 0;
    if (c->numeric) {
        double v;
        return kiln__tab_number(text, &v) ? kiln__tab_cat_code_num(c, v) : 0;
    }
    int64_t lo = 1, hi = c->n - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->cats[mid], text);
        if (!r) return mid;
        if (r < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}
