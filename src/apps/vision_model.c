/* model.json of a trained vision model (include/kiln/vision_model.h): read strictly (whole
 * file up to a limit, every key checked and named in errors, unknown keys warned about),
 * checked and written atomically, in the common layout every task shares (format
 * "kiln-model", format_version 1) or, for reading, the older flat "kiln-vision-model" one.
 * cJSON does the JSON; this file decides what a valid description is. */
#include "kiln/vision_model.h"

#include "app_internal.h"
#include "core/internal.h"
#include "kiln/io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- messages ----------------------------------------------------------------------------- */

/* s (n bytes) for a message: at most 40 bytes, bytes outside printable ASCII as \xNN. */
static const char *quoted(const char *s, size_t n, char *buf, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 40) {
            j += (size_t)snprintf(buf + j, cap - j, "...");
            break;
        }
        if (c >= 0x20 && c < 0x7f) buf[j++] = (char)c;
        else j += (size_t)snprintf(buf + j, cap - j, "\\x%02X", c);
    }
    buf[j < cap ? j : cap - 1] = '\0';
    return buf;
}

/* "line L, column C" of byte offset off in text. */
static void line_col(const char *text, size_t off, int *line, int *col)
{
    *line = 1, *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') ++*line, *col = 1;
        else ++*col;
    }
}

/* v as the shortest text that reads back to exactly v (as a float when f32) into b (>= 32
 * bytes): "28.9", not "28.899999999999999". */
static const char *shortest(double v, bool f32, char *b, size_t n)
{
    for (int p = f32 ? 6 : 15; p <= 17; p++) {
        snprintf(b, n, "%.*g", p, v);
        double back = strtod(b, NULL);
        if (f32 ? (float)back == (float)v : back == v) break;
    }
    return b;
}

/* ---- one number, one string ---------------------------------------------------------------- */

typedef struct reader {
    const char *name; /* the file, for messages */
} reader;

/* v as a number in [lo, hi], integral when asked; key names it ("normalization.std[0]"). */
static kiln_status get_num(const reader *r, const cJSON *v, const char *key, double lo, double hi, bool integral,
                           double *out)
{
    if (!v) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is missing", r->name, key);
    if (!cJSON_IsNumber(v)) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is not a number", r->name, key);
    double x = v->valuedouble;
    if (!isfinite(x)) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is not a finite number", r->name, key);
    char b[3][40];
    if (integral && x != floor(x))
        return kiln__err(KILN_STATUS_FORMAT, "%s: %s must be an integer (it is %s)", r->name, key,
                         shortest(x, false, b[0], sizeof b[0]));
    if (!(x >= lo && x <= hi))
        return kiln__err(KILN_STATUS_FORMAT, "%s: %s is %s, outside [%s, %s]", r->name, key,
                         shortest(x, false, b[0], sizeof b[0]), shortest(lo, false, b[1], sizeof b[1]),
                         shortest(hi, false, b[2], sizeof b[2]));
    *out = x;
    return KILN_STATUS_OK;
}

/* A finite f32 (a double that overflows float is refused, not turned into inf). */
static kiln_status get_f32(const reader *r, const cJSON *v, const char *key, float *out)
{
    double x;
    kiln_status st = get_num(r, v, key, -HUGE_VAL, HUGE_VAL, false, &x);
    if (st) return st;
    char b[40];
    if (!isfinite((float)x))
        return kiln__err(KILN_STATUS_FORMAT, "%s: %s is %s, too large for a 32-bit float", r->name, key,
                         shortest(x, false, b, sizeof b));
    *out = (float)x;
    return KILN_STATUS_OK;
}

static kiln_status get_bool(const reader *r, const cJSON *v, const char *key, bool *out)
{
    if (!cJSON_IsBool(v)) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is not true or false", r->name, key);
    *out = cJSON_IsTrue(v);
    return KILN_STATUS_OK;
}

static kiln_status get_str(const reader *r, const cJSON *v, const char *key, const char **out)
{
    if (!v) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is missing", r->name, key);
    if (!cJSON_IsString(v) || !v->valuestring) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is not a string", r->name, key);
    *out = v->valuestring;
    return KILN_STATUS_OK;
}

