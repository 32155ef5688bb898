/* The .pth zip format (torch.save since torch 1.6; torchvision's published weights): an
 * archive, read with libzip from the mapped file, whose entries sit under one top folder of
 * any name: <top>/data.pkl (the object pickle), <top>/data/<key> (each storage's raw
 * little-endian bytes), <top>/version, and since torch 2.x <top>/byteorder ("little"). */
#include "io/pth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

/* Largest object pickle read (a state dict's pickle is a few hundred bytes per tensor). */
#define MAX_PKL ((uint64_t)1 << 30)

static kiln_status zerr(kiln__pth *P, const char *entry, zip_error_t *e)
{
    return kiln__err(KILN_STATUS_FORMAT, "%s: archive entry %s: %s", P->f->path, entry, zip_error_strerror(e));
}

/* The uncompressed size of entry idx, refused when absurd for its compressed size (a zip
 * bomb's claim) or the archive's. */
static kiln_status entry_size(kiln__pth *P, zip_t *z, zip_int64_t idx, size_t archive, uint64_t *size)
{
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z, (zip_uint64_t)idx, 0, &st) < 0) return zerr(P, "?", zip_get_error(z));
    const char *name = (st.valid & ZIP_STAT_NAME) ? st.name : "?";
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE) || st.comp_size > archive ||
        st.size / 1100 > st.comp_size + 4096)
        return kiln__err(KILN_STATUS_FORMAT, "%s: archive entry %.200s claims %llu bytes from %llu compressed: "
                         "refused (corrupt or hostile archive)", P->f->path, name, (unsigned long long)st.size,
                         (unsigned long long)st.comp_size);
    *size = st.size;
    return KILN_STATUS_OK;
}

/* Reads entry idx, exactly size bytes, into dst; libzip checks its CRC at the end. */
static kiln_status read_entry(kiln__pth *P, zip_t *z, zip_int64_t idx, unsigned char *dst, uint64_t size)
{
    const char *name = zip_get_name(z, (zip_uint64_t)idx, ZIP_FL_ENC_RAW);
    zip_file_t *zf = zip_fopen_index(z, (zip_uint64_t)idx, 0);
    if (!zf) return zerr(P, name ? name : "?", zip_get_error(z));
    uint64_t got = 0;
    kiln_status s = KILN_STATUS_OK;
    while (got < size && !s) {
        zip_int64_t r = zip_fread(zf, dst + got, size - got);
        if (r < 0) s = zerr(P, name ? name : "?", zip_file_get_error(zf));
        else if (r == 0)
            s = kiln__err(KILN_STATUS_FORMAT, "%s: archive entry %s ends after %llu of its %llu bytes", P->f->path,
                          name ? name : "?", (unsigned long long)got, (unsigned long long)size);
        else got += (uint64_t)r;
    }
    unsigned char more;
    zip_int64_t r = s ? 0 : zip_fread(zf, &more, 1); /* at the end: libzip checks the CRC here */
    if (r < 0) s = zerr(P, name ? name : "?", zip_file_get_error(zf));
    else if (r > 0)
        s = kiln__err(KILN_STATUS_FORMAT, "%s: archive entry %s is longer than its %llu bytes", P->f->path,
                      name ? name : "?", (unsigned long long)size);
    zip_fclose(zf);
    return s;
}

static kiln_status read_storage(kiln__pth *P, const kiln__pth_storage *s, unsigned char *dst)
{
    return read_entry(P, P->zip, s->zindex, dst, s->src_bytes);
}

