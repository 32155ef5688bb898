/* Internal to the AWD-LSTM models (src/nn/models/awd_lstm.c, awd_clas.c): the AWD_LSTM body
 * with its carried hidden state, shared by the language model and the classifier. */
#ifndef KILN_AWD_INTERNAL_H
#define KILN_AWD_INTERNAL_H

#include "kiln/models.h"
#include "nn/nn_internal.h"

/* The parameters make a model: sizes >= 1, 1..KILN_AWD_MAX_LAYERS layers, dropouts in [0, 1). */
bool kiln__awd_params_ok(const kiln_awd_lstm_params *p);
/* An AWD_LSTM module named name under parent: "encoder" (U(-0.1, 0.1)), "rnns.L.module"; its
 * forward maps (B, T) ids to the last LSTM's (B, T, emb), carrying the state. NULL on failure
 * (recorded in the model). */
kiln_module *kiln__awd_body(kiln_module *parent, const char *name, const kiln_awd_lstm_params *p);
bool kiln__awd_is_body(const kiln_module *m);
/* Zeroes the body's carried state. */
void kiln__awd_body_reset(kiln_module *awd);

#endif