/* ---- the whole description ----------------------------------------------------------------- */

typedef struct named {
    const char *s;
    int i;
} named;

static int cmp_named(const void *a, const void *b)
{
    const named *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* The members of obj (key prefix for messages): each name at most once; names not in
 * known[] are ignored with one warning. Sorted, so a huge object costs n log n. */
static kiln_status check_keys(const reader *r, const cJSON *obj, const char *prefix, const char *const *known)
{
    int n = cJSON_GetArraySize(obj), i = 0, n_unknown = 0;
    const char *first_unknown = NULL;
    named *v = malloc(sizeof *v * (size_t)(n > 0 ? n : 1));
    if (!v) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", r->name);
    for (const cJSON *a = obj->child; a; a = a->next, i++) {
        const char *k = a->string ? a->string : "";
        v[i] = (named){k, i};
        bool ok = false;
        for (int q = 0; known[q] && !ok; q++) ok = !strcmp(known[q], k);
        if (!ok && !n_unknown++) first_unknown = k;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_named);
    kiln_status st = KILN_STATUS_OK;
    char q[200];
    for (i = 1; i < n && !st; i++)
        if (!strcmp(v[i].s, v[i - 1].s))
            st = kiln__err(KILN_STATUS_FORMAT, "%s: key %s\"%s\" appears twice", r->name, prefix,
                           quoted(v[i].s, strlen(v[i].s), q, sizeof q));
    free(v);
    if (!st && n_unknown == 1)
        kiln__warn("%s: unknown key %s\"%s\" ignored", r->name, prefix, quoted(first_unknown, strlen(first_unknown), q, sizeof q));
    else if (!st && n_unknown)
        kiln__warn("%s: unknown key %s\"%s\" and %d more ignored", r->name, prefix,
                   quoted(first_unknown, strlen(first_unknown), q, sizeof q), n_unknown - 1);
    return st;
}

/* Non-empty, distinct, valid UTF-8 names, else code; who labels the list in messages. */
static kiln_status check_names(kiln_status code, const char *who, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        char q[200];
        size_t len = names[i] ? strlen(names[i]) : 0;
        if (!len) return kiln__err(code, "%s: classes[%d] is empty", who, i);
        int64_t bad = kiln__utf8_invalid_at(names[i], len);
        if (bad >= 0)
            return kiln__err(code,
                             "%s: classes[%d] (the folder name \"%s\") is not valid UTF-8 at byte %lld: JSON holds "
                             "only UTF-8, rename the folder",
                             who, i, quoted(names[i], len, q, sizeof q), (long long)bad);
    }
    named *v = malloc(sizeof *v * (size_t)(n > 0 ? n : 1));
    if (!v) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", who);
    for (int i = 0; i < n; i++) v[i] = (named){names[i], i};
    qsort(v, (size_t)n, sizeof *v, cmp_named);
    kiln_status st = KILN_STATUS_OK;
    for (int i = 1; i < n && !st; i++)
        if (!strcmp(v[i].s, v[i - 1].s)) {
            char q[200];
            st = kiln__err(code, "%s: classes[%d] repeats classes[%d] (\"%s\")", who, v[i].i, v[i - 1].i,
                           quoted(v[i].s, strlen(v[i].s), q, sizeof q));
        }
    free(v);
    return st;
}

/* format "kiln-model", format_version 1 (the common part, then the task's own "vision") */
static const char *const k_root[] = {"format", "format_version", "task", "arch", "n_params", "classes", "n_classes",
                                     "normalization", "preprocessing", "augmentation", "training", "vision", NULL};
static const char *const k_prep[] = {"n_in", "size", "resize", NULL};
static const char *const k_train[] = {"seed", "valid_pct", "data", NULL};
static const char *const k_vision[] = {NULL};
/* format "kiln-vision-model" (before format_version): one flat object */
static const char *const k_legacy[] = {"format", "version",      "arch",      "n_in",  "size",
                                       "resize", "n_classes",    "classes",   "normalization",
                                       "augment", "augmentation", "seed",      "valid_pct", "n_params", "data", NULL};
static const char *const k_norm[] = {"kind", "mean", "std", NULL};
static const char *const k_aug[] = {"do_flip", "max_rotate", "max_zoom", "max_warp", "max_lighting", "p_affine",
                                    "p_lighting", NULL};

