/* Class subsets and per-class limits (kiln_vision_params classes, train_per_class,
 * valid_per_class): run on a source's full item lists before its files are checked and its
 * statistics measured. The kept classes become the data's class list, in the order asked
 * for, and the labels are renumbered to match; a per-class limit keeps N items of each
 * class picked by a seeded permutation, then the kept items stay in data order. */
#include "data/vision/vision_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ", "-separated list of v's classes into buf (cut after about 600 characters). */
static const char *class_list(const kiln_vision_data *v, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int c = 0; c < v->n_classes && k < n; c++) {
        if (k > 600) {
            snprintf(buf + k, n - k, ", ... (%d in all)", v->n_classes);
            break;
        }
        k += (size_t)snprintf(buf + k, n - k, "%s'%s'", c ? ", " : "", v->classes[c]);
    }
    return buf;
}

/* The source's class named `want`: by name, else a decimal index; -1 when neither. */
static int find_class(const kiln_vision_data *v, const char *want)
{
    for (int c = 0; c < v->n_classes; c++)
        if (!strcmp(v->classes[c], want)) return c;
    if (want[0] < '0' || want[0] > '9') return -1;
    char *end;
    errno = 0;
    long k = strtol(want, &end, 10);
    return !*end && !errno && k >= 0 && k < v->n_classes ? (int)k : -1;
}

/* Keeps item i of s where keep[i] (in order), with its new label; frees dropped paths. */
static void compact(const kiln_vision_data *v, kiln__vsplit *s, const bool *keep, const int *relabel)
{
    const size_t px = (size_t)v->idx_h * v->idx_w; /* bytes per IDX image */
    int64_t k = 0;
    for (int64_t i = 0; i < s->n; i++) {
        if (!keep[i]) {
            if (s->paths) free(s->paths[i]);
            continue;
        }
        s->labels[k] = relabel ? relabel[s->labels[i]] : s->labels[i];
        if (s->paths) s->paths[k] = s->paths[i];
        if (s->pixels && k != i) memmove(s->pixels + (size_t)k * px, s->pixels + (size_t)i * px, px);
        k++;
    }
    s->n = k;
}

/* Replaces v's classes by the asked-for ones and drops the other classes' items. */
static kiln_status keep_classes(kiln_vision_data *v)
{
    const int nk = v->p.n_classes, nsrc = v->n_classes;
    int *relabel = malloc((size_t)(nsrc ? nsrc : 1) * sizeof *relabel); /* source class -> kept index or -1 */
    char **names = calloc((size_t)nk, sizeof *names);
    kiln_status st = relabel && names ? KILN_STATUS_OK : kiln__err(KILN_STATUS_NOMEM, "vision: out of memory");
    for (int c = 0; !st && c < nsrc; c++) relabel[c] = -1;
    char list[768];
    for (int i = 0; !st && i < nk; i++) {
        const char *want = v->p.classes[i] ? v->p.classes[i] : "(null)";
        int c = v->p.classes[i] ? find_class(v, want) : -1;
        if (c < 0)
            st = kiln__err(KILN_STATUS_INVALID, "vision: %s has no class '%s' (its classes: %s)", v->name, want,
                           class_list(v, list, sizeof list));
        else if (relabel[c] >= 0)
            st = kiln__err(KILN_STATUS_INVALID, "vision: %s: class '%s' ('%s') is asked for twice", v->name,
                           v->classes[c], want);
        else if (!(names[i] = kiln__vision_strdup(v->classes[c]))) st = KILN_STATUS_NOMEM;
        else relabel[c] = i;
    }
    for (int k = 0; !st && k < 2; k++) {
        kiln__vsplit *s = &v->s[k];
        bool *keep = malloc((size_t)(s->n ? s->n : 1) * sizeof *keep);
        if (!keep) {
            st = kiln__err(KILN_STATUS_NOMEM, "vision: out of memory");
            break;
        }
        for (int64_t i = 0; i < s->n; i++) keep[i] = s->labels[i] >= 0 && s->labels[i] < nsrc && relabel[s->labels[i]] >= 0;
        compact(v, s, keep, relabel);
        free(keep);
    }
    if (!st) {
        for (int c = 0; c < nsrc; c++) free(v->classes[c]);
        free(v->classes);
        v->classes = names, v->n_classes = nk;
        names = NULL;
    }
    for (int i = 0; names && i < nk; i++) free(names[i]);
    free(names), free(relabel);
    return st;
}

/* At most `limit` items of each class in split k: the first ones of each class met along the
 * permutation (split_seed, stream k + 1) of the split's items. */
static kiln_status limit_per_class(kiln_vision_data *v, int k, int64_t limit)
{
    kiln__vsplit *s = &v->s[k];
    int64_t *perm = malloc((size_t)(s->n ? s->n : 1) * sizeof *perm);
    int64_t *count = calloc((size_t)(v->n_classes ? v->n_classes : 1), sizeof *count);
    bool *keep = calloc((size_t)(s->n ? s->n : 1), sizeof *keep);
    if (!perm || !count || !keep) {
        free(perm), free(count), free(keep);
        return kiln__err(KILN_STATUS_NOMEM, "vision: out of memory");
    }
    kiln_data_permutation(v->p.split_seed, k + 1, s->n, perm); /* stream 0 is the random valid split's */
    for (int64_t j = 0; j < s->n; j++) {
        int64_t i = perm[j], y = s->labels[i];
        if (y >= 0 && y < v->n_classes && count[y] < limit) keep[i] = true, count[y]++;
    }
    compact(v, s, keep, NULL);
    free(perm), free(count), free(keep);
    return KILN_STATUS_OK;
}

kiln_status kiln__vision_subset(kiln_vision_data *v)
{
    kiln_status st = v->p.classes && v->p.n_classes ? keep_classes(v) : KILN_STATUS_OK;
    if (!st && v->p.train_per_class) st = limit_per_class(v, KILN_DATA_SPLIT_TRAIN, v->p.train_per_class);
    if (!st && v->p.valid_per_class) st = limit_per_class(v, KILN_DATA_SPLIT_VALID, v->p.valid_per_class);
    v->p.classes = NULL, v->p.n_classes = 0; /* the caller's strings: the kept names are v->classes */
    return st;
}
