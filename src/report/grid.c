/* show_batch: a grid of images with their labels, as a PNG drawn by PLplot's pngcairo device
 * (declared in include/kiln/augment.h next to the transforms it shows).
 *
 * PLplot has no RGB image call (plimage maps values through a colour map), so each image
 * is drawn as filled rectangles, one per displayed pixel, merging runs of equal colour;
 * graphics anti-aliasing is off so neighbouring rectangles leave no seams, while the labels
 * keep anti-aliased text. Big images are box-averaged by an integer factor to at most
 * MAX_SIDE displayed pixels a side, small ones drawn with s x s squares to about TARGET.
 *
 * The PLplot session (report/plsession.c) serialises this with every other PLplot call in
 * kiln under one lock, turns a fatal PLplot error into a status and writes the file
 * atomically; this file lays out the page. */
#include "core/internal.h"
#include "kiln/augment.h"
#include "kiln/report.h"
#include "report/plsession.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum {
    MAX_SIDE = 192,  /* displayed pixels per side, at most */
    TARGET = 176,    /* small images are scaled up to about this many device pixels */
    PAD = 10,        /* between cells, device pixels */
    LABEL_H = 24,    /* label strip above each image */
    TEXT_PX = 11,    /* label text height, device pixels */
    LINE_H = 15,     /* each further label line ('\n' in a label) adds this much */
    MAX_LINES = 4,
    MAX_IMAGES = 1024,
};

static kiln_status check_args(const char *path, const float *images, int b, int c, int h, int w, int ncol,
                              const float *mean, const float *std)
{
    if (!path || !path[0])
        return kiln__err(KILN_STATUS_INVALID, "image_grid: no output path");
    if (!images)
        return kiln__err(KILN_STATUS_INVALID, "image_grid: %s: images is NULL", path);
    if (b < 1 || b > MAX_IMAGES)
        return kiln__err(KILN_STATUS_INVALID, "image_grid: %s: %d images (need 1..%d)", path, b, MAX_IMAGES);
    if (c != 1 && c != 3)
        return kiln__err(KILN_STATUS_INVALID, "image_grid: %s: %d channels (need 1 or 3)", path, c);
    if (h < 1 || w < 1 || h > 16384 || w > 16384)
        return kiln__err(KILN_STATUS_INVALID, "image_grid: %s: image size %dx%d (need 1..16384)", path, h, w);
    if (ncol < 0)
        return kiln__err(KILN_STATUS_INVALID, "image_grid: %s: ncol %d is negative", path, ncol);
    if ((mean == NULL) != (std == NULL))
        return kiln__err(KILN_STATUS_INVALID, "image_grid: %s: give both mean and std, or neither", path);
    for (int k = 0; std && k < c; k++)
        if (!(std[k] > 0) || !isfinite(mean[k]))
            return kiln__err(KILN_STATUS_INVALID, "image_grid: %s: channel %d has mean %g, std %g", path, k,
                             (double)mean[k], (double)std[k]);
    return KILN_STATUS_OK;
}

/* Pixel (y, x) of one image, box-averaged over f x f, denormalised, as 8-bit RGB. */
static void pixel_rgb(const float *img, int c, int h, int w, int f, int y, int x, const float *mean,
                      const float *std, unsigned char rgb[3])
{
    int y1 = (y + 1) * f < h ? (y + 1) * f : h, x1 = (x + 1) * f < w ? (x + 1) * f : w;
    for (int k = 0; k < 3; k++) {
        int ch = c == 1 ? 0 : k;
        const float *p = img + (size_t)ch * h * w;
        double s = 0;
        for (int yy = y * f; yy < y1; yy++)
            for (int xx = x * f; xx < x1; xx++) {
                double v = p[(size_t)yy * w + xx];
                v = std ? v * std[ch] + mean[ch] : v;
                s += isfinite(v) ? (v < 0 ? 0 : (v > 1 ? 1 : v)) : 0;
            }
        rgb[k] = (unsigned char)(s / ((y1 - y * f) * (x1 - x * f)) * 255.0 + 0.5);
    }
}

/* A label fit for plptex: '#' doubled (PLplot's escape), cut to max_chars (>= 4) with "...". */
static void label_text(const char *in, int max_chars, char *out, size_t n)
{
    int total = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++)
        total += (*p & 0xC0) != 0x80; /* UTF-8 lead bytes: one per character */
    int keep = total <= max_chars ? total : max_chars - 3, chars = 0;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 8 < n; p++) {
        if ((*p & 0xC0) != 0x80 && chars++ == keep)
            break;
        if (*p == '#')
            out[o++] = '#';
        out[o++] = (char)*p;
    }
    if (keep < total)
        memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
}

#ifdef KILN_HAVE_PLPLOT

#include <plplot.h>

enum { COL_FG = KILN__PLOT_FG, COL_PIX = 15 };

typedef struct layout {
    int b, c, h, w, f, dh, dw, s, ncol, nrow, label_h, page_w, page_h;
} layout;

