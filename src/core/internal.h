/* Internal to libkiln: the context's layout, error helpers, tracked allocation, and small
 * tensor helpers shared by the layers. Names here start with kiln__ and are not API. */
#ifndef KILN_CORE_INTERNAL_H
#define KILN_CORE_INTERNAL_H

#include "kiln/core.h"

#include <stdarg.h>
#include <stdlib.h>

typedef struct kiln_backend kiln_backend;

typedef struct kiln__block {
    unsigned char *base;
    size_t size;
} kiln__block;

/* A buffer of the step arena that can be given back before the step ends (kiln__step_release). */
typedef struct kiln__reuse {
    unsigned char *p;
    size_t cap;          /* bytes */
    size_t block, off;   /* where it lies in the arena: a rewind to before it forgets it */
    bool free;
} kiln__reuse;

typedef struct kiln__arena {
    kiln__block *blocks;
    size_t n_blocks, cap_blocks;
    size_t cur;        /* index of the block being filled */
    size_t off;        /* bytes used in blocks[cur] */
    size_t used_before;/* bytes in blocks before cur (counted as used, including slack) */
    size_t peak;
    size_t block_bytes;
    kiln__reuse *reuse; /* buffers from kiln__step_alloc_reusable, oldest first */
    size_t n_reuse, cap_reuse;
} kiln__arena;

struct kiln_ctx {
    int n_threads;                 /* every threaded loop of this context (src/core/parallel.h) */
    kiln_rng_state rng;
    bool grad_enabled;
    kiln__arena arena;
    kiln_node *tape;               /* newest recorded node; linked through node->prev */
    /* kiln_backward's hooks (autograd.h kiln_set_backward_hooks); all NULL: none */
    kiln_status (*bw_leaf_ready)(void *user, kiln_tensor *leaf);
    kiln_status (*bw_tick)(void *user);
    void *bw_user;
    const kiln_backend *backend;
    void *backend_state;           /* owned by the backend (oneDNN engine and stream) */
};

/* Sets the thread's error message ("op: message") and status, returns s: the public
 * kiln_error (core.h) under the name the library has always used. */
#define kiln__err kiln_error
/* Same, returning NULL, for functions that return pointers. */
void *kiln__errp(kiln_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Puts prefix before this thread's message (whole, however long: a long one loses its middle,
 * never its cause), with ": " between them unless prefix ends in a space, and returns s. */
kiln_status kiln__err_prefix(kiln_status s, const char *prefix);
/* A malloc'd copy of this thread's message (NULL when out of memory), for code that must run
 * other calls before it reports an earlier error. */
char *kiln__error_dup(void);
/* Seconds on the monotonic clock (clock.c): for differences only. */
double kiln__now(void);

/* "kiln: warning: <message>" on stderr (bad input that is accepted, e.g. an unknown key). */
void kiln__warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Offset of the first byte of s[0..n) that is not part of strict UTF-8 (no overlongs,
 * surrogates or code points above U+10FFFF), or -1 when all of it is valid. */
int64_t kiln__utf8_invalid_at(const char *s, size_t n);
/* True when a previous call left an error message on this thread. */
bool kiln__has_error(void);
/* A public call that succeeded: clears the thread's error (a message left by an earlier
 * failure, or by a fallback tried on the way) and returns OK; st when it is an error. */
static inline kiln_status kiln__done(kiln_status st)
{
    if (st == KILN_STATUS_OK) kiln_clear_error();
    return st;
}

/* Tracked heap memory (counted in kiln_mem_bytes). Aligned to 64 bytes. */
void *kiln__malloc(size_t bytes);
void *kiln__calloc(size_t bytes);
void kiln__free(void *p, size_t bytes);
/* realloc of a block from kiln__malloc (old_bytes as asked then): the contents kept, in place
 * when it can (a large block grows or shrinks by remapping pages, without a second copy), but
 * not the 64-byte alignment: for buffers read element by element (the optimizer's state).
 * NULL (p untouched) when out of memory. */
void *kiln__realloc(void *p, size_t old_bytes, size_t bytes);

/* Fills shape/stride of t as contiguous for shape. */
void kiln__set_contiguous(kiln_tensor *t, int ndim, const int64_t *shape);
/* A tensor struct in the arena describing a view of x's data (same dtype, no node). */
kiln_tensor *kiln__view(kiln_ctx *ctx, const kiln_tensor *x, int ndim, const int64_t *shape,
                        const int64_t *stride, void *data);
/* Label for messages: the tensor's name or "tensor"; shape string in buf. */
const char *kiln__tname(const kiln_tensor *t);
/* Normalises a possibly negative dim; -1 (error set) when out of range. */
int kiln__dim(const char *op, int dim, int ndim);
/* Broadcast shape of a and b into out (returns ndim) or -1 with a message naming op. */
int kiln__broadcast_shape(const char *op, const kiln_tensor *a, const kiln_tensor *b, int64_t *out);
/* Returns 0 when t is f32, else sets "op: tensor x must be f32, got i64" and returns -1. */
int kiln__check_f32(const char *op, const kiln_tensor *t, const char *argname);

/* dst = src for two tensors of the same logical shape with any strides (stride 0 allowed
 * in src), on the calling thread (src/core/strided.c says when to use it). */
void kiln__strided_copy(kiln_tensor *dst, const kiln_tensor *src);
/* The thread count that kiln_ctx_params.n_threads = 0 asks for: OMP_NUM_THREADS when it
 * holds a positive number (its first entry, as OpenMP reads it), else every online core. */
int kiln__default_threads(void);

/* Step arena internals. */
kiln_status kiln__arena_init(kiln__arena *a, size_t block_bytes);
void kiln__arena_free(kiln__arena *a);
/* Step-arena memory that may be given back before the step ends: kiln__step_alloc_reusable returns
 * at least `bytes`, reusing a buffer given back with kiln__step_release when one fits (at most twice
 * the size; the smallest that fits), else new arena memory that it remembers (requests under
 * KILN_REUSE_MIN bytes are plain kiln_step_alloc). kiln__step_release(p) of a remembered buffer
 * makes it free for the next request; of anything else it does nothing. A rewind forgets the
 * buffers that lie after its mark (their memory is the bump allocator's again). For gradients that
 * kiln_backward drops once their node has used them. NULL + message on failure. */
#define KILN_REUSE_MIN ((size_t)1 << 20)
void *kiln__step_alloc_reusable(kiln_ctx *ctx, size_t bytes);
void kiln__step_release(kiln_ctx *ctx, const void *p);
/* True when p is a buffer of kiln__step_alloc_reusable in use (memory the autograd owns, not a
 * caller's). */
bool kiln__step_reusable(const kiln_ctx *ctx, const void *p);

/* Early return of NULL from an op when an input is NULL (error already set). */
#define KILN_IN(x) do { if (!(x)) return NULL; } while (0)

/* Programmer bugs only, never bad input. */
#define KILN_ASSERT(c) do { if (!(c)) { fprintf(stderr, "kiln: internal error %s:%d: %s\n", __FILE__, __LINE__, #c); abort(); } } while (0)

#endif
