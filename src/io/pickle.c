/* The restricted unpickler: reads exactly what torch.save(state_dict) writes (protocol 2, and
 * the protocol 3-5 opcodes a newer pickler may use for the same values) into a tree of plain
 * values (pickle.h). Nothing is executed: GLOBAL resolves only an allow-list to a tag, REDUCE
 * and BUILD act on those tags inside the reader, and any other global or opcode is refused
 * with a message naming it and the file. Every length, count and index from the input is
 * bounded before use; nothing recurses, so no input can exhaust the C stack. */
#include "io/pickle.h"

#include <stdlib.h>
#include <string.h>

static const kiln__pk_storage_type g_storage[] = {
    {"FloatStorage", KILN_DTYPE_F32, 4, "float32"},
    {"HalfStorage", KILN_DTYPE_F16, 2, "float16"},
    {"BFloat16Storage", KILN_DTYPE_BF16, 2, "bfloat16"},
    {"LongStorage", KILN_DTYPE_I64, 8, "int64"},
    {"IntStorage", KILN_DTYPE_I32, 4, "int32"},
    {"ByteStorage", KILN_DTYPE_U8, 1, "uint8"},
    {"DoubleStorage", KILN_DTYPE_F32, 8, "float64 (read as float32)"},
    {"CharStorage", -1, 1, "int8"},
    {"ShortStorage", -1, 2, "int16"},
    {"BoolStorage", -1, 1, "bool"},
    {"ComplexFloatStorage", -1, 8, "complex64"},
    {"ComplexDoubleStorage", -1, 16, "complex128"},
    {"QInt8Storage", -1, 1, "qint8"},
    {"QUInt8Storage", -1, 1, "quint8"},
    {"QInt32Storage", -1, 4, "qint32"},
};
#define N_STORAGE ((int)(sizeof g_storage / sizeof *g_storage))

const kiln__pk_storage_type *kiln__pk_storage_type_at(int i)
{
    return i >= 0 && i < N_STORAGE ? &g_storage[i] : NULL;
}

static const char *const g_kind[] = {"None", "a bool", "an int", "an int", "a float", "a str", "a tuple",
                                     "a list", "a dict", "a global", "a storage", "a tensor"};

const char *kiln__pk_kind_str(kiln__pk_kind k)
{
    return (unsigned)k < sizeof g_kind / sizeof *g_kind ? g_kind[k] : "?";
}

const kiln__pk *kiln__pk_dict_get(const kiln__pk *d, const char *key)
{
    if (!d || d->kind != KILN_PK_DICT) return NULL;
    for (size_t j = 0; j + 1 < d->n; j += 2)
        if (d->v[j]->kind == KILN_PK_STR && !strcmp(d->v[j]->s, key)) return d->v[j + 1];
    return NULL;
}

void kiln__pk_free(kiln__pk_heap *heap)
{
    if (!heap) return;
    for (kiln__pk *p = heap->nodes, *nx; p; p = nx) {
        nx = p->next_alloc;
        free(p->s);
        free(p->v);
        free(p);
    }
    heap->nodes = NULL;
    heap->n_nodes = 0;
}

/* ---- the machine ---------------------------------------------------------------------------- */

typedef struct pk_state {
    kiln__pk_heap *heap;
    const char *path, *what;
    const unsigned char *buf;
    size_t n, pos, op_pos; /* op_pos: where the current opcode starts */
    kiln__pk **stack;
    size_t sp, stack_cap;
    size_t marks[KILN_PK_MAX_MARKS];
    int n_marks;
    kiln__pk **memo;
    size_t memo_cap, memo_len; /* memo_len: entries set (MEMOIZE's next index) */
} pk_state;

#define PFX "%s: %s byte %zu: "
#define PARG(S) (S)->path, (S)->what, (S)->op_pos

static kiln_status nomem(pk_state *S)
{
    return kiln__err(KILN_STATUS_NOMEM, PFX "out of memory", PARG(S));
}

static kiln_status bad(pk_state *S, const char *why)
{
    return kiln__err(KILN_STATUS_FORMAT, PFX "%s", PARG(S), why);
}

