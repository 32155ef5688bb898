/* kiln_model: owns the store, the module tree (root = Sequential with path ""), the
 * train/eval flag; allocation runs every module's PyTorch-style initialisation in
 * declaration order with the context's RNG. Layer groups live in groups.c, state dicts
 * in state.c, the summary in summary.c. */
#include "nn/nn_internal.h"

#include <string.h>

kiln_model *kiln_model_new(void)
{
    kiln_model *model = calloc(1, sizeof *model);
    kiln_module *root = calloc(1, sizeof *root);
    char *path = strdup(""), *type = strdup("Sequential");
    kiln_store *store = kiln_store_new();
    if (!model || !root || !path || !type || !store) {
        free(model), free(root), free(path), free(type);
        kiln_store_free(store);
        return kiln__errp(KILN_STATUS_NOMEM, "nn: out of memory");
    }
    root->kind = KILN_MODULE_SEQUENTIAL;
    root->type = type;
    root->path = path;
    root->name = path;
    root->model = model;
    root->forward = kiln__nn_sequential_forward;
    root->out_ndim = -1;
    model->store = store;
    model->root = root;
    model->training = true;
    model->train_bn = true;
    model->n_groups = 1;
    model->mods = malloc(16 * sizeof *model->mods);
    if (!model->mods) {
        kiln_model_free(model);
        return kiln__errp(KILN_STATUS_NOMEM, "nn: out of memory");
    }
    model->cap_mods = 16;
    model->mods[model->n_mods++] = root;
    return model;
}

void kiln_model_free(kiln_model *model)
{
    if (!model) return;
    if (model->mods)
        for (size_t i = 0; i < model->n_mods; i++) kiln__nn_module_free(model->mods[i]);
    else
        kiln__nn_module_free(model->root);
    free(model->mods);
    free(model->owner);
    free(model->group);
    kiln_store_free(model->store);
    free(model);
}

kiln_module *kiln_model_root(kiln_model *model) { return model ? model->root : NULL; }
bool kiln_model_allocated(const kiln_model *model) { return model && model->allocated; }
kiln_store *kiln_model_store(kiln_model *model) { return model ? model->store : NULL; }
void kiln_model_train(kiln_model *model, bool train) { model->training = train; }
bool kiln_model_training(const kiln_model *model) { return model->training; }
size_t kiln_model_n_modules(const kiln_model *model) { return model->n_mods; }

void kiln_model_zero_grad(kiln_model *model)
{
    if (model && model->allocated) kiln_store_zero_grad(model->store);
}

kiln_module *kiln_model_module_at(kiln_model *model, size_t i)
{
    return i < model->n_mods ? model->mods[i] : NULL;
}

kiln_status kiln_model_alloc(kiln_model *model, kiln_ctx *ctx)
{
    if (!model || !ctx) return kiln__err(KILN_STATUS_INVALID, "model_alloc: needs a model and a context");
    if (model->build_status != KILN_STATUS_OK)
        return kiln__err(model->build_status, "model_alloc: building the model failed: %s", model->build_msg);
    if (model->allocated) return kiln__err(KILN_STATUS_STATE, "model_alloc: model is already allocated");
    kiln_status st = kiln_store_alloc(model->store);
    if (st < 0) return st;
    model->allocated = true;
    for (size_t i = 0; i < model->n_mods; i++) {
        kiln_module *m = model->mods[i];
        if (m->init && (st = m->init(m, ctx)) < 0) return st;
    }
    return KILN_STATUS_OK;
}

kiln_tensor *kiln_model_forward(kiln_model *model, kiln_ctx *ctx, kiln_tensor *x)
{
    if (!model) return kiln__errp(KILN_STATUS_INVALID, "model_forward: model is NULL");
    if (model->channels_last && x && x->ndim == 4 && x->dtype == KILN_DTYPE_F32) x = kiln_to_channels_last(ctx, x);
    return kiln_module_forward(model->root, ctx, x);
}

void kiln_model_set_channels_last(kiln_model *model, bool on)
{
    if (model) model->channels_last = on;
}

bool kiln_model_channels_last(const kiln_model *model) { return model && model->channels_last; }

int64_t kiln_model_n_params(const kiln_model *model, bool trainable_only)
{
    int64_t n = 0;
    size_t count = kiln_store_count(model->store);
    for (size_t i = 0; i < count; i++) {
        if (!kiln_store_is_param(model->store, i)) continue;
        const kiln_tensor *t = kiln_store_at(model->store, i);
        if (!trainable_only || t->requires_grad) n += kiln_numel(t);
    }
    return n;
}

kiln_module *kiln_model_find(kiln_model *model, const char *path)
{
    if (!model || !path) return NULL;
    for (size_t i = 0; i < model->n_mods; i++)
        if (strcmp(model->mods[i]->path, path) == 0) return model->mods[i];
    return NULL;
}
