/* kiln apps: the application layer, fastai's shape in C. A task's constructor
 * (kiln_vision_learner_new now; text, tabular and collab later) returns one kiln_learner
 * holding fastai's defaults; the same calls then work for every task:
 *   kiln_learner_train        the shared training driver: a fit recipe, checkpoints and
 *                             resume, history.csv, metrics.json, plots, the exported model
 *   kiln_learner_export/load  weights (safetensors, PyTorch names) + DIR/model.json, whose
 *                             common part every task shares and whose task part each adds
 *   kiln_learner_predict      inference on new items (files for vision), with or without
 *                             TTA, through the same data path and forward pass as validation
 *   kiln_learner_interpret    ClassificationInterpretation (kiln/interp.h) on a split
 * The fit recipes (one-cycle, SGDR, CLR, constant, fine_tune) and the architecture registry
 * (kiln_arch_find) are here too. Errors are values: NULL or a status, with
 * kiln_last_error() naming the file, key or flag-like field at fault. */
#ifndef KILN_APPS_H
#define KILN_APPS_H

#include "kiln/augment.h"
#include "kiln/core.h"
#include "kiln/data.h"
#include "kiln/interp.h"
#include "kiln/learn.h"
#include "kiln/learn_ext.h"
#include "kiln/models.h"
#include "kiln/nn.h"
#include "kiln/sched.h"
#include "kiln/text.h"
#include "kiln/vision.h"
#include "kiln/vision_model.h"
#include "kiln/apps_tabular.h"

#include <signal.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- architectures ------------------------------------------------------------------------ */

typedef struct kiln_arch {
    const char *name;  /* "simple-cnn": the name model.json and the CLI's --arch use */
    const char *about; /* "fastai lesson 7" */
    int max_size;      /* largest image side it takes (its stride-2 stages end at 1x1); 0: any */
    bool nhwc;         /* KILN_LAYOUT_AUTO runs it channels-last (measured faster for it) */
    kiln_model *(*make)(int n_in, int n_classes); /* not allocated yet */
} kiln_arch;

int kiln_arch_count(void);
const kiln_arch *kiln_arch_at(int i); /* NULL out of range */
/* NULL + INVALID naming the known ones when name is not one of them. */
const kiln_arch *kiln_arch_find(const char *name);
/* "simple-cnn, simple-resnet, resnet18, resnet34 or resnet50" (for messages and --help). */
const char *kiln_arch_names(void);

typedef enum kiln_layout {
    KILN_LAYOUT_AUTO = 0, /* the arch's choice (kiln_arch.nhwc) */
    KILN_LAYOUT_NCHW,
    KILN_LAYOUT_NHWC,     /* channels-last */
} kiln_layout;
kiln_status kiln_layout_parse(const char *name, kiln_layout *out); /* "auto", "nchw", "nhwc" */

/* arch for (n_in, size, size) images and n_classes outputs, allocated on ctx, in layout.
 * INVALID when size exceeds the arch's max_size ("simple-cnn takes images of at most 32x32"). */
kiln_model *kiln_arch_model_new(const kiln_arch *a, kiln_ctx *ctx, int n_in, int size, int n_classes,
                                kiln_layout layout);

/* ---- vision data (fastai ImageDataLoaders) --------------------------------------------------- */

/* kiln_vision_open with training augmentation aug (NULL: none) applied to the train split;
 * the data keeps its own copy of aug (p->tfm / tfm_user are replaced). */
kiln_data *kiln_vision_dls_open(const char *source, const kiln_vision_params *p, const kiln_augment_params *aug);

/* The first training batch of an epoch (seed, epoch 0), as the loader makes it (augmented
 * when d has a transform), as a labelled grid PNG at path: fastai show_batch. The batch size
 * is the data's. */
kiln_status kiln_vision_show_batch(kiln_data *d, kiln_ctx *ctx, uint64_t seed, const char *path);

/* ---- learners ------------------------------------------------------------------------------ */

