/* PNG line plots through PLplot's pngcairo device (see include/kiln/report.h).
 *
 * The PLplot session (the one lock, the exit handler that turns a fatal error into a
 * status, the temp file and its rename) is report/plsession.c; this file lays out panels.
 * Data are checked before PLplot sees them (finite values, ranges), which leaves PLplot
 * little to fail on besides the device and the file. */
#include "core/internal.h"
#include "kiln/report.h"
#include "report/plsession.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifdef KILN_HAVE_PLPLOT

#include <plplot.h>

/* matplotlib's tab10 */
static const unsigned char g_colors[][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189},
    {140, 86, 75}, {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
};
#define N_COLORS ((int)(sizeof g_colors / sizeof g_colors[0]))
enum { COL_BG = KILN__PLOT_BG, COL_FG = KILN__PLOT_FG, COL_GRID = 2, COL_SERIES = 3 };

/* Value as drawn on an axis: log10 on log axes; NAN when it cannot be drawn. */
static double axis_val(double v, bool log_axis)
{
    if (!isfinite(v))
        return NAN;
    if (log_axis)
        return v > 0 ? log10(v) : NAN;
    return v;
}

static double sx(const kiln_plot_series *s, int64_t i, bool log_x)
{
    return axis_val(s->x ? s->x[i] : (double)i, log_x);
}

/* Data range of a panel on one axis; false when nothing can be drawn. */
static bool panel_range(const kiln_plot_panel *p, bool y_axis, double *lo, double *hi)
{
    double a = INFINITY, b = -INFINITY;
    for (int k = 0; k < p->n_series; k++) {
        const kiln_plot_series *s = &p->series[k];
        for (int64_t i = 0; i < s->n; i++) {
            double x = sx(s, i, p->log_x), y = axis_val(s->y[i], p->log_y);
            if (isnan(x) || isnan(y))
                continue;
            double v = y_axis ? y : x;
            a = v < a ? v : a;
            b = v > b ? v : b;
        }
    }
    if (!(a <= b))
        return false;
    double span = b - a;
    if (span <= 1e-12 * fmax(fabs(a), fabs(b)) || span == 0) {
        double pad = a != 0 ? fabs(a) * 0.05 : 1.0;
        a -= pad;
        b += pad;
    } else if (y_axis || !p->log_x) {
        /* a little air around lines, like matplotlib's margins; none at integer x ends */
        double pad = span * (y_axis ? 0.05 : 0.0);
        a -= pad;
        b += pad;
    }
    *lo = a;
    *hi = b;
    return true;
}

enum { RUN_CAP = 1 << 20 }; /* points handed to PLplot per call */

static void flush_run(const kiln_plot_series *s, PLFLT *bx, PLFLT *by, int64_t run)
{
    if (run <= 0)
        return;
    if (s->style == KILN_PLOT_STYLE_POINTS || run == 1) {
        plssym(0, s->style == KILN_PLOT_STYLE_POINTS ? 1.3 : 0.5);
        plstring((PLINT)run, bx, by, "\u25CF"); /* BLACK CIRCLE, drawn as text by cairo */
    } else {
        plline((PLINT)run, bx, by);
    }
}

/* Draws s in runs of drawable points; a line is broken where a point cannot be drawn. */
static void draw_series(const kiln_plot_panel *p, const kiln_plot_series *s, int color, PLFLT *bx, PLFLT *by,
                        int64_t cap)
{
    plcol0(color);
    int64_t run = 0;
    for (int64_t i = 0; i < s->n; i++) {
        double x = sx(s, i, p->log_x), y = axis_val(s->y[i], p->log_y);
        if (isnan(x) || isnan(y)) {
            flush_run(s, bx, by, run);
            run = 0;
            continue;
        }
        if (run == cap) {
            flush_run(s, bx, by, run);
            /* a line split for size stays connected through its last point */
            bool line = s->style == KILN_PLOT_STYLE_LINE;
            if (line) {
                bx[0] = bx[run - 1];
                by[0] = by[run - 1];
            }
            run = line ? 1 : 0;
        }
        bx[run] = x;
        by[run] = y;
        run++;
    }
    flush_run(s, bx, by, run);
}

