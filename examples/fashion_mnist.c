/* examples/fashion_mnist.c: train fastai lesson 7's small CNN on Fashion-MNIST through libkiln,
 * save the weights, load them into a fresh model and predict a few validation images with it.
 * Built against an installed kiln by examples/Makefile (pkg-config) and examples/CMakeLists.txt
 * (find_package); README.md, "Installing kiln as a library".
 *
 *   fashion_mnist [DATA] [--batches N] [--out DIR]
 *     DATA         "fashion-mnist" (the default: the Debian package dataset-fashion-mnist), a
 *                  folder of IDX files, an image folder or a CSV of 28x28 images
 *     --batches N  train on the first N batches only: a smoke run of a few seconds (CI uses
 *                  it); the default 0 trains one whole epoch
 *     --out DIR    where fashion_mnist.safetensors goes (default: the current folder)
 *
 * Every kiln call returns a kiln_status or NULL on failure; kiln_last_error() then names what
 * went wrong (the file, the tensor, the key). */
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

/* A callback that ends the fit after `max` training batches. A cut-short epoch is not
 * validated; main validates afterwards. */
static kiln_status stop_after(kiln_learner *l, void *user)
{
    kiln_fit_state *s = kiln_learner_state(l);
    if (s->batch >= *(const int64_t *)user) s->stop_training = true;
    return KILN_STATUS_OK;
}

/* The fastai lesson-7 net for (n_in, 28, 28) images, allocated (weights initialised). */
static kiln_model *model_new(kiln_ctx *ctx, int n_in, int n_classes)
{
    kiln_model *m = kiln_simple_cnn_new(n_in, n_classes);
    if (!m || kiln_model_alloc(m, ctx)) {
        kiln_model_free(m);
        return NULL;
    }
    kiln_model_set_channels_last(m, true); /* NHWC activations: faster for small nets */
    return m;
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
    kiln_ctx *ctx = NULL;
    kiln_data *d = NULL;
    kiln_model *m = NULL, *m2 = NULL;
    kiln_learner *l = NULL, *l2 = NULL;

    /* 1. Data: batches of 64 images x (64, 1, 28, 28), normalized with the train split's own
     *    mean and std, and labels y (64) i64. Background threads prepare the next batches. */
    kiln_vision_params vp = kiln_vision_default_params();
    vp.batch_size = 64;
    if (!(ctx = kiln_ctx_new(NULL))) return fail("context");
    if (!(d = kiln_vision_open(data, &vp))) {
        rc = fail(data);
        goto done;
    }
    kiln_vision_data *v = kiln_vision_data_of(d);
    int n_in = kiln_vision_data_n_channels(v), n_classes = kiln_vision_data_n_classes(v);
    if (kiln_vision_data_size(v) != 28) {
        fprintf(stderr, "fashion_mnist: %s: images are %dx%d; this net takes 28x28\n", data, kiln_vision_data_size(v),
                kiln_vision_data_size(v));
        goto done;
    }
    printf("%s: %lld train, %lld valid images, %d classes\n", data,
           (long long)kiln_data_n_items(d, KILN_DATA_SPLIT_TRAIN), (long long)kiln_data_n_items(d, KILN_DATA_SPLIT_VALID),
           n_classes);

    /* 2. Model and Learner: fastai's defaults (Adam, cross-entropy, no weight decay on
     *    BatchNorm and biases), accuracy as the metric. */
    if (!(m = model_new(ctx, n_in, n_classes))) {
        rc = fail("model");
        goto done;
    }
    kiln_learner_params lp = kiln_learner_default_params();
    kiln_metric acc = kiln_metric_make(KILN_METRIC_KIND_ACCURACY);
    if (!(l = kiln_learner_new(ctx, m, d, NULL, &lp)) || kiln_learner_add_metric(l, &acc)) {
        rc = fail("learner");
        goto done;
    }
    if (max_batches > 0) {
        kiln_callback cb = {.name = "stop_after", .begin_batch = stop_after, .user = &max_batches};
        if (kiln_learner_add_callback(l, &cb)) {
            rc = fail("callback");
            goto done;
        }
    }

    /* 3. Train one epoch, or its first max_batches batches, with fastai's one-cycle schedule
     *    peaking at lr 1e-2 (fit_one_cycle(1, 1e-2)) spread over the batches that run, then
     *    measure the loss and accuracy over the whole validation split. */
    int64_t n_train = kiln_data_n_batches(d, KILN_DATA_SPLIT_TRAIN);
    if (max_batches > 0 && max_batches < n_train) n_train = max_batches;
    kiln_sched_one_cycle_params op = kiln_sched_one_cycle_default_params(KILN_ONE_CYCLE_VARIANT_FASTAI);
    op.lr_max = 1e-2;
    op.iters = n_train;
    kiln_sched sched;
    double valid_loss, valid_acc;
    if (kiln_sched_one_cycle(&sched, &op) || kiln_learner_fit(l, 1, &sched) ||
        kiln_learner_validate(l, KILN_DATA_SPLIT_VALID, &valid_loss, &valid_acc)) {
        rc = fail("fit");
        goto done;
    }
    printf("valid loss %.4f, accuracy %.4f\n", valid_loss, valid_acc);

    /* 4. Save the weights (safetensors, PyTorch's names), then load them into a new model. */
    char path[4096];
    snprintf(path, sizeof path, "%s/fashion_mnist.safetensors", out);
    if (kiln_model_save(m, path, NULL)) {
        rc = fail("save");
        goto done;
    }
    if (!(m2 = model_new(ctx, n_in, n_classes)) || kiln_model_load(m2, path, true) || kiln_model_check_finite(m2)) {
        rc = fail(path);
        goto done;
    }
    printf("saved and reloaded %s (%lld parameters)\n", path, (long long)kiln_model_n_params(m2, false));

    /* 5. Predict the first validation batch with the reloaded model: class probabilities
     *    (64, n_classes), softmax of the logits, computed in eval mode without gradients. */
    if (!(l2 = kiln_learner_new(ctx, m2, d, NULL, &lp))) {
        rc = fail("learner");
        goto done;
    }
    kiln_mark mark = kiln_step_mark(ctx);
    kiln_tensor *x, *y, *probs;
    if (kiln_data_get_batch(d, KILN_DATA_SPLIT_VALID, 0, ctx, &x, &y) || !(probs = kiln_learner_predict_batch(l2, x))) {
        rc = fail("predict");
        goto done;
    }
    int64_t n = probs->shape[0], right = 0;
    for (int64_t i = 0; i < n; i++) {
        int best = 0; /* the most probable class */
        for (int c = 1; c < n_classes; c++)
            if (kiln_get_flat(probs, i * n_classes + c) > kiln_get_flat(probs, i * n_classes + best)) best = c;
        int64_t truth = (int64_t)kiln_get_flat(y, i);
        right += best == truth;
        if (i < 5)
            printf("valid image %lld: %-12s %.3f  (truth: %s)\n", (long long)i, kiln_vision_data_class(v, best),
                   kiln_get_flat(probs, i * n_classes + best),
                   kiln_vision_data_class(v, (int)truth));
    }
    printf("first valid batch: %lld of %lld right\n", (long long)right, (long long)n);
    kiln_step_rewind(ctx, mark); /* frees the batch and the predictions */
    rc = 0;

done:
    kiln_learner_free(l2);
    kiln_learner_free(l);
    kiln_model_free(m2);
    kiln_model_free(m);
    kiln_data_free(d);
    kiln_ctx_free(ctx);
    return rc;
}
