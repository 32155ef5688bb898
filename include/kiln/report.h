/* kiln report: what training shows to people. For now: line plots written as PNG through
 * PLplot's pngcairo device (schedules, lr_find, losses).
 *
 * Plots are written atomically: to "<path>.tmp.<pid>", then renamed over path, so a reader
 * never sees half a file. PLplot keeps global state, so calls are serialised by a lock;
 * a PLplot failure becomes an error status, never an exit. Built without PLplot
 * (KILN_HAVE_PLPLOT undefined), every call returns KILN_STATUS_UNSUPPORTED. */
#ifndef KILN_REPORT_H
#define KILN_REPORT_H

#include "kiln/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_plot_style {
    KILN_PLOT_STYLE_LINE = 0, /* a polyline; broken where a value is NaN/inf (or <= 0 on log axes) */
    KILN_PLOT_STYLE_POINTS,   /* filled markers, e.g. lr_find suggestions */
} kiln_plot_style;

typedef struct kiln_plot_series {
    const char *label;     /* legend text; NULL or "" = not in the legend */
    const double *x;       /* (n,); NULL = 0, 1, ..., n-1 */
    const double *y;       /* (n,) */
    int64_t n;
    kiln_plot_style style;
} kiln_plot_series;

typedef struct kiln_plot_panel {
    const char *title, *xlabel, *ylabel; /* may be NULL */
    bool log_x, log_y;                   /* log10 axes; points <= 0 are skipped */
    const kiln_plot_series *series;      /* (n_series,), borrowed for the call */
    int n_series;
} kiln_plot_panel;

/* True when this build can write PNG plots (PLplot with its pngcairo device). */
bool kiln_plot_available(void);

/* Writes n_panels panels stacked top to bottom into one PNG of width x height pixels
 * (0 = 900 wide, 380 per panel). Series colours follow matplotlib's default cycle. */
kiln_status kiln_plot_panels(const char *path, const kiln_plot_panel *panels, int n_panels, int width,
                             int height);

/* One panel: kiln_plot_panels with the fields spelled out. */
kiln_status kiln_plot_lines(const char *path, const char *title, const char *xlabel, const char *ylabel,
                            bool log_x, bool log_y, const kiln_plot_series *series, int n_series);

#ifdef __cplusplus
}
#endif
#endif
