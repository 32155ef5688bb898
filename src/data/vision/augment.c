/* fastai's augmentation for one item (see include/kiln/augment.h): drawing a transform from
 * (seed, counter) the way fastai v2's RandTransforms draw theirs per item, composing the
 * affine parts into one projective matrix, and applying crop -> warp -> lighting.
 *
 * Formulas follow fastai v2 (vision/augment.py): flip_mat, dihedral_mat, rotate_mat,
 * zoom_mat, _WarpCoord + find_coeffs, _prepare_mat (aspect fix), _BrightnessLogit,
 * _ContrastLogit, Resize, RandomResizedCrop; each part is masked with its own Bernoulli(p)
 * and is neutral otherwise (mask_tensor). tests/fixtures/gen_augment.py re-derives them in
 * torch for the parity test. */
#include "data/vision/augment_internal.h"

#include "core/internal.h"

#include <math.h>
#include <string.h>

/* Draw slots: each random quantity has its own fixed counter, so changing one parameter
 * never shifts the others' draws. */
enum {
    SLOT_FLIP = 0, SLOT_DIHEDRAL = 1,
    SLOT_WARP_X_P = 2, SLOT_WARP_X = 3, SLOT_WARP_Y_P = 4, SLOT_WARP_Y = 5,
    SLOT_ROT_P = 6, SLOT_ROT = 7,
    SLOT_ZOOM_P = 8, SLOT_ZOOM = 9, SLOT_ZOOM_COL = 10, SLOT_ZOOM_ROW = 11,
    SLOT_BRIGHT_P = 12, SLOT_BRIGHT = 13, SLOT_CONTRAST_P = 14, SLOT_CONTRAST = 15,
    SLOT_CROP_X = 16, SLOT_CROP_Y = 17,
    SLOT_RRC = 20, /* + 4 * try + {area, ratio, left, top} */
    RRC_TRIES = 10,
};
_Static_assert(SLOT_RRC + 4 * RRC_TRIES <= KILN_AUGMENT_COUNTERS, "augment: draw slots exceed the counters");

kiln_augment_params kiln_augment_default_params(void)
{
    return (kiln_augment_params){
        .crop = KILN_AUGMENT_CROP_RESIZE, .crop_pad = 4,
        .min_scale = 0.08f, .max_scale = 1.0f, .ratio_min = 3.0f / 4.0f, .ratio_max = 4.0f / 3.0f,
        .val_xtra = 0.14f,
        .do_flip = true, .flip_vert = false, .p_flip = 0.5f,
        .max_rotate = 10.0f, .min_zoom = 1.0f, .max_zoom = 1.1f, .max_warp = 0.2f, .p_affine = 0.75f,
        .max_lighting = 0.2f, .p_lighting = 0.75f,
    };
}

static kiln_status check_p(const char *name, float p)
{
    if (!(p >= 0.0f && p <= 1.0f))
        return kiln__err(KILN_STATUS_INVALID, "augment: %s %g is outside [0, 1]", name, (double)p);
    return KILN_STATUS_OK;
}

static kiln_status check_range(const char *name, float v, float lo, float hi, const char *what)
{
    if (!(v >= lo && v <= hi))
        return kiln__err(KILN_STATUS_INVALID, "augment: %s %g %s", name, (double)v, what);
    return KILN_STATUS_OK;
}

