/* Version 1 checkpoints (kiln before the named-key layout) converted in memory to version
 * 2, so they load and resume as before. What changed: the optimizer kind was metadata
 * "optim" and its groups an (G, 4) tensor "optim.groups" (lr, mom, wd, frozen as f64 bits);
 * the lr multipliers a tensor "learner.lr_mults"; smoothing, recorder sizes, metric names
 * (comma-joined) and RNG flat metadata keys; the schedule the bytes of the kiln_sched struct
 * (tensor "sched", policy in "sched_policy"). The tensors of the model, the optimizer state,
 * the recorder's history and requires_grad kept their names and layout. */
#include "checkpoint_internal.h"
#include "core/json.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The struct bytes of a version-1 "sched" are read as today's kiln_sched: while its layout
 * is the one version 1 wrote (x86-64 and AArch64: 112 bytes, union at 32). A change to
 * kiln_sched or a params struct must first give this file a frozen copy of the old layout. */
#if defined(__x86_64__) || defined(__aarch64__)
_Static_assert(sizeof(kiln_sched) == 112 && offsetof(kiln_sched, p) == 32 &&
                   sizeof(kiln_sched_one_cycle_params) == 80 && sizeof(kiln_sched_clr_params) == 80 &&
                   sizeof(kiln_sched_cos_restarts_params) == 64 && sizeof(kiln_sched_sgdr_params) == 40,
               "kiln_sched changed: freeze the version-1 layout in checkpoint_v1.c before changing it");
#endif
#define V1_SCHED_BYTES 112

static kiln_status v1_fail(const kiln_st_file *f, const char *what)
{
    return kiln__err(KILN_STATUS_FORMAT, "checkpoint_load: %s: version 1 checkpoint: %s", kiln_st_path(f), what);
}

/* Tensor name, I64, 1-D or 2-D with cols columns: its data and rows. */
static kiln_status v1_tensor(const kiln_st_file *f, const char *name, int64_t cols, const void **data, int64_t *rows)
{
    kiln_dtype dt;
    int nd;
    int64_t shape[KILN_MAX_DIMS];
    size_t nbytes;
    char what[200];
    if (!kiln_st_has(f, name) || kiln_st_info(f, name, &dt, &nd, shape, data, &nbytes) || dt != KILN_DTYPE_I64 ||
        nd != (cols ? 2 : 1) || (cols && shape[1] != cols)) {
        snprintf(what, sizeof what, "tensor \"%s\" is missing or not I64 of the version-1 shape", name);
        return v1_fail(f, what);
    }
    *rows = shape[0];
    return KILN_STATUS_OK;
}

static double bits(const void *p, size_t i)
{
    double d;
    memcpy(&d, (const char *)p + i * sizeof d, sizeof d);
    return d;
}

/* Sets metadata key to o's text (o is consumed). */
static kiln_status set_json(kiln_st_file *f, const char *key, cJSON *o, bool ok)
{
    char *txt = kiln__json_finish("checkpoint_load", o, ok);
    kiln_status st = txt ? kiln_st_set_metadata(f, key, txt) : KILN_STATUS_NOMEM;
    free(txt);
    return st;
}

/* The names of "a,b,c" (version 1's metric list) as strings of arr. */
static bool add_names(cJSON *arr, const char *names)
{
    bool ok = true;
    for (const char *p = names; ok && *p;) {
        size_t len = strcspn(p, ",");
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), p);
        cJSON *s = cJSON_CreateString(name);
        ok = s && cJSON_AddItemToArray(arr, s);
        if (!ok) cJSON_Delete(s);
        p += len + (p[len] == ',');
    }
    return ok;
}

static kiln_status optim_part(kiln_st_file *f)
{
    const char *kind = kiln_st_metadata(f, "optim");
    const void *d;
    int64_t ng;
    if (!kind) return v1_fail(f, "metadata \"optim\" is missing");
    kiln_status st = v1_tensor(f, "optim.groups", 4, &d, &ng);
    if (st) return st;
    cJSON *o = cJSON_CreateObject(), *gs = o ? cJSON_AddArrayToObject(o, "groups") : NULL;
    bool ok = gs && cJSON_AddStringToObject(o, "kind", kind);
    for (int64_t g = 0; ok && g < ng; g++) {
        cJSON *go = cJSON_CreateObject();
        ok = go && cJSON_AddItemToArray(gs, go);
        if (!ok) cJSON_Delete(go);
        size_t b = 4 * (size_t)g;
        ok = ok && kiln__json_add_f64(go, "lr", bits(d, b)) && kiln__json_add_f64(go, "mom", bits(d, b + 1)) &&
             kiln__json_add_f64(go, "wd", bits(d, b + 2)) && cJSON_AddBoolToObject(go, "frozen", bits(d, b + 3) != 0);
    }
    return set_json(f, "optim", o, ok);
}

