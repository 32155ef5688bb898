/* Freezing at the learner level (include/kiln/learn.h), as fastai v2's Learner.freeze_to:
 * the model's layer groups are frozen (kiln_model_freeze_to: BatchNorm parameters keep
 * training while train_bn is on) and the optimizer state is cleared (opt.clear_state()),
 * so Adam's moments and step counts start again for the new set of trainable parameters. */
#include "learn_internal.h"

kiln_status kiln_learner_freeze_to(kiln_learner *l, int n)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_freeze_to: learner is NULL");
    kiln_status st = kiln_model_freeze_to(l->model, n);
    if (st) return st;
    kiln_optim_clear_state(l->opt);
    return KILN_STATUS_OK;
}

kiln_status kiln_learner_freeze(kiln_learner *l) { return kiln_learner_freeze_to(l, -1); }
kiln_status kiln_learner_unfreeze(kiln_learner *l) { return kiln_learner_freeze_to(l, 0); }

kiln_status kiln_learner_set_train_bn(kiln_learner *l, bool train_bn)
{
    if (!l) return kiln__err(KILN_STATUS_INVALID, "learner_set_train_bn: learner is NULL");
    if (kiln_model_train_bn(l->model) == train_bn) return KILN_STATUS_OK;
    kiln_model_set_train_bn(l->model, train_bn);
    /* on a frozen model the frozen groups' BatchNorm parameters changed sides: a freeze change */
    if (kiln_model_frozen_to(l->model) > 0) kiln_optim_clear_state(l->opt);
    return KILN_STATUS_OK;
}

bool kiln_learner_train_bn(const kiln_learner *l) { return l && kiln_model_train_bn(l->model); }
