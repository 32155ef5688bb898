/* kiln: the whole public API. */
#ifndef KILN_H
#define KILN_H
#include "kiln/core.h"
#include "kiln/autograd.h"
#include "kiln/ops.h"
#include "kiln/io.h"
#include "kiln/sched.h"
#include "kiln/report.h"
#include "kiln/optim.h"
#include "kiln/nn.h"
#include "kiln/data.h"
#include "kiln/learn.h"
#include "kiln/learn_ext.h"
#include "kiln/vision.h"
#include "kiln/text.h"
#include "kiln/tabular.h"
#include "kiln/augment.h"
#include "kiln/models.h"
#include "kiln/apps.h"
#include "kiln/vision_model.h"
#include "kiln/interp.h"
#include "kiln/dist.h"
#endif