typedef struct kiln_vision_learner_params {
    double wd;                  /* AdamW weight decay, 1e-2 (none on BatchNorm and biases) */
    kiln_layout layout;         /* KILN_LAYOUT_AUTO */
    kiln_learner_params learner;/* seed 42, progress, on_nan, ... (kiln_learner_default_params) */
    /* Transfer learning (fastai vision_learner(pretrained=True)); NULL: random weights.
     *   a folder a kiln export wrote (DIR/model.json + model.safetensors): the same arch with
     *     the same input channels; every layer group but the last (the head) is loaded, the
     *     head keeps its fresh initialisation for the data's classes (kiln_model_load_body);
     *   a file (.pth as torchvision publishes them, or .safetensors with torchvision / timm
     *     ResNet names): resnet18/34/50 only; the body is loaded, fc.* dropped, conv1 adapted
     *     to the data's channels (kiln_vision_model_load_pretrained_report).
     * The learner then starts frozen (freeze(): only the head and, with train_bn, BatchNorm
     * parameters train), as fastai's, unless unfreeze. */
    const char *pretrained;
    bool strict;                /* a missing, unexpected or mis-shaped key fails (default false:
                                   reported, the rest loads) */
    bool unfreeze;              /* train every layer from the start (default false) */
    bool train_bn;              /* BatchNorm parameters of frozen groups train (default true) */
    kiln_load_report *report;   /* filled with what the load found when not NULL (free it with
                                   kiln_load_report_free; it must start zeroed or freed) */
} kiln_vision_learner_params;

kiln_vision_learner_params kiln_vision_learner_default_params(void);

/* The data parameters a model exported to folder pretrained expects, set into vp: its input
 * channels and its normalization statistics (the pretrained body saw inputs normalised so;
 * fastai normalises with the pretrained model's stats). A pretrained file (not a folder)
 * leaves vp alone. IO / FORMAT naming the file when DIR/model.json cannot be read. */
kiln_status kiln_vision_pretrained_data_params(const char *pretrained, kiln_vision_params *vp);

/* fastai vision_learner / cnn_learner: arch built for the data's channels, image size and
 * classes, from random weights or p->pretrained's (then frozen unless p->unfreeze); AdamW
 * (betas 0.9/0.99, eps 1e-5); accuracy as the metric; cross-entropy. A pretrained folder of
 * another arch or other input channels, or a file for an arch that is not a ResNet, is
 * refused (INVALID naming both). The learner takes data (freed by kiln_learner_free, and by
 * this call when it fails) and owns the model and optimizer it makes; ctx is borrowed (free
 * it after the learner). The data must come from kiln_vision_open / kiln_vision_dls_open
 * and have >= 2 classes and >= 1 training batch. p NULL: defaults. */
kiln_learner *kiln_vision_learner_new(kiln_ctx *ctx, kiln_data *data, const char *arch,
                                      const kiln_vision_learner_params *p);

/* The task a learner was made for ("vision", "text-lm", "text-clas"); NULL for a learner made
 * by kiln_learner_new. */
const char *kiln_learner_task(const kiln_learner *l);
/* A vision model's description (arch, classes, normalization, augmentation, ...); NULL when
 * the learner's task is not vision. Class names (any classifier task): kiln_learner_classes. */
const kiln_vision_model_info *kiln_learner_vision_info(const kiln_learner *l);
int kiln_learner_n_classes(const kiln_learner *l);
const char *const *kiln_learner_classes(const kiln_learner *l);

/* ---- export / load ------------------------------------------------------------------------- *
 * dir/model.safetensors (the weights, PyTorch state-dict names) and dir/model.json:
 *   {"format": "kiln-model", "format_version": 1, "task": "vision",
 *    "arch", "n_params", "classes", "n_classes",
 *    "normalization": {"kind", "mean", "std"},
 *    "preprocessing": {"n_in", "size", "resize"},
 *    "augmentation": {...} or null,
 *    "training": {"seed", "valid_pct", "data"},
 *    "vision": {}}                                       (the task's own part)
 * Unknown keys warn on stderr (so a file a later kiln writes still loads); missing,
 * mistyped or out-of-range keys are refused naming the key; a format_version above the one
 * this kiln reads is refused saying so. Files kiln wrote before this layout (format
 * "kiln-vision-model") load too. Both files are written atomically. */
