/* Status names and the per-thread error (status + message) that every failing kiln call
 * leaves; kiln_error is the public setter for user callbacks, metrics, losses and data. */
#include "core/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room for a message naming two PATH_MAX paths and its cause; longer ones lose their middle
 * (messages start with the op and end with the cause: both are kept). */
static _Thread_local char g_msg[12288];
static _Thread_local kiln_status g_status; /* the status that went with g_msg */

const char *kiln_status_name(kiln_status s)
{
    switch (s) {
    case KILN_STATUS_OK: return "ok";
    case KILN_STATUS_INVALID: return "invalid argument";
    case KILN_STATUS_NOMEM: return "out of memory";
    case KILN_STATUS_IO: return "i/o error";
    case KILN_STATUS_FORMAT: return "malformed file";
    case KILN_STATUS_UNSUPPORTED: return "unsupported";
    case KILN_STATUS_BACKEND: return "backend failure";
    case KILN_STATUS_STATE: return "bad state";
    case KILN_STATUS_DIVERGED: return "training diverged";
    }
    return "unknown status";
}

const char *kiln_last_error(void) { return g_msg; }
kiln_status kiln_last_status(void) { return g_status; }
void kiln_clear_error(void)
{
    g_msg[0] = '\0';
    g_status = KILN_STATUS_OK;
}
bool kiln__has_error(void) { return g_msg[0] != '\0'; }

static void set_msg(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    if (n >= (int)sizeof g_msg) {
        char *full = malloc((size_t)n + 1);
        if (full) {
            vsnprintf(full, (size_t)n + 1, fmt, ap2);
            size_t head = sizeof g_msg / 4, tail = sizeof g_msg - head - 8;
            snprintf(g_msg, sizeof g_msg, "%.*s [...] %s", (int)head, full, full + (size_t)n - tail);
            free(full);
        }
    }
    va_end(ap2);
}

kiln_status kiln__err_prefix(kiln_status s, const char *prefix_in)
{
    if (s != KILN_STATUS_OK) g_status = s;
    char prefix[512]; /* "resume" reads "resume: <message>"; "checkpoint_load: " stays as it is */
    size_t pl = strlen(prefix_in);
    snprintf(prefix, sizeof prefix, "%s%s", prefix_in, pl && prefix_in[pl - 1] != ' ' ? ": " : "");
    size_t p = strlen(prefix), m = strlen(g_msg), cap = sizeof g_msg - 1;
    if (p > cap / 4) p = cap / 4;
    if (p + m > cap) { /* drop the old message's middle: its start (what failed) and end (why) stay */
        size_t keep_head = (cap - p) / 4, mark = 7, keep_tail = cap - p - keep_head - mark;
        memmove(g_msg + keep_head + mark, g_msg + m - keep_tail, keep_tail + 1);
        memcpy(g_msg + keep_head, " [...] ", mark);
        m = strlen(g_msg);
    }
    memmove(g_msg + p, g_msg, m + 1);
    memcpy(g_msg, prefix, p);
    return s;
}

char *kiln__error_dup(void) { return strdup(g_msg); }

void kiln__warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fputs("kiln: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* An error with s == OK is still an error: its status reads INVALID. */
static kiln_status set_err(kiln_status s, const char *fmt, va_list ap)
{
    g_status = s != KILN_STATUS_OK ? s : KILN_STATUS_INVALID;
    set_msg(fmt, ap);
    return g_status;
}

kiln_status kiln_error(kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kiln_status r = set_err(s, fmt, ap);
    va_end(ap);
    return r;
}

void *kiln__errp(kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_err(s, fmt, ap);
    va_end(ap);
    return NULL;
}
