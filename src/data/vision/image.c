/* Image files: PNG through libspng, JPEG through libturbojpeg, told apart by their first
 * bytes (not the file name). Decoded pixels become f32 (h, w, c) in [0, 1]; channels follow
 * PIL's convert(): grey replicated to RGB, alpha dropped, RGB to grey as ITU-R 601-2 luma.
 * 16-bit PNGs are scaled by 1/65535 (PIL would clip them). A truncated JPEG is an error, as
 * in PIL; other libjpeg warnings (extraneous bytes) are tolerated, as in PIL. */
#include "data/vision/vision_internal.h"

#include <errno.h>
#include <spng.h>
#include <stdio.h>
#include <string.h>
#include <turbojpeg.h>

#define MAX_SIDE 32768          /* larger sides are refused rather than decoded */
#define PROBE_BYTES (64 * 1024) /* enough for any PNG header and nearly every JPEG's SOF */

static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static bool is_png(const unsigned char *b, size_t n) { return n >= 8 && !memcmp(b, png_sig, 8); }
static bool is_jpeg(const unsigned char *b, size_t n) { return n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff; }

/* Reads at most max bytes (SIZE_MAX: all) of path; *whole says whether that was the file. */
static kiln_status read_prefix(const char *what, const char *path, size_t max, unsigned char **buf, size_t *len,
                               bool *whole)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return kiln__err(KILN_STATUS_IO, "%s: cannot open %s: %s", what, path, strerror(errno));
    size_t cap = 0, n = 0;
    unsigned char *b = NULL;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64 * 1024;
            if (ncap > max) ncap = max;
            if (ncap == cap) break; /* reached max */
            unsigned char *nb = realloc(b, ncap);
            if (!nb) {
                free(b);
                fclose(f);
                return kiln__err(KILN_STATUS_NOMEM, "%s: out of memory reading %s", what, path);
            }
            b = nb;
            cap = ncap;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    bool err = ferror(f);
    int c = n == max ? fgetc(f) : EOF;
    fclose(f);
    if (err) {
        free(b);
        return kiln__err(KILN_STATUS_IO, "%s: read error on %s", what, path);
    }
    *buf = b;
    *len = n;
    if (whole) *whole = c == EOF;
    return KILN_STATUS_OK;
}

kiln_status kiln__vision_read_file(const char *what, const char *path, unsigned char **buf, size_t *len)
{
    return read_prefix(what, path, SIZE_MAX, buf, len, NULL);
}

void kiln__vimage_free(kiln__vimage *im)
{
    if (!im) return;
    free(im->px);
    im->px = NULL;
}

/* The header's size against the caller's cap, before any pixel buffer is allocated: a small
 * file can claim a huge image (an 875 KB PNG of 30000x30000 took 7 GB to decode). */
static kiln_status check_pixels(const char *path, const char *kind, int64_t w, int64_t h, int64_t max_pixels)
{
    if (w * h <= max_pixels) return KILN_STATUS_OK; /* each side <= MAX_SIDE: no overflow */
    return kiln__err(KILN_STATUS_FORMAT,
                     "image: %s: %s of %lldx%lld is %lld pixels, more than the limit of %lld (max_pixels)", path,
                     kind, (long long)w, (long long)h, (long long)(w * h), (long long)max_pixels);
}

/* ---- PNG ----------------------------------------------------------------------------------- */

static spng_ctx *png_open(const unsigned char *b, size_t n, struct spng_ihdr *ihdr, int *rc)
{
    spng_ctx *sc = spng_ctx_new(0);
    if (!sc) {
        *rc = SPNG_EMEM;
        return NULL;
    }
    spng_set_image_limits(sc, MAX_SIDE, MAX_SIDE);
    spng_set_chunk_limits(sc, 1u << 26, 1u << 26);
    *rc = spng_set_png_buffer(sc, b, n);
    if (!*rc) *rc = spng_get_ihdr(sc, ihdr);
    if (*rc) {
        spng_ctx_free(sc);
        return NULL;
    }
    return sc;
}

