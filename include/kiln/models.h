/* kiln models: builders for torchvision's ResNets and for the model fastai's vision learner
 * makes from them (a ResNet body cut before avgpool/fc, plus fastai's head); fastai's AWD-LSTM
 * language model and ULMFiT classifier; fastai's TabularModel and its collaborative-filtering
 * models (EmbeddingDotBias, EmbeddingNN) at the end.
 *
 * Every builder returns a model that is built but not allocated (call kiln_model_alloc,
 * which initialises it as its PyTorch twin does) and that the caller frees with
 * kiln_model_free. Module and parameter names are PyTorch's, so state dicts load both ways:
 *   ResNet:       conv1.weight, bn1.*, layer1.0.conv1.weight, ..., layer2.0.downsample.0.weight,
 *                 layer2.0.downsample.1.*, ..., fc.weight, fc.bias   (torchvision)
 *   vision model: 0.0.weight (conv1), 0.1.* (bn1), 0.4.0.conv1.weight (layer1), ...,
 *                 1.2.* (head BatchNorm1d), 1.4.weight (head Linear), ...  (fastai
 *                 nn.Sequential(body, head))
 * Shapes: x (N, n_in, H, W), NCHW; the outputs are logits (N, n_classes). */
#ifndef KILN_MODELS_H
#define KILN_MODELS_H

#include "kiln/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ResNet (torchvision v1.5) ---------------------------------------------------------------- */

typedef enum kiln_resnet_block {
    KILN_RESNET_BLOCK_BASIC = 0,  /* BasicBlock: 3x3 (stride) -> 3x3, expansion 1 (ResNet-18/34) */
    KILN_RESNET_BLOCK_BOTTLENECK, /* Bottleneck: 1x1 -> 3x3 (stride, v1.5) -> 1x1, expansion 4 */
} kiln_resnet_block;

typedef struct kiln_resnet_params {
    kiln_resnet_block block;
    int layers[4];     /* blocks in layer1..layer4, each >= 1: {2, 2, 2, 2} for ResNet-18 */
    int64_t width;     /* 64: stem channels and layer1's planes; layerK has width * 2^(K-1) planes.
                        * torchvision fixes 64; smaller widths are for tests */
    int64_t n_in;      /* 3: input channels (conv1 weight (width, n_in, 7, 7)) */
    int64_t n_classes; /* 1000: fc outputs */
} kiln_resnet_params;

/* torchvision's resnet<depth> for depth 18, 34, 50, 101 or 152 (n_in 3, 1000 classes).
 * Any other depth gives layers {0, 0, 0, 0}, which the builders reject. */
kiln_resnet_params kiln_resnet_default_params(int depth);
/* Features the body outputs: width * 8 * expansion (512 for ResNet-18/34, 2048 for 50). */
int64_t kiln_resnet_n_features(const kiln_resnet_params *p);

/* torchvision.models.ResNet: conv1 (7x7 s2, no bias), bn1, relu, maxpool (3x3 s2 p1),
 * layer1..layer4 (first block of layer2..4 has stride 2 and a downsample = Sequential(
 * conv1x1 with stride, BatchNorm2d)), avgpool (adaptive 1x1), flatten, fc.
 * x (N, n_in, H, W) -> (N, n_classes). Initialised at kiln_model_alloc as torchvision:
 * convs kaiming_normal_(mode='fan_out', nonlinearity='relu'), BatchNorm weight 1 bias 0,
 * fc nn.Linear's default. One layer group. p NULL: ResNet-34 (kiln_resnet_default_params(34)).
 * NULL + message on bad parameters. */
kiln_model *kiln_resnet_new(const kiln_resnet_params *p);
kiln_model *kiln_resnet18_new(int64_t n_in, int64_t n_classes); /* 11,689,512 params (3, 1000) */
kiln_model *kiln_resnet34_new(int64_t n_in, int64_t n_classes); /* 21,797,672 */
kiln_model *kiln_resnet50_new(int64_t n_in, int64_t n_classes); /* 25,557,032 */

/* The ResNet body as fastai's create_body(arch, cut=-2): a Sequential called name under
 * parent (NULL: the next index) with children "0" conv1, "1" bn1, "2" relu, "3" maxpool,
 * "4".."7" layer1..layer4, same init as kiln_resnet_new. p->n_classes is ignored.
 * x (N, n_in, H, W) -> (N, kiln_resnet_n_features(p), ~H/32, ~W/32). */
kiln_module *kiln_resnet_body(kiln_module *parent, const char *name, const kiln_resnet_params *p);

/* ---- fastai vision learner model ---------------------------------------------------------------- */