static kiln_status learner_part(kiln_st_file *f)
{
    const void *d;
    int64_t n, ema_n;
    double beta, avg;
    kiln_status st = v1_tensor(f, "learner.lr_mults", 0, &d, &n);
    if (st || (st = kiln__ck_meta_num(f, "ema_beta", 'd', &beta)) || (st = kiln__ck_meta_num(f, "ema_avg", 'd', &avg)) ||
        (st = kiln__ck_meta_num(f, "ema_n", 'i', &ema_n)))
        return st;
    const char *ms = kiln_st_metadata(f, "mults_set"), *names = kiln_st_metadata(f, "metrics");
    if (!names) return v1_fail(f, "metadata \"metrics\" is missing");
    cJSON *o = cJSON_CreateObject(), *m = o ? cJSON_AddArrayToObject(o, "lr_mults") : NULL;
    cJSON *e = m ? cJSON_AddObjectToObject(o, "smoothing") : NULL;
    bool ok = e && cJSON_AddBoolToObject(o, "mults_set", ms && !strcmp(ms, "1")) &&
              kiln__json_add_f64(e, "beta", beta) && kiln__json_add_f64(e, "avg", avg) &&
              kiln__json_add_i64(e, "n", ema_n);
    for (int64_t g = 0; ok && g < n; g++) {
        cJSON *v = kiln__json_f64(bits(d, (size_t)g));
        ok = v && cJSON_AddItemToArray(m, v);
        if (!ok) cJSON_Delete(v);
    }
    cJSON *mn = ok ? cJSON_AddArrayToObject(o, "metrics") : NULL;
    ok = mn && add_names(mn, names);
    return set_json(f, "learner", o, ok);
}

static kiln_status recorder_part(kiln_st_file *f)
{
    int64_t nb, ne, g;
    kiln_status st;
    if ((st = kiln__ck_meta_num(f, "recorder_batches", 'i', &nb)) ||
        (st = kiln__ck_meta_num(f, "recorder_epochs", 'i', &ne)) || (st = kiln__ck_meta_num(f, "recorder_groups", 'i', &g)))
        return st;
    const char *names = kiln_st_metadata(f, "metrics");
    if (!names) return v1_fail(f, "metadata \"metrics\" is missing");
    cJSON *o = cJSON_CreateObject(), *ms = o ? cJSON_AddArrayToObject(o, "metrics") : NULL;
    bool ok = ms && kiln__json_add_i64(o, "batches", nb) && kiln__json_add_i64(o, "epochs", ne) &&
              kiln__json_add_i64(o, "groups", g);
    ok = ok && add_names(ms, names);
    return set_json(f, "recorder", o, ok);
}

static kiln_status rng_part(kiln_st_file *f)
{
    kiln_rng_state r;
    kiln_status st;
    if ((st = kiln__ck_meta_num(f, "rng_seed", 'u', &r.seed)) || (st = kiln__ck_meta_num(f, "rng_counter", 'u', &r.counter)))
        return st;
    char *txt = kiln_rng_state_to_json(r);
    st = txt ? kiln_st_set_metadata(f, "rng", txt) : KILN_STATUS_NOMEM;
    free(txt);
    return st;
}

static kiln_status sched_part(kiln_st_file *f)
{
    const char *pol = kiln_st_metadata(f, "sched_policy");
    if (!pol) return KILN_STATUS_OK; /* saved outside a fit */
    kiln_dtype dt;
    int nd;
    int64_t shape[KILN_MAX_DIMS];
    const void *d;
    size_t nbytes;
    if (!kiln_st_has(f, "sched") || kiln_st_info(f, "sched", &dt, &nd, shape, &d, &nbytes) || dt != KILN_DTYPE_U8 ||
        nbytes != V1_SCHED_BYTES || nbytes != sizeof(kiln_sched))
        return v1_fail(f, "tensor \"sched\" is missing or not the 112 bytes of a version-1 schedule (load the "
                          "weights alone with kiln_model_load_st(model, f, \"model.\", true))");
    kiln_sched s;
    memcpy(&s, d, sizeof s);
    double lr;
    if ((unsigned)s.policy >= KILN_SCHED_POLICY_COUNT || strcmp(kiln_sched_policy_name(s.policy), pol) != 0 ||
        kiln_sched_at(&s, 0, &lr, NULL)) {
        char what[200];
        snprintf(what, sizeof what, "the saved \"%s\" schedule is not valid here", pol);
        return v1_fail(f, what);
    }
    char *txt = kiln_sched_to_json(&s);
    kiln_status st = txt ? kiln_st_set_metadata(f, "sched", txt) : KILN_STATUS_NOMEM;
    free(txt);
    return st;
}

kiln_status kiln__ck_v1_upgrade(kiln_st_file *f)
{
    kiln_status st;
    if ((st = optim_part(f)) || (st = learner_part(f)) || (st = recorder_part(f)) || (st = rng_part(f)) ||
        (st = sched_part(f)))
        return st;
    return kiln_st_set_metadata(f, "version", KILN__CK_VERSION);
}
