/* kiln core: status codes and error messages, dtypes, tensors (shape, strides, views),
 * the context (threads, RNG, backend, step arena, autograd tape) and the persistent store
 * that holds parameters, gradients and running statistics as flat buffers.
 *
 * Ownership: tensors made by ops live in the context's step arena and die at the next
 * kiln_step_reset/rewind; tensors made by a kiln_store live as long as the store.
 * Dimension order is NCHW for images and (B, T, ...) for sequences throughout kiln. */
#ifndef KILN_CORE_H
#define KILN_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_VERSION_STRING "0.1.0"
#define KILN_MAX_DIMS 8

/* ---- status and errors ---------------------------------------------------------------- */

typedef enum kiln_status {
    KILN_STATUS_OK = 0,
    KILN_STATUS_INVALID = -1,     /* bad argument: shape, dtype, range */
    KILN_STATUS_NOMEM = -2,       /* allocation failed */
    KILN_STATUS_IO = -3,          /* open/read/write/rename failed */
    KILN_STATUS_FORMAT = -4,      /* a file is malformed */
    KILN_STATUS_UNSUPPORTED = -5, /* valid but not implemented */
    KILN_STATUS_BACKEND = -6,     /* a kernel library (oneDNN, BLAS) failed */
    KILN_STATUS_STATE = -7,       /* call made in the wrong state */
    KILN_STATUS_DIVERGED = -8,    /* training met a NaN or infinite loss, gradient or weight */
} kiln_status;

/* "ok", "invalid argument", ... */
const char *kiln_status_name(kiln_status s);
/* The message of the last error on this thread ("" when none). Names the op, tensor,
 * shape, file or field at fault. Valid until the next kiln call on this thread. The calls a
 * program checks by hand clear it when they succeed, so a message never outlives the call
 * that failed: the application layer (kiln/apps.h: constructors, train, export / load,
 * open_data, predict, interpret, show_batch) and the Learner's fits. */
const char *kiln_last_error(void);
/* The status of the last error on this thread (KILN_STATUS_OK when none), so a call that
 * returns NULL does not lose its code. */
kiln_status kiln_last_status(void);
void kiln_clear_error(void);
/* Sets this thread's error (a printf-style message naming what failed, and s) and returns s:
 * `return kiln_error(KILN_STATUS_INVALID, "my_metric: %d classes", n);` from a callback,
 * metric, loss or data source. A kiln call that gets the error back stops and passes it on
 * (a fit names the callback when the message is empty). s == OK is taken as INVALID. */
#if defined(__GNUC__)
#define KILN_PRINTF_FMT(f, a) __attribute__((format(printf, f, a)))
#else
#define KILN_PRINTF_FMT(f, a)
#endif
kiln_status kiln_error(kiln_status s, const char *fmt, ...) KILN_PRINTF_FMT(2, 3);

/* ---- dtypes --------------------------------------------------------------------------- */

typedef enum kiln_dtype {
    KILN_DTYPE_F32 = 0,
    KILN_DTYPE_F16,
    KILN_DTYPE_BF16,
    KILN_DTYPE_I64,
    KILN_DTYPE_I32,
    KILN_DTYPE_U8,
    KILN_DTYPE_COUNT
} kiln_dtype;

size_t kiln_dtype_size(kiln_dtype d);
const char *kiln_dtype_name(kiln_dtype d); /* "f32", "i64", ... */

/* ---- tensors -------------------------------------------------------------------------- */

typedef struct kiln_node kiln_node; /* autograd record, see src/autograd/tape.h */

typedef struct kiln_tensor {
    kiln_dtype dtype;
    int ndim;                        /* 0 .. KILN_MAX_DIMS; 0 = scalar */
    int64_t shape[KILN_MAX_DIMS];
    int64_t stride[KILN_MAX_DIMS];   /* in elements; 0 for broadcast (expanded) dims */
    void *data;                      /* address of element [0, ..., 0] */
    struct kiln_tensor *grad;        /* dL/dthis, same shape; contiguous, or channels-last when
                                        this is; NULL until needed */
    kiln_node *node;                 /* op that made it, NULL for leaves */
    bool requires_grad;
    const char *name;                /* for error messages, may be NULL */
    struct kiln__rowset *rows;       /* internal (src/core/rowset.h): on a store parameter whose
                                        optimizer step is sparse, the rows its gradient reached;
                                        NULL otherwise. kiln_tensor_wrap sets it NULL: a tensor
                                        filled by hand must start zeroed. */
    int32_t pending_uses;            /* internal: while kiln_backward runs with leaf hooks
                                        (autograd.h kiln_backward_hooks), the recorded nodes
                                        with this leaf as an input that have not run yet */
} kiln_tensor;

