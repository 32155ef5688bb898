/* Optimizers: construction and validation, parameter groups with their hyper-parameters,
 * the no-weight-decay marks and their name rule, and the state entries that checkpoints
 * save and load. The update loops themselves are in step.c. */
#include "core/rowset.h"
#include "optim/optim_internal.h"

#include <math.h>
#include <string.h>

/* ---- validation ------------------------------------------------------------------------ */

kiln_status kiln__optim_check_lr(const char *who, double lr)
{
    if (!(isfinite(lr) && lr >= 0)) return kiln__err(KILN_STATUS_INVALID, "%s: lr %g must be >= 0", who, lr);
    return KILN_STATUS_OK;
}

kiln_status kiln__optim_check_mom(const char *who, const char *field, double mom)
{
    if (!(mom >= 0 && mom < 1))
        return kiln__err(KILN_STATUS_INVALID, "%s: %s %g outside [0, 1)", who, field, mom);
    return KILN_STATUS_OK;
}

kiln_status kiln__optim_check_wd(const char *who, double wd)
{
    if (!(isfinite(wd) && wd >= 0))
        return kiln__err(KILN_STATUS_INVALID, "%s: weight_decay %g must be >= 0", who, wd);
    return KILN_STATUS_OK;
}

/* ---- construction ---------------------------------------------------------------------- */

kiln_sgd_params kiln_sgd_default_params(void)
{
    return (kiln_sgd_params){.lr = 0.01, .momentum = 0, .dampening = 0, .nesterov = false,
                             .weight_decay = 0, .decoupled_wd = false, .bn_bias_wd = false};
}

kiln_adam_params kiln_adam_default_params(void)
{
    return (kiln_adam_params){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-5,
                              .weight_decay = 0.01, .decoupled_wd = true, .bn_bias_wd = false};
}

void kiln_optim_free(kiln_optim *opt)
{
    if (!opt) return;
    for (size_t i = 0; opt->sparse && i < opt->n; i++)
        if (opt->sparse[i]) kiln__store_track_rows(opt->store, i, false);
    for (int k = 0; k < opt->n_state; k++) kiln__free(opt->state[k], kiln__optim_state_bytes(opt->hi - opt->lo));
    free(opt->t);
    free(opt->off);
    free(opt->len);
    free(opt->group);
    free(opt->no_wd);
    free(opt->sparse);
    free(opt->step);
    free(opt->groups);
    free(opt);
}

/* Everything but the hyper-parameters: per-entry tables, group 0 and n_state buffers. */
static kiln_optim *make(const char *who, kiln_store *s, kiln_optim_kind kind, int n_state)
{
    if (!s) return kiln__errp(KILN_STATUS_INVALID, "%s: store is NULL", who);
    size_t numel = 0;
    float *params = kiln_store_flat(s, KILN_STORE_PARAMS, &numel);
    float *grads = kiln_store_flat(s, KILN_STORE_GRADS, NULL);
    if (!params || !grads)
        return kiln__errp(KILN_STATUS_STATE, "%s: the store is not allocated (call kiln_store_alloc first)", who);
    kiln_optim *opt = calloc(1, sizeof *opt);
    if (!opt) return kiln__errp(KILN_STATUS_NOMEM, "%s: out of memory", who);
    opt->kind = kind;
    opt->n_threads = kiln__default_threads();
    opt->store = s;
    opt->n = kiln_store_count(s);
    opt->numel = numel;
    opt->lo = 0, opt->hi = numel;
    opt->params = params;
    opt->grads = grads;
    size_t n1 = opt->n ? opt->n : 1;
    opt->t = calloc(n1, sizeof *opt->t);
    opt->off = calloc(n1, sizeof *opt->off);
    opt->len = calloc(n1, sizeof *opt->len);
    opt->group = calloc(n1, sizeof *opt->group);
    opt->no_wd = calloc(n1, sizeof *opt->no_wd);
    opt->sparse = calloc(n1, sizeof *opt->sparse);
    opt->step = calloc(n1, sizeof *opt->step);
    opt->cap_groups = 4;
    opt->groups = calloc((size_t)opt->cap_groups, sizeof *opt->groups);
    opt->n_groups = 1;
    if (!opt->t || !opt->off || !opt->len || !opt->group || !opt->no_wd || !opt->sparse || !opt->step || !opt->groups) {
        kiln_optim_free(opt);
        return kiln__errp(KILN_STATUS_NOMEM, "%s: out of memory", who);
    }
    for (int k = 0; k < n_state; k++) {
        opt->state[k] = kiln__calloc(kiln__optim_state_bytes(numel));
        if (!opt->state[k]) {
            kiln_optim_free(opt);
            return kiln__errp(KILN_STATUS_NOMEM, "%s: cannot allocate %zu floats of state", who, numel);
        }
        opt->n_state = k + 1;
    }
    for (size_t i = 0; i < opt->n; i++) {
        if (!kiln_store_is_param(s, i)) continue;
        kiln_tensor *t = kiln_store_at(s, i);
        opt->t[i] = t;
        opt->off[i] = (size_t)((float *)t->data - params);
        opt->len[i] = (size_t)kiln_numel(t);
        KILN_ASSERT(opt->off[i] + opt->len[i] <= numel);
    }
    return opt;
}

