/* IDX files (the MNIST family: MNIST, Fashion-MNIST, KMNIST, EMNIST): a big-endian header
 * (magic 0x0000TTNN: type TT, NN dims; then NN u32 sizes) and the raw data. Read through
 * zlib's gz* calls, which take gzip and plain files alike. Images and labels are checked
 * against each other (counts, image sizes of the two splits) and decoded once into memory. */
#include "data/vision/vision_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define IDX_IMAGES 0x00000803u /* u8, 3 dims: (N, H, W) */
#define IDX_LABELS 0x00000801u /* u8, 1 dim: (N) */
#define IDX_MAX_BYTES ((int64_t)1 << 34)
#define IDX_FIRST_CHUNK ((int64_t)1 << 16) /* the data buffer starts here and doubles */

/* Reads exactly n bytes or says how many it got; *zerr is zlib's message on a stream error. */
static int64_t gz_read_all(gzFile gz, uint8_t *dst, int64_t n, const char **zerr)
{
    int64_t got = 0;
    *zerr = NULL;
    while (got < n) {
        unsigned chunk = n - got > (1 << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(gz, dst + got, chunk);
        if (r < 0) {
            int e;
            *zerr = gzerror(gz, &e);
            break;
        }
        if (r == 0) break;
        got += r;
    }
    if (got < n && !*zerr) {
        int e;
        const char *m = gzerror(gz, &e);
        if (e != Z_OK) *zerr = m;
    }
    return got;
}

static kiln_status truncated(const char *path, const char *part, int64_t want, int64_t got, const char *zerr)
{
    return kiln__err(KILN_STATUS_FORMAT, "idx: %s: truncated %s: expected %lld bytes, got %lld%s%s", path, part,
                     (long long)want, (long long)got, zerr ? "; zlib: " : "", zerr ? zerr : "");
}

kiln_status kiln__vision_idx_read(const char *path, uint32_t want_magic, int64_t *dims, uint8_t **data)
{
    *data = NULL;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return kiln__err(KILN_STATUS_IO, "idx: cannot open %s: %s", path, strerror(errno ? errno : ENOMEM));
    gzbuffer(gz, 1 << 17);
    kiln_status st = KILN_STATUS_OK;
    const char *zerr;
    uint8_t hdr[4 + 4 * 3];
    int nd = (int)(want_magic & 0xff);
    int64_t got = gz_read_all(gz, hdr, 4, &zerr), total = 1;
    if (got < 4) {
        st = truncated(path, "header", 4, got, zerr);
        goto done;
    }
    uint32_t magic = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (magic != want_magic) {
        st = kiln__err(KILN_STATUS_FORMAT, "idx: %s: wrong magic 0x%08x, expected 0x%08x (%s)", path, magic,
                       want_magic, want_magic == IDX_IMAGES ? "u8 images, 3 dims" : "u8 labels, 1 dim");
        goto done;
    }
    got = gz_read_all(gz, hdr + 4, 4 * nd, &zerr);
    if (got < 4 * nd) {
        st = truncated(path, "header", 4 + 4 * nd, 4 + got, zerr);
        goto done;
    }
    for (int d = 0; d < nd; d++) {
        const uint8_t *b = hdr + 4 + 4 * d;
        dims[d] = (int64_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
        if (dims[d] == 0 && d > 0) {
            st = kiln__err(KILN_STATUS_FORMAT, "idx: %s: dimension %d is 0", path, d);
            goto done;
        }
    }
    /* Each dim is < 2^32, so three of them can pass 2^63: multiply with overflow checks. */
    bool over = false;
    for (int d = 0; d < nd; d++) over = over || __builtin_mul_overflow(total, dims[d], &total) || total > IDX_MAX_BYTES;
    if (over) {
        st = kiln__err(KILN_STATUS_FORMAT, "idx: %s: header sizes %lld x %lld x %lld give more than %lld bytes", path,
                       (long long)dims[0], (long long)(nd > 1 ? dims[1] : 1), (long long)(nd > 2 ? dims[2] : 1),
                       (long long)IDX_MAX_BYTES);
        goto done;
    }
    /* Memory follows the data, not the header: a short file claiming 16 GiB fails as
     * truncated after reading what it has, without reserving the 16 GiB first. */
    int64_t cap = 0;
    got = 0;
    do {
        int64_t ncap = cap ? (cap > total / 2 ? total : 2 * cap) : (total < IDX_FIRST_CHUNK ? total : IDX_FIRST_CHUNK);
        uint8_t *nb = realloc(*data, ncap ? (size_t)ncap : 1);
        if (!nb) {
            st = kiln__err(KILN_STATUS_NOMEM, "idx: out of memory for %lld bytes of %s", (long long)ncap, path);
            goto done;
        }
        *data = nb;
        got += gz_read_all(gz, *data + got, ncap - got, &zerr);
        cap = ncap;
    } while (got == cap && cap < total);
    if (got < total) {
        st = truncated(path, "data", total, got, zerr);
        goto done;
    }
    uint8_t extra;
    if (gz_read_all(gz, &extra, 1, &zerr) > 0) {
        st = kiln__err(KILN_STATUS_FORMAT, "idx: %s: extra bytes after the %lld data bytes the header gives", path,
                       (long long)total);
        goto done;
    }
    if (zerr) st = kiln__err(KILN_STATUS_FORMAT, "idx: %s: corrupt gzip stream: %s", path, zerr);
done:
    gzclose(gz);
    if (st) {
        free(*data);
        *data = NULL;
    }
    return st;
}

/* Reads one images/labels pair into split s. */
static kiln_status read_pair(const char *images, const char *labels, kiln__vsplit *s, int *h, int *w)
{
    int64_t di[3], dl[1];
    uint8_t *lab;
    kiln_status st = kiln__vision_idx_read(images, IDX_IMAGES, di, &s->pixels);
    if (st) return st;
    if ((st = kiln__vision_idx_read(labels, IDX_LABELS, dl, &lab))) return st;
    if (di[0] != dl[0]) {
        free(lab);
        return kiln__err(KILN_STATUS_FORMAT, "idx: inconsistent counts: %s has %lld images but %s has %lld labels",
                         images, (long long)di[0], labels, (long long)dl[0]);
    }
    if (di[1] > 4096 || di[2] > 4096) {
        free(lab);
        return kiln__err(KILN_STATUS_FORMAT, "idx: %s: image size %lldx%lld is too large", images, (long long)di[1],
                         (long long)di[2]);
    }
    s->n = di[0];
    s->labels = malloc((size_t)(s->n ? s->n : 1) * sizeof *s->labels);
    if (!s->labels) {
        free(lab);
        return kiln__err(KILN_STATUS_NOMEM, "idx: out of memory for the labels of %s", labels);
    }
    for (int64_t i = 0; i < s->n; i++) s->labels[i] = lab[i];
    free(lab);
    *h = (int)di[1];
    *w = (int)di[2];
    return KILN_STATUS_OK;
}

static const char *fashion_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                          "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

kiln_data *kiln__vision_idx_named(const char *name, const char *train_images, const char *train_labels,
                                  const char *valid_images, const char *valid_labels, const kiln_vision_params *p)
{
    if (!train_images || !train_labels || (!valid_images) != (!valid_labels))
        return kiln__errp(KILN_STATUS_INVALID, "vision_idx_new: need train images and labels, and both or neither "
                                               "of the valid pair");
    kiln_vision_data *v = kiln__vision_alloc(name ? name : train_images, p);
    if (!v) return NULL;
    int h, w, vh, vw;
    if (read_pair(train_images, train_labels, &v->s[KILN_DATA_SPLIT_TRAIN], &h, &w)) goto fail;
    if (valid_images) {
        if (read_pair(valid_images, valid_labels, &v->s[KILN_DATA_SPLIT_VALID], &vh, &vw)) goto fail;
        if (vh != h || vw != w) {
            kiln__err(KILN_STATUS_FORMAT, "idx: %s has %dx%d images but %s has %dx%d", train_images, h, w,
                      valid_images, vh, vw);
            goto fail;
        }
    }
    v->idx_h = h, v->idx_w = w;
    if (v->p.size == 0) {
        if (h != w) {
            kiln__err(KILN_STATUS_INVALID, "idx: %s images are %dx%d, not square: set params.size", train_images, h, w);
            goto fail;
        }
        v->size = h;
    }
    int64_t maxl = -1;
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < v->s[k].n; i++)
            if (v->s[k].labels[i] > maxl) maxl = v->s[k].labels[i];
    bool fashion = name && !strcmp(name, "fashion-mnist") && maxl < 10;
    v->n_classes = fashion ? 10 : (int)(maxl + 1);
    v->classes = calloc((size_t)(v->n_classes ? v->n_classes : 1), sizeof *v->classes);
    if (!v->classes) goto nomem;
    for (int c = 0; c < v->n_classes; c++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", c);
        if (!(v->classes[c] = kiln__vision_strdup(fashion ? fashion_classes[c] : buf))) goto fail;
    }
    if (kiln__vision_subset(v)) goto fail;
    return kiln__vision_finish(v, true);
nomem:
    kiln__err(KILN_STATUS_NOMEM, "idx: out of memory");
fail:
    kiln__vision_destroy(v);
    return NULL;
}

kiln_data *kiln_vision_idx_new(const char *train_images, const char *train_labels, const char *valid_images,
                               const char *valid_labels, const kiln_vision_params *p)
{
    return kiln__vision_idx_named(NULL, train_images, train_labels, valid_images, valid_labels, p);
}
