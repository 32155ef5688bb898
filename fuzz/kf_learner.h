/* A tiny learner shared by the checkpoint fuzz target and make_seeds.c, so the seed
 * checkpoints match the learner they are loaded into. */
#ifndef KILN_FUZZ_KF_LEARNER_H
#define KILN_FUZZ_KF_LEARNER_H

#include "kiln.h"

typedef struct kf_learn {
    kiln_ctx *ctx;
    kiln_model *model;
    kiln_data *data;
    kiln_learner *learn; /* NULL (message set) when any part failed */
} kf_learn;

kf_learn kf_learner_new(void);
void kf_learner_free(kf_learn *f);

#endif
