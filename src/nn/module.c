/* The module tree: adding modules under a parent with PyTorch-style dotted paths, declaring
 * their parameters in the model's store, containers (Sequential and custom modules), the
 * forward dispatch that names the failing module, and the accessors. */
#include "nn/nn_internal.h"

#include <stdio.h>
#include <string.h>

void *kiln__nn_err(kiln_model *model, kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln__err(s, "%s", msg);
    if (model && model->build_status == KILN_STATUS_OK) {
        model->build_status = s;
        snprintf(model->build_msg, sizeof model->build_msg, "%s", msg);
    }
    return NULL;
}

void *kiln__nn_fail(kiln_model *model)
{
    if (model && model->build_status == KILN_STATUS_OK) {
        model->build_status = KILN_STATUS_INVALID;
        snprintf(model->build_msg, sizeof model->build_msg, "%s", kiln_last_error());
    }
    return NULL;
}

void kiln__nn_module_free(kiln_module *m)
{
    if (!m) return;
    free(m->type);
    free(m->path);
    free(m->child);
    free(m->user);
    if (m->state_free) m->state_free(m->state);
    free(m);
}

bool kiln__nn_contains(const kiln_module *m, const kiln_module *sub)
{
    for (; sub; sub = sub->parent)
        if (sub == m) return true;
    return false;
}

static bool push_child(kiln_module *parent, kiln_module *m)
{
    if (parent->n_child == parent->cap_child) {
        int cap = parent->cap_child ? 2 * parent->cap_child : 4;
        kiln_module **c = realloc(parent->child, (size_t)cap * sizeof *c);
        if (!c) return false;
        parent->child = c;
        parent->cap_child = cap;
    }
    parent->child[parent->n_child++] = m;
    return true;
}

static bool push_module(kiln_model *model, kiln_module *m)
{
    if (model->n_mods == model->cap_mods) {
        size_t cap = model->cap_mods ? 2 * model->cap_mods : 16;
        kiln_module **ms = realloc(model->mods, cap * sizeof *ms);
        if (!ms) return false;
        model->mods = ms;
        model->cap_mods = cap;
    }
    m->index = model->n_mods;
    model->mods[model->n_mods++] = m;
    return true;
}

kiln_module *kiln__nn_add(kiln_module *parent, const char *name, kiln_module_kind kind, const char *type,
                          kiln_forward_fn forward, kiln__nn_init_fn init)
{
    if (!parent) {
        if (!kiln__has_error()) kiln__err(KILN_STATUS_INVALID, "nn: %s: parent module is NULL", type);
        return NULL;
    }
    kiln_model *model = parent->model;
    if (model->allocated)
        return kiln__nn_err(model, KILN_STATUS_STATE, "nn: cannot add %s to '%s' after kiln_model_alloc", type,
                            parent->path);
    if (parent->kind != KILN_MODULE_SEQUENTIAL && parent->kind != KILN_MODULE_CUSTOM)
        return kiln__nn_err(model, KILN_STATUS_INVALID, "nn: %s '%s' cannot have children", parent->type, parent->path);
    char idx[24];
    if (!name) {
        snprintf(idx, sizeof idx, "%d", parent->n_child);
        name = idx;
    }
    if (!*name || strchr(name, '.'))
        return kiln__nn_err(model, KILN_STATUS_INVALID, "nn: module name '%s' under '%s' must be non-empty without '.'", name,
                          parent->path);
    for (int i = 0; i < parent->n_child; i++)
        if (strcmp(parent->child[i]->name, name) == 0)
            return kiln__nn_err(model, KILN_STATUS_INVALID, "nn: '%s' already has a child named '%s'", parent->path, name);

    kiln_module *m = calloc(1, sizeof *m);
    size_t plen = strlen(parent->path), nlen = strlen(name);
    char *path = malloc(plen + nlen + 2);
    char *ty = strdup(type);
    if (!m || !path || !ty) {
        free(m), free(path), free(ty);
        return kiln__nn_err(model, KILN_STATUS_NOMEM, "nn: out of memory");
    }
    if (plen) {
        memcpy(path, parent->path, plen);
        path[plen] = '.';
        memcpy(path + plen + 1, name, nlen + 1);
        m->name = path + plen + 1;
    } else {
        memcpy(path, name, nlen + 1);
        m->name = path;
    }
    m->kind = kind;
    m->type = ty;
    m->path = path;
    m->model = model;
    m->parent = parent;
    m->forward = forward;
    m->init = init;
    m->first_entry = kiln_store_count(model->store);
    m->out_ndim = -1;
    if (!push_child(parent, m)) {
        kiln__nn_module_free(m);
        return kiln__nn_err(model, KILN_STATUS_NOMEM, "nn: out of memory");
    }
    if (!push_module(model, m)) {
        parent->n_child--;
        kiln__nn_module_free(m);
        return kiln__nn_err(model, KILN_STATUS_NOMEM, "nn: out of memory");
    }
    return m;
}

