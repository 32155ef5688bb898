/* kiln vision predict, show-batch and interpret: everything that reads a trained model
 * (DIR/model.json + DIR/model.safetensors) or only looks at the data.
 *   predict     one line per image: file, class, probability; the image goes through the
 *               same decode/resize/normalize as training (and with --tta the training
 *               augmentation, passes mixed as fastai v2's tta).
 *   show-batch  the first training batch, augmented, as a labelled grid.
 *   interpret   confusion matrix (PNG heat map with counts, CSV) and the top losses (grid +
 *               CSV) over the validation split. */
#include "vision_cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growing text buffer ----------------------------------------------------------------------- */

typedef struct strbuf {
    char *s;
    size_t n, cap;
    bool oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns, b->cap = nc;
    }
}

/* A CSV field: quoted (with "" inside) when it holds a comma, quote or line break. */
static void sb_csv(strbuf *b, const char *v)
{
    if (!strpbrk(v, ",\"\r\n")) {
        sb_printf(b, "%s", v);
        return;
    }
    sb_printf(b, "\"");
    for (const char *p = v; *p; p++) sb_printf(b, *p == '"' ? "\"\"" : "%c", *p);
    sb_printf(b, "\"");
}

static int sb_write(const vopts *o, strbuf *b, const char *path)
{
    int rc = b->oom || !b->s ? vc_fail(o, 1, "%s: out of memory", path) : vc_write_atomic(o, path, b->s);
    free(b->s);
    memset(b, 0, sizeof *b);
    return rc;
}

/* ---- a trained model ------------------------------------------------------------------------------ */

typedef struct trained {
    kiln_vision_model_info mi;
    kiln_ctx *ctx;
    kiln_model *m;
} trained;

static void trained_free(trained *t)
{
    kiln_model_free(t->m);
    kiln_ctx_free(t->ctx);
    kiln_vision_model_info_free(&t->mi);
}

static int trained_load(vopts *o, const char *dir, trained *t)
{
    memset(t, 0, sizeof *t);
    char pj[4096], pm[4096], desc[96];
    if (kiln_vision_model_info_read(vc_path(pj, sizeof pj, dir, "model.json"), &t->mi)) return vc_kfail(o, NULL);
    if (!(t->ctx = vc_ctx_new(o))) return 1;
    if (!(t->m = vc_model_new(o, t->mi.arch, t->mi.n_in, t->mi.size, t->mi.n_classes, t->ctx, desc, sizeof desc)))
        return 1;
    if (kiln_model_load(t->m, vc_path(pm, sizeof pm, dir, "model.safetensors"), true)) return vc_kfail(o, NULL);
    if (kiln_model_check_finite(t->m)) return vc_kfail(o, pm);
    kiln_model_train(t->m, false);
    return 0;
}

/* ---- predict ------------------------------------------------------------------------------------- */

/* Softmax of row (c) logits into p. */
static void softmax_row(const float *z, int c, double *p)
{
    double mx = z[0], s = 0;
    for (int k = 1; k < c; k++) mx = z[k] > mx ? z[k] : mx;
    for (int k = 0; k < c; k++) s += p[k] = exp((double)z[k] - mx);
    for (int k = 0; k < c; k++) p[k] /= s;
}

/* TTA augments with the training augmentation, as fastai's tta (and `fit --tta`) do: a
 * model trained with --no-augment has none, so its TTA passes equal the plain one. */
static void tta_note(const vopts *o, const kiln_vision_model_info *mi)
{
    if (o->tta && !mi->augment)
        fprintf(stderr, "%s: warning: --tta on a model trained with --no-augment: the augmented passes equal the plain one\n",
                o->cmd);
}

/* Probabilities of one image: plain, or plain + TTA passes mixed (aug NULL: the model was
 * trained without augmentation, the passes are plain). probs (n_classes). */
