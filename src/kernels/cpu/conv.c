/* CPU kernels of the conv family. */
#include "kernels/conv.h"

const kiln_conv_kernels kiln__cpu_conv = {0};