kiln_tensor *kiln__nn_param(kiln_module *m, const char *local, int ndim, const int64_t *shape, bool buffer)
{
    kiln_model *model = m->model;
    char name[512];
    int n = snprintf(name, sizeof name, "%s%s%s", m->path, *m->path ? "." : "", local);
    if (n < 0 || (size_t)n >= sizeof name)
        return kiln__nn_err(model, KILN_STATUS_INVALID, "nn: parameter name '%s.%s' is too long", m->path, local);
    size_t i = kiln_store_count(model->store);
    if (i + 1 > model->cap_entries) {
        size_t cap = model->cap_entries ? 2 * model->cap_entries : 32;
        kiln_module **o = realloc(model->owner, cap * sizeof *o);
        if (o) model->owner = o;
        int *g = o ? realloc(model->group, cap * sizeof *g) : NULL;
        if (!o || !g) return kiln__nn_err(model, KILN_STATUS_NOMEM, "nn: out of memory");
        model->group = g;
        model->cap_entries = cap;
    }
    kiln_tensor *t = buffer ? kiln_store_buffer(model->store, name, ndim, shape)
                            : kiln_store_param(model->store, name, ndim, shape);
    if (!t) return kiln__nn_fail(model);
    model->owner[i] = m;
    model->group[i] = 0;
    return t;
}

/* ---- containers ------------------------------------------------------------------------- */

/* The end of module m's forward with output y: on failure (y NULL) the message gets m's
 * name, by the innermost module only, so it reads "op: ... [in Conv2d '0.0']"; on success
 * m records y's shape (for summaries). Returns y. */
static kiln_tensor *forward_done(kiln_module *m, kiln_tensor *y)
{
    if (!y) {
        const char *msg = kiln_last_error();
        if (!strstr(msg, " [in ")) {
            char copy[768];
            snprintf(copy, sizeof copy, "%s", msg);
            kiln__err(KILN_STATUS_INVALID, "%s [in %s '%s']", copy, m->type, m->path);
        }
        return NULL;
    }
    m->out_ndim = y->ndim;
    memcpy(m->out_shape, y->shape, sizeof m->out_shape);
    return y;
}

/* BatchNorm module bn then ReLU module act as kiln_batch_norm_relu: what kiln_module_forward
 * does for one module (errors name bn, the output shape is recorded) for both. */
static kiln_tensor *bn_relu_forward(kiln_module *bn, kiln_module *act, kiln_ctx *ctx, kiln_tensor *x)
{
    kiln_tensor *y = forward_done(bn, kiln__nn_batch_norm_forward(bn, ctx, x, true));
    return y ? forward_done(act, y) : NULL;
}

/* Sequential: x -> child[n-1](...child[0](x)). An empty Sequential is the identity. A
 * BatchNorm child directly followed by a ReLU child runs as one fused op (same values and
 * gradients, one memory pass fewer each way); the modules themselves stay as they are. */
kiln_tensor *kiln__nn_sequential_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    for (int i = 0; i < m->n_child && x; i++) {
        kiln_module *c = m->child[i];
        const bool bn = c->kind == KILN_MODULE_BATCH_NORM1D || c->kind == KILN_MODULE_BATCH_NORM2D;
        if (bn && i + 1 < m->n_child && m->child[i + 1]->kind == KILN_MODULE_RELU) {
            x = bn_relu_forward(c, m->child[i + 1], ctx, x);
            i++;
        } else {
            x = kiln_module_forward(c, ctx, x);
        }
    }
    return x;
}

kiln_module *kiln_nn_sequential(kiln_module *parent, const char *name)
{
    return kiln__nn_add(parent, name, KILN_MODULE_SEQUENTIAL, "Sequential", kiln__nn_sequential_forward, NULL);
}

