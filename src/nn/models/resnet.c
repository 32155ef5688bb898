/* torchvision's ResNet (v1.5: a Bottleneck strides on its 3x3 conv) with torchvision's module
 * names and init, so its state dicts load strictly, and the same stem and layers as fastai's
 * body (cut before avgpool and fc) with positional names "0".."7".
 *   stem: conv1 7x7/2 p3 (no bias) -> bn1 -> relu -> maxpool 3x3/2 p1      H -> H/4
 *   layerK: blocks of width * 2^(K-1) planes, the first strided (K > 1)   H/4 -> H/32
 * A block whose input differs from its output in size or channels has a downsample
 * Sequential(conv1x1 with the stride, BatchNorm2d) on the identity branch. */
#include "nn/nn_internal.h"

#include "kiln/models.h"

#include <stdio.h>

/* torchvision's conv init: kaiming_normal_(mode='fan_out', nonlinearity='relu'); no bias. */
static kiln_status conv_init_fan_out(kiln_module *m, kiln_ctx *ctx)
{
    return kiln_init_kaiming_normal(ctx, m->weight, 0.0f, true);
}

/* Conv2d without bias, torchvision's conv3x3 / conv1x1 / the stem's 7x7. */
static kiln_module *conv(kiln_module *parent, const char *name, int64_t in, int64_t out, int k, int stride)
{
    kiln_conv2d_params p = kiln_conv2d_default_params();
    p.stride[0] = p.stride[1] = stride;
    p.padding[0] = p.padding[1] = k / 2;
    kiln_module *m = kiln_nn_conv2d(parent, name, in, out, k, k, &p, false);
    if (m) m->init = conv_init_fan_out;
    return m;
}

/* Children of a block, by index (declaration order as torchvision's __init__). */
enum { B_CONV1, B_BN1, B_RELU, B_CONV2, B_BN2, B_DOWN };                /* BasicBlock */
enum { K_CONV1, K_BN1, K_CONV2, K_BN2, K_CONV3, K_BN3, K_RELU, K_DOWN }; /* Bottleneck */

static kiln_tensor *fwd(kiln_module *m, int child, kiln_ctx *ctx, kiln_tensor *x)
{
    return kiln_module_forward(m->child[child], ctx, x);
}

/* x (N, in, H, W) -> relu(bn2(conv2(relu(bn1(conv1(x))))) + identity) (N, planes, H/s, W/s) */
static kiln_tensor *basic_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    kiln_tensor *h = fwd(m, B_RELU, ctx, fwd(m, B_BN1, ctx, fwd(m, B_CONV1, ctx, x)));
    h = fwd(m, B_BN2, ctx, fwd(m, B_CONV2, ctx, h));
    kiln_tensor *id = m->n_child > B_DOWN ? fwd(m, B_DOWN, ctx, x) : x;
    KILN_IN(h);
    KILN_IN(id);
    return fwd(m, B_RELU, ctx, kiln_add(ctx, h, id));
}

/* x (N, in, H, W) -> relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))) + identity)
 * (N, 4 * planes, H/s, W/s); conv1/conv2 have planes channels */
static kiln_tensor *bottleneck_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    kiln_tensor *h = fwd(m, K_RELU, ctx, fwd(m, K_BN1, ctx, fwd(m, K_CONV1, ctx, x)));
    h = fwd(m, K_RELU, ctx, fwd(m, K_BN2, ctx, fwd(m, K_CONV2, ctx, h)));
    h = fwd(m, K_BN3, ctx, fwd(m, K_CONV3, ctx, h));
    kiln_tensor *id = m->n_child > K_DOWN ? fwd(m, K_DOWN, ctx, x) : x;
    KILN_IN(h);
    KILN_IN(id);
    return fwd(m, K_RELU, ctx, kiln_add(ctx, h, id));
}

static int expansion(kiln_resnet_block b) { return b == KILN_RESNET_BLOCK_BOTTLENECK ? 4 : 1; }

/* One block under layer (named by index); returns its output channels. */
static int64_t block(kiln_module *layer, kiln_resnet_block kind, int64_t in, int64_t planes, int stride)
{
    int64_t out = planes * expansion(kind);
    kiln_module *b;
    if (kind == KILN_RESNET_BLOCK_BASIC) {
        b = kiln_nn_custom(layer, NULL, "BasicBlock", basic_forward, NULL, 0);
        conv(b, "conv1", in, planes, 3, stride);
        kiln_nn_batch_norm2d(b, "bn1", planes, NULL);
        kiln_nn_relu(b, "relu");
        conv(b, "conv2", planes, planes, 3, 1);
        kiln_nn_batch_norm2d(b, "bn2", planes, NULL);
    } else {
        b = kiln_nn_custom(layer, NULL, "Bottleneck", bottleneck_forward, NULL, 0);
        conv(b, "conv1", in, planes, 1, 1);
        kiln_nn_batch_norm2d(b, "bn1", planes, NULL);
        conv(b, "conv2", planes, planes, 3, stride);
        kiln_nn_batch_norm2d(b, "bn2", planes, NULL);
        conv(b, "conv3", planes, out, 1, 1);
        kiln_nn_batch_norm2d(b, "bn3", out, NULL);
        kiln_nn_relu(b, "relu");
    }
    if (stride != 1 || in != out) {
        kiln_module *d = kiln_nn_sequential(b, "downsample");
        conv(d, "0", in, out, 1, stride);
        kiln_nn_batch_norm2d(d, "1", out, NULL);
    }
    return out;
}

