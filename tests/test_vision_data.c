/* Vision data sources (include/kiln/vision.h): PNG/JPEG files written here (libspng encode,
 * turbojpeg compress) into a temporary folder tree, IDX files (plain and gzip) written here,
 * Fashion-MNIST when installed, the loader's determinism across thread counts, and one test per
 * kind of bad input, each checking that the message names the file at fault.
 *
 * Tolerances: PNG pixels after resizing agree with ref_resize (a direct 2-D evaluation of PIL's
 * bilinear filter, written independently of src/data/vision/resize.c) to 1e-5; JPEG is lossy,
 * so a smooth JPEG agrees with the resized original pixels to 0.04 (quality 95). */
#include "util/ku.h"

#include "data/vision/vision_internal.h"
#include "kiln/vision.h"

#include <ftw.h>
#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

/* ---- temp tree ------------------------------------------------------------------------------ */

static char g_root[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void tmp_setup(void)
{
    snprintf(g_root, sizeof g_root, "/tmp/kiln_vd_XXXXXX");
    cr_assert(mkdtemp(g_root), "mkdtemp failed");
}

static void tmp_teardown(void) { nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* g_root/rel, with its parent folders made. */
static const char *P(const char *rel)
{
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 1024, "%s/%s", g_root, rel);
    for (char *s = p + strlen(g_root) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        mkdir(p, 0755);
        *s = '/';
    }
    return p;
}

/* Makes g_root/rel (a folder) and writes its path into out. */
static void D(const char *rel, char *out)
{
    snprintf(out, 1024, "%s/%s", g_root, rel);
    P(rel);
    mkdir(out, 0755);
}

static void write_bytes(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert(fwrite(b, 1, n, f) == n);
    fclose(f);
}

/* ---- image writers -------------------------------------------------------------------------- */

/* A smooth, distinct pattern: channel k of pixel (x, y) of image `id`. */
static uint8_t pix(int id, int x, int y, int k) { return (uint8_t)((x * 7 + y * 5 + k * 60 + id * 13) & 0xff); }

/* (h, w, c) u8 pixels of the pattern. */
static uint8_t *pattern(int id, int h, int w, int c)
{
    uint8_t *px = malloc((size_t)h * w * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) px[((size_t)y * w + x) * c + k] = pix(id, x, y, k);
    return px;
}

/* c: 1 grey, 3 RGB, 4 RGBA; depth 8 (px u8) or 16 (px host-endian u16). */
static void write_png(const char *path, int w, int h, int c, int depth, const void *px)
{
    static const int ct[5] = {0, SPNG_COLOR_TYPE_GRAYSCALE, 0, SPNG_COLOR_TYPE_TRUECOLOR, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA};
    spng_ctx *sc = spng_ctx_new(SPNG_CTX_ENCODER);
    spng_set_option(sc, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ihdr = {.width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = (uint8_t)depth,
                             .color_type = (uint8_t)ct[c]};
    spng_set_ihdr(sc, &ihdr);
    int rc = spng_encode_image(sc, px, (size_t)w * h * c * (depth / 8), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    cr_assert(rc == 0, "spng encode: %s", spng_strerror(rc));
    size_t n;
    void *png = spng_get_png_buffer(sc, &n, &rc);
    cr_assert(png, "spng buffer: %s", spng_strerror(rc));
    write_bytes(path, png, n);
    free(png);
    spng_ctx_free(sc);
}

/* Returns the JPEG's size; keep < 1 writes only that share of the bytes (truncated file). */
static size_t write_jpeg(const char *path, int w, int h, int c, const uint8_t *px, double keep)
{
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long n = 0;
    int rc = tjCompress2(tj, px, w, 0, h, c == 1 ? TJPF_GRAY : TJPF_RGB, &jpg, &n, c == 1 ? TJSAMP_GRAY : TJSAMP_444,
                         95, 0);
    cr_assert(rc == 0, "tjCompress2: %s", tjGetErrorStr2(tj));
    write_bytes(path, jpg, (size_t)(n * keep));
    tjFree(jpg);
    tjDestroy(tj);
    return n;
}

static void png_pattern(const char *rel, int id, int w, int h, int c)
{
    uint8_t *px = pattern(id, h, w, c);
    write_png(P(rel), w, h, c, 8, px);
    free(px);
}

/* ---- reference resize: PIL's bilinear filter evaluated directly in 2-D ------------------------ */

static double tri(double x) { return fabs(x) < 1 ? 1 - fabs(x) : 0; }

/* weights of the source pixels for output o of a resize in -> out (normalized) */
static void ref_weights(int in, int out, int o, double *wt)
{
    double scale = (double)in / out, fs = scale > 1 ? scale : 1, center = (o + 0.5) * scale, sum = 0;
    for (int j = 0; j < in; j++) sum += wt[j] = tri((j + 0.5 - center) / fs);
    for (int j = 0; j < in; j++) wt[j] /= sum;
}

static int round_half_even(int twice) { return twice % 4 == 1 ? twice / 2 : twice % 4 == 3 ? twice / 2 + 1 : twice / 2; }

/* src (h, w, c) u8 -> out (c, size, size) in [0, 1]: torchvision Resize(size) + CenterCrop(size). */
static void ref_resize(const uint8_t *src, int h, int w, int c, int size, bool squish, float *out)
{
    int rh = squish ? size : h <= w ? size : (int)((double)size * h / w);
    int rw = squish ? size : h <= w ? (int)((double)size * w / h) : size;
    int oy = round_half_even(rh - size), ox = round_half_even(rw - size);
    double *wy = malloc(sizeof(double) * h), *wx = malloc(sizeof(double) * w);
    for (int y = 0; y < size; y++) {
        ref_weights(h, rh, oy + y, wy);
        for (int x = 0; x < size; x++) {
            ref_weights(w, rw, ox + x, wx);
            for (int k = 0; k < c; k++) {
                double acc = 0;
                for (int i = 0; i < h; i++)
                    for (int j = 0; j < w; j++) acc += wy[i] * wx[j] * src[((size_t)i * w + j) * c + k];
                out[((size_t)k * size + y) * size + x] = (float)(acc / 255.0);
            }
        }
    }
    free(wy), free(wx);
}

static void expect_close(const float *got, const float *want, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol, "%s: element %zu is %.6f, expected %.6f (tol %g)", what, i, got[i],
                  want[i], tol);
}

static kiln_vision_params prm(int size)
{
    kiln_vision_params p = kiln_vision_default_params();
    p.size = size;
    p.norm = KILN_VISION_NORM_NONE;
    p.batch_size = 4;
    return p;
}

static void expect_fail_naming(kiln_data *d, const char *needle, const char *what)
{
    cr_assert(d == NULL, "%s: expected an error", what);
    cr_assert(strstr(kiln_last_error(), needle), "%s: message '%s' does not name %s", what, kiln_last_error(), needle);
}

/* Runs every batch of a split; returns the first failing status. */
static kiln_status all_batches(kiln_data *d, kiln_data_split s)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_status st = KILN_STATUS_OK;
    for (int64_t b = 0; b < kiln_data_n_batches(d, s) && !st; b++) {
        kiln_tensor *x, *y;
        st = kiln_data_get_batch(d, s, b, ctx, &x, &y);
        kiln_step_reset(ctx);
    }
    ku_ctx_free(ctx);
    return st;
}

TestSuite(vision_data, .init = tmp_setup, .fini = tmp_teardown);

/* ---- geometry and resize ------------------------------------------------------------------------ */

Test(vision_data, geometry_matches_torchvision)
{
    int rh, rw, oy, ox;
    kiln__vision_geometry(30, 40, 16, KILN_VISION_RESIZE_CROP, &rh, &rw, &oy, &ox);
    cr_expect(rh == 16 && rw == 21 && oy == 0 && ox == 2, "30x40->16: %dx%d at %d,%d", rh, rw, oy, ox); /* round(2.5)=2 */
    kiln__vision_geometry(375, 500, 224, KILN_VISION_RESIZE_CROP, &rh, &rw, &oy, &ox);
    cr_expect(rh == 224 && rw == 298 && ox == 37, "375x500->224: %dx%d at %d", rh, rw, ox);
    kiln__vision_geometry(50, 20, 10, KILN_VISION_RESIZE_CROP, &rh, &rw, &oy, &ox);
    cr_expect(rh == 25 && rw == 10 && oy == 8 && ox == 0, "50x20->10: %dx%d at %d", rh, rw, oy); /* round(7.5)=8 */
    kiln__vision_geometry(30, 40, 16, KILN_VISION_RESIZE_SQUISH, &rh, &rw, &oy, &ox);
    cr_expect(rh == 16 && rw == 16 && oy == 0 && ox == 0);
}

Test(vision_data, resize_matches_reference)
{
    const int sizes[][3] = {{30, 40, 16}, {40, 30, 16}, {9, 9, 20}, {17, 53, 8}, {16, 16, 16}};
    for (int t = 0; t < 5; t++) {
        int h = sizes[t][0], w = sizes[t][1], S = sizes[t][2];
        for (int squish = 0; squish < 2; squish++) {
            uint8_t *u = pattern(t, h, w, 3);
            float *f = malloc(sizeof(float) * h * w * 3), *got = malloc(sizeof(float) * 3 * S * S),
                  *want = malloc(sizeof(float) * 3 * S * S);
            for (int i = 0; i < h * w * 3; i++) f[i] = u[i] / 255.0f;
            cr_assert(!kiln__vision_resize(f, h, w, 3, S, squish ? KILN_VISION_RESIZE_SQUISH : KILN_VISION_RESIZE_CROP, got));
            ref_resize(u, h, w, 3, S, squish, want);
            expect_close(got, want, (size_t)3 * S * S, 1e-5, "resize");
            free(u), free(f), free(got), free(want);
        }
    }
}

/* ---- folders ------------------------------------------------------------------------------------ */

Test(vision_data, folder_train_valid_png_jpeg)
{
    /* classes made out of order; sorted by strcmp like torchvision: Moose < ant < zebra */
    png_pattern("ds/train/zebra/a.png", 1, 40, 30, 3);
    png_pattern("ds/train/zebra/b.png", 2, 30, 40, 3);
    png_pattern("ds/train/ant/c.PNG", 3, 20, 20, 3);
    png_pattern("ds/train/Moose/d.png", 4, 25, 25, 3);
    png_pattern("ds/valid/ant/e.png", 5, 40, 30, 3);
    uint8_t *smooth = malloc(48 * 48 * 3);
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 48; x++)
            for (int k = 0; k < 3; k++) smooth[(y * 48 + x) * 3 + k] = (uint8_t)(40 + 3 * x + 2 * y + 20 * k);
    write_jpeg(P("ds/valid/zebra/f.jpg"), 48, 48, 3, smooth, 1.0);
    write_bytes(P("ds/train/ant/notes.txt"), "ignored", 7);
    write_bytes(P("ds/train/ant/.hidden.png"), "ignored", 7);
    kiln_vision_params p = prm(16);
    kiln_data *d = kiln_vision_folder_new(P("ds"), &p);
    cr_assert(d, "%s", kiln_last_error());
    kiln_vision_data *v = kiln_vision_data_of(d);
    cr_assert(v);
    cr_assert_eq(kiln_vision_data_n_classes(v), 3);
    cr_expect_str_eq(kiln_vision_data_class(v, 0), "Moose");
    cr_expect_str_eq(kiln_vision_data_class(v, 1), "ant");
    cr_expect_str_eq(kiln_vision_data_class(v, 2), "zebra");
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 4);
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 2);
    cr_expect_eq(kiln_vision_data_n_channels(v), 3);
    cr_expect_eq(kiln_vision_data_size(v), 16);
    const int64_t want_labels[4] = {0, 1, 2, 2};
    for (int i = 0; i < 4; i++) cr_expect_eq(kiln_vision_data_label(v, KILN_DATA_SPLIT_TRAIN, i), want_labels[i]);
    cr_expect(strstr(kiln_vision_data_path(v, KILN_DATA_SPLIT_TRAIN, 2), "zebra/a.png"));
    /* train item 2 = zebra/a.png (40 wide, 30 high): loader pixels vs the reference resize */
    float got[3 * 16 * 16], want[3 * 16 * 16];
    uint8_t *u = pattern(1, 30, 40, 3);
    ref_resize(u, 30, 40, 3, 16, false, want);
    free(u);
    cr_assert(!kiln_vision_data_item(v, KILN_DATA_SPLIT_TRAIN, 2, false, got), "%s", kiln_last_error());
    expect_close(got, want, 3 * 16 * 16, 1e-5, "png item");
    /* the same through a batch (valid, in order): batch 0 = [ant/e.png, zebra/f.jpg] */
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x, *y;
    cr_assert(!kiln_data_get_batch(d, KILN_DATA_SPLIT_VALID, 0, ctx, &x, &y), "%s", kiln_last_error());
    cr_assert(x->ndim == 4 && x->shape[0] == 2 && x->shape[1] == 3 && x->shape[2] == 16 && x->shape[3] == 16);
    cr_assert(y->dtype == KILN_DTYPE_I64 && ((int64_t *)y->data)[0] == 1 && ((int64_t *)y->data)[1] == 2);
    u = pattern(5, 30, 40, 3);
    ref_resize(u, 30, 40, 3, 16, false, want);
    free(u);
    expect_close(x->data, want, 3 * 16 * 16, 1e-5, "png in batch");
    ref_resize(smooth, 48, 48, 3, 16, false, want);
    expect_close((float *)x->data + 3 * 16 * 16, want, 3 * 16 * 16, 0.04, "jpeg in batch");
    free(smooth);
    ku_ctx_free(ctx);
    kiln_data_free(d);
}

