/* Augmentation (include/kiln/augment.h): parity of kiln_augment_apply with fastai v2's
 * formulas in torch (tests/fixtures/gen_augment.py; atol 1e-5 + rtol 1e-5 on [0, 1] pixels),
 * identities (identity draw, flip twice), determinism in (seed, counter), the Bernoulli
 * rates and ranges of the draws, crop boxes within bounds, lighting's range, the loader
 * adapter, parameter errors, and the show-batch PNG grid, also drawn while another thread
 * draws line plots and heat maps (one PLplot session lock for all of them). */
#include "util/ku.h"

#include "kiln/augment.h"
#include "kiln/vision.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(KILN_AUGMENT_COUNTERS <= KILN_VISION_TFM_COUNTERS, "augment draws must fit the loader's counters");
static const kiln_vision_tfm_fn tfm_fits_loader = kiln_augment_tfm;

static float *rand_image(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    cr_assert(x);
    for (size_t i = 0; i < n; i++)
        x[i] = kiln_philox_uniform(seed, i);
    return x;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* ---- parity with torch ---------------------------------------------------------------- */

static void parity(const char *kase)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_st_file *f = ku_fixture("augment");
    kiln_tensor *x = ku_load(ctx, f, kase, "x"), *y = ku_load(ctx, f, kase, "y");
    kiln_tensor *dv = ku_load(ctx, f, kase, "draw");
    const float *v = dv->data;
    kiln_augment_draw d = {.box_kind = (kiln_augment_box)v[0], .box = {v[1], v[2], v[3], v[4]},
                           .dihedral = (int)v[5], .rotate = v[6], .zoom = v[7], .zoom_col = v[8], .zoom_row = v[9],
                           .warp_x = v[10], .warp_y = v[11], .brightness = v[12], .contrast = v[13]};
    int c = (int)x->shape[0], h = (int)x->shape[1], w = (int)x->shape[2], oh = (int)v[14], ow = (int)v[15];
    /* the box was stored as f32: WHOLE boxes are fractions of the source, recompute them */
    if (d.box_kind == KILN_AUGMENT_BOX_WHOLE) {
        double fw = 20, fh = 20;
        d.box[0] = 4 * w / fw, d.box[1] = 4 * h / fh, d.box[2] = 16 * w / fw, d.box[3] = 16 * h / fh;
    }
    kiln_tensor *got = kiln_empty(ctx, KILN_DTYPE_F32, 3, (int64_t[]){c, oh, ow});
    kiln_status st = kiln_augment_apply(&d, x->data, c, h, w, got->data, oh, ow);
    cr_assert_eq(st, KILN_STATUS_OK, "%s: %s", kase, kiln_last_error());
    ku_expect_close(got, y, 1e-5, 1e-5, kase);
    kiln_st_close(f);
    ku_ctx_free(ctx);
}

Test(augment, parity_affine) { parity("affine"); }
Test(augment, parity_rotate) { parity("rotate"); }
Test(augment, parity_zoom_out) { parity("zoom_out"); }
Test(augment, parity_dihedral_warp) { parity("dihedral5"); }
Test(augment, parity_dihedral3) { parity("dihedral3"); }
Test(augment, parity_warp_big) { parity("warp_big"); }
Test(augment, parity_random_resized_crop) { parity("rrc"); }
Test(augment, parity_upsample) { parity("upsample"); }
Test(augment, parity_crop_same_size) { parity("crop_same"); }
Test(augment, parity_resize_whole_then_crop) { parity("whole"); }
Test(augment, parity_reflect_pad) { parity("pad"); }
Test(augment, parity_lighting) { parity("lighting"); }

/* ---- identities -------------------------------------------------------------------------- */

