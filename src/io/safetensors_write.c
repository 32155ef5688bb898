/* Writing safetensors files. The header is built with cJSON (numbers inserted as raw
 * integer text, so large offsets never turn into floating-point notation) and padded with
 * spaces to a multiple of 8 bytes. Tensor data is laid out by element size, largest first,
 * so every tensor is aligned to its element size in the file and in a mapping of it; the
 * header lists tensors in the caller's order. The file is written through kiln_atomic_begin
 * (temp file, fsync, rename), so a reader never sees half a file. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Non-contiguous tensors are gathered through a buffer of about this many bytes. */
#define ST_CHUNK_BYTES ((size_t)4 << 20)

/* Strict UTF-8: other readers of the header, Python's json and the Rust safetensors crate,
 * reject anything else. */
static bool utf8_ok(const char *s) { return kiln__utf8_invalid_at(s, strlen(s)) < 0; }

static _Thread_local const kiln_st_entry *g_sort_e;

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp(g_sort_e[*(const size_t *)a].name, g_sort_e[*(const size_t *)b].name);
}

/* Checks the arguments; bytes[i] = byte size of entry i. */
static kiln_status check_args(const char *path, const kiln_st_entry *e, size_t n,
                              const char *const *meta, uint64_t *bytes)
{
    for (size_t i = 0; i < n; i++) {
        const char *nm = e[i].name;
        const kiln_tensor *t = e[i].t;
        if (!nm) return kiln__err(KILN_STATUS_INVALID, "st_save: %s: entry %zu has no name", path, i);
        if (!strcmp(nm, "__metadata__") || !utf8_ok(nm))
            return kiln__err(KILN_STATUS_INVALID, "st_save: %s: entry %zu: \"%.*s\" is not a "
                             "valid tensor name (reserved or not UTF-8)", path, i,
                             KILN_ST_NAME_MAX, nm);
        if (!t)
            return kiln__err(KILN_STATUS_INVALID, "st_save: %s: tensor \"%.*s\" is NULL", path,
                             KILN_ST_NAME_MAX, nm);
        if ((unsigned)t->dtype >= KILN_DTYPE_COUNT || t->ndim < 0 || t->ndim > KILN_MAX_DIMS)
            return kiln__err(KILN_STATUS_INVALID, "st_save: %s: tensor \"%.*s\" has a bad dtype "
                             "(%d) or ndim (%d)", path, KILN_ST_NAME_MAX, nm, (int)t->dtype, t->ndim);
        uint64_t numel = 1;
        bool bad = false;
        for (int d = 0; d < t->ndim; d++) {
            bad |= t->shape[d] < 0 || (uint64_t)t->shape[d] > KILN_ST_MAX_INT;
            bad |= __builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel);
        }
        bad |= __builtin_mul_overflow(numel, (uint64_t)kiln_dtype_size(t->dtype), &bytes[i]);
        if (bad || bytes[i] > KILN_ST_MAX_INT)
            return kiln__err(KILN_STATUS_INVALID, "st_save: %s: tensor \"%.*s\" has a negative "
                             "or too large shape", path, KILN_ST_NAME_MAX, nm);
        if (bytes[i] && !t->data)
            return kiln__err(KILN_STATUS_INVALID, "st_save: %s: tensor \"%.*s\" has no data", path,
                             KILN_ST_NAME_MAX, nm);
    }
    size_t *ord = malloc((n + 1) * sizeof *ord);
    if (!ord) return kiln__err(KILN_STATUS_NOMEM, "st_save: %s: out of memory", path);
    for (size_t i = 0; i < n; i++) ord[i] = i;
    g_sort_e = e;
    qsort(ord, n, sizeof *ord, cmp_entry_name);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(e[ord[i - 1]].name, e[ord[i]].name)) {
            const char *nm = e[ord[i]].name;
            free(ord);
            return kiln__err(KILN_STATUS_INVALID, "st_save: %s: duplicate tensor name \"%.*s\"",
                             path, KILN_ST_NAME_MAX, nm);
        }
    free(ord);
    for (size_t i = 0; meta && meta[i]; i += 2) {
        if (!meta[i + 1])
            return kiln__err(KILN_STATUS_INVALID, "st_save: %s: metadata key \"%.*s\" has no value",
                             path, KILN_ST_NAME_MAX, meta[i]);
        if (!utf8_ok(meta[i]) || !utf8_ok(meta[i + 1]))
            return kiln__err(KILN_STATUS_INVALID, "st_save: %s: metadata \"%.*s\" is not UTF-8",
                             path, KILN_ST_NAME_MAX, meta[i]);
        for (size_t j = 0; j < i; j += 2)
            if (!strcmp(meta[j], meta[i]))
                return kiln__err(KILN_STATUS_INVALID, "st_save: %s: duplicate metadata key \"%.*s\"",
                                 path, KILN_ST_NAME_MAX, meta[i]);
    }
    return KILN_STATUS_OK;
}