static kiln_status read_classes(const reader *r, const cJSON *cl, kiln_vision_model_info *mi)
{
    if (!cJSON_IsArray(cl) || !cl->child) return kiln__err(KILN_STATUS_FORMAT, "%s: classes is not a non-empty array", r->name);
    int n = cJSON_GetArraySize(cl);
    if (!(mi->classes = calloc((size_t)n, sizeof *mi->classes))) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", r->name);
    mi->n_classes = n;
    int i = 0;
    for (const cJSON *c = cl->child; c; c = c->next, i++) {
        char key[32];
        const char *s = NULL;
        snprintf(key, sizeof key, "classes[%d]", i);
        kiln_status st = get_str(r, c, key, &s);
        if (st) return st;
        if (!(mi->classes[i] = strdup(s))) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", r->name);
    }
    return check_names(KILN_STATUS_FORMAT, r->name, (const char *const *)mi->classes, n);
}

static kiln_status read_norm(const reader *r, const cJSON *nm, kiln_vision_model_info *mi)
{
    if (!cJSON_IsObject(nm)) return kiln__err(KILN_STATUS_FORMAT, "%s: normalization is not an object", r->name);
    kiln_status st = check_keys(r, nm, "normalization.", k_norm);
    if (st) return st;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(nm, "kind");
    const char *ks = "custom";
    if (kind && (st = get_str(r, kind, "normalization.kind", &ks))) return st;
    if (strcmp(ks, "dataset") && strcmp(ks, "imagenet") && strcmp(ks, "custom") && strcmp(ks, "none"))
        return kiln__err(KILN_STATUS_FORMAT, "%s: normalization.kind is not dataset, imagenet, custom or none",
                         r->name);
    mi->norm = !strcmp(ks, "none") ? KILN_VISION_NORM_NONE : KILN_VISION_NORM_CUSTOM;
    const char *which[2] = {"mean", "std"};
    for (int w = 0; w < 2; w++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(nm, which[w]);
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != mi->n_in)
            return kiln__err(KILN_STATUS_FORMAT, "%s: normalization.%s is not an array of n_in (%d) numbers", r->name,
                             which[w], mi->n_in);
        float *dst = w ? mi->stats.std : mi->stats.mean;
        int c = 0;
        for (const cJSON *v = a->child; v; v = v->next, c++) {
            char key[40];
            snprintf(key, sizeof key, "normalization.%s[%d]", which[w], c);
            if ((st = get_f32(r, v, key, &dst[c]))) return st;
            if (w && !(dst[c] > 0)) return kiln__err(KILN_STATUS_FORMAT, "%s: %s must be > 0", r->name, key);
        }
    }
    return KILN_STATUS_OK;
}

static kiln_status read_aug(const reader *r, const cJSON *ag, kiln_vision_model_info *mi)
{
    mi->aug = kiln_augment_default_params(); /* files written before "augmentation" existed */
    if (!ag) return KILN_STATUS_OK;
    if (!cJSON_IsObject(ag)) return kiln__err(KILN_STATUS_FORMAT, "%s: augmentation is not an object", r->name);
    kiln_status st = check_keys(r, ag, "augmentation.", k_aug);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(ag, "do_flip");
    if (!st && f) st = get_bool(r, f, "augmentation.do_flip", &mi->aug.do_flip);
    float *dst[] = {&mi->aug.max_rotate, &mi->aug.max_zoom, &mi->aug.max_warp, &mi->aug.max_lighting,
                    &mi->aug.p_affine, &mi->aug.p_lighting};
    for (int k = 0; k < 6 && !st; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ag, k_aug[k + 1]);
        char key[40];
        snprintf(key, sizeof key, "augmentation.%s", k_aug[k + 1]);
        if (v) st = get_f32(r, v, key, dst[k]);
    }
    if (!st && kiln_augment_check_params(&mi->aug)) {
        char why[512];
        snprintf(why, sizeof why, "%s", kiln_last_error());
        st = kiln__err(KILN_STATUS_FORMAT, "%s: augmentation holds values out of range (%s)", r->name, why);
    }
    return st;
}