typedef struct kiln_vision_model_params {
    int64_t n_classes; /* 0: must be set (dls.c in fastai) */
    int64_t lin_ftrs;  /* 512: the one hidden layer of the head */
    float ps;          /* 0.5: dropout ps/2 before the hidden Linear and ps before the last one;
                        * a dropout of 0 is left out, as fastai does (later names shift) */
    bool concat_pool;  /* true: AdaptiveConcatPool2d (2 * nf features); false: AdaptiveAvgPool2d(1) */
    bool v1_head;      /* false: fastai v2 LinBnDrop, Linear(bias=False) after each BatchNorm1d,
                        * BatchNorm1d weight 1 bias 1e-3; true: fastai v1 bn_drop_lin, Linear
                        * with bias (initialised 0), BatchNorm1d bias 0 */
    bool frozen;       /* true: freeze() at creation, as a pretrained learner starts: only the
                        * head and the BatchNorm parameters train */
} kiln_vision_model_params;
kiln_vision_model_params kiln_vision_model_default_params(void); /* n_classes 0: set it */

/* fastai create_head(nf, n_classes, lin_ftrs=[lin_ftrs], ps) as a Sequential called name
 * under parent (NULL: the next index), flat as fastai builds it:
 *   "0" AdaptiveConcatPool2d(1)  "1" Flatten  "2" BatchNorm1d(2nf)  "3" Dropout(ps/2)
 *   "4" Linear(2nf, lin_ftrs)  "5" ReLU  "6" BatchNorm1d(lin_ftrs)  "7" Dropout(ps)
 *   "8" Linear(lin_ftrs, n_classes)          (without concat_pool 2nf is nf)
 * x (N, nf, H, W) -> (N, n_classes). Initialised as fastai's apply_init(head,
 * kaiming_normal_): Linear weights kaiming_normal_ (fan_in, a=0), biases 0, norms skipped. */
kiln_module *kiln_vision_model_head(kiln_module *parent, const char *name, int64_t nf, const kiln_vision_model_params *p);

/* fastai v2's create_vision_model(resnet, n_out): nn.Sequential(body "0", head "1") with
 * three layer groups as fastai's resnet split: {conv1 .. layer2} ("0.0".."0.5"),
 * {layer3, layer4} ("0.6", "0.7"), {head} ("1"). body->n_classes is ignored.
 * x (N, n_in, H, W) -> (N, p->n_classes). NULL + message on bad parameters. */
kiln_model *kiln_vision_model_new(const kiln_resnet_params *body, const kiln_vision_model_params *p);

/* torchvision ResNet key -> vision-model key: "conv1.*" -> "0.0.*", "bn1.*" -> "0.1.*",
 * "layerK.*" -> "0.<3+K>.*" ("layer1.0.conv1.weight" -> "0.4.0.conv1.weight"). False for
 * every other key ("fc.weight") or when out (cap bytes) is too small. */
bool kiln_resnet_body_key(const char *torchvision_key, char *out, size_t cap);

/* Loads torchvision ResNet weights (torchvision's names, which timm's ResNet-18/34/50 share; a
 * .pth as torchvision publishes them or a safetensors file: kiln_weights_open) into the body
 * "0.*" of a vision model (any model whose body keys map as above), through
 * kiln_model_load_mapped: fc.* is dropped and the head "1.*" left as it is; a wrapper
 * ("module.", "model.") on every key is stripped; num_batches_tracked is read when present. conv1's weight, when the file has 3 input channels
 * and the model n_in != 3, is adapted as fastai's _load_pretrained_weights (1: summed over
 * RGB; 2: the first two times 1.5; more: RGB then zeros). Without strict every body key that
 * maps and matches loads and the rest is reported; with strict any missing, unexpected or
 * mis-shaped key is an error naming them; either way a file of which no key loads is an error
 * ("no key of FILE maps onto a ResNet body: is it a ResNet state dict?"), with a hint for
 * timm's other ResNet families (deep stem "conv1.0.*", average-pool shortcuts, SE blocks).
 * Checks everything before copying: on failure the model is unchanged. F16/BF16 become f32.
 * report (may be NULL): what was found, kiln_load_report_free it. */
kiln_status kiln_vision_model_load_pretrained_report(kiln_model *model, const char *path, bool strict,
                                                     kiln_load_report *report);
kiln_status kiln_vision_model_load_pretrained(kiln_model *model, const char *path, bool strict);

/* The same into a whole kiln_resnet_new model (fc included; the names are the file's):
 * kiln_model_load with conv1's adaptation and the ResNet hints. */
