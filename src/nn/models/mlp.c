/* A small MLP, mostly for tests: Linear -> [BatchNorm1d] -> ReLU -> [Dropout] per hidden
 * layer, then a Linear head; module names as the same nn.Sequential in PyTorch. */
#include "nn/nn_internal.h"

kiln_model *kiln_mlp_new(int64_t n_in, int n_hidden, const int64_t *hidden, int64_t n_out, float p, bool bn)
{
    if (n_hidden < 0 || (n_hidden > 0 && !hidden))
        return kiln__errp(KILN_STATUS_INVALID, "mlp: %d hidden sizes given as %p", n_hidden, (const void *)hidden);
    kiln_model *model = kiln_model_new();
    if (!model) return NULL;
    kiln_module *root = kiln_model_root(model);
    int64_t prev = n_in; /* x (N, prev) */
    for (int i = 0; i < n_hidden; i++) {
        kiln_nn_linear(root, NULL, prev, hidden[i], true);
        if (bn) kiln_nn_batch_norm1d(root, NULL, hidden[i], NULL);
        kiln_nn_relu(root, NULL);
        if (p > 0) kiln_nn_dropout(root, NULL, p);
        prev = hidden[i];
    }
    kiln_module *head = kiln_nn_linear(root, NULL, prev, n_out, true);
    if (model->build_status != KILN_STATUS_OK) {
        kiln__err(model->build_status, "mlp: %s", model->build_msg);
        kiln_model_free(model);
        return NULL;
    }
    const char *first[1] = {kiln_module_path(head)};
    if (n_hidden > 0) kiln_model_split(model, 2, first);
    return model;
}
