/* The kiln command line: dispatches to one subcommand per file. */
#include "kiln.h"

#include <stdio.h>
#include <string.h>

#ifdef __SANITIZE_ADDRESS__
/* fontconfig (under PLplot's cairo driver) keeps its caches until exit; not ours to free;
 * one definition for the whole binary */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
#endif

/* one function per subcommand, in tools/kiln/<command>.c */
int cmd_schedule(int argc, char **argv);
int cmd_vision(int argc, char **argv); /* vision.c, vision_fit.c, vision_predict.c */
int cmd_text(int argc, char **argv);   /* text.c */
int cmd_tabular(int argc, char **argv); /* tabular.c */
int cmd_collab(int argc, char **argv);  /* collab.c */

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
            "  vision      image classification: lr-find, fit, predict, show-batch, interpret\n"
            "  text        ULMFiT: language models and classifiers: lm, lr-find, fit, predict\n"
            "  tabular     tables: entity embeddings and an MLP: fit, lr-find, predict\n"
            "  collab      collaborative filtering: fit, lr-find, predict, recommend, export\n"
            "\n"
            "example (Fashion-MNIST, package dataset-fashion-mnist):\n"
            "  kiln vision lr-find fashion-mnist --out runs/fm\n"
            "  kiln vision fit fashion-mnist --out runs/fm\n");
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
        return cmd_schedule(argc - 1, argv + 1);
    if (!strcmp(argv[1], "vision"))
        return cmd_vision(argc - 1, argv + 1);
    if (!strcmp(argv[1], "text"))
        return cmd_text(argc - 1, argv + 1);
    if (!strcmp(argv[1], "tabular"))
        return cmd_tabular(argc - 1, argv + 1);
    if (!strcmp(argv[1], "collab"))
        return cmd_collab(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s' (try kiln --help)\n", argv[1]);
    return 2;
}
