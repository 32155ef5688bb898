/* A task's subcommands (kiln vision fit, kiln text lm, ...): finding the one argv names and
 * parsing its flags from the task's one flag table, with --help and the refusal of a flag that
 * does not apply to it, the same for every task. */
#include "subcmd.h"

#include <stdlib.h>
#include <string.h>

const cli_subcmd *subcmd_find(const char *group, int argc, char **argv, const cli_subcmd *cmds, int n,
                              void (*usage)(FILE *), int *rc)
{
    *rc = 2;
    if (argc < 2) {
        usage(stderr);
        return NULL;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        *rc = 0;
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(argv[1], cmds[i].name)) return &cmds[i];
    fprintf(stderr, "kiln %s: unknown command '%s' (", group, argv[1]);
    for (int i = 0; i < n; i++) fprintf(stderr, "%s%s", i ? ", " : "", cmds[i].name);
    fprintf(stderr, ")\n");
    return NULL;
}

int subcmd_parse(const char *prog, const cli_subcmd *c, const cli_flag *flags, int n_flags, unsigned all, int argc,
                 char **argv, void *opts, const void *defaults, const bool *help, bool *given, const char ***pos,
                 int *n_pos)
{
    *n_pos = 0;
    if (!(*pos = calloc((size_t)argc + 1, sizeof **pos))) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    int rc = flags_parse(prog, flags, n_flags, argc, argv, opts, given, *pos, argc, n_pos);
    if (rc) return rc;
    if (*help) {
        printf("usage: %s\n\n%s\n\nflags:\n", c->usage, c->about);
        flags_print(stdout, flags, n_flags, c->bit, all, NULL, defaults);
        return -1;
    }
    for (int k = 0; k < n_flags; k++)
        if (given[k] && !(flags[k].mask & c->bit)) {
            fprintf(stderr, "%s: %s does not apply to %s (see %s --help)\n", prog, flags[k].name, c->name, prog);
            return 2;
        }
    return 0;
}
