/* The load report (kiln_load_report): what a load of weights found — keys missing from the
 * file, keys of the file that fit nowhere, keys of another shape, the first conv adapted —
 * kept whole, printed readably with capped lists, and one line of it in error messages. */
#include "nn/nn_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LISTED_DEFAULT 10

kiln_status kiln__load_report_add(kiln_load_key **list, size_t *n, const kiln_load_key *k)
{
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow to the next power of two */
        kiln_load_key *grown = realloc(*list, (*n ? 2 * *n : 4) * sizeof *grown);
        if (!grown) return kiln__err(KILN_STATUS_NOMEM, "model_load: out of memory");
        *list = grown;
    }
    kiln_load_key *d = &(*list)[*n];
    *d = *k;
    d->key = k->key ? strdup(k->key) : NULL;
    d->model_key = k->model_key ? strdup(k->model_key) : NULL;
    if ((k->key && !d->key) || (k->model_key && !d->model_key)) {
        free(d->key);
        free(d->model_key);
        return kiln__err(KILN_STATUS_NOMEM, "model_load: out of memory");
    }
    (*n)++;
    return KILN_STATUS_OK;
}

static void free_list(kiln_load_key *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i].key);
        free(list[i].model_key);
    }
    free(list);
}

void kiln_load_report_free(kiln_load_report *r)
{
    if (!r) return;
    free(r->path);
    free(r->stripped);
    free_list(r->missing, r->n_missing);
    free_list(r->unexpected, r->n_unexpected);
    free_list(r->mismatched, r->n_mismatched);
    free_list(r->adapted, r->n_adapted);
    memset(r, 0, sizeof *r);
}

bool kiln_load_report_has_problems(const kiln_load_report *r)
{
    return r && (r->n_missing || r->n_unexpected || r->n_mismatched);
}

static void put_shape(FILE *out, int nd, const int64_t *shape)
{
    fputc('(', out);
    for (int d = 0; d < nd; d++) fprintf(out, "%s%lld", d ? ", " : "", (long long)shape[d]);
    fputc(')', out);
}

/* One key of list kind (0 missing, 1 unexpected, 2 mis-shaped, 3 adapted). */
static void put_key(FILE *out, int kind, const kiln_load_key *k)
{
    fputs(k->key, out);
    bool renamed = k->model_key && strcmp(k->key, k->model_key) != 0;
    if (kind == 0 || kind == 1) {
        if (renamed) fprintf(out, " (%s)", k->model_key);
        return;
    }
    size_t kl = k->model_key ? strlen(k->model_key) : 0, nl = strlen(".num_batches_tracked");
    bool counter = kl >= nl && strcmp(k->model_key + kl - nl, ".num_batches_tracked") == 0;
    bool is_float = k->dtype == KILN_DTYPE_F32 || k->dtype == KILN_DTYPE_F16 || k->dtype == KILN_DTYPE_BF16;
    if (kind == 2 && counter) {
        fprintf(out, " is %s ", kiln_dtype_name(k->dtype));
        put_shape(out, k->file_ndim, k->file_shape);
        fputs(" in the file, the model needs one i64 (a BatchNorm counter)", out);
    } else if (kind == 2 && !is_float) {
        fprintf(out, " is %s in the file, the model needs a float type", kiln_dtype_name(k->dtype));
    } else if (kind == 2) {
        fputs(" has shape ", out);
        put_shape(out, k->file_ndim, k->file_shape);
        fputs(" in the file, ", out);
        put_shape(out, k->model_ndim, k->model_shape);
        fputs(" in the model", out);
    } else {
        fputc(' ', out);
        put_shape(out, k->file_ndim, k->file_shape);
        fputs(" -> ", out);
        put_shape(out, k->model_ndim, k->model_shape);
        int64_t c = k->model_shape[1];
        fputs(c == 1 ? ": the sum of the RGB kernels" : c == 2 ? ": the first two RGB kernels x 1.5" : ": RGB, then zeros", out);
    }
    if (renamed) fprintf(out, " (%s)", k->model_key);
}

void kiln__load_report_lists(const kiln_load_report *r, FILE *out, int max_listed, bool one_line)
{
    const kiln_load_key *lists[4] = {r->missing, r->unexpected, r->mismatched, r->adapted};
    const size_t counts[4] = {r->n_missing, r->n_unexpected, r->n_mismatched, r->n_adapted};
    static const char *const what[4] = {"missing keys", "unexpected keys", "mis-shaped keys", "adapted keys"};
    bool first = true;
    for (int kind = 0; kind < 4; kind++) {
        if (!counts[kind] || (one_line && kind == 3)) continue;
        fprintf(out, "%s%s (%zu): ", one_line ? (first ? "" : "; ") : "  ", what[kind], counts[kind]);
        size_t shown = counts[kind] < (size_t)max_listed ? counts[kind] : (size_t)max_listed;
        for (size_t i = 0; i < shown; i++) {
            if (i) fputs(", ", out);
            put_key(out, kind, &lists[kind][i]);
        }
        if (shown < counts[kind]) fprintf(out, ", and %zu more", counts[kind] - shown);
        if (!one_line) fputc('\n', out);
        first = false;
    }
}

void kiln_load_report_print(const kiln_load_report *r, FILE *out, int max_listed)
{
    if (!r || !out) return;
    if (max_listed <= 0) max_listed = LISTED_DEFAULT;
    fprintf(out, "%s: loaded %zu of %zu tensors", r->path ? r->path : "(no file)", r->n_loaded, r->n_model);
    if (r->n_counters) fprintf(out, " and %zu BatchNorm counters", r->n_counters);
    fprintf(out, " from its %zu keys", r->n_file);
    if (r->n_skipped) fprintf(out, " (%zu left alone on purpose)", r->n_skipped);
    if (r->stripped) fprintf(out, "; wrapper \"%s\" stripped", r->stripped);
    fprintf(out, "%s\n", r->strict ? " [strict]" : "");
    kiln__load_report_lists(r, out, max_listed, false);
    if (r->hint) fprintf(out, "  hint: %s\n", r->hint);
}
