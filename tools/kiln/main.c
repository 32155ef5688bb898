/* The kiln command line: dispatches to one subcommand per file. */
#include "kiln.h"

#include <stdio.h>
#include <string.h>

/* one function per subcommand, in tools/kiln/<command>.c */
int kiln_cmd_schedule(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln [--version] [--help] <command> [args]\n"
            "\n"
            "kiln trains neural networks the fast.ai way, in one native binary.\n"
            "\n"
            "options:\n"
            "  --version   print the version and exit\n"
            "  --help      print this help and exit\n"
            "\n"
            "commands (kiln <command> --help for each):\n"
            "  schedule    print or plot a learning-rate schedule\n"
            "\n"
            "coming with the next releases:\n"
            "  vision      lr-find, fit, predict, interpret on image data\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("kiln %s\n", KILN_VERSION_STRING);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "schedule"))
        return kiln_cmd_schedule(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s' (try kiln --help)\n", argv[1]);
    return 2;
}
