/* Opening a safetensors file: map it, parse the JSON header with cJSON and validate every
 * field before anything trusts it (the file may be truncated, corrupt or hostile), so
 * that kiln_st_info/kiln_st_load can index the mapping without further checks. Every
 * failure is a status plus a message "st_open: <path>: tensor "<name>": <what is wrong>". */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const char *const g_st_dtype[KILN_DTYPE_COUNT] = {"F32", "F16", "BF16", "I64", "I32", "U8"};
/* Valid in the format but not readable by kiln: reported as unsupported, not malformed. */
static const char *const g_st_other[] = {"F64", "I8", "I16", "U16", "U32", "U64", "BOOL",
                                         "F8_E4M3", "F8_E5M2", "C64"};

const char *kiln__st_dtype_str(kiln_dtype d)
{
    return (unsigned)d < KILN_DTYPE_COUNT ? g_st_dtype[d] : NULL;
}

/* Names and keys come from the file: quote at most KILN_ST_NAME_MAX bytes of them. */
#define NAMEF "%.*s"
#define NAMEA(s) KILN_ST_NAME_MAX, (s)
/* The common message prefix for one tensor. */
#define TFMT "st_open: %s: tensor \"" NAMEF "\": "
#define TARG(path, name) (path), NAMEA(name)

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void kiln_st_close(kiln_st_file *f)
{
    if (!f) return;
    if (f->heap) free(f->map);
    else if (f->map) munmap(f->map, f->map_size);
    for (size_t i = 0; i < f->n; i++) free(f->t[i].name);
    for (size_t i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->t);
    free(f->by_name);
    free(f->meta);
    free(f->path);
    free(f);
}

/* v must be a JSON number holding an integer in [0, 2^53] (exact in a double). */
static kiln_status get_uint(const char *path, const cJSON *v, const char *tname,
                            const char *field, int idx, uint64_t *out)
{
    const char *what = !cJSON_IsNumber(v) ? "is not a number"
                       : v->valuedouble < 0 ? "is negative"
                       : !(v->valuedouble <= (double)KILN_ST_MAX_INT) ? "is too large"
                       : (double)(uint64_t)v->valuedouble != v->valuedouble ? "is not an integer"
                       : NULL;
    if (what)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "%s[%d] %s", TARG(path, tname), field, idx, what);
    *out = (uint64_t)v->valuedouble;
    return KILN_STATUS_OK;
}

static kiln_status parse_dtype(const char *path, const cJSON *e, const char *tname,
                               kiln_dtype *out)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!d) return kiln__err(KILN_STATUS_FORMAT, TFMT "missing dtype", TARG(path, tname));
    if (!cJSON_IsString(d))
        return kiln__err(KILN_STATUS_FORMAT, TFMT "dtype is not a string", TARG(path, tname));
    for (int i = 0; i < KILN_DTYPE_COUNT; i++)
        if (!strcmp(d->valuestring, g_st_dtype[i])) {
            *out = (kiln_dtype)i;
            return KILN_STATUS_OK;
        }
    for (size_t i = 0; i < sizeof g_st_other / sizeof *g_st_other; i++)
        if (!strcmp(d->valuestring, g_st_other[i]))
            return kiln__err(KILN_STATUS_UNSUPPORTED,
                             TFMT "dtype %s is not supported (kiln reads F32, F16, BF16, I64, "
                             "I32, U8)", TARG(path, tname), d->valuestring);
    return kiln__err(KILN_STATUS_FORMAT, TFMT "unknown dtype \"%.32s\"", TARG(path, tname),
                     d->valuestring);
}

/* Fills t's dtype, shape and byte range from entry e and checks that they agree with each
 * other and fit in the data area of size data_size. */
