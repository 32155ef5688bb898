/* Checkpoints: a learner's whole training state in one safetensors file (layout in
 * include/kiln/learn_ext.h), the callback that writes one at epoch ends, and resume.
 *
 * Exactness: a fit's epoch e depends only on the weights, buffers, optimizer state and
 * group hyper-parameters, the RNG (dropout), the schedule and e itself (shuffling is a
 * function of (seed, e), data.h). All of them are saved bit for bit (doubles as their
 * IEEE bits in I64 tensors, since safetensors readers differ on F64, or as %.17g text),
 * so a resumed fit repeats the uninterrupted one exactly.
 *
 * Loading validates everything before it changes anything; the history (recorder, loss
 * smoothing) is put back at once and again, through a one-shot "checkpoint_resume"
 * callback, at the start of the fit that resumes at the checkpoint's epoch (a fit resets
 * both when it starts). */
#include "learn_internal.h"
#include "kiln/learn_ext.h"
#include "nn/nn_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#define CK_FORMAT "kiln-checkpoint"
#define CK_VERSION "1"
#define RESUME_CB "checkpoint_resume"

static int64_t d2b(double d)
{
    int64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static double b2d(const void *p, size_t i) /* element i of possibly unaligned I64 bits */
{
    double d;
    memcpy(&d, (const char *)p + i * sizeof d, sizeof d);
    return d;
}

static int64_t i64_at(const void *p, size_t i)
{
    int64_t v;
    memcpy(&v, (const char *)p + i * sizeof v, sizeof v);
    return v;
}

/* Puts "<prefix>" before the current message. */
static kiln_status prefix_err(kiln_status st, const char *prefix) { return kiln__err_prefix(st, prefix); }

/* ---- writing ------------------------------------------------------------------------------------ */

typedef struct writer {
    kiln_st_entry *e; /* (cap) */
    kiln_tensor *t;   /* (cap) wrappers the entries point at */
    char **names;     /* (cap) owned */
    void **bufs;      /* (cap) owned data copies, NULL where borrowed */
    size_t n, cap;
} writer;

static void writer_free(writer *w)
{
    for (size_t i = 0; i < w->n; i++) free(w->names[i]), free(w->bufs[i]);
    free(w->e), free(w->t), free(w->names), free(w->bufs);
}

/* Adds an entry over data (borrowed, or owned when own: freed with the writer). */
static kiln_status put(writer *w, const char *name, kiln_dtype dt, int ndim, const int64_t *shape, void *data, bool own)
{
    size_t len = strlen(name) + 1;
    char *nm = malloc(len);
    if (!nm || w->n == w->cap) {
        free(nm);
        if (own) free(data);
        return kiln__err(KILN_STATUS_NOMEM, "checkpoint_save: out of memory");
    }
    memcpy(nm, name, len);
    kiln_tensor_wrap(&w->t[w->n], dt, ndim, shape, data);
    w->names[w->n] = nm;
    w->bufs[w->n] = own ? data : NULL;
    w->e[w->n] = (kiln_st_entry){.name = nm, .t = &w->t[w->n]};
    w->n++;
    return KILN_STATUS_OK;
}

/* rows x cols doubles (src[r][c]) as an owned I64 bit tensor: (rows*cols) when ndim is 1,
 * else (rows, cols). */
static kiln_status put_f64(writer *w, const char *name, int ndim, int64_t rows, int64_t cols, const double *const *src)
{
    int64_t n = rows * cols;
    int64_t *b = malloc((size_t)(n ? n : 1) * sizeof *b);
    if (!b) return kiln__err(KILN_STATUS_NOMEM, "checkpoint_save: out of memory");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) b[r * cols + c] = d2b(src[r][c]);
    int64_t shape[2] = {ndim == 1 ? n : rows, cols};
    return put(w, name, KILN_DTYPE_I64, ndim, shape, b, true);
}

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

