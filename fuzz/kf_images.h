/* Tiny PNG and JPEG encoders (libspng, libturbojpeg) for make_seeds.c and the CSV target. */
#ifndef KILN_FUZZ_KF_IMAGES_H
#define KILN_FUZZ_KF_IMAGES_H

#include <stddef.h>
#include <stdint.h>

/* px (h, w, c) u8, c 1 (grey) or 3 (RGB). *out malloc'd (free it); 0 on success. */
int kf_png_encode(const uint8_t *px, int w, int h, int c, uint8_t **out, size_t *len);
int kf_jpeg_encode(const uint8_t *px, int w, int h, int c, uint8_t **out, size_t *len);

#endif
