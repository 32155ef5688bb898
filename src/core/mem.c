/* Tracked, 64-byte aligned heap memory: every large allocation kiln makes (arena blocks,
 * stores, kernel scratch) goes through here so kiln_mem_peak_bytes can report it. */
#include "core/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_size_t g_bytes, g_peak;

static void account(size_t bytes)
{
    size_t now = atomic_fetch_add(&g_bytes, bytes) + bytes;
    size_t peak = atomic_load(&g_peak);
    while (now > peak && !atomic_compare_exchange_weak(&g_peak, &peak, now)) {
    }
}

void *kiln__malloc(size_t bytes)
{
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) account(bytes);
    return p;
}

void *kiln__calloc(size_t bytes)
{
    void *p = kiln__malloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void *kiln__realloc(void *p, size_t old_bytes, size_t bytes)
{
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    void *q = realloc(p, rounded ? rounded : 64);
    if (!q) return NULL;
    atomic_fetch_sub(&g_bytes, old_bytes);
    account(bytes);
    return q;
}

void kiln__free(void *p, size_t bytes)
{
    if (!p) return;
    atomic_fetch_sub(&g_bytes, bytes);
    free(p);
}

size_t kiln_mem_bytes(void) { return atomic_load(&g_bytes); }
size_t kiln_mem_peak_bytes(void) { return atomic_load(&g_peak); }
