/* CPU kernels of the rnn family. */
#include "kernels/rnn.h"

const kiln_rnn_kernels kiln__cpu_rnn = {0};
