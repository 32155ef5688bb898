/* The optimizer's part of a checkpoint (include/kiln/optim.h, kiln_optim_save_st): its state
 * entries as tensors "<prefix>.<name>" and its kind and group hyper-parameters as JSON in
 * metadata "<prefix>". Reading checks the whole part before it copies anything. The file
 * always has the whole state; a sharded optimizer (ZeRO-1) reads its part of it and refuses
 * to write (the learner gathers the state first). */
#include "core/json.h"
#include "optim/optim_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

kiln_status kiln_optim_save_st(kiln_optim *opt, kiln_st_writer *w, const char *prefix)
{
    if (!opt || !w || !prefix) return kiln__err(KILN_STATUS_INVALID, "optim_save_st: NULL argument");
    if (kiln__optim_sharded(opt))
        return kiln__err(KILN_STATUS_STATE, "optim_save_st: the optimizer holds the state of elements [%zu, %zu) of %zu "
                         "only (kiln_optim_set_shard, ZeRO-1): gather the whole state first (kiln_optim_set_shard(opt, "
                         "0, %zu) and each rank's part)", opt->lo, opt->hi, opt->numel, opt->numel);
    char name[640];
    for (size_t i = 0; i < kiln_optim_state_count(opt); i++) {
        kiln_optim_state e;
        kiln_optim_state_at(opt, i, &e);
        snprintf(name, sizeof name, "%s.%s", prefix, e.name);
        int64_t shape[1] = {(int64_t)e.numel};
        kiln_st_writer_add(w, name, e.dtype, 1, shape, e.data);
    }
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "kind", kiln_optim_kind_name(opt->kind));
    cJSON *gs = ok ? cJSON_AddArrayToObject(o, "groups") : NULL;
    ok = gs != NULL;
    for (int g = 0; ok && g < opt->n_groups; g++) {
        const kiln_optim_group *h = &opt->groups[g];
        cJSON *go = cJSON_CreateObject();
        ok = go && cJSON_AddItemToArray(gs, go);
        if (!ok) cJSON_Delete(go);
        ok = ok && kiln__json_add_f64(go, "lr", h->lr) && kiln__json_add_f64(go, "mom", h->mom) &&
             kiln__json_add_f64(go, "wd", h->wd) && cJSON_AddBoolToObject(go, "frozen", h->frozen);
    }
    char *json = kiln__json_finish("optim_save_st", o, ok);
    kiln_status st = json ? kiln_st_writer_meta(w, prefix, json) : KILN_STATUS_NOMEM;
    free(json);
    return st;
}

/* Elements of a state entry in a file: the whole params buffer for the f32 buffers, also when
 * the optimizer holds a part of it (kiln_optim_set_shard). */
static size_t saved_numel(const kiln_optim *opt, const kiln_optim_state *e)
{
    return e->dtype == KILN_DTYPE_F32 ? opt->numel : e->numel;
}

