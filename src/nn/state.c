/* State dicts: a model's parameters and buffers saved to and loaded from safetensors under
 * their PyTorch names, plus BatchNorm's num_batches_tracked (I64 scalar) as torch writes
 * it. Loading goes through kiln_model_load_mapped (load.c): every key checked first
 * (missing, unexpected, shape and dtype), then copied, so a failed load leaves the model as
 * it was and the message names the keys; kiln_model_load_body leaves the head group alone. */
#include "nn/nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define NBT ".num_batches_tracked"

static bool is_bn(const kiln_module *m)
{
    return m->kind == KILN_MODULE_BATCH_NORM1D || m->kind == KILN_MODULE_BATCH_NORM2D;
}

static void key_of(char *key, size_t cap, const char *prefix, const char *path, const char *suffix)
{
    snprintf(key, cap, "%s%s%s", prefix, path, suffix);
}

/* "<prefix><name>" -> "<name>"; keys without the prefix belong to another part of the file. */
static kiln_key_map unprefix(const char *key, char *out, size_t cap, void *user)
{
    const char *prefix = user;
    size_t n = strlen(prefix);
    if (strncmp(key, prefix, n) != 0) return KILN_KEY_DROPPED;
    return snprintf(out, cap, "%s", key + n) < (int)cap ? KILN_KEY_MAPPED : KILN_KEY_UNMAPPED;
}

kiln_status kiln_model_load_st(kiln_model *model, const kiln_st_file *f, const char *prefix, bool strict)
{
    kiln_load_params p = kiln_load_default_params();
    p.strict = strict;
    if (prefix && *prefix) {
        p.map = unprefix;
        p.user = (void *)prefix;
        p.strip_wrappers = false;
    }
    return kiln_model_load_mapped(model, f, &p, NULL);
}

kiln_status kiln_model_load_report(kiln_model *model, const char *path, bool strict, kiln_load_report *report)
{
    kiln_load_params p = kiln_load_default_params();
    p.strict = strict;
    return kiln_model_load_mapped_file(model, path, &p, report);
}

kiln_status kiln_model_load(kiln_model *model, const char *path, bool strict)
{
    return kiln_model_load_report(model, path, strict, NULL);
}

/* Entries of the head group stay as they are. */
static bool in_head(const kiln_model *model, size_t i, void *user)
{
    return kiln_model_param_group(model, i) == *(const int *)user;
}

kiln_status kiln_model_load_body(kiln_model *model, const char *path, int head_group, bool strict,
                                 kiln_load_report *report)
{
    if (report) memset(report, 0, sizeof *report);
    if (!model) return kiln__err(KILN_STATUS_INVALID, "model_load_body: model is NULL");
    int n = kiln_model_n_groups(model);
    if (head_group < 0) head_group += n;
    if (head_group < 0 || head_group >= n)
        return kiln__err(KILN_STATUS_INVALID, "model_load_body: head group %d of a model with %d layer groups", head_group,
                         n);
    kiln_load_params p = kiln_load_default_params();
    p.strict = strict;
    p.skip = in_head;
    p.user = &head_group;
    p.caller = "model_load_body";
    p.target = "the model's body";
    return kiln_model_load_mapped_file(model, path, &p, report);
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
