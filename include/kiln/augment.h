/* kiln augment: fastai's image augmentation, one item at a time, plus the show-batch grid.
 *
 * An item goes through two resampling stages, like fastai's item and batch transforms:
 *   1. crop: a box of the source (random or centred; fastai v2 Resize, RandomResizedCrop,
 *      or a random crop with reflection padding) resampled to the output size with PIL's
 *      antialiased bilinear filter (what F.interpolate(antialias=True) computes);
 *   2. affine + lighting (fastai v2 aug_transforms): dihedral/flip, warp, rotate and zoom
 *      composed into ONE 3x3 projective matrix on grid_sample's normalised coordinates,
 *      applied once with bilinear sampling and reflection padding
 *      (grid_sample(mode='bilinear', padding_mode='reflection', align_corners=True), the
 *      align_corners=True that aug_transforms passes), then brightness and contrast on logits.
 *
 * Randomness: draw k of an item is kiln_philox_uniform(seed, counter + k), one fixed k per
 * quantity, k < KILN_AUGMENT_COUNTERS, so an item's augmentation is a pure function of
 * (params, sizes, seed, counter, train): any thread may compute any item, in any order.
 * Give items counters at least KILN_AUGMENT_COUNTERS apart (kiln_vision_item_counter's are).
 *
 * Images are float CHW (one item) or NCHW (a batch), values in [0, 1]: lighting works on
 * logits and clamps to [1e-7, 1 - 1e-7] first, so normalise (mean/std) after augmenting.
 * All buffers are caller-owned; nothing here keeps a pointer after returning. */
#ifndef KILN_AUGMENT_H
#define KILN_AUGMENT_H

#include "kiln/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Counters one item's draws use, from its counter on (<= KILN_VISION_TFM_COUNTERS). */
#define KILN_AUGMENT_COUNTERS 64

/* How the crop stage picks its source box (train / valid). */
typedef enum kiln_augment_crop {
    /* fastai v2 Resize(size) (ResizeMethod.Crop): the largest box with the output's aspect
     * ratio; train: random position, valid: centred; resampled to the output size. */
    KILN_AUGMENT_CROP_RESIZE = 0,
    /* Resize(method='squish'): the whole image resampled to the output size (both splits). */
    KILN_AUGMENT_CROP_SQUISH,
    /* Random crop with padding (torchvision RandomCrop(size, padding, padding_mode='reflect'),
     * fastai v1 rand_crop): train: a random output-sized window of the image reflection-padded
     * by crop_pad pixels; valid: the centred window. No resampling. */
    KILN_AUGMENT_CROP_PAD,
    /* fastai v2 RandomResizedCrop(size, min_scale, ratio, val_xtra): train: up to 10 tries of
     * a random box (area fraction U(min_scale, max_scale), aspect log-uniform in ratio), else
     * a centre box clamped to ratio; valid: resize to size + ceil(size*val_xtra/8)*8 and take
     * the centre (what fastai does, as one resampling). */
    KILN_AUGMENT_CROP_RANDOM_RESIZED,
} kiln_augment_crop;

typedef struct kiln_augment_params {
    /* crop stage */
    kiln_augment_crop crop;     /* KILN_AUGMENT_CROP_RESIZE */
    int crop_pad;               /* CROP_PAD: reflection padding on each side, pixels (4) */
    float min_scale, max_scale; /* RANDOM_RESIZED: area fraction range (0.08, 1) */
    float ratio_min, ratio_max; /* RANDOM_RESIZED: box width/height range (3/4, 4/3) */
    float val_xtra;             /* RANDOM_RESIZED valid: extra resize fraction (0.14) */
    /* affine: each part drawn per item with its own Bernoulli, neutral otherwise */
    bool do_flip;               /* true: Flip(p_flip) (x -> -x) */
    bool flip_vert;             /* false; true: the 8-way Dihedral(p_flip) instead of Flip */
    float p_flip;               /* 0.5 */
    float max_rotate;           /* degrees: angle U(-max, max) (10) */
    float min_zoom, max_zoom;   /* zoom U(min, max) (1, 1.1) about a random centre */
    float max_warp;             /* perspective warp magnitudes U(-max, max) (0.2) */
    float p_affine;             /* for each of warp x, warp y, rotate and zoom (0.75) */
    /* lighting, on logits */
    float max_lighting;         /* brightness change U(0.5 -+ max/2), contrast scale
                                   log-uniform(1 - max, 1/(1 - max)) (0.2) */
    float p_lighting;           /* for each of brightness and contrast (0.75) */
} kiln_augment_params;

/* The defaults of fastai's aug_transforms() (and Resize-crop for the crop stage). */
kiln_augment_params kiln_augment_default_params(void);
/* OK, or INVALID with a message naming the field ("augment: p_affine 1.5 is outside [0, 1]"). */
kiln_status kiln_augment_check_params(const kiln_augment_params *p);

/* ---- one item's drawn transform (explicit parameters) ------------------------------------ */

