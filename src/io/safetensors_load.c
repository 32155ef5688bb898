/* Reading tensors out of an open safetensors file: lookups, raw views of the mapping and
 * copies into kiln tensors, widening F16/BF16 to f32. kiln_st_open has validated every
 * range, so nothing here re-checks the file; the data may be unaligned, hence memcpy. */
#include "io/half.h"
#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>

size_t kiln_st_count(const kiln_st_file *f) { return f ? f->n : 0; }

const char *kiln_st_name(const kiln_st_file *f, size_t i)
{
    return f && i < f->n ? f->t[i].name : NULL;
}

const char *kiln_st_path(const kiln_st_file *f) { return f ? f->path : NULL; }

const char *kiln_st_metadata(const kiln_st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

kiln_status kiln_st_set_metadata(kiln_st_file *f, const char *key, const char *value)
{
    if (!f || !key || !value) return kiln__err(KILN_STATUS_INVALID, "st_set_metadata: NULL argument");
    char *v = strdup(value);
    if (!v) return kiln__err(KILN_STATUS_NOMEM, "st_set_metadata: out of memory");
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) {
            free(f->meta[2 * i + 1]);
            f->meta[2 * i + 1] = v;
            return KILN_STATUS_OK;
        }
    char *k = strdup(key), **m = realloc(f->meta, (2 * f->n_meta + 3) * sizeof *m);
    if (m) f->meta = m;
    if (!k || !m) {
        free(k), free(v);
        return kiln__err(KILN_STATUS_NOMEM, "st_set_metadata: out of memory");
    }
    m[2 * f->n_meta] = k, m[2 * f->n_meta + 1] = v, m[2 * f->n_meta + 2] = NULL;
    f->n_meta++;
    return KILN_STATUS_OK;
}

kiln_status kiln_st_want(const kiln_st_file *f, const char *name, kiln_dtype dt, int ndim, const int64_t *shape,
                         const void **data)
{
    if (!f || !name || (ndim && !shape)) return kiln__err(KILN_STATUS_INVALID, "st_want: NULL argument");
    const kiln__st_tensor *t = kiln__st_find(f, name);
    if (!t) return kiln__err(KILN_STATUS_INVALID, "%s: tensor \"%s\" is missing", f->path, name);
    if (t->dtype != dt)
        return kiln__err(KILN_STATUS_INVALID, "%s: tensor \"%s\" is %s, expected %s", f->path, name,
                         kiln_dtype_name(t->dtype), kiln_dtype_name(dt));
    kiln_tensor got, need;
    kiln_tensor_wrap(&got, dt, t->ndim, t->shape, NULL);
    kiln_tensor_wrap(&need, dt, ndim, shape, NULL);
    char a[96], b[96];
    if (!kiln_same_shape(&got, &need))
        return kiln__err(KILN_STATUS_INVALID, "%s: tensor \"%s\" has shape %s, expected %s", f->path, name,
                         kiln_shape_str(&got, a, sizeof a), kiln_shape_str(&need, b, sizeof b));
    if (data) *data = f->data + t->begin;
    return KILN_STATUS_OK;
}

const kiln__st_tensor *kiln__st_find(const kiln_st_file *f, const char *name)
{
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n; /* binary search over by_name */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const kiln__st_tensor *t = &f->t[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

bool kiln_st_has(const kiln_st_file *f, const char *name) { return kiln__st_find(f, name) != NULL; }

/* The tensor called name, or NULL with "<op>: <path>: no tensor "<name>"". */
static const kiln__st_tensor *find_or_err(const char *op, const kiln_st_file *f, const char *name)
{
    if (!f) return kiln__errp(KILN_STATUS_INVALID, "%s: file is NULL", op);
    if (!name) return kiln__errp(KILN_STATUS_INVALID, "%s: %s: tensor name is NULL", op, f->path);
    const kiln__st_tensor *t = kiln__st_find(f, name);
    if (!t)
        return kiln__errp(KILN_STATUS_INVALID, "%s: %s: no tensor \"%.*s\" (the file has %zu)", op,
                          f->path, KILN_ST_NAME_MAX, name, f->n);
    return t;
}

kiln_status kiln_st_info(const kiln_st_file *f, const char *name, kiln_dtype *dtype, int *ndim,
                         int64_t shape[KILN_MAX_DIMS], const void **data, size_t *nbytes)
{
    const kiln__st_tensor *t = find_or_err("st_info", f, name);
    if (!t) return KILN_STATUS_INVALID;
    if (dtype) *dtype = t->dtype;
    if (ndim) *ndim = t->ndim;
    if (shape) memcpy(shape, t->shape, sizeof t->shape);
    if (data) *data = f->data + t->begin;
    if (nbytes) *nbytes = (size_t)(t->end - t->begin);
    return KILN_STATUS_OK;
}

/* Converts n elements of src (dtype sd, little-endian, any alignment) to f32. */
static void to_f32(float *dst, const unsigned char *src, kiln_dtype sd, size_t n)
{
    switch (sd) {
    case KILN_DTYPE_F32: memcpy(dst, src, n * sizeof *dst); break;
    case KILN_DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = kiln__f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        break;
    case KILN_DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = kiln__bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        break;
    case KILN_DTYPE_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, sizeof v);
            dst[i] = (float)v;
        }
        break;
    case KILN_DTYPE_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, src + 4 * i, sizeof v);
            dst[i] = (float)v;
        }
        break;
    case KILN_DTYPE_U8:
        for (size_t i = 0; i < n; i++) dst[i] = src[i];
        break;
    default: break;
    }
}