/* prefix + key into buf, for messages ("preprocessing.size"). */
static const char *key_of(char *buf, size_t n, const char *prefix, const char *key)
{
    snprintf(buf, n, "%s%s", prefix, key);
    return buf;
}

/* obj[key] when obj is an object holding it; NULL otherwise. */
static const cJSON *member(const cJSON *obj, const char *key)
{
    return obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

/* An optional object member: NULL when absent, FORMAT when not an object; its keys checked. */
static kiln_status get_obj(const reader *r, const cJSON *j, const char *key, const char *const *known, const cJSON **out)
{
    *out = member(j, key);
    if (!*out) return KILN_STATUS_OK;
    if (!cJSON_IsObject(*out)) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is not an object", r->name, key);
    char prefix[40];
    return check_keys(r, *out, key_of(prefix, sizeof prefix, key, "."), known);
}

static kiln_status read_arch(const reader *r, const cJSON *j, kiln_vision_model_info *mi)
{
    const char *s = NULL;
    double x;
    const cJSON *arch = member(j, "arch");
    if (!arch) return kiln__err(KILN_STATUS_FORMAT, "%s: arch is missing", r->name);
    kiln_status st = get_str(r, arch, "arch", &s);
    if (st) return st;
    if (!*s || strlen(s) >= sizeof mi->arch)
        return kiln__err(KILN_STATUS_FORMAT, "%s: arch must be 1 to %zu bytes long", r->name, sizeof mi->arch - 1);
    snprintf(mi->arch, sizeof mi->arch, "%s", s);
    const cJSON *v = member(j, "n_params");
    if (v) {
        if ((st = get_num(r, v, "n_params", 0, KILN_VISION_MODEL_MAX_INT, true, &x))) return st;
        mi->n_params = (int64_t)x;
    }
    return KILN_STATUS_OK;
}

/* n_in, size, resize of obj (prefix names them). */
static kiln_status read_prep(const reader *r, const cJSON *obj, const char *prefix, kiln_vision_model_info *mi)
{
    char k[48];
    const char *s = NULL;
    double x;
    kiln_status st = get_num(r, member(obj, "n_in"), key_of(k, sizeof k, prefix, "n_in"), 1, 3, true, &x);
    if (st) return st;
    if (x == 2) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is 2; it must be 1 or 3", r->name, k);
    mi->n_in = (int)x;
    if ((st = get_num(r, member(obj, "size"), key_of(k, sizeof k, prefix, "size"), 1, 4096, true, &x))) return st;
    mi->size = (int)x;
    const cJSON *v = member(obj, "resize");
    if (v) {
        if ((st = get_str(r, v, key_of(k, sizeof k, prefix, "resize"), &s))) return st;
        if (strcmp(s, "crop")) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is not \"crop\"", r->name, k);
    }
    return KILN_STATUS_OK;
}

/* seed (42), valid_pct (0.2), data (none) of obj, each optional (obj may be NULL). */
static kiln_status read_training(const reader *r, const cJSON *obj, const char *prefix, kiln_vision_model_info *mi)
{
    char k[48];
    const char *s = NULL;
    double x;
    kiln_status st;
    const cJSON *v;
    mi->seed = 42;
    if ((v = member(obj, "seed"))) {
        if ((st = get_num(r, v, key_of(k, sizeof k, prefix, "seed"), 0, KILN_VISION_MODEL_MAX_INT, true, &x))) return st;
        mi->seed = (uint64_t)x;
    }
    mi->valid_pct = 0.2;
    if ((v = member(obj, "valid_pct"))) {
        if ((st = get_num(r, v, key_of(k, sizeof k, prefix, "valid_pct"), 0, 1, false, &x))) return st;
        if (x == 1) return kiln__err(KILN_STATUS_FORMAT, "%s: %s is 1; it must be in [0, 1)", r->name, k);
        mi->valid_pct = x;
    }
    if ((v = member(obj, "data"))) {
        if ((st = get_str(r, v, key_of(k, sizeof k, prefix, "data"), &s))) return st;
        if (!(mi->data = strdup(s))) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", r->name);
    }
    return KILN_STATUS_OK;
}

