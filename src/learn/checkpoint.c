/* Checkpoints: a learner's whole training state in one safetensors file (layout in
 * include/kiln/learn_checkpoint.h) and resume. Each owner writes and reads its own part under its
 * own names: the model its state dict ("model."), the optimizer its state and groups
 * ("optim"), the recorder its history ("recorder"), the schedule and the RNG their JSON;
 * this file adds the learner's own part (lr multipliers, requires_grad, loss smoothing) and
 * the position, and composes them with a format version. Version 1 files (the schedule as
 * struct bytes) are converted in memory by checkpoint_v1.c.
 *
 * Exactness: a fit's epoch e depends only on the weights, buffers, optimizer state and
 * group hyper-parameters, the RNG (dropout), the schedule and e itself (shuffling is a
 * function of (seed, e), data.h). All of them are saved bit for bit (doubles as IEEE bits
 * in I64 tensors or as %.17g text), so a resumed fit repeats the uninterrupted one exactly.
 *
 * Loading validates everything before it changes anything; the history (recorder, loss
 * smoothing) is put back at once and again, through a one-shot "checkpoint_resume"
 * callback, at the start of the fit that resumes at the checkpoint's epoch (a fit resets
 * both when it starts). */
#include "checkpoint_internal.h"
#include "core/json.h"
#include "kiln/learn_checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#define RESUME_CB "checkpoint_resume"

/* ---- writing ------------------------------------------------------------------------------------ */

/* The position a save records: epochs and iterations done, and the fit's schedule. */
static void position(kiln_learner *l, kiln_checkpoint_info *pos)
{
    memset(pos, 0, sizeof *pos);
    pos->seed = l->p.seed;
    pos->n_batches = kiln_data_n_batches(l->data, KILN_DATA_SPLIT_TRAIN);
    const kiln_fit_state *s = &l->st;
    if (l->in_fit && s->sched) {
        int64_t nb = s->n_batches > 0 ? s->n_batches : 1;
        int64_t done = s->training ? s->iter + 1 : s->iter; /* end_batch: that batch is done */
        pos->epoch = done / nb;
        pos->iter = pos->epoch * nb;
        pos->n_epochs = s->n_epochs;
        pos->n_batches = s->n_batches;
        pos->has_sched = true;
        pos->sched = *s->sched;
        return;
    }
    int64_t ne = kiln_recorder_n_epochs(l->rec);
    kiln_epoch_record er;
    if (ne > 0 && !kiln_recorder_epoch(l->rec, ne - 1, &er)) pos->epoch = er.epoch + 1, pos->iter = er.iter;
}

/* The learner's own part: metadata "learner" = {"lr_mults": [..], "mults_set": b,
 * "smoothing": {"beta", "avg", "n"}, "metrics": [names]} and tensor "learner.requires_grad"
 * (store entries) U8. */
static kiln_status put_learner(kiln_learner *l, kiln_st_writer *w)
{
    kiln_store *s = kiln_model_store(l->model);
    size_t n = kiln_store_count(s);
    uint8_t *rg = malloc(n ? n : 1);
    if (!rg) return kiln__err(KILN_STATUS_NOMEM, "checkpoint_save: out of memory");
    for (size_t i = 0; i < n; i++) rg[i] = kiln_store_at(s, i)->requires_grad;
    int64_t shape[1] = {(int64_t)n};
    kiln_st_writer_add_copy(w, "learner.requires_grad", KILN_DTYPE_U8, 1, shape, rg);
    free(rg);
    cJSON *o = cJSON_CreateObject(), *m = o ? cJSON_AddArrayToObject(o, "lr_mults") : NULL;
    cJSON *e = m ? cJSON_AddObjectToObject(o, "smoothing") : NULL;
    cJSON *ms = e ? cJSON_AddArrayToObject(o, "metrics") : NULL;
    bool ok = ms && cJSON_AddBoolToObject(o, "mults_set", l->mults_set) && kiln__json_add_f64(e, "beta", l->ema.beta) &&
              kiln__json_add_f64(e, "avg", l->ema.avg) && kiln__json_add_i64(e, "n", l->ema.n);
    for (int j = 0; ok && j < l->n_metrics; j++) {
        cJSON *v = cJSON_CreateString(l->metrics[j].name);
        ok = v && cJSON_AddItemToArray(ms, v);
        if (!ok) cJSON_Delete(v);
    }
    for (int g = 0; ok && g < l->n_mults; g++) {
        cJSON *v = kiln__json_f64(l->lr_mults[g]);
        ok = v && cJSON_AddItemToArray(m, v);
        if (!ok) cJSON_Delete(v);
    }
    char *json = kiln__json_finish("checkpoint_save", o, ok);
    kiln_status st = json ? kiln_st_writer_meta(w, "learner", json) : KILN_STATUS_NOMEM;
    free(json);
    return st;
}

