/* Text files the application layer writes as it goes (CSV tables, predictions): to a path through
 * the atomic writer's stream (kiln/io.h: temp file, every write checked, fsync, rename), or to
 * standard output. */
#include "app_internal.h"

kiln_status kiln__out_begin(kiln__out *o, const char *path)
{
    o->a = NULL, o->f = stdout;
    if (!path) return KILN_STATUS_OK;
    kiln_status st = kiln_atomic_begin(path, &o->a);
    o->f = st ? NULL : kiln_atomic_stream(o->a);
    return st;
}

kiln_status kiln__out_end(kiln__out *o, kiln_status st, const char *who)
{
    if (o->a && st) kiln_atomic_abort(o->a);
    else if (o->a) st = kiln_atomic_commit(o->a);
    else if (o->f && !st && (ferror(o->f) || fflush(o->f)))
        st = kiln__err(KILN_STATUS_IO, "%s: writing to standard output failed", who);
    o->a = NULL, o->f = NULL;
    return st;
}