Test(vision_data, channels_grey_rgba_16bit)
{
    uint8_t g[8 * 8], rgba[8 * 8 * 4];
    uint16_t g16[8 * 8];
    for (int i = 0; i < 64; i++) {
        g[i] = (uint8_t)(i * 4);
        g16[i] = (uint16_t)(i * 1000);
        for (int k = 0; k < 4; k++) rgba[i * 4 + k] = (uint8_t)(i + 50 * k);
    }
    write_png(P("c/a/grey.png"), 8, 8, 1, 8, g);
    write_png(P("c/a/grey16.png"), 8, 8, 1, 16, g16);
    write_png(P("c/b/rgba.png"), 8, 8, 4, 8, rgba);
    kiln_vision_params p = prm(0); /* size 0: all 8x8 */
    p.valid_pct = 0;
    kiln_data *d = kiln_vision_folder_new(P("c"), &p);
    cr_assert(d, "%s", kiln_last_error());
    kiln_vision_data *v = kiln_vision_data_of(d);
    cr_assert_eq(kiln_vision_data_n_channels(v), 3, "one colour image makes the data set RGB");
    cr_assert_eq(kiln_vision_data_size(v), 8);
    float out[3 * 64];
    cr_assert(!kiln_vision_data_item(v, KILN_DATA_SPLIT_TRAIN, 0, false, out)); /* a/grey.png */
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 64; i++) cr_assert_float_eq(out[k * 64 + i], g[i] / 255.0f, 1e-7, "grey replicated");
    cr_assert(!kiln_vision_data_item(v, KILN_DATA_SPLIT_TRAIN, 1, false, out)); /* a/grey16.png */
    for (int i = 0; i < 64; i++) cr_assert_float_eq(out[64 + i], g16[i] / 65535.0f, 1e-6, "16-bit scaled");
    cr_assert(!kiln_vision_data_item(v, KILN_DATA_SPLIT_TRAIN, 2, false, out)); /* b/rgba.png */
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 64; i++) cr_assert_float_eq(out[k * 64 + i], rgba[i * 4 + k] / 255.0f, 1e-7, "alpha dropped");
    kiln_data_free(d);
    /* all grey: one channel */
    remove(P("c/b/rgba.png"));
    write_png(P("c/b/g2.png"), 8, 8, 1, 8, g);
    cr_assert((d = kiln_vision_folder_new(P("c"), &p)), "%s", kiln_last_error());
    cr_expect_eq(kiln_vision_data_n_channels(kiln_vision_data_of(d)), 1);
    kiln_data_free(d);
    /* public single-image load */
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *t = kiln_vision_image_load(ctx, P("c/a/grey.png"), 3, 0, KILN_VISION_RESIZE_CROP);
    cr_assert(t && t->ndim == 3 && t->shape[0] == 3 && t->shape[1] == 8 && t->shape[2] == 8, "%s", kiln_last_error());
    cr_expect_float_eq(((float *)t->data)[64 + 9], g[9] / 255.0f, 1e-7);
    ku_ctx_free(ctx);
}