/* classes + n_classes, normalization: the same in both layouts. */
static kiln_status read_classes_norm(const reader *r, const cJSON *j, kiln_vision_model_info *mi)
{
    kiln_status st = read_classes(r, member(j, "classes"), mi);
    const cJSON *nc = member(j, "n_classes");
    double x;
    if (!st && nc && !(st = get_num(r, nc, "n_classes", 1, KILN_VISION_MODEL_MAX_INT, true, &x)) && x != mi->n_classes)
        st = kiln__err(KILN_STATUS_FORMAT, "%s: n_classes is %.0f but classes holds %d names", r->name, x, mi->n_classes);
    if (!st) st = read_norm(r, member(j, "normalization"), mi);
    return st;
}

/* The layout before format_version: "format": "kiln-vision-model", one flat object. */
static kiln_status read_legacy(const reader *r, const cJSON *j, kiln_vision_model_info *mi)
{
    double x;
    const cJSON *v = member(j, "version");
    kiln_status st = check_keys(r, j, "", k_legacy);
    if (!st && v) st = get_num(r, v, "version", 1, 1, true, &x);
    if (!st) st = read_arch(r, j, mi);
    if (!st) st = read_prep(r, j, "", mi);
    mi->augment = true;
    if (!st && (v = member(j, "augment"))) st = get_bool(r, v, "augment", &mi->augment);
    if (!st) st = read_training(r, j, "", mi);
    if (!st) st = read_classes_norm(r, j, mi);
    if (!st) st = read_aug(r, member(j, "augmentation"), mi);
    return st;
}

static kiln_status read_json(const reader *r, const cJSON *j, kiln_vision_model_info *mi)
{
    if (!cJSON_IsObject(j)) return kiln__err(KILN_STATUS_FORMAT, "%s: not a JSON object", r->name);
    const char *s = NULL;
    double x;
    if (get_str(r, member(j, "format"), "format", &s) ||
        (strcmp(s, KILN_MODEL_FORMAT) && strcmp(s, KILN_VISION_MODEL_FORMAT)))
        return kiln__err(KILN_STATUS_FORMAT, "%s: format is not \"" KILN_MODEL_FORMAT "\" (nor the older \""
                         KILN_VISION_MODEL_FORMAT "\"): not a kiln model description", r->name);
    if (!strcmp(s, KILN_VISION_MODEL_FORMAT)) return read_legacy(r, j, mi);
    const cJSON *v = member(j, "format_version");
    if (!v) return kiln__err(KILN_STATUS_FORMAT, "%s: format_version is missing", r->name);
    kiln_status st = get_num(r, v, "format_version", 1, KILN_VISION_MODEL_MAX_INT, true, &x);
    if (st) return st;
    if (x > KILN_MODEL_FORMAT_VERSION)
        return kiln__err(KILN_STATUS_FORMAT, "%s: format_version %.0f is newer than this kiln reads (%d): update kiln",
                         r->name, x, KILN_MODEL_FORMAT_VERSION);
    if ((st = check_keys(r, j, "", k_root))) return st;
    if ((st = get_str(r, member(j, "task"), "task", &s))) return st;
    if (strcmp(s, "vision"))
        return kiln__err(KILN_STATUS_FORMAT, "%s: task \"%s\" is not one this kiln knows (vision)", r->name, s);
    const cJSON *prep, *train, *vis;
    if ((st = read_arch(r, j, mi))) return st;
    if ((st = get_obj(r, j, "preprocessing", k_prep, &prep))) return st;
    if (!prep) return kiln__err(KILN_STATUS_FORMAT, "%s: preprocessing is missing", r->name);
    if ((st = read_prep(r, prep, "preprocessing.", mi))) return st;
    if ((st = get_obj(r, j, "training", k_train, &train)) || (st = read_training(r, train, "training.", mi))) return st;
    if ((st = get_obj(r, j, "vision", k_vision, &vis))) return st;
    if ((st = read_classes_norm(r, j, mi))) return st;
    v = member(j, "augmentation");
    if (!v) return kiln__err(KILN_STATUS_FORMAT, "%s: augmentation is missing (null when the model had none)", r->name);
    mi->augment = !cJSON_IsNull(v);
    return read_aug(r, mi->augment ? v : NULL, mi);
}

