/* A schedule as named keys (include/kiln/sched.h, kiln_sched_to_json): every field of the
 * policy's parameters by its name, written from one table per policy, and read back through
 * the policy's constructor, so a file's schedule is validated exactly as a new one is.
 * Fields added to a policy later go into its table with required = false: an older file
 * without them then gets the default, which must be the behaviour before the field existed. */
#include "core/json.h"
#include "kiln/sched.h"

#include <stddef.h>
#include <string.h>

typedef enum ftype { F_F64, F_I64, F_INT, F_BOOL, F_F64X3, F_CLR_MODE, F_VARIANT } ftype;

typedef struct field {
    const char *name;
    ftype type;
    size_t off;    /* in the policy's params struct */
    bool required; /* false: an option whose default keeps the older behaviour */
} field;

#define F(st, name, type, req) {#name, type, offsetof(st, name), req}
#define END {NULL, F_F64, 0, false}

static const field g_const[] = {F(kiln_sched_const_params, lr, F_F64, true),
                                F(kiln_sched_const_params, mom, F_F64, true),
                                F(kiln_sched_const_params, iters, F_I64, true), END};
static const field g_exp[] = {F(kiln_sched_exp_params, start_lr, F_F64, true),
                              F(kiln_sched_exp_params, end_lr, F_F64, true),
                              F(kiln_sched_exp_params, iters, F_I64, true),
                              F(kiln_sched_exp_params, linear, F_BOOL, false),
                              F(kiln_sched_exp_params, mom, F_F64, true), END};
static const field g_sgdr[] = {F(kiln_sched_sgdr_params, lr, F_F64, true),
                               F(kiln_sched_sgdr_params, iters_per_epoch, F_I64, true),
                               F(kiln_sched_sgdr_params, n_cycle, F_INT, true),
                               F(kiln_sched_sgdr_params, cycle_len, F_INT, true),
                               F(kiln_sched_sgdr_params, cycle_mult, F_INT, true),
                               F(kiln_sched_sgdr_params, warmup07, F_BOOL, false),
                               F(kiln_sched_sgdr_params, mom, F_F64, true), END};
static const field g_cos_restarts[] = {F(kiln_sched_cos_restarts_params, lr, F_F64, true),
                                       F(kiln_sched_cos_restarts_params, t0, F_I64, true),
                                       F(kiln_sched_cos_restarts_params, t_mult, F_I64, true),
                                       F(kiln_sched_cos_restarts_params, eta_min, F_F64, false),
                                       F(kiln_sched_cos_restarts_params, iters_per_epoch, F_I64, true),
                                       F(kiln_sched_cos_restarts_params, epochs, F_I64, true),
                                       F(kiln_sched_cos_restarts_params, per_epoch, F_BOOL, false),
                                       F(kiln_sched_cos_restarts_params, mom, F_F64, true), END};
static const field g_clr[] = {F(kiln_sched_clr_params, base_lr, F_F64, true),
                              F(kiln_sched_clr_params, max_lr, F_F64, true),
                              F(kiln_sched_clr_params, step_size_up, F_F64, true),
                              F(kiln_sched_clr_params, step_size_down, F_F64, true),
                              F(kiln_sched_clr_params, mode, F_CLR_MODE, false),
                              F(kiln_sched_clr_params, gamma, F_F64, false),
                              F(kiln_sched_clr_params, cycle_momentum, F_BOOL, false),
                              F(kiln_sched_clr_params, base_momentum, F_F64, true),
                              F(kiln_sched_clr_params, max_momentum, F_F64, true),
                              F(kiln_sched_clr_params, iters, F_I64, true), END};
static const field g_one_cycle[] = {F(kiln_sched_one_cycle_params, variant, F_VARIANT, false),
                                    F(kiln_sched_one_cycle_params, lr_max, F_F64, true),
                                    F(kiln_sched_one_cycle_params, iters, F_I64, true),
                                    F(kiln_sched_one_cycle_params, pct_start, F_F64, true),
                                    F(kiln_sched_one_cycle_params, div, F_F64, true),
                                    F(kiln_sched_one_cycle_params, final_div, F_F64, true),
                                    F(kiln_sched_one_cycle_params, moms, F_F64X3, true),
                                    F(kiln_sched_one_cycle_params, cycle_momentum, F_BOOL, false),
                                    F(kiln_sched_one_cycle_params, three_phase, F_BOOL, false),
                                    F(kiln_sched_one_cycle_params, linear, F_BOOL, false), END};
static const field g_stlr[] = {F(kiln_sched_stlr_params, lr_max, F_F64, true),
                               F(kiln_sched_stlr_params, iters, F_I64, true),
                               F(kiln_sched_stlr_params, cut_frac, F_F64, true),
                               F(kiln_sched_stlr_params, ratio, F_F64, true),
                               F(kiln_sched_stlr_params, mom, F_F64, true), END};
static const field g_step[] = {F(kiln_sched_step_params, lr, F_F64, true),
                               F(kiln_sched_step_params, gamma, F_F64, true),
                               F(kiln_sched_step_params, step, F_I64, true),
                               F(kiln_sched_step_params, iters, F_I64, true),
                               F(kiln_sched_step_params, mom, F_F64, true), END};

