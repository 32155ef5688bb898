/* The one monotonic clock the library times things with (epochs, progress, collectives, file
 * reading): seconds as a double. */
#include "core/internal.h"

#include <time.h>

double kiln__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