Test(vision_data, class_layout_random_split)
{
    char rel[64];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 10; i++) {
            snprintf(rel, sizeof rel, "r/c%d/%02d.png", c, i);
            png_pattern(rel, c * 10 + i, 6, 6, 1);
        }
    kiln_vision_params p = prm(6);
    kiln_data *d = kiln_vision_folder_new(P("r"), &p);
    cr_assert(d, "%s", kiln_last_error());
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 6, "int(0.2 * 30)");
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 24);
    kiln_vision_data *v = kiln_vision_data_of(d);
    /* the split is kiln_data_permutation(split_seed, 0, 30)[:6], kept in file order */
    int64_t perm[30];
    bool is_valid[30] = {0};
    kiln_data_permutation(42, 0, 30, perm);
    for (int i = 0; i < 6; i++) is_valid[perm[i]] = true;
    int vi = 0, ti = 0;
    for (int i = 0; i < 30; i++) {
        snprintf(rel, sizeof rel, "r/c%d/%02d.png", i / 10, i % 10);
        kiln_data_split s = is_valid[i] ? KILN_DATA_SPLIT_VALID : KILN_DATA_SPLIT_TRAIN;
        int64_t at = is_valid[i] ? vi++ : ti++;
        cr_expect_str_eq(kiln_vision_data_path(v, s, at), P(rel));
        cr_expect_eq(kiln_vision_data_label(v, s, at), i / 10);
    }
    p.split_seed = 7;
    kiln_data *d2 = kiln_vision_folder_new(P("r"), &p);
    cr_assert(d2, "%s", kiln_last_error());
    bool same = true;
    for (int i = 0; i < 6; i++)
        same = same && !strcmp(kiln_vision_data_path(kiln_vision_data_of(d2), KILN_DATA_SPLIT_VALID, i),
                               kiln_vision_data_path(v, KILN_DATA_SPLIT_VALID, i));
    cr_expect(!same, "another seed gives another split");
    kiln_data_free(d2);
    kiln_data_free(d);
}

Test(vision_data, csv_quoted_names_and_columns)
{
    png_pattern("csv/img/a,1.png", 1, 5, 5, 3);
    png_pattern("csv/img/b\"q.png", 2, 5, 5, 3);
    png_pattern("csv/c.png", 3, 5, 5, 3);
    const char *text = "\xEF\xBB\xBF" "file,cls,is_valid\r\n\"img/a,1.png\",\"dog, big\",0\r\n"
                       "\"img/b\"\"q.png\",cat,1\r\nc.png,\"dog, big\",False\r\n\r\n";
    write_bytes(P("csv/labels.csv"), text, strlen(text));
    kiln_vision_params p = prm(5);
    p.csv_name_col = "file", p.csv_label_col = "cls", p.csv_valid_col = "is_valid";
    kiln_data *d = kiln_vision_open(P("csv/labels.csv"), &p);
    cr_assert(d, "%s", kiln_last_error());
    kiln_vision_data *v = kiln_vision_data_of(d);
    cr_assert_eq(kiln_vision_data_n_classes(v), 2);
    cr_expect_str_eq(kiln_vision_data_class(v, 0), "cat");
    cr_expect_str_eq(kiln_vision_data_class(v, 1), "dog, big");
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 2);
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 1);
    cr_expect_str_eq(kiln_vision_data_path(v, KILN_DATA_SPLIT_VALID, 0), P("csv/img/b\"q.png"));
    cr_expect_eq(kiln_vision_data_label(v, KILN_DATA_SPLIT_VALID, 0), 0);
    cr_expect_str_eq(kiln_vision_data_path(v, KILN_DATA_SPLIT_TRAIN, 1), P("csv/c.png"));
    cr_expect_eq(kiln_vision_data_label(v, KILN_DATA_SPLIT_TRAIN, 1), 1);
    kiln_data_free(d);
    /* a missing column and an unterminated quote are errors naming the file */
    p.csv_label_col = "label";
    expect_fail_naming(kiln_vision_csv_new(P("csv/labels.csv"), &p), "labels.csv", "missing column");
    cr_expect(strstr(kiln_last_error(), "'label'"));
    write_bytes(P("csv/bad.csv"), "name,label\n\"a.png,cat\n", 22);
    expect_fail_naming(kiln_vision_csv_new(P("csv/bad.csv"), NULL), "bad.csv:2", "unterminated quote");
}

/* ---- IDX -------------------------------------------------------------------------------------------- */