kiln_status kiln_augment_check_params(const kiln_augment_params *p)
{
    if (!p)
        return kiln__err(KILN_STATUS_INVALID, "augment: params is NULL");
    kiln_status st;
    if ((st = check_p("p_flip", p->p_flip)) || (st = check_p("p_affine", p->p_affine)) ||
        (st = check_p("p_lighting", p->p_lighting)))
        return st;
    if ((int)p->crop < 0 || p->crop > KILN_AUGMENT_CROP_RANDOM_RESIZED)
        return kiln__err(KILN_STATUS_INVALID, "augment: unknown crop mode %d", (int)p->crop);
    if (p->crop_pad < 0)
        return kiln__err(KILN_STATUS_INVALID, "augment: crop_pad %d is negative", p->crop_pad);
    if ((st = check_range("max_rotate", p->max_rotate, 0, 360, "must be in [0, 360] degrees")) ||
        (st = check_range("max_warp", p->max_warp, 0, 0.99f, "must be in [0, 0.99]")) ||
        (st = check_range("max_lighting", p->max_lighting, 0, 0.99f, "must be in [0, 0.99]")) ||
        (st = check_range("min_zoom", p->min_zoom, 1e-3f, 1e3f, "must be in [0.001, 1000]")) ||
        (st = check_range("max_zoom", p->max_zoom, p->min_zoom, 1e3f, "must be in [min_zoom, 1000]")) ||
        (st = check_range("min_scale", p->min_scale, 1e-6f, 1.0f, "must be in (0, 1]")) ||
        (st = check_range("max_scale", p->max_scale, p->min_scale, 1.0f, "must be in [min_scale, 1]")) ||
        (st = check_range("ratio_min", p->ratio_min, 1e-3f, 1e3f, "must be in [0.001, 1000]")) ||
        (st = check_range("ratio_max", p->ratio_max, p->ratio_min, 1e3f, "must be in [ratio_min, 1000]")) ||
        (st = check_range("val_xtra", p->val_xtra, 0, 10, "must be in [0, 10]")))
        return st;
    return KILN_STATUS_OK;
}

static kiln_status check_sizes(int c, int h, int w, int oh, int ow)
{
    if (c < 1 || h < 1 || w < 1 || oh < 1 || ow < 1)
        return kiln__err(KILN_STATUS_INVALID, "augment: sizes must be positive, got source (%d, %d, %d), "
                         "output (%d, %d)", c, h, w, oh, ow);
    if (h > 65536 || w > 65536 || oh > 65536 || ow > 65536 || c > 65536)
        return kiln__err(KILN_STATUS_INVALID, "augment: size too large: source (%d, %d, %d), output (%d, %d)", c,
                         h, w, oh, ow);
    return KILN_STATUS_OK;
}

/* ---- drawing ------------------------------------------------------------------------------ */

/* An item's draws: slot k is kiln_philox_uniform(seed, counter + k), k < KILN_AUGMENT_COUNTERS. */
typedef struct item_rng {
    uint64_t seed, counter;
} item_rng;

static double u01(item_rng r, int slot) { return (double)kiln_philox_uniform(r.seed, r.counter + (uint64_t)slot); }

static double uni(item_rng r, int slot, double lo, double hi) { return lo + (hi - lo) * u01(r, slot); }

/* Python's random.randint(0, n): 0..n inclusive. */
static int randint0(item_rng r, int slot, int n)
{
    if (n <= 0)
        return 0;
    int v = (int)(u01(r, slot) * (n + 1));
    return v > n ? n : v;
}

static bool bern(item_rng r, int slot, float p) { return u01(r, slot) < p; }

