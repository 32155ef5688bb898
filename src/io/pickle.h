/* The restricted unpickler (pickle.c) that the .pth reader (pth.c) reads torch.save's pickles
 * with. It builds a tree of plain values and never executes anything: the only globals it
 * accepts are the few a state dict names (collections.OrderedDict, torch's tensor rebuilders
 * and storage classes), and REDUCE "calls" them inside the reader by making a value node.
 * Every other global and every opcode torch.save(state_dict) does not write is refused with
 * a message naming it and the file. */
#ifndef KILN_IO_PICKLE_H
#define KILN_IO_PICKLE_H

#include "core/internal.h"

/* Limits on what one pickle may build (a state dict of resnet152 needs a few thousand). */
#define KILN_PK_MAX_STACK ((size_t)1 << 20)   /* values on the stack */
#define KILN_PK_MAX_MARKS 256                 /* nested MARKs (torch writes 3) */
#define KILN_PK_MAX_MEMO ((size_t)1 << 20)    /* memo index */
#define KILN_PK_MAX_NODES ((size_t)1 << 20)   /* values made (about 100 bytes each) */
#define KILN_PK_MAX_STR ((size_t)1 << 20)     /* bytes of one string */

typedef enum kiln__pk_kind {
    KILN_PK_NONE,
    KILN_PK_BOOL,    /* i */
    KILN_PK_INT,     /* i */
    KILN_PK_BIGINT,  /* LONG1 of more than 8 bytes: s, len (little-endian two's complement) */
    KILN_PK_FLOAT,   /* f */
    KILN_PK_STR,     /* s, len (NUL-terminated; may hold NUL bytes) */
    KILN_PK_TUPLE,   /* v, n */
    KILN_PK_LIST,    /* v, n */
    KILN_PK_DICT,    /* v, n: key, value, key, value, ... (n counts both) */
    KILN_PK_GLOBAL,  /* g: a kiln__pk_global; s: "module.name" */
    KILN_PK_STORAGE, /* from BINPERSID: g: storage type (kiln__pk_storage_type), s: key, i: numel */
    KILN_PK_TENSOR,  /* REDUCE of a rebuilder: g: which (KILN_PKG_REBUILD*), v, n: its arguments */
} kiln__pk_kind;

typedef enum kiln__pk_global {
    KILN_PKG_ODICT,         /* collections.OrderedDict */
    KILN_PKG_REBUILD_V2,    /* torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
                               requires_grad, backward_hooks[, metadata]) */
    KILN_PKG_REBUILD,       /* torch._utils._rebuild_tensor(storage, offset, size, stride) */
    KILN_PKG_REBUILD_PARAM, /* torch._utils._rebuild_parameter(tensor, requires_grad, hooks) */
    KILN_PKG_STORAGE,       /* torch.<X>Storage (the type in pk->i) */
} kiln__pk_global;

typedef struct kiln__pk kiln__pk;
struct kiln__pk {
    kiln__pk_kind kind;
    int g;
    int64_t i;
    double f;
    char *s;
    size_t len;
    kiln__pk **v;
    size_t n, cap;
    kiln__pk *next_alloc; /* every node of one load, for freeing */
};

/* A torch storage class: the kiln dtype its bytes become (-1: refused, why says what it
 * holds), the size of one element in the file. */
typedef struct kiln__pk_storage_type {
    const char *name;  /* "FloatStorage" */
    int dtype;         /* kiln_dtype, or -1 */
    int file_size;     /* bytes per element in the file */
    const char *what;  /* "float32", ... */
} kiln__pk_storage_type;
const kiln__pk_storage_type *kiln__pk_storage_type_at(int i);

/* All nodes of one or more loads; free with kiln__pk_free. */
typedef struct kiln__pk_heap {
    kiln__pk *nodes;
    size_t n_nodes;
} kiln__pk_heap;

/* Reads one pickle from buf[0, n) up to its STOP: *out is its value (owned by heap), *used
 * the bytes read. path and what ("data.pkl") name it in messages: "PATH: WHAT byte N: ...".
 * FORMAT for a broken or truncated pickle, UNSUPPORTED for a refused global or opcode. */
kiln_status kiln__pk_load(kiln__pk_heap *heap, const char *path, const char *what, const unsigned char *buf,
                          size_t n, kiln__pk **out, size_t *used);
void kiln__pk_free(kiln__pk_heap *heap);

/* "a str", "an int", ... for messages. */
const char *kiln__pk_kind_str(kiln__pk_kind k);
/* The value of dict d under key (a str), or NULL. */
const kiln__pk *kiln__pk_dict_get(const kiln__pk *d, const char *key);

#endif
