/* Tiny PNG and JPEG encoders for the fuzz seeds (kf_images.h). */
#include "kf_images.h"

#include <spng.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

int kf_png_encode(const uint8_t *px, int w, int h, int c, uint8_t **out, size_t *len)
{
    spng_ctx *sc = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!sc) return -1;
    struct spng_ihdr ih = {.width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = 8,
                           .color_type = c == 1 ? SPNG_COLOR_TYPE_GRAYSCALE : SPNG_COLOR_TYPE_TRUECOLOR};
    int rc = spng_set_option(sc, SPNG_ENCODE_TO_BUFFER, 1);
    if (!rc) rc = spng_set_ihdr(sc, &ih);
    if (!rc) rc = spng_encode_image(sc, px, (size_t)w * h * c, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    int err = 0;
    *out = rc ? NULL : spng_get_png_buffer(sc, len, &err);
    spng_ctx_free(sc);
    return rc || err || !*out ? -1 : 0;
}

int kf_jpeg_encode(const uint8_t *px, int w, int h, int c, uint8_t **out, size_t *len)
{
    tjhandle tj = tjInitCompress();
    if (!tj) return -1;
    unsigned char *jb = NULL;
    unsigned long jn = 0;
    int rc = tjCompress2(tj, px, w, 0, h, c == 1 ? TJPF_GRAY : TJPF_RGB, &jb, &jn, c == 1 ? TJSAMP_GRAY : TJSAMP_420,
                         75, 0);
    tjDestroy(tj);
    *out = rc ? NULL : malloc(jn);
    if (*out) memcpy(*out, jb, jn), *len = jn;
    tjFree(jb);
    return *out ? 0 : -1;
}