static bool is_float(kiln_dtype d)
{
    return d == KILN_DTYPE_F32 || d == KILN_DTYPE_F16 || d == KILN_DTYPE_BF16;
}

static size_t numel_of(const kiln__st_tensor *t)
{
    return (size_t)((t->end - t->begin) / kiln_dtype_size(t->dtype));
}

kiln_tensor *kiln_st_load(kiln_ctx *ctx, const kiln_st_file *f, const char *name)
{
    if (!ctx) return kiln__errp(KILN_STATUS_INVALID, "st_load: ctx is NULL");
    const kiln__st_tensor *t = find_or_err("st_load", f, name);
    if (!t) return NULL;
    kiln_dtype od = is_float(t->dtype) ? KILN_DTYPE_F32 : t->dtype;
    kiln_tensor *x = kiln_empty(ctx, od, t->ndim, t->shape);
    if (!x) return NULL;
    const unsigned char *src = f->data + t->begin;
    if (t->end == t->begin) { /* empty: nothing to copy */
    } else if (od == t->dtype) {
        memcpy(x->data, src, (size_t)(t->end - t->begin));
    } else {
        to_f32(x->data, src, t->dtype, numel_of(t));
    }
    /* The name must outlive the file, so it is copied next to the tensor. */
    size_t len = strlen(t->name) + 1;
    char *nm = kiln_step_alloc(ctx, len);
    if (!nm) return NULL;
    memcpy(nm, t->name, len);
    x->name = nm;
    return x;
}

kiln_status kiln_st_load_into(const kiln_st_file *f, const char *name, kiln_tensor *dst)
{
    const kiln__st_tensor *t = find_or_err("st_load_into", f, name);
    if (!t) return KILN_STATUS_INVALID;
    const char *tn = t->name;
    if (!dst)
        return kiln__err(KILN_STATUS_INVALID, "st_load_into: %s: tensor \"%.*s\": destination is "
                         "NULL", f->path, KILN_ST_NAME_MAX, tn);
    if (dst->dtype != KILN_DTYPE_F32 || !kiln_is_contiguous(dst))
        return kiln__err(KILN_STATUS_INVALID, "st_load_into: %s: tensor \"%.*s\": destination %s "
                         "must be a contiguous f32 tensor, got %s%s", f->path, KILN_ST_NAME_MAX, tn,
                         kiln__tname(dst), kiln_is_contiguous(dst) ? "" : "non-contiguous ",
                         kiln_dtype_name(dst->dtype));
    bool same = dst->ndim == t->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = dst->shape[i] == t->shape[i];
    if (!same) {
        kiln_tensor src;
        char a[128], b[128];
        kiln_tensor_wrap(&src, t->dtype, t->ndim, t->shape, NULL);
        return kiln__err(KILN_STATUS_INVALID, "st_load_into: %s: tensor \"%.*s\" has shape %s, "
                         "destination %s has shape %s", f->path, KILN_ST_NAME_MAX, tn,
                         kiln_shape_str(&src, a, sizeof a), kiln__tname(dst),
                         kiln_shape_str(dst, b, sizeof b));
    }
    size_t n = numel_of(t);
    if (n == 0) return KILN_STATUS_OK;
    if (!dst->data)
        return kiln__err(KILN_STATUS_INVALID, "st_load_into: %s: tensor \"%.*s\": destination %s "
                         "has no data", f->path, KILN_ST_NAME_MAX, tn, kiln__tname(dst));
    to_f32(dst->data, f->data + t->begin, t->dtype, n);
    return KILN_STATUS_OK;
}