static void write_idx(const char *path, bool gz, uint32_t magic, const uint32_t *dims, int nd, const uint8_t *data,
                      size_t n)
{
    uint8_t hdr[16];
    for (int i = 0; i < 4; i++) hdr[i] = (uint8_t)(magic >> (24 - 8 * i));
    for (int d = 0; d < nd; d++)
        for (int i = 0; i < 4; i++) hdr[4 + 4 * d + i] = (uint8_t)(dims[d] >> (24 - 8 * i));
    if (gz) {
        gzFile f = gzopen(path, "wb");
        cr_assert(f);
        gzwrite(f, hdr, 4 + 4 * nd);
        if (n) gzwrite(f, data, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        cr_assert(f);
        fwrite(hdr, 1, 4 + 4 * nd, f);
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

/* n images of (h, w) and labels i % 3 as IDX pair dir/<pre>-images-idx3-ubyte[.gz] / -labels-idx1-ubyte. */
static void idx_pair(const char *dir, const char *pre, int n, int h, int w, bool gz)
{
    uint8_t *img = malloc((size_t)n * h * w), *lab = malloc((size_t)n);
    for (int i = 0; i < n * h * w; i++) img[i] = (uint8_t)(i * 37 + i / 7);
    for (int i = 0; i < n; i++) lab[i] = (uint8_t)(i % 3);
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/%s-images-idx3-ubyte%s", dir, pre, gz ? ".gz" : "");
    snprintf(b, sizeof b, "%s/%s-labels-idx1-ubyte%s", dir, pre, gz ? ".gz" : "");
    write_idx(a, gz, 0x803, (uint32_t[]){(uint32_t)n, (uint32_t)h, (uint32_t)w}, 3, img, (size_t)n * h * w);
    write_idx(b, gz, 0x801, (uint32_t[]){(uint32_t)n}, 1, lab, (size_t)n);
    free(img), free(lab);
}

Test(vision_data, idx_round_trip_plain_and_gz)
{
    for (int gz = 0; gz < 2; gz++) {
        char dir[1024];
        D(gz ? "idxgz" : "idxpl", dir);
        idx_pair(dir, "train", 10, 4, 4, gz);
        idx_pair(dir, "t10k", 5, 4, 4, gz);
        kiln_vision_params p = prm(0);
        p.shuffle = false, p.drop_last = false;
        kiln_data *d = kiln_vision_open(dir, &p);
        cr_assert(d, "%s", kiln_last_error());
        kiln_vision_data *v = kiln_vision_data_of(d);
        cr_assert_eq(kiln_vision_data_size(v), 4);
        cr_assert_eq(kiln_vision_data_n_channels(v), 1);
        cr_assert_eq(kiln_vision_data_n_classes(v), 3);
        cr_expect_str_eq(kiln_vision_data_class(v, 2), "2");
        cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 5);
        cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), 3);
        kiln_ctx *ctx = ku_ctx();
        kiln_tensor *x, *y;
        cr_assert(!kiln_data_get_batch(d, KILN_DATA_SPLIT_TRAIN, 2, ctx, &x, &y), "%s", kiln_last_error());
        cr_assert(x->shape[0] == 2 && x->shape[1] == 1 && x->shape[2] == 4 && x->shape[3] == 4);
        for (int r = 0; r < 2; r++) {
            int item = 8 + r;
            cr_expect_eq(((int64_t *)y->data)[r], item % 3);
            for (int q = 0; q < 16; q++) {
                int i = item * 16 + q;
                cr_expect_float_eq(((float *)x->data)[r * 16 + q], (uint8_t)(i * 37 + i / 7) / 255.0f, 1e-7);
            }
        }
        ku_ctx_free(ctx);
        kiln_data_free(d);
    }
    /* resized on the fly (4x4 -> 9x9, squish): train item 7 against the reference */
    char dir[1024];
    D("idxpl", dir);
    kiln_vision_params p = prm(9);
    p.resize = KILN_VISION_RESIZE_SQUISH;
    kiln_data *d = kiln_vision_open(dir, &p);
    cr_assert(d, "%s", kiln_last_error());
    uint8_t u[16];
    float got[81], want[81];
    for (int q = 0; q < 16; q++) u[q] = (uint8_t)((7 * 16 + q) * 37 + (7 * 16 + q) / 7);
    ref_resize(u, 4, 4, 1, 9, true, want);
    cr_assert(!kiln_vision_data_item(kiln_vision_data_of(d), KILN_DATA_SPLIT_TRAIN, 7, false, got));
    expect_close(got, want, 81, 1e-5, "idx resized");
    kiln_data_free(d);
}

Test(vision_data, idx_dataset_stats_and_normalization)
{
    char dir[1024];
    D("st", dir);
    idx_pair(dir, "train", 12, 5, 5, false);
    kiln_vision_params p = prm(0);
    p.norm = KILN_VISION_NORM_DATASET, p.n_channels = 3;
    kiln_data *d = kiln_vision_open(dir, &p);
    cr_assert(d, "%s", kiln_last_error());
    kiln_vision_data *v = kiln_vision_data_of(d);
    double s = 0, s2 = 0, n = 12 * 25;
    for (int i = 0; i < 12 * 25; i++) {
        double x = (uint8_t)(i * 37 + i / 7) / 255.0f;
        s += x, s2 += x * x;
    }
    double m = s / n, sd = sqrt((s2 - s * m) / (n - 1)); /* torch.std: unbiased */
    kiln_vision_stats st = kiln_vision_data_stats(v);
    for (int c = 0; c < 3; c++) {
        cr_expect_float_eq(st.mean[c], m, 1e-6, "mean[%d] %f vs %f", c, st.mean[c], m);
        cr_expect_float_eq(st.std[c], sd, 1e-6, "std[%d] %f vs %f", c, st.std[c], sd);
    }
    float out[3 * 25];
    cr_assert(!kiln_vision_data_item(v, KILN_DATA_SPLIT_TRAIN, 1, true, out));
    cr_expect_float_eq(out[25 + 3], ((uint8_t)(28 * 37 + 28 / 7) / 255.0f - st.mean[1]) / st.std[1], 1e-6);
    kiln_data_free(d);
    p.norm = KILN_VISION_NORM_IMAGENET, p.n_channels = 0;
    expect_fail_naming(kiln_vision_open(dir, &p), "3 channels", "imagenet stats on grey");
}

Test(vision_data, fashion_mnist_when_installed)
{
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist", &sb) != 0)
        cr_skip_test("/usr/share/datasets/fashion-mnist absent (apt-get install dataset-fashion-mnist)");
    kiln_vision_params p = kiln_vision_default_params();
    p.batch_size = 128;
    kiln_data *d = kiln_vision_open("fashion-mnist", &p);
    cr_assert(d, "%s", kiln_last_error());
    kiln_vision_data *v = kiln_vision_data_of(d);
    cr_expect_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 60000);
    cr_expect_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 10000);
    cr_expect_eq(kiln_vision_data_n_classes(v), 10);
    cr_expect_str_eq(kiln_vision_data_class(v, 9), "Ankle boot");
    cr_expect(kiln_vision_data_size(v) == 28 && kiln_vision_data_n_channels(v) == 1);
    kiln_vision_stats st = kiln_vision_data_stats(v); /* torch: xtr.mean() 0.2860, xtr.std() 0.3530 */
    cr_expect_float_eq(st.mean[0], 0.2860f, 1e-4, "mean %f", st.mean[0]);
    cr_expect_float_eq(st.std[0], 0.3530f, 1e-4, "std %f", st.std[0]);
    cr_expect_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), 468);
    cr_expect_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_VALID), 79);
    cr_assert(!kiln_data_set_epoch(d, 1, 0));
    cr_assert(!all_batches(d, KILN_DATA_SPLIT_VALID), "%s", kiln_last_error());
    kiln_data_free(d);
}

/* ---- loader determinism ---------------------------------------------------------------------------- */

/* A stand-in augmentation: noise from (seed, counter) and a timing jitter so threads finish out of order. */
static kiln_status noisy_tfm(void *user, float *img, int c, int h, int w, uint64_t seed, uint64_t counter, bool train)
{
    (void)user;
    if (train) usleep((useconds_t)(kiln_philox_uniform(seed, counter + 200) * 300));
    for (int i = 0; i < c * h * w; i++)
        img[i] += (train ? 0.1f : 0.01f) * kiln_philox_uniform(seed, counter + (uint64_t)(i % 8));
    return KILN_STATUS_OK;
}