static int predict_one(vopts *o, trained *t, const kiln_augment_params *aug, const char *path, int64_t index,
                       float *probs)
{
    const kiln_vision_model_info *mi = &t->mi;
    int passes = o->tta ? 1 + (int)o->tta_n : 1, c = mi->n_in, s = mi->size, nc = mi->n_classes;
    size_t per = (size_t)c * s * s;
    kiln_mark mk = kiln_step_mark(t->ctx);
    int rc = 0;
    kiln_tensor *img = kiln_vision_image_load(t->ctx, path, c, s, KILN_VISION_RESIZE_CROP); /* (C, S, S) */
    kiln_tensor *x = img ? kiln_empty(t->ctx, KILN_DTYPE_F32, 4, (int64_t[]){passes, c, s, s}) : NULL;
    double *p = malloc(sizeof(double) * (size_t)nc * (size_t)passes);
    float *pf = malloc(sizeof(float) * (size_t)nc * (size_t)passes);
    if (!img || !x || !p || !pf) {
        rc = vc_fail(o, 1, "%s", img ? "out of memory" : kiln_last_error());
        goto done;
    }
    float *xd = x->data;
    for (int k = 0; k < passes; k++) {
        memcpy(xd + k * per, img->data, per * sizeof(float));
        if (k > 0 && aug && kiln_augment_tfm((void *)aug, xd + k * per, c, s, s, kiln_vision_tta_seed(mi->seed, k - 1),
                                      kiln_vision_item_counter(0, KILN_DATA_SPLIT_VALID, index), true)) {
            rc = vc_kfail(o, path);
            goto done;
        }
    }
    if (mi->norm != KILN_VISION_NORM_NONE && kiln_vision_normalize(xd, passes, c, (int64_t)s * s, &mi->stats)) {
        rc = vc_kfail(o, path);
        goto done;
    }
    bool grad = kiln_set_grad_enabled(t->ctx, false);
    kiln_tensor *out = kiln_model_forward(t->m, t->ctx, x);
    kiln_set_grad_enabled(t->ctx, grad);
    if (!out) {
        rc = vc_kfail(o, path);
        goto done;
    }
    const float *z = out->data; /* (passes, nc), contiguous from the head's Linear / Flatten */
    for (int k = 0; k < passes; k++) {
        softmax_row(z + k * nc, nc, p + k * nc);
        for (int j = 0; j < nc; j++) pf[k * nc + j] = (float)p[k * nc + j];
    }
    if (passes == 1) memcpy(probs, pf, sizeof(float) * (size_t)nc);
    else if (kiln_tta_combine(pf, pf + nc, passes - 1, nc, o->tta_beta, o->tta_max, probs)) rc = vc_kfail(o, "tta");
done:
    free(p);
    free(pf);
    kiln_step_rewind(t->ctx, mk);
    return rc;
}

int vc_predict(vopts *o, int n_images, const char *const *images, const char *dir)
{
    trained t;
    int rc = trained_load(o, dir, &t);
    float *probs = rc ? NULL : malloc(sizeof(float) * (size_t)t.mi.n_classes);
    if (!rc && !probs) rc = vc_fail(o, 1, "out of memory");
    if (rc) {
        free(probs);
        trained_free(&t);
        return rc;
    }
    kiln_augment_params aug = t.mi.aug; /* the model's training augmentation */
    tta_note(o, &t.mi);
    int wf = 4, wc = 5;
    for (int i = 0; i < n_images; i++) wf = (int)strlen(images[i]) > wf ? (int)strlen(images[i]) : wf;
    for (int k = 0; k < t.mi.n_classes; k++) wc = (int)strlen(t.mi.classes[k]) > wc ? (int)strlen(t.mi.classes[k]) : wc;
    int failed = 0;
    for (int i = 0; i < n_images; i++) {
        if (predict_one(o, &t, t.mi.augment ? &aug : NULL, images[i], i, probs)) {
            failed++;
            continue;
        }
        int best = 0;
        for (int k = 1; k < t.mi.n_classes; k++) best = probs[k] > probs[best] ? k : best;
        printf("%-*s  %-*s  %.4f\n", wf, images[i], wc, t.mi.classes[best], probs[best]);
    }
    if (failed) rc = vc_fail(o, 1, "%d of %d image(s) could not be classified", failed, n_images);
    free(probs);
    trained_free(&t);
    return rc;
}