kiln_status kiln_vision_model_info_parse(const char *text, size_t len, const char *name, kiln_vision_model_info *info)
{
    if (!info) return kiln__err(KILN_STATUS_INVALID, "model.json: info is NULL");
    memset(info, 0, sizeof *info);
    reader r = {name ? name : "model.json"};
    if (!text && len) return kiln__err(KILN_STATUS_INVALID, "%s: text is NULL", r.name);
    if (len > KILN_VISION_MODEL_INFO_MAX_BYTES)
        return kiln__err(KILN_STATUS_FORMAT, "%s: %zu bytes, more than the limit of %zu MiB", r.name, len,
                         KILN_VISION_MODEL_INFO_MAX_BYTES >> 20);
    const char *nul = len ? memchr(text, '\0', len) : NULL;
    int line, col;
    if (nul) {
        line_col(text, (size_t)(nul - text), &line, &col);
        return kiln__err(KILN_STATUS_FORMAT, "%s: a NUL byte at line %d, column %d: not a JSON text", r.name, line, col);
    }
    int64_t bad = kiln__utf8_invalid_at(text, len);
    if (bad >= 0) {
        line_col(text, (size_t)bad, &line, &col);
        return kiln__err(KILN_STATUS_FORMAT, "%s: not valid UTF-8 at line %d, column %d (byte %lld)", r.name, line, col,
                         (long long)bad);
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text ? text : "", len, &end, false);
    size_t off = end && end >= text && text ? (size_t)(end - text) : 0;
    if (off > len) off = len;
    /* only white space may follow the value; an error there means the text ended early */
    while (off < len && strchr(" \t\r\n", text[off])) off++;
    if (!j || off < len) {
        char q[200];
        line_col(text, off, &line, &col);
        cJSON_Delete(j);
        if (off >= len) return kiln__err(KILN_STATUS_FORMAT, "%s: not valid JSON: the text ends early (line %d, column %d)",
                                         r.name, line, col);
        return kiln__err(KILN_STATUS_FORMAT, "%s: not valid JSON at line %d, column %d (near '%s')", r.name, line, col,
                         quoted(text + off, len - off < 20 ? len - off : 20, q, sizeof q));
    }
    kiln_status st = read_json(&r, j, info);
    cJSON_Delete(j);
    if (st) kiln_vision_model_info_free(info);
    return st;
}

kiln_status kiln_vision_model_info_read(const char *path, kiln_vision_model_info *info)
{
    if (!info || !path) return kiln__err(KILN_STATUS_INVALID, "model.json: path or info is NULL");
    memset(info, 0, sizeof *info);
    char *buf = NULL;
    size_t n = 0;
    kiln_status rc = kiln__read_file(path, KILN_VISION_MODEL_INFO_MAX_BYTES, &buf, &n);
    if (!rc) rc = kiln_vision_model_info_parse(buf, n, path, info);
    free(buf);
    return rc;
}

void kiln_vision_model_info_free(kiln_vision_model_info *info)
{
    if (!info) return;
    for (int i = 0; info->classes && i < info->n_classes; i++) free(info->classes[i]);
    free(info->classes);
    free(info->data);
    info->classes = NULL;
    info->data = NULL;
    info->n_classes = 0;
}

/* ---- checking and writing ------------------------------------------------------------------ */