static void draw_panel(const kiln_plot_panel *p, PLFLT *bx, PLFLT *by, int64_t cap)
{
    double x0, x1, y0, y1;
    pladv(0);
    plvpor(0.10, 0.96, 0.14, 0.88);
    if (!panel_range(p, false, &x0, &x1) || !panel_range(p, true, &y0, &y1)) {
        x0 = y0 = 0;
        x1 = y1 = 1;
    }
    plwind(x0, x1, y0, y1);
    /* plain labels (0.0025, 150000) before PLplot falls back to a "(x10^-3)" axis factor */
    plsxax(7, 0);
    plsyax(7, 0);
    char xo[16] = "bcnst", yo[16] = "bcnstv";
    if (p->log_x)
        strcat(xo, "l");
    if (p->log_y)
        strcat(yo, "l");
    /* light grid under everything, then the frame, ticks and labels in black */
    plcol0(COL_GRID);
    plwidth(0.5);
    plbox(p->log_x ? "gl" : "g", 0, 0, p->log_y ? "gl" : "g", 0, 0);
    plcol0(COL_FG);
    plwidth(1.0);
    plbox(xo, 0, 0, yo, 0, 0);
    pllab(p->xlabel ? p->xlabel : "", p->ylabel ? p->ylabel : "", p->title ? p->title : "");
    plwidth(2.0);
    int n_leg = 0;
    for (int k = 0; k < p->n_series; k++) {
        draw_series(p, &p->series[k], COL_SERIES + k % N_COLORS, bx, by, cap);
        if (p->series[k].label && p->series[k].label[0])
            n_leg++;
    }
    plwidth(1.0);
    if (n_leg == 0)
        return;
    PLINT opt[64], tcol[64], lcol[64], lsty[64], scol[64], snum[64];
    PLFLT lwid[64], sscale[64];
    const char *text[64], *sym[64];
    int j = 0;
    for (int k = 0; k < p->n_series && j < 64; k++) {
        const kiln_plot_series *s = &p->series[k];
        if (!s->label || !s->label[0])
            continue;
        bool pts = s->style == KILN_PLOT_STYLE_POINTS;
        opt[j] = pts ? PL_LEGEND_SYMBOL : PL_LEGEND_LINE;
        tcol[j] = COL_FG;
        lcol[j] = scol[j] = COL_SERIES + k % N_COLORS;
        lsty[j] = 1;
        lwid[j] = 2.0;
        sscale[j] = 1.2;
        snum[j] = 1;
        sym[j] = "\u25CF";
        text[j] = s->label;
        j++;
    }
    PLFLT lw, lh;
    pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX, PL_POSITION_TOP | PL_POSITION_RIGHT | PL_POSITION_INSIDE,
             0.02, 0.03, 0.06, COL_BG, COL_FG, 1, 0, 0, j, opt, 0.6, 0.9, 2.0, 0.0, tcol, text, NULL, NULL, NULL, NULL,
             lcol, lsty, lwid, scol, sscale, snum, sym);
}

static kiln_status check_panels(const kiln_plot_panel *panels, int n_panels, int64_t *max_n)
{
    if (!panels || n_panels < 1 || n_panels > 16)
        return kiln__err(KILN_STATUS_INVALID, "plot: %d panels (need 1..16)", n_panels);
    *max_n = 1;
    for (int i = 0; i < n_panels; i++) {
        const kiln_plot_panel *p = &panels[i];
        if (p->n_series < 0 || (p->n_series > 0 && !p->series))
            return kiln__err(KILN_STATUS_INVALID, "plot: panel %d has %d series", i, p->n_series);
        for (int k = 0; k < p->n_series; k++) {
            const kiln_plot_series *s = &p->series[k];
            if (s->n < 0 || (s->n > 0 && !s->y))
                return kiln__err(KILN_STATUS_INVALID, "plot: panel %d series %d ('%s') has no data", i, k,
                                 s->label ? s->label : "");
            if (s->n > *max_n)
                *max_n = s->n;
        }
    }
    return KILN_STATUS_OK;
}

typedef struct plot_job {
    const kiln_plot_panel *panels;
    int n_panels;
    PLFLT *bx, *by; /* run buffers of cap points */
    int64_t cap;
} plot_job;

static void setup_plot(void *user)
{
    const plot_job *j = user;
    plscol0(COL_GRID, 220, 220, 220);
    for (int i = 0; i < N_COLORS; i++)
        plscol0(COL_SERIES + i, g_colors[i][0], g_colors[i][1], g_colors[i][2]);
    plssub(1, j->n_panels);
}

static kiln_status draw_plot(void *user)
{
    const plot_job *j = user;
    plschr(0, 0.9);
    for (int i = 0; i < j->n_panels; i++)
        draw_panel(&j->panels[i], j->bx, j->by, j->cap);
    return KILN_STATUS_OK;
}

kiln_status kiln_plot_panels(const char *path, const kiln_plot_panel *panels, int n_panels, int width, int height)
{
    int64_t max_n = 1;
    if (!path || !path[0])
        return kiln__err(KILN_STATUS_INVALID, "plot: no output path");
    kiln_status st = check_panels(panels, n_panels, &max_n);
    if (st != KILN_STATUS_OK)
        return st;
    if (width <= 0)
        width = 900;
    if (height <= 0)
        height = 380 * n_panels;
    if (width > 20000 || height > 20000)
        return kiln__err(KILN_STATUS_INVALID, "plot: %s: size %dx%d too large", path, width, height);

    int64_t cap = max_n < RUN_CAP ? max_n : RUN_CAP;
    PLFLT *bx = malloc((size_t)cap * sizeof *bx), *by = malloc((size_t)cap * sizeof *by);
    if (!bx || !by) {
        free(bx), free(by);
        return kiln__err(KILN_STATUS_NOMEM, "plot: %s: out of memory", path);
    }
    plot_job j = {.panels = panels, .n_panels = n_panels, .bx = bx, .by = by, .cap = cap};
    kiln__plot_page page = {.what = "plot", .width = width, .height = height, .setup = setup_plot,
                            .draw = draw_plot, .user = &j};
    st = kiln__plot_session(path, &page);
    free(bx), free(by);
    return st;
}

#else /* !KILN_HAVE_PLPLOT */

kiln_status kiln_plot_panels(const char *path, const kiln_plot_panel *panels, int n_panels, int width, int height)
{
    (void)panels, (void)n_panels, (void)width, (void)height;
    return kiln__plot_no_plplot("plot", path);
}

#endif

kiln_status kiln_plot_lines(const char *path, const char *title, const char *xlabel, const char *ylabel, bool log_x,
                            bool log_y, const kiln_plot_series *series, int n_series)
{
    kiln_plot_panel p = {.title = title, .xlabel = xlabel, .ylabel = ylabel, .log_x = log_x, .log_y = log_y,
                         .series = series, .n_series = n_series};
    return kiln_plot_panels(path, &p, 1, 0, 0);
}
