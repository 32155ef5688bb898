/* Internal to the tabular data layer (src/data/tabular/): the table's layout, the procs'
 * columns and the helpers the files share (number and date parsing, date parts, column
 * kinds). Public contract: include/kiln/tabular.h. */
#ifndef KILN_DATA_TABULAR_INTERNAL_H
#define KILN_DATA_TABULAR_INTERNAL_H

#include "core/internal.h"
#include "kiln/tabular.h"

/* Cells as one block of NUL-terminated texts; cell (i, j) is text + off[i * n_cols + j] - 1,
 * off 0 for a missing (empty) field. */
struct kiln_table {
    char *name;
    int n_cols;
    char **col_names;
    int64_t n_rows;
    char *text;
    size_t text_len;
    uint64_t *off;   /* (n_rows, n_cols) */
    int64_t *line;   /* (n_rows) */
};

/* The largest category code a batch may hold: an f32 holds integers exactly up to 2^24. A
 * variable (not a constant) so that a test can lower it instead of making 2^24 categories. */
extern int64_t kiln__tab_code_limit;

/* ---- numbers and dates (kinds.c, datepart.c) ---- */
/* s (NUL-terminated) as a finite decimal number, spaces around allowed (no hex, inf, nan). */
bool kiln__tab_number(const char *s, double *v);
/* s as an integer literal ([+-]digits, spaces around allowed) that fits an int64. */
bool kiln__tab_integer(const char *s);
/* "True"/"False" (and "true"/"false"), pandas' bool columns. */
bool kiln__tab_bool(const char *s);

#define KILN_TAB_N_PARTS 13
typedef struct kiln__tab_date {
    int64_t days;   /* since 1970-01-01 */
    int year, month, day, hour, minute, second;
} kiln__tab_date;
/* YYYY-MM-DD, optionally followed by ' ' or 'T' and HH:MM or HH:MM:SS; a real calendar day. */
bool kiln__tab_parse_date(const char *s, kiln__tab_date *d);
/* add_datepart's part names: Year Month Week Day Dayofweek Dayofyear Is_month_end
 * Is_month_start Is_quarter_end Is_quarter_start Is_year_end Is_year_start Elapsed. */
const char *kiln__tab_part_name(int part);
int kiln__tab_part_index(const char *name); /* -1 when none */
/* Is_* parts are bools (0 / 1); Elapsed is a float (fastai makes it float64 through np.where). */
bool kiln__tab_part_is_bool(int part);
/* Part `part` of d: integers exactly, bools 0 / 1, Elapsed seconds since 1970 UTC. */
double kiln__tab_part_value(const kiln__tab_date *d, int part);

/* ---- the procs ---- */
/* Where a model column's value comes from: a table column, or part `part` (>= 0) of the date
 * in that column. */
typedef struct kiln__tab_src {
    char *col;
    int part; /* -1: the cell itself */
} kiln__tab_src;

typedef struct kiln__tab_cat {
    char *name;
    kiln__tab_src src;
    bool is_na;         /* FillMissing's <src>_na: code 1 (false) when present, 2 (true) when missing */
    bool numeric;       /* categories compared as numbers (every training value was one) */
    int64_t n;          /* categories, "#na#" (code 0) included */
    char **cats;        /* (n) in code order */
    double *vals;       /* (n) numeric: the categories' values (vals[0] unused), ascending */
} kiln__tab_cat;

typedef struct kiln__tab_cont {
    char *name;
    kiln__tab_src src;
    double median, mean, std; /* std: population, without the 1e-7 */
    bool has_na;
} kiln__tab_cont;

struct kiln_tab_procs {
    char *target;
    bool classification, log_target;
    kiln__tab_cat cls;    /* classification: the classes are cls.cats[1..] (index = code - 1) */
    double y_lo, y_hi;
    int n_cat, n_cont;
    kiln__tab_cat *cat;
    kiln__tab_cont *cont;
};

/* An empty procs object (NULL + NOMEM message). */
kiln_tab_procs *kiln__tab_procs_alloc(void);
void kiln__tab_cat_clear(kiln__tab_cat *c);
/* Code of a value of cat column c: 0 for missing / unseen. text NULL: missing. */
int64_t kiln__tab_cat_code_text(const kiln__tab_cat *c, const char *text);
int64_t kiln__tab_cat_code_num(const kiln__tab_cat *c, double v);
/* Sorts and deduplicates (strcmp or numerically) texts[0..n), which are borrowed; fills a
 * new category list of c (with "#na#" first) or of the classes. */
kiln_status kiln__tab_cat_set(kiln__tab_cat *c, const char **texts, int64_t n, bool numeric);
/* The same from numbers (integers: the date parts), their texts "%.0f". */
kiln_status kiln__tab_cat_set_nums(kiln__tab_cat *c, const double *v, int64_t n);
/* Builds the lookup tables of c from c->cats (after loading from JSON); checks order. */
kiln_status kiln__tab_cat_index(kiln__tab_cat *c, const char *who);

char *kiln__tab_strdup(const char *s);

#endif