int64_t kiln_numel(const kiln_tensor *t);
bool kiln_is_contiguous(const kiln_tensor *t);
/* Channels-last: a 4-D (N, C, H, W) tensor stored NHWC, as PyTorch's torch.channels_last:
 * strides exactly (H*W*C, 1, W*C, C). Convolution, batch norm and elementwise ops keep this
 * layout (no reorders between layers); other ops take a contiguous copy. */
bool kiln_is_channels_last(const kiln_tensor *t);
bool kiln_same_shape(const kiln_tensor *a, const kiln_tensor *b);
/* Writes "(2, 3, 4)" into buf and returns buf. */
char *kiln_shape_str(const kiln_tensor *t, char *buf, size_t n);
/* Fills t as a contiguous tensor over caller-owned memory (no grad, no node). */
kiln_tensor *kiln_tensor_wrap(kiln_tensor *t, kiln_dtype dtype, int ndim, const int64_t *shape,
                              void *data);
/* The value of a one-element f32 tensor (any ndim). NAN if t is not one element. */
float kiln_item(const kiln_tensor *t);
/* Element at a flat (row-major logical) index, respecting strides; f32/i32/i64/u8 as double. */
double kiln_get_flat(const kiln_tensor *t, int64_t i);
/* PyTorch-like print: "tensor([[...]]), shape (2, 3)"; long dims are elided with "...". */
kiln_status kiln_tensor_print(FILE *f, const kiln_tensor *t, const char *label);

/* ---- context -------------------------------------------------------------------------- */

typedef struct kiln_ctx kiln_ctx;

typedef struct kiln_ctx_params {
    int n_threads;            /* 0 = OMP_NUM_THREADS if set, else all cores; used by every
                                 threaded kernel of this context (OpenMP loops and oneDNN),
                                 whatever other contexts use */
    uint64_t seed;            /* RNG seed */
    size_t arena_block_bytes; /* size of each step-arena block; 0 = 64 MiB */
} kiln_ctx_params;

kiln_ctx_params kiln_ctx_default_params(void);
kiln_ctx *kiln_ctx_new(const kiln_ctx_params *p); /* NULL on failure (message set) */
void kiln_ctx_free(kiln_ctx *ctx);
int kiln_ctx_threads(const kiln_ctx *ctx);
kiln_status kiln_ctx_set_threads(kiln_ctx *ctx, int n); /* n as n_threads; affects this ctx only */

/* Step arena: every op output and the autograd tape come from here. A mark/rewind pair
 * frees everything made since the mark; reset frees everything. Blocks are kept, so a
 * steady-state training step does no malloc. */
typedef struct kiln_mark {
    size_t block, offset;
    kiln_node *tape;
} kiln_mark;
kiln_mark kiln_step_mark(const kiln_ctx *ctx);
void kiln_step_rewind(kiln_ctx *ctx, kiln_mark m);
void kiln_step_reset(kiln_ctx *ctx);
size_t kiln_step_bytes(const kiln_ctx *ctx);      /* in use now */
size_t kiln_step_peak_bytes(const kiln_ctx *ctx); /* most ever in use */
/* Raw aligned (64 B) memory from the step arena; NULL + message on failure. */
void *kiln_step_alloc(kiln_ctx *ctx, size_t bytes);

/* All memory kiln holds (arena blocks, stores, kernel scratch), process-wide. */
size_t kiln_mem_bytes(void);
size_t kiln_mem_peak_bytes(void);

/* Gradient recording: on by default. Returns the previous setting. */
bool kiln_grad_enabled(const kiln_ctx *ctx);
bool kiln_set_grad_enabled(kiln_ctx *ctx, bool on);

/* ---- RNG: Philox4x32-10, counter based ------------------------------------------------ *
 * Every draw takes a block of counters from the context; element i of a draw depends only
 * on (seed, counter, i), so results do not depend on the thread count. */
typedef struct kiln_rng_state {
    uint64_t seed;
    uint64_t counter;
} kiln_rng_state;
kiln_rng_state kiln_rng_get(const kiln_ctx *ctx);
void kiln_rng_set(kiln_ctx *ctx, kiln_rng_state s);
void kiln_rng_seed(kiln_ctx *ctx, uint64_t seed);
/* The state as named keys, for checkpoints: JSON {"seed": "<u64>", "counter": "<u64>"}
 * (decimal strings: a JSON number is a double). to_json returns malloc'd text (free()), NULL
 * + message when out of memory; from_json refuses (FORMAT) text that is not such an object,
 * naming the key, and leaves *out untouched then. */
