/* kiln_plot_heatmap: a confusion matrix as a PNG heat map with the count in every cell
 * (sklearn/fastai plot_confusion_matrix look: white to dark blue, actual classes down the
 * left, predicted across the top), drawn with PLplot's pngcairo device in page pixels
 * (declared in include/kiln/report.h; `kiln vision interpret` draws it).
 *
 * The PLplot session (report/plsession.c) holds the lock, turns a fatal PLplot error into a
 * status and writes the file atomically. No driver options are set (the session's default
 * anti-aliasing): cells overlap the next one by a pixel instead, so no seams show. */
#include "core/internal.h"
#include "kiln/report.h"
#include "report/plsession.h"

#include <stdio.h>
#include <string.h>

static kiln_status check_args(const char *path, const int64_t *m, int n, const char *const *classes)
{
    if (!path || !path[0])
        return kiln__err(KILN_STATUS_INVALID, "heatmap: no output path");
    if (!m || !classes || n < 1)
        return kiln__err(KILN_STATUS_INVALID, "heatmap: %s: need a matrix and class names for 1 or more classes "
                         "(got %d)", path, n);
    for (int k = 0; k < n; k++)
        if (!classes[k])
            return kiln__err(KILN_STATUS_INVALID, "heatmap: %s: class %d has no name", path, k);
    return KILN_STATUS_OK;
}

#ifdef KILN_HAVE_PLPLOT

#include <plplot.h>

enum { COL_FG = KILN__PLOT_FG, COL_CELL = 14, COL_WHITE = 15, TEXT_PX = 13, PAD = 16 };

typedef struct layout {
    int n, cell, left, top, page_w, page_h;
    int64_t max;
    const int64_t *m;
    const char *const *classes;
    const char *title;
} layout;

/* x in page pixels from the left, y from the top -> world (y up). */
static double wy(const layout *L, double y) { return L->page_h - y; }

static void setup_heatmap(void *user)
{
    (void)user;
    plscol0(COL_WHITE, 255, 255, 255);
}

static kiln_status draw_heatmap(void *user)
{
    const layout *L = user;
    kiln__plot_pixel_page(L->page_w, L->page_h, TEXT_PX);
    double half = TEXT_PX * 0.35; /* plptex puts the baseline near the reference point */
    for (int a = 0; a < L->n; a++)
        for (int p = 0; p < L->n; p++) {
            int64_t v = L->m[a * L->n + p];
            double t = L->max > 0 ? (double)v / (double)L->max : 0;
            int r = (int)(247 + (8 - 247) * t), g = (int)(251 + (48 - 251) * t), b = (int)(255 + (107 - 255) * t);
            double x0 = L->left + p * L->cell, y0 = L->top + a * L->cell;
            /* one pixel over the next cell, which is drawn later: no anti-aliased seams */
            double x1 = x0 + L->cell + (p + 1 < L->n), y1 = y0 + L->cell + (a + 1 < L->n);
            PLFLT xs[4] = {x0, x1, x1, x0};
            PLFLT ys[4] = {wy(L, y0), wy(L, y0), wy(L, y1), wy(L, y1)};
            plscol0(COL_CELL, r, g, b);
            plcol0(COL_CELL);
            plfill(4, xs, ys);
            char txt[32];
            snprintf(txt, sizeof txt, "%lld", (long long)v);
            plcol0(t > 0.5 ? COL_WHITE : COL_FG);
            plptex(x0 + L->cell / 2.0, wy(L, y0 + L->cell / 2.0 + half), 1, 0, 0.5, txt);
        }
    plcol0(COL_FG);
    for (int k = 0; k < L->n; k++) {
        double c = k * L->cell + L->cell / 2.0;
        plptex(L->left - 8, wy(L, L->top + c + half), 1, 0, 1.0, L->classes[k]); /* rows: actual */
        plptex(L->left + c + half, wy(L, L->top - 8), 0, 1, 0.0, L->classes[k]); /* columns: predicted */
    }
    int grid_h = L->n * L->cell;
    plptex(L->left + L->n * L->cell / 2.0, wy(L, L->top + grid_h + 2.2 * TEXT_PX), 1, 0, 0.5, "predicted");
    plptex(PAD + TEXT_PX, wy(L, L->top + grid_h / 2.0), 0, 1, 0.5, "actual");
    plptex(L->page_w / 2.0, wy(L, PAD + TEXT_PX), 1, 0, 0.5, L->title);
    return KILN_STATUS_OK;
}

kiln_status kiln_plot_heatmap(const char *path, const int64_t *m, int n, const char *const *classes,
                              const char *title)
{
    kiln_status st = check_args(path, m, n, classes);
    if (st)
        return st;
    if (!title)
        title = "";
    layout L = {.n = n, .m = m, .classes = classes, .title = title};
    L.cell = n <= 4 ? 90 : n <= 10 ? 64 : n <= 30 ? 36 : 24;
    size_t longest = 0;
    for (int k = 0; k < n; k++)
        longest = strlen(classes[k]) > longest ? strlen(classes[k]) : longest;
    if (longest > 40)
        longest = 40;
    int label_px = (int)(longest * TEXT_PX * 0.62) + 12;
    L.left = PAD + 2 * TEXT_PX + label_px;
    L.top = PAD + 3 * TEXT_PX + label_px;
    L.page_w = L.left + n * L.cell + PAD + 2 * TEXT_PX;
    int title_w = (int)(strlen(title) * TEXT_PX * 0.62) + 2 * PAD;
    if (L.page_w < title_w)
        L.page_w = title_w;
    L.page_h = L.top + n * L.cell + 4 * TEXT_PX + PAD;
    if (L.page_w > 20000 || L.page_h > 20000)
        return kiln__err(KILN_STATUS_INVALID, "heatmap: %s: %d classes are too many to draw", path, n);
    for (int k = 0; k < n * n; k++)
        L.max = m[k] > L.max ? m[k] : L.max;
    kiln__plot_page page = {.what = "heatmap", .width = L.page_w, .height = L.page_h, .setup = setup_heatmap,
                            .draw = draw_heatmap, .user = &L};
    return kiln__plot_session(path, &page);
}

#else /* !KILN_HAVE_PLPLOT */

kiln_status kiln_plot_heatmap(const char *path, const int64_t *m, int n, const char *const *classes,
                              const char *title)
{
    kiln_status st = check_args(path, m, n, classes);
    if (st)
        return st;
    (void)title;
    return kiln__plot_no_plplot("heatmap", path);
}

#endif
