/* The context: thread count, RNG, grad mode, backend, step arena and tape. The thread
 * count belongs to the context: every threaded loop asks it (src/core/parallel.h) and the
 * CPU backend hands it to oneDNN per call (src/kernels/cpu/dnnl_util.h); nothing sets
 * OpenMP's process-wide default, so contexts with different counts do not disturb each
 * other. */
#include "core/internal.h"
#include "kernels/backend.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

kiln_ctx_params kiln_ctx_default_params(void)
{
    return (kiln_ctx_params){.n_threads = 0, .seed = 42, .arena_block_bytes = 0};
}

int kiln__default_threads(void)
{
    const char *e = getenv("OMP_NUM_THREADS");
    if (e) {
        char *end;
        long v = strtol(e, &end, 10);
        if (end != e && v > 0 && v <= 4096 && (*end == '\0' || *end == ',')) return (int)v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

kiln_ctx *kiln_ctx_new(const kiln_ctx_params *p)
{
    kiln_ctx_params d = kiln_ctx_default_params();
    if (!p) p = &d;
    if (p->n_threads < 0) return kiln__errp(KILN_STATUS_INVALID, "ctx: n_threads %d < 0", p->n_threads);
    kiln_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return kiln__errp(KILN_STATUS_NOMEM, "ctx: out of memory");
    ctx->grad_enabled = true;
    ctx->rng = (kiln_rng_state){p->seed, 0};
    kiln__arena_init(&ctx->arena, p->arena_block_bytes);
    ctx->backend = &kiln__cpu_backend;
    if (ctx->backend->init(ctx) < 0) {
        free(ctx);
        return NULL;
    }
    if (kiln_ctx_set_threads(ctx, p->n_threads) < 0) {
        kiln_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

void kiln_ctx_free(kiln_ctx *ctx)
{
    if (!ctx) return;
    ctx->backend->free(ctx);
    kiln__arena_free(&ctx->arena);
    free(ctx);
}

int kiln_ctx_threads(const kiln_ctx *ctx) { return ctx->n_threads; }

kiln_status kiln_ctx_set_threads(kiln_ctx *ctx, int n)
{
    if (n < 0) return kiln__err(KILN_STATUS_INVALID, "ctx: thread count %d < 0", n);
    int old = ctx->n_threads;
    ctx->n_threads = n ? n : kiln__default_threads();
    if (old && old != ctx->n_threads && ctx->backend->set_threads) ctx->backend->set_threads(ctx);
    return KILN_STATUS_OK;
}

bool kiln_grad_enabled(const kiln_ctx *ctx) { return ctx->grad_enabled; }

bool kiln_set_grad_enabled(kiln_ctx *ctx, bool on)
{
    bool old = ctx->grad_enabled;
    ctx->grad_enabled = on;
    return old;
}