static kiln_status parse_entry(const char *path, const cJSON *e, kiln__st_tensor *t,
                               uint64_t data_size)
{
    const char *tn = t->name;
    kiln_status s;
    if (!cJSON_IsObject(e))
        return kiln__err(KILN_STATUS_FORMAT, TFMT "entry is not an object", TARG(path, tn));
    if ((s = parse_dtype(path, e, tn, &t->dtype))) return s;

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sh))
        return kiln__err(KILN_STATUS_FORMAT, TFMT "%s", TARG(path, tn),
                         sh ? "shape is not an array" : "missing shape");
    int nd = cJSON_GetArraySize(sh);
    if (nd > KILN_MAX_DIMS)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "shape has %d dims, more than the %d kiln "
                         "supports", TARG(path, tn), nd, KILN_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1, bytes = 0;
    bool overflow = false;
    const cJSON *v;
    int i = 0;
    cJSON_ArrayForEach(v, sh) {
        uint64_t dim;
        if ((s = get_uint(path, v, tn, "shape", i, &dim))) return s;
        t->shape[i++] = (int64_t)dim;
        overflow |= __builtin_mul_overflow(numel, dim, &numel);
    }
    overflow |= numel > (uint64_t)INT64_MAX;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)kiln_dtype_size(t->dtype), &bytes);
    if (overflow)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "shape too large: its byte size overflows",
                         TARG(path, tn));

    const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 2)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "%s", TARG(path, tn),
                         o ? "data_offsets is not an array [begin, end]" : "missing data_offsets");
    if ((s = get_uint(path, cJSON_GetArrayItem(o, 0), tn, "data_offsets", 0, &t->begin)) ||
        (s = get_uint(path, cJSON_GetArrayItem(o, 1), tn, "data_offsets", 1, &t->end)))
        return s;
    unsigned long long b = t->begin, en = t->end;
    if (b > en)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "data_offsets begin %llu > end %llu",
                         TARG(path, tn), b, en);
    if (en - b != bytes)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "its %s shape needs %llu bytes but data_offsets "
                         "[%llu, %llu] hold %llu bytes", TARG(path, tn), g_st_dtype[t->dtype],
                         (unsigned long long)bytes, b, en, en - b);
    if (en > data_size)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "data_offsets [%llu, %llu] go past the end of "
                         "the %llu data bytes (truncated file?)", TARG(path, tn), b, en,
                         (unsigned long long)data_size);
    return KILN_STATUS_OK;
}

static kiln_status parse_metadata(kiln_st_file *f, const cJSON *m)
{
    if (f->meta) return kiln__err(KILN_STATUS_FORMAT, "st_open: %s: duplicate __metadata__", f->path);
    if (!cJSON_IsObject(m))
        return kiln__err(KILN_STATUS_FORMAT, "st_open: %s: __metadata__ is not an object", f->path);
    size_t n = (size_t)cJSON_GetArraySize(m);
    if (!(f->meta = calloc(2 * n + 1, sizeof *f->meta)))
        return kiln__err(KILN_STATUS_NOMEM, "st_open: %s: out of memory", f->path);
    const cJSON *v;
    cJSON_ArrayForEach(v, m) {
        if (!cJSON_IsString(v))
            return kiln__err(KILN_STATUS_FORMAT, "st_open: %s: __metadata__ value of \"" NAMEF
                             "\" is not a string", f->path, NAMEA(v->string));
        for (size_t j = 0; j < f->n_meta; j++)
            if (!strcmp(f->meta[2 * j], v->string))
                return kiln__err(KILN_STATUS_FORMAT, "st_open: %s: __metadata__ has a duplicate "
                                 "key \"" NAMEF "\"", f->path, NAMEA(v->string));
        char *k = dup_str(v->string), *s = dup_str(v->valuestring);
        f->meta[2 * f->n_meta] = k;
        f->meta[2 * f->n_meta + 1] = s;
        f->n_meta++; /* both freed by kiln_st_close even when one failed */
        if (!k || !s) return kiln__err(KILN_STATUS_NOMEM, "st_open: %s: out of memory", f->path);
    }
    return KILN_STATUS_OK;
}

/* qsort has no context argument; the table being sorted is passed through this. */
static _Thread_local const kiln__st_tensor *g_sort_t;

static int cmp_name(const void *a, const void *b)
{
    return strcmp(g_sort_t[*(const size_t *)a].name, g_sort_t[*(const size_t *)b].name);
}

static int cmp_begin(const void *a, const void *b)
{
    const kiln__st_tensor *x = &g_sort_t[*(const size_t *)a], *y = &g_sort_t[*(const size_t *)b];
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

kiln_status kiln__st_index(kiln_st_file *f)
{
    g_sort_t = f->t;
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = i;
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_name);
    for (size_t i = 1; i < f->n; i++)
        if (!strcmp(f->t[f->by_name[i - 1]].name, f->t[f->by_name[i]].name))
            return kiln__err(KILN_STATUS_FORMAT, "%s: duplicate tensor name \"" NAMEF "\"",
                             f->path, NAMEA(f->t[f->by_name[i]].name));
    return KILN_STATUS_OK;
}

/* Names unique, byte ranges disjoint (empty tensors take no bytes and overlap nothing). */
static kiln_status check_layout(kiln_st_file *f)
{
    kiln_status s0 = kiln__st_index(f);
    if (s0) return s0;
    g_sort_t = f->t;
    size_t *ord = malloc((f->n + 1) * sizeof *ord), m = 0;
    if (!ord) return kiln__err(KILN_STATUS_NOMEM, "st_open: %s: out of memory", f->path);
    for (size_t i = 0; i < f->n; i++)
        if (f->t[i].end > f->t[i].begin) ord[m++] = i;
    qsort(ord, m, sizeof *ord, cmp_begin);
    kiln_status s = KILN_STATUS_OK;
    for (size_t i = 1; i < m && !s; i++) {
        const kiln__st_tensor *a = &f->t[ord[i - 1]], *b = &f->t[ord[i]];
        if (b->begin < a->end)
            s = kiln__err(KILN_STATUS_FORMAT, "st_open: %s: tensors \"" NAMEF "\" [%llu, %llu] and "
                          "\"" NAMEF "\" [%llu, %llu] overlap", f->path, NAMEA(a->name),
                          (unsigned long long)a->begin, (unsigned long long)a->end, NAMEA(b->name),
                          (unsigned long long)b->begin, (unsigned long long)b->end);
    }
    free(ord);
    return s;
}

