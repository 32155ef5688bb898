/* The CPU backend: oneDNN engine and stream per context, and the kernel tables. */
#include "kernels/backend.h"
#include "kernels/conv.h"
#include "kernels/dense.h"
#include "kernels/eltwise.h"
#include "kernels/rnn.h"
#include "kernels/cpu/dnnl_util.h"

#include <stdlib.h>
#ifdef KILN_HAVE_OPENMP
#include <omp.h>
#endif

typedef struct cpu_state {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    kiln__cdnn_cache cache;
} cpu_state;

const char *kiln__dnnl_status_str(dnnl_status_t s)
{
    switch (s) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented";
    case dnnl_iterator_ends: return "iterator ends";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    default: return "unknown status";
    }
}

/* dnnl_sgemm takes its packing buffers from posix_memalign on every call (about 280 KB for a
 * 64 x 430 x 200 product). glibc maps requests above its mmap threshold and unmaps them on
 * free; the threshold then rises to the freed chunk's size, which the next aligned request of
 * the same size still exceeds, so a small model's GEMMs paid an mmap, a munmap and ~70 page
 * faults each, a few times a step (11% of the tabular step of bench/bench_tab.c). Freeing one
 * 4 MiB block raises the threshold above such buffers (glibc's own rule after a large free;
 * nothing changes when a program has set M_MMAP_THRESHOLD) and they come from the heap. */
static void raise_mmap_threshold(void)
{
    static int done;
    if (done) return;
    done = 1;
    void *volatile p = malloc((size_t)4 << 20); /* volatile: the pair must not be optimised away */
    free(p);
}

static kiln_status cpu_init(kiln_ctx *ctx)
{
    raise_mmap_threshold();
    cpu_state *st = calloc(1, sizeof *st);
    if (!st) return kiln__err(KILN_STATUS_NOMEM, "cpu backend: out of memory");
    if (dnnl_engine_create(&st->engine, dnnl_cpu, 0) != dnnl_success) {
        free(st);
        return kiln__err(KILN_STATUS_BACKEND, "cpu backend: oneDNN engine creation failed");
    }
    if (dnnl_stream_create(&st->stream, st->engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(st->engine);
        free(st);
        return kiln__err(KILN_STATUS_BACKEND, "cpu backend: oneDNN stream creation failed");
    }
    ctx->backend_state = st;
    return KILN_STATUS_OK;
}

static void cpu_free(kiln_ctx *ctx)
{
    cpu_state *st = ctx->backend_state;
    if (!st) return;
    kiln__cdnn_cache_clear(&st->cache);
    dnnl_stream_destroy(st->stream);
    dnnl_engine_destroy(st->engine);
    free(st);
    ctx->backend_state = NULL;
}

/* Primitives made for the old thread count (see kiln__dnnl_threads) are dropped. */
static void cpu_set_threads(kiln_ctx *ctx)
{
    cpu_state *st = ctx->backend_state;
    if (st) kiln__cdnn_cache_clear(&st->cache);
}

void kiln__dnnl_threads(kiln_ctx *ctx)
{
#ifdef KILN_HAVE_OPENMP
    if (omp_get_max_threads() != ctx->n_threads) omp_set_num_threads(ctx->n_threads);
#else
    (void)ctx;
#endif
}

dnnl_engine_t kiln__dnnl_engine(kiln_ctx *ctx)
{
    kiln__dnnl_threads(ctx);
    return ((cpu_state *)ctx->backend_state)->engine;
}

kiln__cdnn_cache *kiln__dnnl_cache(kiln_ctx *ctx) { return &((cpu_state *)ctx->backend_state)->cache; }

dnnl_stream_t kiln__dnnl_stream(kiln_ctx *ctx)
{
    kiln__dnnl_threads(ctx);
    return ((cpu_state *)ctx->backend_state)->stream;
}

const kiln_backend kiln__cpu_backend = {
    .name = "cpu",
    .init = cpu_init,
    .free = cpu_free,
    .set_threads = cpu_set_threads,
    .eltwise = &kiln__cpu_eltwise,
    .dense = &kiln__cpu_dense,
    .conv = &kiln__cpu_conv,
    .rnn = &kiln__cpu_rnn,
};
