/* kiln_model_summary: a table of modules (path, type, output shape, parameter count of the
 * subtree, layer group) and of parameters (name, shape, count, group, trainable), then totals.
 * With an input batch it runs one eval-mode forward without gradients to fill the output
 * shapes, and restores the train flag, the running statistics and the step arena. */
#include "nn/nn_internal.h"

#include <string.h>

static void shape_of(char *buf, size_t n, int ndim, const int64_t *shape)
{
    if (ndim < 0) {
        snprintf(buf, n, "-");
        return;
    }
    size_t len = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < n) snprintf(buf + len, n - len, ")");
}

/* One eval forward to record output shapes; leaves the model as it found it. */
static kiln_status probe(kiln_model *model, kiln_ctx *ctx, kiln_tensor *x)
{
    size_t nbuf = 0;
    float *bufs = kiln_store_flat(model->store, KILN_STORE_BUFFERS, &nbuf);
    float *saved = NULL;
    if (nbuf && !(saved = malloc(nbuf * sizeof *saved))) return kiln__err(KILN_STATUS_NOMEM, "model_summary: out of memory");
    if (nbuf) memcpy(saved, bufs, nbuf * sizeof *saved);
    bool was_training = model->training, was_grad = kiln_set_grad_enabled(ctx, false);
    kiln_rng_state rng = kiln_rng_get(ctx);
    kiln_mark mark = kiln_step_mark(ctx);
    model->training = false;
    kiln_tensor *y = kiln_model_forward(model, ctx, x);
    model->training = was_training;
    kiln_step_rewind(ctx, mark);
    kiln_rng_set(ctx, rng);
    kiln_set_grad_enabled(ctx, was_grad);
    if (nbuf) memcpy(bufs, saved, nbuf * sizeof *saved);
    free(saved);
    return y ? KILN_STATUS_OK : KILN_STATUS_INVALID;
}

kiln_status kiln_model_summary(kiln_model *model, kiln_ctx *ctx, kiln_tensor *x, FILE *out)
{
    if (!model || !out) return kiln__err(KILN_STATUS_INVALID, "model_summary: needs a model and a stream");
    if (x && ctx) {
        if (!model->allocated) return kiln__err(KILN_STATUS_STATE, "model_summary: call kiln_model_alloc first");
        kiln_status st = probe(model, ctx, x);
        if (st < 0) return st;
    }
    char sh[160];
    size_t n = kiln_store_count(model->store);
    fprintf(out, "%-32s %-22s %-22s %10s %5s\n", "module", "type", "output shape", "params", "group");
    for (size_t i = 1; i < model->n_mods; i++) { /* the root is the whole model */
        const kiln_module *m = model->mods[i];
        int depth = 0;
        for (const kiln_module *p = m->parent; p && p->parent; p = p->parent) depth++;
        int64_t count = 0; /* the whole subtree's, as torchinfo's "(recursive)" */
        int group = -1;
        bool mixed = false;
        for (size_t j = 0; j < n; j++) {
            if (!kiln_store_is_param(model->store, j) || !kiln__nn_contains(m, model->owner[j])) continue;
            count += kiln_numel(kiln_store_at(model->store, j));
            mixed |= group >= 0 && group != model->group[j];
            group = model->group[j];
        }
        char path[160];
        snprintf(path, sizeof path, "%*s%s", 2 * depth, "", m->path);
        shape_of(sh, sizeof sh, m->out_ndim, m->out_shape);
        char grp[16] = "";
        if (mixed)
            snprintf(grp, sizeof grp, "mixed");
        else if (group >= 0)
            snprintf(grp, sizeof grp, "%d", group);
        fprintf(out, "%-32s %-22s %-22s %10lld %5s\n", path, m->type, sh, (long long)count, grp);
    }
    fprintf(out, "\n%-40s %-18s %10s %5s %s\n", "parameter", "shape", "count", "group", "trainable");
    int64_t total = 0, trainable = 0, buffers = 0;
    for (size_t j = 0; j < n; j++) {
        const kiln_tensor *t = kiln_store_at(model->store, j);
        bool param = kiln_store_is_param(model->store, j);
        int64_t c = kiln_numel(t);
        if (!param) {
            buffers += c;
            continue;
        }
        total += c;
        trainable += t->requires_grad ? c : 0;
        fprintf(out, "%-40s %-18s %10lld %5d %s\n", t->name, kiln_shape_str(t, sh, sizeof sh), (long long)c,
                model->group[j], t->requires_grad ? "yes" : "no");
    }
    fprintf(out, "\ntotal params %lld, trainable %lld, frozen %lld, buffer values %lld, layer groups %d, mode %s\n",
            (long long)total, (long long)trainable, (long long)(total - trainable), (long long)buffers,
            model->n_groups, model->training ? "train" : "eval");
    return KILN_STATUS_OK;
}