kiln_optim *kiln_optim_new_sgd(kiln_store *s, const kiln_sgd_params *p)
{
    if (!p) return kiln__errp(KILN_STATUS_INVALID, "sgd: params is NULL");
    if (kiln__optim_check_lr("sgd", p->lr) || kiln__optim_check_mom("sgd", "momentum", p->momentum) ||
        kiln__optim_check_wd("sgd", p->weight_decay))
        return NULL;
    if (!(p->dampening >= 0 && p->dampening <= 1))
        return kiln__errp(KILN_STATUS_INVALID, "sgd: dampening %g outside [0, 1]", p->dampening);
    if (p->nesterov && (p->momentum <= 0 || p->dampening != 0))
        return kiln__errp(KILN_STATUS_INVALID, "sgd: nesterov needs momentum > 0 and dampening 0 (got %g, %g)",
                          p->momentum, p->dampening);
    kiln_optim *opt = make("sgd", s, KILN_OPTIM_KIND_SGD, 1);
    if (!opt) return NULL;
    opt->state_name[0] = "momentum_buffer";
    opt->groups[0] = (kiln_optim_group){.lr = p->lr, .mom = p->momentum, .wd = p->weight_decay};
    opt->dampening = p->dampening;
    opt->nesterov = p->nesterov;
    opt->decoupled_wd = p->decoupled_wd;
    opt->bn_bias_wd = p->bn_bias_wd;
    return opt;
}

kiln_optim *kiln_optim_new_adam(kiln_store *s, const kiln_adam_params *p)
{
    if (!p) return kiln__errp(KILN_STATUS_INVALID, "adam: params is NULL");
    if (kiln__optim_check_lr("adam", p->lr) || kiln__optim_check_mom("adam", "beta1", p->beta1) ||
        kiln__optim_check_mom("adam", "beta2", p->beta2) || kiln__optim_check_wd("adam", p->weight_decay))
        return NULL;
    if (!(isfinite(p->eps) && p->eps >= 0))
        return kiln__errp(KILN_STATUS_INVALID, "adam: eps %g must be >= 0", p->eps);
    kiln_optim *opt = make("adam", s, KILN_OPTIM_KIND_ADAM, 2);
    if (!opt) return NULL;
    opt->state_name[0] = "exp_avg";
    opt->state_name[1] = "exp_avg_sq";
    opt->groups[0] = (kiln_optim_group){.lr = p->lr, .mom = p->beta1, .wd = p->weight_decay};
    opt->beta2 = p->beta2;
    opt->eps = p->eps;
    opt->decoupled_wd = p->decoupled_wd;
    opt->bn_bias_wd = p->bn_bias_wd;
    return opt;
}

kiln_optim_kind kiln_optim_get_kind(const kiln_optim *opt) { return opt->kind; }
kiln_store *kiln_optim_store(const kiln_optim *opt) { return opt->store; }

const char *kiln_optim_kind_name(kiln_optim_kind k)
{
    switch (k) {
    case KILN_OPTIM_KIND_SGD: return "sgd";
    case KILN_OPTIM_KIND_ADAM: return "adam";
    }
    return "unknown";
}

/* ---- groups ------------------------------------------------------------------------------ */

static kiln_status check_group(const kiln_optim *opt, int g, bool all_ok)
{
    if ((all_ok && g == KILN_OPTIM_ALL_GROUPS) || (g >= 0 && g < opt->n_groups)) return KILN_STATUS_OK;
    return kiln__err(KILN_STATUS_INVALID, "optim: unknown group %d (%d group%s)", g, opt->n_groups,
                     opt->n_groups == 1 ? "" : "s");
}

