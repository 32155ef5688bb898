/* The confusion matrix as a PNG heat map with the count in every cell (sklearn/fastai
 * plot_confusion_matrix look: white to dark blue, actual classes down the left, predicted
 * across the top), drawn with PLplot's pngcairo device in page pixels. Written to
 * "<path>.tmp.<pid>", checked to be a PNG, fsynced and renamed over path. No driver options
 * are set (PLplot loses pending "drvopt" strings when they are set twice before plinit, and
 * the library's plots expect the default): cells overlap by a pixel instead. A PLplot fatal
 * error longjmps back and becomes a status. The CLI draws from one thread, after the
 * library's own plots (which keep their own lock) have returned. */
#include "vision_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef KILN_HAVE_PLPLOT

#include <plplot.h>
#include <setjmp.h>

static jmp_buf g_jmp;
static char g_msg[256];

static int on_exit_cb(const char *msg)
{
    snprintf(g_msg, sizeof g_msg, "%s", msg ? msg : "fatal error");
    longjmp(g_jmp, 1);
}

static void on_abort_cb(const char *msg)
{
    if (!g_msg[0]) snprintf(g_msg, sizeof g_msg, "%s", msg ? msg : "error");
}

enum { COL_BG = 0, COL_FG = 1, COL_CELL = 14, COL_WHITE = 15, TEXT_PX = 13, PAD = 16 };

typedef struct layout {
    int n, cell, left, top, page_w, page_h;
    int64_t max;
} layout;

/* x in page pixels from the left, y from the top -> world (y up). */
static double wy(const layout *L, double y) { return L->page_h - y; }

static void draw(const char *tmp, const layout *L, const int64_t *m, const char *const *classes, const char *title)
{
    volatile bool started = false;
    plsexit(on_exit_cb);
    plsabort(on_abort_cb);
    if (setjmp(g_jmp) == 0) {
        plsdev("pngcairo");
        plsfnam(tmp);
        plspage(0, 0, L->page_w, L->page_h, 0, 0);
        plscol0(COL_BG, 255, 255, 255);
        plscol0(COL_FG, 0, 0, 0);
        plscol0(COL_WHITE, 255, 255, 255);
        plinit();
        started = true;
        pladv(0);
        plvpor(0, 1, 0, 1);
        plwind(0, L->page_w, 0, L->page_h);
        PLFLT sx0, sx1, sy0, sy1;
        plgspa(&sx0, &sx1, &sy0, &sy1);
        double px_per_mm = sx1 > sx0 ? L->page_w / (sx1 - sx0) : 3.5;
        plschr(TEXT_PX / px_per_mm, 1.0);
        double half = TEXT_PX * 0.35; /* plptex puts the baseline near the reference point */
        for (int a = 0; a < L->n; a++)
            for (int p = 0; p < L->n; p++) {
                int64_t v = m[a * L->n + p];
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
            plptex(L->left - 8, wy(L, L->top + c + half), 1, 0, 1.0, classes[k]);           /* rows: actual */
            plptex(L->left + c + half, wy(L, L->top - 8), 0, 1, 0.0, classes[k]);           /* columns: predicted */
        }
        int grid_h = L->n * L->cell;
        plptex(L->left + L->n * L->cell / 2.0, wy(L, L->top + grid_h + 2.2 * TEXT_PX), 1, 0, 0.5, "predicted");
        plptex(PAD + TEXT_PX, wy(L, L->top + grid_h / 2.0), 0, 1, 0.5, "actual");
        plptex(L->page_w / 2.0, wy(L, PAD + TEXT_PX), 1, 0, 0.5, title);
        plend1();
        started = false;
    } else if (started) {
        if (setjmp(g_jmp) == 0) plend1();
    }
    plsexit(NULL);
    plsabort(NULL);
}

/* The temp file must be a PNG on disk before the rename. */
static int finish(const vopts *o, const char *path, const char *tmp)
{
    static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8] = {0};
    int fd = open(tmp, O_RDWR | O_CLOEXEC);
    if (fd < 0) return vc_fail(o, 1, "%s: PLplot wrote nothing to %s: %s", path, tmp, strerror(errno));
    ssize_t got = read(fd, head, sizeof head);
    bool png = got == (ssize_t)sizeof head && !memcmp(head, magic, sizeof magic);
    int sync_rc = fsync(fd);
    close(fd);
    if (!png) return vc_fail(o, 1, "%s: PLplot did not write a PNG to %s", path, tmp);
    if (sync_rc != 0 || rename(tmp, path) != 0) return vc_fail(o, 1, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

int vc_heatmap_png(const vopts *o, const char *path, const int64_t *m, int n, const char *const *classes,
                   const char *title)
{
    if (!kiln_plot_available())
        return vc_fail(o, 1, "%s: PLplot has no pngcairo device (apt-get install plplot-driver-cairo)", path);
    layout L = {.n = n};
    L.cell = n <= 4 ? 90 : n <= 10 ? 64 : n <= 30 ? 36 : 24;
    size_t longest = 0;
    for (int k = 0; k < n; k++) longest = strlen(classes[k]) > longest ? strlen(classes[k]) : longest;
    if (longest > 40) longest = 40;
    int label_px = (int)(longest * TEXT_PX * 0.62) + 12;
    L.left = PAD + 2 * TEXT_PX + label_px;
    L.top = PAD + 3 * TEXT_PX + label_px;
    L.page_w = L.left + n * L.cell + PAD + 2 * TEXT_PX;
    int title_w = (int)(strlen(title) * TEXT_PX * 0.62) + 2 * PAD;
    if (L.page_w < title_w) L.page_w = title_w;
    L.page_h = L.top + n * L.cell + 4 * TEXT_PX + PAD;
    if (L.page_w > 20000 || L.page_h > 20000) return vc_fail(o, 1, "%s: %d classes are too many to draw", path, n);
    for (int k = 0; k < n * n; k++) L.max = m[k] > L.max ? m[k] : L.max;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return vc_fail(o, 1, "cannot create %s: %s", tmp, strerror(errno));
    close(fd);
    g_msg[0] = '\0';
    draw(tmp, &L, m, classes, title);
    int rc = g_msg[0] ? vc_fail(o, 1, "%s: PLplot: %s", path, g_msg) : finish(o, path, tmp);
    if (rc) unlink(tmp);
    return rc;
}

#else /* !KILN_HAVE_PLPLOT */

int vc_heatmap_png(const vopts *o, const char *path, const int64_t *m, int n, const char *const *classes,
                   const char *title)
{
    (void)m, (void)n, (void)classes, (void)title;
    return vc_fail(o, 1, "%s: this kiln was built without PLplot (apt-get install libplplot-dev "
                   "plplot-driver-cairo, then rebuild)", path);
}

#endif