kiln_status kiln_learner_export(kiln_learner *l, const char *dir);
/* The learner dir holds, on ctx (borrowed), without data (predict needs none; set one with
 * kiln_learner_set_data or kiln_learner_open_data to validate or interpret). Its weights are
 * checked finite. */
kiln_learner *kiln_learner_load(kiln_ctx *ctx, const char *dir);

/* The data source opened as the learner's model expects it (its image size, channels,
 * normalization, the valid split of its training with valid_pct and seed, and with tta its
 * training augmentation for TTA passes), checked against its classes (same names, same
 * order), and set as the learner's data (the learner frees it). p: batch size, workers,
 * skip_bad (NULL: defaults). */
kiln_status kiln_learner_open_data(kiln_learner *l, const char *source, const kiln_vision_params *p, bool tta);

/* ---- prediction ---------------------------------------------------------------------------- */

typedef struct kiln_predict_params {
    bool tta;      /* test-time augmentation (fastai v2 tta): n augmented passes mixed with
                      the plain one, with the model's training augmentation */
    int tta_n;     /* 4 */
    double tta_beta;/* weight of the plain pass, 0.25 */
    bool tta_max;  /* elementwise max of the augmented passes instead of their mean */
    int64_t bs;    /* items per forward pass, 64 */
} kiln_predict_params;

kiln_predict_params kiln_predict_default_params(void);

/* Class probabilities of n items (vision: image files), through the data path validation
 * uses (decode, resize, normalize; TTA passes as kiln_learner_tta): out->probs (n, c), out->n
 * = n; out->targets are 0 (unlabelled) and out->loss is not meaningful. An item that cannot
 * be read fails the call naming it. Item i with TTA is augmented as item i of a validation
 * split would be, so predicting a split's files in order gives kiln_learner_tta's result. */
kiln_status kiln_learner_predict(kiln_learner *l, const char *const *items, int64_t n, const kiln_predict_params *p,
                                 kiln_preds *out);
/* Predictions over a split of the learner's data, plain or with TTA (p NULL: plain). */
kiln_status kiln_learner_predict_split(kiln_learner *l, kiln_data_split split, const kiln_predict_params *p,
                                       kiln_preds *out);

/* fastai ClassificationInterpretation.from_learner: predictions over a split of the
 * learner's data (plain or TTA, p NULL: plain) turned into a confusion matrix, losses and
 * top losses (kiln/interp.h; free with kiln_interp_free). */
kiln_status kiln_learner_interpret(kiln_learner *l, kiln_data_split split, const kiln_predict_params *p,
                                   kiln_interp *out);

/* ---- fit recipes --------------------------------------------------------------------------- */

typedef enum kiln_recipe_kind {
    KILN_RECIPE_ONE_CYCLE = 0, /* fastai v2 fit_one_cycle */
    KILN_RECIPE_SGDR,          /* warm restarts: n_cycle cycles, cycle_len epochs x cycle_mult^k */
    KILN_RECIPE_CLR,           /* triangular cyclical lr, lr/25 .. lr */
    KILN_RECIPE_CONST,         /* constant lr */
    KILN_RECIPE_FINE_TUNE,     /* fastai fine_tune: freeze_epochs frozen, then all unfrozen */
    KILN_RECIPE_ULMFIT,        /* ULMFiT's gradual unfreezing (kiln_learner_fit_ulmfit) */
} kiln_recipe_kind;

