/* PyTorch checkpoint files (.pth, .pt) read into a kiln_st_file, so every weight loader that
 * reads safetensors reads them unchanged. The object pickle is read by the restricted
 * unpickler (pickle.c: nothing is executed); here its value is checked to be a state dict (or
 * a checkpoint dict holding one under "state_dict", "model" or "model_state_dict"), every
 * tensor's rebuild arguments are checked (types, dims, contiguous strides, dtype, storage
 * bounds), and the storages are copied into one malloc'd buffer the tensors index, as the
 * safetensors reader's tensors index its mapping. Errors name the file and the tensor. */
#include "io/pth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define TFMT "%s: tensor \"" KILN_ST_NAMEF "\": "
#define TARG(P, name) (P)->f->path, KILN_ST_NAMEA(name)

static bool is_tensor(const kiln__pk *v)
{
    return v->kind == KILN_PK_TENSOR;
}

static bool all_tensors(const kiln__pk *d, const kiln__pk **bad_key)
{
    for (size_t j = 0; j + 1 < d->n; j += 2)
        if (!is_tensor(d->v[j + 1]) || d->v[j]->kind != KILN_PK_STR) {
            *bad_key = d->v[j];
            return false;
        }
    return true;
}

/* The dict of tensors in P->root: the root itself, or a checkpoint's "state_dict", "model" or
 * "model_state_dict" entry. */
static kiln_status find_state_dict(kiln__pth *P, const kiln__pk **out)
{
    const kiln__pk *r = P->root, *badk = NULL;
    if (r->kind != KILN_PK_DICT)
        return kiln__err(KILN_STATUS_FORMAT, "%s: %s holds %s, not a state dict (a dict of tensors)", P->f->path,
                         P->pkl, kiln__pk_kind_str(r->kind));
    if (all_tensors(r, &badk)) {
        *out = r;
        return KILN_STATUS_OK;
    }
    static const char *const keys[] = {"state_dict", "model", "model_state_dict"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const kiln__pk *d = kiln__pk_dict_get(r, keys[k]), *b2 = NULL;
        if (!d || d->kind != KILN_PK_DICT) continue;
        if (all_tensors(d, &b2)) {
            *out = d;
            return KILN_STATUS_OK;
        }
        r = d, badk = b2;
        break;
    }
    const kiln__pk *val = NULL;
    for (size_t j = 0; j + 1 < r->n; j += 2)
        if (r->v[j] == badk) val = r->v[j + 1];
    if (badk->kind != KILN_PK_STR)
        return kiln__err(KILN_STATUS_FORMAT, "%s: %s: a key is %s, not a str: not a state dict", P->f->path, P->pkl,
                         kiln__pk_kind_str(badk->kind));
    return kiln__err(KILN_STATUS_FORMAT, "%s: %s: key \"" KILN_ST_NAMEF "\" holds %s, not a tensor: not a state "
                     "dict (a checkpoint's tensors are read from its \"state_dict\", \"model\" or "
                     "\"model_state_dict\" entry)", P->f->path, P->pkl, KILN_ST_NAMEA(badk->s),
                     kiln__pk_kind_str(val ? val->kind : KILN_PK_NONE));
}

/* Ints of a size or stride tuple into out[KILN_MAX_DIMS]; *nd its length. */
static kiln_status int_tuple(kiln__pth *P, const char *name, const kiln__pk *t, const char *what, int64_t *out,
                             int *nd)
{
    if (t->kind != KILN_PK_TUPLE)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "its %s is %s, not a tuple", TARG(P, name), what,
                         kiln__pk_kind_str(t->kind));
    if (t->n > KILN_MAX_DIMS)
        return kiln__err(KILN_STATUS_UNSUPPORTED, TFMT "its %s has %zu dims, more than the %d kiln supports",
                         TARG(P, name), what, t->n, KILN_MAX_DIMS);
    for (size_t d = 0; d < t->n; d++) {
        if (t->v[d]->kind != KILN_PK_INT || t->v[d]->i < 0)
            return kiln__err(KILN_STATUS_FORMAT, TFMT "its %s[%zu] is %s, not an int >= 0", TARG(P, name), what, d,
                             t->v[d]->kind == KILN_PK_INT ? "negative" : kiln__pk_kind_str(t->v[d]->kind));
        out[d] = t->v[d]->i;
    }
    *nd = (int)t->n;
    return KILN_STATUS_OK;
}