/* All batches of epochs 0 and 1 (train then valid), concatenated. */
static float *run_epochs(const char *dir, int workers, int prefetch, size_t *n, int64_t **labels)
{
    kiln_vision_params p = prm(0);
    p.batch_size = 8, p.valid_batch_size = 5;
    p.norm = KILN_VISION_NORM_DATASET;
    p.n_workers = workers, p.prefetch = prefetch, p.tfm = noisy_tfm;
    kiln_data *d = kiln_vision_open(dir, &p);
    cr_assert(d, "%s", kiln_last_error());
    cr_assert_eq(kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN), 103 / 8, "drop_last");
    size_t cap = 2 * (96 + 21) * 16, at = 0, li = 0;
    float *out = malloc(cap * sizeof *out);
    *labels = malloc(2 * (96 + 21) * sizeof **labels);
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x, *y;
    /* an abandoned epoch first: its batches still being prepared must not leak into epoch 0 */
    cr_assert(!kiln_data_set_epoch(d, 99, 5));
    cr_assert(!kiln_data_get_batch(d, KILN_DATA_SPLIT_TRAIN, 0, ctx, &x, &y));
    kiln_step_reset(ctx);
    for (int e = 0; e < 2; e++) {
        cr_assert(!kiln_data_set_epoch(d, 99, e));
        for (int s = 0; s < 2; s++)
            for (int64_t b = 0; b < kiln_data_n_batches(d, s); b++) {
                cr_assert(!kiln_data_get_batch(d, s, b, ctx, &x, &y), "%s", kiln_last_error());
                memcpy(out + at, x->data, (size_t)kiln_numel(x) * sizeof(float));
                memcpy(*labels + li, y->data, (size_t)y->shape[0] * sizeof(int64_t));
                at += (size_t)kiln_numel(x), li += (size_t)y->shape[0];
                kiln_step_reset(ctx);
            }
    }
    /* a jump back (the ring did not foresee it) gives the same batch again */
    cr_assert(!kiln_data_get_batch(d, KILN_DATA_SPLIT_TRAIN, 3, ctx, &x, &y));
    cr_assert(!memcmp(x->data, out + (96 + 21) * 16 + 3 * 8 * 16, 8 * 16 * sizeof(float)), "jump back differs");
    ku_ctx_free(ctx);
    kiln_data_free(d);
    *n = at;
    return out;
}

Test(vision_data, loader_deterministic_across_threads)
{
    char dir[1024];
    D("det", dir);
    idx_pair(dir, "train", 103, 4, 4, true);
    idx_pair(dir, "t10k", 21, 4, 4, true);
    size_t n0, n1;
    int64_t *l0, *l1;
    float *ref = run_epochs(dir, 0, 1, &n0, &l0);
    cr_assert_eq(n0, (size_t)2 * (96 + 21) * 16);
    /* epoch e's train order is kiln_data_permutation(99, e, 103), labels are item % 3 */
    for (int e = 0; e < 2; e++) {
        int64_t perm[103];
        kiln_data_permutation(99, e, 103, perm);
        for (int i = 0; i < 96; i++) cr_assert_eq(l0[e * 117 + i], perm[i] % 3, "epoch %d item %d", e, i);
        for (int i = 0; i < 21; i++) cr_assert_eq(l0[e * 117 + 96 + i], i % 3);
    }
    const int cfg[][2] = {{1, 1}, {1, 4}, {3, 2}, {4, 8}};
    for (int k = 0; k < 4; k++) {
        float *got = run_epochs(dir, cfg[k][0], cfg[k][1], &n1, &l1);
        cr_assert_eq(n1, n0);
        cr_assert(!memcmp(got, ref, n0 * sizeof(float)), "workers %d prefetch %d: batches differ", cfg[k][0], cfg[k][1]);
        cr_assert(!memcmp(l1, l0, 2 * 117 * sizeof(int64_t)));
        free(got), free(l1);
    }
    free(ref), free(l0);
}

static kiln_status failing_tfm(void *user, float *img, int c, int h, int w, uint64_t seed, uint64_t counter, bool train)
{
    (void)user, (void)img, (void)c, (void)h, (void)w, (void)seed, (void)train;
    return counter == kiln_vision_item_counter(0, KILN_DATA_SPLIT_VALID, 3)
               ? kiln__err(KILN_STATUS_INVALID, "augment: test failure")
               : KILN_STATUS_OK;
}

Test(vision_data, transform_error_reaches_caller)
{
    char dir[1024];
    D("tf", dir);
    idx_pair(dir, "train", 10, 4, 4, false);
    idx_pair(dir, "t10k", 10, 4, 4, false);
    kiln_vision_params p = prm(0);
    p.tfm = failing_tfm;
    kiln_data *d = kiln_vision_open(dir, &p);
    cr_assert(d);
    cr_assert(all_batches(d, KILN_DATA_SPLIT_VALID) != KILN_STATUS_OK);
    cr_expect(strstr(kiln_last_error(), "augment: test failure") && strstr(kiln_last_error(), "valid item 3"), "%s",
              kiln_last_error());
    kiln_data_free(d);
}

/* ---- bad input ----------------------------------------------------------------------------------------- */

static void good_tree(const char *top)
{
    char rel[128];
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < 2; c++) {
            snprintf(rel, sizeof rel, "%s/%s/c%d/ok.png", top, s ? "valid" : "train", c);
            png_pattern(rel, c, 32, 32, 3);
        }
}

/* A PNG whose IDAT bytes are flipped: its header reads fine, its pixels do not. */
static void corrupt_png(const char *rel)
{
    png_pattern(rel, 9, 32, 32, 3);
    FILE *f = fopen(P(rel), "r+b");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n / 2, SEEK_SET);
    fputc(0x55, f), fputc(0xaa, f), fputc(0x13, f);
    fclose(f);
}

static void truncated_jpeg(const char *rel)
{
    uint8_t *px = pattern(3, 32, 32, 3);
    write_jpeg(P(rel), 32, 32, 3, px, 0.6);
    free(px);
}

Test(vision_data, bad_corrupt_png)
{
    good_tree("b1");
    corrupt_png("b1/train/c0/broken.png");
    kiln_vision_params p = prm(16);
    p.drop_last = false;
    kiln_data *d = kiln_vision_folder_new(P("b1"), &p);
    cr_assert(d, "the header is fine: %s", kiln_last_error());
    cr_assert(all_batches(d, KILN_DATA_SPLIT_TRAIN) != KILN_STATUS_OK, "decoding must fail");
    cr_expect(strstr(kiln_last_error(), "b1/train/c0/broken.png"), "%s", kiln_last_error());
    kiln_data_free(d);
    p.norm = KILN_VISION_NORM_DATASET; /* stats decode every train image at construction */
    expect_fail_naming(kiln_vision_folder_new(P("b1"), &p), "broken.png", "corrupt png, stats");
}

Test(vision_data, bad_truncated_jpeg)
{
    good_tree("b2");
    truncated_jpeg("b2/valid/c1/cut.jpg");
    kiln_vision_params p = prm(16);
    kiln_data *d = kiln_vision_folder_new(P("b2"), &p);
    cr_assert(d, "%s", kiln_last_error());
    cr_assert(all_batches(d, KILN_DATA_SPLIT_VALID) != KILN_STATUS_OK, "a truncated JPEG must fail");
    cr_expect(strstr(kiln_last_error(), "b2/valid/c1/cut.jpg"), "%s", kiln_last_error());
    kiln_data_free(d);
}

Test(vision_data, bad_text_named_png)
{
    good_tree("b3");
    write_bytes(P("b3/train/c1/readme.png"), "this is not a picture\n", 22);
    kiln_vision_params p = prm(16);
    expect_fail_naming(kiln_vision_folder_new(P("b3"), &p), "b3/train/c1/readme.png", "text .png");
    cr_expect(strstr(kiln_last_error(), "not a PNG or JPEG"), "%s", kiln_last_error());
}

Test(vision_data, bad_empty_class_and_missing_split)
{
    good_tree("b4");
    mkdir(P("b4/train/c2"), 0755);
    kiln_vision_params p = prm(16);
    expect_fail_naming(kiln_vision_folder_new(P("b4"), &p), "b4/train/c2", "empty class folder");
    cr_expect(strstr(kiln_last_error(), "empty class folder"));
    png_pattern("b5/train/c0/x.png", 1, 8, 8, 3);
    expect_fail_naming(kiln_vision_folder_new(P("b5"), &p), "b5/valid", "missing split");
    cr_expect(strstr(kiln_last_error(), "missing split"));
    expect_fail_naming(kiln_vision_open(P("nothing/here"), &p), "nothing/here", "missing source");
}

