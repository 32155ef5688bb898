/* PLplot sessions: one lock, exit/abort handlers, pngcairo on a temp file, atomic rename
 * (see plsession.h). Every PLplot call in kiln happens under g_lock, so a line plot and an
 * image grid drawn from two threads cannot race on PLplot's global state.
 *
 * Driver options ("drvopt") are PLplot globals too: a crisp page sets graphics anti-aliasing
 * off before plinit and puts cairo's default back after the stream is closed, so the next
 * page starts from the default. */
#include "core/internal.h"
#include "kiln/report.h"
#include "report/plsession.h"
#include "data/vision/vision_internal.h"
#include "kiln/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kiln_status kiln__plot_no_plplot(const char *what, const char *path)
{
    return kiln__err(KILN_STATUS_UNSUPPORTED, "%s: %s: kiln was built without PLplot "
                     "(apt-get install libplplot-dev plplot-driver-cairo, then rebuild)", what, path ? path : "");
}

#ifdef KILN_HAVE_PLPLOT

#include <plplot.h>
#include <pthread.h>
#include <setjmp.h>
#include <spng.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static jmp_buf g_jmp;
static char g_plmsg[256];

static int on_plexit(const char *msg)
{
    snprintf(g_plmsg, sizeof g_plmsg, "%s", msg ? msg : "fatal error");
    longjmp(g_jmp, 1);
}

static void on_plabort(const char *msg)
{
    if (!g_plmsg[0])
        snprintf(g_plmsg, sizeof g_plmsg, "%s", msg ? msg : "error");
}

static bool have_pngcairo(void)
{
    enum { MAXDEV = 128 };
    const char *menu[MAXDEV], *names[MAXDEV];
    const char **pm = menu, **pn = names;
    int n = MAXDEV;
    plgDevs(&pm, &pn, &n);
    for (int i = 0; i < n; i++)
        if (pn[i] && !strcmp(pn[i], "pngcairo"))
            return true;
    return false;
}

bool kiln_plot_available(void)
{
    pthread_mutex_lock(&g_lock);
    bool ok = have_pngcairo();
    pthread_mutex_unlock(&g_lock);
    return ok;
}

void kiln__plot_pixel_page(int width, int height, double text_px)
{
    pladv(0);
    plvpor(0, 1, 0, 1);
    plwind(0, width, 0, height);
    /* PLplot sizes text in mm: find the page's pixels per mm, then ask for text_px */
    PLFLT sx0, sx1, sy0, sy1;
    plgspa(&sx0, &sx1, &sy0, &sy1);
    double px_per_mm = sx1 > sx0 ? width / (sx1 - sx0) : 3.5;
    plschr(text_px / px_per_mm, 1.0);
}

/* PLplot and cairo do not report a failed write of the PNG (a full disk leaves a truncated
 * file behind a valid signature), so the temp file is checked as a reader would see it: it
 * must end with the IEND chunk and decode completely (every chunk CRC, the whole zlib
 * stream). */
static kiln_status check_png(const char *what, const char *path, const char *tmp)
{
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    unsigned char *b = NULL;
    size_t n = 0;
    if (kiln__vision_read_file(what, tmp, &b, &n))
        return KILN_STATUS_IO; /* the message names tmp */
    int rc = -1;
    bool whole = n >= 8 + sizeof iend && !memcmp(b + n - sizeof iend, iend, sizeof iend);
    spng_ctx *sc = whole ? spng_ctx_new(0) : NULL;
    size_t bytes = 0;
    unsigned char *px = NULL;
    if (sc && !(rc = spng_set_png_buffer(sc, b, n)) && !(rc = spng_decoded_image_size(sc, SPNG_FMT_RGBA8, &bytes)))
        rc = (px = malloc(bytes)) ? spng_decode_image(sc, px, bytes, SPNG_FMT_RGBA8, 0) : SPNG_EMEM;
    free(px);
    spng_ctx_free(sc);
    free(b);
    if (!whole || rc)
        return kiln__err(KILN_STATUS_IO,
                         "%s: cannot write %s: PLplot left an incomplete PNG in %s (%s; is the disk full?); the "
                         "previous file is kept",
                         what, path, tmp, whole ? spng_strerror(rc) : "no IEND chunk at its end");
    return KILN_STATUS_OK;
}

/* Runs PLplot on the held lock; a fatal PLplot error longjmps back here. The message of
 * any PLplot error is left in g_plmsg; the result is draw's status. */
static kiln_status run_page(const char *tmp, const kiln__plot_page *pg)
{
    volatile bool started = false;
    volatile kiln_status st = KILN_STATUS_OK;
    plsexit(on_plexit);
    plsabort(on_plabort);
    if (setjmp(g_jmp) == 0) {
        plsdev("pngcairo");
        plsfnam(tmp);
        plspage(0, 0, pg->width, pg->height, 0, 0);
        if (pg->crisp)
            plsetopt("drvopt", "graphics_anti_aliasing=1"); /* CAIRO_ANTIALIAS_NONE */
        plscol0(KILN__PLOT_BG, 255, 255, 255);
        plscol0(KILN__PLOT_FG, 0, 0, 0);
        if (pg->setup)
            pg->setup(pg->user);
        plinit();
        started = true;
        st = pg->draw(pg->user);
        plend1();
        started = false;
    } else if (started) {
        /* a fatal error inside PLplot: close the stream if it still lets us */
        if (setjmp(g_jmp) == 0)
            plend1();
    }
    if (pg->crisp)
        plsetopt("drvopt", "graphics_anti_aliasing=0"); /* back to cairo's default */
    plsexit(NULL);
    plsabort(NULL);
    return st;
}

kiln_status kiln__plot_session(const char *path, const kiln__plot_page *pg)
{
    const char *what = pg->what ? pg->what : "plot";
    if (!path || !path[0])
        return kiln__err(KILN_STATUS_INVALID, "%s: no output path", what);
    if (pg->width < 1 || pg->height < 1 || pg->width > 20000 || pg->height > 20000)
        return kiln__err(KILN_STATUS_INVALID, "%s: %s: page %dx%d (need 1..20000 a side)", what, path, pg->width,
                         pg->height);
    /* the temp file is created first: a clear error for a bad folder, before PLplot */
    kiln_atomic *af;
    kiln_status ast = kiln_atomic_begin(path, &af); /* its message names path and the cause */
    if (ast)
        return ast;
    const char *tmp = kiln_atomic_temp_path(af);

    pthread_mutex_lock(&g_lock);
    g_plmsg[0] = '\0';
    if (!have_pngcairo()) {
        pthread_mutex_unlock(&g_lock);
        kiln_atomic_abort(af);
        return kiln__err(KILN_STATUS_UNSUPPORTED,
                         "%s: %s: PLplot has no pngcairo device (apt-get install plplot-driver-cairo)", what, path);
    }
    kiln_status st = run_page(tmp, pg);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", g_plmsg);
    pthread_mutex_unlock(&g_lock);

    if (st == KILN_STATUS_OK && msg[0])
        st = kiln__err(KILN_STATUS_BACKEND, "%s: %s: PLplot: %s", what, path, msg);
    else if (st == KILN_STATUS_OK)
        st = check_png(what, path, tmp);
    if (st != KILN_STATUS_OK) {
        kiln_atomic_abort(af);
        return st;
    }
    return kiln_atomic_commit(af);
}

#else /* !KILN_HAVE_PLPLOT */

bool kiln_plot_available(void) { return false; }

kiln_status kiln__plot_session(const char *path, const kiln__plot_page *pg)
{
    return kiln__plot_no_plplot(pg && pg->what ? pg->what : "plot", path);
}

#endif
