/* State dicts: a model's parameters and buffers saved to and loaded from safetensors under
 * their PyTorch names, plus BatchNorm's num_batches_tracked (I64 scalar) as torch writes
 * it. Loading validates every key first (missing, unexpected, shape and dtype) and only
 * then copies, so a failed load leaves the model as it was; the message names the keys. */
#include "nn/nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define NBT ".num_batches_tracked"
#define LIST_MAX 6 /* names listed per kind of problem before "..." */

typedef struct name_list {
    char buf[320];
    size_t len;
    int count;
} name_list;

static void list_add(name_list *l, const char *fmt, const char *a, const char *b, const char *c)
{
    l->count++;
    if (l->count > LIST_MAX) return;
    char item[256];
    snprintf(item, sizeof item, fmt, a, b, c);
    int n = snprintf(l->buf + l->len, sizeof l->buf - l->len, "%s%s", l->count > 1 ? ", " : "", item);
    if (n > 0) l->len = l->len + (size_t)n < sizeof l->buf ? l->len + (size_t)n : sizeof l->buf - 1;
}

static bool is_bn(const kiln_module *m)
{
    return m->kind == KILN_MODULE_BATCH_NORM1D || m->kind == KILN_MODULE_BATCH_NORM2D;
}

static bool is_float(kiln_dtype d)
{
    return d == KILN_DTYPE_F32 || d == KILN_DTYPE_F16 || d == KILN_DTYPE_BF16;
}

/* The BatchNorm module whose num_batches_tracked key is name (no prefix), or NULL. */
static kiln_module *nbt_owner(kiln_model *model, const char *name)
{
    size_t n = strlen(name), s = strlen(NBT);
    if (n < s || strcmp(name + n - s, NBT) != 0) return NULL;
    char path[512];
    if (n - s >= sizeof path) return NULL;
    memcpy(path, name, n - s);
    path[n - s] = '\0';
    kiln_module *m = kiln_model_find(model, path);
    return m && is_bn(m) ? m : NULL;
}

static void key_of(char *key, size_t cap, const char *prefix, const char *path, const char *suffix)
{
    snprintf(key, cap, "%s%s%s", prefix, path, suffix);
}

