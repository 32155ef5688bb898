/* The recorder's part of a checkpoint (src/learn/learn_internal.h, kiln__recorder_save_st):
 * the batch and epoch history as named I64 tensors (doubles as their IEEE bits, since
 * safetensors readers differ on F64) and its sizes and metric names as JSON metadata; and
 * the copy a resuming fit puts back. */
#include "core/json.h"
#include "learn_internal.h"
#include "kiln/io.h"

#include <stdio.h>
#include <string.h>

static double at_f64(const void *p, size_t i)
{
    double d;
    memcpy(&d, (const char *)p + i * sizeof d, sizeof d);
    return d;
}

static int64_t at_i64(const void *p, size_t i)
{
    int64_t v;
    memcpy(&v, (const char *)p + i * sizeof v, sizeof v);
    return v;
}

static void name_of(char *buf, size_t n, const char *prefix, const char *what) { snprintf(buf, n, "%s.%s", prefix, what); }

kiln_status kiln__recorder_save_st(const kiln_recorder *r, kiln_st_writer *w, const char *prefix)
{
    int64_t nb = kiln_recorder_n_batches(r), ne = kiln_recorder_n_epochs(r);
    int g = kiln_recorder_n_groups(r), nm = kiln_recorder_n_metrics(r);
    char name[200];
    size_t cols = 3 + (size_t)nm;
    double *rows = malloc(((size_t)g * (size_t)nb + 1) * sizeof *rows);
    double *vals = malloc(((size_t)ne * cols + 1) * sizeof *vals);
    int64_t *ids = malloc(((size_t)ne * 2 + 1) * sizeof *ids);
    if (!rows || !vals || !ids) {
        free(rows), free(vals), free(ids);
        return kiln__err(KILN_STATUS_NOMEM, "checkpoint_save: out of memory");
    }
    if (nb > 0) {
        int64_t s1[1] = {nb}, s2[2] = {g, nb};
        name_of(name, sizeof name, prefix, "iters");
        kiln_st_writer_add_copy(w, name, KILN_DTYPE_I64, 1, s1, kiln_recorder_iters(r));
        name_of(name, sizeof name, prefix, "losses");
        kiln_st_writer_add_copy(w, name, KILN_DTYPE_I64, 1, s1, kiln_recorder_losses(r));
        name_of(name, sizeof name, prefix, "smooth_losses");
        kiln_st_writer_add_copy(w, name, KILN_DTYPE_I64, 1, s1, kiln_recorder_smooth_losses(r));
        for (int k = 0; k < 2; k++) {
            for (int q = 0; q < g; q++)
                memcpy(rows + (size_t)q * (size_t)nb, k ? kiln_recorder_moms(r, q) : kiln_recorder_lrs(r, q),
                       (size_t)nb * sizeof *rows);
            name_of(name, sizeof name, prefix, k ? "moms" : "lrs");
            kiln_st_writer_add_copy(w, name, KILN_DTYPE_I64, 2, s2, rows);
        }
    }
    if (ne > 0) {
        for (int64_t i = 0; i < ne; i++) {
            kiln_epoch_record er;
            kiln_recorder_epoch(r, i, &er);
            ids[2 * i] = er.epoch, ids[2 * i + 1] = er.iter;
            double *v = vals + (size_t)i * cols;
            v[0] = er.train_loss, v[1] = er.valid_loss, v[2] = er.seconds;
            for (int j = 0; j < nm; j++) v[3 + j] = er.metrics[j];
        }
        int64_t s1[2] = {ne, 2}, s2[2] = {ne, (int64_t)cols};
        name_of(name, sizeof name, prefix, "epochs");
        kiln_st_writer_add_copy(w, name, KILN_DTYPE_I64, 2, s1, ids);
        name_of(name, sizeof name, prefix, "epoch_values");
        kiln_st_writer_add_copy(w, name, KILN_DTYPE_I64, 2, s2, vals);
    }
    free(rows), free(vals), free(ids);
    cJSON *o = cJSON_CreateObject(), *ms = o ? cJSON_AddArrayToObject(o, "metrics") : NULL;
    bool ok = ms && kiln__json_add_i64(o, "batches", nb) && kiln__json_add_i64(o, "epochs", ne) &&
              kiln__json_add_i64(o, "groups", g);
    for (int j = 0; ok && j < nm; j++) {
        cJSON *s = cJSON_CreateString(kiln_recorder_metric_name(r, j));
        ok = s && cJSON_AddItemToArray(ms, s);
        if (!ok) cJSON_Delete(s);
    }
    char *json = kiln__json_finish("checkpoint_save", o, ok);
    kiln_status st = json ? kiln_st_writer_meta(w, prefix, json) : KILN_STATUS_NOMEM;
    free(json);
    return st;
}

/* The tensors' views, checked. */
typedef struct views {
    const void *iters, *losses, *smooth, *lrs, *moms, *ids, *vals;
} views;

