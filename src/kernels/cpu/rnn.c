/* CPU kernel table of the rnn family: the fast LSTM kernels of lstm_cpu.c. */
#include "kernels/rnn.h"

const kiln_rnn_kernels kiln__cpu_rnn = {
    .lstm_fwd = kiln__cpu_lstm_fwd,
    .lstm_bwd = kiln__cpu_lstm_bwd,
};