Test(vision_data, bad_skip_bad_counts)
{
    good_tree("b6");
    corrupt_png("b6/train/c0/broken.png");
    truncated_jpeg("b6/train/c1/cut.jpg");
    write_bytes(P("b6/valid/c0/readme.png"), "text", 4);
    write_bytes(P("b6/valid/c1/empty.jpg"), "", 0);
    kiln_vision_params p = prm(16);
    p.skip_bad = true;
    p.norm = KILN_VISION_NORM_DATASET;
    kiln_data *d = kiln_vision_folder_new(P("b6"), &p); /* four warnings on stderr */
    cr_assert(d, "%s", kiln_last_error());
    cr_expect_eq(kiln_vision_data_n_skipped(kiln_vision_data_of(d)), 4);
    cr_expect_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 2);
    cr_expect_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 2);
    cr_expect(!all_batches(d, KILN_DATA_SPLIT_TRAIN) && !all_batches(d, KILN_DATA_SPLIT_VALID), "%s", kiln_last_error());
    kiln_data_free(d);
}

Test(vision_data, bad_idx_files)
{
    char dir[1024];
    D("bi", dir);
    uint8_t img[3 * 4 * 4] = {0}, lab[3] = {0, 1, 2};
    write_idx(P("bi/img"), false, 0x803, (uint32_t[]){3, 4, 4}, 3, img, sizeof img);
    write_idx(P("bi/lab"), false, 0x801, (uint32_t[]){3}, 1, lab, 3);
    write_idx(P("bi/lab2"), true, 0x801, (uint32_t[]){2}, 1, lab, 2);
    write_idx(P("bi/magic"), false, 0x802, (uint32_t[]){3, 4, 4}, 3, img, sizeof img);
    write_idx(P("bi/short"), false, 0x803, (uint32_t[]){3, 4, 4}, 3, img, sizeof img - 5);
    write_idx(P("bi/shortgz"), true, 0x803, (uint32_t[]){3, 4, 4}, 3, img, sizeof img - 1);
    write_idx(P("bi/long"), false, 0x803, (uint32_t[]){2, 4, 4}, 3, img, sizeof img);
    kiln_vision_params p = prm(0);
    kiln_data *d = kiln_vision_idx_new(P("bi/img"), P("bi/lab"), NULL, NULL, &p);
    cr_assert(d, "the good pair loads: %s", kiln_last_error());
    kiln_data_free(d);
    expect_fail_naming(kiln_vision_idx_new(P("bi/magic"), P("bi/lab"), NULL, NULL, &p), "bi/magic", "wrong magic");
    cr_expect(strstr(kiln_last_error(), "wrong magic 0x00000802"), "%s", kiln_last_error());
    expect_fail_naming(kiln_vision_idx_new(P("bi/img"), P("bi/lab2"), NULL, NULL, &p), "bi/lab2", "inconsistent");
    cr_expect(strstr(kiln_last_error(), "3 images") && strstr(kiln_last_error(), "2 labels"), "%s", kiln_last_error());
    expect_fail_naming(kiln_vision_idx_new(P("bi/short"), P("bi/lab"), NULL, NULL, &p), "bi/short", "truncated");
    cr_expect(strstr(kiln_last_error(), "truncated"));
    expect_fail_naming(kiln_vision_idx_new(P("bi/shortgz"), P("bi/lab"), NULL, NULL, &p), "bi/shortgz", "truncated gz");
    expect_fail_naming(kiln_vision_idx_new(P("bi/long"), P("bi/lab"), NULL, NULL, &p), "bi/long", "extra bytes");
    expect_fail_naming(kiln_vision_idx_new(P("bi/img"), P("bi/img"), NULL, NULL, &p), "bi/img", "images as labels");
}

Test(vision_data, not_a_vision_source)
{
    kiln_ctx *ctx = ku_ctx();
    kiln_tensor *x = kiln_zeros(ctx, KILN_DTYPE_F32, 2, (int64_t[]){4, 3});
    kiln_tensor *y = kiln_zeros(ctx, KILN_DTYPE_I64, 1, (int64_t[]){4});
    kiln_data *d = kiln_tensor_data_new(x, y, NULL, NULL, NULL);
    cr_assert(d);
    cr_expect(kiln_vision_data_of(d) == NULL && strstr(kiln_last_error(), "not a vision source"));
    kiln_data_free(d);
    ku_ctx_free(ctx);
}

/* ---- hostile headers (issue 8): sizes that would overflow or take gigabytes --------------------------- */

/* IDX dims whose product passes 2^63 (0xffffffff^3): a signed overflow before the size check
 * (UBSan in the ASan build), which the release build reported as "inconsistent counts" or as
 * "out of memory for -4294967296 bytes". Now a clear error naming the file and the sizes. */
Test(vision_data, idx_header_dims_overflow)
{
    char dir[1024];
    D("ho", dir);
    const uint32_t huge[][3] = {{0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu, 2},
                                {1u << 31, 1u << 31, 4}, {65536, 65536, 5}};
    for (int k = 0; k < 4; k++) {
        write_idx(P("ho/img"), k % 2, 0x803, huge[k], 3, (const uint8_t *)"abc", 3);
        int64_t dims[3];
        uint8_t *px = (uint8_t *)dir;
        kiln_clear_error();
        cr_assert_eq(kiln__vision_idx_read(P("ho/img"), 0x803, dims, &px), KILN_STATUS_FORMAT, "case %d", k);
        cr_expect_null(px);
        cr_expect(strstr(kiln_last_error(), "ho/img") && strstr(kiln_last_error(), "header sizes"), "case %d: %s", k,
                  kiln_last_error());
    }
    /* a header of 2^34 bytes (the limit) over 3 data bytes: truncated, read without reserving 16 GiB */
    write_idx(P("ho/img"), false, 0x803, (uint32_t[]){16384, 1024, 1024}, 3, (const uint8_t *)"abc", 3);
    int64_t dims[3];
    uint8_t *px;
    cr_assert_eq(kiln__vision_idx_read(P("ho/img"), 0x803, dims, &px), KILN_STATUS_FORMAT);
    cr_expect(strstr(kiln_last_error(), "truncated data: expected 17179869184 bytes, got 3"), "%s", kiln_last_error());
    write_idx(P("ho/lab"), false, 0x801, (uint32_t[]){3}, 1, (const uint8_t *)"abc", 3);
    write_idx(P("ho/img"), false, 0x803, huge[0], 3, (const uint8_t *)"abc", 3);
    expect_fail_naming(kiln_vision_idx_new(P("ho/img"), P("ho/lab"), NULL, NULL, NULL), "ho/img", "idx_new");
    cr_expect(!strstr(kiln_last_error(), "inconsistent counts"), "%s", kiln_last_error());
}

/* A PNG claiming width x height (8-bit grey) with one tiny IDAT: the header is valid (CRCs
 * right), the pixels are not there. */
