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

/* Unique values first (an open-addressing hash set, so a column of millions of rows with few
 * values costs one pass), then only those sorted. */
typedef struct uset {
    int64_t *slot; /* index into the input + 1; 0 empty */
    size_t mask;
} uset;

static bool uset_init(uset *u, int64_t n)
{
    size_t cap = 64;
    while (cap < (size_t)n * 2 && cap < ((size_t)1 << 40)) cap *= 2;
    u->mask = cap - 1;
    return (u->slot = calloc(cap, sizeof *u->slot)) != NULL;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_dbl(double v)
{
    if (v == 0) v = 0; /* -0 and 0 are one value */
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    b ^= b >> 33;
    b *= 0xff51afd7ed558ccdull;
    return b ^ (b >> 33);
}

/* Keeps the first of equal values: fills uniq with their indices, returns the count. */
static int64_t unique_str(const char **texts, int64_t n, int64_t *uniq, uset *u)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t h = (size_t)hash_str(texts[i]) & u->mask;
        while (u->slot[h] && strcmp(texts[u->slot[h] - 1], texts[i])) h = (h + 1) & u->mask;
        if (!u->slot[h]) u->slot[h] = i + 1, uniq[m++] = i;
    }
    return m;
}

static int64_t unique_dbl(const double *v, int64_t n, int64_t *uniq, uset *u)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t h = (size_t)hash_dbl(v[i]) & u->mask;
        while (u->slot[h] && v[u->slot[h] - 1] != v[i]) h = (h + 1) & u->mask;
        if (!u->slot[h]) u->slot[h] = i + 1, uniq[m++] = i;
    }
    return m;
}

/* The categories of c from the unique entries: texts (NULL: format the numbers as integers,
 * the date parts' values). */
static kiln_status set_from(kiln__tab_cat *c, const char **texts, const double *v, int64_t *uniq, int64_t m,
                            bool numeric)
{
    c->cats = calloc((size_t)m + 1, sizeof *c->cats);
    c->numeric = numeric;
    c->n = 0;
    if (!c->cats || !(c->cats[c->n++] = kiln__tab_strdup("#na#"))) return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
    if (numeric) {
        numtext *nt = malloc(((size_t)m + 1) * sizeof *nt);
        if (!nt || !(c->vals = malloc(((size_t)m + 1) * sizeof *c->vals))) {
            free(nt);
            return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
        }
        for (int64_t k = 0; k < m; k++) nt[k] = (numtext){.v = v[uniq[k]], .s = texts ? texts[uniq[k]] : NULL, .i = k};
        qsort(nt, (size_t)m, sizeof *nt, cmp_num);
        c->vals[0] = 0;
        for (int64_t k = 0; k < m; k++) {
            char buf[32];
            if (!nt[k].s) snprintf(buf, sizeof buf, "%.0f", nt[k].v);
            c->vals[c->n] = nt[k].v;
            if (!(c->cats[c->n++] = kiln__tab_strdup(nt[k].s ? nt[k].s : buf))) {
                free(nt);
                return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
            }
        }
        free(nt);
        return KILN_STATUS_OK;
    }
    const char **s = malloc(((size_t)m + 1) * sizeof *s);
    if (!s) return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
    for (int64_t k = 0; k < m; k++) s[k] = texts[uniq[k]];
    qsort(s, (size_t)m, sizeof *s, cmp_str);
    for (int64_t k = 0; k < m; k++)
        if (!(c->cats[c->n++] = kiln__tab_strdup(s[k]))) {
            free(s);
            return kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
        }
    free(s);
    return KILN_STATUS_OK;
}

kiln_status kiln__tab_cat_set(kiln__tab_cat *c, const char **texts, int64_t n, bool numeric)
{
    int64_t *uniq = malloc(((size_t)n + 1) * sizeof *uniq);
    double *v = numeric ? malloc(((size_t)n + 1) * sizeof *v) : NULL;
    uset u = {0};
    kiln_status st;
    if (!uniq || (numeric && !v) || !uset_init(&u, n)) {
        st = kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
    } else {
        for (int64_t i = 0; numeric && i < n; i++) kiln__tab_number(texts[i], &v[i]);
        int64_t m = numeric ? unique_dbl(v, n, uniq, &u) : unique_str(texts, n, uniq, &u);
        st = set_from(c, texts, v, uniq, m, numeric);
    }
    free(uniq), free(v), free(u.slot);
    return st;
}

kiln_status kiln__tab_cat_set_nums(kiln__tab_cat *c, const double *v, int64_t n)
{
    int64_t *uniq = malloc(((size_t)n + 1) * sizeof *uniq);
    uset u = {0};
    kiln_status st;
    if (!uniq || !uset_init(&u, n)) st = kiln__err(KILN_STATUS_NOMEM, "categorify: out of memory");
    else st = set_from(c, NULL, v, uniq, unique_dbl(v, n, uniq, &u), true);
    free(uniq), free(u.slot);
    return st;
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