/* Adds key = json (malloc'd, freed here; NULL: the error is set). */
static kiln_status put_json(kiln_st_writer *w, const char *key, char *json)
{
    kiln_status st = json ? kiln_st_writer_meta(w, key, json) : kiln_last_status();
    free(json);
    return st;
}

kiln_status kiln_checkpoint_save(kiln_learner *l, const char *path)
{
    if (!l || !path) return kiln__err(KILN_STATUS_INVALID, "checkpoint_save: needs a learner and a path");
    kiln_st_writer *w = kiln_st_writer_new();
    if (!w) return kiln__err_prefix(KILN_STATUS_NOMEM, "checkpoint_save: ");
    kiln_checkpoint_info pos;
    position(l, &pos);
    kiln_status st = kiln_model_save_st(l->model, w, "model.");
    if (!st) st = kiln_optim_save_st(l->opt, w, "optim");
    if (!st) st = put_learner(l, w);
    if (!st) st = kiln__recorder_save_st(l->rec, w, "recorder");
    if (!st && pos.has_sched) st = put_json(w, "sched", kiln_sched_to_json(&pos.sched));
    if (!st) st = put_json(w, "rng", kiln_rng_state_to_json(kiln_rng_get(l->ctx)));
    kiln_st_writer_meta(w, "format", KILN__CK_FORMAT);
    kiln_st_writer_meta(w, "version", KILN__CK_VERSION);
    kiln_st_writer_meta(w, "kiln_version", KILN_VERSION_STRING);
    kiln_st_writer_metaf(w, "epoch", "%lld", (long long)pos.epoch);
    kiln_st_writer_metaf(w, "iter", "%lld", (long long)pos.iter);
    kiln_st_writer_metaf(w, "n_epochs", "%lld", (long long)pos.n_epochs);
    kiln_st_writer_metaf(w, "n_batches", "%lld", (long long)pos.n_batches);
    kiln_st_writer_metaf(w, "seed", "%llu", (unsigned long long)pos.seed);
    if (l->run_id[0]) kiln_st_writer_meta(w, "run_id", l->run_id);
    if (l->run_settings) kiln_st_writer_meta(w, "run_settings", l->run_settings);
    if (!st) st = kiln_st_writer_save(w, path);
    if (st) kiln__err_prefix(st, "checkpoint_save: ");
    kiln_st_writer_free(w);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------------ */

/* The checkpoint's history and smoothing and the RNG, kept for the resuming fit. */
typedef struct hist {
    kiln_checkpoint_info info;
    kiln_recorder *rec; /* the saved history */
    kiln_ema ema;
    double *lr_mults;   /* (n_mults) */
    bool mults_set;
    kiln_rng_state rng;
    bool armed;
} hist;

/* "checkpoint_load: <path>: <message>". */
__attribute__((format(printf, 3, 4))) static kiln_status fail(kiln_status st, const char *path, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln__err(st, "checkpoint_load: %s: %s", path, msg);
}

kiln_status kiln__ck_meta_num(const kiln_st_file *f, const char *key, char kind, void *out)
{
    const char *v = kiln_st_metadata(f, key);
    char *end = NULL;
    errno = 0;
    if (v && *v && kind == 'd') *(double *)out = strtod(v, &end);
    else if (v && *v) *(uint64_t *)out = kind == 'i' ? (uint64_t)strtoll(v, &end, 10) : strtoull(v, &end, 10);
    if (!v || !*v || *end || (kind != 'd' && errno) || (kind == 'u' && *v == '-'))
        return fail(KILN_STATUS_FORMAT, kiln_st_path(f), "metadata \"%s\" is %s", key, v ? "not a number" : "missing");
    return KILN_STATUS_OK;
}

kiln_status kiln__ck_prefix(kiln_status st, const kiln_st_file *f, const char *key)
{
    char pre[700];
    snprintf(pre, sizeof pre, "checkpoint_load: %s: metadata \"%s\": ", kiln_st_path(f), key);
    return kiln__err_prefix(st, pre);
}

/* Opens path as a checkpoint of a version this kiln reads, version 1 converted. */
static kiln_status open_checkpoint(const char *path, kiln_st_file **out)
{
    kiln_st_file *f;
    kiln_status st = kiln_st_open(path, &f);
    if (st) return kiln__err_prefix(st, "checkpoint_load: ");
    const char *fmt = kiln_st_metadata(f, "format"), *ver = kiln_st_metadata(f, "version");
    if (!fmt)
        st = fail(KILN_STATUS_FORMAT, path,
                  "not a kiln checkpoint (no __metadata__ \"format\"; a state dict loads with kiln_model_load)");
    else if (strcmp(fmt, KILN__CK_FORMAT) != 0)
        st = fail(KILN_STATUS_FORMAT, path, "not a kiln checkpoint (format \"%s\", expected \"%s\")", fmt,
                  KILN__CK_FORMAT);
    else if (ver && !strcmp(ver, "1"))
        st = kiln__ck_v1_upgrade(f);
    else if (!ver || strcmp(ver, KILN__CK_VERSION) != 0)
        st = fail(KILN_STATUS_FORMAT, path,
                  "checkpoint version \"%s\"; this kiln reads versions 1 and %s (a newer kiln wrote it: load it "
                  "with that kiln, or load the weights alone with kiln_model_load_st(model, f, \"model.\", true))",
                  ver ? ver : "(none)", KILN__CK_VERSION);
    if (st) kiln_st_close(f);
    else *out = f;
    return st;
}

/* Position and schedule (what kiln_checkpoint_read_info reports). */
static kiln_status read_header(const kiln_st_file *f, kiln_checkpoint_info *info)
{
    const char *path = kiln_st_path(f);
    memset(info, 0, sizeof *info);
    uint64_t v[5];
    const char *keys[5] = {"epoch", "iter", "n_epochs", "n_batches", "seed"};
    for (int i = 0; i < 5; i++) {
        kiln_status st = kiln__ck_meta_num(f, keys[i], i < 4 ? 'i' : 'u', &v[i]);
        if (st) return st;
    }
    info->epoch = (int64_t)v[0], info->iter = (int64_t)v[1], info->n_epochs = (int64_t)v[2];
    info->n_batches = (int64_t)v[3], info->seed = v[4];
    if (info->epoch < 0 || info->iter < 0 || info->n_epochs < 0 || info->n_batches < 0)
        return fail(KILN_STATUS_FORMAT, path, "negative epoch, iter, n_epochs or n_batches in the metadata");
    const char *rid = kiln_st_metadata(f, "run_id");
    if (rid) {
        size_t n = strlen(rid);
        if (n < 1 || n >= sizeof info->run_id || strspn(rid, "0123456789abcdef") != n)
            return fail(KILN_STATUS_FORMAT, path, "metadata \"run_id\" is not 1 to 32 hex digits");
        memcpy(info->run_id, rid, n + 1);
    }
    const char *sj = kiln_st_metadata(f, "sched");
    if (sj) {
        if (kiln_sched_from_json(sj, &info->sched)) return kiln__ck_prefix(KILN_STATUS_FORMAT, f, "sched");
        info->has_sched = true;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_checkpoint_read_info(const char *path, kiln_checkpoint_info *out)
{
    if (!path || !out) return kiln__err(KILN_STATUS_INVALID, "checkpoint_read_info: NULL argument");
    kiln_st_file *f;
    kiln_status st = open_checkpoint(path, &f);
    if (st) return st;
    st = read_header(f, out);
    kiln_st_close(f);
    return st;
}

/* Appends "name" to a list of at most 4 names ("..." after). */
static void list_add(char *buf, size_t cap, int *count, const char *name)
{
    size_t n = strlen(buf);
    if (++*count <= 4) snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", name);
    else if (*count == 5) snprintf(buf + n, cap - n, ", ...");
}

/* The model's tensors against the file's "model.*" entries: names and shapes. */
static kiln_status check_model(kiln_model *model, const kiln_st_file *f)
{
    kiln_store *s = kiln_model_store(model);
    char missing[512] = "", shapes[1024] = "", extra[512] = "", name[640], a[96], b[96], item[800];
    int n_missing = 0, n_shapes = 0, n_extra = 0;
    for (size_t i = 0; i < kiln_store_count(s); i++) {
        const kiln_tensor *t = kiln_store_at(s, i);
        snprintf(name, sizeof name, "model.%s", t->name);
        kiln_tensor ft;
        kiln_dtype fdt;
        int fnd;
        int64_t fshape[KILN_MAX_DIMS];
        const void *d;
        size_t nbytes;
        if (!kiln_st_has(f, name) || kiln_st_info(f, name, &fdt, &fnd, fshape, &d, &nbytes)) {
            list_add(missing, sizeof missing, &n_missing, t->name);
            continue;
        }
        kiln_tensor_wrap(&ft, KILN_DTYPE_F32, fnd, fshape, NULL);
        if (kiln_same_shape(&ft, t)) continue;
        snprintf(item, sizeof item, "%s %s in the file, %s in the model", t->name, kiln_shape_str(&ft, a, sizeof a),
                 kiln_shape_str(t, b, sizeof b));
        list_add(shapes, sizeof shapes, &n_shapes, n_shapes ? t->name : item); /* shapes of the first one */
    }
    const char *nbt = ".num_batches_tracked";
    for (size_t i = 0; i < kiln_st_count(f); i++) {
        const char *k = kiln_st_name(f, i);
        size_t len = strlen(k), sfx = strlen(nbt);
        if (strncmp(k, "model.", 6) != 0 || (len > sfx && !strcmp(k + len - sfx, nbt))) continue;
        if (!kiln_store_find(s, k + 6)) list_add(extra, sizeof extra, &n_extra, k + 6);
    }
    kiln_clear_error();
    if (!n_missing && !n_shapes && !n_extra) return KILN_STATUS_OK;
    char msg[2100] = "";
    const char *parts[3][2] = {{"missing ", missing}, {"other shapes ", shapes}, {"not in the model ", extra}};
    for (int k = 0; k < 3; k++)
        if (parts[k][1][0])
            snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "%s%s%s", msg[0] ? "; " : "", parts[k][0],
                     parts[k][1]);
    return fail(KILN_STATUS_INVALID, kiln_st_path(f), "saved from a different model (tensors \"model.<name>\"): %s",
                msg);
}

/* Appends ",name" (or "name" first) to buf. */
static void join(char *buf, size_t cap, const char *name)
{
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%s", n ? "," : "", name);
}

/* The learner's part into h (lr multipliers, smoothing) after checking it and requires_grad. */
static kiln_status check_learner(kiln_learner *l, const kiln_st_file *f, hist *h)
{
    static const char *const known[] = {"lr_mults", "mults_set", "smoothing", "metrics", NULL};
    static const char *const eknown[] = {"beta", "avg", "n", NULL};
    const char *path = kiln_st_path(f);
    char who[700];
    snprintf(who, sizeof who, "%s: metadata \"learner\"", path);
    int64_t rshape[1] = {(int64_t)kiln_store_count(kiln_model_store(l->model))};
    kiln_status st = kiln_st_want(f, "learner.requires_grad", KILN_DTYPE_U8, 1, rshape, NULL);
    cJSON *o = NULL;
    const cJSON *m = NULL, *e = NULL;
    if (!st) st = kiln__json_object(who, kiln_st_metadata(f, "learner"), &o);
    if (!st) st = kiln__json_get_node(who, o, "lr_mults", true, false, &m);
    if (!st && cJSON_GetArraySize(m) != l->n_mults)
        st = kiln__err(KILN_STATUS_INVALID, "%s: %d lr multipliers (layer groups) saved, the learner has %d", who,
                       cJSON_GetArraySize(m), l->n_mults);
    h->lr_mults = malloc(((size_t)l->n_mults + 1) * sizeof *h->lr_mults);
    if (!st && !h->lr_mults) st = kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory");
    for (int g = 0; !st && g < l->n_mults; g++) {
        double *v = &h->lr_mults[g];
        if (!(st = kiln__json_f64_of(who, "lr_mults", g, cJSON_GetArrayItem(m, g), v)) && !(*v >= 0 && isfinite(*v)))
            st = kiln__err(KILN_STATUS_FORMAT, "%s: lr multiplier %d is %g", who, g, *v);
    }
    h->mults_set = false;
    if (!st) st = kiln__json_get_bool(who, o, "mults_set", false, &h->mults_set);
    if (!st) st = kiln__json_get_node(who, o, "smoothing", true, true, &e);
    if (!st && !(st = kiln__json_get_f64(who, e, "beta", true, &h->ema.beta)) &&
        !(st = kiln__json_get_f64(who, e, "avg", true, &h->ema.avg)) &&
        !(st = kiln__json_get_i64(who, e, "n", true, &h->ema.n)) && h->ema.n < 0)
        st = kiln__err(KILN_STATUS_FORMAT, "%s: smoothing \"n\" is negative", who);
    const cJSON *ms = NULL;
    if (!st) st = kiln__json_get_node(who, o, "metrics", true, false, &ms);
    char saved[400] = "", mine[400] = "";
    for (const cJSON *v = ms ? ms->child : NULL; !st && v; v = v->next)
        if (cJSON_IsString(v)) join(saved, sizeof saved, kiln__json_quote(v->valuestring, (char[80]){0}, 80));
        else st = kiln__err(KILN_STATUS_FORMAT, "%s: \"metrics\" holds a non-string", who);
    for (int j = 0; j < l->n_metrics; j++) join(mine, sizeof mine, l->metrics[j].name);
    if (!st && strcmp(saved, mine) != 0)
        st = kiln__err(KILN_STATUS_INVALID,
                       "%s: saved with metrics [%s], the learner has [%s] (add the same metrics, or load the "
                       "weights alone with kiln_model_load_st(model, f, \"model.\", true))", path, saved, mine);
    if (!st) kiln__json_warn_unknown(who, o, known), kiln__json_warn_unknown(who, e, eknown);
    cJSON_Delete(o);
    return st;
}

/* Everything, checked against the learner (the model by name and shape only); fills h. */
static kiln_status check(kiln_learner *l, const kiln_st_file *f, hist *h)
{
    const char *path = kiln_st_path(f);
    kiln_status st = read_header(f, &h->info);
    if (st || (st = check_model(l->model, f))) return st;
    if ((st = kiln_optim_check_st(l->opt, f, "optim")) || (st = check_learner(l, f, h)))
        return kiln__err_prefix(st, "checkpoint_load: ");
    if ((st = kiln_rng_state_from_json(kiln_st_metadata(f, "rng"), &h->rng))) return kiln__ck_prefix(st, f, "rng");
    h->rec = kiln__recorder_new();
    if (!h->rec) return kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory");
    if ((st = kiln__recorder_load_st(h->rec, f, "recorder", h->info.n_batches)))
        return kiln__err_prefix(st, "checkpoint_load: ");
    /* the history's metrics against the learner's (its columns) */
    char saved[400] = "", mine[400] = "";
    for (int j = 0; j < kiln_recorder_n_metrics(h->rec); j++) join(saved, sizeof saved, kiln_recorder_metric_name(h->rec, j));
    for (int j = 0; j < l->n_metrics; j++) join(mine, sizeof mine, l->metrics[j].name);
    if (kiln_recorder_n_epochs(h->rec) > 0 && strcmp(saved, mine) != 0)
        return fail(KILN_STATUS_INVALID, path, "history recorded with metrics [%s], the learner has [%s]", saved, mine);
    if (kiln_recorder_n_batches(h->rec) > 0 && kiln_recorder_n_groups(h->rec) != l->n_mults)
        return fail(KILN_STATUS_INVALID, path, "history of %d layer groups, the learner has %d",
                    kiln_recorder_n_groups(h->rec), l->n_mults);
    return KILN_STATUS_OK;
}

/* Refills the learner's recorder and smoothing from h. */
static kiln_status replay(kiln_learner *l, const hist *h)
{
    kiln_status st = kiln__recorder_copy(l->rec, h->rec, l->n_mults, l->n_metrics, l->metrics);
    l->ema = h->ema;
    l->st.smooth_loss = h->ema.n > 0 ? h->ema.avg / (1 - pow(h->ema.beta, (double)h->ema.n)) : NAN;
    return st;
}

static void hist_free(void *user)
{
    hist *h = user;
    if (h) kiln__recorder_free(h->rec), free(h->lr_mults);
    free(h);
}

/* The resuming fit: after the fit's own reset, put the history back (once). */
static kiln_status resume_begin_fit(kiln_learner *l, void *user)
{
    hist *h = user;
    if (!h->armed) return KILN_STATUS_OK;
    h->armed = false;
    return l->st.epoch == h->info.epoch && h->info.epoch > 0 ? replay(l, h) : KILN_STATUS_OK;
}

kiln_status kiln_checkpoint_load(kiln_learner *l, const char *path, kiln_checkpoint_info *info)
{
    if (!l || !path) return kiln__err(KILN_STATUS_INVALID, "checkpoint_load: needs a learner and a path");
    if (l->in_fit) return kiln__err(KILN_STATUS_STATE, "checkpoint_load: not during a fit");
    kiln_st_file *f;
    kiln_status st = open_checkpoint(path, &f);
    if (st) return st;
    hist *h = calloc(1, sizeof *h);
    st = h ? check(l, f, h) : kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory");
    /* the model last: it checks every name and shape before it copies anything */
    if (!st && (st = kiln_model_load_st(l->model, f, "model.", true))) kiln__err_prefix(st, "checkpoint_load: ");
    if (st) {
        kiln_st_close(f);
        hist_free(h);
        return st;
    }
    /* nothing below fails on a checked file (but for memory: the optimizer's groups) */
    if ((st = kiln_optim_load_st(l->opt, f, "optim"))) {
        kiln_st_close(f);
        hist_free(h);
        return kiln__err_prefix(st, "checkpoint_load: ");
    }
    const uint8_t *rd;
    int64_t rshape[1] = {(int64_t)kiln_store_count(kiln_model_store(l->model))};
    kiln_st_want(f, "learner.requires_grad", KILN_DTYPE_U8, 1, rshape, (const void **)&rd);
    kiln_store *s = kiln_model_store(l->model);
    for (size_t i = 0; i < kiln_store_count(s); i++) kiln_store_at(s, i)->requires_grad = rd[i] != 0;
    kiln_st_close(f);
    memcpy(l->lr_mults, h->lr_mults, (size_t)l->n_mults * sizeof *l->lr_mults);
    l->mults_set = h->mults_set;
    kiln_rng_set(l->ctx, h->rng);
    kiln__dist_rank_rng(l); /* rank 0 wrote its stream; rank r goes on with its own */
    /* the next fit goes on with the checkpoint's run (one without an id: a new one then) */
    memcpy(l->run_id, h->info.run_id, sizeof l->run_id);
    l->run_loaded = h->info.run_id[0] != '\0';

    st = replay(l, h);
    if (kiln_learner_callback_user(l, RESUME_CB)) kiln_learner_remove_callback(l, RESUME_CB);
    h->armed = true;
    kiln_callback cb = {.name = RESUME_CB, .begin_fit = resume_begin_fit, .user = h, .free_user = hist_free};
    if (info) *info = h->info;
    kiln_status st2 = kiln_learner_add_callback(l, &cb);
    if (st2) hist_free(h);
    return st ? st : st2;
}

kiln_status kiln_learner_resume(kiln_learner *l, const char *path)
{
    if (!l || !path) return kiln__err(KILN_STATUS_INVALID, "learner_resume: needs a learner and a path");
    kiln_checkpoint_info info;
    kiln_st_file *f;
    kiln_status st = open_checkpoint(path, &f);
    if (st) return st;
    if (!(st = read_header(f, &info)) && !info.has_sched)
        st = kiln__err(KILN_STATUS_INVALID,
                       "learner_resume: %s was saved outside a fit: no schedule to go on with (use "
                       "kiln_checkpoint_load and kiln_learner_fit_ex)", path);
    int64_t nb = kiln_data_n_batches(l->data, KILN_DATA_SPLIT_TRAIN);
    if (!st && nb != info.n_batches)
        st = kiln__err(KILN_STATUS_INVALID,
                       "learner_resume: %s was saved with %lld training batches per epoch, the data now gives %lld",
                       path, (long long)info.n_batches, (long long)nb);
    if (!st && info.seed != l->p.seed)
        st = kiln__err(KILN_STATUS_INVALID, "learner_resume: %s was saved with shuffle seed %llu, the learner %llu",
                       path, (unsigned long long)info.seed, (unsigned long long)l->p.seed);
    if (!st) st = kiln__run_check(l, path, kiln_st_metadata(f, "run_id"), kiln_st_metadata(f, "run_settings"));
    kiln_st_close(f);
    if (!st) st = kiln_checkpoint_load(l, path, &info);
    if (kiln__dist_on(l)) st = kiln_comm_agree(l->comm, st); /* one rank that cannot read it stops all */
    if (st) return st;
    if (info.epoch >= info.n_epochs) return KILN_STATUS_OK;
    kiln_fit_params fp = {.n_epochs = info.n_epochs, .sched = &info.sched, .start_epoch = info.epoch};
    return kiln_learner_fit_ex(l, &fp);
}