kiln_status kiln_vision_model_info_check(const kiln_vision_model_info *mi)
{
    const char *w = "model.json";
    if (!mi) return kiln__err(KILN_STATUS_INVALID, "%s: info is NULL", w);
    size_t al = strnlen(mi->arch, sizeof mi->arch);
    if (!al || al == sizeof mi->arch || kiln__utf8_invalid_at(mi->arch, al) >= 0)
        return kiln__err(KILN_STATUS_INVALID, "%s: arch must be 1 to %zu bytes of UTF-8", w, sizeof mi->arch - 1);
    if (mi->n_in != 1 && mi->n_in != 3) return kiln__err(KILN_STATUS_INVALID, "%s: n_in is %d, not 1 or 3", w, mi->n_in);
    if (mi->size < 1 || mi->size > 4096) return kiln__err(KILN_STATUS_INVALID, "%s: size %d is outside [1, 4096]", w, mi->size);
    if (mi->n_classes < 1 || !mi->classes)
        return kiln__err(KILN_STATUS_INVALID, "%s: %d classes; at least one is needed", w, mi->n_classes);
    kiln_status st = check_names(KILN_STATUS_INVALID, w, (const char *const *)mi->classes, mi->n_classes);
    if (st) return st;
    for (int c = 0; c < mi->n_in; c++) {
        if (!isfinite(mi->stats.mean[c]))
            return kiln__err(KILN_STATUS_INVALID, "%s: normalization.mean[%d] is not a finite number", w, c);
        if (!(isfinite(mi->stats.std[c]) && mi->stats.std[c] > 0))
            return kiln__err(KILN_STATUS_INVALID, "%s: normalization.std[%d] must be finite and > 0", w, c);
    }
    if (mi->augment && kiln_augment_check_params(&mi->aug)) return KILN_STATUS_INVALID;
    if (mi->seed > (1ull << 53))
        return kiln__err(KILN_STATUS_INVALID, "%s: seed %llu is above 2^53 (JSON numbers hold it inexactly)", w,
                         (unsigned long long)mi->seed);
    if (!(mi->valid_pct >= 0 && mi->valid_pct < 1))
        return kiln__err(KILN_STATUS_INVALID, "%s: valid_pct %g is outside [0, 1)", w, mi->valid_pct);
    if (mi->n_params < 0 || (double)mi->n_params > KILN_VISION_MODEL_MAX_INT)
        return kiln__err(KILN_STATUS_INVALID, "%s: n_params %lld is outside [0, 2^53]", w, (long long)mi->n_params);
    return KILN_STATUS_OK;
}

static const char *norm_name(kiln_vision_norm n)
{
    return n == KILN_VISION_NORM_IMAGENET ? "imagenet" : n == KILN_VISION_NORM_NONE ? "none"
         : n == KILN_VISION_NORM_CUSTOM ? "custom" : "dataset";
}

/* A number as the shortest text that reads back to exactly v: cJSON's own printing accepts a 15-digit form that is off by an ulp (2^53 + 2 would come back as 2^53). */
static cJSON *exact_num(double v, bool f32)
{
    char b[40];
    return cJSON_CreateRaw(shortest(v, f32, b, sizeof b));
}

static void add_num(cJSON *obj, const char *key, double v, bool f32) { cJSON_AddItemToObject(obj, key, exact_num(v, f32)); }

/* s with each byte that is not part of valid UTF-8 as U+FFFD (malloc'd; NULL when out of
 * memory), with a warning: "data" only records where the model came from (a folder named in
 * Latin-1, say), so it is kept readable rather than refused. */
static char *utf8_lossy(const char *s)
{
    size_t n = strlen(s), j = 0;
    char *out = malloc(3 * n + 1);
    int64_t bad = kiln__utf8_invalid_at(s, n);
    if (!out || bad < 0) {
        free(out);
        return strdup(s);
    }
    char q[200];
    kiln__warn("model.json: data \"%s\" is not valid UTF-8 (byte %lld): written with U+FFFD in place of such bytes",
               quoted(s, n, q, sizeof q), (long long)bad);
    for (size_t i = 0; i < n;) {
        int64_t b = kiln__utf8_invalid_at(s + i, n - i);
        size_t ok = b < 0 ? n - i : (size_t)b;
        memcpy(out + j, s + i, ok), j += ok, i += ok;
        if (i < n) memcpy(out + j, "\xEF\xBF\xBD", 3), j += 3, i++;
    }
    out[j] = '\0';
    return out;
}

static cJSON *f32_array(const float *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, exact_num(v[i], true));
    return a;
}