static kiln_status put_recorder(writer *w, kiln_recorder *r, int nm)
{
    int64_t nb = kiln_recorder_n_batches(r), ne = kiln_recorder_n_epochs(r);
    int g = kiln_recorder_n_groups(r);
    kiln_status st = KILN_STATUS_OK;
    if (nb > 0) {
        const double *rows[64];
        int64_t shape[1] = {nb};
        int64_t *it = malloc((size_t)nb * sizeof *it);
        if (!it) return kiln__err(KILN_STATUS_NOMEM, "checkpoint_save: out of memory");
        memcpy(it, kiln_recorder_iters(r), (size_t)nb * sizeof *it);
        if ((st = put(w, "recorder.iters", KILN_DTYPE_I64, 1, shape, it, true))) return st;
        rows[0] = kiln_recorder_losses(r);
        if ((st = put_f64(w, "recorder.losses", 1, 1, nb, rows))) return st;
        rows[0] = kiln_recorder_smooth_losses(r);
        if ((st = put_f64(w, "recorder.smooth_losses", 1, 1, nb, rows))) return st;
        if (g > 64) return kiln__err(KILN_STATUS_UNSUPPORTED, "checkpoint_save: more than 64 layer groups");
        for (int k = 0; k < g; k++) rows[k] = kiln_recorder_lrs(r, k);
        if ((st = put_f64(w, "recorder.lrs", 2, g, nb, rows))) return st;
        for (int k = 0; k < g; k++) rows[k] = kiln_recorder_moms(r, k);
        if ((st = put_f64(w, "recorder.moms", 2, g, nb, rows))) return st;
    }
    if (ne > 0) {
        int64_t cols = 3 + nm, shape[2] = {ne, 2};
        int64_t *ids = malloc((size_t)ne * 2 * sizeof *ids);
        double *vals = malloc((size_t)(ne * cols) * sizeof *vals);
        const double **rows = malloc((size_t)ne * sizeof *rows);
        if (!ids || !vals || !rows) {
            free(ids), free(vals), free(rows);
            return kiln__err(KILN_STATUS_NOMEM, "checkpoint_save: out of memory");
        }
        for (int64_t i = 0; i < ne; i++) {
            kiln_epoch_record er;
            kiln_recorder_epoch(r, i, &er);
            ids[2 * i] = er.epoch, ids[2 * i + 1] = er.iter;
            double *v = vals + i * cols;
            v[0] = er.train_loss, v[1] = er.valid_loss, v[2] = er.seconds;
            for (int j = 0; j < nm; j++) v[3 + j] = er.metrics[j];
            rows[i] = v;
        }
        st = put(w, "recorder.epochs", KILN_DTYPE_I64, 2, shape, ids, true);
        if (!st) st = put_f64(w, "recorder.epoch_values", 2, ne, cols, rows);
        free(vals), free(rows);
    }
    return st;
}

typedef struct meta_buf {
    const char *kv[64]; /* key, value, ..., NULL */
    char val[32][40];
    int n, nv;
} meta_buf;

/* Adds key = printf(fmt, ...) (fmt NULL: the string given as the one argument). */
__attribute__((format(printf, 3, 4))) static void meta_add(meta_buf *m, const char *k, const char *fmt, ...)
{
    if (m->n + 3 > 64 || m->nv == 32) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->val[m->nv], sizeof m->val[0], fmt, ap);
    va_end(ap);
    m->kv[m->n++] = k, m->kv[m->n++] = m->val[m->nv++], m->kv[m->n] = NULL;
}

/* Metric names joined by ',' (malloc'd). */
static char *metric_names(kiln_learner *l)
{
    size_t n = 1;
    for (int j = 0; j < l->n_metrics; j++) n += strlen(l->metrics[j].name) + 1;
    char *s = malloc(n);
    if (!s) return NULL;
    s[0] = '\0';
    for (int j = 0; j < l->n_metrics; j++) {
        if (j) strcat(s, ",");
        strcat(s, l->metrics[j].name);
    }
    return s;
}