static kiln_status png_decode(const char *path, const unsigned char *b, size_t n, int want_c, int64_t max_pixels,
                              kiln__vimage *out)
{
    struct spng_ihdr ihdr;
    int rc;
    spng_ctx *sc = png_open(b, n, &ihdr, &rc);
    if (!sc) return kiln__err(KILN_STATUS_FORMAT, "image: %s: not a valid PNG: %s", path, spng_strerror(rc));
    kiln_status st = check_pixels(path, "PNG", ihdr.width, ihdr.height, max_pixels);
    if (st) {
        spng_ctx_free(sc);
        return st;
    }
    bool grey = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE || ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
    bool deep = ihdr.bit_depth == 16;
    int fmt = deep ? SPNG_FMT_RGBA16 : SPNG_FMT_RGBA8; /* every colour type converts to these */
    size_t bytes = 0;
    rc = spng_decoded_image_size(sc, fmt, &bytes);
    unsigned char *raw = rc ? NULL : malloc(bytes);
    if (!rc && !raw) {
        spng_ctx_free(sc);
        return kiln__err(KILN_STATUS_NOMEM, "image: out of memory decoding %s", path);
    }
    if (!rc) rc = spng_decode_image(sc, raw, bytes, fmt, 0);
    spng_ctx_free(sc);
    if (rc) {
        free(raw);
        return kiln__err(KILN_STATUS_FORMAT, "image: %s: corrupt or truncated PNG: %s", path, spng_strerror(rc));
    }
    int h = (int)ihdr.height, w = (int)ihdr.width, c = want_c ? want_c : grey ? 1 : 3;
    float *px = malloc((size_t)h * w * c * sizeof *px); /* (h, w, c) */
    if (!px) {
        free(raw);
        return kiln__err(KILN_STATUS_NOMEM, "image: out of memory decoding %s", path);
    }
    const uint16_t *r16 = (const uint16_t *)raw;
    float scale = deep ? 1.0f / 65535.0f : 1.0f / 255.0f;
    for (size_t i = 0, np = (size_t)h * w; i < np; i++) {
        float r, g, bl;
        if (deep) r = r16[4 * i], g = r16[4 * i + 1], bl = r16[4 * i + 2];
        else r = raw[4 * i], g = raw[4 * i + 1], bl = raw[4 * i + 2];
        if (c == 3) {
            px[3 * i] = r * scale, px[3 * i + 1] = g * scale, px[3 * i + 2] = bl * scale;
        } else {
            px[i] = (grey ? r : (r * 19595.0f + g * 38470.0f + bl * 7471.0f) / 65536.0f) * scale;
        }
    }
    free(raw);
    *out = (kiln__vimage){.px = px, .h = h, .w = w, .c = c};
    return KILN_STATUS_OK;
}

/* ---- JPEG ---------------------------------------------------------------------------------- */

/* tjDecompress2 reports "Premature end of JPEG file" as a warning and pads the image with
 * grey; PIL refuses such a file ("image file is truncated"), and so do we. */
static bool jpeg_fatal(tjhandle tj)
{
    if (tjGetErrorCode(tj) != TJERR_WARNING) return true;
    return strstr(tjGetErrorStr2(tj), "Premature end") != NULL;
}