kiln_status kiln_resnet_load_pretrained(kiln_model *model, const char *path, bool strict, kiln_load_report *report);

/* ---- AWD-LSTM (Merity et al. 2017, fastai's AWD_LSTM) -------------------------------------------
 * The language model SequentialRNN(AWD_LSTM, LinearDecoder) as fastai v2 builds it: an embedding
 * (vocab, emb) with U(-0.1, 0.1) init, padding_idx 1 (xxpad: its row gets no gradient) and
 * EmbeddingDropout (whole rows, embed_p), RNNDropout on
 * its output (input_p: one mask per sequence, (B, 1, C)), n_layers single-layer LSTMs emb -> hid
 * -> ... -> emb, each with DropConnect on weight_hh_l0 (weight_p, drawn every forward) and
 * RNNDropout between them (hidden_p), then the decoder: RNNDropout (output_p) and a Linear whose
 * weight is the embedding's (tied) with a zero-initialised bias. Dropouts act in train mode only.
 * The hidden state (h, c per layer) is carried from one forward to the next, detached (as
 * fastai's hidden, for consecutive LM windows); kiln_awd_lstm_reset zeroes it, as does a forward
 * in the other mode than the last (train <-> eval: fastai's RNNCallback resets before training
 * and before validating), and a new batch size keeps the rows both have (_change_hidden).
 * x (B, T) I64 token ids -> (B, T, vocab) logits. Names: "0.encoder.weight",
 * "0.rnns.L.module.weight_ih_l0" (and weight_hh_l0, bias_ih_l0, bias_hh_l0), "1.decoder.bias".
 * Four layer groups, fastai's LM split: rnns.0, rnns.1, rnns.2 (each with its dropout), then the
 * embedding with the decoder. */
#define KILN_AWD_MAX_LAYERS 8
typedef struct kiln_awd_lstm_params {
    int64_t vocab, emb, hid;  /* fastai: vocab, 400, 1152 */
    int n_layers;             /* 3 */
    float output_p, hidden_p, input_p, embed_p, weight_p;
} kiln_awd_lstm_params;
/* fastai's awd_lstm_lm_config: emb 400, hid 1152, 3 layers, dropouts (0.1, 0.15, 0.25, 0.02,
 * 0.2) times drop_mult. */
kiln_awd_lstm_params kiln_awd_lstm_lm_config(int64_t vocab, float drop_mult);
kiln_model *kiln_awd_lstm_lm_new(const kiln_awd_lstm_params *p);
/* Zeroes the carried hidden state (before each epoch and each validation, as fastai's reset). */
kiln_status kiln_awd_lstm_reset(kiln_model *model);
/* fastai's RNNRegularizer on the last forward: alpha * mean(dropped^2) + beta * mean((raw[:, 1:]
 * - raw[:, :-1])^2), raw the last LSTM's output, dropped the same after output dropout; a
 * 0-dim tensor to add to the loss (train mode; in the step of that forward). */
kiln_tensor *kiln_awd_lstm_ar_tar(kiln_model *model, kiln_ctx *ctx, float alpha, float beta);
/* Training without the (B, T, vocab) logits (2,240 x 20,000 floats = 179 MB at bs 32, bptt 70, and
 * as much again for their gradient). With kiln_awd_lstm_set_fused_decoder(model, true) (off by
 * default) a forward in train mode stops before the decoder's Linear and returns its input, the
 * last LSTM's output after output dropout, (B, T, emb); in eval mode forwards return logits as
 * always (validation metrics, generation, the parity tests). kiln_awd_lstm_loss is then the loss of
 * the output of this step's kiln_model_forward, whichever it is: out from a fused train forward goes
 * through kiln_linear_cross_entropy with the tied weight and the decoder's bias (one chunk of logits
 * at a time); (B, T, vocab) logits go through kiln_cross_entropy. y (B, T) I64; p as
 * kiln_cross_entropy's (NULL: mean over the positions not equal to ignore_index -100; reduction
 * NONE gives (B, T)). Same value and gradients both ways up to float rounding. Errors when model is
 * not an AWD-LSTM language model, or out is neither. */
kiln_status kiln_awd_lstm_set_fused_decoder(kiln_model *model, bool on);
kiln_tensor *kiln_awd_lstm_loss(kiln_model *model, kiln_ctx *ctx, kiln_tensor *out, kiln_tensor *y,
                                const kiln_xent_params *p);

