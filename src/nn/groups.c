/* Layer groups and freezing, as fastai: every store entry has a group; freeze_to(n) stops
 * the gradients of groups < n except BatchNorm parameters (train_bn), so a pretrained body
 * keeps adapting its normalisation while the head trains. Frozen parameters have
 * requires_grad = false, so ops record no gradient for them, no weight-gradient kernel runs
 * for them and their grad slices are left alone (the optimizer's zero_grad skips them); a
 * parameter that becomes trainable again gets a zeroed grad slice here. */
#include "nn/nn_internal.h"
#include "core/rowset.h"

#include <string.h>

static bool is_bn(const kiln_module *m)
{
    return m->kind == KILN_MODULE_BATCH_NORM1D || m->kind == KILN_MODULE_BATCH_NORM2D;
}

kiln_status kiln_model_split(kiln_model *model, int n_groups, const char *const *first_paths)
{
    if (!model) return kiln__err(KILN_STATUS_INVALID, "model_split: model is NULL");
    if (n_groups < 1 || (n_groups > 1 && !first_paths))
        return kiln__err(KILN_STATUS_INVALID, "model_split: need n_groups >= 1 and %d first paths", n_groups - 1);
    size_t bounds[64];
    if (n_groups > 64) return kiln__err(KILN_STATUS_INVALID, "model_split: %d groups, at most 64", n_groups);
    const kiln_module *prev = NULL;
    for (int g = 1; g < n_groups; g++) {
        const char *p = first_paths[g - 1];
        const kiln_module *m = p ? kiln_model_find(model, p) : NULL;
        if (!m) return kiln__err(KILN_STATUS_INVALID, "model_split: no module '%s' to start group %d", p ? p : "(null)", g);
        if (prev && m->index <= prev->index)
            return kiln__err(KILN_STATUS_INVALID, "model_split: '%s' (group %d) is declared before '%s' (group %d)", p, g,
                             prev->path, g - 1);
        bounds[g - 1] = m->first_entry;
        prev = m;
    }
    size_t n = kiln_store_count(model->store);
    for (size_t i = 0; i < n; i++) {
        int g = 0;
        while (g < n_groups - 1 && bounds[g] <= i) g++;
        model->group[i] = g;
    }
    model->n_groups = n_groups;
    return KILN_STATUS_OK;
}

kiln_status kiln_module_set_group(kiln_module *m, int group)
{
    if (!m || group < 0) return kiln__err(KILN_STATUS_INVALID, "module_set_group: needs a module and a group >= 0");
    kiln_model *model = m->model;
    size_t n = kiln_store_count(model->store);
    for (size_t i = 0; i < n; i++)
        if (kiln__nn_contains(m, model->owner[i])) model->group[i] = group;
    if (group + 1 > model->n_groups) model->n_groups = group + 1;
    return KILN_STATUS_OK;
}

int kiln_model_n_groups(const kiln_model *model) { return model->n_groups; }

kiln_status kiln_model_param_info(const kiln_model *model, size_t i, kiln_param_info *out)
{
    if (!model || !out || i >= kiln_store_count(model->store))
        return kiln__err(KILN_STATUS_INVALID, "model_param_info: no store entry %zu", i);
    const kiln_module *m = model->owner[i];
    const kiln_tensor *t = kiln_store_at(model->store, i);
    const char *local = t->name + strlen(m->path) + (*m->path ? 1 : 0);
    *out = (kiln_param_info){
        .group = model->group[i],
        .is_param = kiln_store_is_param(model->store, i),
        .is_bn = is_bn(m),
        .is_bias = strcmp(local, "bias") == 0 || strncmp(local, "bias_", 5) == 0,
        .module = m,
    };
    return KILN_STATUS_OK;
}

int kiln_model_param_group(const kiln_model *model, size_t i)
{
    return model && i < kiln_store_count(model->store) ? model->group[i] : -1;
}

kiln_status kiln_model_freeze_to(kiln_model *model, int n)
{
    if (!model) return kiln__err(KILN_STATUS_INVALID, "model_freeze_to: model is NULL");
    if (n < 0) n += model->n_groups;
    if (n < 0) n = 0;
    if (n > model->n_groups) n = model->n_groups;
    size_t count = kiln_store_count(model->store);
    for (size_t i = 0; i < count; i++) {
        if (!kiln_store_is_param(model->store, i)) continue;
        kiln_tensor *t = kiln_store_at(model->store, i);
        bool rg = model->group[i] >= n || (model->train_bn && is_bn(model->owner[i]));
        /* a frozen grad slice was left alone: start the trainable one from zero */
        if (rg && !t->requires_grad && t->grad && t->grad->data) {
            memset(t->grad->data, 0, (size_t)kiln_numel(t) * sizeof(float));
            if (t->rows) kiln__rowset_clear(t->rows); /* no row holds gradient (core/rowset.h) */
        }
        t->requires_grad = rg;
    }
    model->frozen_to = n;
    return KILN_STATUS_OK;
}

int kiln_model_frozen_to(const kiln_model *model) { return model ? model->frozen_to : 0; }

void kiln_model_set_train_bn(kiln_model *model, bool train_bn)
{
    if (!model || model->train_bn == train_bn) return;
    model->train_bn = train_bn;
    if (model->frozen_to > 0) kiln_model_freeze_to(model, model->frozen_to); /* the frozen groups' BatchNorm */
}

bool kiln_model_train_bn(const kiln_model *model) { return model && model->train_bn; }

kiln_status kiln_model_freeze(kiln_model *model) { return kiln_model_freeze_to(model, -1); }
kiln_status kiln_model_unfreeze(kiln_model *model) { return kiln_model_freeze_to(model, 0); }