/* json: len bytes plus a terminating NUL. */
static kiln_status parse_header(kiln_st_file *f, const char *json, size_t len)
{
    /* cJSON skips every byte <= 0x20 as whitespace, NUL included; JSON allows none of them
     * outside strings but space, tab, CR and LF, and none unescaped inside strings. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)json[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return kiln__err(KILN_STATUS_FORMAT, "st_open: %s: header is not valid JSON (control "
                             "byte 0x%02x at byte %zu)", f->path, c, i);
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len + 1, &end, 1);
    if (!root)
        return kiln__err(KILN_STATUS_FORMAT, "st_open: %s: header is not valid JSON (error near "
                         "byte %zu of %zu)", f->path, end ? (size_t)(end - json) : 0, len);
    kiln_status s = KILN_STATUS_OK;
    const cJSON *e;
    if (end != json + len) { /* stopped early: cannot happen after the control-byte scan */
        s = kiln__err(KILN_STATUS_FORMAT, "st_open: %s: header is not valid JSON (stops at byte "
                      "%zu of %zu)", f->path, (size_t)(end - json), len);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        s = kiln__err(KILN_STATUS_FORMAT, "st_open: %s: header is not a JSON object", f->path);
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(root);
    f->t = calloc(n + 1, sizeof *f->t);
    f->by_name = calloc(n + 1, sizeof *f->by_name);
    if (!f->t || !f->by_name) {
        s = kiln__err(KILN_STATUS_NOMEM, "st_open: %s: out of memory for %zu tensors", f->path, n);
        goto done;
    }
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) {
            if ((s = parse_metadata(f, e))) goto done;
            continue;
        }
        kiln__st_tensor *t = &f->t[f->n];
        if (!(t->name = dup_str(e->string))) {
            s = kiln__err(KILN_STATUS_NOMEM, "st_open: %s: out of memory", f->path);
            goto done;
        }
        f->n++;
        if ((s = parse_entry(f->path, e, t, f->data_size))) goto done;
    }
    s = check_layout(f);
done:
    cJSON_Delete(root);
    return s;
}

/* Maps the file and checks the 8-byte length prefix; sets f->map and f->data. */
static kiln_status map_file(kiln_st_file *f)
{
    kiln_status s = kiln__io_map("st_open", f->path, &f->map, &f->map_size);
    if (s) return s;
    uint64_t size = f->map_size;
    if (size < 8)
        return kiln__err(KILN_STATUS_FORMAT, "st_open: %s: file is %llu bytes, too short for the "
                         "8-byte header length", f->path, (unsigned long long)size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->map[i];
    if (hlen > KILN_ST_MAX_HEADER)
        return kiln__err(KILN_STATUS_FORMAT, "st_open: %s: header length %llu bytes is absurd "
                         "(limit %llu; not a safetensors file?)", f->path, (unsigned long long)hlen,
                         (unsigned long long)KILN_ST_MAX_HEADER);
    if (hlen > size - 8)
        return kiln__err(KILN_STATUS_FORMAT, "st_open: %s: header length %llu exceeds the %llu "
                         "bytes after it (truncated file?)", f->path, (unsigned long long)hlen,
                         (unsigned long long)(size - 8));
    f->data = f->map + 8 + hlen;
    f->data_size = size - 8 - hlen;
    return KILN_STATUS_OK;
}

kiln_status kiln_st_open(const char *path, kiln_st_file **out)
{
    if (!out) return kiln__err(KILN_STATUS_INVALID, "st_open: out is NULL");
    *out = NULL;
    if (!path) return kiln__err(KILN_STATUS_INVALID, "st_open: path is NULL");
    kiln_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = dup_str(path))) {
        free(f);
        return kiln__err(KILN_STATUS_NOMEM, "st_open: %s: out of memory", path);
    }
    kiln_status s = map_file(f);
    if (!s) {
        /* cJSON wants a terminator; the copy also keeps the parser off the mapping. */
        size_t hlen = (size_t)(f->data - f->map) - 8;
        char *json = malloc(hlen + 1);
        if (!json) {
            s = kiln__err(KILN_STATUS_NOMEM, "st_open: %s: out of memory for a %zu-byte header",
                          path, hlen);
        } else {
            memcpy(json, f->map + 8, hlen);
            json[hlen] = '\0';
            s = parse_header(f, json, hlen);
            free(json);
        }
    }
    if (s) {
        kiln_st_close(f);
        return s;
    }
    *out = f;
    return KILN_STATUS_OK;
}