static void write_png_header(const char *path, uint32_t w, uint32_t h)
{
    uint8_t b[8 + 25 + 12 + 22] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t *p = b + 8;
    const uint8_t ihdr[4 + 13] = {'I', 'H', 'D', 'R', (uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8),
                                  (uint8_t)w, (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h, 8,
                                  0, 0, 0, 0};
    const uint8_t idat[4 + 10] = {'I', 'D', 'A', 'T', 0x78, 0x9c, 0x63, 0x60, 0, 0, 0, 2, 0, 1};
    const uint8_t *chunks[2] = {ihdr, idat};
    const uint32_t lens[2] = {13, 10};
    for (int c = 0; c < 2; c++) {
        uint32_t n = lens[c], crc = (uint32_t)crc32(0, chunks[c], 4 + n);
        p[0] = (uint8_t)(n >> 24), p[1] = (uint8_t)(n >> 16), p[2] = (uint8_t)(n >> 8), p[3] = (uint8_t)n;
        memcpy(p + 4, chunks[c], 4 + n);
        p += 8 + n;
        p[0] = (uint8_t)(crc >> 24), p[1] = (uint8_t)(crc >> 16), p[2] = (uint8_t)(crc >> 8), p[3] = (uint8_t)crc;
        p += 4;
    }
    write_bytes(path, b, (size_t)(p - b));
}

/* A 30000x30000 PNG header took 7 GB and 32 s to decode in predict; now every path refuses it
 * from the header, naming the file and the size, and the cap is configurable. */
Test(vision_data, image_pixel_cap)
{
    write_png_header(P("cap/train/a/huge.png"), 30000, 30000);
    kiln_ctx *ctx = ku_ctx();
    kiln_clear_error();
    cr_assert_null(kiln_vision_image_load(ctx, P("cap/train/a/huge.png"), 0, 28, KILN_VISION_RESIZE_CROP));
    cr_expect(strstr(kiln_last_error(), "cap/train/a/huge.png") && strstr(kiln_last_error(), "30000x30000") &&
                  strstr(kiln_last_error(), "max_pixels"), "%s", kiln_last_error());
    /* the cap is the caller's: a 6x5 PNG and a 6x5 JPEG pass at 30 pixels, not at 29 */
    png_pattern("cap/train/b/small.png", 1, 6, 5, 3);
    uint8_t *px = pattern(2, 5, 6, 3);
    write_jpeg(P("cap/valid/b/small.jpg"), 6, 5, 3, px, 1.0);
    free(px);
    const char *files[2] = {P("cap/train/b/small.png"), P("cap/valid/b/small.jpg")};
    for (int k = 0; k < 2; k++) {
        cr_expect_not_null(kiln_vision_image_load_ex(ctx, files[k], 0, 0, KILN_VISION_RESIZE_CROP, 30), "%s",
                           kiln_last_error());
        cr_expect_null(kiln_vision_image_load_ex(ctx, files[k], 0, 0, KILN_VISION_RESIZE_CROP, 29), "%s", files[k]);
        cr_expect(strstr(kiln_last_error(), files[k]) && strstr(kiln_last_error(), "6x5"), "%s", kiln_last_error());
    }
    ku_ctx_free(ctx);
    /* a data source refuses it at construction (probe), or skips it with skip_bad */
    png_pattern("cap/train/a/ok.png", 3, 6, 5, 3);
    png_pattern("cap/valid/a/ok.png", 4, 6, 5, 3);
    kiln_vision_params p = prm(8);
    expect_fail_naming(kiln_vision_folder_new(P("cap"), &p), "cap/train/a/huge.png", "huge png in a folder");
    cr_expect(strstr(kiln_last_error(), "30000x30000"), "%s", kiln_last_error());
    p.skip_bad = true;
    kiln_data *d = kiln_vision_folder_new(P("cap"), &p);
    cr_assert(d, "%s", kiln_last_error());
    cr_expect_eq(kiln_vision_data_n_skipped(kiln_vision_data_of(d)), 1);
    kiln_data_free(d);
    p.skip_bad = false;
    p.max_pixels = 29; /* now the 6x5 images are too large as well */
    remove(P("cap/train/a/huge.png"));
    expect_fail_naming(kiln_vision_folder_new(P("cap"), &p), "6x5", "max_pixels 29");
    p.max_pixels = -1;
    expect_fail_naming(kiln_vision_folder_new(P("cap"), &p), "max_pixels", "max_pixels -1");
}

/* ---- class subsets and per-class limits --------------------------------------------------------- */

/* IDX train (30 items) and valid (15), labels i % 3: a subset renumbers the classes in the
 * order asked for and keeps the other items (pixels and all) in data order; per-class limits
 * are seeded and repeatable; the stats are the kept items'. */
Test(vision_data, subset_idx_classes_limits_and_stats)
{
    char dir[1024];
    D("sub", dir);
    idx_pair(dir, "train", 30, 4, 4, false);
    idx_pair(dir, "t10k", 15, 4, 4, true);
    kiln_vision_params p = prm(0);
    p.shuffle = false, p.drop_last = false, p.norm = KILN_VISION_NORM_DATASET;
    const char *keep[] = {"2", "0"};
    p.classes = keep, p.n_classes = 2;
    kiln_data *d = kiln_vision_open(dir, &p);
    cr_assert(d, "%s", kiln_last_error());
    kiln_vision_data *v = kiln_vision_data_of(d);
    cr_assert_eq(kiln_vision_data_n_classes(v), 2);
    cr_expect_str_eq(kiln_vision_data_class(v, 0), "2");
    cr_expect_str_eq(kiln_vision_data_class(v, 1), "0");
    cr_expect(kiln_vision_data_params(v)->classes == NULL && kiln_vision_data_params(v)->n_classes == 0);
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 20);
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 10);
    double s = 0, s2 = 0;
    int64_t at = 0;
    for (int i = 0; i < 30; i++) { /* source item i of label 0 or 2, in order */
        if (i % 3 == 1) continue;
        cr_expect_eq(kiln_vision_data_label(v, KILN_DATA_SPLIT_TRAIN, at), i % 3 == 2 ? 0 : 1, "item %d", i);
        float got[16];
        cr_assert(!kiln_vision_data_item(v, KILN_DATA_SPLIT_TRAIN, at, false, got));
        for (int q = 0; q < 16; q++) {
            int k = i * 16 + q;
            double x = (uint8_t)(k * 37 + k / 7) / 255.0f;
            cr_expect_float_eq(got[q], x, 1e-7, "source item %d pixel %d", i, q);
            s += x, s2 += x * x;
        }
        at++;
    }
    double n = 20 * 16, m = s / n, sd = sqrt((s2 - s * m) / (n - 1));
    kiln_vision_stats st = kiln_vision_data_stats(v);
    cr_expect_float_eq(st.mean[0], m, 1e-6, "mean %f of the kept items, expected %f", st.mean[0], m);
    cr_expect_float_eq(st.std[0], sd, 1e-6, "std %f of the kept items, expected %f", st.std[0], sd);
    kiln_data_free(d);

    /* 3 train items per class, picked along kiln_data_permutation(split_seed, 1, n) */
    p.train_per_class = 3;
    d = kiln_vision_open(dir, &p);
    cr_assert(d, "%s", kiln_last_error());
    v = kiln_vision_data_of(d);
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 6);
    cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 10, "valid keeps every item of the kept classes");
    int64_t perm[20], cnt[2] = {0}, want[6], nw = 0;
    bool pick[20] = {false};
    kiln_data_permutation(42, 1, 20, perm);
    for (int j = 0; j < 20; j++) { /* over the 20 kept items: label of kept item t is (t % 2 == 0 ? 0 : 1) */
        int64_t t = perm[j], y = t % 2 == 0 ? 0 : 1;
        if (cnt[y] < 3) cnt[y]++, pick[t] = true;
    }
    for (int t = 0; t < 20; t++)
        if (pick[t]) want[nw++] = t;
    float got[16];
    for (int r = 0; r < 6; r++) {
        int src = (int)(want[r] / 2 * 3 + (want[r] % 2 == 0 ? 0 : 2)); /* kept item t -> source item */
        cr_assert(!kiln_vision_data_item(v, KILN_DATA_SPLIT_TRAIN, r, false, got));
        int k = src * 16 + 5;
        cr_expect_float_eq(got[5], (uint8_t)(k * 37 + k / 7) / 255.0f, 1e-7, "limited item %d is source %d", r, src);
        cr_expect_eq(kiln_vision_data_label(v, KILN_DATA_SPLIT_TRAIN, r), src % 3 == 2 ? 0 : 1);
    }
    kiln_data_free(d);
    p.split_seed = 7, p.valid_per_class = 1;
    d = kiln_vision_open(dir, &p);
    cr_assert(d, "%s", kiln_last_error());
    cr_expect_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 2);
    bool same = true;
    for (int r = 0; r < 6; r++) {
        cr_assert(!kiln_vision_data_item(kiln_vision_data_of(d), KILN_DATA_SPLIT_TRAIN, r, false, got));
        int src = (int)(want[r] / 2 * 3 + (want[r] % 2 == 0 ? 0 : 2)), k = src * 16 + 5;
        same = same && got[5] == (uint8_t)(k * 37 + k / 7) / 255.0f;
    }
    cr_expect(!same, "another split seed picks other items");
    kiln_data_free(d);
    /* a limit above a class's count keeps the class whole; no subset keeps every class */
    p.classes = NULL, p.n_classes = 0, p.train_per_class = 1000, p.valid_per_class = 0;
    d = kiln_vision_open(dir, &p);
    cr_assert(d, "%s", kiln_last_error());
    cr_expect_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 30);
    cr_expect_eq(kiln_vision_data_n_classes(kiln_vision_data_of(d)), 3);
    kiln_data_free(d);
}

