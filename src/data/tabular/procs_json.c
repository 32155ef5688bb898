/* The procs as JSON (saved with a model as DIR/procs.json) and back. Doubles are written
 * exactly (core/json.c); loading checks every field and names the one at fault:
 *   {"format": "kiln-tab-procs", "version": 1, "target": "y", "task": "regression" | "classification",
 *    "log_target": false, "target_range": [lo, hi],               (regression)
 *    "classes": ["a", "b"], "classes_numeric": false,             (classification)
 *    "cat": [{"name": "a", "column": "a", "part": "Year", "na": false, "numeric": false,
 *             "categories": ["#na#", ...]}, ...],                 ("part" only for date parts)
 *    "cont": [{"name": "b", "column": "b", "median": m, "mean": u, "std": s, "na": true}, ...]} */
#include "data/tabular/tab_internal.h"
#include "core/json.h"
#include "kiln/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROCS_FORMAT "kiln-tab-procs"
#define PROCS_VERSION 1

static bool add_src(cJSON *o, const char *name, const kiln__tab_src *s)
{
    bool ok = cJSON_AddStringToObject(o, "name", name) && cJSON_AddStringToObject(o, "column", s->col);
    if (ok && s->part >= 0) ok = cJSON_AddStringToObject(o, "part", kiln__tab_part_name(s->part)) != NULL;
    return ok;
}

static cJSON *strings(char *const *s, int64_t from, int64_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (int64_t k = from; a && k < n; k++) {
        cJSON *v = cJSON_CreateString(s[k]);
        if (!v || !cJSON_AddItemToArray(a, v)) {
            cJSON_Delete(v);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

char *kiln_tab_procs_to_json(const kiln_tab_procs *pr)
{
    if (!pr) return kiln__errp(KILN_STATUS_INVALID, "tab_procs_to_json: NULL procs");
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "format", PROCS_FORMAT) &&
              kiln__json_add_i64(o, "version", PROCS_VERSION) && cJSON_AddStringToObject(o, "target", pr->target) &&
              cJSON_AddStringToObject(o, "task", pr->classification ? "classification" : "regression") &&
              cJSON_AddBoolToObject(o, "log_target", pr->log_target);
    if (ok && pr->classification) {
        cJSON *c = strings(pr->cls.cats, 1, pr->cls.n);
        ok = c && cJSON_AddItemToObject(o, "classes", c) && cJSON_AddBoolToObject(o, "classes_numeric", pr->cls.numeric);
        if (!ok && c && !cJSON_GetObjectItem(o, "classes")) cJSON_Delete(c);
    } else if (ok) {
        cJSON *r = cJSON_CreateArray(), *lo = kiln__json_f64(pr->y_lo), *hi = kiln__json_f64(pr->y_hi);
        ok = r && lo && hi && cJSON_AddItemToArray(r, lo) && cJSON_AddItemToArray(r, hi) &&
             cJSON_AddItemToObject(o, "target_range", r);
        if (!ok) cJSON_Delete(r);
    }
    cJSON *cats = ok ? cJSON_AddArrayToObject(o, "cat") : NULL;
    ok = ok && cats;
    for (int k = 0; ok && k < pr->n_cat; k++) {
        const kiln__tab_cat *c = &pr->cat[k];
        cJSON *e = cJSON_CreateObject();
        ok = e && cJSON_AddItemToArray(cats, e);
        if (!ok) {
            cJSON_Delete(e);
            break;
        }
        cJSON *list = strings(c->cats, 0, c->n);
        ok = add_src(e, c->name, &c->src) && cJSON_AddBoolToObject(e, "na", c->is_na) &&
             cJSON_AddBoolToObject(e, "numeric", c->numeric) && list && cJSON_AddItemToObject(e, "categories", list);
        if (!ok && list && !cJSON_GetObjectItem(e, "categories")) cJSON_Delete(list);
    }
    cJSON *conts = ok ? cJSON_AddArrayToObject(o, "cont") : NULL;
    ok = ok && conts;
    for (int k = 0; ok && k < pr->n_cont; k++) {
        const kiln__tab_cont *c = &pr->cont[k];
        cJSON *e = cJSON_CreateObject();
        ok = e && cJSON_AddItemToArray(conts, e);
        if (!ok) {
            cJSON_Delete(e);
            break;
        }
        ok = add_src(e, c->name, &c->src) && kiln__json_add_f64(e, "median", c->median) &&
             kiln__json_add_f64(e, "mean", c->mean) && kiln__json_add_f64(e, "std", c->std) &&
             cJSON_AddBoolToObject(e, "na", c->has_na);
    }
    char *txt = kiln__json_finish("tab_procs_to_json", o, ok);
    if (txt) kiln_clear_error();
    return txt;
}

/* ---- reading ---- */

static kiln_status get_strdup(const char *who, const cJSON *o, const char *key, char **out)
{
    const char *s;
    kiln_status st = kiln__json_get_str(who, o, key, true, &s);
    if (st) return st;
    if (!*s) return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" is empty", who, key);
    if (!(*out = kiln__tab_strdup(s))) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", who);
    return KILN_STATUS_OK;
}

static kiln_status get_src(const char *who, const cJSON *e, char **name, kiln__tab_src *src)
{
    kiln_status st;
    if ((st = get_strdup(who, e, "name", name)) || (st = get_strdup(who, e, "column", &src->col))) return st;
    const char *part = NULL;
    if ((st = kiln__json_get_str(who, e, "part", false, &part))) return st;
    src->part = -1;
    if (part && (src->part = kiln__tab_part_index(part)) < 0)
        return kiln__err(KILN_STATUS_FORMAT, "%s: \"part\" is not a date part (Year, Month, ..., Elapsed)", who);
    return KILN_STATUS_OK;
}

/* An array of strings into c->cats (with "#na#" first when add_na). */
static kiln_status get_strings(const char *who, const cJSON *e, const char *key, bool add_na, kiln__tab_cat *c)
{
    const cJSON *a;
    kiln_status st = kiln__json_get_node(who, e, key, true, false, &a);
    if (st) return st;
    int n = cJSON_GetArraySize(a);
    c->cats = calloc((size_t)n + 2, sizeof *c->cats);
    if (!c->cats) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", who);
    c->n = 0;
    if (add_na && !(c->cats[c->n++] = kiln__tab_strdup("#na#"))) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", who);
    int i = 0;
    for (const cJSON *v = a->child; v; v = v->next, i++) {
        if (!cJSON_IsString(v)) return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\"[%d] is not a string", who, key, i);
        if (!(c->cats[c->n++] = kiln__tab_strdup(v->valuestring)))
            return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", who);
    }
    return KILN_STATUS_OK;
}

