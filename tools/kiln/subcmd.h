/* A task's subcommands (kiln vision fit, kiln text lm, ...): each names the bit its flags'
 * masks use; subcmd_find picks the one argv[1] names, subcmd_parse reads its flags. */
#ifndef CLI_SUBCMD_H
#define CLI_SUBCMD_H

#include "flags.h"

typedef struct cli_subcmd {
    const char *name;
    unsigned bit;
    const char *usage, *about;
} cli_subcmd;

/* The command argv[1] names among cmds[0..n); NULL with *rc set when there is none to run:
 * no command (usage on stderr, 2), help (usage on stdout, 0), an unknown one ("kiln GROUP:
 * unknown command 'x' (the names)", 2). */
const cli_subcmd *subcmd_find(const char *group, int argc, char **argv, const cli_subcmd *cmds, int n,
                              void (*usage)(FILE *), int *rc);

/* c's flags (argv[1..argc-1], argv[0] the command) parsed into opts, its positionals into *pos
 * (malloc'd: free it, also after an error) and *n_pos. After parsing, *help set prints "usage:
 * ..., about, flags" (those whose mask meets c->bit, with the defaults struct's values) and
 * returns -1; a flag given whose mask misses c->bit is refused (2). 0: run the command. */
int subcmd_parse(const char *prog, const cli_subcmd *c, const cli_flag *flags, int n_flags, unsigned all, int argc,
                 char **argv, void *opts, const void *defaults, const bool *help, bool *given, const char ***pos,
                 int *n_pos);

#endif