typedef struct kiln_recipe {
    kiln_recipe_kind kind;
    double lr;              /* peak lr (fine_tune: base_lr; ulmfit: the first phase's, 2e-2), 1e-2 */
    int64_t epochs;         /* 3; sgdr: 0 = the cycles' sum; clr: 0 = n_cycle x cycle_len;
                               fine_tune and ulmfit: of the unfrozen phase (1 and 2) */
    int64_t n_cycle;        /* sgdr 3; clr: 0 = epochs / cycle_len */
    int64_t cycle_len;      /* 1 */
    int64_t cycle_mult;     /* sgdr, 2 */
    int64_t freeze_epochs;  /* fine_tune: of the frozen phase; ulmfit: of each partly frozen one; 1 */
    double pct_start;       /* one-cycle / fine_tune / ulmfit share of warm-up, 0.25 (fine_tune 0.3) */
    double lr_mult;         /* fine_tune: the unfrozen phase trains slice(lr/2/lr_mult, lr/2)
                               across the layer groups, 100; ulmfit: slice(lr'/lr_mult, lr') in
                               every phase, 2.6^4 (the paper's factor 2.6 over 5 groups); > 0 */
} kiln_recipe;

kiln_recipe kiln_recipe_make(kiln_recipe_kind kind);
/* "one-cycle", "sgdr", "clr", "const", "fine-tune", "ulmfit" */
const char *kiln_recipe_name(kiln_recipe_kind kind);
kiln_status kiln_recipe_parse(const char *name, kiln_recipe_kind *out);
/* The epochs r spans (sgdr: the cycles' sum), after checking it: INVALID naming the field
 * ("sgdr: epochs 5 differs from the cycles' 7"). */
kiln_status kiln_recipe_epochs(const kiln_recipe *r, int64_t *epochs);
/* The schedule of r over n_batches batches per epoch (fine_tune, ulmfit: the last phase's). */
kiln_status kiln_recipe_sched(const kiln_recipe *r, int64_t n_batches, kiln_sched *s);
/* Fits l with r (fine_tune, ulmfit: every phase; the recorder then holds them all, one after
 * the other, through kiln_learner_prepend_history). */
kiln_status kiln_learner_fit_recipe(kiln_learner *l, const kiln_recipe *r);
/* fastai's fit calls by name, next to kiln_learner_fit_one_cycle (kiln/learn.h). */
kiln_status kiln_learner_fit_sgdr(kiln_learner *l, int64_t n_cycle, int64_t cycle_len, int64_t cycle_mult, double lr);
kiln_status kiln_learner_fit_clr(kiln_learner *l, int64_t epochs, int64_t cycle_len, double lr);

/* fastai v2 fine_tune(epochs, base_lr, freeze_epochs, lr_mult, pct_start, div):
 *   freeze(); fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99)
 *   base_lr /= 2; unfreeze()
 *   fit_one_cycle(epochs, slice(base_lr/lr_mult, base_lr), pct_start, div)
 * slice(hi) gives every group but the last hi/10 (the BatchNorm parameters of the frozen body
 * train at base_lr/10 while train_bn is on), slice(lo, hi) spreads lo..hi geometrically over
 * the groups (fastai even_mults); the frozen phase keeps fit_one_cycle's div 25; both end at
 * peak/1e5 (div_final). freeze / unfreeze are kiln_learner_freeze / kiln_learner_unfreeze
 * (the optimizer state is cleared at each). The learner ends unfrozen; the recorder holds the
 * unfrozen phase. */
typedef struct kiln_fine_tune_params {
    double base_lr;        /* 2e-3 */
    int64_t freeze_epochs; /* 1; 0: straight to the unfrozen phase */
    double lr_mult;        /* 100 */
    double pct_start;      /* 0.3, of the unfrozen phase (the frozen one uses 0.99) */
    double div;            /* 5, of the unfrozen phase */
} kiln_fine_tune_params;
kiln_fine_tune_params kiln_fine_tune_default_params(void);
/* p NULL = defaults. INVALID naming the field ("fine-tune: lr_mult 0 must be > 0"). */
kiln_status kiln_learner_fine_tune(kiln_learner *l, int64_t epochs, const kiln_fine_tune_params *p);

