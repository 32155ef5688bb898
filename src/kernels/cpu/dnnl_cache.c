/* A per-context cache of oneDNN primitives keyed by bytes (an op tag and its geometry, or
 * the memory descriptions of a reorder). Creating a primitive descriptor walks oneDNN's
 * implementation list and allocates, even when oneDNN's own primitive cache then hits:
 * tens of microseconds per call, which adds up on small layers (a step of the lesson-7
 * net runs ~150 primitives of a few microseconds each). Here a hit is a hash and a
 * memcmp. The table is open-addressed; when it is full it is emptied (shapes rarely vary
 * enough for that to matter). Owned by the CPU backend's state (backend_cpu.c). */
#define KILN_CONV_CPU_INTERNAL
#include "kernels/conv.h"

#include <string.h>

static uint64_t hash_bytes(const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        h = (h ^ v) * 1099511628211ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h ? h : 1;
}

void kiln__cdnn_cache_clear(kiln__cdnn_cache *c)
{
    for (int i = 0; i < KILN_CDNN_CACHE_SLOTS; i++) {
        kiln__cdnn_cache_entry *e = &c->e[i];
        if (!e->hash) continue;
        dnnl_primitive_destroy(e->prim);
        free(e->key);
        memset(e, 0, sizeof *e);
    }
    c->n = 0;
}

dnnl_primitive_t kiln__cdnn_cached(kiln_ctx *ctx, const void *key, size_t n)
{
    kiln__cdnn_cache *c = kiln__dnnl_cache(ctx);
    uint64_t h = hash_bytes(key, n);
    for (int i = 0; i < KILN_CDNN_CACHE_SLOTS; i++) {
        kiln__cdnn_cache_entry *e = &c->e[(h + (uint64_t)i) % KILN_CDNN_CACHE_SLOTS];
        if (!e->hash) return NULL;
        if (e->hash == h && e->n == n && !memcmp(e->key, key, n)) return e->prim;
    }
    return NULL;
}

dnnl_primitive_t kiln__cdnn_keep(kiln_ctx *ctx, const char *op, const void *key, size_t n,
                                 const_dnnl_primitive_desc_t pd)
{
    dnnl_primitive_t prim = NULL;
    dnnl_status_t s = dnnl_primitive_create(&prim, pd);
    if (s != dnnl_success) {
        kiln__err(KILN_STATUS_BACKEND, "%s: oneDNN dnnl_primitive_create (%s) failed: %s", op, kiln__cdnn_impl(pd),
                  kiln__dnnl_status_str(s));
        return NULL;
    }
    kiln__cdnn_cache *c = kiln__dnnl_cache(ctx);
    if (c->n >= KILN_CDNN_CACHE_SLOTS * 3 / 4) kiln__cdnn_cache_clear(c);
    void *copy = malloc(n);
    if (!copy) {
        dnnl_primitive_destroy(prim);
        kiln__err(KILN_STATUS_NOMEM, "%s: out of memory caching a oneDNN primitive", op);
        return NULL;
    }
    memcpy(copy, key, n);
    uint64_t h = hash_bytes(key, n);
    for (int i = 0; i < KILN_CDNN_CACHE_SLOTS; i++) {
        kiln__cdnn_cache_entry *e = &c->e[(h + (uint64_t)i) % KILN_CDNN_CACHE_SLOTS];
        if (e->hash) continue;
        *e = (kiln__cdnn_cache_entry){.hash = h, .n = n, .key = copy, .prim = prim};
        c->n++;
        return prim;
    }
    KILN_ASSERT(0); /* unreachable: the table is never more than 3/4 full */
    return NULL;
}
