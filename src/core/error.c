/* Status names and the per-thread error message that every failing kiln call leaves. */
#include "core/internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[1024];

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
    }
    return "unknown status";
}

const char *kiln_last_error(void) { return g_msg; }
void kiln_clear_error(void) { g_msg[0] = '\0'; }
bool kiln__has_error(void) { return g_msg[0] != '\0'; }

static void set_msg(const char *fmt, va_list ap)
{
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
}

kiln_status kiln__err(kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_msg(fmt, ap);
    va_end(ap);
    return s;
}

void *kiln__errp(kiln_status s, const char *fmt, ...)
{
    (void)s;
    va_list ap;
    va_start(ap, fmt);
    set_msg(fmt, ap);
    va_end(ap);
    return NULL;
}
