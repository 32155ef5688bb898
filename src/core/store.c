/* The persistent store: parameters, their gradients and buffers (running statistics) as
 * three flat f32 buffers with one view per tensor, so zero_grad, clipping, optimizer
 * steps and checkpoints are single loops over contiguous memory. */
#include "core/internal.h"
#include "core/rowset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    kiln_tensor *t;
    kiln_tensor *grad; /* params only */
    bool param;
    size_t offset;     /* in elements, within the params or buffers flat buffer */
} entry;

struct kiln_store {
    entry *e;
    size_t n, cap;
    float *flat[3];
    size_t numel[3];
    bool allocated;
    size_t n_tracked; /* entries whose rows are tracked (core/rowset.h) */
};

kiln_store *kiln_store_new(void)
{
    kiln_store *s = calloc(1, sizeof *s);
    if (!s) return kiln__errp(KILN_STATUS_NOMEM, "store: out of memory");
    return s;
}

void kiln_store_free(kiln_store *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        if (s->e[i].t->rows) kiln__store_track_rows(s, i, false);
        free((char *)s->e[i].t->name);
        free(s->e[i].t);
        free(s->e[i].grad);
    }
    free(s->e);
    for (int k = 0; k < 3; k++) kiln__free(s->flat[k], s->numel[k] * sizeof(float));
    free(s);
}

static kiln_tensor *add(kiln_store *s, const char *name, int ndim, const int64_t *shape, bool param)
{
    if (s->allocated)
        return kiln__errp(KILN_STATUS_STATE, "store: cannot add '%s' after kiln_store_alloc", name);
    if (!name || !*name) return kiln__errp(KILN_STATUS_INVALID, "store: tensor name is empty");
    if (kiln_store_find(s, name))
        return kiln__errp(KILN_STATUS_INVALID, "store: duplicate tensor name '%s'", name);
    if (ndim < 0 || ndim > KILN_MAX_DIMS)
        return kiln__errp(KILN_STATUS_INVALID, "store: '%s' has ndim %d", name, ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) return kiln__errp(KILN_STATUS_INVALID, "store: '%s' has a negative dim", name);
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        entry *ne = realloc(s->e, cap * sizeof *ne);
        if (!ne) return kiln__errp(KILN_STATUS_NOMEM, "store: out of memory");
        s->e = ne;
        s->cap = cap;
    }
    entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    e->t = calloc(1, sizeof *e->t);
    char *nm = strdup(name);
    if (param) e->grad = calloc(1, sizeof *e->grad);
    if (!e->t || !nm || (param && !e->grad)) {
        free(e->t);
        free(nm);
        free(e->grad);
        return kiln__errp(KILN_STATUS_NOMEM, "store: out of memory");
    }
    kiln_tensor_wrap(e->t, KILN_DTYPE_F32, ndim, shape, NULL);
    e->t->name = nm;
    e->t->requires_grad = param;
    e->param = param;
    kiln_store_kind kind = param ? KILN_STORE_PARAMS : KILN_STORE_BUFFERS;
    e->offset = s->numel[kind];
    s->numel[kind] += (size_t)kiln_numel(e->t);
    if (param) s->numel[KILN_STORE_GRADS] += (size_t)kiln_numel(e->t);
    s->n++;
    return e->t;
}

kiln_tensor *kiln_store_param(kiln_store *s, const char *name, int ndim, const int64_t *shape)
{
    return add(s, name, ndim, shape, true);
}

kiln_tensor *kiln_store_buffer(kiln_store *s, const char *name, int ndim, const int64_t *shape)
{
    return add(s, name, ndim, shape, false);
}

kiln_status kiln_store_alloc(kiln_store *s)
{
    if (s->allocated) return kiln__err(KILN_STATUS_STATE, "store: already allocated");
    for (int k = 0; k < 3; k++) {
        s->flat[k] = kiln__calloc((s->numel[k] ? s->numel[k] : 1) * sizeof(float));
        if (!s->flat[k]) return kiln__err(KILN_STATUS_NOMEM, "store: cannot allocate %zu floats", s->numel[k]);
    }
    for (size_t i = 0; i < s->n; i++) {
        entry *e = &s->e[i];
        if (e->param) {
            e->t->data = s->flat[KILN_STORE_PARAMS] + e->offset;
            kiln_tensor_wrap(e->grad, KILN_DTYPE_F32, e->t->ndim, e->t->shape, s->flat[KILN_STORE_GRADS] + e->offset);
            e->grad->name = e->t->name;
            e->t->grad = e->grad;
        } else {
            e->t->data = s->flat[KILN_STORE_BUFFERS] + e->offset;
        }
    }
    s->allocated = true;
    return KILN_STATUS_OK;
}

