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

/* Tells oneDNN the context's thread count before a oneDNN call on this thread.
 *
 * What oneDNN 2.6 (Debian's build, OpenMP runtime) allows: it takes its thread count from
 * omp_get_max_threads() of the calling thread, i.e. that thread's OpenMP nthreads-var,
 * both when a primitive is created (the count is part of oneDNN's primitive cache key,
 * and scratchpads and work splits are sized for it) and when it runs; it has no per-engine,
 * per-stream or per-call count (the threadpool interop API that has one exists only in
 * builds with DNNL_CPU_RUNTIME=THREADPOOL). So kiln sets the calling thread's nthreads-var
 * to ctx's count (omp_set_num_threads, only when it differs) before every oneDNN call:
 * kiln__dnnl_engine and kiln__dnnl_stream do it (every primitive creation needs the engine,
 * every execution the stream), the dnnl_sgemm callers call it. A primitive in kiln's cache
 * was made for the count it runs with: kiln_ctx_set_threads empties the cache.
 *
 * OpenBLAS is linked but kiln makes no BLAS call (GEMMs are oneDNN's, see gemm.c); it could
 * not be told per context anyway: openblas_set_num_threads sets one count for the whole
 * process (its pthread build's own pool). */
void kiln__dnnl_threads(kiln_ctx *ctx);
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