/* The tensor value's rebuild arguments, unwrapping a Parameter; *args its v, *n their count. */
static kiln_status rebuild_args(kiln__pth *P, const char *name, const kiln__pk *v, kiln__pk *const **args)
{
    if (v->g == KILN_PKG_REBUILD_PARAM) {
        if (v->n != 3 || !is_tensor(v->v[0]) || v->v[0]->g == KILN_PKG_REBUILD_PARAM ||
            v->v[1]->kind != KILN_PK_BOOL || v->v[2]->kind != KILN_PK_DICT || v->v[2]->n)
            return kiln__err(KILN_STATUS_FORMAT, TFMT "_rebuild_parameter's arguments are not (tensor, "
                             "requires_grad: bool, backward_hooks: empty OrderedDict)", TARG(P, name));
        v = v->v[0];
    }
    if (v->g == KILN_PKG_REBUILD_V2) {
        if (v->n != 6 && v->n != 7)
            return kiln__err(KILN_STATUS_FORMAT, TFMT "_rebuild_tensor_v2 has %zu arguments, expected 6 or 7",
                             TARG(P, name), v->n);
        if (v->v[4]->kind != KILN_PK_BOOL)
            return kiln__err(KILN_STATUS_FORMAT, TFMT "requires_grad is %s, not a bool", TARG(P, name),
                             kiln__pk_kind_str(v->v[4]->kind));
        if (v->v[5]->kind != KILN_PK_DICT || v->v[5]->n)
            return kiln__err(KILN_STATUS_FORMAT, TFMT "backward_hooks is %s, not an empty OrderedDict",
                             TARG(P, name), v->v[5]->kind == KILN_PK_DICT ? "a non-empty dict"
                                                                          : kiln__pk_kind_str(v->v[5]->kind));
        if (v->n == 7 && (v->v[6]->kind != KILN_PK_DICT || v->v[6]->n))
            return kiln__err(KILN_STATUS_UNSUPPORTED, TFMT "carries tensor metadata (%s), which kiln does not "
                             "read", TARG(P, name), kiln__pk_kind_str(v->v[6]->kind));
    } else if (v->n != 4) {
        return kiln__err(KILN_STATUS_FORMAT, TFMT "_rebuild_tensor has %zu arguments, expected 4", TARG(P, name),
                         v->n);
    }
    *args = v->v;
    return KILN_STATUS_OK;
}

static int cmp_storage(const void *a, const void *b)
{
    return strcmp(((const kiln__pth_storage *)a)->key, ((const kiln__pth_storage *)b)->key);
}

kiln__pth_storage *kiln__pth_find_storage(const kiln__pth *P, const char *key)
{
    kiln__pth_storage k = {.key = key};
    return bsearch(&k, P->st, P->n_st, sizeof k, cmp_storage);
}

/* One tensor: name and dtype and shape into t, its storage node and offset out. */
static kiln_status tensor(kiln__pth *P, const char *name, const kiln__pk *v, kiln__st_tensor *t,
                          const kiln__pk **storage, int64_t *offset)
{
    kiln__pk *const *a = NULL;
    kiln_status s = rebuild_args(P, name, v, &a);
    if (s) return s;
    if (a[0]->kind != KILN_PK_STORAGE)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "its storage is %s, not a storage record", TARG(P, name),
                         kiln__pk_kind_str(a[0]->kind));
    const kiln__pk_storage_type *ty = kiln__pk_storage_type_at(a[0]->g);
    if (ty->dtype < 0)
        return kiln__err(KILN_STATUS_UNSUPPORTED, TFMT "dtype %s (torch.%s) is not supported (kiln reads float32, "
                         "float16, bfloat16, int64, int32, uint8, and float64 as float32)", TARG(P, name), ty->what,
                         ty->name);
    if (a[1]->kind != KILN_PK_INT || a[1]->i < 0)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "storage offset is %s, not an int >= 0", TARG(P, name),
                         a[1]->kind == KILN_PK_INT ? "negative" : kiln__pk_kind_str(a[1]->kind));
    int64_t stride[KILN_MAX_DIMS];
    int nds = 0;
    if ((s = int_tuple(P, name, a[2], "size", t->shape, &t->ndim)) ||
        (s = int_tuple(P, name, a[3], "stride", stride, &nds)))
        return s;
    if (nds != t->ndim)
        return kiln__err(KILN_STATUS_FORMAT, TFMT "%d strides for %d dims", TARG(P, name), nds, t->ndim);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++)
        if (__builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel) || numel > (uint64_t)INT64_MAX / 16)
            return kiln__err(KILN_STATUS_FORMAT, TFMT "size too large: its element count overflows", TARG(P, name));
    int64_t want = 1;
    for (int d = t->ndim - 1; d >= 0 && numel; d--) {
        if (t->shape[d] != 1 && stride[d] != want)
            return kiln__err(KILN_STATUS_UNSUPPORTED, TFMT "stride %lld in dim %d where a contiguous tensor of "
                             "this size has %lld: non-contiguous tensors are not supported (save "
                             "t.contiguous())", TARG(P, name), (long long)stride[d], d, (long long)want);
        want *= t->shape[d];
    }
    t->dtype = (kiln_dtype)ty->dtype;
    *storage = a[0];
    *offset = a[1]->i;
    return KILN_STATUS_OK;
}