/* The ULMFiT classifier, fastai v2's get_text_classifier: SequentialRNN(SentenceEncoder(AWD_LSTM),
 * PoolingLinearClassifier). The encoder starts each batch from zero state and reads x (B, L)
 * (padding xxpad first, as kiln_clas_data_new makes it) in chunks of bptt carrying the state,
 * keeping the outputs of the last max_len tokens; masked concat pooling gives [last output, max,
 * mean over the non-pad positions] (B, 3 emb); the head is BatchNorm1d -> Dropout(enc.output_p) ->
 * Linear(3 emb, lin_ftrs, no bias) -> ReLU -> BatchNorm1d -> Dropout(head_p) -> Linear(lin_ftrs,
 * n_classes, no bias): logits (B, n_classes). Names: "0.module.encoder.weight",
 * "0.module.rnns.L.module.*" (a language model's "0.*" under "0.module"), "1.layers.0.0.weight"
 * (BatchNorm), "1.layers.0.2.weight" (Linear), "1.layers.1.*". fastai's five layer groups:
 * embedding, each LSTM, the head. */
typedef struct kiln_awd_clas_params {
    kiln_awd_lstm_params enc; /* kiln_awd_lstm_clas_config */
    int64_t n_classes;
    int64_t bptt, max_len;    /* 70, 1400 (20 x bptt) */
    int64_t lin_ftrs;         /* 50 */
    float head_p;             /* 0.1 */
    int64_t pad_idx;          /* the padding id the pooling leaves out: 1 (fastai's xxpad) */
} kiln_awd_clas_params;
/* fastai's awd_lstm_clas_config: emb 400, hid 1152, 3 layers, dropouts (0.4, 0.3, 0.4, 0.05,
 * 0.5) times drop_mult (fastai's classifier learner: 0.5). */
kiln_awd_lstm_params kiln_awd_lstm_clas_config(int64_t vocab, float drop_mult);
kiln_awd_clas_params kiln_awd_clas_default_params(int64_t vocab, int64_t n_classes, float drop_mult);
kiln_model *kiln_awd_lstm_clas_new(const kiln_awd_clas_params *p);

/* ---- tabular models and collaborative filtering (fastai v2, tabular/model.py and collab.py) ----
 * INPUT CONVENTION (what the tabular data layer produces): x is one f32 tensor (B, n_cat + n_cont);
 * columns 0 .. n_cat-1 hold category codes (integers stored exactly as floats; 0 is #na#, the
 * missing or unseen value), columns n_cat .. the continuous values. The forward turns the codes
 * into indices (no gradient flows through them; a gradient of x, when x requires one, reaches the
 * continuous columns only); a code that is not an integer in [0, cardinality) is an INVALID error
 * naming the row, the column and the value, as is an x that is not 2-D f32 of that width.
 * Cardinalities count the #na# slot. */

/* fastai's emb_sz_rule: min(600, round(1.6 * n_cat^0.56)), rounding half to even as Python's
 * round. 2 -> 2, 10 -> 6, 100 -> 21, 1000 -> 77, 10000 -> 278; 0 for n_cat < 1. */
int64_t kiln_emb_sz_rule(int64_t n_cat);

/* fastai v2's TabularModel (lin_first=True, the default since 2020) as a kiln model:
 *   embeds.K            Embedding(cardinality[K], emb_dims[K]) per categorical column, init as
 *                       fastai's Embedding: trunc_normal_(std=0.01) = normal_().fmod_(2) * 0.01
 *   emb_drop            Dropout(embed_p) on the concatenated embeddings (B, n_emb)
 *   bn_cont             BatchNorm1d(n_cont) on the continuous columns (torch's init: weight 1,
 *                       bias 0); left out when bn_cont is false or n_cont is 0 (fastai builds an
 *                       empty BatchNorm1d(0) then: its bn_cont.* keys have no entry here)
 *   layers.I            one LinBnDrop(lin_first=True) per hidden size: "0" Linear (no bias when
 *                       use_bn), "1" ReLU, "2" BatchNorm1d(size) (fastai's BatchNorm: weight 1,
 *                       bias 1e-3), "3" Dropout(ps[I]) only when ps[I] != 0 ("2" without BN)
 *   layers.<n_layers>   the last LinBnDrop: "0" Linear(n_out, with bias), "1" BatchNorm1d(n_out)
 *                       only with bn_final (then the Linear has no bias)
 *   layers.<n_layers+1> SigmoidRange(y_lo, y_hi) when y_range: sigmoid(x) * (hi - lo) + lo
 * Linears have PyTorch's default init. Keys are fastai's state-dict names, so fastai weights load:
 * embeds.0.weight, bn_cont.weight / bias / running_mean / running_var / num_batches_tracked,
 * layers.0.0.weight, layers.0.2.weight, ..., layers.2.0.weight, layers.2.0.bias. One layer group
 * (fastai's tabular_learner has no splitter).
 * x (B, n_cat + n_cont) as the convention above -> (B, n_out): logits for classification, values
 * for regression. Not allocated: call kiln_model_alloc. NULL + message on bad parameters. */