static kiln_status jpeg_decode(const char *path, const unsigned char *b, size_t n, int want_c, int64_t max_pixels,
                               kiln__vimage *out)
{
    tjhandle tj = tjInitDecompress();
    if (!tj) return kiln__err(KILN_STATUS_NOMEM, "image: cannot start the JPEG decoder for %s", path);
    int w, h, sub, cs;
    if (tjDecompressHeader3(tj, b, (unsigned long)n, &w, &h, &sub, &cs) != 0) {
        kiln_status st = kiln__err(KILN_STATUS_FORMAT, "image: %s: not a valid JPEG: %s", path, tjGetErrorStr2(tj));
        tjDestroy(tj);
        return st;
    }
    if (w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE) {
        tjDestroy(tj);
        return kiln__err(KILN_STATUS_FORMAT, "image: %s: JPEG size %dx%d out of range", path, w, h);
    }
    kiln_status st = check_pixels(path, "JPEG", w, h, max_pixels);
    if (st) {
        tjDestroy(tj);
        return st;
    }
    bool grey = cs == TJCS_GRAY;
    int src_c = grey ? 1 : 3, c = want_c ? want_c : src_c;
    unsigned char *raw = malloc((size_t)h * w * src_c); /* (h, w, src_c) */
    float *px = malloc((size_t)h * w * c * sizeof *px);  /* (h, w, c) */
    if (!raw || !px) {
        free(raw), free(px), tjDestroy(tj);
        return kiln__err(KILN_STATUS_NOMEM, "image: out of memory decoding %s", path);
    }
    if (tjDecompress2(tj, b, (unsigned long)n, raw, w, 0, h, grey ? TJPF_GRAY : TJPF_RGB, 0) != 0 &&
        jpeg_fatal(tj)) {
        kiln_status st = kiln__err(KILN_STATUS_FORMAT, "image: %s: corrupt or truncated JPEG: %s", path,
                                   tjGetErrorStr2(tj));
        free(raw), free(px), tjDestroy(tj);
        return st;
    }
    tjDestroy(tj);
    const float s = 1.0f / 255.0f;
    for (size_t i = 0, np = (size_t)h * w; i < np; i++) {
        if (grey) {
            for (int k = 0; k < c; k++) px[i * c + k] = raw[i] * s;
        } else if (c == 3) {
            px[3 * i] = raw[3 * i] * s, px[3 * i + 1] = raw[3 * i + 1] * s, px[3 * i + 2] = raw[3 * i + 2] * s;
        } else {
            px[i] = (raw[3 * i] * 19595.0f + raw[3 * i + 1] * 38470.0f + raw[3 * i + 2] * 7471.0f) / 65536.0f * s;
        }
    }
    free(raw);
    *out = (kiln__vimage){.px = px, .h = h, .w = w, .c = c};
    return KILN_STATUS_OK;
}

/* ---- entry points -------------------------------------------------------------------------- */

static kiln_status not_image(const char *path, size_t n)
{
    if (n == 0) return kiln__err(KILN_STATUS_FORMAT, "image: %s: empty file, not an image", path);
    return kiln__err(KILN_STATUS_FORMAT, "image: %s: not a PNG or JPEG image (unknown first bytes)", path);
}

kiln_status kiln__vision_decode(const char *path, int want_c, int64_t max_pixels, kiln__vimage *out)
{
    *out = (kiln__vimage){0};
    if (want_c != 0 && want_c != 1 && want_c != 3)
        return kiln__err(KILN_STATUS_INVALID, "image: n_channels %d must be 0, 1 or 3", want_c);
    if (max_pixels < 1) return kiln__err(KILN_STATUS_INVALID, "image: max_pixels %lld must be >= 1", (long long)max_pixels);
    unsigned char *b;
    size_t n;
    kiln_status st = kiln__vision_read_file("image", path, &b, &n);
    if (st) return st;
    if (is_png(b, n)) st = png_decode(path, b, n, want_c, max_pixels, out);
    else if (is_jpeg(b, n)) st = jpeg_decode(path, b, n, want_c, max_pixels, out);
    else st = not_image(path, n);
    free(b);
    return st;
}