/* The distinct storages the tensors view, sorted by key; one key must keep one type and size. */
static kiln_status gather_storages(kiln__pth *P, const kiln__pk **sv)
{
    kiln_st_file *f = P->f;
    for (size_t i = 0; i < f->n; i++)
        P->st[i] = (kiln__pth_storage){.key = sv[i]->s, .type = sv[i]->g, .numel = sv[i]->i, .tensor = f->t[i].name};
    qsort(P->st, f->n, sizeof *P->st, cmp_storage); /* stable enough: ties compared below */
    size_t m = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (m && !strcmp(P->st[m - 1].key, P->st[i].key)) {
            if (P->st[m - 1].type != P->st[i].type || P->st[m - 1].numel != P->st[i].numel)
                return kiln__err(KILN_STATUS_FORMAT, "%s: storage \"" KILN_ST_NAMEF "\" is named with two types or "
                                 "sizes (tensors \"" KILN_ST_NAMEF "\" and \"" KILN_ST_NAMEF "\")", f->path,
                                 KILN_ST_NAMEA(P->st[i].key), KILN_ST_NAMEA(P->st[m - 1].tensor),
                                 KILN_ST_NAMEA(P->st[i].tensor));
            continue;
        }
        P->st[m++] = P->st[i];
    }
    P->n_st = m;
    for (size_t i = 0; i < f->n; i++) P->t_storage[i] = (size_t)(kiln__pth_find_storage(P, sv[i]->s) - P->st);
    return KILN_STATUS_OK;
}

kiln_status kiln__pth_tensors(kiln__pth *P)
{
    kiln_st_file *f = P->f;
    const kiln__pk *sd = NULL;
    kiln_status s = find_state_dict(P, &sd);
    if (s) return s;
    size_t n = sd->n / 2;
    if (n > KILN_PTH_MAX_TENSORS)
        return kiln__err(KILN_STATUS_FORMAT, "%s: %zu tensors, more than the limit of %d", f->path, n,
                         KILN_PTH_MAX_TENSORS);
    const kiln__pk **sv = calloc(n + 1, sizeof *sv);
    f->t = calloc(n + 1, sizeof *f->t);
    f->by_name = calloc(n + 1, sizeof *f->by_name);
    P->st = calloc(n + 1, sizeof *P->st);
    P->t_storage = calloc(n + 1, sizeof *P->t_storage);
    P->t_offset = calloc(n + 1, sizeof *P->t_offset);
    if (!sv || !f->t || !f->by_name || !P->st || !P->t_storage || !P->t_offset) {
        free(sv);
        return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory for %zu tensors", f->path, n);
    }
    for (size_t i = 0; i < n && !s; i++) {
        const kiln__pk *k = sd->v[2 * i];
        if (strlen(k->s) != k->len) {
            s = kiln__err(KILN_STATUS_FORMAT, "%s: a tensor name holds a NUL byte", f->path);
            break;
        }
        if (!(f->t[i].name = strdup(k->s))) {
            s = kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", f->path);
            break;
        }
        f->n++;
        s = tensor(P, k->s, sd->v[2 * i + 1], &f->t[i], &sv[i], &P->t_offset[i]);
    }
    if (!s) s = kiln__st_index(f);
    if (!s) s = gather_storages(P, sv);
    free(sv);
    return s;
}

/* Double storages become float in place (element i moves from 8i to 4i: forward is safe). */
static void narrow_f64(unsigned char *p, int64_t numel)
{
    for (int64_t i = 0; i < numel; i++) {
        double d;
        memcpy(&d, p + 8 * i, sizeof d);
        float x = (float)d;
        memcpy(p + 4 * i, &x, sizeof x);
    }
}