static kiln_status want(const kiln_st_file *f, const char *prefix, const char *what, int ndim, int64_t a, int64_t b,
                        const void **out)
{
    char name[200];
    name_of(name, sizeof name, prefix, what);
    int64_t shape[2] = {a, b};
    return kiln_st_want(f, name, KILN_DTYPE_I64, ndim, shape, out);
}

/* Fills r from the checked views. */
static kiln_status fill(kiln_recorder *r, const views *v, int64_t nb, int64_t ne, int g, int nm, int64_t bpe)
{
    double *lrs = malloc(((size_t)g + 1) * sizeof *lrs), *moms = malloc(((size_t)g + 1) * sizeof *moms);
    double *mets = malloc(((size_t)nm + 1) * sizeof *mets);
    kiln_status st = !lrs || !moms || !mets ? kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory")
                                            : KILN_STATUS_OK;
    for (int64_t i = 0; !st && i < nb; i++) {
        for (int k = 0; k < g; k++) {
            lrs[k] = at_f64(v->lrs, (size_t)(k * nb + i));
            moms[k] = at_f64(v->moms, (size_t)(k * nb + i));
        }
        int64_t it = at_i64(v->iters, (size_t)i);
        st = kiln__recorder_add_batch(r, it, it / bpe, at_f64(v->losses, (size_t)i), at_f64(v->smooth, (size_t)i),
                                      lrs, moms);
    }
    size_t cols = 3 + (size_t)nm;
    for (int64_t i = 0; !st && i < ne; i++) {
        const size_t row = (size_t)i * cols;
        for (int j = 0; j < nm; j++) mets[j] = at_f64(v->vals, row + 3 + (size_t)j);
        st = kiln__recorder_add_epoch(r, at_i64(v->ids, 2 * (size_t)i), at_i64(v->ids, 2 * (size_t)i + 1),
                                      at_f64(v->vals, row), at_f64(v->vals, row + 1), mets, at_f64(v->vals, row + 2));
    }
    free(lrs), free(moms), free(mets);
    return st;
}

kiln_status kiln__recorder_load_st(kiln_recorder *r, const kiln_st_file *f, const char *prefix,
                                   int64_t batches_per_epoch)
{
    static const char *const known[] = {"batches", "epochs", "groups", "metrics", NULL};
    char who[700];
    snprintf(who, sizeof who, "%s: metadata \"%s\"", kiln_st_path(f), prefix);
    cJSON *o;
    int64_t nb = 0, ne = 0, g = 0;
    const cJSON *ms = NULL;
    kiln_status st = kiln__json_object(who, kiln_st_metadata(f, prefix), &o);
    if (!st && !(st = kiln__json_get_i64(who, o, "batches", true, &nb)) &&
        !(st = kiln__json_get_i64(who, o, "epochs", true, &ne)) && !(st = kiln__json_get_i64(who, o, "groups", true, &g)))
        st = kiln__json_get_node(who, o, "metrics", true, false, &ms);
    if (!st && (nb < 0 || ne < 0 || g < 0 || g > 64))
        st = kiln__err(KILN_STATUS_FORMAT, "%s: %lld batches, %lld epochs, %lld groups", who, (long long)nb,
                       (long long)ne, (long long)g);
    int nm = st ? 0 : cJSON_GetArraySize(ms);
    const char **names = malloc(((size_t)nm + 1) * sizeof *names);
    if (!st && !names) st = kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory");
    for (int j = 0; !st && j < nm; j++) {
        const cJSON *s = cJSON_GetArrayItem(ms, j);
        if (!cJSON_IsString(s) || !s->valuestring)
            st = kiln__err(KILN_STATUS_FORMAT, "%s: \"metrics\"[%d] is not a string", who, j);
        else names[j] = s->valuestring;
    }
    if (!st) kiln__json_warn_unknown(who, o, known);
    views v = {0};
    if (!st && nb > 0) {
        const char *what[5] = {"iters", "losses", "smooth_losses", "lrs", "moms"};
        const void **out[5] = {&v.iters, &v.losses, &v.smooth, &v.lrs, &v.moms};
        for (int k = 0; !st && k < 5; k++) st = want(f, prefix, what[k], k < 3 ? 1 : 2, k < 3 ? nb : g, nb, out[k]);
    }
    if (!st && ne > 0 && !(st = want(f, prefix, "epochs", 2, ne, 2, &v.ids)))
        st = want(f, prefix, "epoch_values", 2, ne, 3 + nm, &v.vals);
    kiln_recorder *tmp = st ? NULL : kiln__recorder_new();
    if (!st && !tmp) st = kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory");
    if (!st) st = kiln__recorder_reset_names(tmp, (int)g, nm, names);
    if (!st) st = fill(tmp, &v, nb, ne, (int)g, nm, batches_per_epoch > 0 ? batches_per_epoch : 1);
    if (!st) kiln__recorder_swap(r, tmp);
    kiln__recorder_free(tmp);
    free(names);
    cJSON_Delete(o);
    return st;
}