static kiln_status check_param(const kiln_optim *opt, size_t i)
{
    if (i >= opt->n)
        return kiln__err(KILN_STATUS_INVALID, "optim: parameter index %zu out of range (store has %zu entries)", i,
                         opt->n);
    if (!opt->t[i])
        return kiln__err(KILN_STATUS_INVALID, "optim: store entry %zu ('%s') is a buffer, not a parameter", i,
                         kiln__tname(kiln_store_at(opt->store, i)));
    return KILN_STATUS_OK;
}

static kiln_status check_hyper(const kiln_optim *opt, const kiln_optim_group *h)
{
    if (kiln__optim_check_lr("optim", h->lr) ||
        kiln__optim_check_mom("optim", opt->kind == KILN_OPTIM_KIND_SGD ? "momentum" : "beta1", h->mom) ||
        kiln__optim_check_wd("optim", h->wd))
        return KILN_STATUS_INVALID;
    return KILN_STATUS_OK;
}

static kiln_status reserve_groups(kiln_optim *opt, int n)
{
    if (n <= opt->cap_groups) return KILN_STATUS_OK;
    int cap = opt->cap_groups;
    while (cap < n) cap *= 2;
    kiln_optim_group *ng = realloc(opt->groups, (size_t)cap * sizeof *ng);
    if (!ng) return kiln__err(KILN_STATUS_NOMEM, "optim: out of memory");
    opt->groups = ng;
    opt->cap_groups = cap;
    return KILN_STATUS_OK;
}

int kiln_optim_n_groups(const kiln_optim *opt) { return opt->n_groups; }

int kiln_optim_add_group(kiln_optim *opt, const kiln_optim_group *h)
{
    kiln_optim_group g = opt->groups[0];
    g.frozen = false;
    if (h) {
        if (check_hyper(opt, h)) return -1;
        g = *h;
    }
    if (reserve_groups(opt, opt->n_groups + 1)) return -1;
    opt->groups[opt->n_groups] = g;
    return opt->n_groups++;
}

kiln_status kiln_optim_set_group(kiln_optim *opt, size_t param_index, int g)
{
    kiln_status st = check_param(opt, param_index);
    if (!st) st = check_group(opt, g, false);
    if (st) return st;
    opt->group[param_index] = g;
    return KILN_STATUS_OK;
}

kiln_status kiln_optim_set_groups(kiln_optim *opt, int n_groups, const int *group)
{
    if (n_groups < 1) return kiln__err(KILN_STATUS_INVALID, "optim: n_groups %d must be >= 1", n_groups);
    if (!group) return kiln__err(KILN_STATUS_INVALID, "optim: group array is NULL");
    for (size_t i = 0; i < opt->n; i++)
        if (opt->t[i] && (group[i] < 0 || group[i] >= n_groups))
            return kiln__err(KILN_STATUS_INVALID, "optim: parameter '%s' given group %d (of %d groups)",
                             kiln__tname(opt->t[i]), group[i], n_groups);
    if (reserve_groups(opt, n_groups)) return KILN_STATUS_NOMEM;
    for (int g = opt->n_groups; g < n_groups; g++) {
        opt->groups[g] = opt->groups[0];
        opt->groups[g].frozen = false;
    }
    opt->n_groups = n_groups;
    for (size_t i = 0; i < opt->n; i++) opt->group[i] = opt->t[i] ? group[i] : 0;
    return KILN_STATUS_OK;
}

kiln_status kiln_optim_set_group_by_prefix(kiln_optim *opt, const char *prefix, int g)
{
    if (!prefix) return kiln__err(KILN_STATUS_INVALID, "optim: prefix is NULL");
    kiln_status st = check_group(opt, g, false);
    if (st) return st;
    size_t len = strlen(prefix), hits = 0;
    for (size_t i = 0; i < opt->n; i++) {
        if (opt->t[i] && opt->t[i]->name && !strncmp(opt->t[i]->name, prefix, len)) {
            opt->group[i] = g;
            hits++;
        }
    }
    if (!hits) return kiln__err(KILN_STATUS_INVALID, "optim: no parameter name starts with '%s'", prefix);
    return KILN_STATUS_OK;
}

