/* kiln_mkdirs (io.h): mkdir -p for the folders kiln writes into, with errors that name the
 * part of the path that failed. */
#include "core/internal.h"
#include "kiln/io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

kiln_status kiln_mkdirs(const char *dir)
{
    char p[4096];
    if (!dir || !*dir) return kiln__err(KILN_STATUS_INVALID, "mkdirs: empty folder name");
    if (strlen(dir) >= sizeof p) return kiln__err(KILN_STATUS_INVALID, "%.64s...: the path is too long", dir);
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1;; s++) {
        char ch = *s;
        if (ch == '/' || ch == '\0') {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return kiln__err(KILN_STATUS_IO, "cannot create %s: %s", p, strerror(errno));
            *s = ch;
        }
        if (!ch) break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return kiln__err(KILN_STATUS_IO, "%s is not a folder", dir);
    return KILN_STATUS_OK;
}
