/* kiln report: what training shows to people. Line plots (schedules, lr_find, losses) and
 * confusion-matrix heat maps written as PNG through PLplot's pngcairo device.
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

/* A confusion matrix as a heat map with the count in every cell (src/report/heatmap.c):
 * m (n, n) row-major, rows actual and columns predicted, classes (n,) names; title may be
 * NULL. White to dark blue, like sklearn/fastai plot_confusion_matrix. */
kiln_status kiln_plot_heatmap(const char *path, const int64_t *m, int n, const char *const *classes,
                              const char *title);

/* ==== progress (src/report/progress.c; added by the Learner issue) ======================== *
 * fastprogress in a terminal: a live bar while a loop runs,
 *   "██████████████░░░░░░ 97/100 [00:03<00:00 0.412]"
 * redrawn in place with "\r" when the stream is a TTY, and plain lines ("label 50/100
 * [00:01<00:01 0.412]", at most every few seconds plus the end) when it is not; and the
 * epoch table as fastprogress prints it: names padded to 8 and joined by two spaces,
 * "epoch     train_loss  valid_loss  accuracy  time", values padded to their column.
 * Quiet prints nothing. A kiln_progress writes to a borrowed FILE and owns nothing else. */
typedef enum kiln_progress_style {
    KILN_PROGRESS_STYLE_AUTO = 0, /* bar on a TTY, lines otherwise */
    KILN_PROGRESS_STYLE_BAR,
    KILN_PROGRESS_STYLE_LINES,
    KILN_PROGRESS_STYLE_QUIET,
} kiln_progress_style;

typedef struct kiln_progress kiln_progress;

/* out NULL = stdout. NULL + message when out of memory. */
kiln_progress *kiln_progress_new(FILE *out, kiln_progress_style style);
void kiln_progress_free(kiln_progress *p);
/* The style after resolving AUTO (never AUTO). */
kiln_progress_style kiln_progress_get_style(const kiln_progress *p);
/* Starts a bar of total steps; label may be NULL. */
void kiln_progress_begin(kiln_progress *p, const char *label, int64_t total);
/* done steps so far; value is shown after the times (NAN = none); comment may be NULL. */
void kiln_progress_update(kiln_progress *p, int64_t done, double value, const char *comment);
/* Ends the bar: on a TTY the line is cleared so a table row can take its place. */
void kiln_progress_end(kiln_progress *p);
/* Table: header once, then rows of n cells (strings) padded to the header's columns. */
void kiln_progress_table_header(kiln_progress *p, int n, const char *const *names);
void kiln_progress_table_row(kiln_progress *p, int n, const char *const *cells);
/* Prints one line (a message between bars). */
void kiln_progress_message(kiln_progress *p, const char *msg);
/* "mm:ss" (or "h:mm:ss" from one hour) for a number of seconds; returns buf. */
char *kiln_format_time(double seconds, char *buf, size_t n);
/* The bar line for these values without the leading "\r" (what a TTY shows); width is the
 * number of bar cells. For tests and custom displays. Returns buf. */
char *kiln_progress_format(char *buf, size_t n, const char *label, int64_t done, int64_t total,
                           double elapsed, double value, const char *comment, int width);

#ifdef __cplusplus
}
#endif
#endif
