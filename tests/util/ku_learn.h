/* Learner test set-ups shared by the Learner tests (test_learn, test_checkpoint,
 * test_lr_find, test_snapshot): four Gaussian blobs in 2-D drawn from a seeded xorshift64*
 * stream, wrapped as tensor data, an MLP classifier with an optional SGD optimizer, and a
 * quiet Learner with accuracy. Every call with the same parameters builds the same data and
 * the same initial weights (the context is seeded), so two set-ups can be compared bit for
 * bit. Failures fail the current Criterion test with kiln_last_error(). */
#ifndef KILN_TESTS_KU_LEARN_H
#define KILN_TESTS_KU_LEARN_H

#include "util/ku.h"

/* The seed the blob set-ups start from. */
#define KU_BLOBS_SEED 88172645463325252ull

/* n points of four blobs: class i % 4 centred at (+-center, +-center) (bit 0 picks x's
 * sign, bit 1 y's), Gaussian noise of std noise, drawn from the xorshift64* state *rs.
 * x (n, 2) f32, y (n) i64. */
void ku_blobs(uint64_t *rs, int64_t n, double center, double noise, float *x, int64_t *y);

typedef struct ku_learn_params {
    int64_t n_train, n_valid, batch_size;
    double center, noise; /* ku_blobs, from KU_BLOBS_SEED */
    int64_t hidden;       /* MLP 2-hidden-4 (two layer groups) */
    float dropout;
    bool batchnorm;
    bool sgd;      /* SGD with momentum 0.9 instead of the Learner's default AdamW */
    bool accuracy; /* add the accuracy metric */
    const kiln_learner_params *learner; /* NULL = defaults with a quiet progress display */
} ku_learn_params;

typedef struct ku_learn {
    kiln_ctx *ctx;
    kiln_model *model;
    kiln_data *data;
    kiln_optim *opt; /* NULL unless sgd */
    kiln_learner *learn;
} ku_learn;

ku_learn ku_learn_new(const ku_learn_params *p);
/* Frees what ku_learn_new made (any member may be NULL). */
void ku_learn_free(ku_learn *f);

#endif
