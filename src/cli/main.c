/* q3moe: one binary, one subcommand per job. Each command lives in its own cmd_*.c. */
#include <stdio.h>
#include <string.h>
#include "cli/commands.h"

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} COMMANDS[] = {
    {"run", cmd_run, "generate text from a prompt (streamed)"},
    {"perplexity", cmd_perplexity, "perplexity (and KL divergence) over a text"},
    {"info", cmd_info, "print a model's architecture, tensors and sizes"},
    {"logits", cmd_logits, "write the logits of a token sequence as raw float32"},
    {"convert", cmd_convert, "convert a checkpoint or GGUF into a GGUF of another type"},
    {"template", cmd_template, "print the chat prompt the Qwen3 template makes from messages"},
    {"tokenize", cmd_tokenize, "print the token ids of a text (JSON array)"},
    {"detokenize", cmd_detokenize, "print the text of comma-separated token ids"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: q3moe COMMAND [options]   (q3moe COMMAND --help for a command's options)\n\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "q3moe: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 1;
}
