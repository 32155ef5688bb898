/* Fuzz target: the tabular data layer (src/data/tabular/): tables from CSV, the procs, their
 * JSON.
 * 1. The input as a CSV buffer: kiln_table_read_csv_buffer either refuses it with a message or
 *    gives a table whose every cell is within the input's size; the procs are learned with the
 *    last column as the target (auto task, then classification, with a small max_card so that
 *    both kinds occur) and refused with a message or applied to the same table: every code is
 *    an integer in [0, cardinality) (the _na codes 1 or 2: the training rows had no missing
 *    value the procs would refuse), every continuous value finite, every class index in range;
 *    the procs' JSON loads back and prints the same text.
 * 2. The input as procs JSON: kiln_tab_procs_from_json refuses it with a message or gives procs
 *    whose JSON loads back the same. */
#include "fuzz.h"

#include "kiln.h"
#include "kiln/tabular.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void json_round_trip(const kiln_tab_procs *pr)
{
    char *js = kiln_tab_procs_to_json(pr);
    if (!js) kf_bug("procs to JSON failed");
    kiln_tab_procs *back = kiln_tab_procs_from_json(js, strlen(js), "fuzz.json");
    if (!back) kf_bug("the procs' own JSON did not load");
    char *js2 = kiln_tab_procs_to_json(back);
    if (!js2 || strcmp(js, js2)) kf_bug("the procs' JSON did not load back the same");
    free(js), free(js2);
    kiln_tab_procs_free(back);
}

static void check_rows(const kiln_tab_procs *pr, const kiln_tab_rows *r)
{
    int w = r->n_cat + r->n_cont;
    for (int64_t i = 0; i < r->n; i++) {
        for (int k = 0; k < r->n_cat; k++) {
            float c = r->x[i * w + k];
            if (c != floorf(c) || c < 0 || c >= (float)kiln_tab_procs_cardinality(pr, k)) kf_bug("a code out of range");
        }
        for (int k = r->n_cat; k < w; k++)
            if (!isfinite(r->x[i * w + k])) kf_bug("a continuous value is not finite");
        if (r->y_class && (r->y_class[i] < 0 || r->y_class[i] >= kiln_tab_procs_n_classes(pr)))
            kf_bug("a class index out of range");
    }
}

static void table(const uint8_t *data, size_t size)
{
    kiln_table *t = kiln_table_read_csv_buffer("fuzz.csv", data, size);
    if (!t) {
        kf_refused("table_read_csv_buffer");
        return;
    }
    int nc = kiln_table_n_cols(t);
    for (int64_t i = 0; i < kiln_table_n_rows(t); i++)
        for (int j = 0; j < nc; j++) {
            const char *s = kiln_table_cell(t, i, j);
            if (s && strlen(s) > size) kf_bug("a cell longer than the input");
        }
    for (int task = 0; task < 2; task++) {
        kiln_tab_params p = kiln_tab_default_params();
        p.target = kiln_table_col_name(t, nc - 1);
        p.max_card = 3;
        p.task = task ? KILN_TAB_CLASSIFICATION : KILN_TAB_AUTO;
        kiln_tab_procs *pr = kiln_tab_procs_learn(t, &p);
        if (!pr) {
            kf_refused("tab_procs_learn");
            continue;
        }
        kiln_tab_rows r;
        if (kiln_tab_procs_apply(pr, t, true, &r)) kf_bug("the procs refused the rows they were learned on");
        check_rows(pr, &r);
        kiln_tab_rows_free(&r);
        json_round_trip(pr);
        kiln_tab_procs_free(pr);
    }
    kiln_table_free(t);
}

static void procs_json(const uint8_t *data, size_t size)
{
    kiln_tab_procs *pr = kiln_tab_procs_from_json((const char *)data, size, "fuzz.json");
    if (!pr) {
        kf_refused("tab_procs_from_json");
        return;
    }
    json_round_trip(pr);
    kiln_tab_procs_free(pr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 16)) return KF_SKIP;
    table(data, size);
    procs_json(data, size);
    return 0;
}