char *kiln_rng_state_to_json(kiln_rng_state s);
kiln_status kiln_rng_state_from_json(const char *json, kiln_rng_state *out);
/* Reserve n counters; returns the first. Kernels use kiln_philox_uniform(seed, c + i). */
uint64_t kiln_rng_take(kiln_ctx *ctx, uint64_t n);
/* A uniform float in [0, 1) from (seed, counter). Pure. */
float kiln_philox_uniform(uint64_t seed, uint64_t counter);
void kiln_rng_uniform(kiln_ctx *ctx, float *out, size_t n, float lo, float hi);
void kiln_rng_normal(kiln_ctx *ctx, float *out, size_t n, float mean, float std);

/* ---- tensors in the step arena --------------------------------------------------------- */

kiln_tensor *kiln_empty(kiln_ctx *ctx, kiln_dtype dtype, int ndim, const int64_t *shape);
kiln_tensor *kiln_zeros(kiln_ctx *ctx, kiln_dtype dtype, int ndim, const int64_t *shape);
kiln_tensor *kiln_full(kiln_ctx *ctx, int ndim, const int64_t *shape, float value);
/* Copies numel(shape) elements of dtype from src. */
kiln_tensor *kiln_from_data(kiln_ctx *ctx, kiln_dtype dtype, int ndim, const int64_t *shape,
                            const void *src);
kiln_tensor *kiln_randn(kiln_ctx *ctx, int ndim, const int64_t *shape, float mean, float std);
kiln_tensor *kiln_rand(kiln_ctx *ctx, int ndim, const int64_t *shape, float lo, float hi);
kiln_tensor *kiln_empty_like(kiln_ctx *ctx, const kiln_tensor *t); /* contiguous */
/* Like t's layout: channels-last when t is (see kiln_is_channels_last), else contiguous. */
kiln_tensor *kiln_empty_like_layout(kiln_ctx *ctx, const kiln_tensor *t);
/* An uninitialised f32 (N, C, H, W) tensor stored channels-last (NHWC). */
kiln_tensor *kiln_empty_channels_last(kiln_ctx *ctx, const int64_t *shape);
kiln_tensor *kiln_zeros_like(kiln_ctx *ctx, const kiln_tensor *t);

/* ---- persistent store: parameters, gradients, buffers ---------------------------------- *
 * Declare every tensor first, then kiln_store_alloc makes three flat f32 buffers (params,
 * grads, buffers) and points each tensor at its slice; a param's ->grad is its slice of the
 * grad buffer. Everything is zeroed. Tensors belong to the store and live until it is freed. */
typedef struct kiln_store kiln_store;

typedef enum kiln_store_kind {
    KILN_STORE_PARAMS = 0,
    KILN_STORE_GRADS,
    KILN_STORE_BUFFERS,
} kiln_store_kind;

kiln_store *kiln_store_new(void);
void kiln_store_free(kiln_store *s);
/* A trainable f32 parameter (requires_grad, with a grad view). NULL + message on error. */
kiln_tensor *kiln_store_param(kiln_store *s, const char *name, int ndim, const int64_t *shape);
/* A non-trainable f32 buffer (running mean/var). */
kiln_tensor *kiln_store_buffer(kiln_store *s, const char *name, int ndim, const int64_t *shape);
kiln_status kiln_store_alloc(kiln_store *s);
/* The flat buffer of one kind and its element count (NULL before kiln_store_alloc). */
float *kiln_store_flat(kiln_store *s, kiln_store_kind kind, size_t *numel);
void kiln_store_zero_grad(kiln_store *s);
size_t kiln_store_count(const kiln_store *s);
kiln_tensor *kiln_store_at(kiln_store *s, size_t i);
kiln_tensor *kiln_store_find(kiln_store *s, const char *name);
bool kiln_store_is_param(const kiln_store *s, size_t i);
/* The first tensor, in declaration order, whose values of the given kind (PARAMS: the
 * parameters, GRADS: their gradients, BUFFERS: running statistics) hold a NaN or an
 * infinity: its index (kiln_store_at, ->name), and in *elem (may be NULL) the flat index of
 * the first bad element within it. -1 when all are finite or the store is not allocated.
 * Lets a caller refuse a model with broken weights, or stop a diverging fit, by name. */
int64_t kiln_store_first_nonfinite(const kiln_store *s, kiln_store_kind kind, int64_t *elem);

#ifdef __cplusplus
}
#endif
#endif
