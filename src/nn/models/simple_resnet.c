/* The ResNet of the fastai 2022 course (part 2, notebook 13_resnet) for 28x28 images, a
 * wider, deeper step up from simple_cnn.c. One change from the course: a downsampling
 * shortcut is a 1x1 stride-2 conv, not AvgPool2d + 1x1 conv, so the whole net stays in the
 * channels-last layout that conv, batch norm and the elementwise ops keep. Module names are
 * those of the PyTorch twin in tests/fixtures/gen_models.py, so state dicts load both ways
 * ("0.convs.0.weight", "1.idconv.1.running_mean", "7.weight", "8.bias"):
 *   ResBlock(ni, nf, s): convs  = Sequential(Conv2d(ni, nf, 3, 1, 1, bias=False), BatchNorm2d(nf), ReLU(),
 *                                            Conv2d(nf, nf, 3, s, 1, bias=False), BatchNorm2d(nf))
 *                        idconv = Sequential(Conv2d(ni, nf, 1, s, 0, bias=False), BatchNorm2d(nf)),
 *                                 absent (identity) when ni == nf and s == 1
 *                        x -> relu(convs(x) + idconv(x))
 *   Sequential(ResBlock(n_in, 8, 1), ResBlock(8, 16, 2), ResBlock(16, 32, 2), ResBlock(32, 64, 2),
 *              ResBlock(64, 128, 2), ResBlock(128, 256, 2), Flatten(), Linear(256, n_out, bias=False),
 *              BatchNorm1d(n_out))
 * Spatial size 28 -> 28 -> 14 -> 7 -> 4 -> 2 -> 1; 1,228,404 parameters for (1, 10). */
#include "nn/nn_internal.h"

/* Conv2d(ni, nf, k, stride, k / 2, bias=False) with PyTorch's default init. */
static void conv(kiln_module *parent, const char *name, int64_t ni, int64_t nf, int k, int stride)
{
    kiln_conv2d_params p = kiln_conv2d_default_params();
    p.stride[0] = p.stride[1] = stride;
    p.padding[0] = p.padding[1] = k / 2;
    kiln_nn_conv2d(parent, name, ni, nf, k, k, &p, false);
}

/* x (N, ni, H, W) -> relu(convs(x) + idconv(x)) (N, nf, ceil(H/stride), ceil(W/stride));
 * child 0 is convs, child 1 (when present) idconv. */
static kiln_tensor *res_block_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    kiln_tensor *h = kiln_module_forward(m->child[0], ctx, x);
    kiln_tensor *id = m->n_child > 1 ? kiln_module_forward(m->child[1], ctx, x) : x;
    KILN_IN(h);
    KILN_IN(id);
    return kiln_relu(ctx, kiln_add(ctx, h, id));
}

static void res_block(kiln_module *parent, int64_t ni, int64_t nf, int stride)
{
    kiln_module *r = kiln_nn_custom(parent, NULL, "ResBlock", res_block_forward, NULL, 0);
    kiln_module *c = kiln_nn_sequential(r, "convs");
    conv(c, "0", ni, nf, 3, 1);
    kiln_nn_batch_norm2d(c, "1", nf, NULL);
    kiln_nn_relu(c, "2");
    conv(c, "3", nf, nf, 3, stride);
    kiln_nn_batch_norm2d(c, "4", nf, NULL);
    if (ni == nf && stride == 1) return;
    kiln_module *id = kiln_nn_sequential(r, "idconv");
    conv(id, "0", ni, nf, 1, stride);
    kiln_nn_batch_norm2d(id, "1", nf, NULL);
}

kiln_model *kiln_simple_resnet_new(int64_t n_in, int64_t n_out)
{
    kiln_model *model = kiln_model_new();
    if (!model) return NULL;
    kiln_module *root = kiln_model_root(model);
    const int64_t widths[7] = {n_in, 8, 16, 32, 64, 128, 256};
    for (int i = 0; i < 6; i++) res_block(root, widths[i], widths[i + 1], i == 0 ? 1 : 2); /* "0".."5" */
    kiln_nn_flatten(root, NULL);                         /* "6": (N, 256, 1, 1) -> (N, 256) */
    kiln_nn_linear(root, NULL, widths[6], n_out, false); /* "7" */
    kiln_nn_batch_norm1d(root, NULL, n_out, NULL);       /* "8" */
    if (model->build_status != KILN_STATUS_OK) {
        kiln__err(model->build_status, "simple_resnet: %s", model->build_msg);
        kiln_model_free(model);
        return NULL;
    }
    /* Three layer groups, as fastai's ResNets: {"0".."2"} (28x28 .. 7x7), {"3", "4"} (4x4,
     * 2x2), and the head {"5", "7", "8"}: the last stride-2 block (2x2 -> 1x1) does what a
     * ResNet's pooling does and its features are the most specific to the classes trained on,
     * so it goes with the classifier into the group a pretrained learner makes anew
     * (kiln_model_load_body skips it) and trains while the body is frozen. Measured on
     * Fashion-MNIST classes 0-4 -> 5-9 (docs/benchmarks.md): fine_tune with its defaults
     * 0.37 when only Linear + BatchNorm1d were the head, 0.83 with this split. */
    const char *first[2] = {"3", "5"};
    kiln_model_split(model, 3, first);
    return model;
}
