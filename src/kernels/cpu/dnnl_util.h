/* oneDNN plumbing shared by the CPU kernels: the engine and stream of a context, and a
 * macro that turns a failed dnnl call into a kiln error naming the op. */
#ifndef KILN_KERNELS_CPU_DNNL_UTIL_H
#define KILN_KERNELS_CPU_DNNL_UTIL_H

#include "core/internal.h"

#include <oneapi/dnnl/dnnl.h>

/* The per-context primitive cache (dnnl_cache.c). */
#define KILN_CDNN_CACHE_SLOTS 512
typedef struct kiln__cdnn_cache_entry {
    uint64_t hash; /* 0: empty slot */
    size_t n;
    void *key;
    dnnl_primitive_t prim;
} kiln__cdnn_cache_entry;
typedef struct kiln__cdnn_cache {
    int n;
    kiln__cdnn_cache_entry e[KILN_CDNN_CACHE_SLOTS];
} kiln__cdnn_cache;

/* The primitive stored under key (n bytes), or NULL. Valid until the next kiln__cdnn_keep. */
dnnl_primitive_t kiln__cdnn_cached(kiln_ctx *ctx, const void *key, size_t n);
/* Creates the primitive of pd and stores it under key (the caller still destroys pd); the
 * primitive, owned by the cache, or NULL + message. */
dnnl_primitive_t kiln__cdnn_keep(kiln_ctx *ctx, const char *op, const void *key, size_t n,
                                 const_dnnl_primitive_desc_t pd);
/* Destroys every cached primitive. */
void kiln__cdnn_cache_clear(kiln__cdnn_cache *c);

dnnl_engine_t kiln__dnnl_engine(kiln_ctx *ctx);
kiln__cdnn_cache *kiln__dnnl_cache(kiln_ctx *ctx);
dnnl_stream_t kiln__dnnl_stream(kiln_ctx *ctx);
const char *kiln__dnnl_status_str(dnnl_status_t s);

#define KILN_DNNL(op, call)                                                                   \
    do {                                                                                      \
        dnnl_status_t s_ = (call);                                                            \
        if (s_ != dnnl_success)                                                               \
            return kiln__err(KILN_STATUS_BACKEND, "%s: oneDNN %s failed: %s", (op), #call,   \
                             kiln__dnnl_status_str(s_));                                      \
    } while (0)

#endif