/* ULMFiT's classifier recipe (Howard & Ruder 2018, section 3.3; fastai's IMDb notebook): gradual
 * unfreezing with discriminative lrs, one-cycle in every phase with momentum 0.8 -> 0.7 -> 0.8:
 *   freeze_to(-1); fit_one_cycle(freeze_epochs, lr)
 *   freeze_to(-2); fit_one_cycle(freeze_epochs, slice(lr/2/lr_mult, lr/2))
 *   freeze_to(-3); fit_one_cycle(freeze_epochs, slice(lr/4/lr_mult, lr/4))
 *   unfreeze();    fit_one_cycle(epochs, slice(lr/20/lr_mult, lr/20))
 * A model of G layer groups has min(3, G - 1) partly frozen phases (the classifier's 5 groups:
 * all three). slice(lo, hi) spreads lo..hi geometrically over the groups, so lr_mult 2.6^4 over
 * 5 groups is the paper's factor 2.6 from one group to the next. The learner ends unfrozen;
 * the recorder holds every phase. INVALID naming the field; a model of one group is refused. */
typedef struct kiln_ulmfit_params {
    double lr;             /* 2e-2: the first phase's peak */
    int64_t freeze_epochs; /* 1: epochs of each partly frozen phase */
    double lr_mult;        /* 45.6976 = 2.6^4 */
    double pct_start;      /* 0.25 */
    double moms[3];        /* 0.8, 0.7, 0.8 */
} kiln_ulmfit_params;
kiln_ulmfit_params kiln_ulmfit_default_params(void);
kiln_status kiln_learner_fit_ulmfit(kiln_learner *l, int64_t epochs, const kiln_ulmfit_params *p);

/* ---- text: the language-model learner (fastai language_model_learner) ------------------------- *
 * An AWD-LSTM language model (kiln_awd_lstm_lm_new, config NULL: kiln_awd_lstm_lm_config(vocab size,
 * drop_mult)) on LM batches (kiln_lm_data_new over ids of vocab, which is copied); the loss is
 * cross-entropy over every position plus, in training only, AR/TAR (alpha, beta: fastai's 2 and
 * 1), in training through the fused decoder (kiln_awd_lstm_set_fused_decoder: no (B, T, vocab)
 * logits held); metrics accuracy (next-token, over every position) and perplexity (exp of the validation
 * loss); Adam with decoupled weight decay wd (fastai's 0.01); fastai's four LM layer groups.
 * The learner takes data (freed with it, and by this call when it fails); ctx is borrowed.
 * kiln_learner_export (and so kiln_learner_train) writes dir/model.safetensors, dir/vocab.txt,
 * dir/encoder.safetensors (the encoder alone, fastai's save_encoder names) and dir/model.json {"format": "kiln-model", "task": "text-lm", "arch": "awd_lstm", "vocab_size",
 * "config": {emb, hid, n_layers, the five dropouts}, "training": {seed, alpha, beta}}, which
 * kiln_text_lm_learner_load reads back (kiln_learner_task: "text-lm"). */
typedef struct kiln_text_lm_learner_params {
    const kiln_awd_lstm_params *config; /* NULL: fastai's LM config with drop_mult */
    /* a folder a text LM was exported to (kiln_learner_export): its sizes (emb, hid, layers)
     * replace config's, its LSTM weights are loaded, and its embedding and decoder bias are
     * carried over to this vocabulary by match_embeds (rows of words it knew copied, others
     * their mean), as fastai fine-tunes a pretrained LM on a new corpus. NULL: random weights */
    const char *pretrained;
    int64_t *n_matched;                 /* pretrained: words of vocab the old one knew (may be NULL) */
    float drop_mult;                    /* 1.0 */
    float alpha, beta;                  /* AR and TAR, 2 and 1 */
    double wd;                          /* 0.01 */
    kiln_learner_params learner;
} kiln_text_lm_learner_params;
kiln_text_lm_learner_params kiln_text_lm_learner_default_params(void);
kiln_learner *kiln_text_lm_learner_new(kiln_ctx *ctx, kiln_data *lm_data, const kiln_vocab *vocab,
                                       const kiln_text_lm_learner_params *p);