kiln_status kiln_checkpoint_save(kiln_learner *l, const char *path)
{
    if (!l || !path) return kiln__err(KILN_STATUS_INVALID, "checkpoint_save: needs a learner and a path");
    kiln_model *model = l->model;
    kiln_store *s = kiln_model_store(model);
    size_t n_store = kiln_store_count(s), n_opt = kiln_optim_state_count(l->opt);
    writer w = {.cap = n_store + model->n_mods + n_opt + 16};
    w.e = calloc(w.cap, sizeof *w.e), w.t = calloc(w.cap, sizeof *w.t);
    w.names = calloc(w.cap, sizeof *w.names), w.bufs = calloc(w.cap, sizeof *w.bufs);
    char *mnames = metric_names(l);
    kiln_status st = !w.e || !w.t || !w.names || !w.bufs || !mnames
                         ? kiln__err(KILN_STATUS_NOMEM, "checkpoint_save: out of memory")
                         : KILN_STATUS_OK;
    char name[640];
    /* model: the store in declaration order, then BatchNorm counters */
    for (size_t i = 0; !st && i < n_store; i++) {
        kiln_tensor *t = kiln_store_at(s, i);
        snprintf(name, sizeof name, "model.%s", t->name);
        st = put(&w, name, KILN_DTYPE_F32, t->ndim, t->shape, t->data, false);
    }
    for (size_t i = 0; !st && i < model->n_mods; i++) {
        kiln_module *m = model->mods[i];
        if (m->kind != KILN_MODULE_BATCH_NORM1D && m->kind != KILN_MODULE_BATCH_NORM2D) continue;
        snprintf(name, sizeof name, "model.%s.num_batches_tracked", m->path);
        st = put(&w, name, KILN_DTYPE_I64, 0, NULL, &m->num_batches_tracked, false);
    }
    /* optimizer */
    for (size_t i = 0; !st && i < n_opt; i++) {
        kiln_optim_state e;
        if ((st = kiln_optim_state_at(l->opt, i, &e))) break;
        snprintf(name, sizeof name, "optim.%s", e.name);
        int64_t shape[1] = {(int64_t)e.numel};
        st = put(&w, name, e.dtype, 1, shape, e.data, false);
    }
    int ng = kiln_optim_n_groups(l->opt);
    double *gv = malloc((size_t)ng * 4 * sizeof *gv);
    const double **gr = malloc((size_t)ng * sizeof *gr);
    if (!st && (!gv || !gr)) st = kiln__err(KILN_STATUS_NOMEM, "checkpoint_save: out of memory");
    for (int g = 0; !st && g < ng; g++) {
        kiln_optim_group h;
        if ((st = kiln_optim_get_group(l->opt, g, &h))) break;
        gv[4 * g] = h.lr, gv[4 * g + 1] = h.mom, gv[4 * g + 2] = h.wd, gv[4 * g + 3] = h.frozen;
        gr[g] = gv + 4 * g;
    }
    if (!st) st = put_f64(&w, "optim.groups", 2, ng, 4, gr);
    free(gv), free(gr);
    /* learner */
    const double *mr[1] = {l->lr_mults};
    if (!st) st = put_f64(&w, "learner.lr_mults", 1, 1, l->n_mults, mr);
    uint8_t *rg = malloc(n_store ? n_store : 1);
    if (!st && !rg) st = kiln__err(KILN_STATUS_NOMEM, "checkpoint_save: out of memory");
    for (size_t i = 0; !st && i < n_store; i++) rg[i] = kiln_store_at(s, i)->requires_grad;
    int64_t rshape[1] = {(int64_t)n_store};
    if (!st) st = put(&w, "learner.requires_grad", KILN_DTYPE_U8, 1, rshape, rg, true);
    else free(rg);
    if (!st) st = put_recorder(&w, l->rec, l->n_metrics);
    kiln_checkpoint_info pos;
    position(l, &pos);
    int64_t sshape[1] = {(int64_t)sizeof(kiln_sched)};
    if (!st && pos.has_sched) st = put(&w, "sched", KILN_DTYPE_U8, 1, sshape, &pos.sched, false);

    meta_buf m = {0};
    kiln_rng_state rng = kiln_rng_get(l->ctx);
    meta_add(&m, "format", "%s", CK_FORMAT);
    meta_add(&m, "version", "%s", CK_VERSION);
    meta_add(&m, "kiln_version", "%s", KILN_VERSION_STRING);
    meta_add(&m, "epoch", "%lld", (long long)pos.epoch);
    meta_add(&m, "iter", "%lld", (long long)pos.iter);
    meta_add(&m, "n_epochs", "%lld", (long long)pos.n_epochs);
    meta_add(&m, "n_batches", "%lld", (long long)pos.n_batches);
    meta_add(&m, "seed", "%llu", (unsigned long long)pos.seed);
    meta_add(&m, "rng_seed", "%llu", (unsigned long long)rng.seed);
    meta_add(&m, "rng_counter", "%llu", (unsigned long long)rng.counter);
    meta_add(&m, "optim", "%s", kiln_optim_kind_name(kiln_optim_get_kind(l->opt)));
    if (pos.has_sched) meta_add(&m, "sched_policy", "%s", kiln_sched_policy_name(pos.sched.policy));
    meta_add(&m, "ema_beta", "%.17g", l->ema.beta);
    meta_add(&m, "ema_avg", "%.17g", l->ema.avg);
    meta_add(&m, "ema_n", "%lld", (long long)l->ema.n);
    meta_add(&m, "mults_set", "%d", (int)l->mults_set);
    meta_add(&m, "recorder_batches", "%lld", (long long)kiln_recorder_n_batches(l->rec));
    meta_add(&m, "recorder_epochs", "%lld", (long long)kiln_recorder_n_epochs(l->rec));
    meta_add(&m, "recorder_groups", "%d", kiln_recorder_n_groups(l->rec));
    if (m.n + 3 <= 64) m.kv[m.n++] = "metrics", m.kv[m.n++] = mnames ? mnames : "", m.kv[m.n] = NULL;
    if (l->run_id[0] && m.n + 3 <= 64) m.kv[m.n++] = "run_id", m.kv[m.n++] = l->run_id, m.kv[m.n] = NULL;
    if (l->run_settings && m.n + 3 <= 64)
        m.kv[m.n++] = "run_settings", m.kv[m.n++] = l->run_settings, m.kv[m.n] = NULL;
    if (!st) st = kiln_st_save(path, w.e, w.n, m.kv);
    if (st) prefix_err(st, "checkpoint_save: ");
    free(mnames);
    writer_free(&w);
    return st;
}

