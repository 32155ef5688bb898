/* PLplot sessions (internal): the one place that opens, guards and closes PLplot for the
 * PNG writers in src/report/ (plot.c line plots, grid.c image grids, heatmap.c confusion
 * matrices).
 *
 * PLplot is global state and calls exit() on fatal errors. kiln__plot_session takes the
 * single lock every PLplot call in kiln runs under, installs exit/abort handlers (a fatal
 * error longjmps back and becomes a KILN_STATUS_BACKEND error naming the path), opens the
 * pngcairo device on the temp file of kiln_atomic_begin, runs the caller's callbacks, closes
 * the stream, checks the file is a whole PNG (IEND at its end, a full decode) and commits it
 * (fsync, rename over path); a failure leaves the previous file at path as it was. Built without PLplot
 * (KILN_HAVE_PLPLOT undefined) the session returns KILN_STATUS_UNSUPPORTED. */
#ifndef KILN_REPORT_PLSESSION_H
#define KILN_REPORT_PLSESSION_H

#include "kiln/core.h"

/* Colour map 0 entries the session sets before plinit: white background, black ink. */
enum { KILN__PLOT_BG = 0, KILN__PLOT_FG = 1 };

typedef struct kiln__plot_page {
    const char *what;        /* names the caller in messages: "plot", "image_grid", "heatmap" */
    int width, height;       /* device pixels, 1..20000 */
    bool crisp;              /* graphics anti-aliasing off (text keeps it): no seams between fills */
    /* before plinit, after the device, page size and BG/FG colours are set: more colours,
     * subpages. May be NULL. */
    void (*setup)(void *user);
    /* on the open stream; a status other than OK fails the session with it */
    kiln_status (*draw)(void *user);
    void *user;
} kiln__plot_page;

/* Writes page to path atomically (see the top comment); path must be non-empty. */
kiln_status kiln__plot_session(const char *path, const kiln__plot_page *page);

/* The UNSUPPORTED error of a build without PLplot, "<what>: <path>: kiln was built without
 * PLplot (...)". */
kiln_status kiln__plot_no_plplot(const char *what, const char *path);

/* Inside draw: world coordinates in page pixels (x from the left, y up from the bottom)
 * over the whole page, and text text_px device pixels high. */
void kiln__plot_pixel_page(int width, int height, double text_px);

#endif
