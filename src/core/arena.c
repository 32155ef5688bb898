/* The step arena: a list of large blocks handed out by bumping an offset. Marks and
 * rewinds free whole regions at once; blocks are kept for the next step, so a steady
 * training step allocates nothing from the heap. Buffers from kiln__step_alloc_reusable can also
 * be given back one at a time (kiln_backward gives back each gradient its node has consumed):
 * a table of them, each free or in use, searched for the smallest free one that fits. */
#include "core/internal.h"

#include <string.h>

#define ALIGN 64

kiln_status kiln__arena_init(kiln__arena *a, size_t block_bytes)
{
    memset(a, 0, sizeof *a);
    a->block_bytes = block_bytes ? block_bytes : ((size_t)64 << 20);
    return KILN_STATUS_OK;
}

void kiln__arena_free(kiln__arena *a)
{
    for (size_t i = 0; i < a->n_blocks; i++) kiln__free(a->blocks[i].base, a->blocks[i].size);
    free(a->blocks);
    free(a->reuse);
    memset(a, 0, sizeof *a);
}

/* Inserts a new block of at least `need` bytes at position `at`. */
static int insert_block(kiln__arena *a, size_t at, size_t need)
{
    if (a->n_blocks == a->cap_blocks) {
        size_t cap = a->cap_blocks ? 2 * a->cap_blocks : 8;
        kiln__block *nb = realloc(a->blocks, cap * sizeof *nb);
        if (!nb) return -1;
        a->blocks = nb;
        a->cap_blocks = cap;
    }
    size_t size = need > a->block_bytes ? need : a->block_bytes;
    unsigned char *base = kiln__malloc(size);
    if (!base) return -1;
    memmove(a->blocks + at + 1, a->blocks + at, (a->n_blocks - at) * sizeof *a->blocks);
    a->blocks[at] = (kiln__block){base, size};
    a->n_blocks++;
    return 0;
}

/* Blocks after the current one hold nothing of this step. Makes block `at` (too small for need)
 * one of at least need bytes: a later block that is big enough is swapped in, or the small one is
 * freed and a larger one made in its place (an eighth more than need, so growing sizes, as
 * variable-length batches ask, reallocate rarely). The arena's size so stays bounded by what
 * one step needs instead of gaining a block at every new size. */
static int replace_block(kiln__arena *a, size_t at, size_t need)
{
    for (size_t j = at + 1; j < a->n_blocks; j++)
        if (a->blocks[j].size >= need) {
            kiln__block t = a->blocks[at];
            a->blocks[at] = a->blocks[j];
            a->blocks[j] = t;
            return 0;
        }
    size_t size = need + need / 8;
    if (size < a->block_bytes) size = a->block_bytes;
    unsigned char *base = kiln__malloc(size);
    if (!base) return -1;
    kiln__free(a->blocks[at].base, a->blocks[at].size);
    a->blocks[at] = (kiln__block){base, size};
    return 0;
}

static void *arena_alloc(kiln__arena *a, size_t bytes)
{
    size_t need = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (need < bytes) return NULL;
    if (a->n_blocks == 0) {
        if (insert_block(a, 0, need) < 0) return NULL;
        a->cur = 0;
        a->off = 0;
        a->used_before = 0;
    }
    while (a->off + need > a->blocks[a->cur].size) {
        size_t next = a->cur + 1;
        if (next == a->n_blocks) {
            if (insert_block(a, next, need) < 0) return NULL;
        } else if (a->blocks[next].size < need && replace_block(a, next, need) < 0) {
            return NULL;
        }
        a->used_before += a->blocks[a->cur].size;
        a->cur = next;
        a->off = 0;
    }
    void *p = a->blocks[a->cur].base + a->off;
    a->off += need;
    size_t used = a->used_before + a->off;
    if (used > a->peak) a->peak = used;
    return p;
}

void *kiln_step_alloc(kiln_ctx *ctx, size_t bytes)
{
    void *p = arena_alloc(&ctx->arena, bytes);
    if (!p) return kiln__errp(KILN_STATUS_NOMEM, "step arena: cannot allocate %zu bytes", bytes);
    return p;
}