typedef struct kiln_tabular_model_params {
    int n_cat;                     /* categorical columns (0 allowed when n_cont > 0) */
    const int64_t *cardinality;    /* (n_cat) codes per column, #na# included, each >= 1 */
    const int64_t *emb_dims;       /* (n_cat) embedding sizes, or NULL: kiln_emb_sz_rule of each */
    int64_t n_cont;                /* continuous columns */
    int64_t n_out;                 /* outputs: classes, or 1 for one regression target */
    int n_layers;                  /* hidden layers: 2 */
    const int64_t *layers;         /* (n_layers) hidden sizes: {200, 100} (tabular_learner's) */
    const float *ps;               /* (n_layers) dropout per hidden layer, or NULL: all 0 */
    float embed_p;                 /* 0: dropout on the embeddings */
    bool use_bn;                   /* true: BatchNorm1d in each hidden LinBnDrop */
    bool bn_final;                 /* false: BatchNorm1d after the last Linear too */
    bool bn_cont;                  /* true: BatchNorm1d on the continuous columns */
    bool y_range;                  /* false: sigmoid_range(x, y_lo, y_hi) on the output */
    float y_lo, y_hi;
} kiln_tabular_model_params;
/* fastai's defaults: layers {200, 100} (a static array), ps NULL, embed_p 0, use_bn, bn_cont,
 * no bn_final, no y_range. n_cat, cardinality, n_cont and n_out are 0 / NULL: set them. */
kiln_tabular_model_params kiln_tabular_model_default_params(void);
kiln_model *kiln_tabular_model_new(const kiln_tabular_model_params *p);

/* Collaborative filtering: x (B, 2) f32 codes [user, item] (the convention above, n_cat 2,
 * n_cont 0) -> (B, 1) predicted ratings (fastai's EmbeddingDotBias returns (B); MSELossFlat
 * flattens both). n_users and n_items count the #na# code 0, as fastai's classes do.
 *
 * fastai v2's EmbeddingDotBias(n_factors, n_users, n_items, y_range): four Embeddings, each
 * trunc_normal_(std=0.01), whose store names are the tables an application reads back:
 *   u_weight.weight (n_users, n_factors)   i_weight.weight (n_items, n_factors)
 *   u_bias.weight   (n_users, 1)           i_bias.weight   (n_items, 1)
 * out = sum_f u_weight[u, f] * i_weight[i, f] + u_bias[u] + i_bias[i], then, with y_range,
 * sigmoid(out) * (y_hi - y_lo) + y_lo (fastai's lessons: (0, 5.5) for 0.5 .. 5 stars). The rows
 * of a code repeated in a batch accumulate their gradients. One layer group. Not allocated. */
kiln_model *kiln_collab_dot_bias_new(int64_t n_users, int64_t n_items, int64_t n_factors, bool y_range, float y_lo,
                                     float y_hi);

/* The tables of an allocated kiln_collab_dot_bias_new model (owned by it; the same tensors as
 * kiln_store_find(kiln_model_store(model), "u_weight.weight") and so on). */
typedef struct kiln_collab_tables {
    kiln_tensor *u_weight, *i_weight; /* (n_users, n_factors), (n_items, n_factors) */
    kiln_tensor *u_bias, *i_bias;     /* (n_users, 1), (n_items, 1) */
    int64_t n_users, n_items, n_factors;
} kiln_collab_tables;
/* INVALID when model is not a kiln_collab_dot_bias_new model, STATE before kiln_model_alloc. */
kiln_status kiln_collab_tables_of(kiln_model *model, kiln_collab_tables *out);

/* fastai v2's EmbeddingNN as collab_learner(use_nn=True) builds it: kiln_tabular_model_new with
 * the two code columns (cardinality {n_users, n_items}, embedding sizes by kiln_emb_sz_rule),
 * n_cont 0, n_out 1, the hidden sizes layers[0..n_layers) (collab_learner's default: {n_factors},
 * 50), fastai's other defaults (BatchNorm, no dropout) and the y_range. Keys as
 * kiln_tabular_model_new's: embeds.0.weight (users), embeds.1.weight (items), layers.*. */
kiln_model *kiln_collab_nn_new(int64_t n_users, int64_t n_items, int n_layers, const int64_t *layers, bool y_range,
                               float y_lo, float y_hi);

#ifdef __cplusplus
}
#endif
#endif