static const char *check(const kiln_resnet_params *p)
{
    static _Thread_local char why[160];
    if (p->block != KILN_RESNET_BLOCK_BASIC && p->block != KILN_RESNET_BLOCK_BOTTLENECK)
        snprintf(why, sizeof why, "unknown block kind %d", (int)p->block);
    else if (p->layers[0] < 1 || p->layers[1] < 1 || p->layers[2] < 1 || p->layers[3] < 1)
        snprintf(why, sizeof why, "layers {%d, %d, %d, %d} must all be >= 1 (unknown depth?)", p->layers[0],
                 p->layers[1], p->layers[2], p->layers[3]);
    else if (p->width < 1 || p->n_in < 1)
        snprintf(why, sizeof why, "width %lld and n_in %lld must be >= 1", (long long)p->width, (long long)p->n_in);
    else
        return NULL;
    return why;
}

/* Adds conv1, bn1, relu, maxpool, layer1..4 under parent with the 8 given names; returns the
 * output channels. x (N, n_in, H, W) -> (N, width * 8 * expansion, H/32, W/32). */
static int64_t stem_and_layers(kiln_module *parent, const kiln_resnet_params *p, const char *const names[8])
{
    conv(parent, names[0], p->n_in, p->width, 7, 2);
    kiln_nn_batch_norm2d(parent, names[1], p->width, NULL);
    kiln_nn_relu(parent, names[2]);
    kiln_pool2d_params mp = kiln_pool2d_default_params(3, 2, 1);
    kiln_nn_max_pool2d(parent, names[3], &mp);
    int64_t in = p->width;
    for (int k = 0; k < 4; k++) {
        kiln_module *layer = kiln_nn_sequential(parent, names[4 + k]);
        int64_t planes = p->width << k;
        for (int i = 0; i < p->layers[k]; i++) in = block(layer, p->block, in, planes, i == 0 && k > 0 ? 2 : 1);
    }
    return in;
}

kiln_resnet_params kiln_resnet_default_params(int depth)
{
    kiln_resnet_params p = {.block = KILN_RESNET_BLOCK_BASIC, .width = 64, .n_in = 3, .n_classes = 1000};
    static const struct { int depth, layers[4]; } known[] = {
        {18, {2, 2, 2, 2}}, {34, {3, 4, 6, 3}}, {50, {3, 4, 6, 3}}, {101, {3, 4, 23, 3}}, {152, {3, 8, 36, 3}},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (known[i].depth != depth) continue;
        for (int k = 0; k < 4; k++) p.layers[k] = known[i].layers[k];
        if (depth >= 50) p.block = KILN_RESNET_BLOCK_BOTTLENECK;
    }
    return p;
}

int64_t kiln_resnet_n_features(const kiln_resnet_params *p)
{
    return p ? p->width * 8 * expansion(p->block) : 0;
}

/* x (N, n_in, H, W) -> conv1 .. layer4 -> avgpool (N, C, 1, 1) -> flatten (N, C) -> fc (N, n_classes) */
static kiln_tensor *resnet_forward(kiln_module *m, kiln_ctx *ctx, kiln_tensor *x)
{
    for (int i = 0; i < m->n_child - 1 && x; i++) x = kiln_module_forward(m->child[i], ctx, x);
    KILN_IN(x);
    return kiln_module_forward(m->child[m->n_child - 1], ctx, kiln_flatten(ctx, x, 1, -1));
}

kiln_model *kiln_resnet_new(const kiln_resnet_params *p)
{
    kiln_resnet_params d = kiln_resnet_default_params(34);
    if (!p) p = &d;
    const char *why = check(p);
    if (!why && p->n_classes < 1) why = "n_classes must be >= 1";
    if (why) return kiln__errp(KILN_STATUS_INVALID, "resnet: %s", why);
    kiln_model *model = kiln_model_new();
    if (!model) return NULL;
    kiln_module *root = kiln_model_root(model);
    static const char *const names[8] = {"conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"};
    int64_t nf = stem_and_layers(root, p, names);
    kiln_nn_adaptive_avg_pool2d(root, "avgpool", 1, 1);
    kiln_nn_linear(root, "fc", nf, p->n_classes, true);
    if (model->build_status == KILN_STATUS_OK && kiln_module_set_forward(root, "ResNet", resnet_forward, NULL, 0) < 0)
        kiln__nn_fail(model);
    if (model->build_status != KILN_STATUS_OK) {
        kiln__err(model->build_status, "resnet: %s", model->build_msg);
        kiln_model_free(model);
        return NULL;
    }
    return model;
}

static kiln_model *resnet_depth(int depth, int64_t n_in, int64_t n_classes)
{
    kiln_resnet_params p = kiln_resnet_default_params(depth);
    p.n_in = n_in;
    p.n_classes = n_classes;
    return kiln_resnet_new(&p);
}

kiln_model *kiln_resnet18_new(int64_t n_in, int64_t n_classes) { return resnet_depth(18, n_in, n_classes); }
kiln_model *kiln_resnet34_new(int64_t n_in, int64_t n_classes) { return resnet_depth(34, n_in, n_classes); }
kiln_model *kiln_resnet50_new(int64_t n_in, int64_t n_classes) { return resnet_depth(50, n_in, n_classes); }

kiln_module *kiln_resnet_body(kiln_module *parent, const char *name, const kiln_resnet_params *p)
{
    if (!parent) {
        if (!kiln__has_error()) kiln__err(KILN_STATUS_INVALID, "resnet_body: parent module is NULL");
        return NULL;
    }
    const char *why = p ? check(p) : "parameters are NULL";
    if (why) return kiln__nn_err(parent->model, KILN_STATUS_INVALID, "resnet_body: %s", why);
    kiln_module *body = kiln_nn_sequential(parent, name);
    if (!body) return NULL;
    static const char *const names[8] = {"0", "1", "2", "3", "4", "5", "6", "7"};
    stem_and_layers(body, p, names);
    return parent->model->build_status == KILN_STATUS_OK ? body : NULL;
}