void *kiln__step_alloc_reusable(kiln_ctx *ctx, size_t bytes)
{
    kiln__arena *a = &ctx->arena;
    if (bytes < KILN_REUSE_MIN) return kiln_step_alloc(ctx, bytes);
    kiln__reuse *best = NULL;
    for (size_t i = 0; i < a->n_reuse; i++) {
        kiln__reuse *r = &a->reuse[i];
        if (r->free && r->cap >= bytes && r->cap / 2 <= bytes && (!best || r->cap < best->cap)) best = r;
    }
    if (best) {
        best->free = false;
        return best->p;
    }
    if (a->n_reuse == a->cap_reuse) {
        size_t cap = a->cap_reuse ? 2 * a->cap_reuse : 16;
        kiln__reuse *nr = realloc(a->reuse, cap * sizeof *nr);
        if (!nr) return kiln__errp(KILN_STATUS_NOMEM, "step arena: cannot grow the table of reusable buffers");
        a->reuse = nr;
        a->cap_reuse = cap;
    }
    unsigned char *p = kiln_step_alloc(ctx, bytes);
    if (!p) return NULL;
    /* the allocation is the last one of the current block */
    a->reuse[a->n_reuse++] = (kiln__reuse){p, bytes, a->cur, (size_t)(p - a->blocks[a->cur].base), false};
    return p;
}

void kiln__step_release(kiln_ctx *ctx, const void *p)
{
    kiln__arena *a = &ctx->arena;
    for (size_t i = a->n_reuse; p && i-- > 0;)
        if (a->reuse[i].p == p) {
            a->reuse[i].free = true;
            return;
        }
}

bool kiln__step_reusable(const kiln_ctx *ctx, const void *p)
{
    const kiln__arena *a = &ctx->arena;
    for (size_t i = a->n_reuse; p && i-- > 0;)
        if (a->reuse[i].p == p) return !a->reuse[i].free;
    return false;
}

kiln_mark kiln_step_mark(const kiln_ctx *ctx)
{
    return (kiln_mark){ctx->arena.cur, ctx->arena.off, ctx->tape};
}

/* After a rewind to the very start nothing of the step lives. A step that spread over several
 * blocks left the tail of each unused, or touched by scratch that went elsewhere another time (the
 * AWD-LSTM LM step: 17 MB of resident slack over 6 blocks of 64 MiB); its blocks become one of the
 * largest size a step has needed so far (the peak, slack included, so a step as large fits), and a
 * steady step then lies in one block with no slack. A new, larger step spills into new blocks again
 * and the next rewind to the start merges them (at most once per growth of the peak). */
static void merge_blocks(kiln__arena *a)
{
    size_t size = (a->peak + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (size < a->block_bytes) size = a->block_bytes;
    for (size_t i = 0; i < a->n_blocks; i++) kiln__free(a->blocks[i].base, a->blocks[i].size);
    a->n_blocks = 0; /* if the new block cannot be had, the next allocation makes blocks as before */
    unsigned char *base = kiln__malloc(size);
    if (base) a->blocks[a->n_blocks++] = (kiln__block){base, size};
}

void kiln_step_rewind(kiln_ctx *ctx, kiln_mark m)
{
    kiln__arena *a = &ctx->arena;
    if (m.block == 0 && m.offset == 0 && a->n_blocks > 1) merge_blocks(a);
    if (a->n_blocks == 0) {
        ctx->tape = NULL;
        a->n_reuse = 0;
        return;
    }
    a->cur = m.block < a->n_blocks ? m.block : 0;
    a->off = m.block < a->n_blocks ? m.offset : 0;
    /* forget the reusable buffers at or after the mark (the table is in allocation order) */
    while (a->n_reuse > 0) {
        const kiln__reuse *r = &a->reuse[a->n_reuse - 1];
        if (r->block < a->cur || (r->block == a->cur && r->off < a->off)) break;
        a->n_reuse--;
    }
    a->used_before = 0;
    for (size_t i = 0; i < a->cur; i++) a->used_before += a->blocks[i].size;
    ctx->tape = m.tape;
}

void kiln_step_reset(kiln_ctx *ctx)
{
    kiln_step_rewind(ctx, (kiln_mark){0, 0, NULL});
}

size_t kiln_step_bytes(const kiln_ctx *ctx) { return ctx->arena.used_before + ctx->arena.off; }
size_t kiln_step_peak_bytes(const kiln_ctx *ctx) { return ctx->arena.peak; }
