/* The fastai lesson-7 net for 28x28 images, module for module the net of
 * /work/shared/reference/torch_fmnist.py, so its state dict keys ("0.0.weight",
 * "1.c1.1.running_mean", ...) load both ways:
 *   conv(ni, nf, stride=2) = Sequential(Conv2d(ni, nf, 3, stride, 1, bias=False), BatchNorm2d(nf), ReLU())
 *   Res(nf): x + c2(c1(x)) with c1, c2 = conv(nf, nf, 1)
 *   Sequential(conv(1, 8), Res(8), conv(8, 16), Res(16), conv(16, 32), Res(32), conv(32, 16),
 *              Res(16), Conv2d(16, 10, 3, 2, 1), BatchNorm2d(10), Flatten())
 * Spatial size 28 -> 14 -> 7 -> 4 -> 2 -> 1. */
#include "nn/nn_internal.h"

/* x (N, ni, H, W) -> (N, nf, H/stride, W/stride) */
static kiln_module *conv_block(kiln_module *parent, const char *name, int64_t ni, int64_t nf, int stride)
{
    kiln_module *s = kiln_nn_sequential(parent, name);
    kiln_conv2d_params p = kiln_conv2d_default_params();
    p.stride[0] = p.stride[1] = stride;
    p.padding[0] = p.padding[1] = 1;
    kiln_nn_conv2d(s, "0", ni, nf, 3, 3, &p, false);
    kiln_nn_batch_norm2d(s, "1", nf, NULL);
    kiln_nn_relu(s, "2");
    return s;
}

/* x (N, nf, H, W) -> x + c2(c1(x)), same shape */
static kiln_tensor *res_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    kiln_tensor *h = kiln_module_forward(m->child[0], ctx, x); /* c1 */
    h = kiln_module_forward(m->child[1], ctx, h);              /* c2 */
    return h ? kiln_add(ctx, x, h) : NULL;
}

static void res_block(kiln_module *parent, int64_t nf)
{
    kiln_module *r = kiln_nn_custom(parent, NULL, "Res", res_forward, NULL, 0);
    conv_block(r, "c1", nf, nf, 1);
    conv_block(r, "c2", nf, nf, 1);
}

kiln_model *kiln_simple_cnn_new(int64_t n_in, int64_t n_out)
{
    kiln_model *model = kiln_model_new();
    if (!model) return NULL;
    kiln_module *root = kiln_model_root(model);
    const int64_t widths[5] = {n_in, 8, 16, 32, 16};
    for (int i = 0; i < 4; i++) {
        conv_block(root, NULL, widths[i], widths[i + 1], 2); /* "0", "2", "4", "6" */
        res_block(root, widths[i + 1]);                      /* "1", "3", "5", "7" */
    }
    kiln_conv2d_params p = kiln_conv2d_default_params();
    p.stride[0] = p.stride[1] = 2;
    p.padding[0] = p.padding[1] = 1;
    kiln_nn_conv2d(root, NULL, 16, n_out, 3, 3, &p, true); /* "8" */
    kiln_nn_batch_norm2d(root, NULL, n_out, NULL);          /* "9" */
    kiln_nn_flatten(root, NULL);                            /* "10" */
    if (model->build_status != KILN_STATUS_OK) {
        kiln__err(model->build_status, "simple_cnn: %s", model->build_msg);
        kiln_model_free(model);
        return NULL;
    }
    /* Three layer groups, as fastai's ResNets: {"0".."3"} (14x14, 7x7), {"4", "5"} (4x4), and
     * the head {"6".."9"}: the last conv block and its Res (2x2) with the classifier conv
     * (-> 1x1), made anew by a pretrained learner and trained while the body is frozen (as
     * simple_resnet.c, whose measurement shows why the last stage goes with the head). */
    const char *first[2] = {"4", "6"};
    kiln_model_split(model, 3, first);
    return model;
}