static bool add_uint(cJSON *arr, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    cJSON *item = cJSON_CreateRaw(buf);
    if (!item) return false;
    if (!cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

/* The header JSON (malloc'd, free with cJSON_free) or NULL when out of memory. */
static char *build_header(const kiln_st_entry *e, size_t n, const char *const *meta,
                          const uint64_t *begin, const uint64_t *bytes)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    if (ok && meta && meta[0]) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (size_t i = 0; ok && meta[i]; i += 2) ok = cJSON_AddStringToObject(m, meta[i], meta[i + 1]);
    }
    for (size_t i = 0; ok && i < n; i++) {
        const kiln_tensor *t = e[i].t;
        cJSON *o = cJSON_AddObjectToObject(root, e[i].name);
        ok = o && cJSON_AddStringToObject(o, "dtype", kiln__st_dtype_str(t->dtype));
        cJSON *s = ok ? cJSON_AddArrayToObject(o, "shape") : NULL;
        for (int d = 0; s && ok && d < t->ndim; d++) ok = add_uint(s, (uint64_t)t->shape[d]);
        cJSON *off = s && ok ? cJSON_AddArrayToObject(o, "data_offsets") : NULL;
        ok = off && add_uint(off, begin[i]) && add_uint(off, begin[i] + bytes[i]);
    }
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return json;
}

/* Writes t's elements in row-major order as contiguous bytes. */
static bool write_tensor(FILE *fp, const kiln_tensor *t, uint64_t bytes)
{
    if (bytes == 0) return true;
    if (kiln_is_contiguous(t)) return fwrite(t->data, 1, (size_t)bytes, fp) == bytes;
    /* Gather slabs of whole rows of dim 0 (ndim >= 1 here: a scalar is contiguous). */
    size_t es = kiln_dtype_size(t->dtype), row = (size_t)(bytes / (uint64_t)t->shape[0]);
    int64_t k = row >= ST_CHUNK_BYTES ? 1 : (int64_t)(ST_CHUNK_BYTES / row);
    if (k > t->shape[0]) k = t->shape[0];
    void *buf = malloc((size_t)k * row);
    bool ok = buf != NULL;
    for (int64_t r = 0; ok && r < t->shape[0]; r += k) {
        int64_t m = t->shape[0] - r < k ? t->shape[0] - r : k;
        kiln_tensor src = *t, dst;
        src.shape[0] = m;
        src.data = (char *)t->data + r * t->stride[0] * (int64_t)es;
        kiln_tensor_wrap(&dst, t->dtype, t->ndim, src.shape, buf);
        kiln__strided_copy(&dst, &src);
        ok = fwrite(buf, 1, (size_t)m * row, fp) == (size_t)m * row;
    }
    free(buf);
    return ok;
}

/* Writes the whole file into fp; false when a write failed (kiln_atomic_commit says why). */
static bool write_file(FILE *fp, const char *json, size_t hlen, const kiln_st_entry *e, const size_t *order, size_t n,
                       const uint64_t *bytes)
{
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    size_t jlen = strlen(json);
    bool ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(json, 1, jlen, fp) == jlen;
    for (size_t i = jlen; ok && i < hlen; i++) ok = fputc(' ', fp) != EOF;
    for (size_t i = 0; ok && i < n; i++) ok = write_tensor(fp, e[order[i]].t, bytes[order[i]]);
    return ok;
}

kiln_status kiln_st_save(const char *path, const kiln_st_entry *entries, size_t n,
                         const char *const *meta)
{
    if (!path || !*path) return kiln__err(KILN_STATUS_INVALID, "st_save: path is NULL or empty");
    if (!entries && n) return kiln__err(KILN_STATUS_INVALID, "st_save: %s: entries is NULL", path);
    uint64_t *bytes = malloc((n + 1) * sizeof *bytes), *begin = malloc((n + 1) * sizeof *begin);
    size_t *order = malloc((n + 1) * sizeof *order);
    char *json = NULL;
    kiln_status s = KILN_STATUS_OK;
    if (!bytes || !begin || !order) {
        s = kiln__err(KILN_STATUS_NOMEM, "st_save: %s: out of memory", path);
        goto done;
    }
    if ((s = check_args(path, entries, n, meta, bytes))) goto done;
    /* Largest elements first keeps every tensor aligned to its element size. */
    size_t m = 0;
    uint64_t off = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (size_t i = 0; i < n; i++)
            if (kiln_dtype_size(entries[i].t->dtype) == es) {
                order[m++] = i;
                begin[i] = off;
                off += bytes[i];
            }
    if (!(json = build_header(entries, n, meta, begin, bytes))) {
        s = kiln__err(KILN_STATUS_NOMEM, "st_save: %s: out of memory building the header", path);
        goto done;
    }
    size_t hlen = (strlen(json) + 7) & ~(size_t)7;
    kiln_atomic *af;
    if ((s = kiln_atomic_begin(path, &af))) goto done;
    (void)write_file(kiln_atomic_stream(af), json, hlen, entries, order, n, bytes); /* commit reports a failure */
    s = kiln_atomic_commit(af);
done:
    free(bytes);
    free(begin);
    free(order);
    if (json) cJSON_free(json);
    return s;
}
