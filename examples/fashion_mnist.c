/* examples/fashion_mnist.c: fastai's vision recipe in C through libkiln's application layer
 * (kiln/apps.h): data with fastai's augmentation, a learner with fastai's defaults, one-cycle
 * training, export, load_learner, predictions and ClassificationInterpretation on the
 * validation images. Built against an installed kiln by examples/Makefile (pkg-config) and
 * examples/CMakeLists.txt (find_package); README.md, "Installing kiln as a library".
 *
 *   fashion_mnist [DATA] [--batches N] [--out DIR]
 *     DATA         "fashion-mnist" (the default: the Debian package dataset-fashion-mnist), a
 *                  folder of IDX files, an image folder or a CSV of images and labels
 *     --batches N  train on the first N batches only: a smoke run of a few seconds (CI uses
 *                  it); the default 0 trains one whole epoch
 *     --out DIR    where the exported model goes: DIR/model.safetensors, DIR/model.json
 *                  (default: the current folder)
 *
 * `kiln vision fit` is kiln_learner_train (one call: checkpoints, history, metrics, plots);
 * this program shows the steps it is made of. Every kiln call returns a kiln_status or NULL
 * on failure; kiln_last_error() then names what went wrong (the file, the tensor, the key). */
#include <kiln.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints the library's message for a failed call and returns 1 (the exit status). */
static int fail(const char *what)
{
    fprintf(stderr, "fashion_mnist: %s: %s\n", what, kiln_last_error());
    return 1;
}

/* A callback that ends the fit after `max` training batches (fastai's ShortEpochCallback). */
static kiln_status stop_after(kiln_learner *l, void *user)
{
    kiln_fit_state *s = kiln_learner_state(l);
    if (s->batch >= *(const int64_t *)user) s->stop_training = true;
    return KILN_STATUS_OK;
}

int main(int argc, char **argv)
{
    const char *data = "fashion-mnist", *out = ".";
    int64_t max_batches = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batches") && i + 1 < argc) max_batches = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] != '-') data = argv[i];
        else {
            fprintf(stderr, "usage: %s [DATA] [--batches N] [--out DIR]\n", argv[0]);
            return 2;
        }
    }
    int rc = 1;
    kiln_learner *learn = NULL, *loaded = NULL;
    kiln_interp it = {0};
    kiln_ctx *ctx = kiln_ctx_new(NULL); /* threads (OMP_NUM_THREADS), RNG, memory arenas */
    if (!ctx) return fail("context");

    /* 1. Data (fastai ImageDataLoaders): batches of 64 images, normalized with the train
     *    split's mean and std, the train split augmented as fastai's aug_transforms does. */
    kiln_vision_params vp = kiln_vision_default_params();
    vp.batch_size = 64;
    kiln_augment_params aug = kiln_augment_default_params();
    kiln_data *dls = kiln_vision_dls_open(data, &vp, &aug);
    if (!dls) {
        rc = fail(data);
        goto done;
    }

    /* 2. The learner (fastai vision_learner): the lesson-7 CNN built for the data's images and
     *    classes, AdamW, cross-entropy, accuracy. It takes dls: freeing it frees the data. */
    kiln_vision_learner_params lp = kiln_vision_learner_default_params();
    lp.learner.progress = KILN_PROGRESS_STYLE_QUIET;
    if (!(learn = kiln_vision_learner_new(ctx, dls, "simple-cnn", &lp))) {
        rc = fail("learner");
        goto done;
    }
    kiln_callback cb = {.name = "stop_after", .begin_batch = stop_after, .user = &max_batches};
    if (max_batches > 0 && kiln_learner_add_callback(learn, &cb)) {
        rc = fail("callback");
        goto done;
    }

    /* 3. Train: learn.fit_one_cycle(1, 1e-2), then the loss and accuracy on the validation
     *    split (a cut-short epoch is not validated by the fit itself). */
    double valid_loss, valid_acc;
    if (kiln_learner_fit_one_cycle(learn, 1, 0, 1e-2, NULL) ||
        kiln_learner_validate(learn, KILN_DATA_SPLIT_VALID, &valid_loss, &valid_acc)) {
        rc = fail("fit");
        goto done;
    }
    printf("valid loss %.4f, accuracy %.4f\n", valid_loss, valid_acc);

    /* 4. learn.export(): the weights (PyTorch names) and model.json (arch, classes,
     *    normalization, augmentation) into out. */
    if (kiln_learner_export(learn, out)) {
        rc = fail("export");
        goto done;
    }

    /* 5. load_learner(out), the data opened as its model.json says (size, normalization, the
     *    same validation split), and ClassificationInterpretation over that split. */
    if (!(loaded = kiln_learner_load(ctx, out)) || kiln_learner_open_data(loaded, data, &vp, false) ||
        kiln_learner_interpret(loaded, KILN_DATA_SPLIT_VALID, NULL, &it)) {
        rc = fail(out);
        goto done;
    }
    const char *const *classes = kiln_learner_classes(loaded);
    printf("loaded model: accuracy %.4f on %lld valid images\n", it.accuracy, (long long)it.n);
    for (int64_t i = 0; i < 5 && i < it.n; i++)
        printf("valid image %lld: predicted %-12s truth %-12s p(truth) %.3f\n", (long long)i, classes[it.pred[i]],
               classes[it.actual[i]], (double)it.p_actual[i]);
    kiln_confused top[3];
    int n_total = 0, n = kiln_interp_most_confused(&it, 1, top, 3, &n_total);
    for (int k = 0; k < n; k++)
        printf("most confused: %s taken for %s %lld times\n", classes[top[k].actual], classes[top[k].predicted],
               (long long)top[k].count);
    rc = 0;

done:
    kiln_interp_free(&it);
    kiln_learner_free(loaded);
    kiln_learner_free(learn);
    kiln_ctx_free(ctx);
    return rc;
}
