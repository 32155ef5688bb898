/* The procs object: allocation, freeing, and the accessors the application layer reads the
 * model's columns, categories, statistics and target through. */
#include "data/tabular/tab_internal.h"

#include <math.h>
#include <stdlib.h>

kiln_tab_procs *kiln__tab_procs_alloc(void)
{
    kiln_tab_procs *pr = calloc(1, sizeof *pr);
    if (!pr) return kiln__errp(KILN_STATUS_NOMEM, "tab_procs: out of memory");
    return pr;
}

void kiln__tab_cat_clear(kiln__tab_cat *c)
{
    for (int64_t k = 0; c->cats && k < c->n; k++) free(c->cats[k]);
    free(c->cats);
    free(c->vals);
    free(c->name);
    free(c->src.col);
    c->cats = NULL, c->vals = NULL, c->name = NULL, c->src.col = NULL, c->n = 0;
}

void kiln_tab_procs_free(kiln_tab_procs *pr)
{
    if (!pr) return;
    for (int k = 0; pr->cat && k < pr->n_cat; k++) kiln__tab_cat_clear(&pr->cat[k]);
    for (int k = 0; pr->cont && k < pr->n_cont; k++) free(pr->cont[k].name), free(pr->cont[k].src.col);
    kiln__tab_cat_clear(&pr->cls);
    free(pr->cat);
    free(pr->cont);
    free(pr->target);
    free(pr);
}

int kiln_tab_procs_n_cat(const kiln_tab_procs *pr) { return pr ? pr->n_cat : 0; }
int kiln_tab_procs_n_cont(const kiln_tab_procs *pr) { return pr ? pr->n_cont : 0; }

const char *kiln_tab_procs_cat_name(const kiln_tab_procs *pr, int k)
{
    return pr && k >= 0 && k < pr->n_cat ? pr->cat[k].name : NULL;
}

const char *kiln_tab_procs_cont_name(const kiln_tab_procs *pr, int k)
{
    return pr && k >= 0 && k < pr->n_cont ? pr->cont[k].name : NULL;
}

int64_t kiln_tab_procs_cardinality(const kiln_tab_procs *pr, int k)
{
    return pr && k >= 0 && k < pr->n_cat ? pr->cat[k].n : 0;
}

const char *kiln_tab_procs_category(const kiln_tab_procs *pr, int k, int64_t code)
{
    if (!pr || k < 0 || k >= pr->n_cat || code < 0 || code >= pr->cat[k].n) return NULL;
    return pr->cat[k].cats[code];
}

int64_t kiln_tab_procs_code(const kiln_tab_procs *pr, int k, const char *value)
{
    if (!pr || k < 0 || k >= pr->n_cat) return 0;
    const kiln__tab_cat *c = &pr->cat[k];
    if (c->is_na) return value ? 1 : 2; /* the value of the source column: missing or not */
    return kiln__tab_cat_code_text(c, value);
}

void kiln_tab_procs_cont_stats(const kiln_tab_procs *pr, int k, double *median, double *mean, double *std)
{
    bool ok = pr && k >= 0 && k < pr->n_cont;
    if (median) *median = ok ? pr->cont[k].median : NAN;
    if (mean) *mean = ok ? pr->cont[k].mean : NAN;
    if (std) *std = ok ? pr->cont[k].std : NAN;
}

bool kiln_tab_procs_has_na_col(const kiln_tab_procs *pr, int cont_k)
{
    return pr && cont_k >= 0 && cont_k < pr->n_cont && pr->cont[cont_k].has_na;
}

const char *kiln_tab_procs_target(const kiln_tab_procs *pr) { return pr ? pr->target : NULL; }
bool kiln_tab_procs_is_classification(const kiln_tab_procs *pr) { return pr && pr->classification; }
bool kiln_tab_procs_log_target(const kiln_tab_procs *pr) { return pr && pr->log_target; }

int64_t kiln_tab_procs_n_classes(const kiln_tab_procs *pr)
{
    return pr && pr->classification ? pr->cls.n - 1 : 0;
}

const char *kiln_tab_procs_class(const kiln_tab_procs *pr, int64_t i)
{
    if (!pr || !pr->classification || i < 0 || i >= pr->cls.n - 1) return NULL;
    return pr->cls.cats[i + 1];
}

void kiln_tab_procs_target_range(const kiln_tab_procs *pr, double *lo, double *hi)
{
    if (lo) *lo = pr ? pr->y_lo : NAN;
    if (hi) *hi = pr ? pr->y_hi : NAN;
}
