/* The kiln CLI's flag tables: every subcommand describes its flags once, in a table that
 * both parses argv (into a struct of options, by field offset) and prints --help. A flag's
 * `mask` says which variants read it (schedule policies, vision subcommands): --help can
 * show only a variant's flags, or list the variants beside a flag.
 *
 * Accepted forms: "--name value", "--name=value", "--bool" ("--bool=x" is an error).
 * Arguments that do not start with "--" (or are exactly "--") are positionals, kept in
 * order. Every error is printed on stderr as "<prog>: <message>" and makes the parser
 * return 2 (the exit status for a usage error). */
#ifndef CLI_FLAGS_H
#define CLI_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cli_flag_kind {
    FLAG_DOUBLE = 0, /* double, finite */
    FLAG_INT,        /* int64_t */
    FLAG_BOOL,       /* bool, set to true; takes no value */
    FLAG_STR,        /* const char *, points into argv */
    FLAG_CUSTOM,     /* parse(value, opts) fills whatever it likes */
} cli_flag_kind;

typedef struct cli_flag {
    const char *name;  /* "--lr" */
    const char *arg;   /* value placeholder in --help ("LR"), NULL for booleans */
    cli_flag_kind kind;
    size_t off;        /* offsetof the field in the options struct (unused for CUSTOM) */
    unsigned mask;     /* variants that read the flag */
    const char *help;
    /* CUSTOM only: false when value is malformed; `bad` completes "<flag>: '<value>' is not ..." */
    bool (*parse)(const char *value, void *opts);
    const char *bad;
} cli_flag;

/* Parses argv[1..argc-1] into opts. given (n_flags) is set for every flag seen; positionals
 * go to pos (at most max_pos; one more is an "unexpected argument" error), their count to
 * *n_pos. prog prefixes messages ("kiln schedule"). Returns 0 or 2. */
int flags_parse(const char *prog, const cli_flag *flags, int n_flags, int argc, char **argv, void *opts,
                     bool *given, const char **pos, int max_pos, int *n_pos);

/* The index of a flag by name, -1 when absent. */
int flags_index(const cli_flag *flags, int n_flags, const char *name);

/* One line per flag whose mask meets `only`: "  --name ARG   help". When variant_name is not
 * NULL and the flag's mask differs from `all`, the variants that read it follow in [...]
 * (variant_name(bit) names bit; bits up to `all`). defaults (NULL: none) is an options
 * struct holding the defaults: each flag that takes a value ends with "(default: V)", read
 * from it at the flag's offset, so --help cannot drift from the parser. */
void flags_print(FILE *f, const cli_flag *flags, int n_flags, unsigned only, unsigned all,
                 const char *(*variant_name)(int bit), const void *defaults);

/* Number parsing shared with custom parsers: whole string, finite. */
bool flags_double(const char *s, double *out);
bool flags_int(const char *s, int64_t *out);

#endif