/* ---- show-batch ---------------------------------------------------------------------------------- */

int vc_show_batch(vopts *o, const char *data)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", o->out);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (vc_mkdirs(o, parent)) return 1;
    }
    kiln_augment_params aug = vc_augment_params(o);
    kiln_data *d = vc_open_data(o, data, 0, NULL, KILN_VISION_NORM_DATASET, o->no_augment ? NULL : &aug, o->n, true);
    if (!d) return 1;
    kiln_ctx *ctx = vc_ctx_new(o);
    int rc = ctx ? 0 : 1;
    kiln_tensor *x = NULL, *y = NULL;
    int64_t nt = kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN);
    if (!rc && nt < o->n)
        rc = nt < 1 ? vc_fail(o, 1, "%s: no training images", data)
                    : vc_fail(o, 2, "%s has %lld training images: use --n %lld or fewer", data, (long long)nt, (long long)nt);
    if (!rc && (kiln_data_set_epoch(d, (uint64_t)o->seed, 0) ||
                kiln_data_get_batch(d, KILN_DATA_SPLIT_TRAIN, 0, ctx, &x, &y)))
        rc = vc_kfail(o, data);
    if (!rc) {
        kiln_vision_data *v = kiln_vision_data_of(d);
        kiln_vision_stats st = kiln_vision_data_stats(v);
        int b = (int)x->shape[0];
        const char **labels = calloc((size_t)b, sizeof *labels);
        const int64_t *yy = y->data;
        for (int i = 0; labels && i < b; i++) labels[i] = kiln_vision_data_class(v, (int)yy[i]);
        if (!labels) rc = vc_fail(o, 1, "out of memory");
        else if (kiln_image_grid_png(o->out, x->data, b, (int)x->shape[1], (int)x->shape[2], (int)x->shape[3], labels,
                                     0, st.mean, st.std))
            rc = vc_kfail(o, NULL);
        else printf("wrote %s (%d %simages)\n", o->out, b, o->no_augment ? "" : "augmented ");
        free(labels);
    }
    kiln_ctx_free(ctx);
    kiln_data_free(d);
    return rc;
}

/* ---- interpret ----------------------------------------------------------------------------------- */

typedef struct loss_item {
    int64_t i;
    double loss;
} loss_item;

static int by_loss_desc(const void *a, const void *b)
{
    const loss_item *x = a, *y = b;
    return x->loss < y->loss ? 1 : x->loss > y->loss ? -1 : (x->i > y->i) - (x->i < y->i);
}

typedef struct pair_count {
    int a, p;
    int64_t n;
} pair_count;

static int by_count_desc(const void *a, const void *b)
{
    const pair_count *x = a, *y = b;
    return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}

/* The model's classes against the data's: same number and names, in order. */
static int check_classes(vopts *o, const kiln_vision_model_info *mi, kiln_vision_data *v, const char *data)
{
    if (kiln_vision_data_n_classes(v) != mi->n_classes)
        return vc_fail(o, 1, "%s has %d classes; the model was trained on %d", data, kiln_vision_data_n_classes(v),
                       mi->n_classes);
    for (int k = 0; k < mi->n_classes; k++)
        if (strcmp(kiln_vision_data_class(v, k), mi->classes[k]))
            return vc_fail(o, 1, "%s: class %d is '%s'; the model's is '%s'", data, k, kiln_vision_data_class(v, k),
                           mi->classes[k]);
    return 0;
}

