/* ZeRO-1 in the optimizer (include/kiln/optim.h, kiln_optim_set_shard): the state buffers
 * hold one range [lo, hi) of the params buffer, so N ranks that each own a range keep 1/N of
 * the state each. Setting a range reallocates the buffers, keeping the state of the elements
 * in both the old range and the new one (in place when one range holds the other: rank 0
 * gathering the whole state for a checkpoint and dropping it again); the step (step.c)
 * updates only the range. */
#include "optim/optim_internal.h"

#include <string.h>

/* Buffer k from the range [olo, ohi) to [lo, hi), one of them inside the other, in place: the
 * elements of both keep their state, the others are zero. A larger range grows the block by
 * realloc (pages remapped, so rank 0 gathering the whole state for a checkpoint holds the
 * whole state and no copy of its part); false (nothing changed) when out of memory. */
static bool move_nested(kiln_optim *opt, int k, size_t olo, size_t ohi, size_t lo, size_t hi)
{
    size_t on = ohi - olo, n = hi - lo, a = lo > olo ? lo : olo, b = hi < ohi ? hi : ohi;
    float *buf = opt->state[k];
    if (n > on) {
        if (!(buf = kiln__realloc(buf, kiln__optim_state_bytes(on), kiln__optim_state_bytes(n)))) return false;
        opt->state[k] = buf;
    }
    memmove(buf + (a - lo), buf + (a - olo), (b - a) * sizeof(float));
    memset(buf, 0, (a - lo) * sizeof(float));
    memset(buf + (b - lo), 0, (n - (b - lo)) * sizeof(float));
    if (n < on) { /* gives the pages back; a failure (glibc gives none) keeps the larger block */
        float *q = kiln__realloc(buf, kiln__optim_state_bytes(on), kiln__optim_state_bytes(n));
        if (q) opt->state[k] = q;
    }
    return true;
}

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
    const size_t olo = opt->lo, ohi = opt->hi;
    bool nested = (lo <= olo && ohi <= hi) || (olo <= lo && hi <= ohi);
    if (nested) { /* in place, buffer by buffer; a failed growth undoes the ones before it */
        for (int k = 0; k < opt->n_state; k++) {
            if (move_nested(opt, k, olo, ohi, lo, hi)) continue;
            for (int j = 0; j < k; j++) move_nested(opt, j, lo, hi, olo, ohi); /* shrinks back: nothing lost */
            return kiln__err(KILN_STATUS_NOMEM, "optim_set_shard: cannot grow %s state to %zu floats",
                             opt->state_name[k], hi - lo);
        }
        opt->lo = lo, opt->hi = hi;
        return KILN_STATUS_OK;
    }
    float *fresh[KILN__OPTIM_MAX_STATE] = {0};
    for (int k = 0; k < opt->n_state; k++) {
        if (!(fresh[k] = kiln__calloc(kiln__optim_state_bytes(hi - lo)))) {
            for (int j = 0; j < k; j++) kiln__free(fresh[j], kiln__optim_state_bytes(hi - lo));
            return kiln__err(KILN_STATUS_NOMEM, "optim_set_shard: cannot allocate %zu floats of %s state", hi - lo,
                             opt->state_name[k]);
        }
    }
    /* the elements both ranges hold keep their state */
    size_t a = lo > olo ? lo : olo, b = hi < ohi ? hi : ohi;
    for (int k = 0; k < opt->n_state; k++) {
        if (a < b) memcpy(fresh[k] + (a - lo), opt->state[k] + (a - olo), (b - a) * sizeof(float));
        kiln__free(opt->state[k], kiln__optim_state_bytes(ohi - olo));
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
