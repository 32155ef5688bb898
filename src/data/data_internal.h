/* Internal to the data layer (src/data/): helpers the data sources share. Names start with
 * kiln__ and are not API. */
#ifndef KILN_DATA_INTERNAL_H
#define KILN_DATA_INTERNAL_H

#include "core/internal.h"

/* The data loaders' parallel for (parallel.c): runs fn(user, i) for every i in [0, n) on up to
 * n_threads POSIX threads (at most 16; the caller's thread is one of them, and the only one
 * when n_threads <= 1 or a thread cannot start), items handed out one at a time. For work
 * per item that is long and uneven (decoding image files); fn must be thread-safe. The
 * numeric loops of core, kernels and autograd use OpenMP instead, not this. */
void kiln__data_pthread_for(int n_threads, int64_t n, void (*fn)(void *user, int64_t i), void *user);

/* Whether d's source was made with free as its ops.free (data.c): how a source's accessors tell
 * their own kiln_data from another's. */
struct kiln_data;
bool kiln__data_freed_by(const struct kiln_data *d, void (*free_fn)(void *state));

#endif