static kiln_status read_target(const char *name, const cJSON *o, kiln_tab_procs *pr)
{
    kiln_status st;
    const char *task;
    if ((st = get_strdup(name, o, "target", &pr->target)) || (st = kiln__json_get_str(name, o, "task", true, &task)) ||
        (st = kiln__json_get_bool(name, o, "log_target", true, &pr->log_target)))
        return st;
    if (!strcmp(task, "classification")) pr->classification = true;
    else if (strcmp(task, "regression"))
        return kiln__err(KILN_STATUS_FORMAT, "%s: \"task\" must be \"regression\" or \"classification\"", name);
    if (pr->classification) {
        if (pr->log_target) return kiln__err(KILN_STATUS_FORMAT, "%s: \"log_target\" is true for a classification", name);
        if ((st = kiln__json_get_bool(name, o, "classes_numeric", true, &pr->cls.numeric)) ||
            (st = get_strings(name, o, "classes", true, &pr->cls)))
            return st;
        if (!(pr->cls.name = kiln__tab_strdup("classes"))) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", name);
        if (pr->cls.n - 1 < 2) return kiln__err(KILN_STATUS_FORMAT, "%s: \"classes\" needs at least two classes", name);
        char who[300];
        snprintf(who, sizeof who, "%s: \"classes\"", name);
        pr->y_lo = pr->y_hi = NAN;
        return kiln__tab_cat_index(&pr->cls, who);
    }
    const cJSON *r;
    if ((st = kiln__json_get_node(name, o, "target_range", true, false, &r))) return st;
    if (cJSON_GetArraySize(r) != 2) return kiln__err(KILN_STATUS_FORMAT, "%s: \"target_range\" must be [lo, hi]", name);
    if ((st = kiln__json_f64_of(name, "target_range", 0, cJSON_GetArrayItem(r, 0), &pr->y_lo)) ||
        (st = kiln__json_f64_of(name, "target_range", 1, cJSON_GetArrayItem(r, 1), &pr->y_hi)))
        return st;
    if (!isfinite(pr->y_lo) || !isfinite(pr->y_hi) || pr->y_lo > pr->y_hi)
        return kiln__err(KILN_STATUS_FORMAT, "%s: \"target_range\" must be finite with lo <= hi", name);
    return KILN_STATUS_OK;
}

static kiln_status read_cats(const char *name, const cJSON *a, kiln_tab_procs *pr)
{
    int n = cJSON_GetArraySize(a);
    pr->cat = calloc((size_t)n + 1, sizeof *pr->cat);
    if (!pr->cat) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", name);
    char who[300];
    kiln_status st;
    for (const cJSON *e = a->child; e; e = e->next) {
        int k = pr->n_cat++;
        kiln__tab_cat *c = &pr->cat[k];
        c->src.part = -1;
        snprintf(who, sizeof who, "%s: \"cat\"[%d]", name, k);
        if (!cJSON_IsObject(e)) return kiln__err(KILN_STATUS_FORMAT, "%s is not an object", who);
        if ((st = get_src(who, e, &c->name, &c->src)) || (st = kiln__json_get_bool(who, e, "na", true, &c->is_na)) ||
            (st = kiln__json_get_bool(who, e, "numeric", true, &c->numeric)) ||
            (st = get_strings(who, e, "categories", false, c)) || (st = kiln__tab_cat_index(c, who)))
            return st;
        if (c->is_na && (c->n != 3 || strcmp(c->cats[1], "False") || strcmp(c->cats[2], "True")))
            return kiln__err(KILN_STATUS_FORMAT, "%s: \"categories\" of an _na column must be [\"#na#\", \"False\", \"True\"]", who);
        if (c->n - 1 > kiln__tab_code_limit)
            return kiln__err(KILN_STATUS_FORMAT, "%s: \"categories\" holds %lld: codes above %lld are not exact in a float batch",
                             who, (long long)(c->n - 1), (long long)kiln__tab_code_limit);
    }
    return KILN_STATUS_OK;
}

