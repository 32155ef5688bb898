/* kiln learn_ext: what is built on the Learner (learn.h), one header per topic since issue 9;
 * this one includes them all, for programs written before the split:
 *   learn_lr_find.h     the LR range test (fastai Learner.lr_find)
 *   learn_snapshot.h    snapshot ensembles
 *   learn_checkpoint.h  checkpoints, resume, the run's settings
 *   learn_tta.h         test-time augmentation
 * The in-memory copy of a model's weights (kiln_weights) they share is in learn.h. */
#ifndef KILN_LEARN_EXT_H
#define KILN_LEARN_EXT_H

#include "kiln/learn_checkpoint.h"
#include "kiln/learn_lr_find.h"
#include "kiln/learn_snapshot.h"
#include "kiln/learn_tta.h"

#endif