static const field *const g_fields[KILN_SCHED_POLICY_COUNT] = {g_const, g_exp,       g_sgdr, g_cos_restarts,
                                                               g_clr,   g_one_cycle, g_stlr, g_step};

_Static_assert(sizeof(kiln_clr_mode) == sizeof(int) && sizeof(kiln_one_cycle_variant) == sizeof(int),
               "the enum fields are copied as int");
static const char *const g_modes[] = {"triangular", "triangular2", "exp_range", NULL};
static const char *const g_variants[] = {"fastai", "fastai1", "torch", NULL};

/* ---- writing ---- */

static bool put_field(cJSON *o, const field *f, const char *base)
{
    const char *p = base + f->off;
    int e;
    switch (f->type) {
    case F_F64: return kiln__json_add_f64(o, f->name, *(const double *)p);
    case F_I64: return kiln__json_add_i64(o, f->name, *(const int64_t *)p);
    case F_INT: return kiln__json_add_i64(o, f->name, *(const int *)p);
    case F_BOOL: return cJSON_AddBoolToObject(o, f->name, *(const bool *)p) != NULL;
    case F_F64X3: {
        cJSON *a = cJSON_AddArrayToObject(o, f->name);
        bool ok = a != NULL;
        for (int k = 0; ok && k < 3; k++) {
            cJSON *v = kiln__json_f64(((const double *)p)[k]);
            ok = v && cJSON_AddItemToArray(a, v);
            if (!ok) cJSON_Delete(v);
        }
        return ok;
    }
    case F_CLR_MODE:
    case F_VARIANT:
        memcpy(&e, p, sizeof e); /* both enums are int-sized (asserted above) */
        return (unsigned)e < 3 && cJSON_AddStringToObject(o, f->name, (f->type == F_CLR_MODE ? g_modes : g_variants)[e]);
    }
    return false;
}

char *kiln_sched_to_json(const kiln_sched *s)
{
    if (!s || (unsigned)s->policy >= KILN_SCHED_POLICY_COUNT)
        return kiln__errp(KILN_STATUS_INVALID, "sched_to_json: no schedule");
    cJSON *o = cJSON_CreateObject();
    cJSON *p = o ? cJSON_CreateObject() : NULL;
    bool ok = o && p && cJSON_AddStringToObject(o, "policy", kiln_sched_policy_name(s->policy)) &&
              kiln__json_add_i64(o, "total", s->total) && kiln__json_add_i64(o, "warmup_iters", s->warmup_iters) &&
              kiln__json_add_f64(o, "warmup_start", s->warmup_start);
    for (const field *f = g_fields[s->policy]; ok && f->name; f++) ok = put_field(p, f, (const char *)&s->p);
    if (p && !(ok = ok && cJSON_AddItemToObject(o, "params", p))) cJSON_Delete(p);
    return kiln__json_finish("sched_to_json", o, ok);
}

/* ---- reading ---- */

static kiln_status get_field(const char *who, const cJSON *o, const field *f, char *base)
{
    char *p = base + f->off;
    int64_t i;
    const char *name;
    const cJSON *a;
    kiln_status st;
    switch (f->type) {
    case F_F64: return kiln__json_get_f64(who, o, f->name, f->required, (double *)p);
    case F_I64: return kiln__json_get_i64(who, o, f->name, f->required, (int64_t *)p);
    case F_BOOL: return kiln__json_get_bool(who, o, f->name, f->required, (bool *)p);
    case F_INT:
        i = *(int *)p;
        if ((st = kiln__json_get_i64(who, o, f->name, f->required, &i))) return st;
        if (i < -2147483647 || i > 2147483647)
            return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" %lld is out of range", who, f->name, (long long)i);
        *(int *)p = (int)i;
        return KILN_STATUS_OK;
    case F_F64X3:
        if ((st = kiln__json_get_node(who, o, f->name, f->required, false, &a)) || !a) return st;
        if (cJSON_GetArraySize(a) != 3)
            return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" must hold 3 numbers", who, f->name);
        for (int k = 0; k < 3; k++)
            if ((st = kiln__json_f64_of(who, f->name, k, cJSON_GetArrayItem(a, k), (double *)p + k))) return st;
        return KILN_STATUS_OK;
    case F_CLR_MODE:
    case F_VARIANT:
        name = NULL;
        if ((st = kiln__json_get_str(who, o, f->name, f->required, &name)) || !name) return st;
        const char *const *names = f->type == F_CLR_MODE ? g_modes : g_variants;
        for (int e = 0; names[e]; e++)
            if (!strcmp(names[e], name)) {
                memcpy(p, &e, sizeof e);
                return KILN_STATUS_OK;
            }
        char q[80];
        return kiln__err(KILN_STATUS_FORMAT, "%s: \"%s\" is \"%s\", not one of %s, %s, %s", who, f->name,
                         kiln__json_quote(name, q, sizeof q), names[0], names[1], names[2]);
    }
    return KILN_STATUS_INVALID;
}

