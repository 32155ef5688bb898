/* Internal to the augmentation files: the resampling kernels of src/data/vision/
 * augment_resample.c that src/data/vision/augment.c strings together. Not API. */
#ifndef KILN_AUGMENT_INTERNAL_H
#define KILN_AUGMENT_INTERNAL_H

#include "kiln/augment.h"

#include <stddef.h>

/* Crop stage, antialiased bilinear (PIL's resample with a box; F.interpolate(antialias=True)):
 * the box [x0, x1) x [y0, y1) of src (c, h, w) -> dst (c, oh, ow). clamp_box: the filter
 * window stops at the box's (integer) edges, as if the box had been cropped first;
 * otherwise at the image edges. NOMEM or OK. */
kiln_status kiln__aug_resize_box(const float *src, int c, int h, int w, const double box[4], bool clamp_box,
                                 float *dst, int oh, int ow);

/* Copies the (oh, ow) window at (x0, y0) of src (c, h, w) into dst (c, oh, ow); indices
 * outside the image are reflected without repeating the edge (torch pad mode 'reflect'). */
void kiln__aug_pad_copy(const float *src, int c, int h, int w, int x0, int y0, float *dst, int oh, int ow);

/* dst (c, h, w) = src (c, h, w) sampled at m . (x, y, 1) for every output pixel's normalised
 * coordinates (align_corners=True), bilinear with reflection padding: torch's grid_sample
 * (mode='bilinear', padding_mode='reflection', align_corners=True) on affine_grid + a
 * perspective. fallback (may be NULL) is used for a pixel whose homogeneous z is 0. */
void kiln__aug_warp(const float *src, int c, int h, int w, const double m[9], const double fallback[9],
                    float *dst);

/* x[i] = sigmoid(contrast * (logit(x[i]) + logit(brightness))), logit clamped to
 * [1e-7, 1 - 1e-7] as fastai's logit does. */
void kiln__aug_lighting(float *x, size_t n, float brightness, float contrast);

#endif
