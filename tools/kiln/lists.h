/* Comma-separated flag values of the table commands (kiln tabular, kiln collab): lists of column
 * names (--cat a,b), layer sizes (--layers 200,100), dropouts (--ps 0.1,0.1), a range
 * (--y-range 0,5.5). */
#ifndef CLI_LISTS_H
#define CLI_LISTS_H

#include <stdbool.h>

#define CLI_LISTS_MAX 16 /* layer sizes and dropouts */

typedef struct cli_lists {
    char **names[4];     /* NULL-terminated lists of the four name flags (NULL: not given) */
    int n_layers;
    double layers[CLI_LISTS_MAX], ps[CLI_LISTS_MAX];
    double y_range[2];
} cli_lists;

/* Parses what was given (NULL: not given) into ls: names[0..4) from lists (empty names refused),
 * layers (integers in [1, 1e6], at most 16), ps (one per layer, each in [0, 1); the layers are
 * 2 when --layers is not given), y_range (two numbers, lo < hi). NULL or what is wrong. */
const char *cli_lists_parse(cli_lists *ls, const char *const lists[4], const char *layers, const char *ps,
                            const char *y_range);
void cli_lists_free(cli_lists *ls);

#endif
