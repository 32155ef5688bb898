/* The legacy .pth format (torch.save before torch 1.6, or with
 * _use_new_zipfile_serialization=False): five pickles one after the other (the magic number,
 * the protocol version 1001, sys_info, the object, the list of storage keys), then each
 * storage of that list in its order as an int64 element count and its raw little-endian
 * bytes. Every pickle goes through the restricted unpickler. */
#include "io/pth.h"

#include <stdlib.h>
#include <string.h>

static const unsigned char g_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

static kiln_status next(kiln__pth *P, const unsigned char *buf, size_t n, size_t *pos, const char *what,
                        const kiln__pk **out)
{
    kiln__pk *v = NULL;
    size_t used;
    kiln_status s = kiln__pk_load(&P->heap, P->f->path, what, buf + *pos, n - *pos, &v, &used);
    if (!s) *pos += used, *out = v;
    return s;
}

static kiln_status header(kiln__pth *P, const unsigned char *buf, size_t n, size_t *pos)
{
    const kiln__pk *magic = NULL, *proto = NULL, *info = NULL;
    kiln_status s;
    if ((s = next(P, buf, n, pos, "the magic number", &magic)) || (s = next(P, buf, n, pos, "the protocol", &proto)) ||
        (s = next(P, buf, n, pos, "sys_info", &info)))
        return s;
    if (magic->kind != KILN_PK_BIGINT || magic->len != sizeof g_magic || memcmp(magic->s, g_magic, sizeof g_magic))
        return kiln__err(KILN_STATUS_FORMAT, "%s: wrong magic number: not a legacy torch.save file", P->f->path);
    if (proto->kind != KILN_PK_INT || proto->i != 1001)
        return kiln__err(KILN_STATUS_UNSUPPORTED, "%s: legacy protocol version is not 1001", P->f->path);
    const kiln__pk *le = kiln__pk_dict_get(info, "little_endian");
    if (info->kind != KILN_PK_DICT || (le && (le->kind != KILN_PK_BOOL || !le->i)))
        return kiln__err(KILN_STATUS_UNSUPPORTED, "%s: sys_info does not say little_endian: only little-endian "
                         "checkpoints are read", P->f->path);
    return KILN_STATUS_OK;
}

static int cmp_node(const void *a, const void *b)
{
    return strcmp((*(const kiln__pk *const *)a)->s, (*(const kiln__pk *const *)b)->s);
}

/* Every storage record of the object pickle, sorted by key (those of tensors outside the
 * state dict too: their bytes must be stepped over). */
static const kiln__pk **all_storages(kiln__pth *P, size_t *n)
{
    size_t k = 0;
    for (const kiln__pk *p = P->heap.nodes; p; p = p->next_alloc) k += p->kind == KILN_PK_STORAGE;
    const kiln__pk **a = malloc((k + 1) * sizeof *a);
    if (!a) return NULL;
    k = 0;
    for (const kiln__pk *p = P->heap.nodes; p; p = p->next_alloc)
        if (p->kind == KILN_PK_STORAGE) a[k++] = p;
    qsort(a, k, sizeof *a, cmp_node);
    *n = k;
    return a;
}

/* The storages after the key list: each key's int64 count and bytes. */
static kiln_status storages(kiln__pth *P, const kiln__pk *keys, const unsigned char *buf, size_t n, size_t pos)
{
    if (keys->kind != KILN_PK_LIST)
        return kiln__err(KILN_STATUS_FORMAT, "%s: the storage key list is %s, not a list", P->f->path,
                         kiln__pk_kind_str(keys->kind));
    size_t na;
    const kiln__pk **all = all_storages(P, &na);
    if (!all) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", P->f->path);
    kiln_status s = KILN_STATUS_OK;
    for (size_t j = 0; j < keys->n && !s; j++) {
        const kiln__pk *k = keys->v[j];
        kiln__pk probe = {.s = k->s};
        const kiln__pk *pp = &probe, **rec = NULL;
        if (k->kind == KILN_PK_STR) rec = bsearch(&pp, all, na, sizeof *all, cmp_node);
        if (!rec) {
            s = kiln__err(KILN_STATUS_FORMAT, "%s: storage key list entry %zu is not the key of a storage", P->f->path, j);
            break;
        }
        const kiln__pk_storage_type *ty = kiln__pk_storage_type_at((*rec)->g);
        uint64_t count = 0, bytes;
        if (n - pos < 8) {
            s = kiln__err(KILN_STATUS_FORMAT, "%s: storage \"" KILN_ST_NAMEF "\": the file ends before it (truncated)",
                          P->f->path, KILN_ST_NAMEA(k->s));
            break;
        }
        for (int b = 7; b >= 0; b--) count = count << 8 | buf[pos + (size_t)b];
        pos += 8;
        if (count != (uint64_t)(*rec)->i || __builtin_mul_overflow(count, (uint64_t)ty->file_size, &bytes) ||
            bytes > n - pos) {
            s = kiln__err(KILN_STATUS_FORMAT, "%s: storage \"" KILN_ST_NAMEF "\" says %llu elements of %d bytes; its "
                          "record says %lld and %zu bytes are left (truncated or corrupt file?)", P->f->path,
                          KILN_ST_NAMEA(k->s), (unsigned long long)count, ty->file_size, (long long)(*rec)->i,
                          n - pos);
            break;
        }
        kiln__pth_storage *st = kiln__pth_find_storage(P, k->s);
        if (st && st->src) {
            s = kiln__err(KILN_STATUS_FORMAT, "%s: storage \"" KILN_ST_NAMEF "\" is listed twice", P->f->path,
                          KILN_ST_NAMEA(k->s));
            break;
        }
        if (st) st->src = buf + pos, st->src_bytes = bytes;
        pos += bytes;
    }
    free(all);
    for (size_t i = 0; i < P->n_st && !s; i++)
        if (!P->st[i].src)
            s = kiln__err(KILN_STATUS_FORMAT, "%s: tensor \"" KILN_ST_NAMEF "\": its storage \"" KILN_ST_NAMEF "\" is "
                          "missing from the file", P->f->path, KILN_ST_NAMEA(P->st[i].tensor), KILN_ST_NAMEA(P->st[i].key));
    return s;
}

kiln_status kiln__pth_legacy(kiln__pth *P, const unsigned char *buf, size_t n)
{
    size_t pos = 0;
    const kiln__pk *root = NULL, *keys = NULL;
    P->pkl = "the object pickle";
    kiln_status s = header(P, buf, n, &pos);
    if (!s) s = next(P, buf, n, &pos, "the object pickle", &root);
    if (!s) {
        P->root = root;
        s = kiln__pth_tensors(P);
    }
    if (!s) s = next(P, buf, n, &pos, "the storage key list", &keys);
    if (!s) s = storages(P, keys, buf, n, pos);
    if (!s) s = kiln__pth_place(P, NULL);
    return s;
}