/* A text learner's vocabulary (a copy made at construction); NULL for another learner. */
const kiln_vocab *kiln_text_learner_vocab(const kiln_learner *l);

/* ---- text: the ULMFiT classifier learner (fastai text_classifier_learner) ----------------------- *
 * kiln_awd_lstm_clas_new for the data's vocabulary and classes (kiln_text_clas_data_open); with
 * lm (a folder kiln_learner_export wrote for a language model): its sizes, its encoder's weights
 * (lm/encoder.safetensors, or model.safetensors' "0.*", as "0.module.*"), the vocabulary must be the one it was trained with (open the data with
 * vocab_in = its vocab.txt), and the body is frozen (fastai: learn.freeze()), so a fine-tune
 * recipe trains the head first, then everything with discriminative lrs. Cross-entropy, accuracy,
 * Adam with decoupled wd. Export: model.safetensors, vocab.txt, model.json (task "text-clas",
 * classes). The learner takes data; vocab and classes are copied. */
typedef struct kiln_text_clas_learner_params {
    const kiln_awd_lstm_params *config; /* NULL: kiln_awd_lstm_clas_config(vocab, drop_mult); lm sets the sizes */
    float drop_mult;                    /* 0.5 */
    const char *lm;                     /* NULL: random weights */
    int64_t bptt, max_len, lin_ftrs;    /* 70, 1400, 50 */
    double wd;                          /* 0.01 */
    kiln_learner_params learner;
} kiln_text_clas_learner_params;
kiln_text_clas_learner_params kiln_text_clas_learner_default_params(void);
kiln_learner *kiln_text_clas_learner_new(kiln_ctx *ctx, kiln_data *clas_data, const kiln_vocab *vocab,
                                         const kiln_text_classes *classes, const kiln_text_clas_learner_params *p);

/* A text classifier kiln_learner_export wrote to dir (model.json task "text-clas", vocab.txt,
 * model.safetensors loaded strictly), without data, for prediction. Errors name the file and
 * the key at fault. */
kiln_learner *kiln_text_clas_learner_load(kiln_ctx *ctx, const char *dir);
/* A text classifier's classes (NULL for another learner). */
const kiln_text_classes *kiln_text_learner_classes(const kiln_learner *l);
/* Classifies texts[0..n) (eval mode, one at a time): pred[i] the class index, probs (n, n_classes)
 * the softmax (may be NULL); *n_unk (may be NULL) the tokens of all texts not in the vocabulary.
 * A text whose every word is unknown is still classified (its tokens are xxbos and xxunk). */
kiln_status kiln_text_classify(kiln_learner *l, const char *const *texts, int64_t n, int64_t *pred, float *probs,
                               int64_t *n_unk);

/* fastai's ClassificationInterpretation for a text classifier (kiln_text_clas_learner_new) over a
 * split of its data: the predictions, put in document order (an index is the document's place in
 * the split), into *out (may be NULL; kiln_interp_free it); with dir, also written there:
 * confusion_matrix.csv, confusion_matrix.png (with PLplot) and top_losses.csv (the k largest, the
 * "file" column holding the document's text decoded from its tokens, cut at 200 bytes). */
kiln_status kiln_text_interpret(kiln_learner *l, kiln_data_split split, const char *dir, int64_t k, kiln_interp *out);

/* ---- text: a saved language model, and generation (fastai LMLearner.predict) ------------------ */

/* A language model kiln_learner_export wrote to dir (model.json task "text-lm", vocab.txt,
 * model.safetensors loaded strictly, checked finite), without data: for generation, or to give
 * data to (kiln_learner_set_data) and train on. Errors name the file and the key at fault. */
kiln_learner *kiln_text_lm_learner_load(kiln_ctx *ctx, const char *dir);