typedef enum kiln_augment_box {
    KILN_AUGMENT_BOX_CROP = 0, /* crop the box, then resize the crop as its own image (fastai
                                  crop_pad(..., resize_to)): the filter stops at the box edges */
    KILN_AUGMENT_BOX_WHOLE,    /* resize the whole image, keep the box's part: the filter
                                  stops at the image edges (RandomResizedCrop's valid split) */
    KILN_AUGMENT_BOX_PAD,      /* integer box of exactly the output size, copied; pixels
                                  outside the image are reflected (torch pad mode 'reflect') */
} kiln_augment_box;

typedef struct kiln_augment_draw {
    kiln_augment_box box_kind;
    double box[4];     /* source box in pixels: left, top, right, bottom (exclusive) */
    int dihedral;      /* 0 = none, 1 = flip left-right, 0..7 = fastai's dihedral_mat index */
    float rotate;      /* degrees, fastai rotate_mat (0 = none) */
    float zoom;        /* fastai zoom_mat scale (1 = none); the view shrinks by 1/zoom */
    float zoom_col;    /* zoom centre, fractions in [0, 1] (0.5 = centre) */
    float zoom_row;
    float warp_x;      /* fastai _WarpCoord magnitudes (0 = none) */
    float warp_y;
    float brightness;  /* change in (0, 1): x += logit(change) (0.5 = none) */
    float contrast;    /* scale > 0: x *= scale (1 = none) */
} kiln_augment_draw;

/* The identity: whole image squished to the output, no affine, no lighting. */
kiln_augment_draw kiln_augment_draw_identity(int h, int w);
/* Draws the transform of item (seed, counter) for a (h, w) source and (oh, ow) output;
 * train = false gives the validation transform (centre crop/resize, nothing random). */
kiln_status kiln_augment_sample(const kiln_augment_params *p, int h, int w, int oh, int ow, uint64_t seed,
                                uint64_t counter, bool train, kiln_augment_draw *out);
/* The 3x3 row-major matrix that maps an output pixel's normalised coordinates (x, y, 1),
 * x, y in [-1, 1] (align_corners=True), to homogeneous sampling coordinates in the crop
 * stage's (h, w) image: Warp . AspectFix(Dihedral . Rotate . Zoom), as fastai v2 composes
 * them (the affine part on the grid, the warp's perspective after it). */
kiln_status kiln_augment_matrix(const kiln_augment_draw *d, int h, int w, double m[9]);
/* Applies an explicit transform: src (c, h, w) -> dst (c, oh, ow); src and dst must not
 * overlap. Uses one scratch image of c*oh*ow floats (malloc) when the affine part is not
 * the identity. */
kiln_status kiln_augment_apply(const kiln_augment_draw *d, const float *src, int c, int h, int w, float *dst,
                               int oh, int ow);

/* ---- per item and per batch --------------------------------------------------------------- */

/* kiln_augment_sample + kiln_augment_apply: src (c, h, w) in [0, 1] -> dst (c, oh, ow).
 * Thread-safe; deterministic in (p, sizes, seed, counter, train). */
kiln_status kiln_augment_item(const kiln_augment_params *p, const float *src, int c, int h, int w, float *dst,
                              int oh, int ow, uint64_t seed, uint64_t counter, bool train);
/* Every item of src (b, c, h, w) -> dst (b, c, oh, ow); item i uses counter
 * first_counter + i * KILN_AUGMENT_COUNTERS.
 * Items run in parallel (OpenMP) when kiln is built with it. */
kiln_status kiln_augment_batch(const kiln_augment_params *p, const float *src, int b, int c, int h, int w,
                               float *dst, int oh, int ow, uint64_t seed, uint64_t first_counter, bool train);

/* A kiln_vision_tfm_fn (vision.h) for the image loader: user is a const kiln_augment_params *
 * (checked on every call, so keep it valid and unchanged while the loader runs); img
 * (c, h, w) is augmented in place at its own size, the crop stage working on the loader's
 * already resized image (CROP_RESIZE is then the identity; CROP_PAD and RANDOM_RESIZED crop
 * and resample back to (h, w)). */
kiln_status kiln_augment_tfm(void *user, float *img, int c, int h, int w, uint64_t seed, uint64_t item_counter,
                             bool train);

/* ---- show_batch ------------------------------------------------------------------------- *
 * Writes images (b, c, h, w), c = 1 (grey) or 3 (RGB), as a PNG grid of ncol columns (0 =
 * ceil(sqrt(b))), each image with its label (labels may be NULL, or hold NULL entries)
 * above it; '\n' in a label starts a new line (at most 4), long lines end in "...". mean/std (c,) undo a normalisation first (x * std + mean), or are NULL for
 * images already in [0, 1]; values are then clipped to [0, 1]. Big images are box-averaged
 * by an integer factor to at most 192 pixels a side, small ones drawn with k x k squares
 * to about 176. Drawn with PLplot (pngcairo), written to "<path>.tmp.<pid>" and renamed
 * over path; UNSUPPORTED in a build without PLplot. At most 1024 images. */
kiln_status kiln_image_grid_png(const char *path, const float *images, int b, int c, int h, int w,
                                const char *const *labels, int ncol, const float *mean, const float *std);

#ifdef __cplusplus
}
#endif
#endif
