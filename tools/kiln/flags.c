/* The kiln CLI's shared flag parser and --help printer (see flags.h). */
#include "flags.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool flags_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    return true;
}

bool flags_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno == ERANGE)
        return false;
    *out = v;
    return true;
}

int flags_index(const cli_flag *flags, int n_flags, const char *name)
{
    for (int k = 0; k < n_flags; k++)
        if (!strcmp(flags[k].name, name))
            return k;
    return -1;
}

int flags_parse(const char *prog, const cli_flag *flags, int n_flags, int argc, char **argv, void *opts,
                     bool *given, const char **pos, int max_pos, int *n_pos)
{
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            if (*n_pos >= max_pos) {
                fprintf(stderr, "%s: unexpected argument '%s' (see %s --help)\n", prog, a, prog);
                return 2;
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        int k = 0;
        while (k < n_flags && !(strlen(flags[k].name) == len && !strncmp(flags[k].name, a, len)))
            k++;
        if (k == n_flags) {
            fprintf(stderr, "%s: unknown flag '%.*s' (see %s --help)\n", prog, (int)len, a, prog);
            return 2;
        }
        const cli_flag *fl = &flags[k];
        given[k] = true;
        char *field = (char *)opts + fl->off;
        if (fl->kind == FLAG_BOOL) {
            if (eq) {
                fprintf(stderr, "%s: %s takes no value (got '%s')\n", prog, fl->name, eq + 1);
                return 2;
            }
            *(bool *)field = true;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "%s: %s needs a value (%s)\n", prog, fl->name, fl->arg ? fl->arg : "VALUE");
            return 2;
        }
        bool ok = true;
        const char *what = "a number";
        switch (fl->kind) {
        case FLAG_DOUBLE: ok = flags_double(v, (double *)field); break;
        case FLAG_INT: ok = flags_int(v, (int64_t *)field), what = "an integer"; break;
        case FLAG_STR: *(const char **)field = v; break;
        case FLAG_CUSTOM: ok = fl->parse(v, opts), what = fl->bad ? fl->bad : "valid"; break;
        default: break;
        }
        if (!ok) {
            fprintf(stderr, "%s: %s: '%s' is not %s\n", prog, fl->name, v, what);
            return 2;
        }
    }
    return 0;
}

/* " (default: V)" from the defaults struct, for flags that take a value. */
static void print_default(FILE *f, const cli_flag *fl, const void *defaults)
{
    const char *at = (const char *)defaults + fl->off;
    switch (fl->kind) {
    case FLAG_DOUBLE: fprintf(f, " (default: %g)", *(const double *)at); break;
    case FLAG_INT: fprintf(f, " (default: %lld)", (long long)*(const int64_t *)at); break;
    case FLAG_STR:
        if (*(const char *const *)at) fprintf(f, " (default: %s)", *(const char *const *)at);
        break;
    default: break;
    }
}

void flags_print(FILE *f, const cli_flag *flags, int n_flags, unsigned only, unsigned all,
                 const char *(*variant_name)(int bit), const void *defaults)
{
    for (int i = 0; i < n_flags; i++) {
        const cli_flag *fl = &flags[i];
        if (!(fl->mask & only))
            continue;
        char head[64];
        snprintf(head, sizeof head, "%s%s%s", fl->name, fl->arg ? " " : "", fl->arg ? fl->arg : "");
        fprintf(f, "  %-26s %s", head, fl->help);
        if (defaults) print_default(f, fl, defaults);
        if (variant_name && (fl->mask & all) != all) {
            fprintf(f, " [");
            for (int b = 0, first = 1; b < 32 && (1u << b) <= all; b++)
                if (fl->mask & (1u << b)) {
                    fprintf(f, "%s%s", first ? "" : " ", variant_name(b));
                    first = 0;
                }
            fprintf(f, "]");
        }
        fprintf(f, "\n");
    }
}
