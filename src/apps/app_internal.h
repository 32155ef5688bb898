/* Internal to src/apps: the application object a task's constructor attaches to its learner
 * (kiln_learner_attach): the task, what the learner owns (model, optimizer), and the task's
 * part: its description and how it is exported. Task-neutral calls (kiln_learner_export,
 * kiln_learner_train, kiln_learner_task, kiln_learner_classes) go through it. */
#ifndef KILN_APPS_INTERNAL_H
#define KILN_APPS_INTERNAL_H

#include "core/internal.h"
#include "kiln/apps.h"

#include <stdio.h>

typedef struct kiln__app kiln__app;
struct kiln__app {
    const char *task;             /* "vision", "text-lm", "text-clas" */
    kiln_model *model;            /* owned */
    kiln_optim *opt;              /* owned */
    /* the task's part */
    kiln_status (*export)(kiln_learner *l, kiln__app *a, const char *dir); /* kiln_learner_export */
    const char *const *(*classes)(const kiln__app *a, int *n); /* a classifier's classes; NULL: none */
    kiln_vision_model_info info;  /* task "vision": the model's description */
    void *part;                   /* another task's own description (text: vocabulary, config, classes) */
    void (*part_free)(void *part);
};

/* The app of l; NULL + STATE naming op when l was not made by a task's constructor. */
kiln__app *kiln__app_of(const kiln_learner *l, const char *op);
/* The app of l when it was made for task "vision"; else NULL + STATE naming op and l's task. */
kiln__app *kiln__vision_app_of(const kiln_learner *l, const char *op);
/* The app of l, NULL without a message when l has none. */
kiln__app *kiln__app_get(const kiln_learner *l);
/* Attaches a (owned from then on, also on failure) to l. */
kiln_status kiln__app_attach(kiln_learner *l, kiln__app *a);
void kiln__app_free(void *a);
/* A learner over model m for app a with fastai's defaults (AdamW with wd, accuracy); takes a
 * and m (freed on failure); data may be NULL (owned by the learner when given). */
kiln_learner *kiln__app_learner(kiln_ctx *ctx, kiln__app *a, kiln_model *m, kiln_data *data, double wd,
                                const kiln_learner_params *lp);
/* pretrained.c: p->pretrained (a kiln export folder or a ResNet weights file) into model m
 * of arch (built for n_in channels), filling p->report; the model is unchanged on failure. */
kiln_status kiln__vision_load_pretrained(kiln_model *m, const char *arch, int n_in, const kiln_vision_learner_params *p);
/* p->train_bn set on l, then freeze() when p->pretrained and not p->unfreeze. */
kiln_status kiln__vision_pretrained_freeze(kiln_learner *l, const kiln_vision_learner_params *p);
/* dir/name into buf (n bytes); INVALID when it does not fit. */
kiln_status kiln__path(char *buf, size_t n, const char *dir, const char *name);

/* l was made by kiln_text_lm_learner_new or kiln_text_lm_learner_load. */
bool kiln__text_is_lm(const kiln_learner *l);

/* json_out.c: j (deleted by the call, also on failure; NULL: out of memory) printed with a
 * final newline into *text (malloc'd), NOMEM naming who; and printed so and written to path
 * atomically. */
typedef struct cJSON cJSON;
kiln_status kiln__json_text(cJSON *j, const char *who, char **text);
kiln_status kiln__json_write(cJSON *j, const char *path);
/* dir/model.json parsed (*out; cJSON_Delete it), its "task" checked to be want (FORMAT naming the
 * file and both tasks); path gets the file's name for messages. */
kiln_status kiln__read_model_json(const char *dir, const char *want, char *path, size_t cap, cJSON **out);

/* out_file.c: a text file written as a stream: path's atomic stream (kiln_atomic_begin), or
 * standard output when path is NULL. o->f is the stream to write; end commits (or, for stdout,
 * flushes and checks it) when st is OK, else abandons the temp file, and returns the status. */
typedef struct kiln__out {
    kiln_atomic *a;
    FILE *f;
} kiln__out;
kiln_status kiln__out_begin(kiln__out *o, const char *path);
kiln_status kiln__out_end(kiln__out *o, kiln_status st, const char *who);

/* interp.c: v written to f as one CSV field (quoted, with "" for a quote, when it holds a comma,
 * a quote or a line break). */
void kiln__csv_field(FILE *f, const char *v);
/* interp.c: dir/confusion_matrix.csv, confusion_matrix.png (with PLplot) and top_losses.csv (the
 * k largest, item_name giving the "file" column) of it. */
kiln_status kiln__interp_write(const kiln_interp *it, const char *const *classes, const char *dir, int64_t k,
                               const char *(*item_name)(void *user, int64_t i), void *user);

/* The whole regular file path (at most max bytes, else FORMAT naming it) into *out (malloc'd,
 * not NUL-terminated; free it) and *len (read_file.c). IO / FORMAT / NOMEM naming path. */
kiln_status kiln__read_file(const char *path, size_t max, char **out, size_t *len);

#endif
