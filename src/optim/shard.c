/* ZeRO-1 in the optimizer (include/kiln/optim.h, kiln_optim_set_shard): the state buffers
 * hold one range [lo, hi) of the params buffer, so N ranks that each own a range keep 1/N of
 * the state each. Setting a range reallocates the buffers, keeping the state of the elements
 * in both the old range and the new one; the step (step.c) updates only the range. */
#include "optim/optim_internal.h"

#include <string.h>

kiln_status kiln_optim_set_shard(kiln_optim *opt, size_t lo, size_t hi)
{
    if (!opt) return kiln__err(KILN_STATUS_INVALID, "optim_set_shard: optimizer is NULL");
    if (lo > hi || hi > opt->numel)
        return kiln__err(KILN_STATUS_INVALID, "optim_set_shard: range [%zu, %zu) not within the %zu parameter elements",
                         lo, hi, opt->numel);
    if (lo == opt->lo && hi == opt->hi) return KILN_STATUS_OK;
    bool whole = lo == 0 && hi == opt->numel;
    for (size_t i = 0; !whole && i < opt->n; i++)
        if (opt->sparse[i])
            return kiln__err(KILN_STATUS_INVALID, "optim_set_shard: parameter '%s' has the sparse (lazy) step "
                             "(kiln_optim_set_sparse), which a sharded optimizer does not take",
                             kiln__tname(opt->t[i]));
    float *fresh[KILN__OPTIM_MAX_STATE] = {0};
    for (int k = 0; k < opt->n_state; k++) {
        if (!(fresh[k] = kiln__calloc(kiln__optim_state_bytes(hi - lo)))) {
            for (int j = 0; j < k; j++) kiln__free(fresh[j], kiln__optim_state_bytes(hi - lo));
            return kiln__err(KILN_STATUS_NOMEM, "optim_set_shard: cannot allocate %zu floats of %s state", hi - lo,
                             opt->state_name[k]);
        }
    }
    /* the elements both ranges hold keep their state */
    size_t a = lo > opt->lo ? lo : opt->lo, b = hi < opt->hi ? hi : opt->hi;
    for (int k = 0; k < opt->n_state; k++) {
        if (a < b) memcpy(fresh[k] + (a - lo), opt->state[k] + (a - opt->lo), (b - a) * sizeof(float));
        kiln__free(opt->state[k], kiln__optim_state_bytes(opt->hi - opt->lo));
        opt->state[k] = fresh[k];
    }
    opt->lo = lo, opt->hi = hi;
    return KILN_STATUS_OK;
}

bool kiln_optim_shard(const kiln_optim *opt, size_t *lo, size_t *hi)
{
    if (lo) *lo = opt ? opt->lo : 0;
    if (hi) *hi = opt ? opt->hi : 0;
    return opt && kiln__optim_sharded(opt);
}

size_t kiln_optim_numel(const kiln_optim *opt) { return opt ? opt->numel : 0; }