static int write_top_losses(vopts *o, kiln_vision_data *v, const kiln_preds *p, const kiln_vision_model_info *mi,
                            const char *png, const char *csv)
{
    loss_item *li = malloc(sizeof *li * (size_t)p->n);
    if (!li) return vc_fail(o, 1, "out of memory");
    const int64_t *yy = p->targets;
    for (int64_t i = 0; i < p->n; i++) {
        float py = p->probs[i * p->c + yy[i]];
        li[i] = (loss_item){i, -log(py > 1e-30f ? py : 1e-30f)};
    }
    qsort(li, (size_t)p->n, sizeof *li, by_loss_desc);
    int k = (int)(o->n < p->n ? o->n : p->n), c = mi->n_in, s = mi->size;
    size_t per = (size_t)c * s * s;
    float *imgs = malloc(sizeof(float) * per * (size_t)k);
    char(*lab)[160] = malloc(sizeof *lab * (size_t)k);
    const char **labels = malloc(sizeof *labels * (size_t)k);
    strbuf b = {0};
    int rc = imgs && lab && labels ? 0 : vc_fail(o, 1, "out of memory");
    sb_printf(&b, "rank,index,file,predicted,actual,loss,probability\n");
    for (int r = 0; r < k && !rc; r++) {
        int64_t i = li[r].i;
        const float *row = p->probs + i * p->c;
        int pred = 0;
        for (int j = 1; j < p->c; j++) pred = row[j] > row[pred] ? j : pred;
        if (kiln_vision_data_item(v, KILN_DATA_SPLIT_VALID, i, false, imgs + per * r)) {
            rc = vc_kfail(o, NULL);
            break;
        }
        /* fastai plot_top_losses: prediction/actual/loss/probability of the actual class, on two
         * lines so that long class names fit the cell */
        snprintf(lab[r], sizeof lab[r], "%s/%s\n%.2f / %.2f", mi->classes[pred], mi->classes[yy[i]], li[r].loss,
                 row[yy[i]]);
        labels[r] = lab[r];
        const char *file = kiln_vision_data_path(v, KILN_DATA_SPLIT_VALID, i);
        sb_printf(&b, "%d,%lld,", r + 1, (long long)i);
        sb_csv(&b, file ? file : "");
        sb_printf(&b, ",");
        sb_csv(&b, mi->classes[pred]);
        sb_printf(&b, ",");
        sb_csv(&b, mi->classes[yy[i]]);
        sb_printf(&b, ",%.9g,%.9g\n", li[r].loss, row[yy[i]]);
    }
    if (!rc && k > 0 && kiln_image_grid_png(png, imgs, k, c, s, s, labels, 0, NULL, NULL)) rc = vc_kfail(o, NULL);
    if (!rc) rc = sb_write(o, &b, csv);
    free(b.s);
    free(labels);
    free(lab);
    free(imgs);
    free(li);
    return rc;
}

static int write_confusion(vopts *o, const kiln_preds *p, const kiln_vision_model_info *mi, const char *png, const char *csv)
{
    int n = mi->n_classes;
    int64_t *m = calloc((size_t)n * (size_t)n, sizeof *m), correct = 0;
    pair_count *pc = calloc((size_t)n * (size_t)n + 1, sizeof *pc);
    if (!m || !pc) {
        free(m), free(pc);
        return vc_fail(o, 1, "out of memory");
    }
    const int64_t *yy = p->targets;
    for (int64_t i = 0; i < p->n; i++) {
        const float *row = p->probs + i * p->c;
        int pred = 0;
        for (int j = 1; j < p->c; j++) pred = row[j] > row[pred] ? j : pred;
        m[yy[i] * n + pred]++;
        correct += yy[i] == pred;
    }
    strbuf b = {0};
    sb_printf(&b, "actual\\predicted");
    for (int k = 0; k < n; k++) sb_printf(&b, ","), sb_csv(&b, mi->classes[k]);
    sb_printf(&b, "\n");
    int np = 0;
    for (int a = 0; a < n; a++) {
        sb_csv(&b, mi->classes[a]);
        for (int k = 0; k < n; k++) {
            sb_printf(&b, ",%lld", (long long)m[a * n + k]);
            if (a != k && m[a * n + k]) pc[np++] = (pair_count){a, k, m[a * n + k]};
        }
        sb_printf(&b, "\n");
    }
    int rc = sb_write(o, &b, csv);
    char title[128];
    snprintf(title, sizeof title, "confusion matrix: accuracy %.4f on %lld images%s", (double)correct / (double)p->n,
             (long long)p->n, o->tta ? " (tta)" : "");
    if (!rc && kiln_plot_heatmap(png, m, n, (const char *const *)mi->classes, title)) rc = vc_kfail(o, NULL);
    if (!rc) {
        printf("accuracy %.4f on %lld valid images%s\n", (double)correct / (double)p->n, (long long)p->n,
               o->tta ? " (tta)" : "");
        qsort(pc, (size_t)np, sizeof *pc, by_count_desc);
        if (np) printf("most confused (actual -> predicted: count):");
        for (int k = 0; k < np && k < 5; k++)
            printf("%s %s -> %s: %lld", k ? "," : "", mi->classes[pc[k].a], mi->classes[pc[k].p], (long long)pc[k].n);
        if (np) printf("\n");
    }
    free(m);
    free(pc);
    return rc;
}