kiln_status kiln__pth_place(kiln__pth *P, kiln_status (*read_zip)(kiln__pth *P, const kiln__pth_storage *s,
                                                                unsigned char *dst))
{
    kiln_st_file *f = P->f;
    uint64_t total = 0;
    for (size_t i = 0; i < P->n_st; i++) {
        kiln__pth_storage *s = &P->st[i];
        const kiln__pk_storage_type *ty = kiln__pk_storage_type_at(s->type);
        uint64_t need;
        if (__builtin_mul_overflow((uint64_t)s->numel, (uint64_t)ty->file_size, &need) || need != s->src_bytes)
            return kiln__err(KILN_STATUS_FORMAT, TFMT "its storage \"" KILN_ST_NAMEF "\" holds %llu bytes, but its "
                             "record says %lld elements of %d bytes (truncated or corrupt file?)",
                             TARG(P, s->tensor), KILN_ST_NAMEA(s->key), (unsigned long long)s->src_bytes,
                             (long long)s->numel, ty->file_size);
        s->at = total;
        total += need; /* cannot overflow: each is at most the file's size (or a zip entry's) */
    }
    f->map = malloc(total ? total : 1);
    if (!f->map) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory for %llu bytes of tensors", f->path,
                                  (unsigned long long)total);
    f->heap = true;
    f->map_size = total;
    f->data = f->map;
    f->data_size = total;
    for (size_t i = 0; i < P->n_st; i++) {
        kiln__pth_storage *s = &P->st[i];
        if (s->src) memcpy(f->map + s->at, s->src, s->src_bytes);
        else {
            kiln_status st = read_zip(P, s, f->map + s->at);
            if (st) return st;
        }
        if (kiln__pk_storage_type_at(s->type)->file_size == 8 && kiln__pk_storage_type_at(s->type)->dtype ==
                                                                     KILN_DTYPE_F32)
            narrow_f64(f->map + s->at, s->numel);
    }
    for (size_t i = 0; i < f->n; i++) {
        kiln__st_tensor *t = &f->t[i];
        const kiln__pth_storage *s = &P->st[P->t_storage[i]];
        int64_t numel = 1, off = P->t_offset[i];
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d]; /* checked in tensor() */
        if (off > s->numel || numel > s->numel - off)
            return kiln__err(KILN_STATUS_FORMAT, TFMT "offset %lld + %lld elements go past the end of its storage "
                             "\"" KILN_ST_NAMEF "\" of %lld elements", TARG(P, t->name), (long long)off,
                             (long long)numel, KILN_ST_NAMEA(s->key), (long long)s->numel);
        uint64_t es = (uint64_t)kiln_dtype_size(t->dtype);
        t->begin = s->at + (uint64_t)off * es;
        t->end = t->begin + (uint64_t)numel * es;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_pth_open(const char *path, kiln_st_file **out)
{
    if (!out) return kiln__err(KILN_STATUS_INVALID, "pth_open: out is NULL");
    *out = NULL;
    if (!path) return kiln__err(KILN_STATUS_INVALID, "pth_open: path is NULL");
    kiln__pth P = {.pkl = "data.pkl"};
    if (!(P.f = calloc(1, sizeof *P.f)) || !(P.f->path = strdup(path))) {
        free(P.f);
        return kiln__err(KILN_STATUS_NOMEM, "pth_open: %s: out of memory", path);
    }
    unsigned char *buf;
    size_t n;
    kiln_status s = kiln__io_map("pth_open", path, &buf, &n);
    if (!s) {
        if (n >= 4 && !memcmp(buf, "PK\x03\x04", 4)) s = kiln__pth_zip(&P, buf, n);
        else if (n >= KILN_PTH_LEGACY_MAGIC_LEN && !memcmp(buf, KILN_PTH_LEGACY_MAGIC, KILN_PTH_LEGACY_MAGIC_LEN))
            s = kiln__pth_legacy(&P, buf, n);
        else
            s = kiln__err(KILN_STATUS_FORMAT, "pth_open: %s: not a PyTorch checkpoint (neither a zip archive nor "
                          "the legacy pickle format)", path);
    }
    if (!s) s = kiln_st_set_metadata(P.f, "format", "pth");
    if (buf) munmap(buf, n);
    kiln__pk_free(&P.heap);
    free(P.st);
    free(P.t_storage);
    free(P.t_offset);
    if (s) {
        kiln_st_close(P.f);
        return s;
    }
    *out = P.f;
    return KILN_STATUS_OK;
}

kiln_status kiln_weights_open(const char *path, kiln_st_file **out)
{
    if (!out) return kiln__err(KILN_STATUS_INVALID, "weights_open: out is NULL");
    *out = NULL;
    if (!path) return kiln__err(KILN_STATUS_INVALID, "weights_open: path is NULL");
    unsigned char head[KILN_PTH_LEGACY_MAGIC_LEN] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return kiln__err(KILN_STATUS_IO, "weights_open: %s: cannot open: %s", path, strerror(errno));
    size_t got = fread(head, 1, sizeof head, fp);
    fclose(fp);
    bool pth = (got >= 4 && !memcmp(head, "PK\x03\x04", 4)) ||
               (got == sizeof head && !memcmp(head, KILN_PTH_LEGACY_MAGIC, sizeof head));
    return pth ? kiln_pth_open(path, out) : kiln_st_open(path, out);
}