static kiln__pk *node(pk_state *S, kiln__pk_kind kind)
{
    if (S->heap->n_nodes >= KILN_PK_MAX_NODES) {
        kiln__err(KILN_STATUS_FORMAT, PFX "more than %zu values (limit)", PARG(S), KILN_PK_MAX_NODES);
        return NULL;
    }
    kiln__pk *p = calloc(1, sizeof *p);
    if (!p) {
        nomem(S);
        return NULL;
    }
    p->kind = kind;
    p->next_alloc = S->heap->nodes;
    S->heap->nodes = p;
    S->heap->n_nodes++;
    return p;
}

/* Appends x to the pointer array (*v, *n, *cap), doubling it when full. */
static kiln_status append(pk_state *S, kiln__pk ***v, size_t *n, size_t *cap, kiln__pk *x)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 8;
        kiln__pk **nv = realloc(*v, c * sizeof *nv);
        if (!nv) return nomem(S);
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return KILN_STATUS_OK;
}

/* Appends x to a tuple, list or dict's items. */
static kiln_status add_item(pk_state *S, kiln__pk *c, kiln__pk *x)
{
    return append(S, &c->v, &c->n, &c->cap, x);
}

static kiln_status push(pk_state *S, kiln__pk *x)
{
    if (!x) return kiln_last_status();
    if (S->sp >= KILN_PK_MAX_STACK)
        return kiln__err(KILN_STATUS_FORMAT, PFX "more than %zu values on the stack (limit)", PARG(S),
                         KILN_PK_MAX_STACK);
    return append(S, &S->stack, &S->sp, &S->stack_cap, x);
}

/* The stack base: values above the innermost MARK belong to it, never popped singly. */
static size_t base(const pk_state *S)
{
    return S->n_marks ? S->marks[S->n_marks - 1] : 0;
}

static kiln_status pop(pk_state *S, kiln__pk **out)
{
    if (S->sp <= base(S)) return bad(S, "stack underflow (a broken pickle)");
    *out = S->stack[--S->sp];
    return KILN_STATUS_OK;
}

static kiln_status top(pk_state *S, kiln__pk **out)
{
    if (S->sp <= base(S)) return bad(S, "stack underflow (a broken pickle)");
    *out = S->stack[S->sp - 1];
    return KILN_STATUS_OK;
}

/* Pops to the innermost MARK: the values above it are stack[*from, S->sp) until the next push. */
static kiln_status pop_mark(pk_state *S, size_t *from)
{
    if (!S->n_marks) return bad(S, "no MARK to pop to (a broken pickle)");
    *from = S->marks[--S->n_marks];
    return KILN_STATUS_OK;
}

static kiln_status need(pk_state *S, size_t k, const unsigned char **p)
{
    if (k > S->n - S->pos)
        return kiln__err(KILN_STATUS_FORMAT, PFX "truncated (needs %zu more bytes, %zu left)", PARG(S), k,
                         S->n - S->pos);
    *p = S->buf + S->pos;
    S->pos += k;
    return KILN_STATUS_OK;
}