static kiln_status probe_buf(const char *path, const unsigned char *b, size_t n, bool whole, int64_t max_pixels,
                             kiln__vprobe *out)
{
    if (is_png(b, n)) {
        struct spng_ihdr ihdr;
        int rc;
        spng_ctx *sc = png_open(b, n, &ihdr, &rc);
        if (!sc) return kiln__err(KILN_STATUS_FORMAT, "image: %s: not a valid PNG: %s", path, spng_strerror(rc));
        spng_ctx_free(sc);
        kiln_status st = check_pixels(path, "PNG", ihdr.width, ihdr.height, max_pixels);
        if (st) return st;
        out->h = (int)ihdr.height, out->w = (int)ihdr.width;
        out->grey = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE ||
                    ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA;
        return KILN_STATUS_OK;
    }
    if (is_jpeg(b, n)) {
        tjhandle tj = tjInitDecompress();
        if (!tj) return kiln__err(KILN_STATUS_NOMEM, "image: cannot start the JPEG decoder for %s", path);
        int w, h, sub, cs;
        int rc = tjDecompressHeader3(tj, b, (unsigned long)n, &w, &h, &sub, &cs);
        kiln_status st = KILN_STATUS_OK;
        if (rc != 0 && whole)
            st = kiln__err(KILN_STATUS_FORMAT, "image: %s: not a valid JPEG: %s", path, tjGetErrorStr2(tj));
        else if (rc != 0)
            st = KILN_STATUS_UNSUPPORTED; /* header beyond the prefix: caller reads it all */
        else if (w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE)
            st = kiln__err(KILN_STATUS_FORMAT, "image: %s: JPEG size %dx%d out of range", path, w, h);
        else if ((st = check_pixels(path, "JPEG", w, h, max_pixels)))
            ;
        else
            out->h = h, out->w = w, out->grey = cs == TJCS_GRAY;
        tjDestroy(tj);
        return st;
    }
    return not_image(path, n);
}

kiln_status kiln__vision_probe(const char *path, int64_t max_pixels, kiln__vprobe *out)
{
    unsigned char *b;
    size_t n;
    bool whole;
    kiln_status st = read_prefix("image", path, PROBE_BYTES, &b, &n, &whole);
    if (st) return st;
    st = probe_buf(path, b, n, whole, max_pixels, out);
    free(b);
    if (st == KILN_STATUS_UNSUPPORTED) { /* a JPEG with a long preamble (EXIF, thumbnails) */
        if ((st = kiln__vision_read_file("image", path, &b, &n))) return st;
        st = probe_buf(path, b, n, true, max_pixels, out);
        free(b);
    }
    return st;
}

kiln_tensor *kiln_vision_image_load(kiln_ctx *ctx, const char *path, int n_channels, int size,
                                    kiln_vision_resize resize)
{
    return kiln_vision_image_load_ex(ctx, path, n_channels, size, resize, KILN_VISION_MAX_PIXELS);
}

kiln_tensor *kiln_vision_image_load_ex(kiln_ctx *ctx, const char *path, int n_channels, int size,
                                       kiln_vision_resize resize, int64_t max_pixels)
{
    if (!ctx || !path) return kiln__errp(KILN_STATUS_INVALID, "vision_image_load: NULL argument");
    if (size < 0 || (resize != KILN_VISION_RESIZE_CROP && resize != KILN_VISION_RESIZE_SQUISH))
        return kiln__errp(KILN_STATUS_INVALID, "vision_image_load: bad size %d or resize mode %d", size, (int)resize);
    kiln__vimage im;
    if (kiln__vision_decode(path, n_channels, max_pixels, &im)) return NULL;
    int oh = size ? size : im.h, ow = size ? size : im.w;
    kiln_tensor *t = kiln_empty(ctx, KILN_DTYPE_F32, 3, (int64_t[]){im.c, oh, ow}); /* (C, H, W) */
    if (!t) {
        kiln__vimage_free(&im);
        return NULL;
    }
    float *dst = t->data;
    kiln_status st = KILN_STATUS_OK;
    if (size) {
        st = kiln__vision_resize(im.px, im.h, im.w, im.c, size, resize, dst);
    } else {
        for (int y = 0; y < im.h; y++)
            for (int x = 0; x < im.w; x++)
                for (int k = 0; k < im.c; k++)
                    dst[((size_t)k * im.h + y) * im.w + x] = im.px[((size_t)y * im.w + x) * im.c + k];
    }
    kiln__vimage_free(&im);
    return st ? NULL : t;
}