kiln_status kiln_model_load_st(kiln_model *model, const kiln_st_file *f, const char *prefix, bool strict)
{
    if (!model || !f) return kiln__err(KILN_STATUS_INVALID, "model_load: needs a model and a file");
    if (!model->allocated) return kiln__err(KILN_STATUS_STATE, "model_load: call kiln_model_alloc first");
    if (!prefix) prefix = "";
    const size_t plen = strlen(prefix);
    name_list missing = {0}, unexpected = {0}, mismatch = {0};
    char key[640], a[128], b[128];

    size_t n = kiln_store_count(model->store);
    for (size_t i = 0; i < n; i++) {
        kiln_tensor *t = kiln_store_at(model->store, i);
        key_of(key, sizeof key, prefix, t->name, "");
        if (!kiln_st_has(f, key)) {
            list_add(&missing, "%s%s%s", t->name, "", "");
            continue;
        }
        kiln_dtype dt;
        int nd;
        int64_t shape[KILN_MAX_DIMS];
        const void *data;
        size_t nbytes;
        if (kiln_st_info(f, key, &dt, &nd, shape, &data, &nbytes) < 0) return KILN_STATUS_INVALID;
        kiln_tensor ft;
        kiln_tensor_wrap(&ft, dt, nd, shape, NULL);
        if (!is_float(dt))
            list_add(&mismatch, "%s is %s in the file, expected a float type%s", t->name, kiln_dtype_name(dt), "");
        else if (!kiln_same_shape(&ft, t))
            list_add(&mismatch, "%s has shape %s in the file, %s in the model", t->name, kiln_shape_str(&ft, a, sizeof a),
                     kiln_shape_str(t, b, sizeof b));
    }
    for (size_t i = 0; i < model->n_mods; i++) {
        kiln_module *m = model->mods[i];
        if (!is_bn(m)) continue;
        key_of(key, sizeof key, prefix, m->path, NBT);
        if (!kiln_st_has(f, key)) continue; /* optional, as in torch's older state dicts */
        kiln_dtype dt;
        int nd;
        int64_t shape[KILN_MAX_DIMS];
        const void *data;
        size_t nbytes;
        if (kiln_st_info(f, key, &dt, &nd, shape, &data, &nbytes) < 0) return KILN_STATUS_INVALID;
        if (dt != KILN_DTYPE_I64 || nbytes != sizeof(int64_t))
            list_add(&mismatch, "%s%s must be one I64, got %s", m->path, NBT, kiln_dtype_name(dt));
    }
    size_t nf = kiln_st_count(f);
    for (size_t j = 0; j < nf; j++) {
        const char *name = kiln_st_name(f, j);
        if (strncmp(name, prefix, plen) != 0) continue;
        const char *rest = name + plen;
        if (kiln_store_find(model->store, rest) || nbt_owner(model, rest)) continue;
        list_add(&unexpected, "%s%s%s", rest, "", "");
    }

    if (mismatch.count || (strict && (missing.count || unexpected.count))) {
        char msg[1000];
        size_t len = 0;
        const name_list *ls[3] = {&missing, &unexpected, &mismatch};
        const char *what[3] = {"missing keys", "unexpected keys", "size mismatch"};
        for (int k = 0; k < 3; k++) {
            if (!ls[k]->count || (k < 2 && !strict)) continue;
            int w = snprintf(msg + len, sizeof msg - len, "%s%s (%d): %s%s", len ? "; " : "", what[k], ls[k]->count,
                             ls[k]->buf, ls[k]->count > LIST_MAX ? ", ..." : "");
            if (w > 0) len = len + (size_t)w < sizeof msg ? len + (size_t)w : sizeof msg - 1;
        }
        return kiln__err(KILN_STATUS_INVALID, "model_load: %s%s%s: %s", kiln_st_path(f), plen ? " prefix " : "",
                         prefix, msg);
    }

    for (size_t i = 0; i < n; i++) {
        kiln_tensor *t = kiln_store_at(model->store, i);
        key_of(key, sizeof key, prefix, t->name, "");
        if (!kiln_st_has(f, key)) continue;
        kiln_status st = kiln_st_load_into(f, key, t);
        if (st < 0) return st;
    }
    for (size_t i = 0; i < model->n_mods; i++) {
        kiln_module *m = model->mods[i];
        if (!is_bn(m)) continue;
        key_of(key, sizeof key, prefix, m->path, NBT);
        const void *data;
        size_t nbytes;
        kiln_dtype dt;
        int nd;
        int64_t shape[KILN_MAX_DIMS];
        if (kiln_st_has(f, key) && kiln_st_info(f, key, &dt, &nd, shape, &data, &nbytes) == KILN_STATUS_OK)
            memcpy(&m->num_batches_tracked, data, sizeof(int64_t));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_model_load(kiln_model *model, const char *path, bool strict)
{
    if (!path) return kiln__err(KILN_STATUS_INVALID, "model_load: path is NULL");
    kiln_st_file *f = NULL;
    kiln_status st = kiln_weights_open(path, &f);
    if (st < 0) return st;
    st = kiln_model_load_st(model, f, NULL, strict);
    kiln_st_close(f);
    return st;
}

kiln_status kiln_model_check_finite(kiln_model *model)
{
    if (!model || !model->allocated) return kiln__err(KILN_STATUS_STATE, "model: not allocated");
    for (int k = 0; k < 2; k++) {
        kiln_store_kind kind = k ? KILN_STORE_BUFFERS : KILN_STORE_PARAMS;
        int64_t el, i = kiln_store_first_nonfinite(model->store, kind, &el);
        if (i < 0) continue;
        const kiln_tensor *t = kiln_store_at(model->store, (size_t)i);
        float v = ((const float *)t->data)[el];
        char sh[128];
        return kiln__err(KILN_STATUS_INVALID,
                         "model: %s '%s' %s holds %s at element %lld: the weights are not finite (did training "
                         "diverge?)",
                         k ? "buffer" : "parameter", t->name, kiln_shape_str(t, sh, sizeof sh),
                         isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf", (long long)el);
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_model_save_st(kiln_model *model, kiln_st_writer *w, const char *prefix)
{
    if (!model || !w) return kiln__err(KILN_STATUS_INVALID, "model_save: needs a model and a writer");
    if (!model->allocated) return kiln__err(KILN_STATUS_STATE, "model_save: call kiln_model_alloc first");
    if (!prefix) prefix = "";
    char key[640];
    kiln_status st = KILN_STATUS_OK;
    for (size_t i = 0; !st && i < kiln_store_count(model->store); i++) {
        kiln_tensor *t = kiln_store_at(model->store, i);
        key_of(key, sizeof key, prefix, t->name, "");
        st = kiln_st_writer_add(w, key, t->dtype, t->ndim, t->shape, t->data);
        kiln_module *m = model->owner[i];
        /* after a BatchNorm's running_var, as torch orders its state dict */
        if (!st && is_bn(m) && t == m->running_var) {
            key_of(key, sizeof key, prefix, m->path, NBT);
            st = kiln_st_writer_add(w, key, KILN_DTYPE_I64, 0, NULL, &m->num_batches_tracked);
        }
    }
    return st;
}

kiln_status kiln_model_save(kiln_model *model, const char *path, const char *const *meta)
{
    if (!model || !path) return kiln__err(KILN_STATUS_INVALID, "model_save: needs a model and a path");
    kiln_st_writer *w = kiln_st_writer_new();
    if (!w) return KILN_STATUS_NOMEM;
    kiln_status st = kiln_model_save_st(model, w, NULL);
    for (size_t i = 0; !st && meta && meta[i]; i += 2) {
        for (size_t j = 0; !st && j < i; j += 2)
            if (!strcmp(meta[j], meta[i]))
                st = kiln__err(KILN_STATUS_INVALID, "st_save: %s: duplicate metadata key \"%s\"", path, meta[i]);
        if (!st && !meta[i + 1])
            st = kiln__err(KILN_STATUS_INVALID, "st_save: %s: metadata key \"%s\" has no value", path, meta[i]);
        if (!st) st = kiln_st_writer_meta(w, meta[i], meta[i + 1]);
    }
    if (!st) st = kiln_st_writer_save(w, path);
    kiln_st_writer_free(w);
    return st;
}

size_t kiln_model_counters(const kiln_model *model, int64_t *out, size_t cap)
{
    if (!model) return 0;
    for (size_t i = 0; out && i < model->n_mods && i < cap; i++) out[i] = model->mods[i]->num_batches_tracked;
    return model->n_mods;
}

kiln_status kiln_model_set_counters(kiln_model *model, const int64_t *in, size_t n)
{
    if (!model || (n && !in)) return kiln__err(KILN_STATUS_INVALID, "model_set_counters: NULL argument");
    if (n != model->n_mods)
        return kiln__err(KILN_STATUS_INVALID, "model_set_counters: %zu counters for a model of %zu modules", n,
                         model->n_mods);
    for (size_t i = 0; i < n; i++) model->mods[i]->num_batches_tracked = in[i];
    return KILN_STATUS_OK;
}