/* Checks the part; groups (n_groups) receives the hyper-parameters when not NULL. */
static kiln_status check(const kiln_optim *opt, const kiln_st_file *f, const char *prefix, kiln_optim_group *groups)
{
    const char *path = kiln_st_path(f), *kn = kiln_optim_kind_name(opt->kind);
    char who[700], name[640];
    snprintf(who, sizeof who, "%s: metadata \"%s\"", path, prefix);
    cJSON *o;
    kiln_status st = kiln__json_object(who, kiln_st_metadata(f, prefix), &o);
    const char *kind = NULL;
    const cJSON *gs = NULL;
    if (!st) st = kiln__json_get_str(who, o, "kind", true, &kind);
    if (!st && strcmp(kind, kn) != 0)
        st = kiln__err(KILN_STATUS_INVALID, "%s: saved with optimizer \"%s\", this one is \"%s\"", path,
                       kiln__json_quote(kind, (char[80]){0}, 80), kn);
    if (!st) st = kiln__json_get_node(who, o, "groups", true, false, &gs);
    if (!st && cJSON_GetArraySize(gs) != opt->n_groups)
        st = kiln__err(KILN_STATUS_INVALID, "%s: %d optimizer groups saved, this optimizer has %d", who,
                       cJSON_GetArraySize(gs), opt->n_groups);
    if (!st) {
        static const char *const known[] = {"kind", "groups", NULL}, *const gknown[] = {"lr", "mom", "wd", "frozen", NULL};
        kiln__json_warn_unknown(who, o, known);
        int g = 0;
        for (const cJSON *go = gs->child; !st && go; go = go->next, g++) {
            char gwho[760];
            snprintf(gwho, sizeof gwho, "%s: groups[%d]", who, g);
            kiln_optim_group h = {0};
            if (!cJSON_IsObject(go)) st = kiln__err(KILN_STATUS_FORMAT, "%s is not an object", gwho);
            if (!st && !(st = kiln__json_get_f64(gwho, go, "lr", true, &h.lr)) &&
                !(st = kiln__json_get_f64(gwho, go, "mom", true, &h.mom)) &&
                !(st = kiln__json_get_f64(gwho, go, "wd", true, &h.wd)) &&
                !(st = kiln__json_get_bool(gwho, go, "frozen", false, &h.frozen))) {
                kiln__json_warn_unknown(gwho, go, gknown);
                if (!(h.lr >= 0 && isfinite(h.lr) && h.mom >= 0 && h.mom < 1 && h.wd >= 0 && isfinite(h.wd)))
                    st = kiln__err(KILN_STATUS_FORMAT, "%s has lr %g, mom %g, wd %g", gwho, h.lr, h.mom, h.wd);
            }
            if (!st && groups) groups[g] = h;
        }
    }
    cJSON_Delete(o);
    for (size_t i = 0; !st && i < kiln_optim_state_count(opt); i++) {
        kiln_optim_state e;
        const void *d;
        kiln_optim_state_at((kiln_optim *)opt, i, &e);
        snprintf(name, sizeof name, "%s.%s", prefix, e.name);
        int64_t shape[1] = {(int64_t)saved_numel(opt, &e)};
        if ((st = kiln_st_want(f, name, e.dtype, 1, shape, &d))) break;
        for (size_t k = 0; e.dtype == KILN_DTYPE_I64 && k < e.numel; k++) {
            int64_t v;
            memcpy(&v, (const char *)d + k * sizeof v, sizeof v);
            if (v < 0) st = kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" has a negative step", path, name);
        }
    }
    return st;
}

kiln_status kiln_optim_check_st(const kiln_optim *opt, const kiln_st_file *f, const char *prefix)
{
    if (!opt || !f || !prefix) return kiln__err(KILN_STATUS_INVALID, "optim_check_st: NULL argument");
    return check(opt, f, prefix, NULL);
}

kiln_status kiln_optim_load_st(kiln_optim *opt, const kiln_st_file *f, const char *prefix)
{
    if (!opt || !f || !prefix) return kiln__err(KILN_STATUS_INVALID, "optim_load_st: NULL argument");
    kiln_optim_group *groups = malloc((size_t)opt->n_groups * sizeof *groups);
    if (!groups) return kiln__err(KILN_STATUS_NOMEM, "optim_load_st: out of memory");
    kiln_status st = check(opt, f, prefix, groups);
    char name[640];
    for (size_t i = 0; !st && i < kiln_optim_state_count(opt); i++) {
        kiln_optim_state e;
        const void *d;
        kiln_optim_state_at(opt, i, &e);
        snprintf(name, sizeof name, "%s.%s", prefix, e.name);
        int64_t shape[1] = {(int64_t)saved_numel(opt, &e)};
        kiln_st_want(f, name, e.dtype, 1, shape, &d);
        if (e.dtype == KILN_DTYPE_F32) d = (const float *)d + opt->lo; /* a sharded optimizer's part */
        memcpy(e.data, d, e.numel * kiln_dtype_size(e.dtype));
    }
    if (!st) memcpy(opt->groups, groups, (size_t)opt->n_groups * sizeof *groups);
    free(groups);
    return st;
}
