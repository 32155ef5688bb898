/* Progress display (include/kiln/report.h, progress section): fastprogress's console bar
 * and epoch table. On a TTY the bar is redrawn in place at most ten times a second; on a
 * pipe or file a plain line is printed at most every few seconds, so logs stay short and
 * carry no control characters. */
#include "core/internal.h"
#include "kiln/report.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_CELLS 40
#define MAX_COLS 72
#define TTY_REDRAW_S 0.1
#define LINES_EVERY_S 5.0

struct kiln_progress {
    FILE *out;
    kiln_progress_style style;
    char label[64];
    int64_t total;
    double t0, last_draw;
    size_t last_len;     /* visible length of the bar line on screen (TTY) */
    bool active;
    int n_cols;
    int width[MAX_COLS]; /* table column widths: max(8, len(name)) */
};

kiln_progress *kiln_progress_new(FILE *out, kiln_progress_style style)
{
    kiln_progress *p = calloc(1, sizeof *p);
    if (!p) return kiln__errp(KILN_STATUS_NOMEM, "progress: out of memory");
    p->out = out ? out : stdout;
    if (style == KILN_PROGRESS_STYLE_AUTO) style = isatty(fileno(p->out)) ? KILN_PROGRESS_STYLE_BAR : KILN_PROGRESS_STYLE_LINES;
    p->style = style;
    return p;
}

void kiln_progress_free(kiln_progress *p) { free(p); }

kiln_progress_style kiln_progress_get_style(const kiln_progress *p)
{
    return p ? p->style : KILN_PROGRESS_STYLE_QUIET;
}

char *kiln_format_time(double seconds, char *buf, size_t n)
{
    if (!(seconds >= 0) || !isfinite(seconds)) seconds = 0;
    long t = (long)seconds, h = t / 3600, m = (t / 60) % 60, s = t % 60;
    if (h) snprintf(buf, n, "%ld:%02ld:%02ld", h, m, s);
    else snprintf(buf, n, "%02ld:%02ld", m, s);
    return buf;
}

/* "label " + bar (when width > 0) + " done/total [elapsed<remaining value]" + "  comment" */
char *kiln_progress_format(char *buf, size_t n, const char *label, int64_t done, int64_t total,
                           double elapsed, double value, const char *comment, int width)
{
    size_t o = 0;
#define PUT(...) do { if (o < n) { int k_ = snprintf(buf + o, n - o, __VA_ARGS__); if (k_ > 0) o += (size_t)k_; } } while (0)
    if (n) buf[0] = '\0';
    if (label && label[0]) PUT("%s ", label);
    if (width > 0) {
        int filled = total > 0 ? (int)((double)width * (double)(done < total ? done : total) / (double)total) : 0;
        for (int i = 0; i < width; i++) PUT("%s", i < filled ? "\u2588" : "\u2591");
        PUT(" ");
    }
    char te[32], tr[32];
    kiln_format_time(elapsed, te, sizeof te);
    if (done > 0 && total > 0) kiln_format_time(elapsed / (double)done * (double)(total - done), tr, sizeof tr);
    else snprintf(tr, sizeof tr, "?");
    PUT("%lld/%lld [%s<%s", (long long)done, (long long)total, te, tr);
    if (!isnan(value)) PUT(" %.3f", value);
    PUT("]");
    if (comment && comment[0]) PUT("  %s", comment);
#undef PUT
    return buf;
}

/* Clears the bar line on a TTY so the next text starts at column 0 of a clean line. */
static void clear_line(kiln_progress *p)
{
    if (p->style != KILN_PROGRESS_STYLE_BAR || !p->last_len) return;
    fprintf(p->out, "\r%*s\r", (int)p->last_len, "");
    p->last_len = 0;
    fflush(p->out);
}

void kiln_progress_begin(kiln_progress *p, const char *label, int64_t total)
{
    if (!p) return;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->t0 = p->last_draw = kiln__now();
    p->active = true;
    if (p->style == KILN_PROGRESS_STYLE_BAR) kiln_progress_update(p, 0, NAN, NULL);
}

/* Visible characters (UTF-8 continuation bytes do not count). */
static size_t visible_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

void kiln_progress_update(kiln_progress *p, int64_t done, double value, const char *comment)
{
    if (!p || !p->active || p->style == KILN_PROGRESS_STYLE_QUIET) return;
    double t = kiln__now();
    char line[1024];
    if (p->style == KILN_PROGRESS_STYLE_BAR) {
        if (done > 0 && done < p->total && t - p->last_draw < TTY_REDRAW_S) return;
        kiln_progress_format(line, sizeof line, p->label, done, p->total, t - p->t0, value, comment, BAR_CELLS);
        size_t len = visible_len(line);
        fprintf(p->out, "\r%s", line);
        if (len < p->last_len) fprintf(p->out, "%*s", (int)(p->last_len - len), "");
        p->last_len = len > p->last_len ? len : p->last_len;
        fflush(p->out);
    } else {
        if (t - p->last_draw < LINES_EVERY_S) return;
        kiln_progress_format(line, sizeof line, p->label, done, p->total, t - p->t0, value, comment, 0);
        fprintf(p->out, "%s\n", line);
        fflush(p->out);
    }
    p->last_draw = t;
}

void kiln_progress_end(kiln_progress *p)
{
    if (!p || !p->active) return;
    clear_line(p);
    p->active = false;
}

static void print_cells(kiln_progress *p, int n, const char *const *cells, bool header)
{
    char line[4096];
    size_t o = 0;
    for (int i = 0; i < n && i < MAX_COLS; i++) {
        const char *c = cells[i] ? cells[i] : "";
        int w = (int)strlen(c);
        if (header) {
            p->width[i] = w < 8 ? 8 : w;
            p->n_cols = i + 1;
        }
        int col = i < p->n_cols ? p->width[i] : w;
        int k = snprintf(line + o, sizeof line - o, "%s%-*s", i ? "  " : "", col, c);
        if (k < 0) break;
        o += (size_t)k;
        if (o >= sizeof line) {
            o = sizeof line - 1;
            break;
        }
    }
    while (o > 0 && line[o - 1] == ' ') o--; /* no trailing blanks */
    line[o] = '\0';
    clear_line(p);
    fprintf(p->out, "%s\n", line);
    fflush(p->out);
}

void kiln_progress_table_header(kiln_progress *p, int n, const char *const *names)
{
    if (!p || p->style == KILN_PROGRESS_STYLE_QUIET || n < 1 || !names) return;
    print_cells(p, n, names, true);
}

void kiln_progress_table_row(kiln_progress *p, int n, const char *const *cells)
{
    if (!p || p->style == KILN_PROGRESS_STYLE_QUIET || n < 1 || !cells) return;
    print_cells(p, n, cells, false);
}

void kiln_progress_message(kiln_progress *p, const char *msg)
{
    if (!p || p->style == KILN_PROGRESS_STYLE_QUIET || !msg) return;
    clear_line(p);
    fprintf(p->out, "%s\n", msg);
    fflush(p->out);
}