Test(vision_data, subset_bad_classes_and_limits)
{
    char dir[1024];
    D("subbad", dir);
    idx_pair(dir, "train", 9, 4, 4, false);
    kiln_vision_params p = prm(0);
    const char *unknown[] = {"1", "cow"}, *twice[] = {"1", "01"}, *null_name[] = {NULL}, *past[] = {"3"};
    p.classes = unknown, p.n_classes = 2;
    expect_fail_naming(kiln_vision_open(dir, &p), "'cow'", "unknown class");
    cr_expect(strstr(kiln_last_error(), "'0', '1', '2'"), "lists the classes: %s", kiln_last_error());
    p.classes = past, p.n_classes = 1;
    expect_fail_naming(kiln_vision_open(dir, &p), "'3'", "index past the classes");
    p.classes = twice, p.n_classes = 2;
    expect_fail_naming(kiln_vision_open(dir, &p), "twice", "class asked for twice (as a name, then an index)");
    p.classes = null_name, p.n_classes = 1;
    expect_fail_naming(kiln_vision_open(dir, &p), "(null)", "a NULL class name");
    p.classes = NULL, p.n_classes = 2;
    expect_fail_naming(kiln_vision_open(dir, &p), "n_classes", "n_classes without classes");
    p.classes = unknown, p.n_classes = 0;
    expect_fail_naming(kiln_vision_open(dir, &p), "n_classes", "classes without n_classes");
    p.classes = NULL, p.train_per_class = -1;
    expect_fail_naming(kiln_vision_open(dir, &p), "train_per_class", "negative limit");
}

/* A w x w grey PNG of one value. */
static void png_const(const char *rel, int w, uint8_t value)
{
    uint8_t px[64];
    memset(px, value, sizeof px);
    write_png(P(rel), w, w, 1, 8, px);
}

/* Folders (random split) and CSV: the same subset rules over file lists; the stats are those
 * of the kept files (each class's images have one pixel value, so the mean is known). */
Test(vision_data, subset_folder_and_csv)
{
    static const char *cls[3] = {"ant", "bee", "cat"};
    static const uint8_t val[3] = {10, 100, 200};
    char rel[64], csv[4096] = "name,label\n";
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 10; i++) {
            snprintf(rel, sizeof rel, "sf/%s/%02d.png", cls[c], i);
            png_const(rel, 4, val[c]);
            size_t k = strlen(csv);
            snprintf(csv + k, sizeof csv - k, "%s/%02d.png,%s\n", cls[c], i, cls[c]);
        }
    write_bytes(P("sf/list.csv"), csv, strlen(csv));
    const char *keep[] = {"cat", "0"}; /* by name, and "ant" by index */
    for (int kind = 0; kind < 2; kind++) {
        kiln_vision_params p = prm(4);
        p.norm = KILN_VISION_NORM_DATASET, p.stats_items = 0;
        p.classes = keep, p.n_classes = 2, p.train_per_class = 4;
        kiln_data *d = kind ? kiln_vision_csv_new(P("sf/list.csv"), &p) : kiln_vision_folder_new(P("sf"), &p);
        cr_assert(d, "%s: %s", kind ? "csv" : "folder", kiln_last_error());
        kiln_vision_data *v = kiln_vision_data_of(d);
        cr_expect_str_eq(kiln_vision_data_class(v, 0), "cat");
        cr_expect_str_eq(kiln_vision_data_class(v, 1), "ant");
        cr_assert_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 8);
        int64_t per[2] = {0};
        for (int64_t i = 0; i < 8; i++) {
            int64_t y = kiln_vision_data_label(v, KILN_DATA_SPLIT_TRAIN, i);
            cr_assert(y == 0 || y == 1);
            per[y]++;
            cr_expect(strstr(kiln_vision_data_path(v, KILN_DATA_SPLIT_TRAIN, i), y ? "/ant/" : "/cat/"), "%s has label %lld",
                      kiln_vision_data_path(v, KILN_DATA_SPLIT_TRAIN, i), (long long)y);
        }
        cr_expect(per[0] == 4 && per[1] == 4);
        /* the valid split (int(0.2 * 30) = 6 of all 30 files) keeps its ant and cat files */
        int64_t nv = kiln_data_n_items(d, KILN_DATA_SPLIT_VALID);
        cr_expect(nv >= 1 && nv <= 6, "valid %lld", (long long)nv);
        for (int64_t i = 0; i < nv; i++)
            cr_expect(!strstr(kiln_vision_data_path(v, KILN_DATA_SPLIT_VALID, i), "/bee/"));
        kiln_vision_stats st = kiln_vision_data_stats(v);
        double m = (4 * 200 / 255.0 + 4 * 10 / 255.0) / 8;
        cr_expect_float_eq(st.mean[0], m, 1e-5, "%s: mean %f of the kept files, expected %f", kind ? "csv" : "folder",
                           st.mean[0], m);
        kiln_data_free(d);
        const char *bad[] = {"dog"};
        p.classes = bad, p.n_classes = 1;
        expect_fail_naming(kind ? kiln_vision_csv_new(P("sf/list.csv"), &p) : kiln_vision_folder_new(P("sf"), &p),
                           "'dog'", "unknown class in a file source");
        cr_expect(strstr(kiln_last_error(), "'ant', 'bee', 'cat'"), "%s", kiln_last_error());
    }
}

Test(vision_data, subset_fashion_mnist_when_installed)
{
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist", &sb) != 0)
        cr_skip_test("/usr/share/datasets/fashion-mnist absent (apt-get install dataset-fashion-mnist)");
    kiln_vision_params p = kiln_vision_default_params();
    const char *keep[] = {"Sandal", "7", "8", "9", "6"};
    p.classes = keep, p.n_classes = 5, p.train_per_class = 50;
    kiln_data *d = kiln_vision_open("fashion-mnist", &p);
    cr_assert(d, "%s", kiln_last_error());
    kiln_vision_data *v = kiln_vision_data_of(d);
    cr_expect_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), 250);
    cr_expect_eq(kiln_data_n_items(d, KILN_DATA_SPLIT_VALID), 5000);
    cr_expect_str_eq(kiln_vision_data_class(v, 1), "Sneaker");
    cr_expect_str_eq(kiln_vision_data_class(v, 4), "Shirt");
    kiln_data_free(d);
    const char *bad[] = {"Boot"};
    p.classes = bad, p.n_classes = 1;
    expect_fail_naming(kiln_vision_open("fashion-mnist", &p), "'Boot'", "unknown Fashion-MNIST class");
    cr_expect(strstr(kiln_last_error(), "'T-shirt/top', 'Trouser'"), "%s", kiln_last_error());
}