typedef struct kiln_text_generate_params {
    int64_t n_words;    /* tokens to add, 20 */
    double temperature; /* 1: the model's distribution; < 1 sharper, > 1 flatter; 0: greedy (argmax) */
    bool no_unk;        /* xxunk is never drawn (fastai's default), true */
    uint64_t seed;      /* the draws are kiln_philox_uniform(seed, i): the same seed, the same text */
} kiln_text_generate_params;
kiln_text_generate_params kiln_text_generate_default_params(void);

/* The prompt followed by n_words tokens the language model l draws one at a time (eval mode,
 * state reset first), decoded to text (kiln_text_decode: "xxmaj the" -> "The") into *out
 * (malloc'd; free it). *n_unk (may be NULL): the prompt's tokens not in the vocabulary. A
 * prompt with words of which none is in the vocabulary is INVALID saying so; an empty prompt
 * starts from the beginning of a document (xxbos). */
kiln_status kiln_text_generate(kiln_learner *l, const char *prompt, const kiln_text_generate_params *p, char **out,
                               int64_t *n_unk);

/* ---- the shared training driver ------------------------------------------------------------ */

typedef struct kiln_train_params {
    kiln_recipe recipe;
    const char *out;          /* folder for everything below (created); required */
    bool resume;              /* go on from out/checkpoint.safetensors (same settings) */
    int checkpoint_every;     /* epochs between checkpoints, 1 (0: none; resume needs them) */
    int snapshots;            /* keep weights at each cycle end and report the ensemble of the
                                 last `snapshots` (0: off) */
    kiln_predict_params tta;  /* tta.tta: also report TTA metrics after training */
    const char *const *settings; /* "key", "value", ..., NULL: what shapes training, recorded
                                 in checkpoints (resume refuses a differing one); may be NULL */
    volatile sig_atomic_t *stop; /* when set non-zero (a SIGINT handler), the fit stops at the
                                 next batch boundary; NULL: never */
    const char *data_name;    /* recorded in model.json ("fashion-mnist"); may be NULL */
} kiln_train_params;

kiln_train_params kiln_train_default_params(void);

typedef struct kiln_train_result {
    int64_t epochs;           /* trained, every phase of a phased recipe (fine-tune, ulmfit) */
    double train_loss, valid_loss;
    double *metrics;          /* (kiln_learner_n_metrics), last epoch */
    double seconds, items_per_s;
    bool interrupted;         /* *stop was set: nothing but the checkpoint was written */
    bool tta;
    double tta_loss, *tta_metrics;
    kiln_snapshot_eval snap;  /* snap.n > 0 when snapshots were evaluated */
    int64_t n_skipped;        /* batches skipped (on_nan skip) */
    int64_t n_valid_nonfinite;/* epochs with a non-finite validation loss or metric (skip) */
    bool plots;               /* losses.png and lr.png were written (PLplot present) */
    int n_stale_removed;      /* temp files a killed run had left in out, removed */
} kiln_train_result;

/* Trains l with p->recipe and writes into p->out (once per learner: the checkpointing and
 * snapshot callbacks it adds stay attached, so the result's snapshots can be read after it;
 * a second call with snapshots or checkpoints is refused with STATE naming the callback): checkpoint.safetensors (at the start and
 * every checkpoint_every epochs), then model.safetensors + model.json (kiln_learner_export),
 * history.csv, metrics.json, losses.png, lr.png. Temp files a killed run left in out are
 * removed first. On KILN_STATUS_DIVERGED nothing but checkpoints was written; the message
 * names the last good checkpoint. r is filled (free with kiln_train_result_free). */
kiln_status kiln_learner_train(kiln_learner *l, const kiln_train_params *p, kiln_train_result *r);
void kiln_train_result_free(kiln_train_result *r);
/* out/metrics.json from r (what kiln_learner_train writes). */
kiln_status kiln_train_result_write_json(kiln_learner *l, const kiln_train_params *p, const kiln_train_result *r,
                                         const char *path);

#ifdef __cplusplus
}
#endif
#endif