static kiln_status read_conts(const char *name, const cJSON *a, kiln_tab_procs *pr)
{
    int n = cJSON_GetArraySize(a);
    pr->cont = calloc((size_t)n + 1, sizeof *pr->cont);
    if (!pr->cont) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", name);
    char who[300];
    kiln_status st;
    for (const cJSON *e = a->child; e; e = e->next) {
        int k = pr->n_cont++;
        kiln__tab_cont *c = &pr->cont[k];
        c->src.part = -1;
        snprintf(who, sizeof who, "%s: \"cont\"[%d]", name, k);
        if (!cJSON_IsObject(e)) return kiln__err(KILN_STATUS_FORMAT, "%s is not an object", who);
        if ((st = get_src(who, e, &c->name, &c->src)) || (st = kiln__json_get_f64(who, e, "median", true, &c->median)) ||
            (st = kiln__json_get_f64(who, e, "mean", true, &c->mean)) ||
            (st = kiln__json_get_f64(who, e, "std", true, &c->std)) ||
            (st = kiln__json_get_bool(who, e, "na", true, &c->has_na)))
            return st;
        if (!isfinite(c->median)) return kiln__err(KILN_STATUS_FORMAT, "%s: \"median\" is not finite", who);
        if (!isfinite(c->mean)) return kiln__err(KILN_STATUS_FORMAT, "%s: \"mean\" is not finite", who);
        if (!isfinite(c->std) || c->std < 0) return kiln__err(KILN_STATUS_FORMAT, "%s: \"std\" must be finite and >= 0", who);
    }
    return KILN_STATUS_OK;
}

static kiln_status read_all(const char *name, const cJSON *o, kiln_tab_procs *pr)
{
    kiln_status st;
    const char *fmt;
    int64_t version;
    if ((st = kiln__json_get_str(name, o, "format", true, &fmt))) return st;
    if (strcmp(fmt, PROCS_FORMAT)) return kiln__err(KILN_STATUS_FORMAT, "%s: \"format\" is not \"%s\"", name, PROCS_FORMAT);
    if ((st = kiln__json_get_i64(name, o, "version", true, &version))) return st;
    if (version != PROCS_VERSION)
        return kiln__err(KILN_STATUS_UNSUPPORTED, "%s: \"version\" %lld is not %d (written by another kiln)", name,
                         (long long)version, PROCS_VERSION);
    if ((st = read_target(name, o, pr))) return st;
    const cJSON *cats, *conts;
    if ((st = kiln__json_get_node(name, o, "cat", true, false, &cats)) ||
        (st = kiln__json_get_node(name, o, "cont", true, false, &conts)) || (st = read_cats(name, cats, pr)) ||
        (st = read_conts(name, conts, pr)))
        return st;
    if (!pr->n_cat && !pr->n_cont) return kiln__err(KILN_STATUS_FORMAT, "%s: \"cat\" and \"cont\" are both empty", name);
    return KILN_STATUS_OK;
}

kiln_tab_procs *kiln_tab_procs_from_json(const char *text, size_t len, const char *name)
{
    if (!name) name = "procs.json";
    if (!text) return kiln__errp(KILN_STATUS_INVALID, "%s: no text", name);
    cJSON *o = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return kiln__errp(KILN_STATUS_FORMAT, "%s: not a JSON object", name);
    }
    kiln_tab_procs *pr = kiln__tab_procs_alloc();
    kiln_status st = pr ? read_all(name, o, pr) : KILN_STATUS_NOMEM;
    cJSON_Delete(o);
    if (st) {
        kiln_tab_procs_free(pr);
        return NULL;
    }
    kiln_clear_error();
    return pr;
}

kiln_status kiln_tab_procs_save(const kiln_tab_procs *pr, const char *path)
{
    if (!path) return kiln__err(KILN_STATUS_INVALID, "tab_procs_save: path is NULL");
    char *txt = kiln_tab_procs_to_json(pr);
    if (!txt) return kiln_last_status();
    kiln_status st = kiln_atomic_write(path, txt, strlen(txt));
    free(txt);
    return kiln__done(st);
}

kiln_tab_procs *kiln_tab_procs_load(const char *path)
{
    if (!path) return kiln__errp(KILN_STATUS_INVALID, "tab_procs_load: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return kiln__errp(KILN_STATUS_IO, "cannot open %s", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? 2 * cap : 65536;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return kiln__errp(KILN_STATUS_NOMEM, "out of memory reading %s", path);
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return kiln__errp(KILN_STATUS_IO, "cannot read %s", path);
    }
    kiln_tab_procs *pr = kiln_tab_procs_from_json(buf, n, path);
    free(buf);
    return pr;
}
