/* Touched rows of a store parameter, for the optimizer's sparse (lazy) step
 * (kiln_optim_set_sparse, include/kiln/optim.h).
 *
 * A parameter W (V, ...) seen as V rows of row_len elements. While it is tracked, its tensor's
 * `rows` points here: kiln_embedding's backward adds the rows its indices named (each once, in
 * first-touch order), and any other gradient that reaches W (kiln__grad, a dense op, a tied
 * decoder) sets `all`, so the list is never short of a row whose gradient may be nonzero.
 * zero_grad (the optimizer's or the store's) zeroes the listed rows (all rows when `all`) and
 * empties the list. The store owns the set (kiln__store_track_rows) and frees it with itself. */
#ifndef KILN_CORE_ROWSET_H
#define KILN_CORE_ROWSET_H

#include "core/internal.h"

typedef struct kiln__rowset {
    const kiln_tensor *owner; /* the parameter whose rows these are */
    int64_t n_rows, row_len;  /* V and numel / V (a 0-d parameter: one row of 1) */
    uint8_t *mark;            /* (n_rows): 1 = row in list */
    int64_t *list;            /* (n_rows): the touched rows, first touch first */
    int64_t n;                /* rows in list */
    bool all;                 /* a gradient other than an embedding's reached W: every row counts */
} kiln__rowset;

/* Starts (on) or stops tracking store entry i (a parameter of an allocated store); starting
 * twice keeps the set. INVALID for a buffer or an index out of range, NOMEM. */
kiln_status kiln__store_track_rows(kiln_store *s, size_t i, bool on);
/* Zeroes the gradient rows in r's list (every row when r->all) of grad (n_rows * row_len),
 * then empties the list. */
void kiln__rowset_zero(kiln__rowset *r, float *grad);
/* Empties the list without touching a gradient. */
void kiln__rowset_clear(kiln__rowset *r);

#endif