int kiln_optim_group_of(const kiln_optim *opt, size_t param_index)
{
    if (check_param(opt, param_index)) return -1;
    return opt->group[param_index];
}

kiln_status kiln_optim_get_group(const kiln_optim *opt, int g, kiln_optim_group *out)
{
    kiln_status st = check_group(opt, g, false);
    if (st) return st;
    *out = opt->groups[g];
    return KILN_STATUS_OK;
}

/* Applies one field to group g or all groups; the value was validated by the caller. */
enum field { F_LR, F_MOM, F_WD, F_FROZEN };
static kiln_status set_field(kiln_optim *opt, int g, enum field f, double v)
{
    kiln_status st = check_group(opt, g, true);
    if (st) return st;
    int lo = g == KILN_OPTIM_ALL_GROUPS ? 0 : g, hi = g == KILN_OPTIM_ALL_GROUPS ? opt->n_groups : g + 1;
    for (int k = lo; k < hi; k++) {
        kiln_optim_group *h = &opt->groups[k];
        switch (f) {
        case F_LR: h->lr = v; break;
        case F_MOM: h->mom = v; break;
        case F_WD: h->wd = v; break;
        case F_FROZEN: h->frozen = v != 0; break;
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_optim_set_lr(kiln_optim *opt, int g, double lr)
{
    kiln_status st = kiln__optim_check_lr("optim", lr);
    return st ? st : set_field(opt, g, F_LR, lr);
}

kiln_status kiln_optim_set_mom(kiln_optim *opt, int g, double mom)
{
    kiln_status st = kiln__optim_check_mom("optim", opt->kind == KILN_OPTIM_KIND_SGD ? "momentum" : "beta1", mom);
    return st ? st : set_field(opt, g, F_MOM, mom);
}

kiln_status kiln_optim_set_wd(kiln_optim *opt, int g, double wd)
{
    kiln_status st = kiln__optim_check_wd("optim", wd);
    return st ? st : set_field(opt, g, F_WD, wd);
}

kiln_status kiln_optim_set_frozen(kiln_optim *opt, int g, bool frozen)
{
    return set_field(opt, g, F_FROZEN, frozen ? 1.0 : 0.0);
}

/* ---- no-wd marks ------------------------------------------------------------------------- */

kiln_status kiln_optim_set_no_wd(kiln_optim *opt, size_t param_index, bool no_wd)
{
    kiln_status st = check_param(opt, param_index);
    if (st) return st;
    opt->no_wd[param_index] = no_wd;
    return KILN_STATUS_OK;
}

bool kiln_optim_is_no_wd(const kiln_optim *opt, size_t param_index)
{
    return param_index < opt->n && opt->no_wd[param_index];
}

/* c starts with the word w, followed by the end of the component, digits or '_' ("bn",
 * "bn1", "bn_final"; not "bnx" or "normal"). */
static bool word(const char *c, const char *w)
{
    size_t n = strlen(w);
    if (strncmp(c, w, n)) return false;
    char next = c[n];
    return next == '\0' || next == '.' || next == '_' || (next >= '0' && next <= '9');
}

bool kiln_optim_name_is_no_wd(const char *name)
{
    if (!name) return false;
    const char *c = name, *last = name;
    for (;;) {
        if (word(c, "bn") || word(c, "norm")) return true;
        const char *dot = strchr(c, '.');
        if (!dot) break;
        c = dot + 1;
        last = c;
    }
    return word(last, "bias");
}

size_t kiln_optim_mark_no_wd_by_name(kiln_optim *opt, bool also_1d)
{
    size_t marked = 0;
    for (size_t i = 0; i < opt->n; i++) {
        if (!opt->t[i]) continue;
        if (kiln_optim_name_is_no_wd(opt->t[i]->name) || (also_1d && opt->t[i]->ndim <= 1)) opt->no_wd[i] = true;
        marked += opt->no_wd[i];
    }
    return marked;
}

/* ---- sparse (lazy) steps ------------------------------------------------------------------ */

static kiln_status set_sparse1(kiln_optim *opt, size_t i, bool sparse)
{
    if (sparse == opt->sparse[i]) return KILN_STATUS_OK;
    kiln_status st = kiln__store_track_rows(opt->store, i, sparse);
    if (st) return st;
    opt->sparse[i] = sparse;
    return KILN_STATUS_OK;
}

kiln_status kiln_optim_set_sparse(kiln_optim *opt, size_t param_index, bool sparse)
{
    if (!opt) return kiln__err(KILN_STATUS_INVALID, "optim: optimizer is NULL");
    if (sparse && opt->kind != KILN_OPTIM_KIND_ADAM)
        return kiln__err(KILN_STATUS_INVALID, "optim: the sparse step is Adam's; this optimizer is %s",
                         kiln_optim_kind_name(opt->kind));
    if (sparse && kiln__optim_sharded(opt))
        return kiln__err(KILN_STATUS_INVALID, "optim: no sparse step on a sharded optimizer (it holds the state of "
                         "elements [%zu, %zu) of %zu: kiln_optim_set_shard)", opt->lo, opt->hi, opt->numel);
    if (param_index != KILN_OPTIM_ALL_PARAMS) {
        kiln_status st = check_param(opt, param_index);
        return st ? st : set_sparse1(opt, param_index, sparse);
    }
    for (size_t i = 0; i < opt->n; i++) {
        kiln_status st = opt->t[i] ? set_sparse1(opt, i, sparse) : KILN_STATUS_OK;
        if (st) return st;
    }
    return KILN_STATUS_OK;
}

bool kiln_optim_is_sparse(const kiln_optim *opt, size_t param_index)
{
    return opt && param_index < opt->n && opt->sparse[param_index];
}

/* ---- state ------------------------------------------------------------------------------- */

void kiln_optim_clear_state(kiln_optim *opt)
{
    for (int k = 0; k < opt->n_state; k++) memset(opt->state[k], 0, (opt->hi - opt->lo) * sizeof(float));
    memset(opt->step, 0, opt->n * sizeof *opt->step);
}

size_t kiln_optim_state_count(const kiln_optim *opt) { return (size_t)opt->n_state + 1; }

kiln_status kiln_optim_state_at(kiln_optim *opt, size_t i, kiln_optim_state *out)
{
    if (i < (size_t)opt->n_state) {
        *out = (kiln_optim_state){opt->state_name[i], KILN_DTYPE_F32, opt->state[i], opt->hi - opt->lo};
    } else if (i == (size_t)opt->n_state) {
        *out = (kiln_optim_state){"step", KILN_DTYPE_I64, opt->step, opt->n};
    } else {
        return kiln__err(KILN_STATUS_INVALID, "optim: state index %zu out of range (%s has %zu entries)", i,
                         kiln_optim_kind_name(opt->kind), kiln_optim_state_count(opt));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_optim_state_load(kiln_optim *opt, const char *name, kiln_dtype dtype, const void *data,
                                  size_t numel)
{
    const char *kn = kiln_optim_kind_name(opt->kind);
    for (size_t i = 0; name && i < kiln_optim_state_count(opt); i++) {
        kiln_optim_state e;
        kiln_optim_state_at(opt, i, &e);
        if (strcmp(e.name, name)) continue;
        if (dtype != e.dtype)
            return kiln__err(KILN_STATUS_INVALID, "optim: %s state '%s' is %s, got %s", kn, name,
                             kiln_dtype_name(e.dtype), kiln_dtype_name(dtype));
        /* a sharded optimizer also takes the whole buffer and keeps its part */
        bool whole = dtype == KILN_DTYPE_F32 && numel == opt->numel && numel != e.numel;
        if (numel != e.numel && !whole)
            return kiln__err(KILN_STATUS_INVALID, "optim: %s state '%s' has %zu elements, got %zu", kn, name,
                             e.numel, numel);
        if (numel && !data) return kiln__err(KILN_STATUS_INVALID, "optim: state '%s' data is NULL", name);
        if (whole) data = (const float *)data + opt->lo, numel = e.numel;
        if (dtype == KILN_DTYPE_I64) {
            const int64_t *s = data;
            for (size_t j = 0; j < numel; j++)
                if (s[j] < 0)
                    return kiln__err(KILN_STATUS_INVALID, "optim: state 'step' of entry %zu is %lld < 0", j,
                                     (long long)s[j]);
        }
        if (numel) memcpy(e.data, data, numel * kiln_dtype_size(dtype));
        return KILN_STATUS_OK;
    }
    return kiln__err(KILN_STATUS_INVALID, "optim: %s has no state '%s'", kn, name ? name : "(null)");
}
