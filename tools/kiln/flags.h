/* The kiln CLI's flag tables: every subcommand describes its flags once, in a table that
 * both parses argv (into a struct of options, by field offset) and prints --help. A flag's
 * `mask` says which variants read it (schedule policies, vision subcommands): --help can
 * show only a variant's flags, or list the variants beside a flag.
 *
 * Accepted forms: "--name value", "--name=value", "--bool" ("--bool=x" is an error).
 * Arguments that do not start with "--" (or are exactly "--") are positionals, kept in
 * order. Every error is printed on stderr as "<prog>: <message>" and makes the parser
 * return 2 (the exit status for a usage error). */
#ifndef KILN_TOOLS_FLAGS_H
#define KILN_TOOLS_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum kiln_flag_kind {
    KILN_FLAG_DOUBLE = 0, /* double, finite */
    KILN_FLAG_INT,        /* int64_t */
    KILN_FLAG_BOOL,       /* bool, set to true; takes no value */
    KILN_FLAG_STR,        /* const char *, points into argv */
    KILN_FLAG_CUSTOM,     /* parse(value, opts) fills whatever it likes */
} kiln_flag_kind;

typedef struct kiln_flag {
    const char *name;  /* "--lr" */
    const char *arg;   /* value placeholder in --help ("LR"), NULL for booleans */
    kiln_flag_kind kind;
    size_t off;        /* offsetof the field in the options struct (unused for CUSTOM) */
    unsigned mask;     /* variants that read the flag */
    const char *help;
    /* CUSTOM only: false when value is malformed; `bad` completes "<flag>: '<value>' is not ..." */
    bool (*parse)(const char *value, void *opts);
    const char *bad;
} kiln_flag;

/* Parses argv[1..argc-1] into opts. given (n_flags) is set for every flag seen; positionals
 * go to pos (at most max_pos; one more is an "unexpected argument" error), their count to
 * *n_pos. prog prefixes messages ("kiln schedule"). Returns 0 or 2. */
int kiln_flags_parse(const char *prog, const kiln_flag *flags, int n_flags, int argc, char **argv, void *opts,
                     bool *given, const char **pos, int max_pos, int *n_pos);

/* The index of a flag by name, -1 when absent. */
int kiln_flags_index(const kiln_flag *flags, int n_flags, const char *name);

/* One line per flag whose mask meets `only`: "  --name ARG   help". When variant_name is not
 * NULL and the flag's mask differs from `all`, the variants that read it follow in [...]
 * (variant_name(bit) names bit; bits up to `all`). */
void kiln_flags_print(FILE *f, const kiln_flag *flags, int n_flags, unsigned only, unsigned all,
                      const char *(*variant_name)(int bit));

/* Number parsing shared with custom parsers: whole string, finite. */
bool kiln_flags_double(const char *s, double *out);
bool kiln_flags_int(const char *s, int64_t *out);

#endif