/* The policy's defaults into *s->p, then every field of params over them, then the
 * constructor. */
static kiln_status build(kiln_sched_policy pol, const cJSON *params, kiln_sched *s)
{
    const char *who = "sched: params";
    kiln_sched d;
    memset(&d, 0, sizeof d);
    switch (pol) {
    case KILN_SCHED_POLICY_CONST: d.p.cnst = kiln_sched_const_default_params(); break;
    case KILN_SCHED_POLICY_EXP: d.p.exp = kiln_sched_exp_default_params(); break;
    case KILN_SCHED_POLICY_SGDR: d.p.sgdr = kiln_sched_sgdr_default_params(); break;
    case KILN_SCHED_POLICY_COS_RESTARTS: d.p.cos_restarts = kiln_sched_cos_restarts_default_params(); break;
    case KILN_SCHED_POLICY_CLR: d.p.clr = kiln_sched_clr_default_params(); break;
    case KILN_SCHED_POLICY_ONE_CYCLE: {
        /* the variant picks the defaults of the others */
        kiln_status st = get_field(who, params, &g_one_cycle[0], (char *)&d.p);
        if (st) return st;
        d.p.one_cycle = kiln_sched_one_cycle_default_params(d.p.one_cycle.variant);
        break;
    }
    case KILN_SCHED_POLICY_STLR: d.p.stlr = kiln_sched_stlr_default_params(); break;
    case KILN_SCHED_POLICY_STEP: d.p.step = kiln_sched_step_default_params(); break;
    default: return kiln__err(KILN_STATUS_FORMAT, "sched: bad policy");
    }
    const char *known[16];
    int n = 0;
    for (const field *f = g_fields[pol]; f->name; f++) {
        kiln_status fst = get_field(who, params, f, (char *)&d.p);
        if (fst) return fst;
        known[n++] = f->name;
    }
    known[n] = NULL;
    kiln__json_warn_unknown(who, params, known);
    kiln_status st;
    switch (pol) {
    case KILN_SCHED_POLICY_CONST: st = kiln_sched_const(s, &d.p.cnst); break;
    case KILN_SCHED_POLICY_EXP: st = kiln_sched_exp(s, &d.p.exp); break;
    case KILN_SCHED_POLICY_SGDR: st = kiln_sched_sgdr(s, &d.p.sgdr); break;
    case KILN_SCHED_POLICY_COS_RESTARTS: st = kiln_sched_cos_restarts(s, &d.p.cos_restarts); break;
    case KILN_SCHED_POLICY_CLR: st = kiln_sched_clr(s, &d.p.clr); break;
    case KILN_SCHED_POLICY_ONE_CYCLE: st = kiln_sched_one_cycle(s, &d.p.one_cycle); break;
    case KILN_SCHED_POLICY_STLR: st = kiln_sched_stlr(s, &d.p.stlr); break;
    default: st = kiln_sched_step(s, &d.p.step); break;
    }
    return st ? kiln__err_prefix(KILN_STATUS_FORMAT, "sched: params: ") : KILN_STATUS_OK;
}

kiln_status kiln_sched_from_json(const char *json, kiln_sched *out)
{
    static const char *const who = "sched",
                             *const known[] = {"policy", "total", "warmup_iters", "warmup_start", "params", NULL};
    if (!out) return kiln__err(KILN_STATUS_INVALID, "sched_from_json: out is NULL");
    cJSON *o;
    kiln_status st = kiln__json_object(who, json, &o);
    const char *pol_name = NULL;
    const cJSON *params = NULL;
    kiln_sched_policy pol;
    int64_t total = -1, w_iters = 0;
    double w_start = 0;
    kiln_sched s;
    if (!st && !(st = kiln__json_get_str(who, o, "policy", true, &pol_name)) &&
        (st = kiln_sched_policy_parse(pol_name, &pol)))
        st = kiln__err(KILN_STATUS_FORMAT, "sched: \"policy\" \"%s\" is not a policy of this kiln",
                       kiln__json_quote(pol_name, (char[80]){0}, 80));
    if (!st) st = kiln__json_get_node(who, o, "params", true, true, &params);
    if (!st) st = kiln__json_get_i64(who, o, "total", false, &total);
    if (!st) st = kiln__json_get_i64(who, o, "warmup_iters", false, &w_iters);
    if (!st) st = kiln__json_get_f64(who, o, "warmup_start", false, &w_start);
    if (!st) kiln__json_warn_unknown(who, o, known);
    if (!st) st = build(pol, params, &s);
    if (!st && (st = kiln_sched_warmup(&s, w_iters, w_start))) st = kiln__err_prefix(KILN_STATUS_FORMAT, "sched: ");
    if (!st && total >= 0 && total != s.total)
        st = kiln__err(KILN_STATUS_FORMAT, "sched: \"total\" %lld, but its parameters give %lld iterations",
                       (long long)total, (long long)s.total);
    cJSON_Delete(o);
    if (!st) *out = s;
    return st;
}