static uint64_t le(const unsigned char *p, int k)
{
    uint64_t v = 0;
    for (int i = k - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static kiln_status read_le(pk_state *S, int k, uint64_t *v)
{
    const unsigned char *p = NULL;
    kiln_status s = need(S, (size_t)k, &p);
    if (!s) *v = le(p, k);
    return s;
}

static kiln_status push_str(pk_state *S, size_t len)
{
    if (len > KILN_PK_MAX_STR)
        return kiln__err(KILN_STATUS_FORMAT, PFX "string of %zu bytes (limit %zu)", PARG(S), len, KILN_PK_MAX_STR);
    const unsigned char *p = NULL;
    kiln_status s = need(S, len, &p);
    if (s) return s;
    kiln__pk *x = node(S, KILN_PK_STR);
    if (!x) return kiln_last_status();
    if (!(x->s = malloc(len + 1))) return nomem(S);
    memcpy(x->s, p, len);
    x->s[len] = '\0';
    x->len = len;
    return push(S, x);
}

static kiln_status push_int(pk_state *S, kiln__pk_kind kind, int64_t v)
{
    kiln__pk *x = node(S, kind);
    if (x) x->i = v;
    return push(S, x);
}

static kiln_status op_long1(pk_state *S)
{
    uint64_t k = 0;
    const unsigned char *p = NULL;
    kiln_status s;
    if ((s = read_le(S, 1, &k)) || (s = need(S, (size_t)k, &p))) return s;
    if (k <= 8) {
        uint64_t v = k ? le(p, (int)k) : 0;
        if (k && k < 8 && (p[k - 1] & 0x80)) v |= ~(uint64_t)0 << (8 * k); /* sign-extend */
        return push_int(S, KILN_PK_INT, (int64_t)v);
    }
    kiln__pk *x = node(S, KILN_PK_BIGINT);
    if (!x) return kiln_last_status();
    if (!(x->s = malloc(k))) return nomem(S);
    memcpy(x->s, p, k);
    x->len = (size_t)k;
    return push(S, x);
}

static kiln_status op_binfloat(pk_state *S)
{
    const unsigned char *p = NULL;
    kiln_status s = need(S, 8, &p);
    if (s) return s;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = bits << 8 | p[i]; /* big-endian */
    kiln__pk *x = node(S, KILN_PK_FLOAT);
    if (x) memcpy(&x->f, &bits, sizeof x->f);
    return push(S, x);
}

/* Items stack[from, sp) become a new tuple (or are added to container c when given). */
static kiln_status collect(pk_state *S, size_t from, kiln__pk *c, kiln__pk **out)
{
    if (!c && !(c = node(S, KILN_PK_TUPLE))) return kiln_last_status();
    for (size_t j = from; j < S->sp; j++) {
        kiln_status s = add_item(S, c, S->stack[j]);
        if (s) return s;
    }
    S->sp = from;
    if (out) *out = c;
    return KILN_STATUS_OK;
}

static kiln_status op_tuple_n(pk_state *S, size_t k)
{
    if (S->sp - base(S) < k) return bad(S, "stack underflow (a broken pickle)");
    kiln__pk *t = NULL;
    kiln_status s = collect(S, S->sp - k, NULL, &t);
    return s ? s : push(S, t);
}

/* The container just below the innermost MARK's items (SETITEMS, APPENDS) or below the top
 * one or two values (SETITEM, APPEND). */
static kiln_status container(pk_state *S, size_t at, kiln__pk_kind want, kiln__pk **out)
{
    if (at == 0 || at - 1 < base(S)) return bad(S, "stack underflow (a broken pickle)");
    kiln__pk *c = S->stack[at - 1];
    if (c->kind != want)
        return kiln__err(KILN_STATUS_FORMAT, PFX "%s on %s, expected %s", PARG(S),
                         want == KILN_PK_DICT ? "SETITEM" : "APPEND", kiln__pk_kind_str(c->kind),
                         kiln__pk_kind_str(want));
    *out = c;
    return KILN_STATUS_OK;
}

/* SETITEM(S) (key, value pairs into a dict) and APPEND(S) (values into a list): the top one
 * (one) or all above the innermost MARK. */
static kiln_status op_add(pk_state *S, kiln__pk_kind kind, bool one)
{
    size_t k = kind == KILN_PK_DICT ? 2 : 1, from = 0;
    kiln_status s;
    if (one) {
        if (S->sp - base(S) < k) return bad(S, "stack underflow (a broken pickle)");
        from = S->sp - k;
    } else if ((s = pop_mark(S, &from))) {
        return s;
    }
    if ((S->sp - from) % k) return bad(S, "SETITEMS with an odd number of values");
    kiln__pk *c = NULL;
    if ((s = container(S, from, kind, &c))) return s;
    return collect(S, from, c, NULL);
}

static kiln_status memo_put(pk_state *S, uint64_t idx)
{
    if (idx >= KILN_PK_MAX_MEMO)
        return kiln__err(KILN_STATUS_FORMAT, PFX "memo index %llu (limit %zu)", PARG(S), (unsigned long long)idx,
                         KILN_PK_MAX_MEMO);
    kiln__pk *x = NULL;
    kiln_status s = top(S, &x);
    if (s) return s;
    if (idx >= S->memo_cap) {
        size_t cap = S->memo_cap ? S->memo_cap : 64;
        while (cap <= idx) cap *= 2;
        kiln__pk **m = realloc(S->memo, cap * sizeof *m);
        if (!m) return nomem(S);
        memset(m + S->memo_cap, 0, (cap - S->memo_cap) * sizeof *m);
        S->memo = m;
        S->memo_cap = cap;
    }
    S->memo_len += !S->memo[idx];
    S->memo[idx] = x;
    return KILN_STATUS_OK;
}

static kiln_status memo_get(pk_state *S, uint64_t idx)
{
    if (idx >= S->memo_cap || !S->memo[idx])
        return kiln__err(KILN_STATUS_FORMAT, PFX "memo index %llu was never set", PARG(S), (unsigned long long)idx);
    return push(S, S->memo[idx]);
}

/* ---- globals ---------------------------------------------------------------------------------- */

static kiln_status refuse_global(pk_state *S, const char *mod, size_t ml, const char *name, size_t nl)
{
    return kiln__err(KILN_STATUS_UNSUPPORTED, "%s: %s names global '%.*s.%.*s', which a state dict never holds: "
                     "refused (kiln never executes pickles)", S->path, S->what, (int)(ml > 100 ? 100 : ml), mod,
                     (int)(nl > 100 ? 100 : nl), name);
}

static bool eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && !memcmp(s, lit, n);
}

static kiln_status push_global(pk_state *S, const char *mod, size_t ml, const char *name, size_t nl)
{
    int g = -1;
    int64_t st = 0;
    if (eq(mod, ml, "collections") && eq(name, nl, "OrderedDict")) g = KILN_PKG_ODICT;
    else if (eq(mod, ml, "torch._utils") && eq(name, nl, "_rebuild_tensor_v2")) g = KILN_PKG_REBUILD_V2;
    else if (eq(mod, ml, "torch._utils") && eq(name, nl, "_rebuild_tensor")) g = KILN_PKG_REBUILD;
    else if (eq(mod, ml, "torch._utils") && eq(name, nl, "_rebuild_parameter")) g = KILN_PKG_REBUILD_PARAM;
    else if (eq(mod, ml, "torch"))
        for (int j = 0; j < N_STORAGE; j++)
            if (eq(name, nl, g_storage[j].name)) g = KILN_PKG_STORAGE, st = j;
    if (g < 0) return refuse_global(S, mod, ml, name, nl);
    kiln__pk *x = node(S, KILN_PK_GLOBAL);
    if (!x) return kiln_last_status();
    x->g = g;
    x->i = st;
    if (!(x->s = malloc(ml + nl + 2))) return nomem(S);
    memcpy(x->s, mod, ml);
    x->s[ml] = '.';
    memcpy(x->s + ml + 1, name, nl);
    x->s[ml + nl + 1] = '\0';
    x->len = ml + nl + 1;
    return push(S, x);
}

/* GLOBAL: "module\nname\n" inline. */
static kiln_status op_global(pk_state *S)
{
    const char *part[2];
    size_t len[2];
    for (int k = 0; k < 2; k++) {
        const unsigned char *p = S->buf + S->pos, *nl = memchr(p, '\n', S->n - S->pos);
        if (!nl) return bad(S, "GLOBAL without its line end (truncated)");
        part[k] = (const char *)p;
        len[k] = (size_t)(nl - p);
        S->pos += len[k] + 1;
    }
    return push_global(S, part[0], len[0], part[1], len[1]);
}

static kiln_status op_stack_global(pk_state *S)
{
    kiln__pk *name = NULL, *mod = NULL;
    kiln_status s;
    if ((s = pop(S, &name)) || (s = pop(S, &mod))) return s;
    if (mod->kind != KILN_PK_STR || name->kind != KILN_PK_STR) return bad(S, "STACK_GLOBAL of a non-string");
    return push_global(S, mod->s, mod->len, name->s, name->len);
}

/* REDUCE: callable(*args) for the allow-listed callables; nothing else can be called. */
static kiln_status op_reduce(pk_state *S)
{
    kiln__pk *args = NULL, *fn = NULL;
    kiln_status s;
    if ((s = pop(S, &args)) || (s = pop(S, &fn))) return s;
    if (fn->kind != KILN_PK_GLOBAL)
        return kiln__err(KILN_STATUS_FORMAT, PFX "REDUCE calls %s, not a global", PARG(S), kiln__pk_kind_str(fn->kind));
    if (args->kind != KILN_PK_TUPLE)
        return kiln__err(KILN_STATUS_FORMAT, PFX "REDUCE of %s with %s as arguments", PARG(S), fn->s,
                         kiln__pk_kind_str(args->kind));
    if (fn->g == KILN_PKG_ODICT) {
        if (args->n)
            return kiln__err(KILN_STATUS_UNSUPPORTED, PFX "collections.OrderedDict called with %zu arguments "
                             "(torch.save writes none): refused", PARG(S), args->n);
        return push(S, node(S, KILN_PK_DICT));
    }
    if (fn->g == KILN_PKG_STORAGE)
        return kiln__err(KILN_STATUS_UNSUPPORTED, PFX "REDUCE calls %s: a storage is only read by its persistent "
                         "id; refused", PARG(S), fn->s);
    /* a rebuilder: its arguments are checked where the tensor gets its name (pth.c) */
    kiln__pk *t = node(S, KILN_PK_TENSOR);
    if (!t) return kiln_last_status();
    t->g = fn->g;
    if (args->n && !(t->v = malloc(args->n * sizeof *t->v))) return nomem(S);
    if (args->n) memcpy(t->v, args->v, args->n * sizeof *t->v);
    t->n = t->cap = args->n;
    return push(S, t);
}

/* BUILD: only the state dict's _metadata (a dict set as the OrderedDict's attributes). */
static kiln_status op_build(pk_state *S)
{
    kiln__pk *state = NULL, *obj = NULL;
    kiln_status s;
    if ((s = pop(S, &state)) || (s = top(S, &obj))) return s;
    if (obj->kind != KILN_PK_DICT || state->kind != KILN_PK_DICT)
        return kiln__err(KILN_STATUS_UNSUPPORTED, PFX "BUILD of %s with %s (torch.save only sets a state dict's "
                         "_metadata): refused", PARG(S), kiln__pk_kind_str(obj->kind), kiln__pk_kind_str(state->kind));
    return KILN_STATUS_OK; /* accepted and ignored */
}

/* BINPERSID: torch's storage record ('storage', type, key, location, numel[, view]). */
static kiln_status op_persid(pk_state *S)
{
    kiln__pk *pid = NULL;
    kiln_status s = pop(S, &pid);
    if (s) return s;
    if (pid->kind != KILN_PK_TUPLE || pid->n < 5 || pid->n > 6 || pid->v[0]->kind != KILN_PK_STR ||
        strcmp(pid->v[0]->s, "storage"))
        return bad(S, "persistent id is not ('storage', type, key, location, size)");
    const kiln__pk *ty = pid->v[1], *key = pid->v[2], *loc = pid->v[3], *num = pid->v[4];
    if (ty->kind != KILN_PK_GLOBAL || ty->g != KILN_PKG_STORAGE)
        return bad(S, "persistent id's storage type is not a torch storage class");
    if (key->kind != KILN_PK_STR || !key->len || strlen(key->s) != key->len)
        return bad(S, "persistent id's key is not a non-empty string");
    if (loc->kind != KILN_PK_STR) return bad(S, "persistent id's location is not a string");
    if (num->kind != KILN_PK_INT || num->i < 0) return bad(S, "persistent id's size is not an int >= 0");
    if (pid->n == 6 && pid->v[5]->kind != KILN_PK_NONE)
        return kiln__err(KILN_STATUS_UNSUPPORTED, PFX "storage \"%.64s\" is a view of another storage (torch < "
                         "0.4 files): not supported", PARG(S), key->s);
    kiln__pk *x = node(S, KILN_PK_STORAGE);
    if (!x) return kiln_last_status();
    x->g = (int)ty->i;
    x->i = num->i;
    if (!(x->s = strdup(key->s))) return nomem(S);
    x->len = key->len;
    return push(S, x);
}

static const char *op_name(int op)
{
    switch (op) {
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    case 0x82: case 0x83: case 0x84: return "EXT";
    case 'P': return "PERSID";
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'F': return "FLOAT";
    case 'S': return "STRING";
    case 'V': return "UNICODE";
    case 'p': return "PUT";
    case 'g': return "GET";
    case 'l': return "LIST";
    case 'd': return "DICT";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 0x8b: return "LONG4";
    case 'B': case 'C': case 0x8e: return "BINBYTES";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return NULL;
    }
}

/* One opcode; *stop set at STOP. */
static kiln_status step(pk_state *S, bool *stop)
{
    const unsigned char *p = NULL;
    uint64_t v = 0;
    size_t from = 0;
    kiln_status s;
    S->op_pos = S->pos;
    if ((s = need(S, 1, &p))) return s;
    int op = *p;
    switch (op) {
    case 0x80: /* PROTO */
        if ((s = read_le(S, 1, &v))) return s;
        if (v < 2 || v > 5)
            return kiln__err(KILN_STATUS_UNSUPPORTED, PFX "pickle protocol %llu (kiln reads 2 to 5)", PARG(S),
                             (unsigned long long)v);
        return KILN_STATUS_OK;
    case 0x95: /* FRAME: a length hint only */
        return read_le(S, 8, &v);
    case '.': *stop = true; return KILN_STATUS_OK;
    case '(':
        if (S->n_marks == KILN_PK_MAX_MARKS)
            return kiln__err(KILN_STATUS_FORMAT, PFX "more than %d nested MARKs (limit)", PARG(S), KILN_PK_MAX_MARKS);
        S->marks[S->n_marks++] = S->sp;
        return KILN_STATUS_OK;
    case '}': return push(S, node(S, KILN_PK_DICT));
    case ']': return push(S, node(S, KILN_PK_LIST));
    case ')': return push(S, node(S, KILN_PK_TUPLE));
    case 'N': return push(S, node(S, KILN_PK_NONE));
    case 0x88: return push_int(S, KILN_PK_BOOL, 1);
    case 0x89: return push_int(S, KILN_PK_BOOL, 0);
    case 'K': return (s = read_le(S, 1, &v)) ? s : push_int(S, KILN_PK_INT, (int64_t)v);
    case 'M': return (s = read_le(S, 2, &v)) ? s : push_int(S, KILN_PK_INT, (int64_t)v);
    case 'J': return (s = read_le(S, 4, &v)) ? s : push_int(S, KILN_PK_INT, (int64_t)(int32_t)(uint32_t)v);
    case 0x8a: return op_long1(S);
    case 'G': return op_binfloat(S);
    case 0x8c: case 'U': return (s = read_le(S, 1, &v)) ? s : push_str(S, (size_t)v); /* SHORT_BIN{UNICODE,STRING} */
    case 'X': case 'T': return (s = read_le(S, 4, &v)) ? s : push_str(S, (size_t)v);  /* BIN{UNICODE,STRING} */
    case 0x8d: /* BINUNICODE8 */
        if ((s = read_le(S, 8, &v))) return s;
        if (v > KILN_PK_MAX_STR) return push_str(S, KILN_PK_MAX_STR + 1);
        return push_str(S, (size_t)v);
    case 't': return (s = pop_mark(S, &from)) ? s : op_tuple_n(S, S->sp - from);
    case 0x85: return op_tuple_n(S, 1);
    case 0x86: return op_tuple_n(S, 2);
    case 0x87: return op_tuple_n(S, 3);
    case 's': return op_add(S, KILN_PK_DICT, true);
    case 'u': return op_add(S, KILN_PK_DICT, false);
    case 'a': return op_add(S, KILN_PK_LIST, true);
    case 'e': return op_add(S, KILN_PK_LIST, false);
    case 'q': return (s = read_le(S, 1, &v)) ? s : memo_put(S, v);
    case 'r': return (s = read_le(S, 4, &v)) ? s : memo_put(S, v);
    case 0x94: return memo_put(S, S->memo_len); /* MEMOIZE */
    case 'h': return (s = read_le(S, 1, &v)) ? s : memo_get(S, v);
    case 'j': return (s = read_le(S, 4, &v)) ? s : memo_get(S, v);
    case 'c': return op_global(S);
    case 0x93: return op_stack_global(S);
    case 'R': return op_reduce(S);
    case 'b': return op_build(S);
    case 'Q': return op_persid(S);
    default: {
        const char *nm = op_name(op);
        if (nm)
            return kiln__err(KILN_STATUS_UNSUPPORTED, PFX "opcode %s (0x%02x), which torch.save(state_dict) never "
                             "writes: refused (kiln never executes pickles)", PARG(S), nm, op);
        return kiln__err(KILN_STATUS_FORMAT, PFX "unknown opcode 0x%02x (not a pickle, or a broken one)", PARG(S), op);
    }
    }
}

kiln_status kiln__pk_load(kiln__pk_heap *heap, const char *path, const char *what, const unsigned char *buf,
                          size_t n, kiln__pk **out, size_t *used)
{
    pk_state S = {.heap = heap, .path = path, .what = what, .buf = buf, .n = n};
    kiln_status s = KILN_STATUS_OK;
    bool stop = false;
    while (!s && !stop) s = step(&S, &stop);
    if (!s && (S.n_marks || S.sp != 1))
        s = kiln__err(KILN_STATUS_FORMAT, PFX "STOP with %zu values on the stack and %d open MARKs (a broken "
                      "pickle)", PARG(&S), S.sp, S.n_marks);
    if (!s) {
        *out = S.stack[0];
        if (used) *used = S.pos;
    }
    free(S.stack);
    free(S.memo);
    return s;
}