/* ---- reading ------------------------------------------------------------------------------------ */

/* The checkpoint's history and position, kept for the resuming fit. */
typedef struct hist {
    kiln_checkpoint_info info;
    int64_t nb, ne;
    int g, nm;
    const void *iters, *losses, *smooth, *lrs, *moms, *ep_ids, *ep_vals; /* in the mapping while loading */
    int64_t *buf;   /* owned copy of all of them, laid out in that order */
    kiln_ema ema;
    struct { uint64_t seed, counter; } rng;
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

/* Metadata key as an integer (kind 'i'), unsigned ('u', into uint64_t) or double ('d'). */
static kiln_status meta_num(const kiln_st_file *f, const char *key, char kind, void *out)
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

/* Tensor name must exist with dtype dt and shape (ndim, shape); *data gets its bytes. */
static kiln_status want(const kiln_st_file *f, const char *name, kiln_dtype dt, int ndim, const int64_t *shape,
                        const void **data)
{
    const char *path = kiln_st_path(f);
    if (!kiln_st_has(f, name))
        return fail(KILN_STATUS_INVALID, path, "tensor \"%s\" is missing", name);
    kiln_tensor got, need;
    kiln_dtype gdt;
    int gnd;
    int64_t gshape[KILN_MAX_DIMS];
    size_t nbytes;
    kiln_status st = kiln_st_info(f, name, &gdt, &gnd, gshape, data, &nbytes);
    if (st) return st;
    if (gdt != dt)
        return fail(KILN_STATUS_INVALID, path, "tensor \"%s\" is %s, expected %s", name, kiln_dtype_name(gdt),
                    kiln_dtype_name(dt));
    kiln_tensor_wrap(&got, dt, gnd, gshape, NULL);
    kiln_tensor_wrap(&need, dt, ndim, shape, NULL);
    char a[96], b[96];
    if (!kiln_same_shape(&got, &need))
        return fail(KILN_STATUS_INVALID, path, "tensor \"%s\" has shape %s, the learner needs %s", name,
                    kiln_shape_str(&got, a, sizeof a), kiln_shape_str(&need, b, sizeof b));
    return KILN_STATUS_OK;
}

/* The bytes of a tensor known to be there. */
static const void *view(const kiln_st_file *f, const char *name)
{
    kiln_tensor t;
    const void *d = NULL;
    size_t nbytes;
    kiln_st_info(f, name, &t.dtype, &t.ndim, t.shape, &d, &nbytes);
    return d;
}

/* Format, version and position (what kiln_checkpoint_read_info reports). */
static kiln_status read_header(const kiln_st_file *f, kiln_checkpoint_info *info)
{
    const char *path = kiln_st_path(f);
    const char *fmt = kiln_st_metadata(f, "format");
    if (!fmt)
        return fail(KILN_STATUS_FORMAT, path,
                    "not a kiln checkpoint (no __metadata__ \"format\"; a state dict loads with kiln_model_load)");
    if (strcmp(fmt, CK_FORMAT) != 0)
        return fail(KILN_STATUS_FORMAT, path, "not a kiln checkpoint (format \"%s\", expected \"%s\")", fmt, CK_FORMAT);
    const char *ver = kiln_st_metadata(f, "version");
    if (!ver || strcmp(ver, CK_VERSION) != 0)
        return fail(KILN_STATUS_FORMAT, path, "checkpoint version \"%s\"; this kiln reads version %s",
                    ver ? ver : "(none)", CK_VERSION);
    memset(info, 0, sizeof *info);
    uint64_t v[5];
    const char *keys[5] = {"epoch", "iter", "n_epochs", "n_batches", "seed"};
    for (int i = 0; i < 5; i++) {
        kiln_status st = meta_num(f, keys[i], i < 4 ? 'i' : 'u', &v[i]);
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
    const char *pol = kiln_st_metadata(f, "sched_policy");
    if (pol) {
        const void *d;
        int64_t shape[1] = {(int64_t)sizeof(kiln_sched)};
        kiln_status st = want(f, "sched", KILN_DTYPE_U8, 1, shape, &d);
        if (st) return st;
        memcpy(&info->sched, d, sizeof info->sched);
        double lr;
        if ((unsigned)info->sched.policy >= KILN_SCHED_POLICY_COUNT ||
            strcmp(kiln_sched_policy_name(info->sched.policy), pol) != 0 || kiln_sched_at(&info->sched, 0, &lr, NULL))
            return fail(KILN_STATUS_FORMAT, path, "the saved \"%s\" schedule is not valid here", pol);
        info->has_sched = true;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_checkpoint_read_info(const char *path, kiln_checkpoint_info *out)
{
    if (!path || !out) return kiln__err(KILN_STATUS_INVALID, "checkpoint_read_info: NULL argument");
    kiln_st_file *f;
    kiln_status st = kiln_st_open(path, &f);
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

/* Everything, checked against the learner (the model by name and shape only); fills h
 * (views into f). */
static kiln_status check(kiln_learner *l, const kiln_st_file *f, hist *h)
{
    const char *path = kiln_st_path(f);
    kiln_status st = read_header(f, &h->info);
    if (st || (st = check_model(l->model, f))) return st;
    const char *kind = kiln_st_metadata(f, "optim"), *mine = kiln_optim_kind_name(kiln_optim_get_kind(l->opt));
    if (!kind || strcmp(kind, mine) != 0)
        return fail(KILN_STATUS_INVALID, path, "saved with optimizer \"%s\", the learner has \"%s\"",
                    kind ? kind : "(none)", mine);
    char name[640];
    for (size_t i = 0; i < kiln_optim_state_count(l->opt); i++) {
        kiln_optim_state e;
        const void *d;
        if ((st = kiln_optim_state_at(l->opt, i, &e))) return st;
        snprintf(name, sizeof name, "optim.%s", e.name);
        int64_t shape[1] = {(int64_t)e.numel};
        if ((st = want(f, name, e.dtype, 1, shape, &d))) return st;
        for (size_t k = 0; e.dtype == KILN_DTYPE_I64 && k < e.numel; k++)
            if (i64_at(d, k) < 0) return fail(KILN_STATUS_FORMAT, path, "\"%s\" has a negative step", name);
    }
    int ng = kiln_optim_n_groups(l->opt);
    const void *gd, *md, *rd;
    int64_t gshape[2] = {ng, 4}, mshape[1] = {l->n_mults};
    int64_t rshape[1] = {(int64_t)kiln_store_count(kiln_model_store(l->model))};
    if ((st = want(f, "optim.groups", KILN_DTYPE_I64, 2, gshape, &gd))) return st;
    for (int g = 0; g < ng; g++) {
        double lr = b2d(gd, 4 * g), mom = b2d(gd, 4 * g + 1), wd = b2d(gd, 4 * g + 2);
        if (!(lr >= 0 && isfinite(lr) && mom >= 0 && mom < 1 && wd >= 0 && isfinite(wd)))
            return fail(KILN_STATUS_FORMAT, path, "optimizer group %d has lr %g, mom %g, wd %g", g, lr, mom, wd);
    }
    if ((st = want(f, "learner.lr_mults", KILN_DTYPE_I64, 1, mshape, &md))) return st;
    for (int g = 0; g < l->n_mults; g++)
        if (!(b2d(md, g) >= 0 && isfinite(b2d(md, g))))
            return fail(KILN_STATUS_FORMAT, path, "lr multiplier %d is %g", g, b2d(md, g));
    if ((st = want(f, "learner.requires_grad", KILN_DTYPE_U8, 1, rshape, &rd))) return st;
    /* history */
    uint64_t nb, ne, g, n;
    if ((st = meta_num(f, "recorder_batches", 'i', &nb)) || (st = meta_num(f, "recorder_epochs", 'i', &ne)) ||
        (st = meta_num(f, "recorder_groups", 'i', &g)) || (st = meta_num(f, "ema_n", 'i', &n)) ||
        (st = meta_num(f, "ema_beta", 'd', &h->ema.beta)) || (st = meta_num(f, "ema_avg", 'd', &h->ema.avg)) ||
        (st = meta_num(f, "rng_seed", 'u', &h->rng.seed)) ||
        (st = meta_num(f, "rng_counter", 'u', &h->rng.counter)))
        return st;
    h->nb = (int64_t)nb, h->ne = (int64_t)ne, h->g = (int)g, h->nm = l->n_metrics, h->ema.n = (int64_t)n;
    if (h->nb < 0 || h->ne < 0 || h->g < 0 || h->g > 64 || h->ema.n < 0)
        return fail(KILN_STATUS_FORMAT, path, "bad recorder or smoothing sizes in the metadata");
    const char *ms = kiln_st_metadata(f, "metrics");
    char *mine_ms = metric_names(l);
    if (!mine_ms) return kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory");
    bool same = ms && !strcmp(ms, mine_ms);
    if (!same)
        fail(KILN_STATUS_INVALID, path,
                  "saved with metrics [%s], the learner has [%s] (add the same metrics, or load the "
                  "weights alone with kiln_model_load_st(model, f, \"model.\", true))", ms ? ms : "", mine_ms);
    free(mine_ms);
    if (!same) return KILN_STATUS_INVALID;
    if (h->nb > 0) {
        if (h->g != l->n_mults)
            return fail(KILN_STATUS_INVALID, path, "history of %d layer groups, the learner has %d", h->g, l->n_mults);
        int64_t s1[1] = {h->nb}, s2[2] = {h->g, h->nb};
        if ((st = want(f, "recorder.iters", KILN_DTYPE_I64, 1, s1, &h->iters)) ||
            (st = want(f, "recorder.losses", KILN_DTYPE_I64, 1, s1, &h->losses)) ||
            (st = want(f, "recorder.smooth_losses", KILN_DTYPE_I64, 1, s1, &h->smooth)) ||
            (st = want(f, "recorder.lrs", KILN_DTYPE_I64, 2, s2, &h->lrs)) ||
            (st = want(f, "recorder.moms", KILN_DTYPE_I64, 2, s2, &h->moms)))
            return st;
    }
    if (h->ne > 0) {
        int64_t s1[2] = {h->ne, 2}, s2[2] = {h->ne, 3 + h->nm};
        if ((st = want(f, "recorder.epochs", KILN_DTYPE_I64, 2, s1, &h->ep_ids)) ||
            (st = want(f, "recorder.epoch_values", KILN_DTYPE_I64, 2, s2, &h->ep_vals)))
            return st;
    }
    return KILN_STATUS_OK;
}

/* Copies the history out of the mapping so it outlives the file. */
static kiln_status own_history(hist *h)
{
    size_t nb = (size_t)h->nb, g = (size_t)h->g, ne = (size_t)h->ne, nm = (size_t)h->nm;
    size_t sizes[7] = {nb, nb, nb, g * nb, g * nb, 2 * ne, (3 + nm) * ne}, total = 0;
    for (int i = 0; i < 7; i++) total += sizes[i];
    h->buf = malloc((total ? total : 1) * sizeof(int64_t));
    if (!h->buf) return kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory");
    const void **src[7] = {&h->iters, &h->losses, &h->smooth, &h->lrs, &h->moms, &h->ep_ids, &h->ep_vals};
    int64_t *p = h->buf;
    for (int i = 0; i < 7; i++) {
        if (sizes[i]) memcpy(p, *src[i], sizes[i] * sizeof(int64_t));
        *src[i] = p;
        p += sizes[i];
    }
    return KILN_STATUS_OK;
}

/* Refills the learner's recorder and smoothing from h. */
static kiln_status replay(kiln_learner *l, const hist *h)
{
    int g = h->nb > 0 ? h->g : l->n_mults;
    kiln_status st = kiln__recorder_reset(l->rec, g, l->n_metrics, l->metrics);
    double lrs[64], moms[64], *mets = malloc(((size_t)h->nm + 1) * sizeof *mets);
    if (!mets) return kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory");
    int64_t bpe = h->info.n_batches > 0 ? h->info.n_batches : 1;
    for (int64_t i = 0; !st && i < h->nb; i++) {
        for (int k = 0; k < g; k++) {
            lrs[k] = b2d(h->lrs, (size_t)(k * h->nb + i));
            moms[k] = b2d(h->moms, (size_t)(k * h->nb + i));
        }
        int64_t it = i64_at(h->iters, (size_t)i);
        double loss = b2d(h->losses, (size_t)i), smooth = b2d(h->smooth, (size_t)i);
        st = kiln__recorder_add_batch(l->rec, it, it / bpe, loss, smooth, lrs, moms);
    }
    size_t cols = 3 + (size_t)h->nm;
    for (int64_t i = 0; !st && i < h->ne; i++) {
        for (int j = 0; j < h->nm; j++) mets[j] = b2d(h->ep_vals, (size_t)i * cols + 3 + (size_t)j);
        st = kiln__recorder_add_epoch(l->rec, i64_at(h->ep_ids, 2 * (size_t)i), i64_at(h->ep_ids, 2 * (size_t)i + 1),
                                      b2d(h->ep_vals, (size_t)i * cols), b2d(h->ep_vals, (size_t)i * cols + 1), mets,
                                      b2d(h->ep_vals, (size_t)i * cols + 2));
    }
    free(mets);
    l->ema = h->ema;
    l->st.smooth_loss = h->ema.n > 0 ? h->ema.avg / (1 - pow(h->ema.beta, (double)h->ema.n)) : NAN;
    return st;
}

static void hist_free(void *user)
{
    hist *h = user;
    if (h) free(h->buf);
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
    kiln_status st = kiln_st_open(path, &f);
    if (st) return prefix_err(st, "checkpoint_load: ");
    hist *h = calloc(1, sizeof *h);
    if (!h) {
        kiln_st_close(f);
        return kiln__err(KILN_STATUS_NOMEM, "checkpoint_load: out of memory");
    }
    st = check(l, f, h);
    if (!st) st = own_history(h);
    /* the model last: it checks every name and shape before it copies anything */
    if (!st && (st = kiln_model_load_st(l->model, f, "model.", true)))
        prefix_err(st, "checkpoint_load: ");
    if (st) {
        kiln_st_close(f);
        hist_free(h);
        return st;
    }
    /* nothing below fails on a checked file */
    char name[640];
    for (size_t i = 0; i < kiln_optim_state_count(l->opt); i++) {
        kiln_optim_state e;
        kiln_optim_state_at(l->opt, i, &e);
        snprintf(name, sizeof name, "optim.%s", e.name);
        memcpy(e.data, view(f, name), e.numel * kiln_dtype_size(e.dtype));
    }
    const void *gd = view(f, "optim.groups"), *md = view(f, "learner.lr_mults");
    const uint8_t *rd = view(f, "learner.requires_grad");
    for (int g = 0; g < kiln_optim_n_groups(l->opt); g++) {
        kiln_optim_set_lr(l->opt, g, b2d(gd, 4 * (size_t)g));
        kiln_optim_set_mom(l->opt, g, b2d(gd, 4 * (size_t)g + 1));
        kiln_optim_set_wd(l->opt, g, b2d(gd, 4 * (size_t)g + 2));
        kiln_optim_set_frozen(l->opt, g, b2d(gd, 4 * (size_t)g + 3) != 0);
    }
    for (int g = 0; g < l->n_mults; g++) l->lr_mults[g] = b2d(md, (size_t)g);
    const char *ms = kiln_st_metadata(f, "mults_set");
    l->mults_set = ms && !strcmp(ms, "1");
    kiln_store *s = kiln_model_store(l->model);
    for (size_t i = 0; i < kiln_store_count(s); i++) kiln_store_at(s, i)->requires_grad = rd[i] != 0;
    kiln_rng_set(l->ctx, (kiln_rng_state){.seed = h->rng.seed, .counter = h->rng.counter});
    kiln_st_close(f);
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
    kiln_status st = kiln_checkpoint_read_info(path, &info);
    if (st) return st;
    if (!info.has_sched)
        return kiln__err(KILN_STATUS_INVALID,
                         "learner_resume: %s was saved outside a fit: no schedule to go on with (use "
                         "kiln_checkpoint_load and kiln_learner_fit_ex)", path);
    int64_t nb = kiln_data_n_batches(l->data, KILN_DATA_SPLIT_TRAIN);
    if (nb != info.n_batches)
        return kiln__err(KILN_STATUS_INVALID,
                         "learner_resume: %s was saved with %lld training batches per epoch, the data now gives %lld",
                         path, (long long)info.n_batches, (long long)nb);
    if (info.seed != l->p.seed)
        return kiln__err(KILN_STATUS_INVALID, "learner_resume: %s was saved with shuffle seed %llu, the learner %llu",
                         path, (unsigned long long)info.seed, (unsigned long long)l->p.seed);
    kiln_st_file *f;
    if ((st = kiln_st_open(path, &f))) return prefix_err(st, "learner_resume: ");
    st = kiln__run_check(l, path, kiln_st_metadata(f, "run_id"), kiln_st_metadata(f, "run_settings"));
    kiln_st_close(f);
    if (st) return st;
    if ((st = kiln_checkpoint_load(l, path, &info))) return st;
    if (info.epoch >= info.n_epochs) return KILN_STATUS_OK;
    kiln_fit_params fp = {.n_epochs = info.n_epochs, .sched = &info.sched, .start_epoch = info.epoch};
    return kiln_learner_fit_ex(l, &fp);
}

/* ---- the checkpointing callback ----------------------------------------------------------------- */

typedef struct ckpt_cb {
    char *pre, *post; /* pattern: pre + number + post; file/dir: pre is the whole path */
    bool pattern, zero;
    int width, every;
    char *last;
} ckpt_cb;

static void ckpt_free(void *user)
{
    ckpt_cb *c = user;
    if (!c) return;
    free(c->pre), free(c->post), free(c->last);
    free(c);
}

/* Splits a pattern at its one %d / %Nd / %0Nd into pre and post; "%%" stands for "%". */
static kiln_status parse_pattern(ckpt_cb *c, const char *path)
{
    size_t n = strlen(path), k = 0, cut = 0;
    char *out = malloc(n + 1);
    if (!out) return kiln__err(KILN_STATUS_NOMEM, "add_checkpointing: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (path[i] != '%' || path[i + 1] == '%') {
            out[k++] = path[i];
            i += path[i] == '%';
            continue;
        }
        size_t j = i + 1;
        int width = 0;
        while (path[j] >= '0' && path[j] <= '9' && width < 100) width = width * 10 + (path[j++] - '0');
        if (path[j] != 'd' || c->pattern) {
            free(out);
            return kiln__err(KILN_STATUS_INVALID, "add_checkpointing: path \"%s\": one %%d (or %%0Nd) at most, "
                             "other %% as %%%%", path);
        }
        c->pattern = true, c->zero = path[i + 1] == '0', c->width = width, cut = k;
        i = j;
    }
    out[k] = '\0';
    if (c->pattern) {
        if (!(c->post = strdup(out + cut)))
            return free(out), kiln__err(KILN_STATUS_NOMEM, "add_checkpointing: out of memory");
        out[cut] = '\0';
    }
    memcpy(c->pre, out, strlen(out) + 1); /* pre has room for the whole path */
    free(out);
    return KILN_STATUS_OK;
}

/* A fit from epoch 0 with one overwritten file: the file becomes this run's at once (its
 * starting state), so a stale checkpoint of another run never stands for this one. */
static kiln_status ckpt_begin_fit(kiln_learner *l, void *user)
{
    ckpt_cb *c = user;
    if (c->pattern || l->st.epoch != 0) return KILN_STATUS_OK;
    kiln_status st = kiln_checkpoint_save(l, c->pre);
    if (st) return st;
    free(c->last);
    c->last = strdup(c->pre);
    return c->last ? KILN_STATUS_OK : kiln__err(KILN_STATUS_NOMEM, "checkpointing: out of memory");
}

static kiln_status ckpt_end_epoch(kiln_learner *l, void *user)
{
    ckpt_cb *c = user;
    int64_t done = l->st.epoch + 1;
    if (done % c->every != 0 && done != l->st.n_epochs) return KILN_STATUS_OK;
    size_t n = strlen(c->pre) + (c->post ? strlen(c->post) : 0) + 160;
    char *path = malloc(n);
    if (!path) return kiln__err(KILN_STATUS_NOMEM, "checkpointing: out of memory");
    if (!c->pattern) snprintf(path, n, "%s", c->pre);
    else if (c->zero) snprintf(path, n, "%s%0*lld%s", c->pre, c->width, (long long)done, c->post);
    else snprintf(path, n, "%s%*lld%s", c->pre, c->width, (long long)done, c->post);
    kiln_status st = kiln_checkpoint_save(l, path);
    if (st) {
        free(path);
        return st;
    }
    free(c->last);
    c->last = path;
    return KILN_STATUS_OK;
}

kiln_status kiln_learner_add_checkpointing(kiln_learner *l, const char *path, int every_n)
{
    if (!l || !path || !*path) return kiln__err(KILN_STATUS_INVALID, "add_checkpointing: needs a learner and a path");
    if (every_n < 1) return kiln__err(KILN_STATUS_INVALID, "add_checkpointing: every_n %d must be >= 1", every_n);
    if (kiln_learner_callback_user(l, "checkpointing"))
        return kiln__err(KILN_STATUS_STATE, "add_checkpointing: the learner already has a 'checkpointing' callback");
    ckpt_cb *c = calloc(1, sizeof *c);
    if (c) c->pre = malloc(strlen(path) + 32);
    if (!c || !c->pre) {
        ckpt_free(c);
        return kiln__err(KILN_STATUS_NOMEM, "add_checkpointing: out of memory");
    }
    c->every = every_n;
    kiln_status st = parse_pattern(c, path);
    struct stat sb;
    size_t m = st ? 0 : strlen(c->pre);
    bool slash = m && c->pre[m - 1] == '/';
    if (!st && !c->pattern && (slash || (stat(c->pre, &sb) == 0 && S_ISDIR(sb.st_mode))))
        strcat(c->pre, slash ? "checkpoint.safetensors" : "/checkpoint.safetensors");
    kiln_callback cb = {.name = "checkpointing", .begin_fit = ckpt_begin_fit, .end_epoch = ckpt_end_epoch, .user = c,
                        .free_user = ckpt_free};
    if (!st) st = kiln_learner_add_callback(l, &cb);
    if (st) ckpt_free(c);
    return st;
}

const char *kiln_checkpointing_last_path(kiln_learner *l)
{
    ckpt_cb *c = l ? kiln_learner_callback_user(l, "checkpointing") : NULL;
    return c ? c->last : NULL;
}
