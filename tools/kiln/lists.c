/* Comma-separated flag values of the table commands (lists.h). */
#include "lists.h"
#include "flags.h"

#include <stdlib.h>
#include <string.h>

/* "a,b,c" into a NULL-terminated malloc'd list (*out); false on an empty name or no memory */
static bool split_names(const char *s, char ***out)
{
    size_t n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    char **v = calloc(n + 1, sizeof *v);
    if (!v) return false;
    *out = v;
    for (size_t k = 0; k < n; k++) {
        size_t len = strcspn(s, ",");
        if (!len || !(v[k] = strndup(s, len))) return false;
        s += len + (s[len] == ',');
    }
    return true;
}

/* "1,2,3" into out[0..max); *n how many; false when one is not a number or there are more */
static bool split_nums(const char *s, double *out, int max, int *n)
{
    *n = 0;
    for (;;) {
        size_t len = strcspn(s, ",");
        char tok[64];
        if (!len || len >= sizeof tok || *n >= max) return false;
        memcpy(tok, s, len), tok[len] = 0;
        if (!flags_double(tok, &out[(*n)++])) return false;
        if (!s[len]) return true;
        s += len + 1;
    }
}

const char *cli_lists_parse(cli_lists *ls, const char *const lists[4], const char *layers, const char *ps,
                            const char *y_range)
{
    static const char *const flag[4] = {"--cat", "--cont", "--date", "--skip"};
    static char msg[96];
    for (int i = 0; i < 4; i++)
        if (lists[i] && !split_names(lists[i], &ls->names[i])) {
            snprintf(msg, sizeof msg, "%s needs column names separated by commas", flag[i]);
            return msg;
        }
    ls->n_layers = 2;
    if (layers) {
        if (!split_nums(layers, ls->layers, CLI_LISTS_MAX, &ls->n_layers)) return "--layers needs up to 16 sizes separated by commas";
        for (int k = 0; k < ls->n_layers; k++)
            if (!(ls->layers[k] >= 1 && ls->layers[k] <= 1e6 && ls->layers[k] == (double)(long)ls->layers[k]))
                return "--layers: every size must be an integer in [1, 1000000]";
    }
    int np = 0;
    if (ps) {
        if (!split_nums(ps, ls->ps, CLI_LISTS_MAX, &np) || np != ls->n_layers) return "--ps needs one dropout per layer";
        for (int k = 0; k < np; k++)
            if (!(ls->ps[k] >= 0 && ls->ps[k] < 1)) return "--ps: every dropout must be in [0, 1)";
    }
    int ny = 0;
    if (y_range && (!split_nums(y_range, ls->y_range, 2, &ny) || ny != 2 || !(ls->y_range[0] < ls->y_range[1])))
        return "--y-range needs LO,HI with LO < HI";
    return NULL;
}

void cli_lists_free(cli_lists *ls)
{
    for (int i = 0; i < 4; i++) {
        for (char **p = ls->names[i]; p && *p; p++) free(*p);
        free(ls->names[i]);
        ls->names[i] = NULL;
    }
}
