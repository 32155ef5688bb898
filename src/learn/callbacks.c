/* Built-in callbacks (include/kiln/learn.h): fastai's TrackerCallback logic (monitor one
 * value at each epoch end, lower or higher is better, improvement beyond min_delta), early
 * stopping and saving the best model. */
#include "learn_internal.h"

#include <math.h>
#include <string.h>

kiln_monitor_params kiln_monitor_default_params(void)
{
    return (kiln_monitor_params){.monitor = "valid_loss", .mode = KILN_MONITOR_MODE_AUTO, .min_delta = 0, .patience = 1};
}

typedef struct tracker {
    char monitor[128];
    bool lower;     /* lower is better */
    double min_delta;
    int patience;
    int index;      /* -2 train_loss, -1 valid_loss, >= 0 metric index (resolved at begin_fit) */
    double best;
    int64_t best_epoch;
    int wait;
    bool new_best;
    /* save-best */
    char *path;
    int64_t n_saves;
} tracker;

static kiln_status tracker_init(tracker *t, const char *what, const kiln_monitor_params *p)
{
    kiln_monitor_params prm = p ? *p : kiln_monitor_default_params();
    const char *mon = prm.monitor ? prm.monitor : "valid_loss";
    if (strlen(mon) >= sizeof t->monitor)
        return kiln__err(KILN_STATUS_INVALID, "%s: monitor name too long", what);
    if (!(prm.min_delta >= 0)) return kiln__err(KILN_STATUS_INVALID, "%s: min_delta %g < 0", what, prm.min_delta);
    if (prm.patience < 0) return kiln__err(KILN_STATUS_INVALID, "%s: patience %d < 0", what, prm.patience);
    strcpy(t->monitor, mon);
    switch (prm.mode) {
    case KILN_MONITOR_MODE_MIN: t->lower = true; break;
    case KILN_MONITOR_MODE_MAX: t->lower = false; break;
    default: t->lower = strstr(mon, "loss") || strstr(mon, "error"); break; /* fastai's rule */
    }
    t->min_delta = prm.min_delta;
    t->patience = prm.patience;
    return KILN_STATUS_OK;
}

static kiln_status tracker_begin_fit(kiln_learner *l, tracker *t, const char *what)
{
    t->best = t->lower ? INFINITY : -INFINITY;
    t->best_epoch = -1;
    t->wait = 0;
    t->new_best = false;
    if (!strcmp(t->monitor, "valid_loss")) {
        t->index = -1;
        return KILN_STATUS_OK;
    }
    if (!strcmp(t->monitor, "train_loss")) {
        t->index = -2;
        return KILN_STATUS_OK;
    }
    for (int j = 0; j < kiln_learner_n_metrics(l); j++)
        if (!strcmp(kiln_learner_metric_name(l, j), t->monitor)) {
            t->index = j;
            return KILN_STATUS_OK;
        }
    return kiln__err(KILN_STATUS_INVALID, "%s: nothing called '%s' to monitor (valid_loss, train_loss or a metric)",
                     what, t->monitor);
}

/* Updates best; true when this epoch improved on it. */
static bool tracker_end_epoch(kiln_learner *l, tracker *t)
{
    const kiln_fit_state *s = kiln_learner_state(l);
    double v = t->index == -1 ? s->valid_loss : t->index == -2 ? s->train_loss : s->metrics[t->index];
    /* never from a non-finite value (-inf would win) nor an epoch whose validation was non-finite */
    t->new_best = isfinite(v) && !s->valid_nonfinite &&
                  (t->lower ? v + t->min_delta < t->best : v - t->min_delta > t->best);
    if (t->new_best) {
        t->best = v;
        t->best_epoch = s->epoch;
    }
    return t->new_best;
}

/* ---- early stopping ---- */

static kiln_status es_begin_fit(kiln_learner *l, void *user) { return tracker_begin_fit(l, user, "early_stopping"); }

static kiln_status es_end_epoch(kiln_learner *l, void *user)
{
    tracker *t = user;
    if (tracker_end_epoch(l, t)) {
        t->wait = 0;
    } else if (++t->wait >= t->patience) {
        kiln_learner_state(l)->stop_training = true;
        char msg[256];
        snprintf(msg, sizeof msg, "No improvement since epoch %lld: early stopping", (long long)t->best_epoch);
        kiln_progress_message(l->prog, msg);
    }
    return KILN_STATUS_OK;
}

static void tracker_free(void *user)
{
    tracker *t = user;
    if (t) free(t->path);
    free(t);
}

kiln_status kiln_learner_add_early_stopping(kiln_learner *l, const kiln_monitor_params *p)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "early_stopping: learner is NULL");
    tracker *t = calloc(1, sizeof *t);
    if (!t) return kiln__err(KILN_STATUS_NOMEM, "early_stopping: out of memory");
    kiln_status st = tracker_init(t, "early_stopping", p);
    if (st) {
        free(t);
        return st;
    }
    kiln_callback cb = {.name = "early_stopping", .begin_fit = es_begin_fit, .end_epoch = es_end_epoch,
                        .user = t, .free_user = tracker_free};
    if ((st = kiln_learner_add_callback(l, &cb))) free(t);
    return st;
}

/* ---- save best model ---- */

static kiln_status sb_begin_fit(kiln_learner *l, void *user) { return tracker_begin_fit(l, user, "save_best"); }

static kiln_status sb_end_epoch(kiln_learner *l, void *user)
{
    tracker *t = user;
    if (!tracker_end_epoch(l, t)) return KILN_STATUS_OK;
    if (kiln_learner_rank(l) != 0) return KILN_STATUS_OK; /* every rank tracks the best, rank 0 writes it */
    char ep[32], val[64];
    snprintf(ep, sizeof ep, "%lld", (long long)t->best_epoch);
    snprintf(val, sizeof val, "%.9g", t->best);
    const char *meta[] = {"epoch", ep, "monitor", t->monitor, "value", val, NULL};
    kiln_status st = kiln_model_save(kiln_learner_model(l), t->path, meta);
    if (!st) t->n_saves++;
    return st;
}

kiln_status kiln_learner_add_save_best(kiln_learner *l, const char *path, const kiln_monitor_params *p)
{
    if (!l || !path) return kiln__err(KILN_STATUS_INVALID, "save_best: needs a learner and a path");
    tracker *t = calloc(1, sizeof *t);
    if (!t) return kiln__err(KILN_STATUS_NOMEM, "save_best: out of memory");
    kiln_status st = tracker_init(t, "save_best", p);
    if (!st && !(t->path = malloc(strlen(path) + 1))) st = kiln__err(KILN_STATUS_NOMEM, "save_best: out of memory");
    if (st) {
        tracker_free(t);
        return st;
    }
    strcpy(t->path, path);
    kiln_callback cb = {.name = "save_best", .begin_fit = sb_begin_fit, .end_epoch = sb_end_epoch,
                        .user = t, .free_user = tracker_free};
    if ((st = kiln_learner_add_callback(l, &cb))) tracker_free(t);
    return st;
}

kiln_status kiln_save_best_info(kiln_learner *l, double *best, int64_t *best_epoch, int64_t *n_saves)
{
    tracker *t = kiln_learner_callback_user(l, "save_best");
    if (!t) return kiln__err(KILN_STATUS_INVALID, "save_best_info: the learner has no save_best callback");
    if (best) *best = t->best;
    if (best_epoch) *best_epoch = t->best_epoch;
    if (n_saves) *n_saves = t->n_saves;
    return KILN_STATUS_OK;
}