static void draw_image(const layout *L, const float *img, int x0, int y0, const float *mean, const float *std)
{
    PLFLT xs[4], ys[4];
    for (int y = 0; y < L->dh; y++) {
        int x = 0;
        unsigned char cur[3];
        pixel_rgb(img, L->c, L->h, L->w, L->f, y, 0, mean, std, cur);
        while (x < L->dw) {
            int end = x + 1;
            unsigned char nxt[3];
            while (end < L->dw) {
                pixel_rgb(img, L->c, L->h, L->w, L->f, y, end, mean, std, nxt);
                if (memcmp(nxt, cur, 3))
                    break;
                end++;
            }
            /* world y grows upwards: flip the page's top-down rows */
            double top = L->page_h - (y0 + y * L->s), bot = top - L->s;
            xs[0] = xs[3] = x0 + x * L->s, xs[1] = xs[2] = x0 + end * L->s;
            ys[0] = ys[1] = top, ys[2] = ys[3] = bot;
            plscol0(COL_PIX, cur[0], cur[1], cur[2]);
            plcol0(COL_PIX);
            plfill(4, xs, ys);
            if (end < L->dw)
                memcpy(cur, nxt, 3);
            x = end;
        }
    }
}

typedef struct grid_job {
    const layout *L;
    const float *images, *mean, *std;
    const char *const *labels;
} grid_job;

static kiln_status draw_grid(void *user)
{
    const grid_job *j = user;
    const layout *L = j->L;
    kiln__plot_pixel_page(L->page_w, L->page_h, TEXT_PX);
    size_t per = (size_t)L->c * L->h * L->w;
    int cell_w = L->dw * L->s, cell_h = L->dh * L->s;
    for (int i = 0; i < L->b; i++) {
        int col = i % L->ncol, row = i / L->ncol;
        int x0 = PAD + col * (cell_w + PAD), y0 = PAD + row * (L->label_h + cell_h + PAD);
        draw_image(L, j->images + i * per, x0, y0 + L->label_h, j->mean, j->std);
        if (j->labels && j->labels[i] && j->labels[i][0]) {
            char line[512], text[600];
            int max_chars = (int)((cell_w + PAD / 2) / (0.75 * TEXT_PX)); /* ~ DejaVu Sans widths */
            const char *p = j->labels[i];
            plcol0(COL_FG);
            for (int k = 0; k < MAX_LINES && *p; k++) { /* one line per '\n'-separated part */
                size_t len = strcspn(p, "\n");
                snprintf(line, sizeof line, "%.*s", (int)len, p);
                label_text(line, max_chars < 4 ? 4 : max_chars, text, sizeof text);
                double base = y0 + LABEL_H * 0.7 + k * LINE_H; /* from the page top */
                plptex(x0 + cell_w / 2.0, L->page_h - base, 1, 0, 0.5, text);
                p += len + (p[len] == '\n');
            }
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_image_grid_png(const char *path, const float *images, int b, int c, int h, int w,
                                const char *const *labels, int ncol, const float *mean, const float *std)
{
    kiln_status st = check_args(path, images, b, c, h, w, ncol, mean, std);
    if (st)
        return st;
    layout L = {.b = b, .c = c, .h = h, .w = w};
    int big = h > w ? h : w;
    L.f = big > MAX_SIDE ? (big + MAX_SIDE - 1) / MAX_SIDE : 1;
    L.dh = (h + L.f - 1) / L.f, L.dw = (w + L.f - 1) / L.f;
    int dbig = L.dh > L.dw ? L.dh : L.dw;
    L.s = dbig < TARGET ? TARGET / dbig : 1;
    L.ncol = ncol > 0 ? (ncol < b ? ncol : b) : (int)ceil(sqrt((double)b));
    L.nrow = (b + L.ncol - 1) / L.ncol;
    int lines = 0; /* the most lines of any label */
    for (int i = 0; labels && i < b; i++) {
        if (!labels[i] || !labels[i][0])
            continue;
        int n = 1;
        for (const char *p = labels[i]; *p; p++)
            n += *p == '\n' && p[1];
        lines = n > lines ? n : lines;
    }
    lines = lines > MAX_LINES ? MAX_LINES : lines;
    L.label_h = lines ? LABEL_H + (lines - 1) * LINE_H : 0;
    L.page_w = PAD + L.ncol * (L.dw * L.s + PAD);
    L.page_h = PAD + L.nrow * (L.label_h + L.dh * L.s + PAD);
    if (L.page_w > 20000 || L.page_h > 20000)
        return kiln__err(KILN_STATUS_INVALID, "image_grid: %s: a %dx%d page is too large (fewer images or "
                         "more columns)", path, L.page_h, L.page_w);

    grid_job j = {.L = &L, .images = images, .mean = mean, .std = std, .labels = labels};
    kiln__plot_page page = {.what = "image_grid", .width = L.page_w, .height = L.page_h, .crisp = true,
                            .draw = draw_grid, .user = &j};
    return kiln__plot_session(path, &page);
}

#else /* !KILN_HAVE_PLPLOT */

kiln_status kiln_image_grid_png(const char *path, const float *images, int b, int c, int h, int w,
                                const char *const *labels, int ncol, const float *mean, const float *std)
{
    kiln_status st = check_args(path, images, b, c, h, w, ncol, mean, std);
    if (st)
        return st;
    (void)labels, (void)label_text, (void)pixel_rgb;
    return kiln__plot_no_plplot("image_grid", path);
}

#endif