int vc_interpret(vopts *o, const char *dir, const char *data)
{
    trained t;
    int rc = trained_load(o, dir, &t);
    if (!rc) rc = vc_mkdirs(o, o->out);
    if (rc) {
        trained_free(&t);
        return rc;
    }
    o->size = t.mi.size;
    o->valid_pct = t.mi.valid_pct;
    kiln_augment_params aug = t.mi.aug; /* the model's training augmentation */
    tta_note(o, &t.mi);
    kiln_data *d = vc_open_data(o, data, t.mi.n_in, &t.mi.stats, t.mi.norm, o->tta && t.mi.augment ? &aug : NULL,
                                o->bs, true);
    kiln_optim *opt = NULL;
    kiln_learner *l = NULL;
    kiln_preds p = {0};
    if (!d) {
        rc = 1;
        goto done;
    }
    kiln_vision_data *v = kiln_vision_data_of(d);
    if ((rc = check_classes(o, &t.mi, v, data))) goto done;
    if (kiln_data_n_items(d, KILN_DATA_SPLIT_VALID) < 1) {
        rc = vc_fail(o, 1, "%s has no validation images to interpret", data);
        goto done;
    }
    if (!(l = vc_learner_new(o, t.ctx, t.m, d, &opt))) {
        rc = 1;
        goto done;
    }
    kiln_data_set_epoch(d, t.mi.seed, 0);
    kiln_status st = o->tta ? kiln_learner_tta(l, KILN_DATA_SPLIT_VALID, (int)o->tta_n, o->tta_beta, o->tta_max, &p)
                            : kiln_learner_get_preds(l, KILN_DATA_SPLIT_VALID, &p);
    if (st) {
        rc = vc_kfail(o, data);
        goto done;
    }
    char cm_png[4096], cm_csv[4096], tl_png[4096], tl_csv[4096];
    vc_path(cm_png, sizeof cm_png, o->out, "confusion_matrix.png");
    vc_path(cm_csv, sizeof cm_csv, o->out, "confusion_matrix.csv");
    vc_path(tl_png, sizeof tl_png, o->out, "top_losses.png");
    vc_path(tl_csv, sizeof tl_csv, o->out, "top_losses.csv");
    if ((rc = write_confusion(o, &p, &t.mi, cm_png, cm_csv))) goto done;
    if ((rc = write_top_losses(o, v, &p, &t.mi, tl_png, tl_csv))) goto done;
    printf("wrote %s, confusion_matrix.csv, top_losses.png, top_losses.csv\n", cm_png);
done:
    kiln_preds_free(&p);
    kiln_learner_free(l);
    kiln_optim_free(opt);
    kiln_data_free(d);
    trained_free(&t);
    return rc;
}