kiln_status kiln_vision_model_info_format(const kiln_vision_model_info *mi, char **text)
{
    if (!text) return kiln__err(KILN_STATUS_INVALID, "model.json: text is NULL");
    *text = NULL;
    kiln_status st = kiln_vision_model_info_check(mi);
    if (st) return st;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", KILN_MODEL_FORMAT);
    add_num(j, "format_version", KILN_MODEL_FORMAT_VERSION, false);
    cJSON_AddStringToObject(j, "task", "vision");
    cJSON_AddStringToObject(j, "arch", mi->arch);
    add_num(j, "n_params", (double)mi->n_params, false);
    add_num(j, "n_classes", mi->n_classes, false);
    cJSON *cl = cJSON_AddArrayToObject(j, "classes");
    for (int i = 0; i < mi->n_classes; i++) cJSON_AddItemToArray(cl, cJSON_CreateString(mi->classes[i]));
    cJSON *nm = cJSON_AddObjectToObject(j, "normalization");
    cJSON_AddStringToObject(nm, "kind", norm_name(mi->norm));
    cJSON_AddItemToObject(nm, "mean", f32_array(mi->stats.mean, mi->n_in));
    cJSON_AddItemToObject(nm, "std", f32_array(mi->stats.std, mi->n_in));
    cJSON *pp = cJSON_AddObjectToObject(j, "preprocessing");
    add_num(pp, "n_in", mi->n_in, false);
    add_num(pp, "size", mi->size, false);
    cJSON_AddStringToObject(pp, "resize", "crop");
    if (mi->augment) { /* what TTA at predict / interpret time repeats */
        cJSON *a = cJSON_AddObjectToObject(j, "augmentation");
        cJSON_AddBoolToObject(a, "do_flip", mi->aug.do_flip);
        const float *v[] = {&mi->aug.max_rotate, &mi->aug.max_zoom, &mi->aug.max_warp, &mi->aug.max_lighting,
                            &mi->aug.p_affine, &mi->aug.p_lighting};
        for (int k = 0; k < 6; k++) add_num(a, k_aug[k + 1], *v[k], true);
    } else {
        cJSON_AddNullToObject(j, "augmentation");
    }
    cJSON *tr = cJSON_AddObjectToObject(j, "training");
    add_num(tr, "seed", (double)mi->seed, false); /* integers <= 2^53: exact as doubles */
    add_num(tr, "valid_pct", mi->valid_pct, false);
    char *data = utf8_lossy(mi->data ? mi->data : "");
    cJSON_AddStringToObject(tr, "data", data ? data : "");
    free(data);
    cJSON_AddObjectToObject(j, "vision"); /* the task's own part: nothing beyond the common one yet */
    return kiln__json_text(j, "model.json", text);
}

kiln_status kiln_vision_model_info_write(const char *path, const kiln_vision_model_info *info)
{
    char *text;
    kiln_status st = kiln_vision_model_info_format(info, &text);
    if (st) return st;
    st = kiln_atomic_write(path, text, strlen(text)); /* temp file, fsync, rename */
    free(text);
    return st;
}

kiln_status kiln_vision_model_info_from_data(kiln_data *d, kiln_vision_model_info *mi)
{
    kiln_vision_data *v = d ? kiln_vision_data_of(d) : NULL;
    if (!v || !mi) return kiln__err(KILN_STATUS_INVALID, "model.json: not a vision data set");
    char *data = mi->data; /* kept: the caller's */
    mi->data = NULL;
    kiln_vision_model_info_free(mi);
    mi->data = data;
    int n = kiln_vision_data_n_classes(v);
    const char **names = malloc(sizeof *names * (size_t)(n > 0 ? n : 1));
    if (!names) return kiln__err(KILN_STATUS_NOMEM, "model.json: out of memory");
    for (int i = 0; i < n; i++) names[i] = kiln_vision_data_class(v, i);
    kiln_status st = check_names(KILN_STATUS_INVALID, kiln_vision_data_name(v), names, n);
    free(names);
    if (st) return st;
    mi->n_in = kiln_vision_data_n_channels(v);
    mi->size = kiln_vision_data_size(v);
    mi->stats = kiln_vision_data_stats(v);
    if (!(mi->classes = calloc((size_t)(n > 0 ? n : 1), sizeof *mi->classes)))
        return kiln__err(KILN_STATUS_NOMEM, "model.json: out of memory");
    mi->n_classes = n;
    for (int i = 0; i < n; i++)
        if (!(mi->classes[i] = strdup(kiln_vision_data_class(v, i))))
            return kiln__err(KILN_STATUS_NOMEM, "model.json: out of memory");
    return KILN_STATUS_OK;
}