Test(augment, identity_gives_input)
{
    int c = 3, h = 7, w = 9;
    size_t n = (size_t)c * h * w;
    float *x = rand_image(n, 1), *y = calloc(n, sizeof *y);
    kiln_augment_draw d = kiln_augment_draw_identity(h, w);
    cr_assert_eq(kiln_augment_apply(&d, x, c, h, w, y, h, w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(!memcmp(x, y, n * sizeof *x), "identity draw changed the image");
    /* every probability 0: the item transform is the identity too */
    kiln_augment_params p = kiln_augment_default_params();
    p.p_flip = p.p_affine = p.p_lighting = 0;
    memset(y, 0, n * sizeof *y);
    cr_assert_eq(kiln_augment_item(&p, x, c, h, w, y, h, w, 7, 1000, true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert(!memcmp(x, y, n * sizeof *x), "p = 0 changed the image");
    /* an explicit identity through the sampler (zoom 1 with a centre, rotate 0) */
    d.zoom_col = 0.1f, d.zoom_row = 0.9f;
    cr_assert_eq(kiln_augment_apply(&d, x, c, h, w, y, h, w), KILN_STATUS_OK);
    cr_assert(max_abs_diff(x, y, n) == 0, "zoom 1 off centre changed the image");
    free(x), free(y);
}

static void twice_is_identity(int dihedral, int c, int h, int w)
{
    size_t n = (size_t)c * h * w;
    float *x = rand_image(n, 2), *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
    kiln_augment_draw d = kiln_augment_draw_identity(h, w);
    d.dihedral = dihedral;
    cr_assert_eq(kiln_augment_apply(&d, x, c, h, w, y, h, w), KILN_STATUS_OK);
    cr_assert(max_abs_diff(x, y, n) > 0.01, "dihedral %d did nothing", dihedral);
    cr_assert_eq(kiln_augment_apply(&d, y, c, h, w, z, h, w), KILN_STATUS_OK);
    double e = max_abs_diff(x, z, n);
    cr_assert(e <= 1e-6, "dihedral %d twice: max error %g (tolerance 1e-6)", dihedral, e);
    /* a flip is exact: row i of y is row i of x reversed */
    if (dihedral == 1)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                cr_assert(fabsf(y[(size_t)i * w + j] - x[(size_t)i * w + (w - 1 - j)]) <= 1e-6f);
    free(x), free(y), free(z);
}

Test(augment, flip_twice_is_identity)
{
    twice_is_identity(1, 3, 8, 11); /* left-right */
    twice_is_identity(1, 1, 5, 5);
    twice_is_identity(2, 2, 6, 9);  /* up-down */
    twice_is_identity(4, 3, 7, 10); /* 180 degrees */
    twice_is_identity(7, 1, 6, 6);  /* transpose on a square */
}

/* ---- determinism ------------------------------------------------------------------------- */

Test(augment, deterministic_in_seed_and_counter)
{
    int c = 3, h = 20, w = 24, oh = 16, ow = 16;
    size_t n = (size_t)c * h * w, m = (size_t)c * oh * ow;
    float *x = rand_image(n, 3), *a = malloc(m * sizeof *a), *b = malloc(m * sizeof *b);
    kiln_augment_params p = kiln_augment_default_params();
    p.crop = KILN_AUGMENT_CROP_RANDOM_RESIZED;
    p.p_affine = p.p_lighting = 1;
    cr_assert_eq(kiln_augment_item(&p, x, c, h, w, a, oh, ow, 42, 640, true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_augment_item(&p, x, c, h, w, b, oh, ow, 42, 640, true), KILN_STATUS_OK);
    cr_assert(!memcmp(a, b, m * sizeof *a), "same (seed, counter) gave different images");
    cr_assert_eq(kiln_augment_item(&p, x, c, h, w, b, oh, ow, 42, 640 + KILN_AUGMENT_COUNTERS, true), KILN_STATUS_OK);
    cr_assert(max_abs_diff(a, b, m) > 1e-3, "a different counter gave the same image");
    cr_assert_eq(kiln_augment_item(&p, x, c, h, w, b, oh, ow, 43, 640, true), KILN_STATUS_OK);
    cr_assert(max_abs_diff(a, b, m) > 1e-3, "a different seed gave the same image");
    /* validation is not random */
    cr_assert_eq(kiln_augment_item(&p, x, c, h, w, a, oh, ow, 1, 0, false), KILN_STATUS_OK);
    cr_assert_eq(kiln_augment_item(&p, x, c, h, w, b, oh, ow, 2, 999, false), KILN_STATUS_OK);
    cr_assert(!memcmp(a, b, m * sizeof *a), "validation depends on the seed");
    free(x), free(a), free(b);
}

Test(augment, batch_matches_items)
{
    int B = 5, c = 3, h = 12, w = 10, oh = 8, ow = 8;
    size_t n = (size_t)c * h * w, m = (size_t)c * oh * ow;
    float *x = rand_image(B * n, 4), *y = malloc(B * m * sizeof *y), *one = malloc(m * sizeof *one);
    kiln_augment_params p = kiln_augment_default_params();
    cr_assert_eq(kiln_augment_batch(&p, x, B, c, h, w, y, oh, ow, 9, 128, true), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    for (int i = 0; i < B; i++) {
        cr_assert_eq(kiln_augment_item(&p, x + i * n, c, h, w, one, oh, ow, 9, 128 + (uint64_t)i * KILN_AUGMENT_COUNTERS,
                                       true), KILN_STATUS_OK);
        cr_assert(!memcmp(one, y + i * m, m * sizeof *one), "batch item %d differs from kiln_augment_item", i);
    }
    free(x), free(y), free(one);
}

Test(augment, loader_adapter_in_place)
{
    int c = 3, h = 16, w = 16;
    size_t n = (size_t)c * h * w;
    float *x = rand_image(n, 5), *img = malloc(n * sizeof *img), *want = malloc(n * sizeof *want);
    kiln_augment_params p = kiln_augment_default_params();
    p.crop = KILN_AUGMENT_CROP_PAD;
    memcpy(img, x, n * sizeof *x);
    cr_assert_eq(tfm_fits_loader(&p, img, c, h, w, 11, 256 * 7, true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_augment_item(&p, x, c, h, w, want, h, w, 11, 256 * 7, true), KILN_STATUS_OK);
    cr_assert(!memcmp(img, want, n * sizeof *img), "in-place adapter differs from kiln_augment_item");
    memcpy(img, x, n * sizeof *x);
    cr_assert_eq(kiln_augment_tfm(&p, img, c, h, w, 11, 0, false), KILN_STATUS_OK);
    cr_assert(!memcmp(img, x, n * sizeof *img), "validation of a same-size pad crop changed the image");
    free(x), free(img), free(want);
}

/* ---- the draws --------------------------------------------------------------------------- */

/* |rate - p| within 4.5 standard errors of a binomial over n draws. */
static void expect_rate(const char *what, int hits, int n, double p)
{
    double rate = (double)hits / n, tol = 4.5 * sqrt(p * (1 - p) / n) + 1e-9;
    cr_assert(fabs(rate - p) <= tol, "%s applied at rate %.4f, expected %.2f +- %.4f", what, rate, p, tol);
}

Test(augment, bernoulli_rates_and_ranges)
{
    enum { N = 4000 };
    kiln_augment_params p = kiln_augment_default_params();
    int flip = 0, wx = 0, wy = 0, rot = 0, zoom = 0, bright = 0, contrast = 0;
    for (int i = 0; i < N; i++) {
        kiln_augment_draw d;
        cr_assert_eq(kiln_augment_sample(&p, 32, 32, 32, 32, 77, (uint64_t)i * KILN_AUGMENT_COUNTERS, true, &d),
                     KILN_STATUS_OK);
        flip += d.dihedral != 0;
        cr_assert(d.dihedral == 0 || d.dihedral == 1);
        wx += d.warp_x != 0, wy += d.warp_y != 0, rot += d.rotate != 0, zoom += d.zoom != 1;
        bright += d.brightness != 0.5f, contrast += d.contrast != 1.0f;
        cr_assert(fabsf(d.warp_x) <= 0.2f && fabsf(d.warp_y) <= 0.2f && fabsf(d.rotate) <= 10.0f);
        cr_assert(d.zoom >= 1.0f && d.zoom <= 1.1f && d.zoom_col >= 0 && d.zoom_col <= 1);
        cr_assert(d.brightness >= 0.4f && d.brightness <= 0.6f, "brightness %g", (double)d.brightness);
        cr_assert(d.contrast >= 0.8f - 1e-6f && d.contrast <= 1.25f + 1e-6f, "contrast %g", (double)d.contrast);
    }
    expect_rate("flip", flip, N, 0.5);
    expect_rate("warp x", wx, N, 0.75);
    expect_rate("warp y", wy, N, 0.75);
    expect_rate("rotate", rot, N, 0.75);
    expect_rate("zoom", zoom, N, 0.75);
    expect_rate("brightness", bright, N, 0.75);
    expect_rate("contrast", contrast, N, 0.75);

    /* flip_vert: Dihedral(p 0.5) picks each of the 8 uniformly when applied */
    p.flip_vert = true;
    int counts[8] = {0};
    for (int i = 0; i < N; i++) {
        kiln_augment_draw d;
        cr_assert_eq(kiln_augment_sample(&p, 8, 8, 8, 8, 5, (uint64_t)i * KILN_AUGMENT_COUNTERS, true, &d), 0);
        cr_assert(d.dihedral >= 0 && d.dihedral < 8);
        counts[d.dihedral]++;
    }
    expect_rate("dihedral 0 (incl. not applied)", counts[0], N, 0.5 + 0.5 / 8);
    for (int k = 1; k < 8; k++)
        expect_rate("dihedral k", counts[k], N, 0.5 / 8);
}

Test(augment, crop_boxes_within_bounds)
{
    enum { N = 2000 };
    int h = 80, w = 100, oh = 32, ow = 32;
    kiln_augment_params p = kiln_augment_default_params();
    p.crop = KILN_AUGMENT_CROP_RANDOM_RESIZED;
    int fallback = 0;
    double amin = 1, amax = 0;
    for (int i = 0; i < N; i++) {
        kiln_augment_draw d;
        cr_assert_eq(kiln_augment_sample(&p, h, w, oh, ow, 3, (uint64_t)i * KILN_AUGMENT_COUNTERS, true, &d), 0);
        const double *b = d.box;
        cr_assert(d.box_kind == KILN_AUGMENT_BOX_CROP);
        cr_assert(b[0] >= 0 && b[1] >= 0 && b[2] <= w && b[3] <= h && b[2] > b[0] && b[3] > b[1]);
        double bw = b[2] - b[0], bh = b[3] - b[1], area = bw * bh / (w * h), ratio = bw / bh;
        if (bw == w && bh == h) {
            fallback++;
            continue;
        }
        /* nw, nh are rounded, so allow half a pixel each way */
        double slack_lo = (1 - 0.5 / bw) / (1 + 0.5 / bh), slack_hi = (1 + 0.5 / bw) / (1 - 0.5 / bh);
        cr_assert(ratio >= 0.75 * slack_lo - 1e-9, "ratio %g below 3/4", ratio);
        cr_assert(ratio <= 4.0 / 3.0 * slack_hi + 1e-9, "ratio %g above 4/3", ratio);
        cr_assert(area >= 0.08 * 0.9 && area <= 1.0, "area fraction %g outside [0.08, 1]", area);
        amin = fmin(amin, area), amax = fmax(amax, area);
    }
    cr_assert(amin < 0.2 && amax > 0.8, "areas do not spread over [0.08, 1]: %g..%g", amin, amax);
    cr_assert(fallback < N / 10, "%d of %d draws fell back to the whole image", fallback, N);
    /* valid: centred, fastai's val_xtra zoom (32 -> resize to 40, keep 32) */
    kiln_augment_draw d;
    cr_assert_eq(kiln_augment_sample(&p, h, w, oh, ow, 3, 0, false, &d), 0);
    cr_assert(d.box_kind == KILN_AUGMENT_BOX_WHOLE);
    cr_assert(fabs(d.box[0] - 4 * w / 40.0) < 1e-9 && fabs(d.box[2] - 36 * w / 40.0) < 1e-9);
    cr_assert(fabs(d.box[1] - 4 * h / 40.0) < 1e-9 && fabs(d.box[3] - 36 * h / 40.0) < 1e-9);

    /* random crop with padding: windows of the output size within the padded image */
    p.crop = KILN_AUGMENT_CROP_PAD;
    p.crop_pad = 4;
    bool seen_lo = false, seen_hi = false;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(kiln_augment_sample(&p, 32, 32, 32, 32, 3, (uint64_t)i * KILN_AUGMENT_COUNTERS, true, &d), 0);
        cr_assert(d.box[0] >= -4 && d.box[0] <= 4 && d.box[1] >= -4 && d.box[1] <= 4);
        cr_assert(d.box[2] - d.box[0] == 32 && d.box[3] - d.box[1] == 32);
        seen_lo |= d.box[0] == -4, seen_hi |= d.box[0] == 4;
    }
    cr_assert(seen_lo && seen_hi, "pad crop never reached an edge offset");

    /* Resize (crop method): the box has the output's aspect, centred in valid */
    p.crop = KILN_AUGMENT_CROP_RESIZE;
    cr_assert_eq(kiln_augment_sample(&p, h, w, oh, ow, 3, 0, false, &d), 0);
    cr_assert(d.box[0] == 10 && d.box[1] == 0 && d.box[2] == 90 && d.box[3] == 80, "box %g %g %g %g", d.box[0],
              d.box[1], d.box[2], d.box[3]);
}

Test(augment, lighting_stays_in_unit_range)
{
    int c = 3, h = 16, w = 16;
    size_t n = (size_t)c * h * w;
    float *x = rand_image(n, 6), *y = malloc(n * sizeof *y);
    x[0] = 0, x[1] = 1, x[2] = 1e-12f, x[3] = 1 - 1e-9f;
    kiln_augment_draw d = kiln_augment_draw_identity(h, w);
    const float br[] = {0.05f, 0.4f, 0.6f, 0.95f}, ct[] = {0.3f, 0.8f, 1.25f, 4.0f};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            d.brightness = br[a], d.contrast = ct[b];
            cr_assert_eq(kiln_augment_apply(&d, x, c, h, w, y, h, w), KILN_STATUS_OK);
            for (size_t i = 0; i < n; i++)
                cr_assert(y[i] >= 0 && y[i] <= 1, "lighting (%g, %g) gave %g", (double)br[a], (double)ct[b],
                          (double)y[i]);
            /* order is kept: lighting is monotonic, x[0] = 0 and x[1] = 1 bound the rest */
            for (size_t i = 2; i < n; i++)
                cr_assert(y[0] <= y[i] && y[i] <= y[1], "lighting is not monotonic at %zu", i);
        }
    /* brightness > 0.5 brightens, contrast > 1 spreads values away from 0.5 */
    d.brightness = 0.6f, d.contrast = 1;
    kiln_augment_apply(&d, x, c, h, w, y, h, w);
    for (size_t i = 4; i < n; i++)
        cr_assert(y[i] >= x[i]);
    d.brightness = 0.5f, d.contrast = 1.25f;
    kiln_augment_apply(&d, x, c, h, w, y, h, w);
    for (size_t i = 4; i < n; i++)
        cr_assert(fabsf(y[i] - 0.5f) >= fabsf(x[i] - 0.5f) - 1e-6f);
    free(x), free(y);
}

/* ---- errors ------------------------------------------------------------------------------- */

Test(augment, bad_parameters_rejected)
{
    kiln_augment_params p = kiln_augment_default_params();
    cr_assert_eq(kiln_augment_check_params(&p), KILN_STATUS_OK);
    float x[12] = {0}, y[12];
    p.p_affine = 1.5f;
    cr_assert_eq(kiln_augment_item(&p, x, 1, 3, 4, y, 3, 4, 0, 0, true), KILN_STATUS_INVALID);
    ku_expect_error("p_affine 1.5 is outside [0, 1]", "p_affine");
    p = kiln_augment_default_params();
    p.p_lighting = -0.1f;
    cr_assert_eq(kiln_augment_check_params(&p), KILN_STATUS_INVALID);
    ku_expect_error("p_lighting", "p_lighting");
    p = kiln_augment_default_params();
    p.p_flip = NAN;
    cr_assert_eq(kiln_augment_check_params(&p), KILN_STATUS_INVALID);
    ku_expect_error("p_flip", "p_flip NaN");
    p = kiln_augment_default_params();
    p.max_zoom = 0.5f;
    cr_assert_eq(kiln_augment_check_params(&p), KILN_STATUS_INVALID);
    ku_expect_error("max_zoom", "max_zoom < min_zoom");
    p = kiln_augment_default_params();
    p.crop_pad = -1;
    cr_assert_eq(kiln_augment_check_params(&p), KILN_STATUS_INVALID);
    ku_expect_error("crop_pad -1 is negative", "crop_pad");
    p = kiln_augment_default_params();
    p.max_lighting = 1;
    cr_assert_eq(kiln_augment_check_params(&p), KILN_STATUS_INVALID);
    ku_expect_error("max_lighting", "max_lighting");
    p = kiln_augment_default_params();
    cr_assert_eq(kiln_augment_item(&p, x, 1, -3, 4, y, 3, 4, 0, 0, true), KILN_STATUS_INVALID);
    ku_expect_error("sizes must be positive", "negative height");
    cr_assert_eq(kiln_augment_item(&p, x, 1, 3, 4, y, 3, 0, 0, 0, true), KILN_STATUS_INVALID);
    ku_expect_error("sizes must be positive", "zero output width");
    cr_assert_eq(kiln_augment_item(NULL, x, 1, 3, 4, y, 3, 4, 0, 0, true), KILN_STATUS_INVALID);
    ku_expect_error("params is NULL", "NULL params");
    kiln_augment_draw d = kiln_augment_draw_identity(3, 4);
    d.dihedral = 8;
    cr_assert_eq(kiln_augment_apply(&d, x, 1, 3, 4, y, 3, 4), KILN_STATUS_INVALID);
    ku_expect_error("dihedral 8", "dihedral");
    d = kiln_augment_draw_identity(3, 4);
    d.box[2] = 9;
    cr_assert_eq(kiln_augment_apply(&d, x, 1, 3, 4, y, 3, 4), KILN_STATUS_INVALID);
    ku_expect_error("outside the 3x4 image", "box outside");
    d = kiln_augment_draw_identity(3, 4);
    d.brightness = 1;
    cr_assert_eq(kiln_augment_apply(&d, x, 1, 3, 4, y, 3, 4), KILN_STATUS_INVALID);
    ku_expect_error("brightness", "brightness 1");
    cr_assert_eq(kiln_augment_batch(&p, x, -1, 1, 3, 4, y, 3, 4, 0, 0, true), KILN_STATUS_INVALID);
    ku_expect_error("b >= 0", "negative batch");
}

/* ---- show_batch grid ------------------------------------------------------------------------ */

/* A test card (c, h, w): a gradient, a disc and a bar, so flips and rotations show. */
static void test_card(float *img, int c, int h, int w)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = x - 0.3 * w, dy = y - 0.35 * h;
            bool disc = dx * dx + dy * dy < 0.04 * h * w, bar = y > 0.7 * h && x > 0.5 * w;
            for (int k = 0; k < c; k++) {
                double v = k == 0 ? (double)x / w : (k == 1 ? (double)y / h : 0.5);
                img[((size_t)k * h + y) * w + x] = (float)(disc ? (k == 0 ? 1 : 0.1) : bar ? 0.05 : v);
            }
        }
}

Test(augment, grid_png)
{
    float bad[4] = {0};
    cr_assert_eq(kiln_image_grid_png("/tmp/x.png", bad, 1, 2, 1, 2, NULL, 0, NULL, NULL), KILN_STATUS_INVALID);
    ku_expect_error("2 channels", "two channels");
    cr_assert_eq(kiln_image_grid_png("/tmp/x.png", bad, 1, 1, 2, 2, NULL, 0, bad, NULL), KILN_STATUS_INVALID);
    ku_expect_error("both mean and std", "mean without std");
    cr_assert_eq(kiln_image_grid_png("/tmp/x.png", bad, 0, 1, 2, 2, NULL, 0, NULL, NULL), KILN_STATUS_INVALID);
    if (!kiln_plot_available())
        cr_skip_test("PLplot's pngcairo device is not available");
    int B = 6, c = 3, h = 24, w = 32;
    size_t n = (size_t)c * h * w;
    float *card = malloc(n * sizeof *card), *src = malloc(B * n * sizeof *src), *x = malloc(B * n * sizeof *x);
    test_card(card, c, h, w);
    for (int i = 0; i < B; i++)
        memcpy(src + i * n, card, n * sizeof *card);
    kiln_augment_params p = kiln_augment_default_params();
    cr_assert_eq(kiln_augment_batch(&p, src, B, c, h, w, x, h, w, 1, 0, true), KILN_STATUS_OK);
    const char *labels[] = {"cat", "dog #2", NULL, "a label far too long for one small cell", "", "\xc3\xbc"};
    char path[256];
    snprintf(path, sizeof path, "/tmp/kiln_test_grid_%ld.png", (long)getpid());
    kiln_status st = kiln_image_grid_png(path, x, B, c, h, w, labels, 3, NULL, NULL);
    cr_assert_eq(st, KILN_STATUS_OK, "%s", kiln_last_error());
    FILE *f = fopen(path, "rb");
    cr_assert(f, "no file at %s", path);
    unsigned char head[8] = {0};
    cr_assert_eq(fread(head, 1, 8, f), 8u);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert(!memcmp(head, "\x89PNG\r\n\x1a\n", 8) && size > 1000, "not a PNG (%ld bytes)", size);
    /* normalised grey images with mean/std */
    const float mean = 0.5f, sd = 0.25f;
    for (size_t i = 0; i < (size_t)h * w; i++)
        x[i] = (card[i] - mean) / sd;
    cr_assert_eq(kiln_image_grid_png(path, x, 1, 1, h, w, NULL, 0, &mean, &sd), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    unlink(path);
    free(card), free(src), free(x);
}

/* The height of the PNG at path (IHDR), -1 if unreadable. */
static long png_height(const char *path)
{
    unsigned char b[24];
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(b, 1, sizeof b, f);
    fclose(f);
    if (got != sizeof b || memcmp(b, "\x89PNG", 4)) return -1;
    return (long)b[20] << 24 | (long)b[21] << 16 | (long)b[22] << 8 | (long)b[23];
}

/* '\n' in a label adds a line: the label strip (and the page) grows by one line each, up
 * to four lines. */
Test(augment, grid_multi_line_labels_grow_the_page)
{
    int c = 1, h = 28, w = 28;
    float *img = calloc((size_t)h * w, sizeof *img);
    char path[256];
    snprintf(path, sizeof path, "/tmp/kiln_test_grid_lines_%ld.png", (long)getpid());
    const char *texts[] = {"one", "one\ntwo", "one\ntwo\nthree", "1\n2\n3\n4\n5\n6", "trailing\n"};
    long heights[5];
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(kiln_image_grid_png(path, img, 1, c, h, w, &texts[i], 0, NULL, NULL), KILN_STATUS_OK, "%s",
                     kiln_last_error());
        heights[i] = png_height(path);
        cr_assert(heights[i] > 0, "label %d: no PNG", i);
    }
    long line = heights[1] - heights[0];
    cr_assert(line > 5 && line < 40, "one more line added %ld pixels", line);
    cr_assert_eq(heights[2] - heights[1], line, "the third line");
    cr_assert_eq(heights[3], heights[0] + 3 * line, "six lines are capped at four");
    cr_assert_eq(heights[4], heights[0], "a trailing newline adds no line");
    unlink(path);
    free(img);
}

/* Grids on one thread, line plots and heat maps on another: every PLplot writer in kiln
 * takes the same session lock, so all of them succeed and leave PNGs. */
enum { RACE_ROUNDS = 4 };

static void *race_grids(void *arg)
{
    const char *path = arg;
    int c = 3, h = 24, w = 32;
    float *card = malloc((size_t)c * h * w * sizeof *card);
    test_card(card, c, h, w);
    intptr_t bad = 0;
    for (int r = 0; r < RACE_ROUNDS; r++)
        bad += kiln_image_grid_png(path, card, 1, c, h, w, (const char *[]){"card"}, 0, NULL, NULL) != KILN_STATUS_OK;
    free(card);
    return (void *)bad;
}

static void *race_plots(void *arg)
{
    const char *path = arg;
    double y[50];
    for (int i = 0; i < 50; i++)
        y[i] = sin(i * 0.2);
    kiln_plot_series s = {.label = "sin", .y = y, .n = 50};
    const int64_t m[4] = {5, 1, 2, 7};
    intptr_t bad = 0;
    for (int r = 0; r < RACE_ROUNDS; r++) {
        bad += kiln_plot_lines(path, "race", "x", "y", false, false, &s, 1) != KILN_STATUS_OK;
        bad += kiln_plot_heatmap(path, m, 2, (const char *[]){"a", "b"}, "race") != KILN_STATUS_OK;
    }
    return (void *)bad;
}

static void expect_png_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "no file at %s", path);
    unsigned char head[8] = {0};
    size_t got = fread(head, 1, 8, f);
    fclose(f);
    cr_expect(got == 8 && !memcmp(head, "\x89PNG\r\n\x1a\n", 8), "%s is not a PNG", path);
}

Test(augment, grid_and_plots_two_threads)
{
    if (!kiln_plot_available())
        cr_skip_test("PLplot's pngcairo device is not available");
    char gpath[256], ppath[256];
    snprintf(gpath, sizeof gpath, "/tmp/kiln_test_race_grid_%ld.png", (long)getpid());
    snprintf(ppath, sizeof ppath, "/tmp/kiln_test_race_plot_%ld.png", (long)getpid());
    pthread_t a, b;
    cr_assert(!pthread_create(&a, NULL, race_grids, gpath));
    cr_assert(!pthread_create(&b, NULL, race_plots, ppath));
    void *bad_a, *bad_b;
    pthread_join(a, &bad_a);
    pthread_join(b, &bad_b);
    cr_expect_eq((intptr_t)bad_a, 0, "%ld grids failed", (long)(intptr_t)bad_a);
    cr_expect_eq((intptr_t)bad_b, 0, "%ld plots failed", (long)(intptr_t)bad_b);
    expect_png_file(gpath);
    expect_png_file(ppath);
    unlink(gpath);
    unlink(ppath);
}
