/* A safetensors file built piece by piece (include/kiln/io.h, kiln_st_writer): each owner of
 * a part of a checkpoint adds its own tensors and metadata entries, then one atomic
 * kiln_st_save writes them all. The first failure is kept and every later call, save
 * included, returns it, so callers may add a series of entries and check once. */
#include "io/safetensors.h"

#include <stdio.h>
#include <string.h>

struct kiln_st_writer {
    kiln_tensor *t; /* (cap) wrappers over the data */
    char **names;   /* (cap) owned */
    void **bufs;    /* (cap) owned copies, NULL where borrowed */
    size_t n, cap;
    char **meta;    /* key, value, ..., NULL (owned) */
    size_t n_meta, cap_meta; /* pairs */
    kiln_status err;
};

kiln_st_writer *kiln_st_writer_new(void)
{
    kiln_st_writer *w = calloc(1, sizeof *w);
    return w ? w : kiln__errp(KILN_STATUS_NOMEM, "st_writer: out of memory");
}

void kiln_st_writer_free(kiln_st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->names[i]), free(w->bufs[i]);
    for (size_t i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->t), free(w->names), free(w->bufs), free(w->meta);
    free(w);
}

static kiln_status fail(kiln_st_writer *w, kiln_status st)
{
    if (!w->err) w->err = st;
    return st;
}

static kiln_status nomem(kiln_st_writer *w) { return fail(w, kiln__err(KILN_STATUS_NOMEM, "st_writer: out of memory")); }

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t c = *cap ? 2 * *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static kiln_status add(kiln_st_writer *w, const char *name, kiln_dtype dt, int ndim, const int64_t *shape,
                       const void *data, bool copy)
{
    if (!w) return kiln__err(KILN_STATUS_INVALID, "st_writer_add: the writer is NULL");
    if (w->err) return w->err;
    if (!name || ndim < 0 || ndim > KILN_MAX_DIMS || (unsigned)dt >= KILN_DTYPE_COUNT || (ndim && !shape))
        return fail(w, kiln__err(KILN_STATUS_INVALID, "st_writer_add: \"%s\": bad name, dtype or shape",
                                 name ? name : "(null)"));
    size_t cap = w->cap;
    bool ok = grow((void **)&w->t, &cap, w->n + 1, sizeof *w->t);
    cap = w->cap;
    ok = ok && grow((void **)&w->names, &cap, w->n + 1, sizeof *w->names);
    cap = w->cap;
    ok = ok && grow((void **)&w->bufs, &cap, w->n + 1, sizeof *w->bufs);
    if (!ok) return nomem(w);
    w->cap = cap;
    kiln_tensor_wrap(&w->t[w->n], dt, ndim, shape, (void *)data);
    size_t bytes = (size_t)kiln_numel(&w->t[w->n]) * kiln_dtype_size(dt);
    char *nm = strdup(name);
    void *buf = copy ? malloc(bytes ? bytes : 1) : NULL;
    if (!nm || (copy && !buf)) {
        free(nm), free(buf);
        return nomem(w);
    }
    if (copy) {
        if (bytes) memcpy(buf, data, bytes);
        w->t[w->n].data = buf;
    }
    w->names[w->n] = nm;
    w->bufs[w->n] = buf;
    w->n++;
    return KILN_STATUS_OK;
}

kiln_status kiln_st_writer_add(kiln_st_writer *w, const char *name, kiln_dtype dt, int ndim, const int64_t *shape,
                               const void *data)
{
    return add(w, name, dt, ndim, shape, data, false);
}

kiln_status kiln_st_writer_add_copy(kiln_st_writer *w, const char *name, kiln_dtype dt, int ndim,
                                    const int64_t *shape, const void *data)
{
    return add(w, name, dt, ndim, shape, data, true);
}

kiln_status kiln_st_writer_meta(kiln_st_writer *w, const char *key, const char *value)
{
    if (!w) return kiln__err(KILN_STATUS_INVALID, "st_writer_meta: the writer is NULL");
    if (w->err) return w->err;
    if (!key || !value)
        return fail(w, kiln__err(KILN_STATUS_INVALID, "st_writer_meta: key or value is NULL"));
    char *v = strdup(value);
    if (!v) return nomem(w);
    for (size_t i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[2 * i], key)) {
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return KILN_STATUS_OK;
        }
    char *k = strdup(key);
    if (!k || !grow((void **)&w->meta, &w->cap_meta, 2 * (w->n_meta + 1) + 1, sizeof *w->meta)) {
        free(k), free(v);
        return nomem(w);
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    w->meta[2 * w->n_meta] = NULL;
    return KILN_STATUS_OK;
}

kiln_status kiln_st_writer_metaf(kiln_st_writer *w, const char *key, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return kiln_st_writer_meta(w, key, buf);
}

kiln_status kiln_st_writer_save(kiln_st_writer *w, const char *path)
{
    if (!w) return kiln__err(KILN_STATUS_INVALID, "st_writer_save: the writer is NULL");
    if (w->err) return w->err;
    kiln_st_entry *e = malloc((w->n ? w->n : 1) * sizeof *e);
    if (!e) return nomem(w);
    for (size_t i = 0; i < w->n; i++) e[i] = (kiln_st_entry){.name = w->names[i], .t = &w->t[i]};
    kiln_status st = kiln_st_save(path, e, w->n, w->n_meta ? (const char *const *)w->meta : NULL);
    free(e);
    return st;
}