/* The top folder: the one entry "<top>/data.pkl" with no other '/'. */
static kiln_status find_top(kiln__pth *P, zip_t *z, char **top, zip_int64_t *pkl)
{
    zip_int64_t n = zip_get_num_entries(z, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *nm = zip_get_name(z, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        const char *slash = nm ? strchr(nm, '/') : NULL;
        if (!slash || slash == nm || strcmp(slash, "/data.pkl")) continue;
        if (!(*top = strndup(nm, (size_t)(slash - nm)))) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", P->f->path);
        *pkl = i;
        return KILN_STATUS_OK;
    }
    return kiln__err(KILN_STATUS_FORMAT, "%s: a zip archive without a <folder>/data.pkl entry: not a torch.save "
                     "checkpoint", P->f->path);
}

/* Entry "<top>/<rest>": its index, or -1. */
static zip_int64_t locate(zip_t *z, const char *top, const char *rest)
{
    size_t n = strlen(top) + strlen(rest) + 2;
    char *name = malloc(n);
    if (!name) return -1;
    snprintf(name, n, "%s/%s", top, rest);
    zip_int64_t i = zip_name_locate(z, name, ZIP_FL_ENC_RAW);
    free(name);
    return i;
}

static kiln_status check_byteorder(kiln__pth *P, zip_t *z, const char *top, size_t archive)
{
    zip_int64_t i = locate(z, top, "byteorder");
    if (i < 0) return KILN_STATUS_OK; /* before torch 2.0: always little-endian */
    uint64_t size = 0;
    unsigned char b[16] = {0};
    kiln_status s = entry_size(P, z, i, archive, &size);
    if (s) return s;
    if (size >= sizeof b)
        return kiln__err(KILN_STATUS_FORMAT, "%s: byteorder entry of %llu bytes", P->f->path,
                         (unsigned long long)size);
    if ((s = read_entry(P, z, i, b, size))) return s;
    if (strcmp((const char *)b, "little"))
        return kiln__err(KILN_STATUS_UNSUPPORTED, "%s: byteorder is \"%s\": only little-endian checkpoints are read",
                         P->f->path, (const char *)b);
    return KILN_STATUS_OK;
}

static kiln_status read_pickle(kiln__pth *P, zip_t *z, zip_int64_t idx, size_t archive)
{
    uint64_t size = 0;
    kiln_status s = entry_size(P, z, idx, archive, &size);
    if (s) return s;
    if (size > MAX_PKL)
        return kiln__err(KILN_STATUS_FORMAT, "%s: data.pkl is %llu bytes (limit %llu)", P->f->path,
                         (unsigned long long)size, (unsigned long long)MAX_PKL);
    unsigned char *pkl = malloc(size ? size : 1);
    if (!pkl) return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory for data.pkl", P->f->path);
    kiln__pk *root = NULL;
    size_t used = 0;
    if (!(s = read_entry(P, z, idx, pkl, size)) &&
        !(s = kiln__pk_load(&P->heap, P->f->path, "data.pkl", pkl, size, &root, &used)) && used != size)
        s = kiln__err(KILN_STATUS_FORMAT, "%s: data.pkl has %llu bytes after its STOP", P->f->path,
                      (unsigned long long)(size - used));
    free(pkl);
    P->root = root;
    return s;
}

static kiln_status read_archive(kiln__pth *P, zip_t *z, size_t archive)
{
    char *top = NULL;
    zip_int64_t pkl = -1;
    kiln_status s = find_top(P, z, &top, &pkl);
    if (!s) s = check_byteorder(P, z, top, archive);
    if (!s) s = read_pickle(P, z, pkl, archive);
    if (!s) s = kiln__pth_tensors(P);
    for (size_t i = 0; i < P->n_st && !s; i++) {
        kiln__pth_storage *st = &P->st[i];
        size_t n = strlen(st->key) + 6;
        char *rest = malloc(n);
        if (!rest) {
            s = kiln__err(KILN_STATUS_NOMEM, "%s: out of memory", P->f->path);
            break;
        }
        snprintf(rest, n, "data/%s", st->key);
        st->zindex = locate(z, top, rest);
        free(rest);
        if (st->zindex < 0)
            s = kiln__err(KILN_STATUS_FORMAT, "%s: tensor \"" KILN_ST_NAMEF "\": its storage \"" KILN_ST_NAMEF "\" is "
                          "missing from the archive (no entry %s/data/" KILN_ST_NAMEF ")", P->f->path,
                          KILN_ST_NAMEA(st->tensor), KILN_ST_NAMEA(st->key), top, KILN_ST_NAMEA(st->key));
        else
            s = entry_size(P, z, st->zindex, archive, &st->src_bytes);
    }
    if (!s) s = kiln__pth_place(P, read_storage);
    free(top);
    return s;
}

kiln_status kiln__pth_zip(kiln__pth *P, const unsigned char *buf, size_t n)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(buf, n, 0, &ze);
    zip_t *z = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
    kiln_status s;
    if (!z) {
        s = kiln__err(KILN_STATUS_FORMAT, "%s: not a readable zip archive (truncated or corrupt?): %s", P->f->path,
                      zip_error_strerror(&ze));
        if (src) zip_source_free(src);
    } else {
        P->zip = z;
        s = read_archive(P, z, n);
        P->zip = NULL;
        zip_discard(z);
    }
    zip_error_fini(&ze);
    return s;
}