static kiln_status set_user(kiln_module *m, const void *user, size_t user_bytes)
{
    void *copy = NULL;
    if (user && user_bytes) {
        copy = malloc(user_bytes);
        if (!copy) return kiln__err(KILN_STATUS_NOMEM, "nn: out of memory");
        memcpy(copy, user, user_bytes);
    }
    free(m->user);
    m->user = copy;
    m->user_bytes = copy ? user_bytes : 0;
    return KILN_STATUS_OK;
}

kiln_module *kiln_nn_custom(kiln_module *parent, const char *name, const char *type, kiln_forward_fn fn,
                            const void *user, size_t user_bytes)
{
    if (parent && (!fn || !type || !*type))
        return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "nn: custom module under '%s' needs a type name and a forward",
                          parent->path);
    kiln_module *m = kiln__nn_add(parent, name, KILN_MODULE_CUSTOM, type ? type : "Custom", fn, NULL);
    if (m && set_user(m, user, user_bytes) < 0) return kiln__nn_fail(m->model);
    return m;
}

kiln_status kiln_module_set_forward(kiln_module *m, const char *type, kiln_forward_fn fn, const void *user,
                                    size_t user_bytes)
{
    if (!m || !fn || !type || !*type)
        return kiln__err(KILN_STATUS_INVALID, "nn: set_forward needs a module, a type name and a forward");
    if (m->kind != KILN_MODULE_SEQUENTIAL && m->kind != KILN_MODULE_CUSTOM)
        return kiln__err(KILN_STATUS_INVALID, "nn: set_forward: %s '%s' is not a container", m->type, m->path);
    char *ty = strdup(type);
    if (!ty) return kiln__err(KILN_STATUS_NOMEM, "nn: out of memory");
    kiln_status st = set_user(m, user, user_bytes);
    if (st < 0) {
        free(ty);
        return st;
    }
    free(m->type);
    m->type = ty;
    m->kind = KILN_MODULE_CUSTOM;
    m->forward = fn;
    return KILN_STATUS_OK;
}

/* ---- forward ------------------------------------------------------------------------------ */

kiln_tensor *kiln_module_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    KILN_IN(x);
    if (!m || !ctx) return kiln__errp(KILN_STATUS_INVALID, "nn: forward needs a module and a context");
    if (!m->model->allocated)
        return kiln__errp(KILN_STATUS_STATE, "nn: forward of %s '%s' before kiln_model_alloc", m->type, m->path);
    return forward_done(m, m->forward(m, ctx, x));
}

/* ---- accessors ------------------------------------------------------------------------------ */

const char *kiln_module_path(const kiln_module *m) { return m ? m->path : NULL; }
const char *kiln_module_name(const kiln_module *m) { return m ? m->name : NULL; }
const char *kiln_module_type(const kiln_module *m) { return m ? m->type : NULL; }
kiln_module_kind kiln_module_kind_of(const kiln_module *m) { return m->kind; }
kiln_model *kiln_module_model(kiln_module *m) { return m ? m->model : NULL; }
bool kiln_module_training(const kiln_module *m) { return m && m->model->training; }
int kiln_module_n_children(const kiln_module *m) { return m ? m->n_child : 0; }
void *kiln_module_user(kiln_module *m) { return m ? m->user : NULL; }

kiln_module *kiln_module_child_at(kiln_module *m, int i)
{
    if (!m || i < 0 || i >= m->n_child)
        return kiln__errp(KILN_STATUS_INVALID, "nn: module '%s' has no child %d", m ? m->path : "(null)", i);
    return m->child[i];
}

kiln_module *kiln_module_child(kiln_module *m, const char *name)
{
    if (!m || !name) return kiln__errp(KILN_STATUS_INVALID, "nn: module_child needs a module and a name");
    for (int i = 0; i < m->n_child; i++)
        if (strcmp(m->child[i]->name, name) == 0) return m->child[i];
    return kiln__errp(KILN_STATUS_INVALID, "nn: %s '%s' has no child '%s'", m->type, m->path, name);
}

kiln_tensor *kiln_module_param(kiln_module *m, const char *name)
{
    if (!m || !name) return NULL;
    char full[512];
    snprintf(full, sizeof full, "%s%s%s", m->path, *m->path ? "." : "", name);
    return kiln_store_find(m->model->store, full);
}