static int floordiv(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static void set_box(kiln_augment_draw *d, kiln_augment_box kind, double x0, double y0, double x1, double y1)
{
    d->box_kind = kind;
    d->box[0] = x0, d->box[1] = y0, d->box[2] = x1, d->box[3] = y1;
}

kiln_augment_draw kiln_augment_draw_identity(int h, int w)
{
    kiln_augment_draw d = {.zoom = 1, .zoom_col = 0.5f, .zoom_row = 0.5f, .brightness = 0.5f, .contrast = 1};
    set_box(&d, KILN_AUGMENT_BOX_CROP, 0, 0, w, h);
    return d;
}

/* fastai v2 RandomResizedCrop.before_call. */
static void draw_rrc(const kiln_augment_params *p, int h, int w, int oh, int ow, item_rng key, bool train,
                     kiln_augment_draw *d)
{
    if (!train) {
        int big = oh > ow ? oh : ow;
        int xtra = (int)ceil(big * (double)p->val_xtra / 8.0) * 8;
        double sx = (double)w / (ow + xtra), sy = (double)h / (oh + xtra);
        int tl = xtra / 2;
        set_box(d, KILN_AUGMENT_BOX_WHOLE, tl * sx, tl * sy, (tl + ow) * sx, (tl + oh) * sy);
        return;
    }
    double lr0 = log((double)p->ratio_min), lr1 = log((double)p->ratio_max);
    for (int t = 0; t < RRC_TRIES; t++) {
        int s = SLOT_RRC + 4 * t;
        double area = uni(key, s, p->min_scale, p->max_scale) * w * h;
        double ratio = exp(uni(key, s + 1, lr0, lr1));
        int nw = (int)nearbyint(sqrt(area * ratio)), nh = (int)nearbyint(sqrt(area / ratio));
        if (nw >= 1 && nh >= 1 && nw <= w && nh <= h) {
            int x0 = randint0(key, s + 2, w - nw), y0 = randint0(key, s + 3, h - nh);
            set_box(d, KILN_AUGMENT_BOX_CROP, x0, y0, x0 + nw, y0 + nh);
            return;
        }
    }
    int cw = w, ch = h;
    if ((double)w / h < p->ratio_min)
        ch = (int)(w / (double)p->ratio_min);
    else if ((double)w / h > p->ratio_max)
        cw = (int)(h * (double)p->ratio_max);
    cw = cw < 1 ? 1 : cw, ch = ch < 1 ? 1 : ch;
    int x0 = (w - cw) / 2, y0 = (h - ch) / 2;
    set_box(d, KILN_AUGMENT_BOX_CROP, x0, y0, x0 + cw, y0 + ch);
}

static void draw_crop(const kiln_augment_params *p, int h, int w, int oh, int ow, item_rng key, bool train,
                      kiln_augment_draw *d)
{
    switch (p->crop) {
    case KILN_AUGMENT_CROP_SQUISH:
        set_box(d, KILN_AUGMENT_BOX_CROP, 0, 0, w, h);
        break;
    case KILN_AUGMENT_CROP_PAD: {
        int pad = p->crop_pad, x0 = floordiv(w - ow, 2), y0 = floordiv(h - oh, 2);
        if (train && w + 2 * pad >= ow)
            x0 = -pad + randint0(key, SLOT_CROP_X, w + 2 * pad - ow);
        if (train && h + 2 * pad >= oh)
            y0 = -pad + randint0(key, SLOT_CROP_Y, h + 2 * pad - oh);
        set_box(d, KILN_AUGMENT_BOX_PAD, x0, y0, x0 + ow, y0 + oh);
        break;
    }
    case KILN_AUGMENT_CROP_RANDOM_RESIZED:
        draw_rrc(p, h, w, oh, ow, key, train, d);
        break;
    case KILN_AUGMENT_CROP_RESIZE:
    default: {
        /* fastai v2 Resize, ResizeMethod.Crop: m = min(w/ow, h/oh) */
        double m = fmin((double)w / ow, (double)h / oh);
        int cw = (int)(m * ow), ch = (int)(m * oh);
        cw = cw < 1 ? 1 : (cw > w ? w : cw), ch = ch < 1 ? 1 : (ch > h ? h : ch);
        double px = train ? uni(key, SLOT_CROP_X, 0, 1) : 0.5, py = train ? uni(key, SLOT_CROP_Y, 0, 1) : 0.5;
        int x0 = (int)(px * (w - cw)), y0 = (int)(py * (h - ch));
        set_box(d, KILN_AUGMENT_BOX_CROP, x0, y0, x0 + cw, y0 + ch);
        break;
    }
    }
}

kiln_status kiln_augment_sample(const kiln_augment_params *p, int h, int w, int oh, int ow, uint64_t seed,
                                uint64_t counter, bool train, kiln_augment_draw *out)
{
    kiln_status st;
    if (!out)
        return kiln__err(KILN_STATUS_INVALID, "augment: out is NULL");
    if ((st = kiln_augment_check_params(p)) || (st = check_sizes(1, h, w, oh, ow)))
        return st;
    item_rng key = {seed, counter};
    kiln_augment_draw d = kiln_augment_draw_identity(h, w);
    draw_crop(p, h, w, oh, ow, key, train, &d);
    if (train) {
        if (p->do_flip && bern(key, SLOT_FLIP, p->p_flip))
            d.dihedral = p->flip_vert ? randint0(key, SLOT_DIHEDRAL, 7) : 1;
        double mw = p->max_warp, mr = p->max_rotate, ml = p->max_lighting;
        if (mw > 0 && bern(key, SLOT_WARP_X_P, p->p_affine))
            d.warp_x = (float)uni(key, SLOT_WARP_X, -mw, mw);
        if (mw > 0 && bern(key, SLOT_WARP_Y_P, p->p_affine))
            d.warp_y = (float)uni(key, SLOT_WARP_Y, -mw, mw);
        if (mr > 0 && bern(key, SLOT_ROT_P, p->p_affine))
            d.rotate = (float)uni(key, SLOT_ROT, -mr, mr);
        if (p->min_zoom < 1 || p->max_zoom > 1) {
            if (bern(key, SLOT_ZOOM_P, p->p_affine))
                d.zoom = (float)uni(key, SLOT_ZOOM, p->min_zoom, p->max_zoom);
            d.zoom_col = (float)uni(key, SLOT_ZOOM_COL, 0, 1);
            d.zoom_row = (float)uni(key, SLOT_ZOOM_ROW, 0, 1);
        }
        if (ml > 0 && bern(key, SLOT_BRIGHT_P, p->p_lighting))
            d.brightness = (float)uni(key, SLOT_BRIGHT, 0.5 * (1 - ml), 0.5 * (1 + ml));
        if (ml > 0 && bern(key, SLOT_CONTRAST_P, p->p_lighting))
            d.contrast = (float)exp(uni(key, SLOT_CONTRAST, log(1 - ml), -log(1 - ml)));
    }
    *out = d;
    return KILN_STATUS_OK;
}

/* ---- the matrix --------------------------------------------------------------------------- */

static void matmul3(const double a[9], const double b[9], double out[9])
{
    double r[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            r[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
    memcpy(out, r, sizeof r);
}

/* Solves A x = b (8x8) by Gaussian elimination with partial pivoting; false if singular. */
static bool solve8(double a[8][8], double b[8], double x[8])
{
    for (int col = 0; col < 8; col++) {
        int piv = col;
        for (int r = col + 1; r < 8; r++)
            if (fabs(a[r][col]) > fabs(a[piv][col]))
                piv = r;
        if (fabs(a[piv][col]) < 1e-12)
            return false;
        if (piv != col) {
            for (int k = 0; k < 8; k++) {
                double t = a[col][k];
                a[col][k] = a[piv][k], a[piv][k] = t;
            }
            double t = b[col];
            b[col] = b[piv], b[piv] = t;
        }
        for (int r = col + 1; r < 8; r++) {
            double f = a[r][col] / a[col][col];
            for (int k = col; k < 8; k++)
                a[r][k] -= f * a[col][k];
            b[r] -= f * b[col];
        }
    }
    for (int r = 7; r >= 0; r--) {
        double s = b[r];
        for (int k = r + 1; k < 8; k++)
            s -= a[r][k] * x[k];
        x[r] = s / a[r][r];
    }
    return true;
}

/* fastai find_coeffs(p1, p2): the homography that maps p2[i] to p1[i]. */
static bool find_coeffs(const double p1[4][2], const double p2[4][2], double m[9])
{
    double a[8][8], b[8], x[8];
    for (int i = 0; i < 4; i++) {
        double r0[8] = {p2[i][0], p2[i][1], 1, 0, 0, 0, -p1[i][0] * p2[i][0], -p1[i][0] * p2[i][1]};
        double r1[8] = {0, 0, 0, p2[i][0], p2[i][1], 1, -p1[i][1] * p2[i][0], -p1[i][1] * p2[i][1]};
        memcpy(a[2 * i], r0, sizeof r0);
        memcpy(a[2 * i + 1], r1, sizeof r1);
        b[2 * i] = p1[i][0];
        b[2 * i + 1] = p1[i][1];
    }
    if (!solve8(a, b, x))
        return false;
    memcpy(m, x, sizeof x);
    m[8] = 1;
    return true;
}

/* The affine part alone (3x3, last row 0 0 1), after fastai's _prepare_mat. */
static void affine_part(const kiln_augment_draw *d, int h, int w, double a[9])
{
    static const int xs[8] = {1, -1, 1, -1, -1, 1, 1, -1}, ys[8] = {1, 1, -1, 1, -1, -1, 1, -1};
    static const int m0[8] = {1, 1, 1, 0, 1, 0, 0, 0}, m1[8] = {0, 0, 0, 1, 0, 1, 1, 1};
    int k = d->dihedral;
    double dih[9] = {xs[k] * m0[k], xs[k] * m1[k], 0, ys[k] * m1[k], ys[k] * m0[k], 0, 0, 0, 1};
    double th = d->rotate * M_PI / 180.0, cs = cos(th), sn = sin(th);
    double rot[9] = {cs, sn, 0, -sn, cs, 0, 0, 0, 1};
    double s = 1.0 / d->zoom;
    double col_c = (1 - s) * (2.0 * d->zoom_col - 1), row_c = (1 - s) * (2.0 * d->zoom_row - 1);
    double zm[9] = {s, 0, col_c, 0, s, row_c, 0, 0, 1};
    matmul3(dih, rot, a);
    matmul3(a, zm, a);
    a[1] *= (double)h / w;
    a[3] *= (double)w / h;
}

static bool has_warp(const kiln_augment_draw *d) { return d->warp_x != 0 || d->warp_y != 0; }

kiln_status kiln_augment_matrix(const kiln_augment_draw *d, int h, int w, double m[9])
{
    if (!d || !m || h < 1 || w < 1)
        return kiln__err(KILN_STATUS_INVALID, "augment: matrix needs a draw, an output and a positive size");
    if (d->dihedral < 0 || d->dihedral > 7)
        return kiln__err(KILN_STATUS_INVALID, "augment: dihedral %d is outside 0..7", d->dihedral);
    if (!(d->zoom > 0) || !isfinite(d->zoom) || !isfinite(d->rotate) || !isfinite(d->zoom_col) ||
        !isfinite(d->zoom_row))
        return kiln__err(KILN_STATUS_INVALID, "augment: zoom %g, rotate %g, centre (%g, %g) must be finite, "
                         "zoom > 0", (double)d->zoom, (double)d->rotate, (double)d->zoom_col, (double)d->zoom_row);
    if (!(fabsf(d->warp_x) < 1) || !(fabsf(d->warp_y) < 1))
        return kiln__err(KILN_STATUS_INVALID, "augment: warp (%g, %g) must be inside (-1, 1)", (double)d->warp_x,
                         (double)d->warp_y);
    affine_part(d, h, w, m);
    if (!has_warp(d))
        return KILN_STATUS_OK;
    /* fastai _WarpCoord.before_call: corners (x, y) and their targets */
    double xt = d->warp_x, yt = d->warp_y;
    static const double orig[4][2] = {{-1, -1}, {-1, 1}, {1, -1}, {1, 1}};
    double targ[4][2] = {{-1 - yt, -1 - xt}, {-1 + yt, 1 + xt}, {1 + yt, -1 + xt}, {1 - yt, 1 - xt}};
    double hw[9];
    if (!find_coeffs(orig, targ, hw))
        return kiln__err(KILN_STATUS_INVALID, "augment: warp (%g, %g) gives a singular perspective",
                         (double)d->warp_x, (double)d->warp_y);
    matmul3(hw, m, m);
    return KILN_STATUS_OK;
}

/* ---- applying ------------------------------------------------------------------------------- */

static bool is_identity(const double m[9])
{
    static const double id[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    for (int i = 0; i < 9; i++)
        if (m[i] != id[i])
            return false;
    return true;
}

static kiln_status check_draw(const kiln_augment_draw *d, int h, int w, int oh, int ow)
{
    const double *b = d->box;
    for (int i = 0; i < 4; i++)
        if (!isfinite(b[i]))
            return kiln__err(KILN_STATUS_INVALID, "augment: crop box has a non-finite coordinate");
    if (!(b[2] > b[0]) || !(b[3] > b[1]))
        return kiln__err(KILN_STATUS_INVALID, "augment: crop box (%g, %g, %g, %g) is empty", b[0], b[1], b[2], b[3]);
    if (d->box_kind == KILN_AUGMENT_BOX_PAD) {
        if (b[0] != floor(b[0]) || b[1] != floor(b[1]) || b[2] - b[0] != ow || b[3] - b[1] != oh)
            return kiln__err(KILN_STATUS_INVALID, "augment: pad box (%g, %g, %g, %g) must be integral and of the "
                             "output size %dx%d", b[0], b[1], b[2], b[3], oh, ow);
    } else if (d->box_kind == KILN_AUGMENT_BOX_CROP || d->box_kind == KILN_AUGMENT_BOX_WHOLE) {
        const double eps = 1e-6;
        if (b[0] < -eps || b[1] < -eps || b[2] > w + eps || b[3] > h + eps)
            return kiln__err(KILN_STATUS_INVALID, "augment: crop box (%g, %g, %g, %g) is outside the %dx%d image",
                             b[0], b[1], b[2], b[3], h, w);
    } else {
        return kiln__err(KILN_STATUS_INVALID, "augment: unknown box kind %d", (int)d->box_kind);
    }
    if (!(d->brightness > 0 && d->brightness < 1) || !(d->contrast > 0) || !isfinite(d->contrast))
        return kiln__err(KILN_STATUS_INVALID, "augment: brightness %g must be in (0, 1) and contrast %g > 0",
                         (double)d->brightness, (double)d->contrast);
    return KILN_STATUS_OK;
}

/* The crop stage into out (c, oh, ow). */
static kiln_status crop_stage(const kiln_augment_draw *d, const float *src, int c, int h, int w, float *out,
                              int oh, int ow)
{
    const double *b = d->box;
    if (d->box_kind == KILN_AUGMENT_BOX_PAD) {
        kiln__aug_pad_copy(src, c, h, w, (int)b[0], (int)b[1], out, oh, ow);
        return KILN_STATUS_OK;
    }
    if (b[0] == 0 && b[1] == 0 && b[2] == w && b[3] == h && oh == h && ow == w) {
        memcpy(out, src, (size_t)c * h * w * sizeof *src);
        return KILN_STATUS_OK;
    }
    double box[4] = {fmax(b[0], 0), fmax(b[1], 0), fmin(b[2], w), fmin(b[3], h)};
    return kiln__aug_resize_box(src, c, h, w, box, d->box_kind == KILN_AUGMENT_BOX_CROP, out, oh, ow);
}

kiln_status kiln_augment_apply(const kiln_augment_draw *d, const float *src, int c, int h, int w, float *dst,
                               int oh, int ow)
{
    kiln_status st;
    if (!d || !src || !dst)
        return kiln__err(KILN_STATUS_INVALID, "augment: apply needs a draw, a source and a destination");
    if ((st = check_sizes(c, h, w, oh, ow)) || (st = check_draw(d, h, w, oh, ow)))
        return st;
    double m[9];
    if ((st = kiln_augment_matrix(d, oh, ow, m)))
        return st;
    size_t n = (size_t)c * oh * ow;
    if (is_identity(m)) {
        if ((st = crop_stage(d, src, c, h, w, dst, oh, ow)))
            return st;
    } else {
        float *tmp = kiln__malloc(n * sizeof(float)); /* (c, oh, ow) crop-stage output */
        if (!tmp)
            return kiln__err(KILN_STATUS_NOMEM, "augment: out of memory for a (%d, %d, %d) image", c, oh, ow);
        st = crop_stage(d, src, c, h, w, tmp, oh, ow);
        if (st == KILN_STATUS_OK) {
            double aff[9];
            affine_part(d, oh, ow, aff);
            kiln__aug_warp(tmp, c, oh, ow, m, has_warp(d) ? aff : NULL, dst);
        }
        kiln__free(tmp, n * sizeof(float));
        if (st)
            return st;
    }
    if (d->brightness != 0.5f || d->contrast != 1.0f)
        kiln__aug_lighting(dst, n, d->brightness, d->contrast);
    return KILN_STATUS_OK;
}

/* ---- per item and per batch ---------------------------------------------------------------------- */

kiln_status kiln_augment_item(const kiln_augment_params *p, const float *src, int c, int h, int w, float *dst,
                              int oh, int ow, uint64_t seed, uint64_t counter, bool train)
{
    kiln_augment_draw d;
    kiln_status st = kiln_augment_sample(p, h, w, oh, ow, seed, counter, train, &d);
    if (st)
        return st;
    return kiln_augment_apply(&d, src, c, h, w, dst, oh, ow);
}

kiln_status kiln_augment_batch(const kiln_augment_params *p, const float *src, int b, int c, int h, int w,
                               float *dst, int oh, int ow, uint64_t seed, uint64_t first_counter, bool train)
{
    kiln_status st;
    if (!src || !dst || b < 0)
        return kiln__err(KILN_STATUS_INVALID, "augment: batch needs a source, a destination and b >= 0 (got %d)", b);
    if ((st = kiln_augment_check_params(p)) || (st = check_sizes(c, h, w, oh, ow)))
        return st;
    size_t in_sz = (size_t)c * h * w, out_sz = (size_t)c * oh * ow;
    kiln_status first = KILN_STATUS_OK;
    int bad = -1;
    char msg[256] = "";
#pragma omp parallel for schedule(dynamic) if (b > 1)
    for (int i = 0; i < b; i++) {
        kiln_status s = kiln_augment_item(p, src + i * in_sz, c, h, w, dst + i * out_sz, oh, ow, seed,
                                          first_counter + (uint64_t)i * KILN_AUGMENT_COUNTERS, train);
        if (s != KILN_STATUS_OK) {
#pragma omp critical(kiln_augment_batch_err)
            if (bad < 0 || i < bad) {
                bad = i, first = s;
                snprintf(msg, sizeof msg, "%s", kiln_last_error());
            }
        }
    }
    if (bad >= 0)
        return kiln__err(first, "augment: item %d: %s", bad, msg);
    return KILN_STATUS_OK;
}

kiln_status kiln_augment_tfm(void *user, float *img, int c, int h, int w, uint64_t seed, uint64_t item_counter,
                             bool train)
{
    const kiln_augment_params *p = user;
    kiln_augment_draw d;
    kiln_status st = kiln_augment_sample(p, h, w, h, w, seed, item_counter, train, &d);
    if (st)
        return st;
    if (!img)
        return kiln__err(KILN_STATUS_INVALID, "augment: image is NULL");
    double m[9];
    bool crop_id = d.box_kind == KILN_AUGMENT_BOX_CROP && d.box[0] == 0 && d.box[1] == 0 && d.box[2] == w &&
                   d.box[3] == h;
    if (crop_id && (st = kiln_augment_matrix(&d, h, w, m)) == KILN_STATUS_OK && is_identity(m)) {
        /* the common validation case: nothing to resample */
        if (d.brightness != 0.5f || d.contrast != 1.0f)
            kiln__aug_lighting(img, (size_t)c * h * w, d.brightness, d.contrast);
        return KILN_STATUS_OK;
    }
    if (st)
        return st;
    size_t bytes = (size_t)c * h * w * sizeof(float);
    float *copy = kiln__malloc(bytes); /* (c, h, w): the source while img is rewritten */
    if (!copy)
        return kiln__err(KILN_STATUS_NOMEM, "augment: out of memory for a (%d, %d, %d) image", c, h, w);
    memcpy(copy, img, bytes);
    st = kiln_augment_apply(&d, copy, c, h, w, img, h, w);
    kiln__free(copy, bytes);
    return st;
}