float *kiln_store_flat(kiln_store *s, kiln_store_kind kind, size_t *numel)
{
    if (numel) *numel = s->allocated ? s->numel[kind] : 0;
    return s->allocated ? s->flat[kind] : NULL;
}

void kiln_store_zero_grad(kiln_store *s)
{
    if (s->allocated) memset(s->flat[KILN_STORE_GRADS], 0, s->numel[KILN_STORE_GRADS] * sizeof(float));
    for (size_t i = 0; s->n_tracked && i < s->n; i++)
        if (s->e[i].t->rows) kiln__rowset_clear(s->e[i].t->rows);
}

/* ---- tracked rows (core/rowset.h) ----------------------------------------------------------- */

kiln_status kiln__store_track_rows(kiln_store *s, size_t i, bool on)
{
    if (i >= s->n || !s->e[i].param)
        return kiln__err(KILN_STATUS_INVALID, "store: entry %zu is not a parameter (%zu entries)", i, s->n);
    kiln_tensor *t = s->e[i].t;
    kiln__rowset *r = t->rows;
    if (!on) {
        if (r) {
            free(r->mark);
            free(r->list);
            free(r);
            t->rows = NULL;
            s->n_tracked--;
        }
        return KILN_STATUS_OK;
    }
    if (r) return KILN_STATUS_OK;
    int64_t rows = t->ndim ? t->shape[0] : 1, numel = kiln_numel(t);
    r = calloc(1, sizeof *r);
    if (r) {
        r->mark = calloc((size_t)(rows ? rows : 1), 1);
        r->list = malloc((size_t)(rows ? rows : 1) * sizeof *r->list);
    }
    if (!r || !r->mark || !r->list) {
        if (r) free(r->mark), free(r->list);
        free(r);
        return kiln__err(KILN_STATUS_NOMEM, "store: out of memory tracking the rows of '%s'", t->name);
    }
    r->owner = t;
    r->n_rows = rows;
    r->row_len = rows ? numel / rows : 0;
    r->all = true; /* whatever the gradient holds now counts until the next zero_grad */
    t->rows = r;
    s->n_tracked++;
    return KILN_STATUS_OK;
}

void kiln__rowset_clear(kiln__rowset *r)
{
    for (int64_t k = 0; k < r->n; k++) r->mark[r->list[k]] = 0;
    r->n = 0;
    r->all = false;
}

void kiln__rowset_zero(kiln__rowset *r, float *grad)
{
    if (r->all) {
        memset(grad, 0, (size_t)(r->n_rows * r->row_len) * sizeof(float));
    } else {
        for (int64_t k = 0; k < r->n; k++)
            memset(grad + r->list[k] * r->row_len, 0, (size_t)r->row_len * sizeof(float));
    }
    kiln__rowset_clear(r);
}

size_t kiln_store_count(const kiln_store *s) { return s->n; }
kiln_tensor *kiln_store_at(kiln_store *s, size_t i) { return i < s->n ? s->e[i].t : NULL; }
bool kiln_store_is_param(const kiln_store *s, size_t i) { return i < s->n && s->e[i].param; }

kiln_tensor *kiln_store_find(kiln_store *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->e[i].t->name, name) == 0) return s->e[i].t;
    return NULL;
}

int64_t kiln_store_first_nonfinite(const kiln_store *s, kiln_store_kind kind, int64_t *elem)
{
    if (elem) *elem = -1;
    if (!s || !s->allocated || kind < KILN_STORE_PARAMS || kind > KILN_STORE_BUFFERS) return -1;
    const float *flat = s->flat[kind];
    for (size_t i = 0; i < s->n; i++) {
        const entry *e = &s->e[i];
        if (e->param != (kind != KILN_STORE_BUFFERS)) continue; /* grads sit at their param's offset */
        const float *x = flat + e->offset;
        int64_t n = kiln_numel(e->t);
        for (int64_t k = 0; k < n; k++)
            if (!isfinite(x[k])) {
                if (elem) *elem = k;
                return (int64_t)i;
            }
    }
    return -1;
}
